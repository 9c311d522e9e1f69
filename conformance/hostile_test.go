package conformance_test

import (
	"encoding/binary"

	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// rawSafetensors assembles a safetensors file from a header JSON and data,
// with no validation, so tests can build hostile files.
func rawSafetensors(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(out, header...), data...)
}

// smallestModelCase is a small committed golden model case that hostile
// golden files are derived from.
const smallestModelCase = "model-mha-tied-L1-hd16-V251-T13.safetensors"

// rewriteGolden copies a committed golden case with its tensors and
// metadata changed by edit.
func rewriteGolden(t *testing.T, dst string, edit func(meta map[string]string, tensors []tensorfile.Tensor) []tensorfile.Tensor) {
	t.Helper()
	f, err := tensorfile.Open(filepath.Join(golden.Dir(), smallestModelCase))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta := map[string]string{}
	for k, v := range f.Header.Metadata {
		meta[k] = v
	}
	var tensors []tensorfile.Tensor
	for _, info := range f.Header.Tensors {
		raw, err := f.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, tensorfile.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	if err := tensorfile.Write(dst, meta, edit(meta, tensors)); err != nil {
		t.Fatal(err)
	}
}

func setFloat(tensors []tensorfile.Tensor, name string, index int, v float32) []tensorfile.Tensor {
	for _, t := range tensors {
		if t.Name == name {
			binary.LittleEndian.PutUint32(t.Data[4*index:], math.Float32bits(v))
		}
	}
	return tensors
}

// TestHostileInputs is the harness's bad-input guarantee: each hostile
// input gives an error naming the file and the field or tensor, never a
// panic, and never an allocation sized by the input before the input is
// checked against the file size.
func TestHostileInputs(t *testing.T) {
	presets, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	tiny := presets["tiny-gqa-untied"].Config
	tinyModel, err := model.New(tiny, model.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	valid := rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))

	type hostile struct {
		name string
		// run returns the error and the strings it must contain.
		run func(t *testing.T, dir string) (error, []string)
	}
	file := func(name string, data []byte, must ...string) hostile {
		return hostile{name, func(t *testing.T, dir string) (error, []string) {
			path := filepath.Join(dir, "bad.safetensors")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := golden.Load(path)
			return err, append([]string{path}, must...)
		}}
	}
	goldenEdit := func(name string, edit func(meta map[string]string, ts []tensorfile.Tensor) []tensorfile.Tensor, must ...string) hostile {
		return hostile{name, func(t *testing.T, dir string) (error, []string) {
			path := filepath.Join(dir, "case.safetensors")
			rewriteGolden(t, path, edit)
			_, err := golden.Load(path)
			return err, append([]string{path}, must...)
		}}
	}
	config := func(name, edit, field string) hostile {
		return hostile{name, func(t *testing.T, dir string) (error, []string) {
			data := strings.Replace(string(tiny.JSON()), edit[:strings.Index(edit, ":")+1], edit+", \"_was\":", 1)
			path := filepath.Join(dir, "config.json")
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := model.LoadConfig(path)
			return err, []string{path, field}
		}}
	}
	forward := func(name string, b model.Batch, must ...string) hostile {
		return hostile{name, func(t *testing.T, dir string) (error, []string) {
			_, err := tinyModel.Forward(b, model.ForwardOptions{})
			return err, must
		}}
	}

	cases := []hostile{
		file("truncated file", valid[:len(valid)-3]),
		file("header length beyond the file size", append(binary.LittleEndian.AppendUint64(nil, 5000), `{"a":1}`...), "header"),
		file("header over 100 MB", append(binary.LittleEndian.AppendUint64(nil, 200_000_000), `{}`...), "header"),
		file("invalid JSON", rawSafetensors(`{"a":{"dtype":"F32",`, nil)),
		file("duplicate tensor names", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), `"a"`),
		file("overlapping offsets", rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12))),
		file("offsets past the end", rawSafetensors(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8)), `"a"`),
		file("dtype, shape and byte count disagree", rawSafetensors(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), `"a"`),
		file("shape product overflows", rawSafetensors(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}`, make([]byte, 8)), `"a"`),
		file("unknown dtype", rawSafetensors(`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), "Q4"),
		goldenEdit("wrong golden format version", func(meta map[string]string, ts []tensorfile.Tensor) []tensorfile.Tensor {
			meta["format"] = "bitnet-golden/v0"
			return ts
		}, "bitnet-golden/v0"),
		goldenEdit("golden case without logits", func(_ map[string]string, ts []tensorfile.Tensor) []tensorfile.Tensor {
			var out []tensorfile.Tensor
			for _, t := range ts {
				if t.Name != "logits" {
					out = append(out, t)
				}
			}
			return out
		}, "logits"),
		goldenEdit("NaN in a golden tensor", func(_ map[string]string, ts []tensorfile.Tensor) []tensorfile.Tensor {
			return setFloat(ts, "final_norm", 5, float32(math.NaN()))
		}, "final_norm"),
		goldenEdit("Inf in a golden tensor", func(_ map[string]string, ts []tensorfile.Tensor) []tensorfile.Tensor {
			return setFloat(ts, "model.norm.weight", 0, float32(math.Inf(-1)))
		}, "model.norm.weight"),
		config("config with zero hidden size", `"hidden_size": 0`, "hidden_size"),
		config("config with negative layers", `"num_hidden_layers": -2`, "num_hidden_layers"),
		config("config whose heads do not divide hidden", `"num_attention_heads": 7`, "num_attention_heads"),
		config("config whose KV heads do not divide heads", `"num_key_value_heads": 4`, "num_key_value_heads"),
		config("config with vocab above 2^31", `"vocab_size": 4294967296`, "vocab_size"),
		{"config that is not JSON", func(t *testing.T, dir string) (error, []string) {
			path := filepath.Join(dir, "config.json")
			os.WriteFile(path, []byte(`{"hidden_size": 64,`), 0o644)
			_, err := model.LoadConfig(path)
			return err, []string{path, "JSON"}
		}},
		{"shard index naming a missing file", func(t *testing.T, dir string) (error, []string) {
			if err := checkpoint.WriteSynthetic(dir, tiny, "online", 2); err != nil {
				t.Fatal(err)
			}
			if err := checkpoint.RemoveFile(dir, "model-00002-of-00002.safetensors"); err != nil {
				t.Fatal(err)
			}
			_, err := checkpoint.Inspect(dir, tiny)
			return err, []string{"model-00002-of-00002.safetensors"}
		}},
		forward("token id out of range", model.Batch{B: 1, T: 3, IDs: []int32{1, 331, 2}}, "331", "vocab"),
		forward("T above max positions", model.Batch{B: 1, T: 161, IDs: make([]int32, 161)}, "161", "160"),
		forward("empty batch", model.Batch{}, "empty"),
	}
	if len(cases) < 20 {
		t.Fatalf("only %d hostile inputs", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var err error
			var must []string
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				err, must = tc.run(t, dir)
			}()
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("no error")
			}
			for _, s := range must {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("allocated %d MiB for a hostile input", grew>>20)
			}
		})
	}
}
