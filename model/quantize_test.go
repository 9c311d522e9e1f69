package model

import (
	"math"
	"runtime"
	"testing"
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
		tw, err := quantizeBF16(w, rows, cols, nil)
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
