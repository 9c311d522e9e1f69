package model

import (
	"math"
	"testing"
)

// histogramAbsSumRef is bf16AbsSum with one uint64 table.
func histogramAbsSumRef(w []uint16) float64 {
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
	return sum
}

func bf16TestWeights() []uint16 {
	w := make([]uint16, 1<<20+3)
	var s uint64 = 1
	for i := range w {
		s = s*6364136223846793005 + 1442695040888963407
		// roughly normal: sum of uniforms
		u := float64(s>>40&0xffff+s>>20&0xffff+s&0xffff)/65536 - 1.5
		w[i] = bf16Round(float32(u * 0.02))
	}
	return w
}

func TestBF16AbsSumMatchesReference(t *testing.T) {
	w := bf16TestWeights()
	for _, n := range []int{0, 1, 3, 5, 1000, len(w)} {
		if a, b := histogramAbsSumRef(w[:n]), bf16AbsSum(w[:n]); a != b {
			t.Fatal(n, a, b)
		}
	}
}
