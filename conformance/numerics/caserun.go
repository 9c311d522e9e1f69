package numerics

import (
	"fmt"
	"math"
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
	forwardSpreads, gradSpreads lazy[map[string]float64]
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
func (r *caseRun) spread(name string) (float64, error) {
	var spreads map[string]float64
	var err error
	if strings.HasPrefix(name, "grad.") {
		spreads, err = r.gradSpreads.get(r.measureGradientSpread)
	} else {
		spreads, err = r.forwardSpreads.get(r.measureForwardSpread)
	}
	if err != nil {
		return 0, fmt.Errorf("measuring the spread: %w", err)
	}
	s := spreads[name]
	if f, ok := r.c.Spread[name]; ok {
		s = math.Max(s, f)
	}
	return s, nil
}

// spreadNote keeps, per tensor, the largest relative L2 distance of an
// alternative run from the base run.
type spreadNote map[string]float64

func (s spreadNote) note(name string, alt, base *model.Tensor) {
	if alt == nil || base == nil {
		return
	}
	s[name] = math.Max(s[name], relativeL2(alt.Data, base.Data))
}

func (r *caseRun) measureForwardSpread() (map[string]float64, error) {
	impl, c := r.impl, r.c
	base, err := r.forwardOn(model.ComputeFloat)
	if err != nil {
		return nil, err
	}
	baseLoss, err := model.CrossEntropy(base.Logits, c.Batch)
	if err != nil {
		return nil, err
	}
	spreads := spreadNote{}
	for run := uint64(1); run <= SpreadRuns; run++ {
		out, err := runForward(impl, c.Batch, model.ComputeFloat, run)
		if err != nil {
			return nil, err
		}
		spreads.note("logits", out.Logits, base.Logits)
		spreads.note("final_norm", out.FinalNorm, base.FinalNorm)
		for i := range out.Hidden {
			if i < len(base.Hidden) {
				spreads.note(golden.HiddenName(i), out.Hidden[i], base.Hidden[i])
			}
		}
		loss, err := model.CrossEntropy(out.Logits, c.Batch)
		if err != nil {
			return nil, err
		}
		if baseLoss != 0 {
			spreads["loss"] = math.Max(spreads["loss"], math.Abs(loss-baseLoss)/math.Abs(baseLoss))
		}
	}
	return spreads, nil
}

func (r *caseRun) measureGradientSpread() (map[string]float64, error) {
	impl, c := r.impl, r.c
	base, err := r.gradientsOn(model.ComputeFloat)
	if err != nil {
		return nil, err
	}
	spreads := spreadNote{}
	for run := uint64(1); run <= SpreadRuns; run++ {
		grads, err := runGradients(impl, c.Batch, model.ComputeFloat, run)
		if err != nil {
			return nil, err
		}
		for name, g := range grads.Grads {
			spreads.note("grad."+name, g, base.Grads[name])
		}
	}
	return spreads, nil
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
