package numerics

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/floats"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// caseRun is one implementation evaluated on one golden case: the
// teacher-forced pass, the unjittered forward pass and gradients on each
// compute path, and the spreads, each computed once on first use and
// shared by every check of the case. The forward checks never run a
// backward pass end to end, and the gradient checks never run a traced
// forward pass, so a suite that evaluates only one kind pays only for that
// kind; the float-path pass that a spread measurement starts from is the
// same one the end-to-end checks and the kernels-against-float check use.
type caseRun struct {
	c       *golden.Case
	impl    Implementation
	compute model.Compute

	teacher                     lazy[*model.TeacherResult]
	forwards                    [model.ComputeFloat64 + 1]lazy[*model.Output]
	gradients                   [model.ComputeFloat64 + 1]lazy[*model.GradResult]
	forwardSpreads, gradSpreads lazy[*spreadSet]
	forwardCheck, gradCheck     lazy[string] // spreadCheck's note
}

// lazy is a value computed on first use, with its error. A computation
// that panics is not done: the next check calls it again and gets the
// same panic, which its evaluation turns into that check's error.
type lazy[T any] struct {
	done bool
	v    T
	err  error
}

func (l *lazy[T]) get(compute func() (T, error)) (T, error) {
	if !l.done {
		l.v, l.err = compute()
		l.done = true
	}
	return l.v, l.err
}

func (r *caseRun) teacherForced() (*model.TeacherResult, error) {
	return r.teacher.get(func() (*model.TeacherResult, error) {
		values := make(map[string]*model.Tensor, 2*len(r.c.Nodes))
		for name, t := range r.c.Nodes {
			values[name] = t
		}
		for name, t := range r.c.NodeGrads {
			values["grad."+name] = t
		}
		tr, err := r.impl.TeacherForced(r.c.Batch, values, model.GradOptions{Compute: r.compute})
		if err == nil && tr == nil {
			err = fmt.Errorf("TeacherForced returned no result")
		}
		return tr, err
	})
}

// forwardOn is the unjittered forward pass from the token ids, with the
// hidden states, on a compute path.
func (r *caseRun) forwardOn(compute model.Compute) (*model.Output, error) {
	return r.forwards[compute].get(func() (*model.Output, error) { return runForward(r.impl, r.c.Batch, compute, 0) })
}

// gradientsOn is the loss and every parameter gradient from the token ids
// on a compute path, unjittered.
func (r *caseRun) gradientsOn(compute model.Compute) (*model.GradResult, error) {
	return r.gradients[compute].get(func() (*model.GradResult, error) { return runGradients(r.impl, r.c.Batch, compute, 0) })
}

// endToEndForward is the forward pass on the case's compute path.
func (r *caseRun) endToEndForward() (*model.Output, error) { return r.forwardOn(r.compute) }

// endToEndGradients is the gradient pass on the case's compute path.
func (r *caseRun) endToEndGradients() (*model.GradResult, error) { return r.gradientsOn(r.compute) }

func runForward(impl Implementation, b model.Batch, compute model.Compute, jitter uint64) (*model.Output, error) {
	out, err := impl.Forward(b, model.ForwardOptions{Trace: true, Compute: compute, Jitter: jitter})
	if err != nil {
		return nil, err
	}
	if out == nil || out.Logits == nil || len(out.Hidden) == 0 {
		return nil, fmt.Errorf("Forward with Trace returned no logits or hidden states")
	}
	return out, nil
}

func runGradients(impl Implementation, b model.Batch, compute model.Compute, jitter uint64) (*model.GradResult, error) {
	g, err := impl.Gradients(b, model.GradOptions{Keep: true, Compute: compute, Jitter: jitter})
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, fmt.Errorf("Gradients returned no result")
	}
	return g, nil
}

// lossOf is the cross-entropy of a forward pass's logits: the end-to-end
// loss the forward checks compare, without a backward pass.
func lossOf(out *model.Output, b model.Batch) (*model.Tensor, error) {
	loss, err := model.CrossEntropy(out.Logits, b)
	if err != nil {
		return nil, err
	}
	return scalar(loss), nil
}

// bothPathLogits returns the logits of the integer-kernel path and of the
// float path.
func (r *caseRun) bothPathLogits() (ints, floats *model.Tensor, err error) {
	intOut, err := r.forwardOn(model.ComputeKernels)
	if err != nil {
		return nil, nil, err
	}
	floatOut, err := r.forwardOn(model.ComputeFloat)
	if err != nil {
		return nil, nil, err
	}
	return intOut.Logits, floatOut.Logits, nil
}

// SpreadRuns is how many jittered runs the harness makes to measure a
// case's spread itself.
const SpreadRuns = 6

// SpreadReproduction is the largest relative difference allowed between a
// spread as measured and the same run's distance recomputed, independently,
// when the run is repeated (spreadCheck). Both are float64 sums over the
// same float32 values in different orders, which agree to about 1e-15; the
// stated factor is 1 + 1e-9.
const SpreadReproduction = 1e-9

// spreadEstimate is the spread an end-to-end bound is sized from, with
// where it came from.
type spreadEstimate struct {
	Value    float64 // max(Measured, File)
	Measured float64 // the harness's own measurement
	Run      uint64  // the jittered run that set Measured (0: no run moved the tensor)
	File     float64 // the file's own spread, or -1 when the file has none
	Checked  string  // the tensor spreadCheck reproduced
	// Note says what the cross-check could not establish (a
	// nondeterministic implementation); empty when it was verified.
	Note string
}

// spread returns the spread an end-to-end bound is sized from: the larger
// of the file's own spread (v2) and the spread the harness measures with
// the implementation under test. Measuring always, not only for files
// without a spread, guards against a run whose own near-ties the file's
// alternative runs happened not to flip.
//
// The harness's measurement: one run on the float path, then SpreadRuns
// jittered runs (model.ForwardOptions.Jitter: every quantizer input times
// 1+ε, ε uniform in ±2^-21, as golden-format.md defines for generators);
// the spread of a tensor is its largest relative L2 distance from the
// unjittered run (relative difference for the loss). The forward tensors
// and the loss are measured with forward passes, the parameter gradients
// ("grad.*") with gradient passes, each only when a check asks for it.
//
// Before any bound is sized from it, the measurement is checked by a
// second one (spreadCheck).
func (r *caseRun) spread(name string) (spreadEstimate, error) {
	measured, check, measure := &r.forwardSpreads, &r.forwardCheck, r.measureForwardSpread
	if strings.HasPrefix(name, "grad.") {
		measured, check, measure = &r.gradSpreads, &r.gradCheck, r.measureGradientSpread
	}
	set, err := measured.get(measure)
	if err != nil {
		return spreadEstimate{}, fmt.Errorf("measuring the spread: %w", err)
	}
	note, err := check.get(func() (string, error) { return r.spreadCheck(set) })
	if err != nil {
		return spreadEstimate{}, err
	}
	m := set.of[name]
	e := spreadEstimate{Value: m.value, Measured: m.value, Run: m.run, File: -1, Checked: set.checked, Note: note}
	if f, ok := r.c.Spread[name]; ok {
		e.File = f
		e.Value = math.Max(e.Value, f)
	}
	return e, nil
}

// spreadSet is one spread measurement: per tensor, the largest distance
// of a jittered run from the unjittered one, the run that set it and that
// run's value of the tensor (the one spreadCheck repeats among them).
type spreadSet struct {
	gradients bool
	of        map[string]spreadRun
	// checked is the tensor whose spread spreadCheck reproduces: the
	// logits, or the parameter gradient with the largest spread; base is
	// its unjittered value.
	checked string
	base    *model.Tensor
}

type spreadRun struct {
	value float64
	run   uint64
	kept  *model.Tensor // the tensor in that run (nil for the loss)
}

func (s *spreadSet) note(name string, run uint64, alt, base *model.Tensor) {
	if alt == nil || base == nil {
		return
	}
	if d := relativeL2(alt.Data, base.Data); d > s.of[name].value {
		s.of[name] = spreadRun{d, run, alt}
	}
}

// measureForwardSpread runs the unjittered forward pass (the one the
// end-to-end checks share) and SpreadRuns jittered ones.
func (r *caseRun) measureForwardSpread() (*spreadSet, error) {
	base, err := r.forwardOn(model.ComputeFloat)
	if err != nil {
		return nil, err
	}
	baseLoss, err := model.CrossEntropy(base.Logits, r.c.Batch)
	if err != nil {
		return nil, err
	}
	set := &spreadSet{of: map[string]spreadRun{}, checked: "logits", base: base.Logits}
	for run := uint64(1); run <= SpreadRuns; run++ {
		out, err := runForward(r.impl, r.c.Batch, model.ComputeFloat, run)
		if err != nil {
			return nil, err
		}
		set.note("logits", run, out.Logits, base.Logits)
		set.note("final_norm", run, out.FinalNorm, base.FinalNorm)
		for i := range out.Hidden {
			if i < len(base.Hidden) {
				set.note(golden.HiddenName(i), run, out.Hidden[i], base.Hidden[i])
			}
		}
		loss, err := model.CrossEntropy(out.Logits, r.c.Batch)
		if err != nil {
			return nil, err
		}
		if d := math.Abs(loss-baseLoss) / math.Abs(baseLoss); baseLoss != 0 && d > set.of["loss"].value {
			set.of["loss"] = spreadRun{d, run, nil}
		}
	}
	return set, nil
}

// measureGradientSpread runs the unjittered gradient pass and SpreadRuns
// jittered ones.
func (r *caseRun) measureGradientSpread() (*spreadSet, error) {
	base, err := r.gradientsOn(model.ComputeFloat)
	if err != nil {
		return nil, err
	}
	set := &spreadSet{gradients: true, of: map[string]spreadRun{}}
	for run := uint64(1); run <= SpreadRuns; run++ {
		grads, err := runGradients(r.impl, r.c.Batch, model.ComputeFloat, run)
		if err != nil {
			return nil, err
		}
		for name, g := range grads.Grads {
			set.note("grad."+name, run, g, base.Grads[name])
		}
	}
	for name, s := range set.of {
		if c := set.of[set.checked]; set.checked == "" || s.value > c.value || s.value == c.value && name < set.checked {
			set.checked = name
		}
	}
	set.base = base.Grads[strings.TrimPrefix(set.checked, "grad.")]
	return set, nil
}

// spreadCheck is the second measurement every spread is checked against:
// it repeats the jittered run that set the spread of one tensor (the
// logits, or the parameter gradient with the largest spread) and
// recomputes that tensor's distance from the unjittered run with code of
// its own. On a deterministic implementation (the repeated run equals the
// first bit for bit) the two must agree within SpreadReproduction, or the
// case fails: a spread that does not match the runs it was measured from
// would size every end-to-end bound of the case wrongly. A
// nondeterministic implementation's runs differ on their own; that is
// said in each end-to-end check's message, not failed.
//
// Why not a disjoint set of seeds, or the file's spread: the spread is set
// by a few near-ties among the quantizer inputs, each flipped by a run
// with some probability, so two independent measurements of a correct
// implementation legitimately differ by orders of magnitude (measured on
// 24 fresh sweep cases: seeds 1–6 against 7–12 differ by up to 9×, and one
// half can see no flip at all; the file's spread and the harness's by up
// to 2.6e5×, docs/golden-checks.md). The bound takes the larger of the
// two, and each message names both.
func (r *caseRun) spreadCheck(set *spreadSet) (string, error) {
	s := set.of[set.checked]
	if s.run == 0 {
		return "", nil // no jittered run moved the tensor: nothing to repeat
	}
	var again *model.Tensor
	if set.gradients {
		g, err := runGradients(r.impl, r.c.Batch, model.ComputeFloat, s.run)
		if err != nil {
			return "", fmt.Errorf("repeating jittered run %d of the spread measurement: %w", s.run, err)
		}
		again = g.Grads[strings.TrimPrefix(set.checked, "grad.")]
	} else {
		out, err := runForward(r.impl, r.c.Batch, model.ComputeFloat, s.run)
		if err != nil {
			return "", fmt.Errorf("repeating jittered run %d of the spread measurement: %w", s.run, err)
		}
		again = out.Logits
	}
	if again == nil || s.kept == nil || len(again.Data) != len(s.kept.Data) {
		return "", fmt.Errorf("repeating jittered run %d of the spread measurement: no %s of shape %v", s.run, set.checked, set.base.Shape)
	}
	// compareRelL2 sums in order, apart from relativeL2's gonum norms
	m, err := compareRelL2(again, set.base, 0)
	if err != nil {
		return "", fmt.Errorf("repeating jittered run %d of the spread measurement: %s: %w", s.run, set.checked, err)
	}
	recomputed := m.RelL2
	sameBits := func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }
	if !slices.EqualFunc(again.Data, s.kept.Data, sameBits) {
		return fmt.Sprintf("nondeterministic implementation: jittered run %d of %s repeated lands at relL2 %.3g from the unjittered run, first %.3g; the spread is not reproduced", s.run, set.checked, recomputed, s.value), nil
	}
	if math.Abs(recomputed-s.value) > SpreadReproduction*math.Max(recomputed, s.value) {
		return "", fmt.Errorf("the spread of %s does not match its runs: measured %.6g from jittered run %d, but that run repeated (bit for bit the same) is at relL2 %.6g from the unjittered run; every end-to-end bound of this case would be sized wrongly", set.checked, s.value, s.run, recomputed)
	}
	return "", nil
}

// relativeL2 is ||a − b||₂ / ||b||₂ (gonum's norms in float64).
func relativeL2(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	a64, b64 := widen(a), widen(b)
	ref := floats.Norm(b64, 2)
	diff := floats.Distance(a64, b64, 2)
	return relL2(diff*diff, ref*ref)
}

func widen(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
