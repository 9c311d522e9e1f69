package verify

import (
	"fmt"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/model"
)

// SourceOf is a gguf.Source over an HF model, converting it as a correct
// converter would: online linears by weight_quant of the master (codes,
// scale float32(1/s) with s = 1/max(mean|W|, 1e-5)), offline linears with
// their packed codes and the multiplier their linear_class means
// (weight_scale for autobitlinear, 1/weight_scale for bitlinear).
func SourceOf(m *model.Model) gguf.Source {
	return modelConverter{&Reference{Name: "model", Config: m.Config(), Model: m}}
}

type modelConverter struct{ ref *Reference }

func (c modelConverter) Ternary(name string) ([]int8, float32, error) {
	h, err := c.ref.linear(name)
	if err != nil {
		return nil, 0, err
	}
	if h.latent != nil {
		return h.codes, 1 / h.s, nil
	}
	return h.codes, float32(h.scale), nil
}

func (c modelConverter) Floats(name string) ([]float32, error) {
	p, ok := c.ref.Model.Param(name)
	if !ok {
		return nil, fmt.Errorf("tensor %q: not in the model", name)
	}
	return p.Float32(), nil // WriteBitNet only reads it
}
