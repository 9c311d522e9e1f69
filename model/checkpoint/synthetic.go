package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// syntheticMeanAbs is the mean|W| every synthetic offline linear stands
// for, about that of weights drawn with the default initializer range. It
// is a power of two, so that both conventions' weight_scale (1/64 and 64)
// are exact and give bit-identical products.
const syntheticMeanAbs = 1.0 / 64

// WriteSynthetic writes a structurally valid checkpoint of cfg for tests:
// config.json and every tensor of the mode's layout with small deterministic
// values (norms 1; other master weights in ±0.02 as bf16; offline linears as
// ternary codes standing for mean|W| = 1/64, so weight_scale 1/64 under
// autobitlinear and 64 when cfg's quantization_config names bitlinear), in
// one file or in shards.
func WriteSynthetic(dir string, cfg model.Config, mode string, shards int) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, spec := range cfg.Inventory() {
		if mode == Offline && spec.Kind == model.KindLinear && spec.Shape[0]%4 != 0 {
			return fmt.Errorf("%s: tensor %q: offline packing needs out_features a multiple of 4, got shape %s", dir, spec.Name, tensorfile.ShapeString(spec.Shape))
		}
	}
	conv := namedConvention(cfg)
	weightScale := float32(syntheticMeanAbs)
	if conv == model.ScaleDivides {
		weightScale = 1 / syntheticMeanAbs
	}
	var tensors []tensorfile.Source
	for i, e := range expectedTensors(cfg, mode) {
		seed := uint64(i + 1)
		n := e.spec.Elements()
		t := tensorfile.Source{Name: e.name, DType: "BF16", Shape: e.shape}
		switch {
		case e.dtypes[0] == "U8":
			t.DType = "U8"
			t.Data = func() ([]byte, error) { return syntheticPacked(n/4, seed), nil }
		case e.name != e.spec.Name: // an offline weight_scale
			t.Data = func() ([]byte, error) { return tensorfile.BF16Bytes([]float32{weightScale}), nil }
		case e.spec.Kind == model.KindNorm:
			t.Data = func() ([]byte, error) { return tensorfile.BF16Bytes(filled(n, 1)), nil }
		default:
			t.Data = func() ([]byte, error) { return tensorfile.BF16Bytes(syntheticValues(n, seed)), nil }
		}
		tensors = append(tensors, t)
	}
	return writeCheckpoint(dir, cfg, mode, conv, shards, tensors)
}

func filled(n int64, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// splitmix64 is a small deterministic generator for synthetic values.
func splitmix64(state *uint64) uint64 {
	*state += 0x9E3779B97F4A7C15
	z := *state
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// syntheticValues are uniform in [-0.02, 0.02).
func syntheticValues(n int64, seed uint64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = (float32(splitmix64(&seed)>>40)/(1<<24)*2 - 1) * 0.02
	}
	return out
}

// syntheticPacked is HF-packed ternary codes: four 2-bit codes per byte, each
// 0, 1 or 2 (standing for -1, 0, +1).
func syntheticPacked(n int64, seed uint64) []byte {
	out := make([]byte, n)
	for i := range out {
		r := splitmix64(&seed)
		var b byte
		for k := 0; k < 4; k++ {
			b |= byte(r>>(8*k)%3) << (2 * k)
		}
		out[i] = b
	}
	return out
}

// EditTensors rewrites every safetensors file of a checkpoint folder with the
// tensor list edit returns for it, for tests that need a broken checkpoint.
// The shard index is left alone, so edits can also make it inconsistent.
func EditTensors(dir string, edit func(file string, tensors []tensorfile.Tensor) []tensorfile.Tensor) error {
	lay, err := findLayout(dir)
	if err != nil {
		return err
	}
	for _, file := range lay.files {
		path := lay.path(file)
		f, err := tensorfile.Open(path)
		if err != nil {
			return err
		}
		metadata := f.Metadata
		tensors := make([]tensorfile.Tensor, 0, len(f.Tensors))
		for _, info := range f.Tensors {
			raw, err := f.Raw(info.Name)
			if err != nil {
				f.Close()
				return err
			}
			tensors = append(tensors, tensorfile.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: slices.Clone(raw)})
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := tensorfile.Write(path, metadata, edit(file, tensors)); err != nil {
			return err
		}
	}
	return nil
}

// editOne applies change to the tensor called name, wherever it is, and
// fails when no file holds it.
func editOne(dir, name string, change func(t tensorfile.Tensor) []tensorfile.Tensor) error {
	seen := false
	err := EditTensors(dir, func(_ string, tensors []tensorfile.Tensor) []tensorfile.Tensor {
		var out []tensorfile.Tensor
		for _, t := range tensors {
			if t.Name == name {
				seen = true
				out = append(out, change(t)...)
				continue
			}
			out = append(out, t)
		}
		return out
	})
	if err == nil && !seen {
		err = fmt.Errorf("%s: tensor %q: in no file of the checkpoint", dir, name)
	}
	return err
}

// DeleteTensor removes a tensor from whichever file holds it.
func DeleteTensor(dir, name string) error {
	return editOne(dir, name, func(tensorfile.Tensor) []tensorfile.Tensor { return nil })
}

// ReshapeTensor gives a tensor a new shape, with zero bytes of its dtype.
func ReshapeTensor(dir, name string, shape []int64) error {
	return editOne(dir, name, func(t tensorfile.Tensor) []tensorfile.Tensor {
		return []tensorfile.Tensor{zeroTensor(t.Name, t.DType, shape)}
	})
}

// RetypeTensor gives a tensor a new dtype, with zero bytes of its shape.
func RetypeTensor(dir, name, dtype string) error {
	return editOne(dir, name, func(t tensorfile.Tensor) []tensorfile.Tensor {
		return []tensorfile.Tensor{zeroTensor(t.Name, dtype, t.Shape)}
	})
}

// AddTensor adds a zero tensor to the first file of the checkpoint.
func AddTensor(dir, name, dtype string, shape []int64) error {
	first := true
	return EditTensors(dir, func(_ string, tensors []tensorfile.Tensor) []tensorfile.Tensor {
		if first {
			first = false
			tensors = append(tensors, zeroTensor(name, dtype, shape))
		}
		return tensors
	})
}

// RemoveFile deletes one file of a checkpoint folder, such as a shard.
func RemoveFile(dir, file string) error { return os.Remove(filepath.Join(dir, file)) }

func zeroTensor(name, dtype string, shape []int64) tensorfile.Tensor {
	n, err := tensorfile.ByteSize(dtype, shape)
	if err != nil {
		n = 0 // Write reports the bad dtype or shape with the file name.
	}
	return tensorfile.Tensor{Name: name, DType: dtype, Shape: shape, Data: make([]byte, n)}
}
