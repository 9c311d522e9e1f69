package conformance_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance"
)

// A preset that declares an architecture BitNet b1.58 lacks gets no model:
// the model does not read use_qk_norm, but HF would add a QK-norm, so every
// model spec must fail naming the key instead of validating another model.
func TestIncompatiblePresetBuildsNoModel(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
	  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
	  "max_position_embeddings": 32, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
	  "hidden_act": "relu2", "tie_word_embeddings": true, "use_qk_norm": true}`
	if err := os.WriteFile(filepath.Join(dir, "qk-norm.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tc := conformance.NewTestConfig()
	tc.ConfigDirs, tc.Configs = []string{dir}, []string{"qk-norm"}
	h := conformance.NewHarness(tc)
	subjects := h.Subjects()
	if len(subjects) != 1 {
		t.Fatalf("%d subjects, want 1", len(subjects))
	}
	_, err := subjects[0].Model()
	if err == nil || !strings.Contains(err.Error(), "use_qk_norm: true") || !strings.Contains(err.Error(), "not a BitNet b1.58 config") {
		t.Fatalf("building the qk-norm preset: %v, want an error naming use_qk_norm", err)
	}
}
