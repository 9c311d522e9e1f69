package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/kernels"
)

// hfPack writes the offline HF layout from REFERENCE.md: unpacked row r goes
// to packed row r mod (rows/4), bits 2*(r div (rows/4)), as w+1.
func hfPack(w []int8, rows, cols int) []uint8 {
	quarter := rows / 4
	packed := make([]uint8, quarter*cols)
	for r := range rows {
		for c := range cols {
			packed[(r%quarter)*cols+c] |= uint8(w[r*cols+c]+1) << (2 * (r / quarter))
		}
	}
	return packed
}

var _ = Describe("Packed layouts", Label("suite:kernels", conformance.LabelCostModel), func() {
	DescribeTable("round-trip the HF offline layout",
		func(rows, cols int) {
			c := randomCase(uint64(rows*cols), rows, cols, 0)
			hf := hfPack(c.w, rows, cols)
			t, err := kernels.FromHFPacked(hf, rows, cols)
			Expect(err).NotTo(HaveOccurred())
			Expect(t.Unpack()).To(Equal(c.w), "[%d, %d]: FromHFPacked then Unpack", rows, cols)
			Expect(t.HFPacked()).To(Equal(hf), "[%d, %d]: HFPacked", rows, cols)
			direct, err := kernels.PackTernary(c.w, rows, cols)
			Expect(err).NotTo(HaveOccurred())
			Expect(direct.HFPacked()).To(Equal(hf), "[%d, %d]: PackTernary then HFPacked", rows, cols)
		},
		Entry("shape [4, 1]", 4, 1),
		Entry("shape [8, 255]", 8, 255),
		Entry("shape [20, 257]", 20, 257),
		Entry("shape [640, 300]", 640, 300),
	)

	It("computes the same MatMul from the HF layout as from PackTernary", func() {
		c := randomCase(5, 36, 700, 3)
		t, err := kernels.FromHFPacked(hfPack(c.w, c.rows, c.cols), c.rows, c.cols)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range kernels.SupportedPaths() {
			got := make([]int32, c.tokens*c.rows)
			Expect(t.MatMulPath(p, got, c.x, c.tokens)).To(Succeed())
			Expect(got).To(Equal(referenceMatMul(c)), "path %s, %v", p, c)
		}
	})

	It("rejects the code 3 and rows that are not a multiple of 4", func() {
		hf := make([]uint8, 2*5)
		hf[7] = 0b11 << 4
		_, err := kernels.FromHFPacked(hf, 8, 5)
		Expect(err).To(MatchError(ContainSubstring("packed[7]")))
		_, err = kernels.FromHFPacked(make([]uint8, 10), 6, 5)
		Expect(err).To(MatchError(ContainSubstring("multiple of 4")))
	})

	It("rejects weights outside {-1, 0, 1} and length mismatches", func() {
		w := make([]int8, 12)
		w[9] = 2
		_, err := kernels.PackTernary(w, 3, 4)
		Expect(err).To(MatchError(ContainSubstring("w[9] (row 2, col 1) = 2")))
		_, err = kernels.PackTernary(w, 4, 4)
		Expect(err).To(MatchError(ContainSubstring("len(w) = 12")))
		w[9] = -128
		_, err = kernels.PackTernary(w, 3, 4)
		Expect(err).To(MatchError(ContainSubstring("w[9] (row 2, col 1) = -128")))
	})
})

// bf16Case is a bf16 weight matrix [rows, cols] to ternarise at scale.
type bf16Case struct {
	name       string
	rows, cols int
	w          []uint16
	scale      float32
}

func bf16Entries() []TableEntry {
	every := make([]uint16, 1<<16) // every bf16 pattern: ±0, denormals, ±Inf, NaNs
	for b := range every {
		every[b] = uint16(b)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	normal := make([]uint16, 36*700)
	for i := range normal {
		normal[i] = uint16(math.Float32bits(float32(rng.NormFloat64()*0.02)) >> 16)
	}
	cases := []bf16Case{
		{name: "every pattern, scale 1/(0.8·0.02)", rows: 256, cols: 256, w: every, scale: 1 / (0.8 * 0.02)},
		{name: "every pattern, scale 64 (2^-7·64 = 0.5 ties to 0)", rows: 256, cols: 256, w: every, scale: 64},
		{name: "every pattern, scale -3", rows: 256, cols: 256, w: every, scale: -3},
		{name: "every pattern, scale 0", rows: 256, cols: 256, w: every, scale: 0},
		{name: "every pattern, scale NaN", rows: 256, cols: 256, w: every, scale: float32(math.NaN())},
		{name: "normal weights, partial block", rows: 36, cols: 700, w: normal, scale: 1 / (0.8 * 0.02)},
	}
	return pathEntries(cases, func(c bf16Case) string { return fmt.Sprintf("%s [%d, %d]", c.name, c.rows, c.cols) })
}

var _ = Describe("Packing bf16 weights", Label("suite:kernels", conformance.LabelCostModel), func() {
	DescribeTable("gives the codes of Ternarize, packed as PackTernary packs them",
		func(p kernels.Path, c bf16Case) {
			values := make([]float32, len(c.w))
			for i, b := range c.w {
				values[i] = math.Float32frombits(uint32(b) << 16)
			}
			tern := make([]int8, len(c.w))
			kernels.Ternarize(tern, values, c.scale)
			t, err := kernels.PackTernaryBF16Path(p, c.w, c.rows, c.cols, c.scale)
			Expect(err).NotTo(HaveOccurred())
			got := t.Unpack()
			if !slices.Equal(got, tern) {
				i := 0
				for got[i] == tern[i] {
					i++
				}
				Fail(fmt.Sprintf("path %s, %s: weight %d (pattern %#04x) is %d, Ternarize gives %d", p, c.name, i, c.w[i], got[i], tern[i]))
			}
			Expect(t.HFPacked()).To(Equal(hfPack(tern, c.rows, c.cols)), "path %s, %s: HFPacked", p, c.name)
		},
		bf16Entries(),
	)
})

var _ = Describe("Path selection", Label("suite:kernels", conformance.LabelCostModel), func() {
	It("names the known paths for an unknown one and refuses it", func() {
		before := kernels.ActivePath()
		Expect(kernels.SetPath("sse9")).To(MatchError(And(ContainSubstring(`"sse9"`), ContainSubstring("avx512vnni"))))
		Expect(kernels.ActivePath()).To(Equal(before))
		Expect(kernels.SupportedPaths()[0]).To(Equal(kernels.Generic))
		Expect(kernels.SupportedPaths()).To(ContainElement(before))
	})
})
