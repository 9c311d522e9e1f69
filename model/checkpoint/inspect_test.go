package checkpoint

import (
	"github.com/tritter-ai/conformance/internal/tensorfile"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

// tinyConfig is a small GQA config; untied adds lm_head to the inventory.
func tinyConfig(tied bool) model.Config {
	return model.Config{
		HiddenSize: 64, IntermediateSize: 160, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: 256,
		MaxPositionEmbeddings: 128, RopeTheta: 10000, RMSNormEps: 1e-5,
		HiddenAct: "relu2", TieWordEmbeddings: tied,
	}
}

func writeSynthetic(t *testing.T, cfg model.Config, mode string, shards int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := WriteSynthetic(dir, cfg, mode, shards); err != nil {
		t.Fatal(err)
	}
	return dir
}

func problemLines(r *Report) []string {
	var lines []string
	for _, p := range r.Problems {
		lines = append(lines, p.String())
	}
	return lines
}

func TestInspectAcceptsSyntheticCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		shards int
		tied   bool
	}{
		{Online, 1, true}, {Online, 3, false}, {Offline, 1, false}, {Offline, 4, true},
	} {
		cfg := tinyConfig(tc.tied)
		dir := writeSynthetic(t, cfg, tc.mode, tc.shards)
		r, err := Inspect(dir, cfg)
		if err != nil {
			t.Fatalf("%s/%d shards: %v", tc.mode, tc.shards, err)
		}
		if len(r.Problems) != 0 {
			t.Errorf("%s/%d shards: problems:\n%s", tc.mode, tc.shards, strings.Join(problemLines(r), "\n"))
		}
		want := len(cfg.Inventory())
		if tc.mode == Offline {
			want += 7 * int(cfg.NumHiddenLayers) // one weight_scale per linear
		}
		if r.Mode != tc.mode || len(r.Files) != tc.shards || r.TensorCount != want {
			t.Errorf("%s/%d shards: report mode %s, %d files, %d tensors; want %d tensors", tc.mode, tc.shards, r.Mode, len(r.Files), r.TensorCount, want)
		}
		if r.Err() != nil {
			t.Errorf("Err() = %v with no problems", r.Err())
		}
	}
}

func TestInspectReportsEachProblem(t *testing.T) {
	cfg := tinyConfig(true)
	const up = "model.layers.0.mlp.up_proj.weight"
	for _, tc := range []struct {
		name   string
		mode   string
		shards int
		break_ func(dir string) error
		want   []string
	}{
		{"wrong shape", Online, 1,
			func(dir string) error { return ReshapeTensor(dir, up, []int64{96, 64}) },
			[]string{up + ": shape [96,64], expected [160,64] (model.safetensors)"}},
		{"wrong dtype", Online, 1,
			func(dir string) error { return RetypeTensor(dir, "model.norm.weight", "I64") },
			[]string{"model.norm.weight: dtype I64, expected BF16 or F32 or F16 (model.safetensors)"}},
		{"missing tensor", Online, 1,
			func(dir string) error { return DeleteTensor(dir, "model.layers.1.self_attn.k_proj.weight") },
			[]string{"model.layers.1.self_attn.k_proj.weight: missing, expected BF16/F32/F16 [32,64]"}},
		{"unexpected tensor", Online, 1,
			func(dir string) error { return AddTensor(dir, "lm_head.weight", "BF16", []int64{256, 64}) },
			[]string{"lm_head.weight: unexpected tensor (BF16 [256,64]) for a online checkpoint of this config (model.safetensors)"}},
		{"offline weight not packed", Offline, 1,
			func(dir string) error { return ReshapeTensor(dir, up, []int64{160, 64}) },
			[]string{up + ": shape [160,64], expected [40,64] (model.safetensors)"}},
		{"offline scale missing", Offline, 2,
			func(dir string) error { return DeleteTensor(dir, up+"_scale") },
			[]string{up + "_scale: missing, expected BF16/F32/F16 [1], though the model.safetensors.index.json weight_map lists it in this file (model-0000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeSynthetic(t, cfg, tc.mode, tc.shards)
			if err := tc.break_(dir); err != nil {
				t.Fatal(err)
			}
			r, err := Inspect(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			lines := problemLines(r)
			if len(lines) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d", strings.Join(lines, "\n"), len(tc.want))
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("problem %q, want prefix %q", lines[i], want)
				}
			}
			if err := r.Err(); err == nil || !strings.Contains(err.Error(), tc.want[0]) {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}

func TestInspectExplainsALayoutMismatch(t *testing.T) {
	cfg := tinyConfig(true)
	dir := writeSynthetic(t, cfg, Offline, 1)
	online := cfg
	online.QuantizationConfig = &model.QuantizationConfig{QuantizationMode: Online}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), online.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Per layer: 7 packed weights and 7 unexpected weight_scale tensors.
	lines := problemLines(r)
	if len(lines) != 28 {
		t.Fatalf("%d problems, want 28:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	want := `model.layers.0.self_attn.q_proj.weight: U8 [16,64] is the offline packed layout, but config.json sets quantization_mode "online" (model.safetensors)`
	if lines[0] != want {
		t.Errorf("first problem %q, want %q", lines[0], want)
	}
}

func TestInspectWrongConfigNamesEveryMismatchedTensor(t *testing.T) {
	dir := writeSynthetic(t, tinyConfig(true), Online, 1)
	expected := tinyConfig(true)
	expected.IntermediateSize = 128
	r, err := Inspect(dir, expected)
	if err != nil {
		t.Fatal(err)
	}
	// gate, up, ffn_sub_norm and down in each of the two layers.
	if len(r.Problems) != 8 {
		t.Errorf("%d problems, want 8:\n%s", len(r.Problems), strings.Join(problemLines(r), "\n"))
	}
}

func TestInspectMissingShardIsAnError(t *testing.T) {
	cfg := tinyConfig(true)
	dir := writeSynthetic(t, cfg, Online, 3)
	shard := shardName(2, 3)
	if err := RemoveFile(dir, shard); err != nil {
		t.Fatal(err)
	}
	_, err := Inspect(dir, cfg)
	if err == nil || !strings.Contains(err.Error(), IndexFile) || !strings.Contains(err.Error(), `shard "`+shard+`"`) {
		t.Errorf("error %v, want one naming the index and shard %s", err, shard)
	}
}

func TestInspectShardIndexMismatches(t *testing.T) {
	cfg := tinyConfig(true)
	dir := writeSynthetic(t, cfg, Online, 2)
	// Move the final norm from the second shard to the first without
	// updating the index.
	const norm = "model.norm.weight"
	var moved []byte
	if err := EditTensors(dir, func(file string, tensors []tfTensor) []tfTensor {
		var out []tfTensor
		for _, t := range tensors {
			if t.Name == norm {
				moved = t.Data
				continue
			}
			out = append(out, t)
		}
		return out
	}); err != nil {
		t.Fatal(err)
	}
	first := true
	if err := EditTensors(dir, func(file string, tensors []tfTensor) []tfTensor {
		if first {
			first = false
			tensors = append(tensors, tfTensor{Name: norm, DType: "BF16", Shape: []int64{64}, Data: moved})
		}
		return tensors
	}); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := norm + ": model.safetensors.index.json weight_map lists it in " + shardName(2, 2) + " (" + shardName(1, 2) + ")"
	if lines := problemLines(r); len(lines) != 1 || lines[0] != want {
		t.Errorf("problems %q, want [%q]", lines, want)
	}
}

func TestInspectRejectsHostileIndex(t *testing.T) {
	cfg := tinyConfig(true)
	dir := writeSynthetic(t, cfg, Online, 2)
	index := `{"weight_map":{"model.norm.weight":"../../etc/passwd"}}`
	if err := os.WriteFile(filepath.Join(dir, IndexFile), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Inspect(dir, cfg)
	if err == nil || !strings.Contains(err.Error(), `weight_map["model.norm.weight"]`) {
		t.Errorf("error %v, want one naming the weight_map entry", err)
	}
}

type tfTensor = tensorfile.Tensor
