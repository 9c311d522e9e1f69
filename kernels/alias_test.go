package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randomAliasTable has random aliases and 15-bit magnitudes, and thresholds
// spread over [0, 2^50] with both ends present.
func randomAliasTable(t testing.TB, rng *rand.Rand) *AliasTable {
	var entry [AliasSlots]uint64
	var mag [AliasSlots]uint16
	for i := range entry {
		var thr uint64
		switch i % 7 {
		case 0:
			thr = 0
		case 1:
			thr = 1 << AliasUnitBits
		default:
			thr = rng.Uint64N(1<<AliasUnitBits + 1)
		}
		entry[i] = thr<<AliasBits | rng.Uint64N(AliasSlots)
		mag[i] = uint16(rng.UintN(1 << 15))
	}
	tab, err := NewAliasTable(&entry, &mag)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// referenceFillAlias is FillAlias's doc loop as written there.
func referenceFillAlias(dst []uint16, tab *AliasTable, key, first uint64) {
	for k := range dst {
		z := AliasStream(key, first+uint64(k))
		slot := z >> (64 - AliasBits)
		if z&(1<<AliasUnitBits-1) >= tab.entry[slot]>>AliasBits {
			slot = tab.entry[slot] & (AliasSlots - 1)
		}
		dst[k] = tab.mag[slot] | uint16(z>>AliasUnitBits&1)<<15
	}
}

// checkFillAlias runs FillAliasPath(p) into dst framed by guard words and
// compares it with the reference loop.
func checkFillAlias(t *testing.T, p Path, tab *AliasTable, n int, key, first uint64) {
	t.Helper()
	const guard, guardWord = 16, 0xa5a5
	buf := make([]uint16, guard+n+guard)
	for i := range buf {
		buf[i] = guardWord
	}
	if err := FillAliasPath(p, buf[guard:guard+n], tab, key, first); err != nil {
		t.Fatal(err)
	}
	for i := range guard {
		if buf[i] != guardWord || buf[guard+n+i] != guardWord {
			t.Fatalf("path %s, n %d: wrote outside dst", p, n)
		}
	}
	want := make([]uint16, n)
	referenceFillAlias(want, tab, key, first)
	for i, w := range want {
		if got := buf[guard+i]; got != w {
			t.Fatalf("path %s, n %d, key %#x, first %d: [%d] = %#04x, want %#04x (reference loop)", p, n, key, first, i, got, w)
		}
	}
}

// Every supported path matches the reference loop bit for bit: lengths
// around the vector width, offsets inside a group, the counter wrapping.
func TestFillAliasPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 2))
	tabs := []*AliasTable{randomAliasTable(t, rng), randomAliasTable(t, rng)}
	lengths := []int{0, 1, 7, 8, 9, 15, 16, 17, 63, 1000, 4097}
	for _, p := range SupportedPaths() {
		for k := range 40 {
			tab := tabs[k%len(tabs)]
			key := rng.Uint64()
			first := []uint64{0, 1, 3, 7, rng.Uint64N(1 << 18), rng.Uint64(), math.MaxUint64 - 5}[k%7]
			for _, n := range lengths {
				checkFillAlias(t, p, tab, n, key, first)
			}
			checkFillAlias(t, p, tab, 1+rng.IntN(3000), key, first)
		}
	}
	t.Logf("paths %v; AVX-512 alias fill on avx512vnni: %v", SupportedPaths(), aliasAVX512Used())
}

// The compare is low < threshold, unsigned: thresholds set at exactly a
// draw's low bits (alias), one above (own), one below, and off by less than
// 2^16 (a tie in the packed word's bits, decided by the exact compare) or
// more (decided by the packed word), on every path.
func TestFillAliasThresholdBoundary(t *testing.T) {
	const n, key = 2048, 0x1234_5678_9abc_def0
	for _, p := range SupportedPaths() {
		for _, off := range []int64{0, 1, -1, 0x7fff, -0x7fff, 0x10000, -0x10000, 0x123456} {
			var entry [AliasSlots]uint64
			var mag [AliasSlots]uint16
			for i := range entry {
				entry[i] = 1<<AliasUnitBits<<AliasBits | uint64(AliasSlots-1-i)
				mag[i] = uint16(i)
			}
			for k := range n {
				z := AliasStream(key, uint64(k))
				slot := z >> (64 - AliasBits)
				thr := min(max(int64(z&(1<<AliasUnitBits-1))+off, 0), 1<<AliasUnitBits)
				entry[slot] = uint64(thr)<<AliasBits | entry[slot]&(AliasSlots-1)
			}
			tab, err := NewAliasTable(&entry, &mag)
			if err != nil {
				t.Fatal(err)
			}
			checkFillAlias(t, p, tab, n, key, 0)
		}
	}
}

// SIMD and pure Go agree on a whole chunk; fails, rather than skips, when
// the CPU has the features but the avx512vnni path does not use them.
func TestFillAliasSIMDMatchesGo(t *testing.T) {
	if !aliasAVX512Used() {
		t.Skip("no AVX-512 alias fill on this CPU or build")
	}
	tab := randomAliasTable(t, rand.New(rand.NewPCG(5, 6)))
	simd, ref := make([]uint16, 1<<18), make([]uint16, 1<<18)
	for _, key := range []uint64{0, 1, 0xdeadbeef, math.MaxUint64} {
		if err := FillAliasPath(AVX512VNNI, simd, tab, key, 0); err != nil {
			t.Fatal(err)
		}
		fillAliasGeneric(ref, tab, key, 0)
		for i := range ref {
			if simd[i] != ref[i] {
				t.Fatalf("key %#x: [%d] SIMD %#04x, Go %#04x", key, i, simd[i], ref[i])
			}
		}
	}
}

func TestNewAliasTableRejects(t *testing.T) {
	var entry [AliasSlots]uint64
	var mag [AliasSlots]uint16
	entry[3] = (1<<AliasUnitBits + 1) << AliasBits
	if _, err := NewAliasTable(&entry, &mag); err == nil {
		t.Error("threshold above 2^50 accepted")
	}
	entry[3] = 0
	mag[5] = 0x8001
	if _, err := NewAliasTable(&entry, &mag); err == nil {
		t.Error("magnitude with the sign bit accepted")
	}
}

// The stream is uniform in the bits the draw uses, alone and in pairs of
// consecutive elements: chi-square over 256 cells, about 250 ± 22 for a
// good generator; the bound is p ≈ 1e-7.
func TestAliasStreamUniform(t *testing.T) {
	const n = 1 << 20
	for _, key := range []uint64{0, 1, 0x6a09e667f3bcc908} {
		var cells [5][256]float64
		prev := uint64(0)
		for i := range uint64(n) {
			z := AliasStream(key, i)
			cells[0][z>>56]++                          // top bits: the slot
			cells[1][z&0xff]++                         // low bits: the threshold compare
			cells[2][z>>(AliasUnitBits-7)&0xff]++      // bits 43..50: the compare's top and the sign
			cells[3][z>>60|prev>>60<<4]++              // consecutive slots
			cells[4][z>>AliasUnitBits&1|prev>>63<<1]++ // sign after slot half (4 cells used)
			prev = z
		}
		for c, counts := range cells {
			used, chi := 0, 0.0
			for _, v := range counts {
				if v > 0 {
					used++
				}
			}
			e := float64(n) / float64(used)
			for _, v := range counts {
				if v > 0 {
					chi += (v - e) * (v - e) / e
				}
			}
			dof := float64(used - 1)
			if chi > dof+5.3*math.Sqrt(2*dof) {
				t.Errorf("key %#x, cell set %d: chi-square %.1f over %d cells", key, c, chi, used)
			}
		}
	}
}

func aliasAVX512Used() bool {
	for _, p := range SupportedPaths() {
		if p == AVX512VNNI {
			return aliasAVX512
		}
	}
	return false
}

// BenchmarkFillAlias reports ns/weight for each supported path on one core
// (a 2^18-weight chunk, as model's initialisation fills).
func BenchmarkFillAlias(b *testing.B) {
	tab := randomAliasTable(b, rand.New(rand.NewPCG(1, 2)))
	dst := make([]uint16, 1<<18)
	for _, p := range SupportedPaths() {
		b.Run(fmt.Sprint(p), func(b *testing.B) {
			b.SetBytes(int64(len(dst))) // MB/s reads as millions of weights a second
			for i := range b.N {
				FillAliasPath(p, dst, tab, uint64(i), 0)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(dst)), "ns/weight")
		})
	}
}
