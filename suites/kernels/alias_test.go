package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/kernels"
)

// aliasCase is one parity check of FillAlias: elements first … first+n-1
// of the stream keyed by key, drawn from tab.
type aliasCase struct {
	tab        *kernels.AliasTable
	table      string // how tab was made, so that every case's name is its own
	n          int
	key, first uint64
}

func (c aliasCase) String() string {
	return fmt.Sprintf("%s table, %d elements from %d, key %#x", c.table, c.n, c.first, c.key)
}

// referenceFillAlias is the loop of FillAlias's documentation, on the
// table's entries and magnitudes.
func referenceFillAlias(c aliasCase) []uint16 {
	dst := make([]uint16, c.n)
	for k := range dst {
		z := kernels.AliasStream(c.key, c.first+uint64(k))
		slot := int(z >> (64 - kernels.AliasBits))
		if e := c.tab.Entry(slot); z&(1<<kernels.AliasUnitBits-1) >= e>>kernels.AliasBits {
			slot = int(e & (kernels.AliasSlots - 1))
		}
		dst[k] = c.tab.Mag(slot) | uint16(z>>kernels.AliasUnitBits&1)<<15
	}
	return dst
}

// newAliasTable makes a table with threshold(i) and alias(i), and random
// 15-bit magnitudes.
func newAliasTable(rng *rand.Rand, threshold func(i int) uint64, alias func(i int) int) *kernels.AliasTable {
	var entry [kernels.AliasSlots]uint64
	var mag [kernels.AliasSlots]uint16
	for i := range entry {
		entry[i] = threshold(i)<<kernels.AliasBits | uint64(alias(i))
		mag[i] = uint16(rng.UintN(1 << 15))
	}
	tab, err := kernels.NewAliasTable(&entry, &mag)
	Expect(err).NotTo(HaveOccurred())
	return tab
}

// boundaryTable sets the threshold of the slot each of the first n draws of
// key falls in to the draw's compare bits plus off: the compare decided at
// its edge (off 0: alias, 1: own), inside a 2^16 block (the SIMD path's
// packed words tie and it compares exactly), and outside one.
func boundaryTable(rng *rand.Rand, key uint64, n int, off int64) *kernels.AliasTable {
	thr := make(map[int]uint64)
	for k := range n {
		z := kernels.AliasStream(key, uint64(k))
		low := int64(z & (1<<kernels.AliasUnitBits - 1))
		thr[int(z>>(64-kernels.AliasBits))] = uint64(min(max(low+off, 0), 1<<kernels.AliasUnitBits))
	}
	return newAliasTable(rng,
		func(i int) uint64 {
			if t, ok := thr[i]; ok {
				return t
			}
			return rng.Uint64N(1<<kernels.AliasUnitBits + 1)
		},
		func(int) int { return rng.IntN(kernels.AliasSlots) })
}

const (
	aliasGuard     = 16
	aliasGuardWord = uint16(0xa5a5)
)

// expectAliasParity runs c on path p with dst framed by guard words and
// compares it with the reference loop, naming the first differing element.
func expectAliasParity(p kernels.Path, c aliasCase) {
	GinkgoHelper()
	buf := make([]uint16, aliasGuard+c.n+aliasGuard)
	for i := range buf {
		buf[i] = aliasGuardWord
	}
	Expect(kernels.FillAliasPath(p, buf[aliasGuard:aliasGuard+c.n], c.tab, c.key, c.first)).To(Succeed(), "path %s, %v", p, c)
	for i := range aliasGuard {
		if buf[i] != aliasGuardWord {
			Fail(fmt.Sprintf("path %s, %v: wrote %#04x at dst[%d], before the output", p, c, buf[i], i-aliasGuard))
		}
		if j := aliasGuard + c.n + i; buf[j] != aliasGuardWord {
			Fail(fmt.Sprintf("path %s, %v: wrote %#04x at dst[%d], past the output (len %d)", p, c, buf[j], c.n+i, c.n))
		}
	}
	got, want := buf[aliasGuard:aliasGuard+c.n], referenceFillAlias(c)
	for i := range want {
		if got[i] != want[i] {
			Fail(fmt.Sprintf("path %s, %v: first difference at element %d: got %#04x, want %#04x (reference loop)", p, c, i, got[i], want[i]))
		}
	}
}

// aliasEntries builds, before RunSpecs, one Entry per supported path and
// case.
func aliasEntries() []TableEntry {
	rng := rand.New(rand.NewPCG(2026, 22))
	random := newAliasTable(rng,
		func(i int) uint64 {
			switch i % 5 {
			case 0:
				return 0 // always the alias
			case 1:
				return 1 << kernels.AliasUnitBits // always its own
			}
			return rng.Uint64N(1<<kernels.AliasUnitBits + 1)
		},
		func(int) int { return rng.IntN(kernels.AliasSlots) })
	var cases []aliasCase
	// lengths around the 8 lanes, offsets inside a group, the counter
	// wrapping past 2^64
	for i, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 1000, 4097} {
		first := []uint64{0, 3, 1<<18 - 5, math.MaxUint64 - 5, rng.Uint64()}[i%5]
		cases = append(cases, aliasCase{random, "random", n, rng.Uint64(), first})
	}
	const boundaryKey, boundaryN = 0x5eed, 3000
	for _, off := range []int64{0, 1, -1, 0x7fff, -0x7fff, 0x10000, -0x10000} {
		cases = append(cases, aliasCase{boundaryTable(rng, boundaryKey, boundaryN, off), fmt.Sprintf("thresholds at draws%+d", off), boundaryN, boundaryKey, 0})
	}
	return pathEntries(cases, func(c aliasCase) string { return fmt.Sprint(c) })
}

var _ = Describe("FillAlias", Label("suite:kernels", conformance.LabelCostModel), func() {
	DescribeTable("matches the reference loop bit-exactly, with dst guarded",
		expectAliasParity,
		aliasEntries(),
	)

	It("gives the same output on the active path through FillAlias", func() {
		rng := rand.New(rand.NewPCG(7, 8))
		c := aliasCase{newAliasTable(rng, func(int) uint64 { return rng.Uint64N(1 << kernels.AliasUnitBits) }, func(int) int { return rng.IntN(kernels.AliasSlots) }),
			"random", 1 << 18, 42, 0}
		got := make([]uint16, c.n)
		kernels.FillAlias(got, c.tab, c.key, c.first)
		Expect(got).To(Equal(referenceFillAlias(c)), "active path %s, %v", kernels.ActivePath(), c)
	})
})
