package golden

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tritter-ai/conformance/model"
)

// formatJSON is golden/format.json, the machine-readable description of the
// format that golden/toolkit (Python) reads too; docs/golden-format.md is
// its normative text.
//
//go:embed format.json
var formatJSON []byte

// FormatDescription returns a copy of the embedded golden/format.json.
func FormatDescription() []byte { return slices.Clone(formatJSON) }

// formatSpec is the part of format.json the Go reader uses.
type formatSpec struct {
	Formats map[string]string `json:"formats"`
	Dims    map[string]struct {
		InputIDsAxis  *int     `json:"input_ids_axis"`
		ConfigProduct []string `json:"config_product"`
	} `json:"dims"`
	SpreadKeys []string `json:"spread_keys"`
	Hidden     struct {
		Name string `json:"name"`
	} `json:"hidden"`
	Trace struct {
		Name   string `json:"name"`
		Points []struct {
			Name  string `json:"name"`
			Width string `json:"width"`
		} `json:"points"`
	} `json:"trace"`
	GradientPrefix string `json:"gradient_prefix"`
}

// format is the parsed format.json; parseFormat's checks run when the
// package loads, so a broken description fails every test at once.
var format = mustParseFormat(formatJSON)

func mustParseFormat(data []byte) *formatSpec {
	f, err := parseFormat(data)
	if err != nil {
		panic(err)
	}
	return f
}

// parseFormat decodes format.json and checks that every field the reader
// relies on is present and that every trace width names a config product.
func parseFormat(data []byte) (*formatSpec, error) {
	var f formatSpec
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("golden/format.json: %v", err)
	}
	if f.Formats["1"] != FormatV1 || f.Formats["2"] != FormatV2 {
		return nil, fmt.Errorf("golden/format.json: formats %v, expected 1: %q and 2: %q", f.Formats, FormatV1, FormatV2)
	}
	if !strings.Contains(f.Hidden.Name, "{i}") {
		return nil, fmt.Errorf("golden/format.json: hidden.name %q, expected a pattern with {i}", f.Hidden.Name)
	}
	if !strings.Contains(f.Trace.Name, "{i}") || !strings.Contains(f.Trace.Name, "{point}") {
		return nil, fmt.Errorf("golden/format.json: trace.name %q, expected a pattern with {i} and {point}", f.Trace.Name)
	}
	if f.GradientPrefix == "" {
		return nil, fmt.Errorf("golden/format.json: gradient_prefix missing")
	}
	if len(f.Trace.Points) == 0 {
		return nil, fmt.Errorf("golden/format.json: trace.points is empty")
	}
	seen := map[string]bool{}
	for _, p := range f.Trace.Points {
		if p.Name == "" || seen[p.Name] {
			return nil, fmt.Errorf("golden/format.json: trace point %q empty or listed twice", p.Name)
		}
		seen[p.Name] = true
		if _, err := f.width(p.Width); err != nil {
			return nil, fmt.Errorf("golden/format.json: trace point %q: %v", p.Name, err)
		}
	}
	for _, k := range f.SpreadKeys {
		switch k {
		case "loss", "logits", "final_norm", "hidden", "parameter_gradients":
		default:
			return nil, fmt.Errorf("golden/format.json: spread_keys entry %q, expected loss, logits, final_norm, hidden or parameter_gradients", k)
		}
	}
	return &f, nil
}

// width returns the function that computes dimension dim from a config:
// the product of the config fields format.json lists for it.
func (f *formatSpec) width(dim string) (func(model.Config) int64, error) {
	d, ok := f.Dims[dim]
	if !ok {
		return nil, fmt.Errorf("width %q is not one of dims", dim)
	}
	if len(d.ConfigProduct) == 0 {
		return nil, fmt.Errorf("width %q is not a product of config fields", dim)
	}
	fields := make([]func(model.Config) int64, len(d.ConfigProduct))
	for i, name := range d.ConfigProduct {
		field, err := configField(name)
		if err != nil {
			return nil, fmt.Errorf("width %q: %v", dim, err)
		}
		fields[i] = field
	}
	return func(cfg model.Config) int64 {
		n := int64(1)
		for _, field := range fields {
			n *= field(cfg)
		}
		return n
	}, nil
}

// configField reads one HF config field, by its config.json name, from a
// parsed config (head_dim with its default, model.Config.HeadDim).
func configField(name string) (func(model.Config) int64, error) {
	switch name {
	case "hidden_size":
		return func(c model.Config) int64 { return c.HiddenSize }, nil
	case "intermediate_size":
		return func(c model.Config) int64 { return c.IntermediateSize }, nil
	case "vocab_size":
		return func(c model.Config) int64 { return c.VocabSize }, nil
	case "num_hidden_layers":
		return func(c model.Config) int64 { return c.NumHiddenLayers }, nil
	case "num_attention_heads":
		return func(c model.Config) int64 { return c.NumAttentionHeads }, nil
	case "num_key_value_heads":
		return func(c model.Config) int64 { return c.NumKeyValueHeads }, nil
	case "head_dim":
		return model.Config.HeadDim, nil
	}
	return nil, fmt.Errorf("config field %q is not one the reader knows", name)
}

// tracePoints builds TracePoints from format.json.
func (f *formatSpec) tracePoints() []TracePoint {
	points := make([]TracePoint, len(f.Trace.Points))
	for i, p := range f.Trace.Points {
		w, err := f.width(p.Width)
		if err != nil { // parseFormat checked every width
			panic(err)
		}
		points[i] = TracePoint{Name: p.Name, Dim: p.Width, Width: w}
	}
	return points
}

func (f *formatSpec) traceName(i int, point string) string {
	return strings.NewReplacer("{i}", strconv.Itoa(i), "{point}", point).Replace(f.Trace.Name)
}

func (f *formatSpec) hiddenName(i int) string {
	return strings.ReplaceAll(f.Hidden.Name, "{i}", strconv.Itoa(i))
}

// spreadKeys expands spread_keys for a case with layers+1 hidden states.
func (f *formatSpec) spreadKeys(cfg model.Config, hidden int) []string {
	var keys []string
	for _, k := range f.SpreadKeys {
		switch k {
		case "hidden":
			for i := 0; i < hidden; i++ {
				keys = append(keys, f.hiddenName(i))
			}
		case "parameter_gradients":
			for _, spec := range cfg.Inventory() {
				keys = append(keys, f.GradientPrefix+spec.Name)
			}
		default:
			keys = append(keys, k)
		}
	}
	return keys
}
