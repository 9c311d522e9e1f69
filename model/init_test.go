package model

import (
	"math"
	"testing"
)

func TestNormalSourceMoments(t *testing.T) {
	const n = 2_000_000
	vals := make([]float32, n)
	newNormalSource(7, 1, 2).fill(vals, 1)
	var s1, s2, s4 float64
	var beyond3, beyondR int
	for _, v := range vals {
		x := float64(v)
		s1 += x
		s2 += x * x
		s4 += x * x * x * x
		if math.Abs(x) > 3 {
			beyond3++
		}
		if math.Abs(x) > zigR {
			beyondR++
		}
	}
	mean, variance, kurt := s1/n, s2/n, s4/n
	p3 := float64(beyond3) / n
	pR := float64(beyondR) / n
	t.Logf("mean %.4g var %.4g E[x^4] %.4g P(|x|>3) %.4g P(|x|>r) %.4g", mean, variance, kurt, p3, pR)
	if math.Abs(mean) > 0.005 || math.Abs(variance-1) > 0.005 || math.Abs(kurt-3) > 0.05 {
		t.Errorf("moments off: mean %v var %v E[x^4] %v", mean, variance, kurt)
	}
	// P(|x| > a) = erfc(a/√2); the tail beyond zigR has its own sampler
	wantR := math.Erfc(zigR / math.Sqrt2)
	if math.Abs(p3-math.Erfc(3/math.Sqrt2)) > 0.0003 || math.Abs(pR-wantR) > 4*math.Sqrt(wantR/n) {
		t.Errorf("tails off: P(|x|>3) = %v, P(|x|>r) = %v", p3, pR)
	}
}

func TestNormalSourceStreamsDiffer(t *testing.T) {
	draw := func(seed, chunk uint64) float32 {
		v := make([]float32, 1)
		newNormalSource(seed, 0, chunk).fill(v, 1)
		return v[0]
	}
	x, y, z := draw(1, 0), draw(1, 1), draw(2, 0)
	if x == y || x == z || y == z {
		t.Errorf("streams collide: %v %v %v", x, y, z)
	}
}

// fillBF16 must equal fillScaled followed by bf16Round, draw for draw,
// including the samples that take the slow path.
func TestFillBF16MatchesFill(t *testing.T) {
	const std = 0.02
	tab := newZigScaled(std)
	for _, n := range []int{0, 1, 2, 3, 255, 256, 257, 100_003} {
		f := make([]float32, n)
		h := make([]uint16, n)
		a, b := newNormalSource(3, 4, uint64(n)), newNormalSource(3, 4, uint64(n))
		a.fillScaled(f, tab, std)
		b.fillBF16(h, tab, std)
		if a.state != b.state {
			t.Fatalf("n = %d: streams end in different states", n)
		}
		for i := range f {
			if h[i] != bf16Round(f[i]) {
				t.Fatalf("n = %d: [%d] = %#04x, want bf16Round(%v) = %#04x", n, i, h[i], f[i], bf16Round(f[i]))
			}
		}
	}
}

func BenchmarkNormalSource(b *testing.B) {
	g := newNormalSource(1, 2, 3)
	buf := make([]float32, 4096)
	b.SetBytes(4096)
	for i := 0; i < b.N; i++ {
		g.fill(buf, 1)
	}
}

func BenchmarkInitBF16(b *testing.B) {
	cfg := Config{HiddenSize: 1024, IntermediateSize: 2048, NumHiddenLayers: 2, NumAttentionHeads: 8, NumKeyValueHeads: 4,
		VocabSize: 8192, MaxPositionEmbeddings: 64, RopeTheta: 1e4, RMSNormEps: 1e-5, HiddenAct: "relu2", TieWordEmbeddings: true}
	m, err := newModel(cfg, StorageBF16, false)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(cfg.ParamCount())
	for i := 0; i < b.N; i++ {
		initParams(m.params, uint64(i), 0.02)
	}
}

// TestFullScaleInit times New for the full-scale preset alone.
func TestFullScaleInit(t *testing.T) {
	fullScaleModel(t)
}

func BenchmarkNormalSourceBF16(b *testing.B) {
	g := newNormalSource(1, 2, 3)
	w := newZigScaled(0.02)
	buf := make([]uint16, 1<<16)
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		g.fillBF16(buf, w, 0.02)
	}
}
