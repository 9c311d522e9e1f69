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

// referenceActQuant is act_quant written out in float32, as torch does it.
func referenceActQuant(x []float32, rows, cols int) ([]int8, []float32) {
	q, scales := make([]int8, rows*cols), make([]float32, rows)
	for r := range rows {
		maxAbs := float32(0)
		for c := range cols {
			maxAbs = max(maxAbs, float32(math.Abs(float64(x[r*cols+c]))))
		}
		scales[r] = float32(127) / max(maxAbs, float32(1e-5))
		for c := range cols {
			v := math.RoundToEven(float64(float32(x[r*cols+c] * scales[r])))
			q[r*cols+c] = int8(min(max(v, -128), 127))
		}
	}
	return q, scales
}

type quantCase struct {
	name       string
	rows, cols int
	x          []float32
	want       []int8 // nil: compare with referenceActQuant
}

func quantEntries() []TableEntry {
	rng := rand.New(rand.NewPCG(11, 12))
	random := make([]float32, 7*333)
	for i := range random {
		random[i] = float32(rng.NormFloat64() * 3)
	}
	cases := []quantCase{
		// max |x| = 127 makes the scale exactly 1, so the products are the
		// inputs and the .5 ties go to the even integer.
		{name: "ties at .5", rows: 1, cols: 9,
			x:    []float32{127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -127},
			want: []int8{127, 0, 0, 2, -2, 2, -2, 126, -127}},
		// A negative max maps to -127: act_quant never produces -128.
		{name: "negative max", rows: 2, cols: 3,
			x:    []float32{-127.5, 100, 3, 0, 0, 0},
			want: []int8{-127, 100, 3, 0, 0, 0}},
		{name: "random rows", rows: 7, cols: 333, x: random},
	}
	return pathEntries(cases, func(c quantCase) string { return fmt.Sprintf("%s [%d, %d]", c.name, c.rows, c.cols) })
}

var _ = Describe("QuantizeActivations", Label("suite:kernels", conformance.LabelCostModel), func() {
	// The quantizer has one pure-Go implementation; QuantizeActivationsPath
	// still runs it under every path label so a future SIMD quantizer is
	// covered by the same entries.
	DescribeTable("matches act_quant in float32 with round-half-to-even",
		func(p kernels.Path, c quantCase) {
			q, scales := make([]int8, c.rows*c.cols), make([]float32, c.rows)
			Expect(kernels.QuantizeActivationsPath(p, q, scales, c.x, c.rows, c.cols)).To(Succeed())
			want, wantScales := referenceActQuant(c.x, c.rows, c.cols)
			if c.want != nil {
				want = c.want
			}
			Expect(scales).To(Equal(wantScales), "path %s, %s: scales", p, c.name)
			for i := range want {
				if q[i] != want[i] {
					Fail(fmt.Sprintf("path %s, %s [%d, %d]: first difference at row %d, col %d (x = %v): got %d, want %d",
						p, c.name, c.rows, c.cols, i/c.cols, i%c.cols, c.x[i], q[i], want[i]))
				}
			}
		},
		quantEntries(),
	)

	It("floors an all-zero row's max at 1e-5", func() {
		q, scales := make([]int8, 4), make([]float32, 1)
		kernels.QuantizeActivations(q, scales, make([]float32, 4), 1, 4)
		Expect(scales[0]).To(Equal(float32(127) / float32(1e-5)))
		Expect(q).To(Equal([]int8{0, 0, 0, 0}))
	})

	It("keeps the extremes of float32 within [-127, 127]", func() {
		// The per-row max maps to exactly ±127, so the clamp to [-128, 127]
		// never binds; the largest finite magnitudes must not overflow.
		q, scales := make([]int8, 3), make([]float32, 1)
		kernels.QuantizeActivations(q, scales, []float32{math.MaxFloat32, -math.MaxFloat32, 1}, 1, 3)
		Expect(q).To(Equal([]int8{127, -127, 0}))
	})
})

var _ = Describe("WeightScale and Ternarize", Label("suite:kernels", conformance.LabelCostModel), func() {
	It("computes 1/max(mean|W|, 1e-5) and rounds half to even", func() {
		w := []float32{0.5, -0.5, 1.5, -1.5, 0.25, -0.25, 3, 0} // mean |w| = 0.9375
		scale := kernels.WeightScale(w)
		Expect(scale).To(Equal(float32(1 / 0.9375)))
		dst := make([]int8, len(w))
		kernels.Ternarize(dst, w, 2) // products 1, -1, 3, -3, 0.5, -0.5, 6, 0: clamps and ties
		Expect(dst).To(Equal([]int8{1, -1, 1, -1, 0, 0, 1, 0}))
		Expect(kernels.WeightScale(make([]float32, 5))).To(Equal(float32(1e5)))
	})
})
