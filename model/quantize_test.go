package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/tritter-ai/conformance/kernels"
)

// Mean |W| and the ternary codes of a bf16 weight do not depend on how
// many threads count and ternarise it; the sum equals a plain histogram's.
func TestQuantizeBF16IndependentOfGOMAXPROCS(t *testing.T) {
	const rows, cols = 1031, 3061 // over 3·2^20 weights: three counting parts at GOMAXPROCS 3
	w := make([]uint16, rows*cols)
	bf16NormalFor(0.02).fill(w, newNormalSource(1, 2, 3).state)
	var counts [1 << 15]uint64
	for _, b := range w {
		counts[b&0x7fff]++
	}
	var want float64
	for b, n := range counts {
		if n != 0 {
			want += float64(n) * float64(bf16Values[b])
		}
	}
	var ref *ternaryWeight
	for _, procs := range []int{1, 2, 3} {
		old := runtime.GOMAXPROCS(procs)
		sum := bf16AbsSum(w)
		tw, err := quantizeBF16(w, rows, cols)
		runtime.GOMAXPROCS(old)
		if err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(sum) != math.Float64bits(want) {
			t.Errorf("GOMAXPROCS=%d: sum |W| = %v, a plain histogram gives %v", procs, sum, want)
		}
		if ref == nil {
			ref = tw
			continue
		}
		if tw.scale != ref.scale {
			t.Errorf("GOMAXPROCS=%d: scale %v, GOMAXPROCS=1 gives %v", procs, tw.scale, ref.scale)
		}
		got, wantCodes := tw.t.Unpack(), ref.t.Unpack()
		for i := range got {
			if got[i] != wantCodes[i] {
				t.Fatalf("GOMAXPROCS=%d: code %d is %d, GOMAXPROCS=1 gives %d", procs, i, got[i], wantCodes[i])
			}
		}
	}
}

// quantizeBF16 packs what Ternarize and PackTernary give at its scale, on
// a shape with a partial block and a partial row group, with zeros and
// denormals among the weights (a NaN or an infinity would make the scale
// NaN or 0; kernels tests them at every scale).
func TestQuantizeBF16PacksTernarize(t *testing.T) {
	const rows, cols = 263, 1000
	w := randomBF16(rows*cols, 0.02, 7)
	copy(w[1000:], []uint16{0x0001, 0x8001, 0x007f, 0x0000, 0x8000})
	tw, err := quantizeBF16(w, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	values := make([]float32, len(w))
	bf16ToF32(values, w)
	tern := make([]int8, len(w))
	kernels.Ternarize(tern, values, tw.scale)
	want, err := kernels.PackTernary(tern, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	if tw.t.Rows != rows || tw.t.Cols != cols || !slices.Equal(tw.t.Unpack(), want.Unpack()) {
		t.Fatalf("quantizeBF16 [%d, %d] at scale %v packs other codes than Ternarize and PackTernary", rows, cols, tw.scale)
	}
}

// randomBF16 returns n bf16 draws of N(0, std²), rounded to nearest even:
// 1<<20 independent draws repeated, enough for the magnitudes' spread.
func randomBF16(n int, std float64, seed uint64) []uint16 {
	r := rand.New(rand.NewPCG(seed, 1))
	draws := make([]uint16, min(n, 1<<20))
	for i := range draws {
		bits := math.Float32bits(float32(r.NormFloat64() * std))
		draws[i] = uint16((bits + 0x7fff + bits>>16&1) >> 16)
	}
	w := make([]uint16, n)
	for i := 0; i < n; i += len(draws) {
		copy(w[i:], draws)
	}
	return w
}

// BenchmarkQuantizeBF16 measures what a streamed layer spends on each
// linear after regenerating it: mean |W|, ternarisation and packing, on
// the largest linear of 2B-4T and of Tritter-70B.
func BenchmarkQuantizeBF16(b *testing.B) {
	for _, shape := range []struct {
		name       string
		rows, cols int
	}{{"2b-4t-down", 2560, 6912}, {"70b-down", 8192, 28672}} {
		b.Run(shape.name, func(b *testing.B) {
			w := randomBF16(shape.rows*shape.cols, 0.02, 1)
			b.SetBytes(int64(len(w))) // "MB/s" reads as millions of weights per second
			cpu := cpuSeconds()
			b.ResetTimer()
			for range b.N {
				if _, err := quantizeBF16(w, shape.rows, shape.cols); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			weights := float64(b.N) * float64(len(w))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/weights, "ns/weight")
			b.ReportMetric((cpuSeconds()-cpu)*1e9/weights, "cpu-ns/weight")
		})
	}
}
