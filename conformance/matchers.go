package conformance

import (
	"fmt"
	"math"
	"slices"

	"github.com/onsi/gomega/gcustom"
	"github.com/onsi/gomega/types"

	"github.com/tritter-ai/conformance/model"
)

// MatchTensor succeeds when a *model.Tensor has the expected shape and is
// within the policy's tolerance for quantity. what names the tensor and
// layer in failure messages, for example "layer 3 output (hidden.4)".
func MatchTensor(expected *model.Tensor, quantity Quantity, what string) types.GomegaMatcher {
	tol, ok := Policy[quantity]
	return gcustom.MakeMatcher(func(actual *model.Tensor) (bool, error) {
		if !ok {
			return false, fmt.Errorf("no tolerance for %q in the policy", quantity)
		}
		if actual == nil {
			return false, fmt.Errorf("%s: got no tensor", what)
		}
		if !slices.Equal(actual.Shape, expected.Shape) || len(actual.Data) != len(expected.Data) {
			return false, fmt.Errorf("%s: shape %s, expected %s", what, model.ShapeString(actual.Shape), model.ShapeString(expected.Shape))
		}
		return Compare(actual.Data, expected.Data, expected.Shape, tol).Within(tol), nil
	}).WithTemplate("{{.Data.What}}: {{.Data.Comparison .Actual}}\n({{.Data.Quantity}} tolerance: {{.Data.Tol}})",
		tensorTemplateData{What: what, Quantity: quantity, Tol: tol, expected: expected})
}

type tensorTemplateData struct {
	What     string
	Quantity Quantity
	Tol      Tolerance
	expected *model.Tensor
}

// Comparison renders the measured difference for the failure message.
func (d tensorTemplateData) Comparison(actual any) string {
	a, ok := actual.(*model.Tensor)
	if !ok || a == nil || len(a.Data) != len(d.expected.Data) {
		return "not comparable"
	}
	return Compare(a.Data, d.expected.Data, d.expected.Shape, d.Tol).String()
}

// MatchScalar succeeds when a float64 is within the policy's relative bound
// of expected.
func MatchScalar(expected float64, quantity Quantity, what string) types.GomegaMatcher {
	tol := Policy[quantity]
	return gcustom.MakeMatcher(func(actual float64) (bool, error) {
		if math.IsNaN(actual) || math.IsInf(actual, 0) {
			return false, nil
		}
		return math.Abs(actual-expected) <= tol.RelL2*math.Abs(expected), nil
	}).WithTemplate(fmt.Sprintf("%s: got {{.Actual}}, expected %v within relative %g", what, expected, tol.RelL2))
}

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
			return unravel(i, t.Shape)
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
			return unravel(i, shape)
		}
	}
	return nil
}
