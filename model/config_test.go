package model_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

const tinyConfigJSON = `{"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
 "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
 "hidden_act": "relu2", "tie_word_embeddings": true}`

func TestDerivedFacts(t *testing.T) {
	c, err := model.ParseConfig([]byte(tinyConfigJSON), "tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim() != 16 || c.GroupSize() != 2 {
		t.Errorf("head_dim=%d group=%d, expected 16 and 2", c.HeadDim(), c.GroupSize())
	}
	// embed 256*64 + 2 layers * (q 64*64 + k,v 2*32*64 + o 64*64 + gate,up,down 3*160*64 + norms 3*64+160) + final 64
	want := int64(256*64 + 2*(64*64+2*32*64+64*64+3*160*64+3*64+160) + 64)
	if got := c.ParamCount(); got != want {
		t.Errorf("ParamCount = %d, expected %d", got, want)
	}
	inv := c.Inventory()
	if inv[0].Name != "model.embed_tokens.weight" || inv[len(inv)-1].Name != "model.norm.weight" {
		t.Errorf("inventory order: first %s, last %s", inv[0].Name, inv[len(inv)-1].Name)
	}
	if len(inv) != 1+2*11+1 {
		t.Errorf("inventory has %d tensors, expected %d", len(inv), 1+2*11+1)
	}
	c.TieWordEmbeddings = false
	if last := c.Inventory()[len(c.Inventory())-1]; last.Name != "lm_head.weight" || last.Kind != model.KindHead {
		t.Errorf("untied inventory ends with %s (%v), expected lm_head.weight", last.Name, last.Kind)
	}
}

func TestConfigProblems(t *testing.T) {
	cases := []struct {
		name, edit, field, want string
	}{
		{"zero hidden", `"hidden_size": 0`, "hidden_size", "got 0"},
		{"negative layers", `"num_hidden_layers": -3`, "num_hidden_layers", "got -3"},
		{"heads not dividing hidden", `"num_attention_heads": 5`, "num_attention_heads", "divisor of hidden_size 64"},
		{"kv not dividing heads", `"num_key_value_heads": 3`, "num_key_value_heads", "divisor of num_attention_heads 4"},
		{"vocab above int32", `"vocab_size": 3000000000`, "vocab_size", "got 3000000000"},
		{"absurd layers", `"num_hidden_layers": 100000000`, "num_hidden_layers", "at most 4096"},
		{"silu", `"hidden_act": "silu"`, "hidden_act", `got "silu"`},
		{"zero eps", `"rms_norm_eps": 0`, "rms_norm_eps", "got 0"},
		{"odd head dim", `"head_dim": 15`, "head_dim", "got 15"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.edit[:strings.Index(tc.edit, ":")]
			data := replaceField(tinyConfigJSON, key, tc.edit)
			_, err := model.ParseConfig([]byte(data), "bad.json")
			if err == nil {
				t.Fatalf("expected an error for %s", tc.edit)
			}
			for _, want := range []string{"bad.json", tc.field, tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// replaceField swaps the "key": value pair in a one-level JSON object, or
// appends it when absent.
func replaceField(js, key, pair string) string {
	i := strings.Index(js, key)
	if i < 0 {
		return strings.Replace(js, "{", "{"+pair+", ", 1)
	}
	j := i + strings.IndexAny(js[i:], ",}")
	return js[:i] + pair + js[j:]
}

func TestConfigDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{`{"hidden_size": "wide"}`, `field "hidden_size"`},
		{`{"hidden_size": 64`, "invalid JSON"},
		{`{} {}`, "trailing data"},
		{``, "invalid JSON"},
		{`null`, "expected a JSON object"},
	} {
		_, err := model.ParseConfig([]byte(tc.data), "x/config.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x/config.json") {
			t.Errorf("ParseConfig(%q) = %v, expected an error naming x/config.json and %q", tc.data, err, tc.want)
		}
	}
}

func TestLoadConfigRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := model.LoadConfig(path); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("LoadConfig of a 2 MiB file = %v, expected a size error", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(tinyConfigJSON))
	f.Add([]byte(`{"hidden_size": 2560, "num_attention_heads": 20, "head_dim": 128}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := model.ParseConfig(data, "fuzz.json")
		if err != nil {
			return
		}
		// A config that validates must have consistent derived facts.
		if c.HeadDim() <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 || c.ParamCount() <= 0 {
			t.Fatalf("validated config has head_dim %d, heads %d/%d, params %d", c.HeadDim(), c.NumAttentionHeads, c.NumKeyValueHeads, c.ParamCount())
		}
	})
}

func TestAbsentKeysTakeHFDefaults(t *testing.T) {
	c, err := model.ParseConfig([]byte(`{"num_key_value_heads": null}`), "empty.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.HiddenSize != 2560 || c.NumHiddenLayers != 30 || c.NumKeyValueHeads != 20 || c.MaxPositionEmbeddings != 2048 ||
		c.TieWordEmbeddings || c.HiddenAct != "relu2" || c.RopeTheta != 500000 || c.RMSNormEps != 1e-5 {
		t.Errorf("defaults: %+v", c)
	}
	if c.QuantizationMode() != "online" {
		t.Errorf("mode %s, expected online", c.QuantizationMode())
	}
}

func TestLinearClass(t *testing.T) {
	for _, tc := range []struct {
		quant string
		want  model.ScaleConvention
		mode  string
	}{
		{`{"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"}`, model.ScaleMultiplies, "offline"},
		{`{"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}`, model.ScaleDivides, "offline"},
		{`{"quant_method": "bitnet"}`, model.ScaleDivides, "offline"},
	} {
		data := replaceField(tinyConfigJSON, `"quantization_config"`, `"quantization_config": `+tc.quant)
		c, err := model.ParseConfig([]byte(data), "q.json")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.ScaleConvention(); err != nil || got != tc.want || c.QuantizationMode() != tc.mode {
			t.Errorf("%s: convention %v (%v), mode %s; expected %v, %s", tc.quant, got, err, c.QuantizationMode(), tc.want, tc.mode)
		}
	}
	data := replaceField(tinyConfigJSON, `"quantization_config"`, `"quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear158"}`)
	_, err := model.ParseConfig([]byte(data), "q.json")
	if err == nil || !strings.Contains(err.Error(), `quantization_config.linear_class: expected "autobitlinear" or "bitlinear", got "bitlinear158"`) {
		t.Errorf("unknown linear_class: %v", err)
	}
}
