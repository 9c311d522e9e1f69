package numerics

import (
	"fmt"
	"strings"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// BitLinearCaseChecks lists the checks of a bitlinear case: y, and the
// straight-through gradients when the case has them, each per element
// within its BitLinear bound.
func BitLinearCaseChecks(c *golden.Case, target Target) []Check {
	N, in, out := c.X.Shape[0], c.X.Shape[1], c.Weight.Shape[0]
	var yBound []float64 // shared by both paths' y checks, computed once
	yCheck := func(name, op string, linear func(x, w *model.Tensor) (*model.Tensor, error)) Check {
		return Check{Name: name, Layer: -1, Op: op, Tensor: "y", Stage: StageForward,
			run: func(*caseRun) (Measurement, error) {
				y, err := linear(c.X, c.Weight)
				if err != nil {
					return Measurement{}, err
				}
				if yBound == nil {
					yBound = bitLinearBound(c.X.Data, c.Weight.Data, N, out, in)
				}
				return compareElements(y, c.Y, yBound)
			}}
	}
	checks := []Check{yCheck("bitlinear y = linear(act_quant(x), weight_quant(weight)) from golden x, weight → y", "BitLinear", target.BitLinear)}
	if target.BitLinearKernels != nil {
		checks = append(checks, yCheck("bitlinear y on the integer kernels (int8 activations, ternary×int8 sums) from golden x, weight → y", "BitLinear, integer kernels", target.BitLinearKernels))
	}
	if c.GradY == nil {
		return checks
	}
	var gxBound, gwBound []float64
	var gx, gw *model.Tensor
	var gradErr error
	backward := func() error {
		if gxBound == nil {
			gxBound, gwBound = bitLinearBackwardBound(c.X.Data, c.Weight.Data, c.GradY.Data, N, out, in)
			gx, gw, gradErr = target.BitLinearBackward(c.X, c.Weight, c.GradY)
		}
		return gradErr
	}
	return append(checks,
		Check{Name: "bitlinear backward (straight-through) from golden x, weight, grad_y → grad.x", Layer: -1, Op: "BitLinear backward", Tensor: "grad.x", Stage: StageBackward,
			run: func(*caseRun) (Measurement, error) {
				if err := backward(); err != nil {
					return Measurement{}, err
				}
				return compareElements(gx, c.GradX, gxBound)
			}},
		Check{Name: "bitlinear backward (straight-through) from golden x, weight, grad_y → grad.weight", Layer: -1, Op: "BitLinear backward", Tensor: "grad.weight", Stage: StageBackward,
			run: func(*caseRun) (Measurement, error) {
				if err := backward(); err != nil {
					return Measurement{}, err
				}
				return compareElements(gw, c.GradWeight, gwBound)
			}},
	)
}

// CaseChecks lists every check of a case in computation order.
func CaseChecks(c *golden.Case, target Target) []Check {
	var checks []Check
	if c.Kind == golden.KindBitlinear {
		checks = BitLinearCaseChecks(c, target)
	} else {
		checks = ModelCaseChecks(c)
	}
	for i := range checks {
		checks[i].Order = i
	}
	return checks
}

// IsGradient reports whether a check belongs to the gradient suite.
func (c Check) IsGradient() bool {
	return c.Stage == StageBackward || strings.HasPrefix(c.Tensor, "grad.")
}

// GradChecks returns the checks the gradient specs run: the backward op
// checks and the parameter gradients end to end.
func GradChecks(c *golden.Case, target Target) []Check {
	var out []Check
	for _, check := range CaseChecks(c, target) {
		if check.IsGradient() {
			out = append(out, check)
		}
	}
	return out
}

// Evaluate runs checks of one case against a target on a compute path and
// returns every result in computation order. The golden and gradient specs
// run the same checks.
func Evaluate(c *golden.Case, target Target, checks []Check, compute model.Compute) ([]Result, error) {
	r, err := newCaseRun(c, target, compute)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(checks))
	for i, check := range checks {
		results[i] = check.evaluate(r)
	}
	return results, nil
}

// FirstFailingCheck evaluates checks in order and stops at the first
// failure, which it returns (nil when every check passes): where a case's
// divergence starts, at the cost of the checks before it.
func FirstFailingCheck(c *golden.Case, target Target, checks []Check, compute model.Compute) (*Result, error) {
	r, err := newCaseRun(c, target, compute)
	if err != nil {
		return nil, err
	}
	for _, check := range checks {
		if result := check.evaluate(r); !result.Passed() {
			return &result, nil
		}
	}
	return nil, nil
}

func newCaseRun(c *golden.Case, target Target, compute model.Compute) (*caseRun, error) {
	r := &caseRun{c: c, compute: compute}
	if c.Kind != golden.KindBitlinear {
		impl, err := target.FromTensors(c.Config, c.Params)
		if err != nil {
			return nil, fmt.Errorf("%s: building %s: %w", c.Path, target.Name, err)
		}
		r.impl = impl
	}
	return r, nil
}
