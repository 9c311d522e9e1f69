package conformance

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/memory"
	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/internal/ops"
	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// GradStats summarises one parameter's gradient without keeping it, so
// gradient flow at 2B-4T and 7B fits in memory.
type GradStats struct {
	Elements  int
	NonFinite int
	Zero      int
	L2        float64
	MaxAbs    float64
}

// Accumulate folds one gradient tensor into statistics. Blocks of
// accumulateBlock elements are summarised on GOMAXPROCS goroutines and
// combined in block order, so the statistics, L2 to the last bit
// included, do not depend on the thread count.
func Accumulate(grad []float32) GradStats {
	blocks := make([]GradStats, (len(grad)+accumulateBlock-1)/accumulateBlock)
	ops.ParallelFor(len(blocks), accumulateBlock, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			blocks[b] = accumulateBlockStats(grad[b*accumulateBlock : min((b+1)*accumulateBlock, len(grad))])
		}
	})
	s := GradStats{Elements: len(grad)}
	var sum2 float64
	for _, b := range blocks {
		s.NonFinite += b.NonFinite
		s.Zero += b.Zero
		sum2 += b.L2 // a block's sum of squares until here
		s.MaxAbs = max(s.MaxAbs, b.MaxAbs)
	}
	s.L2 = math.Sqrt(sum2)
	return s
}

// accumulateBlock is the number of gradient elements one block of
// Accumulate summarises.
const accumulateBlock = 1 << 16

// accumulateBlockStats summarises one block; its L2 field holds the sum of
// squares of the finite values, not yet its square root. The fast loop
// assumes every value is finite (four partial sums and two maxima in
// registers break the chains of dependent operations); a NaN or ±Inf makes
// its sum non-finite (finite float32 squares cannot overflow float64), and
// the block is then summarised again value by value.
func accumulateBlockStats(grad []float32) GradStats {
	s := GradStats{Elements: len(grad)}
	var s0, s1, s2, s3, m0, m1 float64
	n := len(grad) &^ 3
	for i := 0; i < n; i += 4 {
		g := grad[i : i+4 : i+4]
		v0, v1, v2, v3 := float64(g[0]), float64(g[1]), float64(g[2]), float64(g[3])
		s0 += v0 * v0
		s1 += v1 * v1
		s2 += v2 * v2
		s3 += v3 * v3
		if a := math.Abs(v0); a > m0 {
			m0 = a
		}
		if a := math.Abs(v1); a > m1 {
			m1 = a
		}
		if a := math.Abs(v2); a > m0 {
			m0 = a
		}
		if a := math.Abs(v3); a > m1 {
			m1 = a
		}
		if v0 == 0 || v1 == 0 || v2 == 0 || v3 == 0 {
			for _, v := range g {
				if v == 0 {
					s.Zero++
				}
			}
		}
	}
	for _, v := range grad[n:] {
		x := float64(v)
		s0 += x * x
		m0 = max(m0, math.Abs(x))
		if v == 0 {
			s.Zero++
		}
	}
	s.L2 = (s0 + s1) + (s2 + s3)
	if math.IsNaN(s.L2) || math.IsInf(s.L2, 0) {
		return accumulateEach(grad)
	}
	s.MaxAbs = max(m0, m1)
	return s
}

// accumulateEach is accumulateBlockStats one value at a time, for blocks
// that hold a NaN or ±Inf.
func accumulateEach(grad []float32) GradStats {
	s := GradStats{Elements: len(grad)}
	for _, v := range grad {
		x := float64(v)
		a := math.Abs(x)
		if !(a <= math.MaxFloat64) { // NaN or ±Inf
			s.NonFinite++
			continue
		}
		if v == 0 {
			s.Zero++
		}
		s.L2 += x * x
		s.MaxAbs = max(s.MaxAbs, a)
	}
	return s
}

// GradientFlow runs forward and backward on a batch and returns the loss and
// every parameter's gradient statistics, streaming each gradient through
// Accumulate instead of keeping it.
// params, when positive, is the number of parameters to expect; each
// gradient then advances the running step's progress line.
func GradientFlow(impl numerics.Implementation, b model.Batch, params int) (float64, map[string]GradStats, error) {
	var mu sync.Mutex
	stats := map[string]GradStats{}
	r, err := impl.Gradients(b, model.GradOptions{Visit: func(name string, grad []float32) {
		s := Accumulate(grad)
		mu.Lock()
		stats[name] = s
		if params > 0 {
			Advance(len(stats), params, "parameter gradients")
		}
		mu.Unlock()
	}})
	if err != nil {
		return 0, nil, err
	}
	return r.Loss, stats, nil
}

// GradFlowProblems names every parameter whose gradient is missing, has a
// NaN or Inf, or is all zero.
func GradFlowProblems(cfg model.Config, stats map[string]GradStats) []string {
	var out []string
	for _, t := range cfg.Inventory() {
		s, ok := stats[t.Name]
		switch {
		case !ok:
			out = append(out, t.Name+": no gradient")
		case s.Elements != int(t.Elements()):
			out = append(out, fmt.Sprintf("%s: gradient has %d elements, expected %d", t.Name, s.Elements, t.Elements()))
		case s.NonFinite > 0:
			out = append(out, fmt.Sprintf("%s: %d of %d gradient values are NaN or Inf", t.Name, s.NonFinite, s.Elements))
		case s.Zero == s.Elements:
			out = append(out, t.Name+": gradient is all zero")
		}
	}
	return out
}

// Gradient are the gradient-flow specs: every parameter of every subject
// gets a finite, non-zero gradient; gradients are bit-identical across
// runs, threads and kernel paths; one SGD step lowers the loss; and every
// backward check of every golden case passes.
var Gradient = func() *Specs {
	var s Specs
	s.DescribeSubject("Gradient flow", describeGradient, SuiteLabel("gradient"))
	s.DescribeGoldenCases("Gradient flow", func(c *GoldenCase) {
		if len(numerics.GradChecks(c.Case, numerics.ModelTarget)) == 0 {
			It("has gradients to compare", func() {
				Skip(c.Case.Path + " has no grad.* tensors: the golden format makes them optional in v1")
			})
		}
		describeChecks(c, true)
	}, SuiteLabel("gradient"))
	return &s
}()

func describeGradient(s *Subject) {
	B, T := s.ForwardShape()
	It(fmt.Sprintf("gives every parameter a finite, non-zero gradient on [%d,%d]", B, T), func() {
		m := s.MustModel()
		var loss float64
		var stats map[string]GradStats
		Step(fmt.Sprintf("forward and backward [%d,%d], streaming gradient statistics", B, T), func() {
			var err error
			loss, stats, err = GradientFlow(m, s.RandomBatch(B, T), len(s.Config.Inventory()))
			Expect(err).NotTo(HaveOccurred())
		})
		s.Report("loss", loss)
		s.Report("gradient L2 by kind", gradNormsByKind(s.Config, stats))
		if rss, err := memory.PeakRSS(); err == nil {
			s.Report("peak RSS of this suite process", units.Bytes(rss))
		}
		Expect(math.IsNaN(loss) || math.IsInf(loss, 0)).To(BeFalse(), "loss %v", loss)
		problems := GradFlowProblems(s.Config, stats)
		Expect(problems).To(BeEmpty(), "%d parameters without gradient flow:\n%s", len(problems), strings.Join(problems, "\n"))
	})

	if s.FullScale() {
		return
	}
	It("gives bit-identical gradients across runs, GOMAXPROCS=1 and 2, and every kernel path", func() {
		m := s.MustModel()
		batch := s.RandomBatch(B, T)
		reference, err := m.Gradients(batch, model.GradOptions{Keep: true})
		Expect(err).NotTo(HaveOccurred())
		active := kernels.ActivePath()
		defer func() { Expect(kernels.SetPath(active)).To(Succeed()) }()
		for _, path := range kernels.SupportedPaths() {
			for _, procs := range []int{2, 1} {
				Expect(kernels.SetPath(path)).To(Succeed())
				previous := runtime.GOMAXPROCS(procs)
				r, err := m.Gradients(batch, model.GradOptions{Keep: true})
				runtime.GOMAXPROCS(previous)
				Expect(err).NotTo(HaveOccurred())
				Expect(math.Float64bits(r.Loss)).To(Equal(math.Float64bits(reference.Loss)), "path %s, GOMAXPROCS=%d: loss %v, first run %v", path, procs, r.Loss, reference.Loss)
				for name, g := range reference.Grads {
					diff := FirstBitDifference(r.Grads[name].Data, g.Data, g.Shape)
					Expect(diff).To(BeNil(), "path %s, GOMAXPROCS=%d: grad of %s differs from the first run at %v", path, procs, name, diff)
				}
			}
		}
	})

	It("lowers the loss with one SGD step on the same batch", func() {
		m, err := s.FreshModel() // a private copy: the step changes weights
		Expect(err).NotTo(HaveOccurred())
		batch := s.RandomBatch(B, T)
		before, err := m.Gradients(batch, model.GradOptions{Keep: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(SGDStep(m, before.Grads, SGDLearningRate)).To(Succeed())
		after, err := m.Gradients(batch, model.GradOptions{})
		Expect(err).NotTo(HaveOccurred())
		s.Report("loss before and after one step", fmt.Sprintf("%.6f → %.6f", before.Loss, after.Loss))
		Expect(after.Loss).To(BeNumerically("<", before.Loss), "one SGD step (lr %g) did not lower the loss", SGDLearningRate)
	})
}

// SGDLearningRate is the step size of the one-step SGD spec.
const SGDLearningRate = 0.05

// SGDStep applies w ← w − lr·grad to every parameter. An offline linear
// (packed codes and weight_scale, no latent weight) steps from
// equivalentLatent.
func SGDStep(m *model.Model, grads map[string]*model.Tensor, lr float32) error {
	for _, p := range m.Params() {
		g, ok := grads[p.Name()]
		if !ok {
			return fmt.Errorf("%s: no gradient", p.Name())
		}
		w := equivalentLatent(p)
		for i := range w {
			w[i] -= lr * g.Data[i]
		}
		if err := p.Set(w); err != nil {
			return err
		}
	}
	return nil
}

// equivalentLatent returns a copy of p's values to take a step from. For an
// offline linear that is not its dequantized weight codes·scale: online
// quantization of that has scale mean|codes·scale| = scale·(nonzero
// fraction), so a step from it would shrink the whole layer instead of
// moving it. Divided by the nonzero fraction, every non-zero entry has
// magnitude scale·N/nonzero ≥ scale, so online quantization gives back
// exactly the offline codes, with scale mean|W| = weight_scale's effective
// scale.
func equivalentLatent(p *model.Param) []float32 {
	w := append([]float32(nil), p.Float32()...)
	if _, _, _, offline := p.Offline(); !offline {
		return w
	}
	nonzero := 0
	for _, v := range w {
		if v != 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		return w
	}
	f := float32(float64(len(w)) / float64(nonzero))
	for i := range w {
		w[i] *= f
	}
	return w
}

func gradNormsByKind(cfg model.Config, stats map[string]GradStats) string {
	sum2 := map[model.TensorKind]float64{}
	for _, t := range cfg.Inventory() {
		s := stats[t.Name]
		sum2[t.Kind] += s.L2 * s.L2
	}
	var parts []string
	for kind, v := range sum2 {
		parts = append(parts, fmt.Sprintf("%s %.4g", kind, math.Sqrt(v)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
