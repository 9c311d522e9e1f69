package mutants

import (
	"math"

	"github.com/tritter-ai/conformance/internal/ops"
)

// ----------------------------------------------------------------------------
// quantizers and BitLinear

// quantize: dst = clamp(round(src·s), lo, hi) / s.
func quantize[F ops.Float](dst, src []F, s F, lo, hi float64, round func(float64) float64) {
	for i, v := range src {
		dst[i] = F(math.Max(lo, math.Min(hi, round(float64(v*s))))) / s
	}
}

// actQuantPerRow is act_quant with the given rounding.
func actQuantPerRow[F ops.Float](round func(float64) float64) func(dst, x []F, rows, cols int) {
	return func(dst, x []F, rows, cols int) {
		for r := 0; r < rows; r++ {
			xr := x[r*cols : r*cols+cols]
			quantize(dst[r*cols:r*cols+cols], xr, ops.ActQuantScale(xr), -128, 127, round)
		}
	}
}

// quantLinear is a float-path BitLinear with its own activation quantizer.
type quantLinear[F ops.Float] struct {
	out, in  int
	wq       []F
	actQuant func(dst, x []F, rows, cols int)
}

func (l *quantLinear[F]) Dims() (int, int) { return l.out, l.in }

func (l *quantLinear[F]) Forward(y, x []F, N int) {
	xq := make([]F, N*l.in)
	l.actQuant(xq, x, N, l.in)
	ops.MatmulNT(y, xq, l.wq, N, l.out, l.in, false)
}

func (l *quantLinear[F]) Backward(gradX, gradW, x, gradY []F, N int) {
	ops.MatmulNN(gradX, gradY, l.wq, N, l.in, l.out, true)
	if gradW != nil {
		xq := make([]F, N*l.in)
		l.actQuant(xq, x, N, l.in)
		ops.MatmulTN(gradW, gradY, xq, l.out, l.in, N, false)
	}
}

// roundHalfAway: math.Round (ties away from zero) in both quantizers
// instead of round half to even.
func roundHalfAway[F ops.Float](t *ops.Table[F]) {
	t.Linear = func(w []F, out, in int, _ ops.Rounding) ops.Linear[F] {
		wq := make([]F, len(w))
		quantize(wq, w, ops.WeightQuantScale(w), -1, 1, math.Round)
		return &quantLinear[F]{out, in, wq, actQuantPerRow[F](math.Round)}
	}
	t.QuantizedLinear = func(wq []F, out, in int, _ ops.Rounding) ops.Linear[F] {
		return &quantLinear[F]{out, in, wq, actQuantPerRow[F](math.Round)}
	}
}

// maxWeightScale: the weight scale from max|W| instead of mean|W|.
func maxWeightScale[F ops.Float](t *ops.Table[F]) {
	t.Linear = func(w []F, out, in int, _ ops.Rounding) ops.Linear[F] {
		var m F
		for _, v := range w {
			m = max(m, F(math.Abs(float64(v))))
		}
		wq := make([]F, len(w))
		quantize(wq, w, 1/max(m, F(1e-5)), -1, 1, math.RoundToEven)
		return &quantLinear[F]{out, in, wq, actQuantPerRow[F](math.RoundToEven)}
	}
}

// actQuantPerTensor: one activation scale for the whole input instead of
// one per token.
func actQuantPerTensor[F ops.Float](t *ops.Table[F]) {
	perTensor := func(dst, x []F, rows, cols int) {
		quantize(dst, x[:rows*cols], ops.ActQuantScale(x[:rows*cols]), -128, 127, math.RoundToEven)
	}
	t.Linear = func(w []F, out, in int, r ops.Rounding) ops.Linear[F] {
		wq := make([]F, len(w))
		ops.WeightQuant(wq, w, r)
		return &quantLinear[F]{out, in, wq, perTensor}
	}
	t.QuantizedLinear = func(wq []F, out, in int, _ ops.Rounding) ops.Linear[F] {
		return &quantLinear[F]{out, in, wq, perTensor}
	}
}

// wrapLinears replaces both BitLinear constructors' results by wrap's.
func wrapLinears[F ops.Float](t *ops.Table[F], wrap func(l ops.Linear[F]) ops.Linear[F]) {
	linear, quantized := t.Linear, t.QuantizedLinear
	t.Linear = func(w []F, out, in int, r ops.Rounding) ops.Linear[F] { return wrap(linear(w, out, in, r)) }
	t.QuantizedLinear = func(wq []F, out, in int, r ops.Rounding) ops.Linear[F] {
		return wrap(quantized(wq, out, in, r))
	}
}

// noSTELinear passes no gradient through the quantizers: gradX gets
// nothing, gradW is zero.
type noSTELinear[F ops.Float] struct{ ops.Linear[F] }

func (l noSTELinear[F]) Backward(_, gradW, _, _ []F, _ int) {
	if gradW != nil {
		clear(gradW)
	}
}

func noSTE[F ops.Float](t *ops.Table[F]) {
	wrapLinears(t, func(l ops.Linear[F]) ops.Linear[F] { return noSTELinear[F]{l} })
}

// latentXLinear takes the weight gradient from the latent input:
// gradW = gradYᵀ·x instead of gradYᵀ·act_quant(x).
type latentXLinear[F ops.Float] struct{ ops.Linear[F] }

func (l latentXLinear[F]) Backward(gradX, gradW, x, gradY []F, N int) {
	l.Linear.Backward(gradX, nil, x, gradY, N)
	if gradW != nil {
		out, in := l.Dims()
		ops.MatmulTN(gradW, gradY, x, out, in, N, false)
	}
}

func weightGradLatentX[F ops.Float](t *ops.Table[F]) {
	wrapLinears(t, func(l ops.Linear[F]) ops.Linear[F] { return latentXLinear[F]{l} })
}

// latentWLinear takes the input gradient from the latent weight:
// gradX += gradY·W instead of gradY·weight_quant(W).
type latentWLinear[F ops.Float] struct {
	ops.Linear[F]
	w []F
}

func (l latentWLinear[F]) Backward(gradX, gradW, x, gradY []F, N int) {
	out, in := l.Dims()
	ops.MatmulNN(gradX, gradY, l.w, N, in, out, true)
	if gradW != nil {
		l.Linear.Backward(make([]F, N*in), gradW, x, gradY, N)
	}
}

func inputGradLatentW[F ops.Float](t *ops.Table[F]) {
	linear := t.Linear
	t.Linear = func(w []F, out, in int, r ops.Rounding) ops.Linear[F] {
		return latentWLinear[F]{linear(w, out, in, r), w}
	}
}

// ----------------------------------------------------------------------------
// lm_head

// quantizedLMHead: the lm_head as a BitLinear (the backward pass stays
// that of the unquantized head).
func quantizedLMHead[F ops.Float](t *ops.Table[F]) {
	t.Head.Forward = func(logits, x []F, w ops.Matrix[F], N, V, H int) {
		full := make([]F, V*H)
		w.RowsInto(full, 0, V)
		ops.NewFloatLinear(full, V, H, ops.Rounding{}).Forward(logits, x, N)
	}
}

// noHeadInputGrad: the lm_head's backward passes no gradient to its input.
func noHeadInputGrad[F ops.Float](t *ops.Table[F]) {
	backward := t.Head.Backward
	t.Head.Backward = func(gradX, gradW, gradLogits, x []F, w ops.Matrix[F], N, V, H int) {
		backward(make([]F, len(gradX)), gradW, gradLogits, x, w, N, V, H)
	}
}
