package model

import (
	"math"

	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/kernels/sgemm"
)

// The float32 matrix products of the model all go through these three
// functions, so that the GEMM implementation is swapped in one place.

func gemmNT(c, a, b []float32, m, n, k int, accumulate bool) {
	sgemm.NT(c, a, b, m, n, k, accumulate)
}

func gemmNN(c, a, b []float32, m, n, k int, accumulate bool) {
	sgemm.NN(c, a, b, m, n, k, accumulate)
}

func gemmTN(c, a, b []float32, m, n, k int, accumulate bool) {
	sgemm.TN(c, a, b, m, n, k, accumulate)
}

// ternaryWeight is a BitLinear weight in its quantized form: ternary values
// packed for the integer kernels plus the factor that dequantizes them.
type ternaryWeight struct {
	t *kernels.Ternary
	// Online quantization divides by the weight scale s = 1/mean|W|;
	// offline checkpoints store weight_scale (= 1/s) and multiply by it.
	scale   float32
	offline bool
	// The latent weight this was quantized from (one of them, or neither
	// when offline). Dequantizing from it is cheaper than unpacking t.
	latentF32  []float32
	latentBF16 []uint16
}

// scratch returns buf[:n], or a new slice when buf is too short.
func scratch[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// quantizeWeight builds the ternary form of a latent weight [out,in]; tern is
// scratch space (reused when long enough).
func quantizeWeight(w []float32, out, in int, tern []int8) (*ternaryWeight, error) {
	s := kernels.WeightScale(w)
	tern = scratch(tern, len(w))
	kernels.Ternarize(tern, w, s)
	t, err := kernels.PackTernary(tern, out, in)
	if err != nil {
		return nil, err
	}
	return &ternaryWeight{t: t, scale: s, latentF32: w}, nil
}

// quantizeBF16 is quantizeWeight for a bf16 weight [out,in]. bf16 has only
// 65536 values, so the mean |W| comes from a histogram (exact counts, then a
// float64 sum in a fixed order) and ternarisation is a table lookup; the
// result equals quantizeWeight on the same values converted to float32
// except that the float64 sum may round differently in its last bits.
func quantizeBF16(w []uint16, out, in int, tern []int8) (*ternaryWeight, error) {
	var counts [1 << 15]uint64
	for _, b := range w {
		counts[b&0x7fff]++
	}
	var sum float64
	for b, c := range counts {
		if c != 0 {
			sum += float64(c) * float64(math.Float32frombits(uint32(b)<<16))
		}
	}
	mean := float32(sum / float64(len(w)))
	s := float32(1) / max(mean, 1e-5)
	var table [1 << 16]int8
	kernels.Ternarize(table[:], bf16Values[:], s)
	tern = scratch(tern, len(w))
	for i, b := range w {
		tern[i] = table[b]
	}
	t, err := kernels.PackTernary(tern, out, in)
	if err != nil {
		return nil, err
	}
	return &ternaryWeight{t: t, scale: s, latentBF16: w}, nil
}

// bf16Values[b] is the float32 value of the bf16 bit pattern b.
var bf16Values = func() (v [1 << 16]float32) {
	for b := range v {
		v[b] = math.Float32frombits(uint32(b) << 16)
	}
	return v
}()

// dequantized returns Wq[out,in] in float32, rounded exactly as the float
// path's weightQuant rounds it.
func (tw *ternaryWeight) dequantized() []float32 { return tw.dequantizeInto(nil) }

// dequantizeInto is dequantized writing into buf when it is long enough.
// An online weight is dequantized straight from its latent values (a table
// lookup for bf16), which avoids unpacking the 2-bit matrix into a fresh
// int8 copy; an offline one is unpacked.
func (tw *ternaryWeight) dequantizeInto(buf []float32) []float32 {
	// the three possible values, computed as the float path computes them
	var values [3]float32
	for v := int8(-1); v <= 1; v++ {
		if tw.offline {
			values[v+1] = float32(v) * tw.scale
		} else {
			values[v+1] = float32(v) / tw.scale
		}
	}
	wq := scratch(buf, tw.t.Rows*tw.t.Cols)
	switch {
	case tw.latentBF16 != nil:
		var tern [1 << 16]int8
		kernels.Ternarize(tern[:], bf16Values[:], tw.scale)
		var table [1 << 16]float32
		for b, v := range tern {
			table[b] = values[v+1]
		}
		w := tw.latentBF16
		parallelFor(len(wq), 1, func(lo, hi int) {
			for i, b := range w[lo:hi] {
				wq[lo+i] = table[b]
			}
		})
	case tw.latentF32 != nil:
		w := tw.latentF32
		parallelFor(len(wq), 2, func(lo, hi int) {
			var tern [4096]int8
			for c := lo; c < hi; c += len(tern) {
				n := min(len(tern), hi-c)
				kernels.Ternarize(tern[:n], w[c:c+n], tw.scale)
				for i, v := range tern[:n] {
					wq[c+i] = values[v+1]
				}
			}
		})
	default:
		tern := tw.t.Unpack()
		parallelFor(len(tern), 1, func(lo, hi int) {
			for i, v := range tern[lo:hi] {
				wq[lo+i] = values[v+1]
			}
		})
	}
	return wq
}

func (tw *ternaryWeight) bytes() int64 {
	return int64(tw.t.Rows) * int64((tw.t.Cols+3)/4)
}

// kernelLinear is the integer BitLinear: act_quant to int8, a ternary×int8
// product in int32 (exact), and one rescale per output:
//
//	y[n,o] = acc[n,o] / (s_x[n]·s_w)          (online)
//	y[n,o] = acc[n,o] · weight_scale / s_x[n] (offline)
type kernelLinear struct {
	w *ternaryWeight
	s *linearScratch
}

// linearScratch is working memory shared by the kernel linears of one
// network, which run one at a time. Reusing it keeps the Go heap from
// growing into fresh pages, whose first-touch faults are expensive on the
// project's VM.
type linearScratch struct {
	wq, xq []float32 // dequantized weight and activations (backward)
	scales []float32
	q      []int8
	acc    []int32
}

func (l kernelLinear) dims() (int, int) { return l.w.t.Rows, l.w.t.Cols }

func (l kernelLinear) forward(y, x []float32, N int) {
	out, in := l.dims()
	s := l.s
	s.q, s.scales, s.acc = scratch(s.q, N*in), scratch(s.scales, N), scratch(s.acc, N*out)
	q, scales, acc := s.q, s.scales, s.acc
	kernels.QuantizeActivations(q, scales, x[:N*in], N, in)
	l.w.t.MatMul(acc, q, N)
	offline, scale := l.w.offline, l.w.scale
	parallelFor(N, out, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			// one factor per token: 1/(s_x·s_w) online, weight_scale/s_x offline
			var factor float64
			if offline {
				factor = float64(scale) / float64(scales[n])
			} else {
				factor = 1 / (float64(scales[n]) * float64(scale))
			}
			yn, an := y[n*out:n*out+out], acc[n*out:n*out+out]
			for o, a := range an {
				yn[o] = float32(float64(a) * factor)
			}
		}
	})
}

func (l kernelLinear) backward(gradX, gradW, x, gradY []float32, N int) {
	out, in := l.dims()
	s := l.s
	s.wq = l.w.dequantizeInto(s.wq)
	matmulNN(gradX, gradY, s.wq, N, in, out, true)
	if gradW != nil {
		s.xq = scratch(s.xq, len(x))
		actQuant(s.xq, x, N, in, &quirks{})
		matmulTN(gradW, gradY, s.xq, out, in, N, false)
	}
}
