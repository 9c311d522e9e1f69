package ops

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tritter-ai/conformance/internal/fdcheck"
)

// Finite-difference checks of each op's backward against its forward, in
// float64, where central differences are accurate to ~1e-9 and any wrong
// term in a backward formula shows up.

// opCheck builds a random scalar objective Σ out·r over an op's output, so
// that one finite-difference check covers the op's whole Jacobian.
type opCheck struct{ g *rand.Rand }

func newOpCheck() *opCheck { return &opCheck{rand.New(rand.NewPCG(21, 0))} }

// rand is n standard normal values.
func (c *opCheck) rand(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = c.g.NormFloat64()
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
	c := newOpCheck()
	const N, C = 5, 12

	t.Run("rmsnorm", func(t *testing.T) {
		x, w, r := c.rand(N*C), c.rand(C), c.rand(N*C)
		f := func() float64 {
			out, rstd := make([]float64, N*C), make([]float64, N)
			RMSNorm(out, rstd, x, w, N, C, 1e-5)
			return dot(out, r)
		}
		out, rstd := make([]float64, N*C), make([]float64, N)
		RMSNorm(out, rstd, x, w, N, C, 1e-5)
		gx, gw := make([]float64, N*C), make([]float64, C)
		RMSNormBackward(gx, gw, r, x, w, rstd, N, C)
		fdcheck.Compare(t, "x", x, gx, f)
		fdcheck.Compare(t, "w", w, gw, f)
	})

	t.Run("rope", func(t *testing.T) {
		const B, T, heads, hd = 2, 5, 3, 6
		rt := NewRopeTable[float64](T, hd, 10000)
		x, r := c.rand(B*T*heads*hd), c.rand(B*T*heads*hd)
		f := func() float64 {
			y := append([]float64(nil), x...)
			Rope(y, rt, B, T, heads)
			return dot(y, r)
		}
		g := append([]float64(nil), r...)
		RopeBackward(g, rt, B, T, heads)
		fdcheck.Compare(t, "x", x, g, f)
	})

	t.Run("attention", func(t *testing.T) {
		s := AttnShape{B: 2, T: 5, NH: 4, NKV: 2, HD: 3}
		nq, nkv := s.B*s.T*s.NH*s.HD, s.B*s.T*s.NKV*s.HD
		qq, k, v, r := c.rand(nq), c.rand(nkv), c.rand(nkv), c.rand(nq)
		att := make([]float64, s.B*s.NH*s.T*s.T)
		f := func() float64 {
			out := make([]float64, nq)
			Attention(out, att, qq, k, v, s)
			return dot(out, r)
		}
		f()
		gq, gk, gv := make([]float64, nq), make([]float64, nkv), make([]float64, nkv)
		AttentionBackward(gq, gk, gv, r, att, qq, k, v, s)
		fdcheck.Compare(t, "q", qq, gq, f)
		fdcheck.Compare(t, "k", k, gk, f)
		fdcheck.Compare(t, "v", v, gv, f)
	})

	t.Run("relu2-glu", func(t *testing.T) {
		gate, up, r := c.rand(N*C), c.rand(N*C), c.rand(N*C)
		f := func() float64 {
			out := make([]float64, N*C)
			GLU(out, gate, up)
			return dot(out, r)
		}
		gg, gu := make([]float64, N*C), make([]float64, N*C)
		GLUBackward(gg, gu, r, gate, up)
		fdcheck.Compare(t, "gate", gate, gg, f)
		fdcheck.Compare(t, "up", up, gu, f)
	})

	// The quantizers have no useful derivative, so BitLinear's backward is
	// straight-through by definition: that of x·Wᵀ taken at
	// (act_quant(x), weight_quant(W)).
	t.Run("bitlinear-straight-through", func(t *testing.T) {
		const out, in = 7, C
		x, w, gy := c.rand(N*in), c.rand(out*in), c.rand(N*out)
		gx, gw := make([]float64, N*in), make([]float64, out*in)
		NewFloatLinear(w, out, in, Rounding{}).Backward(gx, gw, x, gy, N)
		xq, wq := make([]float64, N*in), make([]float64, out*in)
		ActQuant(xq, x, N, in, Rounding{})
		WeightQuant(wq, w, Rounding{})
		wantX, wantW := make([]float64, N*in), make([]float64, out*in)
		MatmulNN(wantX, gy, wq, N, in, out, true)
		MatmulTN(wantW, gy, xq, out, in, N, false)
		if !slices.Equal(gx, wantX) || !slices.Equal(gw, wantW) {
			t.Error("BitLinear backward differs from x·Wᵀ's at (act_quant(x), weight_quant(W))")
		}
	})

	t.Run("embedding-head-crossentropy", func(t *testing.T) {
		const B, T, V, H = 2, 4, 9, 5
		ids := []int32{1, 8, 0, 3, 3, 2, 7, 1}
		table, w := c.rand(V*H), c.rand(V*H)
		f := func() float64 {
			x := make([]float64, B*T*H)
			Embedding(x, DenseMatrix[float64]{Data: table, Cols: H}, ids, H)
			logits := make([]float64, B*T*V)
			Head(logits, x, DenseMatrix[float64]{Data: w, Cols: H}, B*T, V, H)
			return CrossEntropy[float64](nil, logits, ids, B, T, V)
		}
		x := make([]float64, B*T*H)
		Embedding(x, DenseMatrix[float64]{Data: table, Cols: H}, ids, H)
		logits := make([]float64, B*T*V)
		Head(logits, x, DenseMatrix[float64]{Data: w, Cols: H}, B*T, V, H)
		gl := make([]float64, B*T*V)
		CrossEntropy(gl, logits, ids, B, T, V)
		gx, gw, gt := make([]float64, B*T*H), make([]float64, V*H), make([]float64, V*H)
		HeadBackward(gx, gw, gl, x, DenseMatrix[float64]{Data: w, Cols: H}, B*T, V, H)
		EmbeddingBackward(gt, gx, ids, H)
		fdcheck.Compare(t, "head", w, gw, f)
		fdcheck.Compare(t, "table", table, gt, f)
	})
}
