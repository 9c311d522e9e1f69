package model

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/tritter-ai/conformance/kernels"
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

// The alias table gives each bf16 magnitude exactly its normal probability
// in units of 2^-63, but for the mode, which absorbs the rounding of the
// others; magnitudes are consecutive and ascending.
func TestBF16NormalTable(t *testing.T) {
	for _, std := range []float64{0.02, 0.3, 1, 1e-30} {
		tab := newBF16Normal(std)
		const slot = uint64(1) << aliasUnitBits
		var got [aliasSlots]uint64
		for i := range aliasSlots {
			e := tab.alias.Entry(i)
			thr, alias := e>>aliasBits, int(e&(aliasSlots-1))
			if thr > slot {
				t.Fatalf("std %g: slot %d threshold %d above %d", std, i, thr, slot)
			}
			got[i] += thr
			got[alias] += slot - thr
		}
		var total uint64
		var differ []int
		for i := range got {
			total += got[i]
			if i > 1 && tab.mag[i] != 0 && tab.mag[i] != tab.mag[i-1]+1 {
				t.Fatalf("std %g: magnitude %d is %#04x after %#04x", std, i, tab.mag[i], tab.mag[i-1])
			}
			want := uint64(math.Round(math.Ldexp(normalMass(tab.lo[i], tab.hi[i], std), 63)))
			if tab.mag[i] == 0 && i > 0 {
				want = 0
			}
			if got[i] != want {
				differ = append(differ, i)
				if off := int64(got[i] - want); off > 1<<14 || off < -(1<<14) {
					t.Errorf("std %g: magnitude %d (%g) has %d units, want %d", std, i, bf16Values[tab.mag[i]], got[i], want)
				}
			}
		}
		if len(differ) > 1 {
			t.Errorf("std %g: magnitudes %v differ from their normal probability, want at most the mode", std, differ)
		}
		if total != 1<<63 {
			t.Errorf("std %g: total %d units, want 2^63", std, total)
		}
		top := tab.mag[aliasSlots-1]
		for i := aliasSlots - 1; top == 0; i-- {
			top = tab.mag[i]
		}
		t.Logf("std %g: magnitudes %.3g σ .. %.4g σ, mass drawn as zero %.3g, adjusted %v",
			std, float64(bf16Values[tab.mag[1]])/std, float64(bf16Values[top])/std, float64(got[0])/(1<<63), differ)
	}
}

// bf16 draws have the moments and tails of N(0, 1) rounded to bf16.
func TestBF16NormalMoments(t *testing.T) {
	const n = 4_000_000
	codes := make([]uint16, n)
	bf16NormalFor(1).fill(codes, newNormalSource(7, 1, 2).state)
	var s1, s2, s4 float64
	limits := []float64{0.5, 1, 2, 3, 4}
	beyond := make([]int, len(limits))
	for _, c := range codes {
		x := float64(bf16Values[c])
		s1 += x
		s2 += x * x
		s4 += x * x * x * x
		for k, a := range limits {
			if math.Abs(x) >= a { // a is a bf16 value: |x| ≥ a iff |σZ| ≥ the interval below a
				beyond[k]++
			}
		}
	}
	mean, variance, kurt := s1/n, s2/n, s4/n
	t.Logf("mean %.4g var %.4g E[x^4] %.4g", mean, variance, kurt)
	if math.Abs(mean) > 0.003 || math.Abs(variance-1) > 0.004 || math.Abs(kurt-3) > 0.04 {
		t.Errorf("moments off: mean %v var %v E[x^4] %v", mean, variance, kurt)
	}
	for k, a := range limits {
		lo, _ := bf16Interval(bf16Round(float32(a)))
		p := math.Erfc(lo / math.Sqrt2)
		got := float64(beyond[k]) / n
		if sd := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*sd {
			t.Errorf("P(|x| ≥ %g) = %.6f, want %.6f ± %.2g", a, got, p, sd)
		}
	}
	pos := 0
	for _, c := range codes {
		if c>>15 == 0 {
			pos++
		}
	}
	if math.Abs(float64(pos)/n-0.5) > 5*0.5/math.Sqrt(n) {
		t.Errorf("%d of %d draws positive", pos, n)
	}
}

// bf16 draws of 16 chunk streams fall into 64 signed bins of magnitudes
// with the table's exact probabilities: chi-square over 128 cells, bounded
// at p ≈ 1e-7.
func TestBF16NormalChiSquare(t *testing.T) {
	for _, std := range []float64{0.02, 1} {
		tab := bf16NormalFor(std)
		// each magnitude's probability, from the table's integer weights
		var units [aliasSlots]float64
		for i := range aliasSlots {
			e := tab.alias.Entry(i)
			thr, alias := e>>aliasBits, int(e&(aliasSlots-1))
			units[i] += float64(thr)
			units[alias] += float64(uint64(1)<<aliasUnitBits - thr)
		}
		// bins of consecutive magnitudes, about 1/64 of the mass each
		const bins = 64
		binOf := make(map[uint16]int, aliasSlots)
		var binP [bins]float64
		acc, b := 0.0, 0
		for i := range aliasSlots {
			if i > 0 && tab.mag[i] == 0 {
				break
			}
			p := units[i] / (1 << 63)
			if acc+p/2 > float64(b+1)/bins && b < bins-1 {
				b++
			}
			acc += p
			binOf[tab.mag[i]] = b
			binP[b] += p
		}
		const chunks, n = 16, 1 << 18
		var counts [2 * bins]float64
		codes := make([]uint16, n)
		for c := range uint64(chunks) {
			tab.fill(codes, newNormalSource(7, 1, c).state)
			for _, code := range codes {
				k, ok := binOf[code&0x7fff]
				if !ok {
					t.Fatalf("std %g: drew %#04x, not in the table", std, code)
				}
				counts[k+bins*int(code>>15)]++
			}
		}
		chi := 0.0
		for k, got := range counts {
			e := binP[k%bins] / 2 * chunks * n
			chi += (got - e) * (got - e) / e
		}
		dof := float64(2*bins - 1)
		t.Logf("std %g: chi-square %.1f over %d cells", std, chi, 2*bins)
		if chi > dof+5.3*math.Sqrt(2*dof) {
			t.Errorf("std %g: chi-square %.1f over %d cells, want about %v", std, chi, 2*bins, dof)
		}
	}
}

// Initialisation gives the same bits on every kernel path: the SIMD alias
// fill and the pure-Go one draw the same weights, in bf16 and in f32, with
// tensors of several chunks and lengths that are not multiples of 8.
func TestInitSameOnEveryKernelPath(t *testing.T) {
	before := kernels.ActivePath()
	defer func() {
		if err := kernels.SetPath(before); err != nil {
			t.Fatal(err)
		}
	}()
	small := tinyConfig(false)
	small.HiddenSize, small.IntermediateSize, small.NumAttentionHeads, small.NumKeyValueHeads, small.VocabSize = 12, 1101, 2, 1, 33
	chunked := tinyConfig(true)
	chunked.HiddenSize, chunked.IntermediateSize = 256, 1100
	for _, cfg := range []Config{small, chunked} {
		for _, storage := range []Storage{StorageBF16, StorageF32} {
			var ref *Model
			for _, p := range kernels.SupportedPaths() {
				if err := kernels.SetPath(p); err != nil {
					t.Fatal(err)
				}
				m, err := New(cfg, Options{Seed: 9, Storage: storage})
				if err != nil {
					t.Fatal(err)
				}
				if ref == nil {
					ref = m
					continue
				}
				for i, q := range m.params {
					if d := firstBitDiff(q.Float32(), ref.params[i].Float32()); d >= 0 {
						t.Fatalf("hidden %d, %v: path %s: %s differs at %d from path %s", cfg.HiddenSize, storage, p, q.Name(), d, kernels.SupportedPaths()[0])
					}
				}
			}
		}
	}
	// and fill alone, at lengths around the vector width
	tab := bf16NormalFor(0.02)
	for _, n := range []int{0, 1, 7, 8, 9, 1000, 1 << 18} {
		var ref []uint16
		for _, p := range kernels.SupportedPaths() {
			if err := kernels.SetPath(p); err != nil {
				t.Fatal(err)
			}
			got := make([]uint16, n)
			tab.fill(got, uint64(n)*0x9e3779b97f4a7c15)
			if ref == nil {
				ref = got
				continue
			}
			if fmt.Sprint(got) != fmt.Sprint(ref) {
				t.Fatalf("fill of %d: path %s differs from %s", n, p, kernels.SupportedPaths()[0])
			}
		}
	}
}

// An f32 weight rounds to the bf16 weight of the same stream, and f32
// weights have the moments of N(0, std²).
func TestF32WeightsRoundToBF16Weights(t *testing.T) {
	const n = 1_000_003
	const std = 0.02
	tab := bf16NormalFor(std)
	h := make([]uint16, n)
	f := make([]float32, n)
	state := newNormalSource(3, 4, 5).state
	tab.fill(h, state)
	tab.fillF32(f, state, newNormalSource(3^refineSalt, 4, 5))
	var s2, s4 float64
	for i := range f {
		if bf16Round(f[i]) != h[i] {
			t.Fatalf("[%d]: f32 %v rounds to %#04x, bf16 weight %#04x", i, f[i], bf16Round(f[i]), h[i])
		}
		x := float64(f[i]) / std
		s2 += x * x
		s4 += x * x * x * x
	}
	if math.Abs(s2/n-1) > 0.01 || math.Abs(s4/n-3) > 0.08 {
		t.Errorf("f32 moments off: var %v E[x^4] %v", s2/n, s4/n)
	}
}

// Weights depend on the seed, never on GOMAXPROCS; f32 and bf16 storage
// hold the same weights up to the rounding.
func TestInitIndependentOfGOMAXPROCS(t *testing.T) {
	cfg := tinyConfig(false)
	cfg.HiddenSize, cfg.IntermediateSize = 256, 1100 // several chunks per tensor
	var ref []*Model
	for _, procs := range []int{1, 2, 3} {
		old := runtime.GOMAXPROCS(procs)
		m32, err32 := New(cfg, Options{Seed: 6, Storage: StorageF32})
		m16, err16 := New(cfg, Options{Seed: 6, Storage: StorageBF16})
		runtime.GOMAXPROCS(old)
		if err32 != nil || err16 != nil {
			t.Fatal(err32, err16)
		}
		for i, p := range m16.params {
			a, b := p.Float32(), m32.params[i].Float32()
			for j := range a {
				if math.Float32bits(a[j]) != math.Float32bits(bf16Values[bf16Round(b[j])]) {
					t.Fatalf("GOMAXPROCS=%d: %s[%d]: bf16 %v, f32 %v", procs, p.Name(), j, a[j], b[j])
				}
			}
		}
		if ref == nil {
			ref = []*Model{m32, m16}
			continue
		}
		for k, m := range []*Model{m32, m16} {
			for i, p := range m.params {
				if d := firstBitDiff(p.Float32(), ref[k].params[i].Float32()); d >= 0 {
					t.Fatalf("GOMAXPROCS=%d: %s differs at %d from GOMAXPROCS=1", procs, p.Name(), d)
				}
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

// BenchmarkBF16Normal fills 2^16 bf16 weights on each kernel path (the
// active one is restored); MB/s reads as millions of weights a second.
func BenchmarkBF16Normal(b *testing.B) {
	tab := bf16NormalFor(0.02)
	buf := make([]uint16, 1<<16)
	before := kernels.ActivePath()
	defer kernels.SetPath(before)
	for _, p := range kernels.SupportedPaths() {
		b.Run(string(p), func(b *testing.B) {
			if err := kernels.SetPath(p); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			for i := 0; i < b.N; i++ {
				tab.fill(buf, uint64(i))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(buf)), "ns/weight")
		})
	}
}
