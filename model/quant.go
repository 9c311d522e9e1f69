package model

import "math"

// quirks are deliberate deviations from the reference model. The zero value
// is the reference model, which is all production code ever builds; only
// the package's tests (export_test.go) set fields, to check that the
// conformance harness catches each bug and to run finite differences.
type quirks struct {
	identityQuant      bool // both quantizers are the identity (finite differences)
	roundHalfAway      bool // math.Round instead of round half to even
	maxWeightScale     bool // weight scale from max|W| instead of mean|W|
	noAttnSubNorm      bool
	noFFNSubNorm       bool
	silu               bool // silu(gate)·up instead of relu(gate)²·up
	interleavedRope    bool
	gqaModMapping      bool // KV head = h mod nkv
	noCausalMask       bool
	quantizedLMHead    bool // lm_head as a BitLinear
	epsOutsideSqrt     bool // x / (sqrt(mean x²) + eps)
	attnScaleOneOverHD bool
	noSTE              bool // zero gradient through both quantizers
	tiedGradOnePath    bool // tied embedding gradient from the lookup only
	forceFloat         bool // run BitLinears on the float path even when kernels are asked for

	actQuantPerTensor    bool // one activation scale for the whole input instead of one per token
	weightGradLatentX    bool // grad W = gradYᵀ·x instead of gradYᵀ·act_quant(x)
	inputGradLatentW     bool // grad x = gradY·W (latent) instead of gradY·weight_quant(W)
	noAttnResidual       bool // h = o instead of x + o
	mlpResidualFromInput bool // out = x + down instead of h + down
	noResidualGrad       bool // the attention residual passes no gradient to x
	normGradNoMeanTerm   bool // RMSNorm backward without the −r³/C·x·Σ g·w·x term
	normWeightGradNoRstd bool // RMSNorm weight gradient Σ g·x, missing the 1/rms factor
	softmaxGradNoSum     bool // attention backward without the −Σ p·dp term
	gqaGradFirstHead     bool // GQA backward: K/V gradients from the first query head of a group only
	ropeGradSameAngle    bool // RoPE backward rotates by +angle instead of −angle
	reluSqGradNoFactor2  bool // d relu(g)²/dg = relu(g) instead of 2·relu(g)
	embeddingScaled      bool // embedding output multiplied by sqrt(H)
	embeddingGradAssign  bool // embedding backward assigns instead of accumulating repeated tokens
	noHeadInputGrad      bool // lm_head backward passes no gradient to the final norm
	lossNoShift          bool // cross-entropy of logits[t] against ids[t] instead of ids[t+1]
	lossGradSum          bool // d loss/d logits not divided by the token count

	// jitter is not a bug: a non-zero seed makes this an alternative
	// correct run for spread measurement (teacher.go, "jitter"). Set per
	// call from ForwardOptions.Jitter or GradOptions.Jitter.
	jitter uint64
}

// forcesFloat reports whether the quirks change something the integer
// kernels implement, so the model must take the float path.
func (q *quirks) forcesFloat() bool {
	return q.forceFloat || q.identityQuant || q.roundHalfAway || q.maxWeightScale || q.jitter != 0 ||
		q.actQuantPerTensor || q.weightGradLatentX || q.inputGradLatentW
}

// jittered is v·(1+ε) for element i in a jittered run, else v.
func jittered[F float](v F, i int, q *quirks) F {
	if q.jitter == 0 {
		return v
	}
	return F(float64(v) * jitterFactor(q.jitter, i, float64(v)))
}

func (q *quirks) round(v float64) float64 {
	if q.roundHalfAway {
		return math.Round(v)
	}
	return math.RoundToEven(v)
}

// nearTieWindow is the relative distance from a rounding boundary within
// which a jittered run decides the rounding at random (teacher.go).
const nearTieWindow = 1.0 / (1 << 18)

// quantRound rounds the pre-rounding value v of quantizer element i. In a
// jittered run, a value within nearTieWindow·|v| of a rounding boundary
// (k+½) takes either neighbouring code: the opposite of round(v) in run 1,
// a side drawn from the seed in later runs. Correct implementations can
// disagree on exactly these decisions, so the spread measured from such
// runs covers them.
func (q *quirks) quantRound(v float64, i int) float64 {
	r := q.round(v)
	if q.jitter == 0 {
		return r
	}
	lo := math.Floor(v)
	if math.Abs(v-lo-0.5) > nearTieWindow*math.Abs(v) {
		return r
	}
	if q.jitter == 1 {
		if r == lo {
			return lo + 1
		}
		return lo
	}
	if jitterFactor(q.jitter^0x5bd1e995, i, v) > 1 {
		return lo + 1
	}
	return lo
}

// weightQuantScale is s = 1 / max(mean|W|, 1e-5) over the whole matrix, in
// F as torch computes it (the floor and the division in F; the mean is
// accumulated in float64, then rounded to F).
func weightQuantScale[F float](w []F, q *quirks) F {
	if q.maxWeightScale {
		var m float64
		for _, v := range w {
			m = math.Max(m, math.Abs(float64(v)))
		}
		return 1 / max(F(m), F(1e-5))
	}
	var sum float64
	for _, v := range w {
		sum += math.Abs(float64(v))
	}
	mean := F(sum / float64(len(w)))
	return 1 / max(mean, F(1e-5))
}

// weightQuant: dst = clamp(round(W·s), -1, 1) / s, with the products and the
// division rounded to F as torch rounds them. dst may alias w.
func weightQuant[F float](dst, w []F, q *quirks) {
	if q.identityQuant {
		copy(dst, w)
		return
	}
	s := weightQuantScale(w, q)
	parallelFor(len(w), 2, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := q.quantRound(float64(jittered(w[i], i, q)*s), i)
			dst[i] = F(math.Max(-1, math.Min(1, r))) / s
		}
	})
}

// actQuantScale is s = 127 / max(max|x|, 1e-5) for one row, in F.
func actQuantScale[F float](x []F) F {
	var m F
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		m = max(m, v)
	}
	return 127 / max(m, F(1e-5))
}

// actQuant, per row of x[rows,cols]: dst = clamp(round(x·s), -128, 127) / s.
// dst may alias x.
func actQuant[F float](dst, x []F, rows, cols int, q *quirks) {
	if q.identityQuant {
		copy(dst, x)
		return
	}
	var tensorScale F
	if q.actQuantPerTensor {
		tensorScale = actQuantScale(x[:rows*cols])
	}
	parallelFor(rows, 2*cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dr := x[r*cols:r*cols+cols], dst[r*cols:r*cols+cols]
			s := actQuantScale(xr)
			if q.actQuantPerTensor {
				s = tensorScale
			}
			for i, v := range xr {
				v := q.quantRound(float64(jittered(v, r*cols+i, q)*s), r*cols+i)
				dr[i] = F(math.Max(-128, math.Min(127, v))) / s
			}
		}
	})
}

// ----------------------------------------------------------------------------
// BitLinear: y = linear(act_quant(x), weight_quant(W)), straight-through
// backward through both quantizers.

// linearOp is one BitLinear with its weight already prepared.
type linearOp[F float] interface {
	dims() (out, in int)
	// forward: y[N,out] = act_quant(x)[N,in] · Wqᵀ.
	forward(y, x []F, N int)
	// backward accumulates gradX[N,in] += gradY·Wq and, when gradW is not
	// nil, overwrites gradW[out,in] = gradYᵀ·act_quant(x) (straight-through).
	backward(gradX, gradW, x, gradY []F, N int)
}

// floatLinear holds the dequantized weight Wq[out,in] in F.
type floatLinear[F float] struct {
	out, in int
	wq      []F
	q       *quirks
	latent  []F // the latent weight, kept only for q.inputGradLatentW
}

// newFloatLinear quantizes the latent weight w[out,in] (w is not modified).
func newFloatLinear[F float](w []F, out, in int, q *quirks) *floatLinear[F] {
	wq := make([]F, len(w))
	weightQuant(wq, w, q)
	l := &floatLinear[F]{out: out, in: in, wq: wq, q: q}
	if q.inputGradLatentW {
		l.latent = w
	}
	return l
}

func (l *floatLinear[F]) dims() (int, int) { return l.out, l.in }

func (l *floatLinear[F]) forward(y, x []F, N int) {
	xq := make([]F, len(x))
	actQuant(xq, x, N, l.in, l.q)
	matmulNT(y, xq, l.wq, N, l.out, l.in, false)
}

func (l *floatLinear[F]) backward(gradX, gradW, x, gradY []F, N int) {
	if l.q.noSTE {
		if gradW != nil {
			clear(gradW)
		}
		return
	}
	wq := l.wq
	if l.q.inputGradLatentW && l.latent != nil {
		wq = l.latent
	}
	matmulNN(gradX, gradY, wq, N, l.in, l.out, true)
	if gradW != nil {
		xq := make([]F, len(x))
		if l.q.weightGradLatentX {
			copy(xq, x)
		} else {
			actQuant(xq, x, N, l.in, l.q)
		}
		matmulTN(gradW, gradY, xq, l.out, l.in, N, false)
	}
}
