package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestQuantizeRowMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	specials := []float32{0, float32(math.Copysign(0, -1)), 1e-6, -1e-7, 1e-40, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 3e38, -3e38}
	for trial := 0; trial < 20000; trial++ {
		n := 1 + rng.IntN(300)
		row := make([]float32, n)
		mode := rng.IntN(6)
		for i := range row {
			switch mode {
			case 0:
				row[i] = float32(rng.NormFloat64())
			case 1:
				row[i] = float32(rng.NormFloat64() * 1e-7)
			case 2:
				row[i] = float32(rng.IntN(255)-127) / 127 * float32(rng.IntN(5)+1)
			case 3:
				row[i] = math.Float32frombits(rng.Uint32())
			case 4:
				row[i] = float32(rng.IntN(511)-255) / 2
			default:
				row[i] = float32(rng.NormFloat64())
				if rng.IntN(50) == 0 {
					row[i] = specials[rng.IntN(len(specials))]
				}
			}
		}
		a, b := make([]int8, n), make([]int8, n)
		var sa, sb float32
		quantizeRow(a, &sa, row)
		quantizeRowRef(b, &sb, row)
		if math.Float32bits(sa) != math.Float32bits(sb) && !(sa != sa && sb != sb) {
			t.Fatalf("trial %d: scale %v vs %v", trial, sa, sb)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("trial %d: q[%d] = %d, ref %d (x=%v, scale %v)", trial, i, a[i], b[i], row[i], sa)
			}
		}
	}
}

func BenchmarkQuantizeRow(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	row := make([]float32, 6912)
	for i := range row {
		row[i] = float32(rng.NormFloat64())
	}
	out := make([]int8, len(row))
	var s float32
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			quantizeRow(out, &s, row)
		}
	})
	b.Run("ref", func(b *testing.B) {
		for b.Loop() {
			quantizeRowRef(out, &s, row)
		}
	})
}
