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
// teacher-forced pass, the end-to-end forward pass, the end-to-end
// gradients and the spreads, each computed once on first use and shared by
// every check of the case. The forward checks never run a backward pass
// end to end, and the gradient checks never run a traced forward pass, so
// a suite that evaluates only one kind pays only for that kind.
type caseRun struct {
	c       *golden.Case
	impl    Implementation
	compute model.Compute

	teacher    *model.TeacherResult
	teacherErr error

	forward     *model.Output
	forwardErr  error
	forwardDone bool
	grads       *model.GradResult
	gradsErr    error
	gradsDone   bool

	forwardSpreads, gradSpreads map[string]float64
	forwardSpreadErr            error
	gradSpreadErr               error
	forwardSpreadDone           bool
	gradSpreadDone              bool
}

func (r *caseRun) teacherForced() (*model.TeacherResult, error) {
	if r.teacher == nil && r.teacherErr == nil {
		values := make(map[string]*model.Tensor, 2*len(r.c.Nodes))
		for name, t := range r.c.Nodes {
			values[name] = t
		}
		for name, t := range r.c.NodeGrads {
			values["grad."+name] = t
		}
		r.teacher, r.teacherErr = r.impl.TeacherForced(r.c.Batch, values, model.GradOptions{Compute: r.compute})
		if r.teacherErr == nil && r.teacher == nil {
			r.teacherErr = fmt.Errorf("TeacherForced returned no result")
		}
	}
	return r.teacher, r.teacherErr
}

// endToEndForward is the forward pass from the token ids, with the hidden
// states, on the case's compute path.
func (r *caseRun) endToEndForward() (*model.Output, error) {
	if !r.forwardDone {
		r.forwardDone = true
		r.forward, r.forwardErr = runForward(r.impl, r.c.Batch, r.compute, 0)
	}
	return r.forward, r.forwardErr
}

// endToEndGradients is the loss and every parameter gradient from the
// token ids, on the case's compute path.
func (r *caseRun) endToEndGradients() (*model.GradResult, error) {
	if !r.gradsDone {
		r.gradsDone = true
		r.grads, r.gradsErr = runGradients(r.impl, r.c.Batch, r.compute, 0)
	}
	return r.grads, r.gradsErr
}

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
// float path; the case's own path reuses its end-to-end forward pass.
func (r *caseRun) bothPathLogits() (ints, floats *model.Tensor, err error) {
	if ints, err = r.pathLogits(model.ComputeKernels); err != nil {
		return nil, nil, err
	}
	if floats, err = r.pathLogits(model.ComputeFloat); err != nil {
		return nil, nil, err
	}
	return ints, floats, nil
}

func (r *caseRun) pathLogits(compute model.Compute) (*model.Tensor, error) {
	if compute == r.compute {
		out, err := r.endToEndForward()
		if err != nil {
			return nil, err
		}
		return out.Logits, nil
	}
	out, err := r.impl.Forward(r.c.Batch, model.ForwardOptions{Compute: compute})
	if err != nil {
		return nil, err
	}
	return out.Logits, nil
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
		if !r.gradSpreadDone {
			r.gradSpreadDone = true
			r.gradSpreads, r.gradSpreadErr = measureGradientSpread(r.impl, r.c)
		}
		spreads, err = r.gradSpreads, r.gradSpreadErr
	} else {
		if !r.forwardSpreadDone {
			r.forwardSpreadDone = true
			r.forwardSpreads, r.forwardSpreadErr = measureForwardSpread(r.impl, r.c)
		}
		spreads, err = r.forwardSpreads, r.forwardSpreadErr
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

func measureForwardSpread(impl Implementation, c *golden.Case) (map[string]float64, error) {
	base, err := runForward(impl, c.Batch, model.ComputeFloat, 0)
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

func measureGradientSpread(impl Implementation, c *golden.Case) (map[string]float64, error) {
	base, err := runGradients(impl, c.Batch, model.ComputeFloat, 0)
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
