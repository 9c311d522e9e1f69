package numerics

import (
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/tritter-ai/conformance/kernels/sgemm"
)

// Per-element error bounds for one op, from numerical analysis.
//
// An op check gives the model the golden inputs of one op and compares its
// output with the golden output. Both outputs approximate the same exact
// value: the golden one was computed by another float32 implementation
// from the same inputs. So |actual − golden| ≤ E_actual + E_golden, where E
// is the forward error bound of a correct float32 evaluation. Every bound
// here is 2·E plus, for BitLinear, a flip allowance, computed per element in
// float64 from the golden inputs (golden/TOLERANCE.md derives each one).
//
// Notation: u = 2^-24 is float32's unit roundoff and γ(n) = n·u/(1−n·u)
// bounds the relative error of n rounded operations (Higham, Accuracy and
// Stability of Numerical Algorithms, §3.1). A sum of n terms evaluated in
// any order has error at most γ(n−1)·Σ|terms|, which is why the bounds are
// scaled by the magnitudes entering each output and not by the output: an
// output that cancels to nearly zero still carries the rounding of its
// terms. Tensors are row-major; N = B·T is the number of tokens.

// unitRoundoff is u for float32.
const unitRoundoff = 0x1p-24

// tinyBound absorbs float32 underflow: results below the normal range
// (2^-126) carry an absolute error of up to 2^-150 per operation.
const tinyBound = 0x1p-110

// gamma is γ(n) = n·u / (1 − n·u).
func gamma(n int) float64 {
	nu := float64(n) * unitRoundoff
	return nu / (1 - nu)
}

// absMatMul returns the exact-product upper bound of |a|·|b| for the layout
// of sgemm's NT/NN/TN (m×n output, inner size k): every term is
// non-negative, so the float32 result times (1+2γ(k)) bounds the exact sum.
func absMatMul(layout string, a, b []float32, m, n, k int) []float64 {
	absA, absB := absolute(a), absolute(b)
	c := make([]float32, m*n)
	switch layout {
	case "NT":
		sgemm.NT(c, absA, absB, m, n, k, false)
	case "NN":
		sgemm.NN(c, absA, absB, m, n, k, false)
	case "TN":
		sgemm.TN(c, absA, absB, m, n, k, false)
	}
	out := make([]float64, len(c))
	inflate := 1 + 2*gamma(k)
	for i, v := range c {
		out[i] = float64(v) * inflate
	}
	return out
}

func absolute(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(math.Abs(float64(v)))
	}
	return out
}

// ----------------------------------------------------------------------------
// RMSNorm: y_j = w_j · x_j · r, r = 1/sqrt(Σx²/C + eps)

// rmsRelErr is the relative error bound of r in float32: the mean of C
// squares (γ(C+1)), the eps addition, the square root (half the relative
// error of its argument, plus one rounding) and the reciprocal.
func rmsRelErr(C int) float64 { return 0.5*gamma(C+2) + 3*unitRoundoff }

// rmsStats returns r per row of x[N,C] in float64.
func rmsStats(x []float32, N, C int, eps float64) []float64 {
	r := make([]float64, N)
	for n := range r {
		var s float64
		for _, v := range x[n*C : n*C+C] {
			s += float64(v) * float64(v)
		}
		r[n] = 1 / math.Sqrt(s/float64(C)+float64(float32(eps)))
	}
	return r
}

// rmsNormBound bounds each output of rmsnorm(x[N,C], w[C]): the relative
// error of r plus the two products x·r and w·(x·r).
func rmsNormBound(x, w []float32, N, C int, eps float64) []float64 {
	r := rmsStats(x, N, C, eps)
	rel := 2 * (rmsRelErr(C) + gamma(2))
	b := make([]float64, N*C)
	for n := 0; n < N; n++ {
		for j := 0; j < C; j++ {
			b[n*C+j] = rel*math.Abs(float64(w[j])*float64(x[n*C+j]))*r[n] + tinyBound
		}
	}
	return b
}

// rmsNormBackwardBound bounds gradX[N,C] and gradW[C] of rmsnorm from the
// upstream gradient g[N,C], with
//
//	gradX_j = r·w_j·g_j − r³/C · x_j · Σ_i g_i·w_i·x_i
//	gradW_j = Σ_n g_nj · x_nj · r_n
//
// The first term of gradX carries r's error once, the second three times
// plus the rounding of the C-term dot product.
func rmsNormBackwardBound(x, w, g []float32, N, C int, eps float64) (gradX, gradW []float64) {
	r := rmsStats(x, N, C, eps)
	er := rmsRelErr(C)
	gradX, gradW = make([]float64, N*C), make([]float64, C)
	magW := make([]float64, C)
	for n := 0; n < N; n++ {
		xn, gn := x[n*C:n*C+C], g[n*C:n*C+C]
		var dot float64
		for i := range xn {
			dot += math.Abs(float64(gn[i]) * float64(w[i]) * float64(xn[i]))
		}
		rn := r[n]
		second := rn * rn * rn / float64(C) * dot
		for j := range xn {
			first := rn * math.Abs(float64(w[j])*float64(gn[j]))
			gradX[n*C+j] = 2*((er+gamma(3))*first+(3*er+gamma(C+4))*second*math.Abs(float64(xn[j]))) + tinyBound
			magW[j] += math.Abs(float64(gn[j])*float64(xn[j])) * rn
		}
	}
	for j := range gradW {
		gradW[j] = 2*(gamma(N+3)+er)*magW[j] + tinyBound
	}
	return gradX, gradW
}

// ----------------------------------------------------------------------------
// BitLinear: y = linear(act_quant(x), weight_quant(W))

// ternaryCodes is one quantized operand: its codes, scales, and the
// elements whose rounding decision a correct float32 implementation may
// take either way (flippable).
type ternaryCodes struct {
	codes     []float32 // round(v·s) clamped, as exact arithmetic decides it
	flippable []bool
	scale     []float64 // per row for activations, one value for weights
}

// Flip windows. A correct implementation computes the pre-rounding value
// v = x·s in float32 from its own s, so it may differ from exact v by
// δ = (relative error of s + u)·|v|. For activations s = 127/max|x| is one
// division of exact values (max is exact): δ = 2u·|v|. For weights
// s = 1/max(mean|W|, 1e-5): the mean of n magnitudes is a sum, whose error
// depends on the summation order. We allow any order at least as accurate
// as pairwise summation, (⌈log2 n⌉+1)·u (torch's cascade sum, float64
// accumulation and Kahan summation all qualify; naive float32 accumulation
// over millions of weights does not, and is not a correct mean), plus the
// division, the reciprocal and the product: δ = ((⌈log2 n⌉+1)·u + 3u)·|v|.
// A decision is flippable when exact v lies within δ of a rounding boundary
// (k+½ for activations, ±½ for ternary weights); each side of the
// comparison doubles for safety.
func actFlipWindow(v float64) float64 { return 2 * 2 * unitRoundoff * math.Abs(v) }

func weightScaleRelErr(n int) float64 {
	return (math.Ceil(math.Log2(float64(max(n, 2)))) + 1 + 2) * unitRoundoff
}

func weightFlipWindow(v float64, n int) float64 {
	return 2 * (weightScaleRelErr(n) + unitRoundoff) * math.Abs(v)
}

// nearHalf reports whether v is within window of k+½ for some integer k,
// and whether it is exactly a half-integer.
func nearHalf(v, window float64) (near, exact bool) {
	f := v - math.Floor(v) // in [0,1)
	d := math.Abs(f - 0.5)
	return d <= window, d == 0
}

// quantizeActivations quantizes x[N,C] per row in exact arithmetic. An
// exact tie (v exactly k+½) is decided by round-half-to-even when the row's
// scale 127/max is exactly representable in float32, because then every
// float32 evaluation of x·s is exact too; otherwise a tie is flippable.
func quantizeActivations(x []float32, N, C int) ternaryCodes {
	q := ternaryCodes{codes: make([]float32, N*C), flippable: make([]bool, N*C), scale: make([]float64, N)}
	for n := 0; n < N; n++ {
		xn := x[n*C : n*C+C]
		m := 0.0
		for _, v := range xn {
			m = math.Max(m, math.Abs(float64(v)))
		}
		m = math.Max(m, float64(float32(1e-5)))
		s := 127 / m
		q.scale[n] = s
		exactScale := float64(float32(s))*m == 127
		for j, v := range xn {
			pre := float64(v) * s
			c := math.Max(-128, math.Min(127, math.RoundToEven(pre)))
			q.codes[n*C+j] = float32(c)
			near, exact := nearHalf(pre, actFlipWindow(pre))
			q.flippable[n*C+j] = near && !(exact && exactScale)
		}
	}
	return q
}

// quantizeWeights quantizes w[out,in] in exact arithmetic. Exact ties
// (|W·s| exactly ½) are flippable unless the mean is exact in any
// summation order (every partial sum representable in float32) and s is
// exactly representable.
func quantizeWeights(w []float32) ternaryCodes {
	n := len(w)
	var sum float64
	exactSum := true
	minULP := math.Inf(1)
	for _, v := range w {
		a := math.Abs(float64(v))
		sum += a
		if a != 0 {
			_, e := math.Frexp(a)
			minULP = math.Min(minULP, math.Ldexp(1, e-24))
		}
	}
	if !math.IsInf(minULP, 1) && sum/minULP >= 1<<24 {
		exactSum = false
	}
	mean := math.Max(sum/float64(n), float64(float32(1e-5)))
	s := 1 / mean
	exactScale := exactSum && float64(float32(mean)) == mean && float64(float32(s))*mean == 1
	q := ternaryCodes{codes: make([]float32, n), flippable: make([]bool, n), scale: []float64{s}}
	for i, v := range w {
		pre := float64(v) * s
		c := math.Max(-1, math.Min(1, math.RoundToEven(pre)))
		q.codes[i] = float32(c)
		d := math.Abs(math.Abs(pre) - 0.5)
		q.flippable[i] = d <= weightFlipWindow(pre, n) && !(d == 0 && exactScale)
	}
	return q
}

// bitLinearBound bounds y[N,out] = act_quant(x[N,in]) · weight_quant(W[out,in])ᵀ:
// the rounding of the in-term dot product of dequantized operands and the
// error of the weight scale (it scales every output), both relative to
// Σ|terms| so that cancellation cannot hide them, and one flip
// allowance per flippable activation or weight: the output moves by the
// code step times the other operand's code.
func bitLinearBound(x, w []float32, N, out, in int) []float64 {
	xc := quantizeActivations(x, N, in)
	wc := quantizeWeights(w)
	sw := wc.scale[0]
	mag := absMatMul("NT", xc.codes, wc.codes, N, out, in) // Σ|cx|·|cw|
	b := make([]float64, N*out)
	scaleErr := weightScaleRelErr(out*in) + 2*unitRoundoff
	for n := 0; n < N; n++ {
		unit := 1 / (xc.scale[n] * sw)
		for j := 0; j < out; j++ {
			i := n*out + j
			b[i] = 2 * (gamma(in+3) + scaleErr) * mag[i] * unit
		}
	}
	// flippable activation (n,k): y[n,j] moves by max(|cw[j,k]|, flippable weight) / (s_x·s_w)
	for n := 0; n < N; n++ {
		unit := 1 / (xc.scale[n] * sw)
		for k := 0; k < in; k++ {
			if !xc.flippable[n*in+k] {
				continue
			}
			for j := 0; j < out; j++ {
				step := math.Abs(float64(wc.codes[j*in+k]))
				if wc.flippable[j*in+k] {
					step = 1
				}
				b[n*out+j] += step * unit
			}
		}
	}
	// flippable weight (j,k): y[n,j] moves by (|cx[n,k]| + flippable activation) / (s_x·s_w)
	for j := 0; j < out; j++ {
		for k := 0; k < in; k++ {
			if !wc.flippable[j*in+k] {
				continue
			}
			for n := 0; n < N; n++ {
				step := math.Abs(float64(xc.codes[n*in+k]))
				if xc.flippable[n*in+k] {
					step++
				}
				b[n*out+j] += step / (xc.scale[n] * sw)
			}
		}
	}
	return addTiny(b)
}

// bitLinearBackwardBound bounds the straight-through gradients of
// y = act_quant(x)·weight_quant(W)ᵀ for the upstream gradient g[N,out]:
//
//	gradX = g · Wq      (rounding of out terms, the weight scale, and each
//	                     flippable weight moving gradX[n,k] by |g[n,j]|/s_w)
//	gradW = gᵀ · xq     (rounding of N terms, each flippable activation
//	                     moving gradW[j,k] by |g[n,j]|/s_x[n])
func bitLinearBackwardBound(x, w, g []float32, N, out, in int) (gradX, gradW []float64) {
	xc := quantizeActivations(x, N, in)
	wc := quantizeWeights(w)
	sw := wc.scale[0]
	magX := absMatMul("NN", g, wc.codes, N, in, out) // Σ_j |g[n,j]|·|cw[j,k]|
	gradX = make([]float64, N*in)
	scaleErr := weightScaleRelErr(out*in) + unitRoundoff
	for i := range gradX {
		// out+4: up to three BitLinears (q, k, v) add into one input gradient
		gradX[i] = 2 * (gamma(out+4) + scaleErr) * magX[i] / sw
	}
	for j := 0; j < out; j++ {
		for k := 0; k < in; k++ {
			if !wc.flippable[j*in+k] {
				continue
			}
			for n := 0; n < N; n++ {
				gradX[n*in+k] += math.Abs(float64(g[n*out+j])) / sw
			}
		}
	}
	xq := make([]float32, N*in) // |cx|/s_x per row
	for n := 0; n < N; n++ {
		for k := 0; k < in; k++ {
			xq[n*in+k] = float32(math.Abs(float64(xc.codes[n*in+k])) / xc.scale[n])
		}
	}
	magW := absMatMul("TN", g, xq, out, in, N) // Σ_n |g[n,j]|·|xq[n,k]|
	gradW = make([]float64, out*in)
	for i := range gradW {
		gradW[i] = 2 * gamma(N+3) * magW[i]
	}
	for n := 0; n < N; n++ {
		for k := 0; k < in; k++ {
			if !xc.flippable[n*in+k] {
				continue
			}
			for j := 0; j < out; j++ {
				gradW[j*in+k] += math.Abs(float64(g[n*out+j])) / xc.scale[n]
			}
		}
	}
	return addTiny(gradX), addTiny(gradW)
}

func addTiny(b []float64) []float64 {
	floats.AddConst(tinyBound, b)
	return b
}

// ----------------------------------------------------------------------------
// elementwise ops

// productBound bounds an elementwise product of `factors` rounded
// multiplications whose exact magnitude is mag: 2·γ(factors)·mag.
func productBound(mag []float64, factors int) []float64 {
	b := make([]float64, len(mag))
	for i, m := range mag {
		b[i] = 2*gamma(factors)*m + tinyBound
	}
	return b
}

// reluSqBound bounds act = relu(gate)²·up: two rounded products, and one
// more rounding for a square taken by a pow function (≤ 1 ulp, not ½).
func reluSqBound(gate, up []float32) []float64 {
	mag := make([]float64, len(gate))
	for i, g := range gate {
		if g > 0 {
			mag[i] = float64(g) * float64(g) * math.Abs(float64(up[i]))
		}
	}
	return productBound(mag, 3)
}

// reluSqBackwardBound bounds gradGate = 2·relu(g)·up·d and gradUp =
// relu(g)²·d: at most three and two rounded products in any evaluation
// order (autograd of pow or of g·g), one more for a pow function's ulp.
func reluSqBackwardBound(gate, up, d []float32) (gradGate, gradUp []float64) {
	mg, mu := make([]float64, len(gate)), make([]float64, len(gate))
	for i, g := range gate {
		if g > 0 {
			gd := float64(g) * math.Abs(float64(d[i]))
			mg[i] = 2 * gd * math.Abs(float64(up[i]))
			mu[i] = gd * float64(g)
		}
	}
	return productBound(mg, 4), productBound(mu, 3)
}

// sumBound bounds an elementwise sum of terms (one rounded addition per
// extra term, on top of each term's own bound): Σ bound_t + 2·γ(terms−1)·Σ|t|.
func sumBound(terms [][]float32, bounds ...[]float64) []float64 {
	b := make([]float64, len(terms[0]))
	for i := range b {
		var mag float64
		for _, t := range terms {
			mag += math.Abs(float64(t[i]))
		}
		b[i] = 2*gamma(len(terms)-1)*mag + tinyBound
		for _, tb := range bounds {
			b[i] += tb[i]
		}
	}
	return b
}
