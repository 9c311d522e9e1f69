package model

import (
	"fmt"
	"testing"

	"github.com/tritter-ai/conformance/internal/fdcheck"
	"github.com/tritter-ai/conformance/internal/ops"
)

// Finite-difference checks of the hand-written backward pass. Everything
// runs in float64 with both quantizers replaced by the identity (their
// straight-through gradient is the identity's), so central differences are
// accurate to ~1e-9 and any wrong term in a backward formula shows up.

func tinyConfig(tied bool) Config {
	return Config{
		HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: 32,
		MaxPositionEmbeddings: 16, RopeTheta: 10000, RMSNormEps: 1e-5,
		HiddenAct: "relu2", TieWordEmbeddings: tied, InitializerRange: 0.3,
	}
}

func tinyBatch(cfg Config, B, T int, seed uint64) Batch {
	g := newNormalSource(seed, 99, 0)
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(g.uint64() % uint64(cfg.VocabSize))
	}
	return Batch{B: B, T: T, IDs: ids}
}

// identityLinear is a BitLinear whose quantizers are the identity: y =
// x·Wᵀ. Its straight-through backward is then the exact gradient, which
// finite differences can check.
type identityLinear struct {
	out, in int
	w       []float64
}

func newIdentityLinear(w []float64, out, in int, _ ops.Rounding) ops.Linear[float64] {
	return identityLinear{out, in, w}
}

func (l identityLinear) Dims() (int, int) { return l.out, l.in }

func (l identityLinear) Forward(y, x []float64, N int) {
	ops.MatmulNT(y, x, l.w, N, l.out, l.in, false)
}

func (l identityLinear) Backward(gradX, gradW, x, gradY []float64, N int) {
	ops.MatmulNN(gradX, gradY, l.w, N, l.in, l.out, true)
	if gradW != nil {
		ops.MatmulTN(gradW, gradY, x, l.out, l.in, N, false)
	}
}

// float64Net runs the model's architecture in float64 on its own copy of
// the parameters, with identity quantizers.
type float64Net struct {
	cfg    Config
	params map[string][]float64
}

func newFloat64Net(m *Model) *float64Net {
	f := &float64Net{cfg: m.cfg, params: map[string][]float64{}}
	for _, p := range m.params {
		v := make([]float64, Elements(p.shape))
		for i, x := range p.Float32() {
			v[i] = float64(x)
		}
		f.params[p.spec.Name] = v
	}
	return f
}

func (f *float64Net) network(B, T int) *network[float64] {
	d := configDims(f.cfg, B, T)
	embed := ops.DenseMatrix[float64]{Data: f.params["model.embed_tokens.weight"], Cols: d.H}
	head := embed
	if !f.cfg.TieWordEmbeddings {
		head = ops.DenseMatrix[float64]{Data: f.params["lm_head.weight"], Cols: d.H}
	}
	table := ops.Reference[float64]()
	table.Linear = newIdentityLinear
	return &network[float64]{
		d: d, ops: table, embed: embed, head: head, tied: f.cfg.TieWordEmbeddings,
		finalNorm: f.params["model.norm.weight"],
		layer: func(i int) (*layerWeights[float64], error) {
			w := &layerWeights[float64]{}
			for slot := 0; slot < slotsPerLayer; slot++ {
				name := layerName(i, slot)
				v := f.params[name]
				spec := f.specOf(name)
				if spec.Kind == KindNorm {
					w.norms[slot] = v
				} else {
					w.linears[slot] = table.Linear(v, int(spec.Shape[0]), int(spec.Shape[1]), ops.Rounding{})
				}
			}
			return w, nil
		},
		layers: int(f.cfg.NumHiddenLayers),
		names:  layerName,
	}
}

func (f *float64Net) specOf(name string) TensorSpec {
	for _, s := range f.cfg.Inventory() {
		if s.Name == name {
			return s
		}
	}
	panic("no tensor " + name)
}

func (f *float64Net) loss(b Batch) float64 {
	r, err := f.network(b.B, b.T).forward(b.IDs, false)
	if err != nil {
		panic(err)
	}
	return ops.CrossEntropy[float64](nil, r.logits, b.IDs, b.B, b.T, int(f.cfg.VocabSize))
}

func TestFiniteDifferencesModel(t *testing.T) {
	for _, tied := range []bool{true, false} {
		t.Run(fmt.Sprintf("tied=%v", tied), func(t *testing.T) {
			cfg := tinyConfig(tied)
			m, err := New(cfg, Options{Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			// non-trivial norm weights, so their gradients are exercised
			g := newNormalSource(8, 0, 0)
			for _, p := range m.params {
				if p.spec.Kind == KindNorm {
					v := p.Float32()
					g.fill(v, 0.3)
					for i := range v {
						v[i]++
					}
				}
			}
			f := newFloat64Net(m)
			b := tinyBatch(cfg, 2, 6, 3)
			grads := map[string][]float64{}
			_, err = f.network(b.B, b.T).gradients(b.IDs, func(name string, grad []float64) {
				if _, dup := grads[name]; dup {
					t.Errorf("%s visited twice", name)
				}
				grads[name] = append([]float64(nil), grad...)
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, spec := range cfg.Inventory() {
				an, ok := grads[spec.Name]
				if !ok {
					t.Errorf("%s: no gradient", spec.Name)
					continue
				}
				fdcheck.Compare(t, spec.Name, f.params[spec.Name], an, func() float64 { return f.loss(b) })
			}
		})
	}
}
