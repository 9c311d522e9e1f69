package kernels_test

import (
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

var _ = Describe("Path selection", Label("suite:kernels", conformance.LabelCostModel), func() {
	It("names the known paths for an unknown one and refuses it", func() {
		before := kernels.ActivePath()
		Expect(kernels.SetPath("sse9")).To(MatchError(And(ContainSubstring(`"sse9"`), ContainSubstring("avx512vnni"))))
		Expect(kernels.ActivePath()).To(Equal(before))
		Expect(kernels.SupportedPaths()[0]).To(Equal(kernels.Generic))
		Expect(kernels.SupportedPaths()).To(ContainElement(before))
	})
})
