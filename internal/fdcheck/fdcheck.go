// Package fdcheck compares an analytic gradient with central finite
// differences, for the float64 backward-pass tests of internal/ops and
// model. In float64, central differences with h = 1e-6 are accurate to
// about 1e-9 relative, so any wrong term in a backward formula shows up
// far above the 1e-6 the check allows.
package fdcheck

import (
	"math"
	"testing"
)

// Compare checks analytic, the gradient of loss with respect to x, against
// central differences of loss over the entries of x (every third entry
// under -short) and fails t with the relative L2 error and the worst
// element when they disagree by more than 1e-6.
func Compare(t testing.TB, name string, x, analytic []float64, loss func() float64) {
	t.Helper()
	const h = 1e-6
	var num, den, worst float64
	worstAt := -1
	stride := 1
	if testing.Short() {
		stride = 3 // every third entry keeps -race -short quick
	}
	for i := 0; i < len(x); i += stride {
		v := x[i]
		x[i] = v + h
		lp := loss()
		x[i] = v - h
		lm := loss()
		x[i] = v
		fd := (lp - lm) / (2 * h)
		d := analytic[i] - fd
		num += d * d
		den += fd * fd
		if e := math.Abs(d) / (1e-6 + math.Abs(fd)); e > worst {
			worst, worstAt = e, i
		}
	}
	rel := math.Sqrt(num / math.Max(den, 1e-300))
	if den == 0 {
		rel = math.Sqrt(num)
	}
	if !(rel < 1e-6) {
		t.Errorf("%s: analytic vs finite-difference relL2 %.3g (worst element %d rel %.3g)", name, rel, worstAt, worst)
	} else if testing.Verbose() {
		t.Logf("%-45s relL2 %.2g", name, rel)
	}
}
