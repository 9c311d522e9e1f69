package checkpoint

import (
	"fmt"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// Save writes m as an HF checkpoint in dir, in one file (shards = 1) or in
// shards with an index.
//
// Master weights (every tensor online; embedding, norms and lm_head offline)
// are written as BF16 when every one of their values is exactly a bfloat16,
// which holds for models loaded from bf16 checkpoints or stored as bf16, and
// as F32 otherwise, so a save never rounds.
//
// Offline, a linear made offline by model.SetOffline (as Load does for an
// offline checkpoint) is written with its own ternary codes and its own
// weight_scale, bit for bit, and config.json names its convention
// (linear_class), so a saved offline checkpoint is the checkpoint it was
// loaded from. Any other linear is quantized as online quantization would
// (s = 1/max(mean|W|, 1e-5), W ternarized at s) and stored packed as uint8
// [out/4, in] with an F32 weight_scale of 1/s (autobitlinear) or s
// (bitlinear, when the model's config names it), so the saved model
// computes the same products.
func Save(m *model.Model, dir string, mode string, shards int) error {
	cfg := m.Config()
	params := m.Params()
	packs := func(p *model.Param) bool { return mode == Offline && p.Spec().Kind == model.KindLinear }
	conv, err := saveConvention(m, dir)
	if err != nil {
		return err
	}
	masterDType := "BF16"
	for _, p := range params {
		if !packs(p) && !exactInBF16(p.Float32()) {
			masterDType = "F32"
			break
		}
	}
	cfg.TorchDtype = map[string]string{"BF16": "bfloat16", "F32": "float32"}[masterDType]
	var tensors []tensorfile.Source
	for _, p := range params {
		name := p.Name()
		shape := p.Shape()
		if !packs(p) {
			t := tensorfile.Source{Name: name, DType: masterDType, Shape: int64Shape(shape)}
			if masterDType == "BF16" {
				t.Data = func() ([]byte, error) { return tensorfile.BF16Bytes(p.Float32()), nil }
			} else {
				t.Data = func() ([]byte, error) { return tensorfile.Float32Bytes(p.Float32()), nil }
			}
			tensors = append(tensors, t)
			continue
		}
		out, in := shape[0], shape[1]
		if out%4 != 0 {
			return fmt.Errorf("%s: tensor %q: offline packing needs out_features a multiple of 4, got shape %s", dir, name, model.ShapeString(shape))
		}
		packed, weightScale := func() ([]byte, error) { return packOnline(p) }, func() float32 {
			s := kernels.WeightScale(p.Float32())
			if conv == model.ScaleDivides {
				return s
			}
			return 1 / s
		}
		if w, scale, _, ok := p.Offline(); ok {
			packed, weightScale = func() ([]byte, error) { return w.HFPacked(), nil }, func() float32 { return scale }
		}
		tensors = append(tensors,
			tensorfile.Source{Name: name, DType: "U8", Shape: []int64{int64(out / 4), int64(in)}, Data: packed},
			tensorfile.Source{Name: scaleName(name), DType: "F32", Shape: []int64{1},
				Data: func() ([]byte, error) { return tensorfile.Float32Bytes([]float32{weightScale()}), nil }},
		)
	}
	return writeCheckpoint(dir, cfg, mode, conv, shards, tensors)
}

// saveConvention is the convention of the model's offline linears, which
// must all agree, or the one its config names when it has none.
func saveConvention(m *model.Model, dir string) (model.ScaleConvention, error) {
	conv, first := namedConvention(m.Config()), ""
	for _, p := range m.Params() {
		_, _, c, ok := p.Offline()
		switch {
		case !ok:
		case first == "":
			conv, first = c, p.Name()
		case c != conv:
			return 0, fmt.Errorf("%s: tensor %q has weight_scale convention %v but %q has %v; one checkpoint holds one linear_class", dir, p.Name(), c, first, conv)
		}
	}
	return conv, nil
}

// packOnline quantizes a latent linear weight as online quantization does
// and returns it in the offline HF layout.
func packOnline(p *model.Param) ([]byte, error) {
	w := p.Float32()
	shape := p.Shape()
	ternary := make([]int8, len(w))
	kernels.Ternarize(ternary, w, kernels.WeightScale(w))
	t, err := kernels.PackTernary(ternary, shape[0], shape[1])
	if err != nil {
		return nil, err // WriteStream names the file and tensor
	}
	return t.HFPacked(), nil
}

func exactInBF16(values []float32) bool {
	for _, v := range values {
		if v == v && tensorfile.BF16ToFloat32(tensorfile.Float32ToBF16(v)) != v {
			return false
		}
	}
	return true
}

func int64Shape(shape []int) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}
