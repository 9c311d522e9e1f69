package model

import (
	"fmt"
	"math"
	"testing"

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

// fdCompare checks analytic against central differences of loss over the
// entries of x, returning the relative L2 error.
func fdCompare(t *testing.T, name string, x, analytic []float64, loss func() float64) {
	t.Helper()
	const h = 1e-6
	var num, den, worst float64
	worstAt := -1
	stride := 1
	if testing.Short() {
		stride = 3 // every third entry keeps -race -short quick
	}
	for i := 0; i < len(x); i += stride {
		v := x[i]
		x[i] = v + h
		lp := loss()
		x[i] = v - h
		lm := loss()
		x[i] = v
		fd := (lp - lm) / (2 * h)
		d := analytic[i] - fd
		num += d * d
		den += fd * fd
		if e := math.Abs(d) / (1e-6 + math.Abs(fd)); e > worst {
			worst, worstAt = e, i
		}
	}
	rel := math.Sqrt(num / math.Max(den, 1e-300))
	if den == 0 {
		rel = math.Sqrt(num)
	}
	if !(rel < 1e-6) {
		t.Errorf("%s: analytic vs finite-difference relL2 %.3g (worst element %d rel %.3g)", name, rel, worstAt, worst)
	} else if testing.Verbose() {
		t.Logf("%-45s relL2 %.2g", name, rel)
	}
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
				fdCompare(t, spec.Name, f.params[spec.Name], an, func() float64 { return f.loss(b) })
			}
		})
	}
}

// opCheck builds a random scalar objective Σ out·r over an op's output, so
// that one finite-difference check covers the op's whole Jacobian.
type opCheck struct {
	t *testing.T
	g *normalSource
}

func newOpCheck(t *testing.T) *opCheck { return &opCheck{t, newNormalSource(21, 0, 0)} }

func (c *opCheck) rand(n int) []float64 {
	v32 := make([]float32, n)
	c.g.fill(v32, 1)
	v := make([]float64, n)
	for i, x := range v32 {
		v[i] = float64(x)
	}
	return v
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func TestFiniteDifferencesOps(t *testing.T) {
	c := newOpCheck(t)
	const N, C = 5, 12

	t.Run("rmsnorm", func(t *testing.T) {
		x, w, r := c.rand(N*C), c.rand(C), c.rand(N*C)
		f := func() float64 {
			out, rstd := make([]float64, N*C), make([]float64, N)
			ops.RMSNorm(out, rstd, x, w, N, C, 1e-5)
			return dot(out, r)
		}
		out, rstd := make([]float64, N*C), make([]float64, N)
		ops.RMSNorm(out, rstd, x, w, N, C, 1e-5)
		gx, gw := make([]float64, N*C), make([]float64, C)
		ops.RMSNormBackward(gx, gw, r, x, w, rstd, N, C)
		fdCompare(t, "x", x, gx, f)
		fdCompare(t, "w", w, gw, f)
	})

	t.Run("rope", func(t *testing.T) {
		const B, T, heads, hd = 2, 5, 3, 6
		rt := ops.NewRopeTable[float64](T, hd, 10000)
		x, r := c.rand(B*T*heads*hd), c.rand(B*T*heads*hd)
		f := func() float64 {
			y := append([]float64(nil), x...)
			ops.Rope(y, rt, B, T, heads)
			return dot(y, r)
		}
		g := append([]float64(nil), r...)
		ops.RopeBackward(g, rt, B, T, heads)
		fdCompare(t, "x", x, g, f)
	})

	t.Run("attention", func(t *testing.T) {
		s := ops.AttnShape{B: 2, T: 5, NH: 4, NKV: 2, HD: 3}
		nq, nkv := s.B*s.T*s.NH*s.HD, s.B*s.T*s.NKV*s.HD
		qq, k, v, r := c.rand(nq), c.rand(nkv), c.rand(nkv), c.rand(nq)
		att := make([]float64, s.B*s.NH*s.T*s.T)
		f := func() float64 {
			out := make([]float64, nq)
			ops.Attention(out, att, qq, k, v, s)
			return dot(out, r)
		}
		f()
		gq, gk, gv := make([]float64, nq), make([]float64, nkv), make([]float64, nkv)
		ops.AttentionBackward(gq, gk, gv, r, att, qq, k, v, s)
		fdCompare(t, "q", qq, gq, f)
		fdCompare(t, "k", k, gk, f)
		fdCompare(t, "v", v, gv, f)
	})

	t.Run("relu2-glu", func(t *testing.T) {
		gate, up, r := c.rand(N*C), c.rand(N*C), c.rand(N*C)
		f := func() float64 {
			out := make([]float64, N*C)
			ops.GLU(out, gate, up)
			return dot(out, r)
		}
		gg, gu := make([]float64, N*C), make([]float64, N*C)
		ops.GLUBackward(gg, gu, r, gate, up)
		fdCompare(t, "gate", gate, gg, f)
		fdCompare(t, "up", up, gu, f)
	})

	// The quantizers have no useful derivative, so BitLinear's backward is
	// straight-through by definition: that of x·Wᵀ taken at
	// (act_quant(x), weight_quant(W)), which the identity linear's
	// finite-difference check (the whole model above) covers.
	t.Run("bitlinear-straight-through", func(t *testing.T) {
		const out, in = 7, C
		x, w, gy := c.rand(N*in), c.rand(out*in), c.rand(N*out)
		gx, gw := make([]float64, N*in), make([]float64, out*in)
		ops.NewFloatLinear(w, out, in, ops.Rounding{}).Backward(gx, gw, x, gy, N)
		xq, wq := make([]float64, N*in), make([]float64, out*in)
		ops.ActQuant(xq, x, N, in, ops.Rounding{})
		ops.WeightQuant(wq, w, ops.Rounding{})
		wantX, wantW := make([]float64, N*in), make([]float64, out*in)
		newIdentityLinear(wq, out, in, ops.Rounding{}).Backward(wantX, wantW, xq, gy, N)
		if compare(narrowed(gx), narrowed(wantX)).maxAbs != 0 || compare(narrowed(gw), narrowed(wantW)).maxAbs != 0 {
			t.Error("BitLinear backward differs from the identity linear's at (act_quant(x), weight_quant(W))")
		}
	})

	t.Run("embedding-head-crossentropy", func(t *testing.T) {
		const B, T, V, H = 2, 4, 9, 5
		ids := []int32{1, 8, 0, 3, 3, 2, 7, 1}
		table, w := c.rand(V*H), c.rand(V*H)
		f := func() float64 {
			x := make([]float64, B*T*H)
			ops.Embedding(x, ops.DenseMatrix[float64]{Data: table, Cols: H}, ids, H)
			logits := make([]float64, B*T*V)
			ops.Head(logits, x, ops.DenseMatrix[float64]{Data: w, Cols: H}, B*T, V, H)
			return ops.CrossEntropy[float64](nil, logits, ids, B, T, V)
		}
		x := make([]float64, B*T*H)
		ops.Embedding(x, ops.DenseMatrix[float64]{Data: table, Cols: H}, ids, H)
		logits := make([]float64, B*T*V)
		ops.Head(logits, x, ops.DenseMatrix[float64]{Data: w, Cols: H}, B*T, V, H)
		gl := make([]float64, B*T*V)
		ops.CrossEntropy(gl, logits, ids, B, T, V)
		gx, gw, gt := make([]float64, B*T*H), make([]float64, V*H), make([]float64, V*H)
		ops.HeadBackward(gx, gw, gl, x, ops.DenseMatrix[float64]{Data: w, Cols: H}, B*T, V, H)
		ops.EmbeddingBackward(gt, gx, ids, H)
		fdCompare(t, "head", w, gw, f)
		fdCompare(t, "table", table, gt, f)
	})
}
