package conformance

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// Check is one comparison of an implementation against a golden case. The
// numerics and gradient specs are made of checks, and the harness's
// self-tests run the very same checks against broken implementations.
type Check struct {
	// Name says what is compared, naming the op and layer, for example
	// "layer 1 output (hidden.2), teacher-forced from hidden.1".
	Name     string
	Quantity Quantity
	// Run computes the actual tensor and returns it with the expected one.
	Run func(impl Implementation) (actual, expected *model.Tensor, err error)
}

// Result is the outcome of a check.
type Result struct {
	Check      Check
	Comparison Comparison
	Err        error
}

// Passed reports whether the check ran and was within tolerance.
func (r Result) Passed() bool { return r.Err == nil && r.Comparison.Within(Policy[r.Check.Quantity]) }

func (r Result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%s: error: %v", r.Check.Name, r.Err)
	}
	return fmt.Sprintf("%s: %s", r.Check.Name, r.Comparison)
}

// Evaluate runs a check and measures it against the policy. A panic in the
// implementation becomes the result's error, so one broken op never hides
// the other checks.
func (c Check) Evaluate(impl Implementation) (result Result) {
	defer func() {
		if r := recover(); r != nil {
			result = Result{Check: c, Err: fmt.Errorf("panic: %v", r)}
		}
	}()
	actual, expected, err := c.Run(impl)
	if err != nil {
		return Result{Check: c, Err: err}
	}
	if actual == nil || !slices.Equal(actual.Shape, expected.Shape) {
		shape := "none"
		if actual != nil {
			shape = model.ShapeString(actual.Shape)
		}
		return Result{Check: c, Err: fmt.Errorf("shape %s, expected %s", shape, model.ShapeString(expected.Shape))}
	}
	return Result{Check: c, Comparison: Compare(actual.Data, expected.Data, expected.Shape, Policy[c.Quantity])}
}

// scalar wraps a number as a 0-d tensor so loss uses the same machinery.
func scalar(v float64) *model.Tensor {
	return &model.Tensor{Shape: []int{}, Data: []float32{float32(v)}}
}

// ForwardChecks lists the numerics checks of a model case: the embedding,
// every layer teacher-forced from the golden hidden state before it,
// final_norm, the end-to-end logits and the loss, and agreement between the
// integer-kernel and float paths.
func ForwardChecks(c *golden.Case) []Check {
	checks := []Check{{
		Name: "embedding (hidden.0)", Quantity: QuantityEmbedding,
		Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
			h, err := impl.Embed(c.Batch)
			return h, c.Hidden[0], err
		},
	}}
	for i := 0; i+1 < len(c.Hidden); i++ {
		checks = append(checks, Check{
			Name:     fmt.Sprintf("layer %d output (hidden.%d), teacher-forced from hidden.%d", i, i+1, i),
			Quantity: QuantityLayer,
			Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
				h, err := impl.Layer(i, c.Hidden[i], model.ComputeKernels)
				return h, c.Hidden[i+1], err
			},
		})
	}
	last := len(c.Hidden) - 1
	checks = append(checks,
		Check{
			Name: fmt.Sprintf("final_norm of hidden.%d", last), Quantity: QuantityFinalNorm,
			Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
				h, err := impl.FinalNorm(c.Hidden[last])
				return h, c.FinalNorm, err
			},
		},
		Check{
			Name: "logits, end to end", Quantity: QuantityLogits,
			Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
				out, err := impl.Forward(c.Batch, model.ForwardOptions{})
				if err != nil {
					return nil, nil, err
				}
				return out.Logits, c.Logits, nil
			},
		},
		Check{
			Name: "loss (mean next-token cross-entropy)", Quantity: QuantityLoss,
			Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
				out, err := impl.Forward(c.Batch, model.ForwardOptions{})
				if err != nil {
					return nil, nil, err
				}
				loss, err := model.CrossEntropy(out.Logits, c.Batch)
				return scalar(loss), scalar(c.Loss), err
			},
		},
		Check{
			Name: "integer-kernel logits against float-path logits", Quantity: QuantityKernelPath,
			Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
				ints, err := impl.Forward(c.Batch, model.ForwardOptions{Compute: model.ComputeKernels})
				if err != nil {
					return nil, nil, err
				}
				floats, err := impl.Forward(c.Batch, model.ForwardOptions{Compute: model.ComputeFloat})
				if err != nil {
					return nil, nil, err
				}
				return ints.Logits, floats.Logits, nil
			},
		},
	)
	return checks
}

// GradientChecks lists one check per golden grad.* tensor of a model case.
func GradientChecks(c *golden.Case) []Check {
	names := make([]string, 0, len(c.Grads))
	for name := range c.Grads {
		names = append(names, name)
	}
	sort.Strings(names)
	var cache struct {
		impl  Implementation
		grads map[string]*model.Tensor
		err   error
	}
	grads := func(impl Implementation) (map[string]*model.Tensor, error) {
		if cache.impl != impl {
			cache.impl = impl
			r, err := impl.Gradients(c.Batch, model.GradOptions{Keep: true})
			cache.grads, cache.err = nil, err
			if err == nil {
				cache.grads = r.Grads
			}
		}
		return cache.grads, cache.err
	}
	checks := make([]Check, 0, len(names))
	for _, name := range names {
		checks = append(checks, Check{
			Name: "grad of " + name, Quantity: QuantityGrad,
			Run: func(impl Implementation) (*model.Tensor, *model.Tensor, error) {
				g, err := grads(impl)
				if err != nil {
					return nil, nil, err
				}
				return g[name], c.Grads[name], nil
			},
		})
	}
	return checks
}

// BitLinearChecks lists the checks of a bitlinear case: y, and the
// straight-through gradients when the case has them.
func BitLinearChecks(c *golden.Case, target Target) []Check {
	checks := []Check{{
		Name: "bitlinear y = linear(act_quant(x), weight_quant(weight))", Quantity: QuantityBitLinear,
		Run: func(Implementation) (*model.Tensor, *model.Tensor, error) {
			y, err := target.BitLinear(c.X, c.Weight)
			return y, c.Y, err
		},
	}}
	return checks
}

// BitLinearGradChecks lists grad.x and grad.weight of a bitlinear case.
func BitLinearGradChecks(c *golden.Case, target Target) []Check {
	if c.GradY == nil {
		return nil
	}
	run := func(pick func(gx, gw *model.Tensor) (*model.Tensor, *model.Tensor)) func(Implementation) (*model.Tensor, *model.Tensor, error) {
		return func(Implementation) (*model.Tensor, *model.Tensor, error) {
			gx, gw, err := target.BitLinearBackward(c.X, c.Weight, c.GradY)
			if err != nil {
				return nil, nil, err
			}
			actual, expected := pick(gx, gw)
			return actual, expected, nil
		}
	}
	return []Check{
		{Name: "bitlinear grad.x (straight-through)", Quantity: QuantityBitLinGrad,
			Run: run(func(gx, _ *model.Tensor) (*model.Tensor, *model.Tensor) { return gx, c.GradX })},
		{Name: "bitlinear grad.weight (straight-through)", Quantity: QuantityBitLinGrad,
			Run: run(func(_, gw *model.Tensor) (*model.Tensor, *model.Tensor) { return gw, c.GradWeight })},
	}
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
// case, with one spec per check, run against ModelTarget.
func DescribeGolden() bool {
	return Describe("Golden numerics", SuiteLabel("golden"), Label("golden"), func() {
		describeGoldenCases(func(name string, c *golden.Case) {
			Describe(name, func() {
				describeChecks(c, NumericsChecks(c, ModelTarget))
			})
		})
	})
}

// describeChecks registers one spec per check of a golden case, all run
// against one ModelTarget implementation built from the case's weights on
// first use.
func describeChecks(c *golden.Case, checks []Check) {
	var impl Implementation
	if c.Kind != golden.KindBitlinear {
		BeforeEach(func() {
			if impl == nil {
				var err error
				impl, err = ModelTarget.FromTensors(c.Config, c.Params)
				Expect(err).NotTo(HaveOccurred(), "building the model from %s", c.Path)
			}
		})
	}
	for _, check := range checks {
		It(check.Name, func() { expectCheck(check, impl) })
	}
}

// expectCheck runs a check inside a spec with a MatchTensor failure message.
func expectCheck(check Check, impl Implementation) {
	GinkgoHelper()
	actual, expected, err := check.Run(impl)
	Expect(err).NotTo(HaveOccurred(), check.Name)
	Expect(actual).To(MatchTensor(expected, check.Quantity, check.Name))
}

// NumericsChecks returns the forward-numerics checks of a case: ForwardChecks
// for model cases, BitLinearChecks for bitlinear ones.
func NumericsChecks(c *golden.Case, target Target) []Check {
	if c.Kind == golden.KindBitlinear {
		return BitLinearChecks(c, target)
	}
	return ForwardChecks(c)
}

// GradChecks returns the gradient checks of a case: GradientChecks for model
// cases, BitLinearGradChecks for bitlinear ones.
func GradChecks(c *golden.Case, target Target) []Check {
	if c.Kind == golden.KindBitlinear {
		return BitLinearGradChecks(c, target)
	}
	return GradientChecks(c)
}

// EvaluateCase runs checks of one case against a target outside Ginkgo and
// returns every result. The specs run the same checks.
func EvaluateCase(c *golden.Case, target Target, checks []Check) ([]Result, error) {
	var impl Implementation
	if c.Kind != golden.KindBitlinear {
		var err error
		impl, err = target.FromTensors(c.Config, c.Params)
		if err != nil {
			return nil, fmt.Errorf("%s: building %s: %w", c.Path, target.Name, err)
		}
	}
	results := make([]Result, len(checks))
	for i, check := range checks {
		results[i] = check.Evaluate(impl)
	}
	return results, nil
}
