package numerics

import (
	"math"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

// The end-to-end bound grows as 4s/(1−s) and gives up at s = 1, where the
// alternative correct runs differ by as much as the tensor itself.
func TestEndToEndBoundBySpread(t *testing.T) {
	expected := &model.Tensor{Shape: []int{4}, Data: []float32{1, 2, 3, 4}}
	actual := &model.Tensor{Shape: []int{4}, Data: []float32{3, -1, 7, 0}} // relL2 ≈ 1.26
	for _, tc := range []struct {
		spread, bound float64
		passed        bool
	}{
		{0, EndToEndFloor, false},
		{0.01, 4 * 0.01 / 0.99, false},
		{0.25, 4 * 0.25 / 0.75, true},
		{0.5, 4, true},
	} {
		m, err := compareRelL2(actual, expected, tc.spread)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(m.Bound-tc.bound) > 1e-12 || (m.Ratio <= 1) != tc.passed || m.Uninformative != "" {
			t.Errorf("spread %g: bound %g (want %g), ratio %g, uninformative %q", tc.spread, m.Bound, tc.bound, m.Ratio, m.Uninformative)
		}
	}
	m, err := compareRelL2(actual, expected, 1.02)
	if err != nil {
		t.Fatal(err)
	}
	r := Result{Measure: m}
	if !strings.Contains(m.Uninformative, "chaotic") || !r.Passed() || !strings.Contains(m.String(), "proves nothing") {
		t.Errorf("spread 1.02: %+v, passed %v", m, r.Passed())
	}
}
