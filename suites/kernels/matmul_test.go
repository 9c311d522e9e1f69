package kernels_test

import (
	"fmt"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/kernels"
)

// matMulCase is one parity check: weights w [rows, cols] and activations x
// [tokens, cols], both row-major.
type matMulCase struct {
	rows, cols, tokens int
	w, x               []int8
	fill               string // how w and x were filled, so that every case's name is its own
}

func (c matMulCase) String() string {
	return fmt.Sprintf("W [%d, %d] × %d tokens, %s", c.rows, c.cols, c.tokens, c.fill)
}

// referenceMatMul is the reference loop, on unpacked weights.
func referenceMatMul(c matMulCase) []int32 {
	dst := make([]int32, c.tokens*c.rows)
	for tok := 0; tok < c.tokens; tok++ {
		for r := 0; r < c.rows; r++ {
			var sum int32
			for col := 0; col < c.cols; col++ {
				sum += int32(c.w[r*c.cols+col]) * int32(c.x[tok*c.cols+col])
			}
			dst[tok*c.rows+r] = sum
		}
	}
	return dst
}

// guardLen sentinels on each side of dst catch writes out of bounds.
const (
	guardLen   = 64
	guardValue = int32(-0x5a5a5a5b)
)

// expectParity runs c on path p with dst framed by guard values and compares
// it with the reference loop, naming the first differing (token, row).
func expectParity(p kernels.Path, c matMulCase) {
	GinkgoHelper()
	packed, err := kernels.PackTernary(c.w, c.rows, c.cols)
	Expect(err).NotTo(HaveOccurred())
	n := c.tokens * c.rows
	buf := make([]int32, guardLen+n+guardLen)
	for i := range buf {
		buf[i] = guardValue
	}
	Expect(packed.MatMulPath(p, buf[guardLen:guardLen+n], c.x, c.tokens)).To(Succeed(), "path %s, %v", p, c)
	for i := range guardLen {
		if buf[i] != guardValue {
			Fail(fmt.Sprintf("path %s, %v: wrote %d at dst[%d], before the output", p, c, buf[i], i-guardLen))
		}
		if j := guardLen + n + i; buf[j] != guardValue {
			Fail(fmt.Sprintf("path %s, %v: wrote %d at dst[%d], past the output (len %d)", p, c, buf[j], n+i, n))
		}
	}
	got, want := buf[guardLen:guardLen+n], referenceMatMul(c)
	for i := range want {
		if got[i] != want[i] {
			Fail(fmt.Sprintf("path %s, %v: first difference at token %d, row %d: got %d, want %d (reference loop)",
				p, c, i/c.rows, i%c.rows, got[i], want[i]))
		}
	}
}

func randomCase(seed uint64, rows, cols, tokens int) matMulCase {
	rng := rand.New(rand.NewPCG(seed, 0x6b65726e656c73))
	c := matMulCase{rows: rows, cols: cols, tokens: tokens, w: make([]int8, rows*cols), x: make([]int8, tokens*cols), fill: fmt.Sprintf("random (seed %d)", seed)}
	for i := range c.w {
		c.w[i] = int8(rng.IntN(3)) - 1
	}
	for i := range c.x {
		c.x[i] = int8(rng.IntN(256) - 128)
	}
	return c
}

// filledCase has every weight equal to w and every activation equal to x.
func filledCase(rows, cols, tokens int, w, x int8) matMulCase {
	c := matMulCase{rows: rows, cols: cols, tokens: tokens, w: make([]int8, rows*cols), x: make([]int8, tokens*cols), fill: fmt.Sprintf("every w = %d, every x = %d", w, x)}
	for i := range c.w {
		c.w[i] = w
	}
	for i := range c.x {
		c.x[i] = x
	}
	return c
}

// alternatingCase has W[r,c] = (-1)^(r+c) and x[t,c] = ±127 alternating by c.
func alternatingCase(rows, cols, tokens int) matMulCase {
	c := filledCase(rows, cols, tokens, 1, 127)
	c.fill = "alternating signs"
	for i := range c.w {
		if (i/cols+i%cols)%2 == 1 {
			c.w[i] = -1
		}
	}
	for i := range c.x {
		if i%cols%2 == 1 {
			c.x[i] = -127
		}
	}
	return c
}

// parityEntries builds, before RunSpecs, one Entry per supported path and
// case: the spec tree depends on the CPU, not on setup nodes.
func parityEntries() []TableEntry {
	var cases []matMulCase
	// Fixed awkward shapes: single elements, just under and over the SIMD
	// widths (4, 16, 32, 64, 128, 256) and both row-group tails.
	for i, s := range [][2]int{{1, 1}, {1, 3}, {3, 5}, {4, 256}, {5, 257}, {7, 255}, {17, 31}, {33, 129}, {63, 1023}, {65, 1025}, {300, 1100}, {299, 1}} {
		cases = append(cases, randomCase(uint64(i), s[0], s[1], 1+i%17))
	}
	rng := rand.New(rand.NewPCG(2026, 1))
	for i := range 24 {
		cases = append(cases, randomCase(uint64(100+i), 1+rng.IntN(300), 1+rng.IntN(1100), 1+i%17))
	}
	zeroActivations := randomCase(7, 9, 300, 5)
	clear(zeroActivations.x)
	zeroActivations.fill = "random w, every x = 0"
	cases = append(cases,
		filledCase(9, 300, 5, 0, 0),
		zeroActivations,
		filledCase(13, 777, 6, 1, 0),
		filledCase(13, 777, 6, 1, 1),
		filledCase(13, 777, 6, -1, 1),
		filledCase(13, 777, 6, 1, -128),
		filledCase(13, 777, 6, -1, 127),
		alternatingCase(21, 513, 7),
		alternatingCase(8, 2048, 4),
	)
	// Adversarial extremes: an int16 accumulator of pair sums would wrap.
	for _, k := range []int{4096, 8192, 16384} {
		cases = append(cases, filledCase(6, k, 5, 1, 127), filledCase(6, k, 5, -1, -128))
	}
	return pathEntries(cases, func(c matMulCase) string { return fmt.Sprint(c) })
}

var _ = Describe("Ternary MatMul", Label("suite:kernels", conformance.LabelCostModel), func() {
	DescribeTable("matches the reference loop bit-exactly, with dst guarded",
		expectParity,
		parityEntries(),
	)

	It("gives the same output on the active path through MatMul", func() {
		c := randomCase(42, 70, 600, 9)
		packed, err := kernels.PackTernary(c.w, c.rows, c.cols)
		Expect(err).NotTo(HaveOccurred())
		got := make([]int32, c.tokens*c.rows)
		packed.MatMul(got, c.x, c.tokens)
		Expect(got).To(Equal(referenceMatMul(c)), "active path %s, %v", kernels.ActivePath(), c)
	})
})
