package conformance

import (
	"fmt"
	"math"

	"github.com/onsi/gomega/gcustom"
	"github.com/onsi/gomega/types"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/model"
)

// BeAllFinite succeeds when every element of a *model.Tensor is finite; the
// failure names the first NaN or Inf by multi-index.
func BeAllFinite(what string) types.GomegaMatcher {
	return gcustom.MakeMatcher(func(actual *model.Tensor) (bool, error) {
		return firstNonFinite(actual) == nil, nil
	}).WithTemplate("{{.Data.What}}: {{.Data.Describe .Actual}}", finiteData{What: what})
}

type finiteData struct{ What string }

// Describe names the first non-finite element.
func (d finiteData) Describe(actual any) string {
	t, _ := actual.(*model.Tensor)
	if t == nil {
		return "no tensor"
	}
	idx := firstNonFinite(t)
	if idx == nil {
		return "all finite"
	}
	n := 0
	for _, v := range t.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			n++
		}
	}
	return fmt.Sprintf("%d of %d values are not finite; the first is %v at %v", n, len(t.Data), t.Data[flat(idx, t.Shape)], idx)
}

func firstNonFinite(t *model.Tensor) []int {
	for i, v := range t.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return numerics.Unravel(i, t.Shape)
		}
	}
	return nil
}

func flat(idx, shape []int) int {
	i := 0
	for d := range shape {
		i = i*shape[d] + idx[d]
	}
	return i
}

// FirstBitDifference returns the multi-index of the first element whose bits
// differ between a and b, or nil when they are bit-identical.
func FirstBitDifference(a, b []float32, shape []int) []int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return numerics.Unravel(i, shape)
		}
	}
	return nil
}
