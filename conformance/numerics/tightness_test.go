package numerics_test

// Tightness self-tests: a bound must fail an error just above it and pass
// one just below it, and a bound that goes slack must fail a test. The
// self-test in selftest_test.go asks only whether each injected bug is
// caught; bugs sit hundreds of times above their bounds, so it cannot see a
// bound that became ten times too loose. These tests can:
//
//   - Per-element classes (op forward and backward, BitLinear forward and
//     backward, loss): the correct model's output is moved, at the element
//     where it comes closest to its bound, to golden ± k·bound. k = 2 must
//     fail and k = 1/2 must pass: the comparison, its direction and its
//     indexing are right. Then the headroom: on the committed cases, the
//     largest error/bound of a correct run in each class must reach
//     1/maxHeadroom[class]. A bound loosened by a factor L divides every
//     ratio by L, so it fails once L × today's headroom exceeds the limit
//     (the table below says by how much each class detects).
//   - End to end: the bound is EndToEndSpreadFactor × the spread. The test
//     measures the spread itself, with its own jittered runs of the Go
//     model and its own relative L2 (not the harness's code), and moves the
//     logits and one parameter gradient to a relative L2 of k × that bound
//     from the golden value. k = 2 must fail and k = 1/2 pass, so a spread
//     or a spread factor inflated by 2× or more fails this test.

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// maxHeadroom is, per class, the largest allowed ratio between a bound and
// the largest error a correct run shows against it on the committed cases
// (kernels path). Today's headroom is in the comment; each limit is about
// three times it, so a bound loosened by about 3× or more fails
// TestBoundHeadroom, and a new committed case or a tighter bound never does.
var maxHeadroom = map[numerics.BoundClass]float64{
	numerics.ClassOpForward:         40,  // today 13 (attn_sub_norm, model-gqa-tied-L4-hd8-V257-T24)
	numerics.ClassBitLinearForward:  100, // today 30 (q_proj, model-gqa-tied-L4-T96-oneflip)
	numerics.ClassLoss:              300, // today 88 (model-mha-tied-L1-hd16-V251-T13)
	numerics.ClassOpBackward:        8,   // today 2.4 (cross-entropy backward, model-gqa-tied-L4-T96-flips)
	numerics.ClassBitLinearBackward: 16,  // today 5.4 (bitlinear-random)
	numerics.ClassEndToEnd:          16,  // today 4.2 (a q_proj gradient, model-gqa-tied-L4-hd8-V257-T24)
}

// committedResults evaluates every committed case on the kernels path once.
var committedResults = func() func(t *testing.T) map[string][]numerics.Result {
	var cache map[string][]numerics.Result
	return func(t *testing.T) map[string][]numerics.Result {
		t.Helper()
		if cache != nil {
			return cache
		}
		cache = map[string][]numerics.Result{}
		for _, f := range golden.LoadCommitted() {
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			results, err := numerics.Evaluate(f.Case, numerics.ModelTarget, numerics.CaseChecks(f.Case, numerics.ModelTarget), model.ComputeKernels)
			if err != nil {
				t.Fatal(err)
			}
			cache[f.Path] = results
		}
		return cache
	}
}()

// TestBoundHeadroom: in every class, a correct run comes within
// maxHeadroom of the bound on some committed check, and never above it.
func TestBoundHeadroom(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates every committed case (make unit runs it without -short)")
	}
	worst := map[numerics.BoundClass]numerics.Result{}
	for _, results := range committedResults(t) {
		for _, r := range results {
			if !r.Passed() {
				t.Errorf("correct model fails %s", r)
				continue
			}
			class := r.Check.Class()
			if w, ok := worst[class]; !ok || r.Measure.Ratio > w.Measure.Ratio {
				worst[class] = r
			}
		}
	}
	for class, limit := range maxHeadroom {
		w, ok := worst[class]
		if !ok {
			t.Errorf("%s: no committed check in this class", class)
			continue
		}
		headroom := 1 / w.Measure.Ratio
		t.Logf("%-18s headroom %6.3g (largest correct error/bound %.3g: %s)", class, headroom, w.Measure.Ratio, w.Check.Name)
		if headroom > limit {
			t.Errorf("%s bounds are slack: the largest error/bound of a correct run is %.3g (%s), a headroom of %.3g > %g; a bound was loosened, or it should be derived tighter",
				class, w.Measure.Ratio, w.Check.Name, headroom, limit)
		}
	}
}

// perturbed is the Go model with its teacher-forced results or its
// end-to-end results on the kernels path changed by edit functions.
type perturbed struct {
	*model.Model
	teacher func(*model.TeacherResult)
	forward func(*model.Output)
	grads   func(*model.GradResult)
}

func (p perturbed) TeacherForced(b model.Batch, g map[string]*model.Tensor, opts model.GradOptions) (*model.TeacherResult, error) {
	r, err := p.Model.TeacherForced(b, g, opts)
	if err == nil && p.teacher != nil {
		p.teacher(r)
	}
	return r, err
}

// Forward changes only the unjittered pass on the kernels path: the spread
// is measured on the float path and stays the correct model's.
func (p perturbed) Forward(b model.Batch, opts model.ForwardOptions) (*model.Output, error) {
	out, err := p.Model.Forward(b, opts)
	if err == nil && p.forward != nil && opts.Jitter == 0 && opts.Compute == model.ComputeKernels {
		p.forward(out)
	}
	return out, err
}

func (p perturbed) Gradients(b model.Batch, opts model.GradOptions) (*model.GradResult, error) {
	g, err := p.Model.Gradients(b, opts)
	if err == nil && p.grads != nil && opts.Jitter == 0 && opts.Compute == model.ComputeKernels {
		p.grads(g)
	}
	return g, err
}

func targetWith(p perturbed) numerics.Target {
	return numerics.Target{
		Name: "perturbed model",
		FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (numerics.Implementation, error) {
			m, err := model.FromTensors(cfg, params)
			p.Model = m
			return p, err
		},
	}
}

func loadCase(t *testing.T, name string) *golden.Case {
	t.Helper()
	for _, f := range golden.LoadCommitted() {
		if strings.HasSuffix(f.Path, "/"+name+".safetensors") {
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			return f.Case
		}
	}
	t.Fatalf("no committed case %s", name)
	return nil
}

func flatIndex(idx, shape []int) int {
	i := 0
	for d := range shape {
		i = i*shape[d] + idx[d]
	}
	return i
}

// TestElementBoundsFailJustAbove moves, for each per-element class, the
// correct model's value at its closest-to-the-bound element to golden ±
// k·bound, and requires the check to fail at k = 2 and pass at k = 1/2.
func TestElementBoundsFailJustAbove(t *testing.T) {
	c := loadCase(t, "shared-example-tiny-gqa-v2")
	checks := numerics.CaseChecks(c, numerics.ModelTarget)
	results, err := numerics.Evaluate(c, numerics.ModelTarget, checks, model.ComputeKernels)
	if err != nil {
		t.Fatal(err)
	}
	// The check of each class that comes closest to its bound.
	pick := map[numerics.BoundClass]numerics.Result{}
	for _, r := range results {
		class := r.Check.Class()
		if class == numerics.ClassEndToEnd || class == numerics.ClassExact || !r.Measure.PerElement {
			continue
		}
		if w, ok := pick[class]; !ok || r.Measure.Ratio > w.Measure.Ratio {
			pick[class] = r
		}
	}
	for _, class := range []numerics.BoundClass{numerics.ClassOpForward, numerics.ClassBitLinearForward, numerics.ClassLoss, numerics.ClassOpBackward, numerics.ClassBitLinearBackward} {
		r, ok := pick[class]
		if !ok {
			t.Errorf("%s: the shared example has no check of this class", class)
			continue
		}
		for _, k := range []float64{2, 0.5} {
			m := r.Measure
			want := m.Expected + k*m.Bound
			edit := func(tr *model.TeacherResult) {
				if r.Check.Tensor == "loss" {
					tr.Loss = want
					return
				}
				v := tr.Computed[r.Check.Tensor]
				if v == nil {
					v = tr.Grads[strings.TrimPrefix(r.Check.Tensor, "grad.")]
				}
				v.Data[flatIndex(m.Index, v.Shape)] = float32(want)
			}
			got, err := numerics.Evaluate(c, targetWith(perturbed{teacher: edit}), []numerics.Check{checks[r.Check.Order]}, model.ComputeKernels)
			if err != nil {
				t.Fatal(err)
			}
			g := got[0]
			if passed := g.Passed(); passed != (k < 1) {
				t.Errorf("%s, %s moved to golden + %g × bound at %v: passed=%v, want %v (%s)", class, r.Check.Name, k, m.Index, passed, k < 1, g)
			}
		}
	}
}

// testSpread is the spread as golden-format.md defines it, measured here
// without the harness's code: the largest relative L2 distance between an
// unjittered float-path run and each of numerics.SpreadRuns jittered ones,
// or the file's own spread if larger.
func testSpread(t *testing.T, c *golden.Case, m *model.Model, name string) float64 {
	t.Helper()
	value := func(jitter uint64) []float32 {
		if strings.HasPrefix(name, "grad.") {
			g, err := m.Gradients(c.Batch, model.GradOptions{Keep: true, Compute: model.ComputeFloat, Jitter: jitter})
			if err != nil {
				t.Fatal(err)
			}
			return g.Grads[strings.TrimPrefix(name, "grad.")].Data
		}
		out, err := m.Forward(c.Batch, model.ForwardOptions{Compute: model.ComputeFloat, Jitter: jitter})
		if err != nil {
			t.Fatal(err)
		}
		return out.Logits.Data
	}
	base := value(0)
	spread := c.Spread[name]
	for run := uint64(1); run <= numerics.SpreadRuns; run++ {
		spread = math.Max(spread, relL2(value(run), base))
	}
	return spread
}

func relL2(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		e := float64(a[i]) - float64(b[i])
		d += e * e
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// moved returns golden + δ with ‖δ‖ = k·bound·‖golden‖ in a fixed random
// direction.
func moved(golden []float32, relative float64) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := make([]float64, len(golden))
	var dn, gn float64
	for i := range dir {
		dir[i] = rng.NormFloat64()
		dn += dir[i] * dir[i]
		gn += float64(golden[i]) * float64(golden[i])
	}
	scale := relative * math.Sqrt(gn/dn)
	out := make([]float32, len(golden))
	for i := range out {
		out[i] = float32(float64(golden[i]) + scale*dir[i])
	}
	return out
}

// The end-to-end bound as docs/golden-checks.md states it, relL2 ≤
// max(1e-4, 4 × s/(1 − s)) for a spread s: written out here, not read from
// the harness's constants, so that changing those fails this test.
const (
	documentedFloor        = 1e-4
	documentedSpreadFactor = 4
)

// TestEndToEndBoundsFailJustAbove: the logits and a parameter gradient at a
// relative L2 of k × max(floor, 4 × the spread this test measures) from
// the golden values fail at k = 2 and pass at k = 1/2.
func TestEndToEndBoundsFailJustAbove(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the spread measurement twice per case (make unit runs it without -short)")
	}
	for _, name := range []string{"shared-example-tiny-gqa-v2", "model-gqa-tied-L4-hd8-V257-T24"} {
		c := loadCase(t, name)
		m, err := model.FromTensors(c.Config, c.Params)
		if err != nil {
			t.Fatal(err)
		}
		checks := numerics.CaseChecks(c, numerics.ModelTarget)
		for _, tensor := range []string{"logits", "grad.model.layers.0.self_attn.q_proj.weight"} {
			var check numerics.Check
			for _, ch := range checks {
				if ch.Stage == numerics.StageEndToEnd && ch.Tensor == tensor && strings.HasSuffix(ch.Name, "end to end from input_ids") || ch.Stage == numerics.StageEndToEnd && ch.Tensor == tensor && strings.HasSuffix(ch.Name, "from the loss") {
					check = ch
				}
			}
			if check.Name == "" {
				t.Fatalf("%s: no end-to-end check of %s", name, tensor)
			}
			spread := testSpread(t, c, m, tensor)
			bound := math.Max(documentedFloor, documentedSpreadFactor*spread/(1-spread))
			for _, k := range []float64{2, 0.5} {
				p := perturbed{}
				if tensor == "logits" {
					want := moved(c.Logits.Data, k*bound)
					p.forward = func(out *model.Output) { copy(out.Logits.Data, want) }
				} else {
					param := strings.TrimPrefix(tensor, "grad.")
					want := moved(c.Grads[param].Data, k*bound)
					p.grads = func(g *model.GradResult) { copy(g.Grads[param].Data, want) }
				}
				got, err := numerics.Evaluate(c, targetWith(p), []numerics.Check{check}, model.ComputeKernels)
				if err != nil {
					t.Fatal(err)
				}
				if passed := got[0].Passed(); passed != (k < 1) {
					t.Errorf("%s: %s at relL2 %g × the bound this test derives (%.3g): passed=%v, want %v (%s)", name, check.Name, k, bound, passed, k < 1, got[0])
				}
			}
		}
	}
}

// TestFlipAllowanceIsTight: BitLinear's flip allowance lets an activation
// whose exact pre-rounding value v = x·127/max|x| lies within the window
// 4u·|v| of a rounding boundary take either code, and no other. An
// implementation that flips one activation at about half the window from
// the boundary must pass; one that flips it at about 1.5 windows must fail.
// A window loosened by 2× or more fails this test (the headroom test cannot
// see it: the allowance only acts near ties).
func TestFlipAllowanceIsTight(t *testing.T) {
	const in, out, col = 64, 8, 5
	rng := rand.New(rand.NewPCG(7, 8))
	w := model.NewTensor(out, in)
	for i := range w.Data {
		w.Data[i] = float32(rng.NormFloat64())
	}
	base := make([]float32, in)
	for i := range base {
		base[i] = float32(rng.Float64()*0.5 - 0.25)
	}
	base[0] = 1 // max|x| = 1, so the scale 127 is exact and v = 127·x exactly
	window := func(v float64) float64 { return 4 * 0x1p-24 * math.Abs(v) }
	// withDistance returns x[col] on the given side of the boundary 10.5
	// whose exact distance from it is closest to want.
	withDistance := func(want float64, above bool) (float32, float64) {
		sign := 1.0
		if !above {
			sign = -1
		}
		best, bestD := float32(0), math.Inf(1)
		x := float32((10.5 + sign*want) / 127)
		for k := -8; k <= 8; k++ {
			c := x
			for range abs(k) {
				if k > 0 {
					c = math.Nextafter32(c, 1)
				} else {
					c = math.Nextafter32(c, 0)
				}
			}
			d := sign * (float64(c)*127 - 10.5)
			if d > 0 && math.Abs(d-want) < math.Abs(bestD-want) {
				best, bestD = c, d
			}
		}
		return best, bestD
	}
	for _, k := range []float64{0.5, 1.5} {
		w10 := window(10.5)
		xUp, dUp := withDistance(k*w10, true)
		xDown, _ := withDistance(k*w10, false)
		x := model.NewTensor(1, in)
		copy(x.Data, base)
		x.Data[col] = xUp // exact v above 10.5: rounds to 11
		y, err := model.BitLinear(x, w)
		if err != nil {
			t.Fatal(err)
		}
		flipped := model.NewTensor(1, in)
		copy(flipped.Data, base)
		flipped.Data[col] = xDown // the same distance below: rounds to 10
		c := &golden.Case{Path: "flip-allowance", Name: "flip-allowance", Kind: golden.KindBitlinear, X: x, Weight: w, Y: y}
		target := numerics.Target{Name: "flips one activation", BitLinear: func(*model.Tensor, *model.Tensor) (*model.Tensor, error) {
			return model.BitLinear(flipped, w)
		}}
		yFlipped, err := model.BitLinear(flipped, w)
		if err != nil {
			t.Fatal(err)
		}
		if relL2(yFlipped.Data, y.Data) == 0 {
			t.Fatal("the flip does not change y: the test would prove nothing")
		}
		checks := numerics.BitLinearCaseChecks(c, target)
		got, err := numerics.Evaluate(c, target, checks[:1], model.ComputeKernels)
		if err != nil {
			t.Fatal(err)
		}
		ratio := dUp / window(float64(xUp)*127)
		if math.Abs(ratio-k) > 0.3 {
			t.Fatalf("could not place x at %g windows from the boundary: got %.3g", k, ratio)
		}
		if passed := got[0].Passed(); passed != (ratio < 1) {
			t.Errorf("an activation flipped at %.3g windows from the rounding boundary: passed=%v, want %v (%s)", ratio, passed, ratio < 1, got[0])
		}
	}
}

func abs(k int) int {
	if k < 0 {
		return -k
	}
	return k
}
