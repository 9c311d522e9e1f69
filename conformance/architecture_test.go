package conformance_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A config from Tritter's own PyTorch code that claims compatibility gets a
// key-by-key report: every incompatible key with its meaning, and the
// unknown ones, never a crash or a single misleading line.
func TestArchitectureSuiteReportsEveryKey(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"model_size": "7B", "hidden_size": 4096, "num_layers": 32, "num_heads": 32, "num_kv_heads": 8,
	  "intermediate_size": 11008, "max_position_embeddings": 131072, "rope_theta": 500000.0, "vocab_size": 65536,
	  "layer_norm_eps": 1e-05, "use_qk_norm": true, "use_sub_norm": false, "use_post_mlp_norm": true,
	  "ternary_threshold": 0.5, "quantize_activations": false, "bias": true, "my_flag": 1,
	  "conformance": {"compatible_with": "bitnet-b1.58-2b-4t"}}`
	if err := os.WriteFile(filepath.Join(dir, "tritter-own.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, ok := runSuites(t, []string{"./suites/architecture"}, "-config-dir="+dir, "-configs=tritter-own")
	if ok {
		t.Fatalf("the architecture suite passed Tritter's own block:\n%s", out)
	}
	for _, want := range []string{
		"keys that declare an architecture BitNet b1.58 does not have",
		"use_qk_norm: true — adds q_norm/k_norm weights and normalises q,k before RoPE; BitNet b1.58 has none",
		"layer_norm_eps: 1e-05 — declares LayerNorm",
		"use_sub_norm: false — drops attn_sub_norm and ffn_sub_norm",
		"use_post_mlp_norm: true — adds a norm after the MLP residual",
		"ternary_threshold: 0.5 — ternarizes weights by a threshold",
		"quantize_activations: false — no 8-bit activation quantization",
		"bias: true — adds biases",
		"num_layers: 32 — Tritter/T5's key; HF BitNetConfig ignores it and uses num_hidden_layers = 30",
		"claims compatible_with bitnet-b1.58-2b-4t, but has keys the harness does not know",
		"my_flag: 1 — not a key the harness knows",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("suite output lacks %q", want)
		}
	}
	if strings.Contains(out, "panic") {
		t.Error("the suite panicked")
	}
	if t.Failed() {
		t.Log(out)
	}
}

// A checkpoint whose config.json has a key the harness does not know fails
// the architecture suite, naming the key.
func TestCheckpointWithUnknownKeyFails(t *testing.T) {
	dir := writeCheckpoint(t, preset(t, "tiny-gqa-untied").Config, "offline", 1)
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "{", `{"rotary_style": "gptj",`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, ok := runSuites(t, []string{"./suites/architecture"}, "-model-dir="+dir, "-configs=tiny-gqa-untied", "-ginkgo.v")
	if ok || !strings.Contains(out, `rotary_style: "gptj" — not a key the harness knows`) ||
		!strings.Contains(out, "weight_scale convention autobitlinear (weight_scale = mean|W|, multiplied)") {
		t.Errorf("unknown checkpoint key not reported, or convention not stated:\n%s", out)
	}
}
