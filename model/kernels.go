package model

import (
	"math"
	"runtime"
	"sync"

	"github.com/tritter-ai/conformance/internal/ops"
	"github.com/tritter-ai/conformance/kernels"
)

// ternaryWeight is a BitLinear weight in its quantized form: ternary values
// packed for the integer kernels plus the factor that dequantizes them.
type ternaryWeight struct {
	t *kernels.Ternary
	// Online quantization divides by the weight scale s = 1/mean|W|, and
	// so does an offline bitlinear checkpoint's weight_scale (= s); an
	// offline autobitlinear weight_scale (= 1/s) multiplies.
	scale      float32
	multiplies bool
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

// quantizeBF16 is quantizeWeight for a bf16 weight [out,in]. bf16 has only 65536 values, so the mean |W| comes from a histogram
// (exact counts, then a float64 sum in a fixed order), and
// kernels.PackTernaryBF16 ternarises and packs straight from the bf16 bit
// patterns; the result equals quantizeWeight on the same values converted
// to float32 except that the float64 sum may round differently in its last
// bits. Both passes run on GOMAXPROCS threads; the counts are exact, so the
// result does not depend on the thread count.
func quantizeBF16(w []uint16, out, in int) (*ternaryWeight, error) {
	sum := bf16AbsSum(w)
	mean := float32(sum / float64(len(w)))
	s := float32(1) / max(mean, 1e-5)
	t, err := kernels.PackTernaryBF16(w, out, in, s)
	if err != nil {
		return nil, err
	}
	return &ternaryWeight{t: t, scale: s, latentBF16: w}, nil
}

// histPool recycles bf16AbsSum's count tables (512 KiB each).
var histPool = sync.Pool{New: func() any { return new([4][1 << 15]uint32) }}

// absSumBlock is the most elements bf16AbsSum counts in uint32 tables
// before adding them to its uint64 totals.
const absSumBlock = 1 << 30

// bf16AbsSum is sum |w| in float64, accumulated over a histogram of the
// magnitudes: bins in increasing bit-pattern order, each adding
// count·value. The counts are exact, so how they are gathered does not
// change the sum: GOMAXPROCS threads count parts of w, and four
// interleaved tables per thread break the store-to-load chains of
// repeated increments of the same popular bin.
func bf16AbsSum(w []uint16) float64 {
	parts := min(runtime.GOMAXPROCS(0), max(len(w)>>20, 1))
	totals := make([][1 << 15]uint64, parts)
	ops.ParallelFor(parts, 1<<15, func(lo, hi int) {
		for part := lo; part < hi; part++ {
			// part counts w[part*len/parts : (part+1)*len/parts], a block at a time
			start, end := part*len(w)/parts, (part+1)*len(w)/parts
			for b := start; b < end; b += absSumBlock {
				countMagnitudes(&totals[part], w[b:min(b+absSumBlock, end)])
			}
		}
	})
	var sum float64
	for b := range totals[0] {
		var n uint64
		for part := range totals {
			n += totals[part][b]
		}
		if n != 0 {
			sum += float64(n) * float64(math.Float32frombits(uint32(b)<<16))
		}
	}
	return sum
}

// countMagnitudes adds the count of each magnitude (bit pattern without
// the sign) of w, fewer than 2^32 elements, to counts.
func countMagnitudes(counts *[1 << 15]uint64, w []uint16) {
	c := histPool.Get().(*[4][1 << 15]uint32)
	defer histPool.Put(c)
	c0, c1, c2, c3 := &c[0], &c[1], &c[2], &c[3]
	n := len(w) &^ 3
	for i := 0; i < n; i += 4 {
		q := w[i : i+4 : i+4]
		c0[q[0]&0x7fff]++
		c1[q[1]&0x7fff]++
		c2[q[2]&0x7fff]++
		c3[q[3]&0x7fff]++
	}
	for _, b := range w[n:] {
		c0[b&0x7fff]++
	}
	for b := range c0 {
		counts[b] += uint64(c0[b]) + uint64(c1[b]) + uint64(c2[b]) + uint64(c3[b])
	}
	*c = [4][1 << 15]uint32{}
}

// bf16Values[b] is the float32 value of the bf16 bit pattern b.
var bf16Values = func() (v [1 << 16]float32) {
	for b := range v {
		v[b] = math.Float32frombits(uint32(b) << 16)
	}
	return v
}()

// dequantized returns Wq[out,in] in float32, rounded exactly as the float
// path's ops.WeightQuant rounds it.
func (tw *ternaryWeight) dequantized() []float32 { return tw.dequantizeInto(nil) }

// dequantizeInto is dequantized writing into buf when it is long enough.
// An online weight is dequantized straight from its latent values (a table
// lookup for bf16); an offline one is decoded from its 2-bit codes a row
// at a time.
func (tw *ternaryWeight) dequantizeInto(buf []float32) []float32 {
	// the three possible values, computed as the float path computes them
	var values [3]float32
	for v := int8(-1); v <= 1; v++ {
		if tw.multiplies {
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
		ops.ParallelFor(len(wq), 1, func(lo, hi int) {
			for i, b := range w[lo:hi] {
				wq[lo+i] = table[b]
			}
		})
	case tw.latentF32 != nil:
		w := tw.latentF32
		ops.ParallelFor(len(wq), 2, func(lo, hi int) {
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
		rows, cols := tw.t.Rows, tw.t.Cols
		ops.ParallelFor(rows, cols, func(lo, hi int) {
			row := make([]int8, cols)
			for r := lo; r < hi; r++ {
				tw.t.UnpackRows(row, r, r+1)
				for c, v := range row {
					wq[r*cols+c] = values[v+1]
				}
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
//	y[n,o] = acc[n,o] / (s_x[n]·s_w)          (online, and offline bitlinear with s_w = weight_scale)
//	y[n,o] = acc[n,o] · weight_scale / s_x[n] (offline autobitlinear)
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

func (l kernelLinear) Dims() (int, int) { return l.w.t.Rows, l.w.t.Cols }

func (l kernelLinear) Forward(y, x []float32, N int) {
	_, in := l.Dims()
	s := l.s
	s.q, s.scales = scratch(s.q, N*in), scratch(s.scales, N)
	kernels.QuantizeActivations(s.q, s.scales, x[:N*in], N, in)
	l.forwardQuantized(y, N)
}

// forwardShared runs several linears on the same input x[N,in] (q/k/v,
// gate/up). When all are kernel linears sharing one scratch, x is
// quantized once: act_quant is deterministic, so each output is the one
// its own forward would give.
func forwardShared[F ops.Float](ls []ops.Linear[F], ys [][]F, x []F, N int) {
	var kls []kernelLinear
	for _, l := range ls {
		kl, ok := any(l).(kernelLinear)
		if !ok || kl.s == nil || len(kls) > 0 && kl.s != kls[0].s {
			kls = nil
			break
		}
		kls = append(kls, kl)
	}
	if kls == nil {
		for i, l := range ls {
			l.Forward(ys[i], x, N)
		}
		return
	}
	_, in := kls[0].Dims()
	for _, kl := range kls[1:] {
		if _, in2 := kl.Dims(); in2 != in {
			for i, l := range ls {
				l.Forward(ys[i], x, N)
			}
			return
		}
	}
	s := kls[0].s
	s.q, s.scales = scratch(s.q, N*in), scratch(s.scales, N)
	kernels.QuantizeActivations(s.q, s.scales, any(x).([]float32)[:N*in], N, in)
	for i, kl := range kls {
		kl.forwardQuantized(any(ys[i]).([]float32), N)
	}
}

// forwardQuantized is forward after act_quant: the input is s.q, s.scales.
func (l kernelLinear) forwardQuantized(y []float32, N int) {
	out, _ := l.Dims()
	s := l.s
	s.acc = scratch(s.acc, N*out)
	q, scales, acc := s.q, s.scales, s.acc
	l.w.t.MatMul(acc, q, N)
	multiplies, scale := l.w.multiplies, l.w.scale
	ops.ParallelFor(N, out, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			// one factor per token: 1/(s_x·s_w), or weight_scale/s_x
			var factor float64
			if multiplies {
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

func (l kernelLinear) Backward(gradX, gradW, x, gradY []float32, N int) {
	out, in := l.Dims()
	s := l.s
	s.wq = l.w.dequantizeInto(s.wq)
	ops.MatmulNN(gradX, gradY, s.wq, N, in, out, true)
	if gradW != nil {
		s.xq = scratch(s.xq, N*in)
		ops.ActQuant(s.xq, x, N, in, ops.Rounding{})
		ops.MatmulTN(gradW, gradY, s.xq, out, in, N, false)
	}
}
