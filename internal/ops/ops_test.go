package ops

import (
	"math"
	"slices"
	"testing"
)

func TestActQuantRoundsHalfToEven(t *testing.T) {
	// max 127 makes the scale exactly 1, so x·s = x and .5 values are ties
	x := []float32{127, 2.5, 3.5, -2.5, -0.5, 0.5, 1.49, -127}
	want := []float32{127, 2, 4, -2, 0, 0, 1, -127}
	got := make([]float32, len(x))
	ActQuant(got, x, 1, len(x), Rounding{})
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ActQuant(%v)[%d] = %v, want %v", x, i, got[i], want[i])
		}
	}
	// a row of zeros stays zero (the 1e-5 floor avoids 0/0)
	zeros := make([]float32, 4)
	ActQuant(zeros, zeros, 1, 4, Rounding{})
	for _, v := range zeros {
		if v != 0 {
			t.Fatalf("zero row quantized to %v", zeros)
		}
	}
}

func TestWeightQuant(t *testing.T) {
	// mean|W| = 0.5 exactly, s = 2: W·s = {0.5 (tie → 0), 1, -0.75, 1.5 (tie → 2, clamped to 1), -3, 0.25, 0, -1}
	w := []float32{0.25, 0.5, -0.375, 0.75, -1.5, 0.125, 0, -0.5}
	s := float32(2)
	got := make([]float32, len(w))
	WeightQuant(got, w, Rounding{})
	for i, v := range w {
		r := math.RoundToEven(float64(v * s))
		want := float32(math.Max(-1, math.Min(1, r))) / s
		if got[i] != want {
			t.Errorf("WeightQuant[%d] = %v, want %v", i, got[i], want)
		}
	}
	if want := []float32{0, 0.5, -0.5, 0.5, -0.5, 0, 0, -0.5}; !slices.Equal(got, want) {
		t.Errorf("WeightQuant = %v, want %v", got, want)
	}
}

func TestRopeTable(t *testing.T) {
	const T, hd, theta = 4096, 128, 500000.0
	rt := NewRopeTable[float32](T, hd, theta)
	for _, pos := range []int{0, 1, 17, 4095} {
		for _, j := range []int{0, 1, 31, 63} {
			angle := float64(pos) * math.Pow(theta, -float64(2*j)/hd)
			c, s := rt.Cos[pos*rt.Half+j], rt.Sin[pos*rt.Half+j]
			// torch's float32 angle differs from the exact one by a few ulps of
			// the angle (4095 rad: ulp 2.4e-4)
			tol := 1e-6 + 4*angle*math.Pow(2, -23)
			if math.Abs(float64(c)-math.Cos(angle)) > tol || math.Abs(float64(s)-math.Sin(angle)) > tol {
				t.Errorf("pos %d, j %d: cos %v sin %v, want %v %v", pos, j, c, s, math.Cos(angle), math.Sin(angle))
			}
		}
	}
	// non-interleaved: at position 1, element 0 pairs with hd/2 only
	x := make([]float32, 2*hd)
	x[hd], x[hd+hd/2] = 1, 2
	Rope(x, NewRopeTable[float32](2, hd, theta), 1, 2, 1)
	for i, v := range x[hd:] {
		if (i == 0 || i == hd/2) == (v == 0) {
			t.Fatalf("rope at position 1: element %d = %v (x = %v)", i, v, x[hd:])
		}
	}
	if want := float32(1*math.Cos(1) - 2*math.Sin(1)); math.Abs(float64(x[hd]-want)) > 1e-6 {
		t.Errorf("rope x'_0 = %v, want %v", x[hd], want)
	}
}
