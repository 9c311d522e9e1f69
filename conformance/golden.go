package conformance

import (
	"fmt"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// BitLinearCaseChecks lists the checks of a bitlinear case: y, and the
// straight-through gradients when the case has them, each per element
// within its BitLinear bound.
func BitLinearCaseChecks(c *golden.Case, target Target) []Check {
	N, in, out := c.X.Shape[0], c.X.Shape[1], c.Weight.Shape[0]
	checks := []Check{{
		Name: "bitlinear y = linear(act_quant(x), weight_quant(weight)) from golden x, weight → y", Layer: -1, Op: "BitLinear", Tensor: "y", Stage: StageForward,
		run: func(*caseRun) (Measurement, error) {
			y, err := target.BitLinear(c.X, c.Weight)
			if err != nil {
				return Measurement{}, err
			}
			return compareElements(y, c.Y, bitLinearBound(c.X.Data, c.Weight.Data, N, out, in))
		},
	}}
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
	if c.Kind == golden.KindBitlinear {
		return BitLinearCaseChecks(c, target)
	}
	return ModelCaseChecks(c)
}

// isGradient reports whether a check belongs to the gradient suite.
func (c Check) isGradient() bool {
	return c.Stage == StageBackward || strings.HasPrefix(c.Tensor, "grad.")
}

// NumericsChecks returns the checks the golden (forward) specs run: the
// forward op checks and the forward end-to-end checks.
func NumericsChecks(c *golden.Case, target Target) []Check {
	var out []Check
	for _, check := range CaseChecks(c, target) {
		if !check.isGradient() {
			out = append(out, check)
		}
	}
	return out
}

// GradChecks returns the checks the gradient specs run: the backward op
// checks and the parameter gradients end to end.
func GradChecks(c *golden.Case, target Target) []Check {
	var out []Check
	for _, check := range CaseChecks(c, target) {
		if check.isGradient() {
			out = append(out, check)
		}
	}
	return out
}

// EvaluateCase runs checks of one case against a target outside Ginkgo, on
// the compute path of -golden-compute, and returns every result in order.
// The specs run the same checks.
func EvaluateCase(c *golden.Case, target Target, checks []Check) ([]Result, error) {
	compute, err := Flags.GoldenComputePath()
	if err != nil {
		return nil, err
	}
	return EvaluateCaseOn(c, target, checks, compute)
}

// EvaluateCaseOn is EvaluateCase on a given compute path.
func EvaluateCaseOn(c *golden.Case, target Target, checks []Check, compute model.Compute) ([]Result, error) {
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

// goldenCases holds the golden cases, loaded by Prepare before RunSpecs
// because their count and contents shape the spec tree.
var goldenCases struct {
	loaded []loadedCase
	err    error
}

type loadedCase struct {
	path string
	c    *golden.Case
	err  error
}

// GoldenCasePaths returns the project's golden/cases files followed by every
// -golden-dir folder's files.
func GoldenCasePaths() ([]string, error) {
	dirs := append([]string{golden.Dir()}, Flags.Resolved().GoldenDirs()...)
	return golden.Discover(dirs...)
}

func loadGoldenCases() {
	paths, err := GoldenCasePaths()
	goldenCases.loaded, goldenCases.err = nil, err
	for _, path := range paths {
		c, err := golden.Load(path)
		goldenCases.loaded = append(goldenCases.loaded, loadedCase{path, c, err})
	}
}

// describeGoldenCases calls body once per loaded golden case. A case that
// failed to load becomes one failing spec naming the file and the problem.
func describeGoldenCases(body func(name string, c *golden.Case)) {
	if goldenCases.err != nil {
		It("discovers the golden cases", func() { Fail(goldenCases.err.Error()) })
		return
	}
	if len(goldenCases.loaded) == 0 {
		It("finds golden cases", func() {
			Fail("no golden case files in " + golden.Dir() + " or -golden-dir (did the suite call conformance.Prepare?)")
		})
		return
	}
	for _, lc := range goldenCases.loaded {
		name := caseName(lc.path)
		if lc.err != nil {
			It("loads "+name, func() { Fail(lc.err.Error()) })
			continue
		}
		body(name, lc.c)
	}
}

func caseName(path string) string {
	dir := filepath.Base(filepath.Dir(path))
	return dir + "/" + strings.TrimSuffix(filepath.Base(path), ".safetensors")
}

// DescribeGolden registers the numerics specs: one container per golden
// case, with one spec per forward check, run against ModelTarget.
func DescribeGolden() bool {
	reportNumerics("golden")
	return Describe("Golden numerics", SuiteLabel("golden"), Label("golden"), func() {
		describeGoldenCases(func(name string, c *golden.Case) {
			Describe(name, func() {
				describeChecks(c, false)
			})
		})
	})
}

// describeChecks registers one spec per check of a golden case (the
// gradient checks or the others). Every check of the case, both suites'
// included, is evaluated once, in computation order, on first use, so that
// a failure can say where divergence starts.
func describeChecks(c *golden.Case, gradients bool) {
	all := CaseChecks(c, ModelTarget)
	var results []Result
	var evalErr error
	evaluate := func() {
		if results == nil && evalErr == nil {
			results, evalErr = EvaluateCase(c, ModelTarget, all)
			recordNumerics(c, results)
		}
	}
	for i, check := range all {
		if check.isGradient() != gradients {
			continue
		}
		It(check.Name, func() {
			evaluate()
			Expect(evalErr).NotTo(HaveOccurred(), "building the model from %s", c.Path)
			expectResult(results, i)
		})
	}
}

// expectResult fails the spec when result i failed, saying where the
// case's divergence starts.
func expectResult(results []Result, i int) {
	GinkgoHelper()
	r := results[i]
	if r.Passed() {
		return
	}
	msg := r.String()
	if first := FirstFailure(results); first != nil {
		if first.Check.Name == r.Check.Name {
			msg += "\n(divergence starts here: this is the case's first failing check in computation order)"
		} else {
			msg += "\n(divergence starts earlier, at: " + first.String() + ")"
		}
	}
	Fail(msg)
}
