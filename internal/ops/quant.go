package ops

import "math"

// ----------------------------------------------------------------------------
// quantizers (straight-through: their backward is the identity)

// WeightQuantScale is s = 1 / max(mean|W|, 1e-5) over the whole matrix, in
// F as torch computes it (the floor and the division in F; the mean is
// accumulated in float64, then rounded to F).
func WeightQuantScale[F Float](w []F) F {
	var sum float64
	for _, v := range w {
		sum += math.Abs(float64(v))
	}
	mean := F(sum / float64(len(w)))
	return 1 / max(mean, F(1e-5))
}

// WeightQuant: dst = clamp(round(W·s), -1, 1) / s, with the products and the
// division rounded to F as torch rounds them. dst may alias w.
func WeightQuant[F Float](dst, w []F, r Rounding) {
	s := WeightQuantScale(w)
	ParallelFor(len(w), 2, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := r.round(float64(input(r, w[i], i)*s), i)
			dst[i] = F(math.Max(-1, math.Min(1, v))) / s
		}
	})
}

// ActQuantScale is s = 127 / max(max|x|, 1e-5) for one row, in F.
func ActQuantScale[F Float](x []F) F {
	var m F
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		m = max(m, v)
	}
	return 127 / max(m, F(1e-5))
}

// ActQuant, per row of x[rows,cols]: dst = clamp(round(x·s), -128, 127) / s.
// dst may alias x.
func ActQuant[F Float](dst, x []F, rows, cols int, r Rounding) {
	ParallelFor(rows, 2*cols, func(lo, hi int) {
		for row := lo; row < hi; row++ {
			xr, dr := x[row*cols:row*cols+cols], dst[row*cols:row*cols+cols]
			s := ActQuantScale(xr)
			for j, v := range xr {
				i := row*cols + j
				q := r.round(float64(input(r, v, i)*s), i)
				dr[j] = F(math.Max(-128, math.Min(127, q))) / s
			}
		}
	})
}

// ----------------------------------------------------------------------------
// BitLinear: y = linear(act_quant(x), weight_quant(W)), straight-through
// backward through both quantizers.

// Linear is one BitLinear with its weight already prepared.
type Linear[F Float] interface {
	Dims() (out, in int)
	// Forward: y[N,out] = act_quant(x)[N,in] · Wqᵀ.
	Forward(y, x []F, N int)
	// Backward accumulates gradX[N,in] += gradY·Wq and, when gradW is not
	// nil, overwrites gradW[out,in] = gradYᵀ·act_quant(x) (straight-through).
	Backward(gradX, gradW, x, gradY []F, N int)
}

// FloatLinear is the BitLinear of the float path: the dequantized weight
// Wq[Out,In] in F, and act_quant on every call.
type FloatLinear[F Float] struct {
	Out, In  int
	Wq       []F
	Rounding Rounding
}

// NewFloatLinear quantizes the latent weight w[out,in] (w is not modified).
func NewFloatLinear[F Float](w []F, out, in int, r Rounding) Linear[F] {
	wq := make([]F, len(w))
	WeightQuant(wq, w, r)
	return &FloatLinear[F]{Out: out, In: in, Wq: wq, Rounding: r}
}

// NewQuantizedLinear is the float-path BitLinear of an already quantized
// weight wq[out,in] (an offline checkpoint's).
func NewQuantizedLinear[F Float](wq []F, out, in int, r Rounding) Linear[F] {
	return &FloatLinear[F]{Out: out, In: in, Wq: wq, Rounding: r}
}

func (l *FloatLinear[F]) Dims() (int, int) { return l.Out, l.In }

func (l *FloatLinear[F]) Forward(y, x []F, N int) {
	xq := make([]F, N*l.In)
	ActQuant(xq, x, N, l.In, l.Rounding)
	MatmulNT(y, xq, l.Wq, N, l.Out, l.In, false)
}

func (l *FloatLinear[F]) Backward(gradX, gradW, x, gradY []F, N int) {
	MatmulNN(gradX, gradY, l.Wq, N, l.In, l.Out, true)
	if gradW != nil {
		xq := make([]F, N*l.In)
		ActQuant(xq, x, N, l.In, l.Rounding)
		MatmulTN(gradW, gradY, xq, l.Out, l.In, N, false)
	}
}
