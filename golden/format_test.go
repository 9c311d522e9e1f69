package golden

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

// formatParameters is the parameters section of format.json.
type formatParameters struct {
	Parameters struct {
		BeforeLayers []formatParam `json:"before_layers"`
		LayerPrefix  string        `json:"layer_prefix"`
		Layer        []formatParam `json:"layer"`
		AfterLayers  []formatParam `json:"after_layers"`
	} `json:"parameters"`
}

type formatParam struct {
	Name       string   `json:"name"`
	Shape      []string `json:"shape"`
	UntiedOnly bool     `json:"untied_only"`
}

// inventoryFromFormat expands format.json's parameter list for cfg, the
// way golden/toolkit/format.py does.
func inventoryFromFormat(t *testing.T, cfg model.Config) []model.TensorSpec {
	t.Helper()
	var f formatParameters
	if err := json.Unmarshal(formatJSON, &f); err != nil {
		t.Fatal(err)
	}
	shape := func(dims []string) []int64 {
		out := make([]int64, len(dims))
		for i, d := range dims {
			w, err := format.width(d)
			if err != nil {
				t.Fatalf("format.json parameter shape: %v", err)
			}
			out[i] = w(cfg)
		}
		return out
	}
	var specs []model.TensorSpec
	add := func(prefix string, ps []formatParam, layer int) {
		for _, p := range ps {
			if p.UntiedOnly && cfg.TieWordEmbeddings {
				continue
			}
			specs = append(specs, model.TensorSpec{Name: prefix + p.Name, Shape: shape(p.Shape), Layer: layer})
		}
	}
	add("", f.Parameters.BeforeLayers, -1)
	for i := 0; i < int(cfg.NumHiddenLayers); i++ {
		add(strings.ReplaceAll(f.Parameters.LayerPrefix, "{i}", strconv.Itoa(i)), f.Parameters.Layer, i)
	}
	add("", f.Parameters.AfterLayers, -1)
	return specs
}

// format.json's parameter list, which the Python toolkit writes files
// from, agrees name for name and shape for shape with model.Config.Inventory
// on every committed model case's config.
func TestFormatParametersMatchInventory(t *testing.T) {
	paths, err := Discover(Dir())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range paths {
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Kind != KindModel {
			continue
		}
		for _, tied := range []bool{true, false} {
			cfg := c.Config
			cfg.TieWordEmbeddings = tied
			got, want := inventoryFromFormat(t, cfg), cfg.Inventory()
			if len(got) != len(want) {
				t.Fatalf("%s (tied %v): format.json lists %d parameters, model.Config.Inventory %d", c.Name, tied, len(got), len(want))
			}
			for i := range want {
				if got[i].Name != want[i].Name || !slices.Equal(got[i].Shape, want[i].Shape) || got[i].Layer != want[i].Layer {
					t.Errorf("%s (tied %v): parameter %d is %s %v in format.json, %s %v in model.Config.Inventory",
						c.Name, tied, i, got[i].Name, got[i].Shape, want[i].Name, want[i].Shape)
				}
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no model case in golden/cases")
	}
}

// TracePoints, TraceName and HiddenName come from format.json.
func TestTracePointsFromFormat(t *testing.T) {
	var f struct {
		Trace struct {
			Points []struct{ Name, Width string } `json:"points"`
		} `json:"trace"`
	}
	if err := json.Unmarshal(formatJSON, &f); err != nil {
		t.Fatal(err)
	}
	if len(TracePoints) != len(f.Trace.Points) {
		t.Fatalf("%d trace points, format.json has %d", len(TracePoints), len(f.Trace.Points))
	}
	cfg := model.Config{HiddenSize: 64, IntermediateSize: 96, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDimension: 128}
	widths := map[string]int64{"H": 64, "I": 96, "q": 256, "kv": 128}
	for i, p := range TracePoints {
		if p.Name != f.Trace.Points[i].Name || p.Dim != f.Trace.Points[i].Width {
			t.Errorf("trace point %d: %s (%s), format.json %s (%s)", i, p.Name, p.Dim, f.Trace.Points[i].Name, f.Trace.Points[i].Width)
		}
		if got := p.Width(cfg); got != widths[p.Dim] {
			t.Errorf("trace point %s: width %d, expected %d for dimension %s", p.Name, got, widths[p.Dim], p.Dim)
		}
	}
	if got := TraceName(3, "attn_sub_norm"); got != "trace.3.attn_sub_norm" {
		t.Errorf("TraceName(3, attn_sub_norm) = %q", got)
	}
	if got := HiddenName(12); got != "hidden.12" {
		t.Errorf("HiddenName(12) = %q", got)
	}
	if b := FormatDescription(); string(b) != string(formatJSON) {
		t.Error("FormatDescription differs from the embedded file")
	}
}

// parseFormat rejects a description the reader could not follow, naming
// the entry.
func TestParseFormatRejects(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{`"width": "kv"`, `"width": "kvx"`, `trace point "k": width "kvx" is not one of dims`},
		{`"config_product": ["intermediate_size"]`, `"config_product": ["intermediate"]`, `config field "intermediate" is not one the reader knows`},
		{`"name": "trace.{i}.{point}"`, `"name": "trace.{point}"`, `trace.name "trace.{point}"`},
		{`"2": "bitnet-golden/v2"`, `"2": "bitnet-golden/v3"`, `formats map[`},
		{`"parameter_gradients"]`, `"gradients"]`, `spread_keys entry "gradients"`},
		{`{"name": "up", "width": "I"`, `{"name": "gate", "width": "I"`, `trace point "gate" empty or listed twice`},
	} {
		data := strings.Replace(string(formatJSON), tc.old, tc.new, 1)
		if data == string(formatJSON) {
			t.Fatalf("%q not found in format.json", tc.old)
		}
		_, err := parseFormat([]byte(data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: error %v, expected one containing %q", tc.old, tc.new, err, tc.want)
		}
	}
}
