package numerics

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// caseRun is one implementation evaluated on one golden case: the
// teacher-forced pass, the end-to-end pass and the spread, each computed
// once on first use and shared by every check of the case.
type caseRun struct {
	c       *golden.Case
	impl    Implementation
	compute model.Compute

	teacher    *model.TeacherResult
	teacherErr error
	forward    *model.Output
	grads      *model.GradResult
	e2eErr     error
	e2eDone    bool
	spreads    map[string]float64
	spreadErr  error
	spreadDone bool
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

// endToEnd is the forward pass from the token ids (with the hidden
// states) and the gradients of the loss, on the case's compute path.
func (r *caseRun) endToEnd() (*model.Output, *model.GradResult, error) {
	if !r.e2eDone {
		r.e2eDone = true
		r.forward, r.grads, r.e2eErr = runEndToEnd(r.impl, r.c.Batch, r.compute, 0)
	}
	return r.forward, r.grads, r.e2eErr
}

func runEndToEnd(impl Implementation, b model.Batch, compute model.Compute, jitter uint64) (*model.Output, *model.GradResult, error) {
	out, err := impl.Forward(b, model.ForwardOptions{Trace: true, Compute: compute, Jitter: jitter})
	if err != nil {
		return nil, nil, err
	}
	if out == nil || out.Logits == nil || len(out.Hidden) == 0 {
		return nil, nil, fmt.Errorf("Forward with Trace returned no logits or hidden states")
	}
	g, err := impl.Gradients(b, model.GradOptions{Keep: true, Compute: compute, Jitter: jitter})
	if err != nil {
		return nil, nil, err
	}
	if g == nil {
		return nil, nil, fmt.Errorf("Gradients returned no result")
	}
	return out, g, nil
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
		out, _, err := r.endToEnd()
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
// unjittered run (relative difference for the loss).
func (r *caseRun) spread(name string) (float64, error) {
	if !r.spreadDone {
		r.spreadDone = true
		r.spreads, r.spreadErr = measureSpread(r.impl, r.c)
	}
	if r.spreadErr != nil {
		return 0, fmt.Errorf("measuring the spread: %w", r.spreadErr)
	}
	s := r.spreads[name]
	if f, ok := r.c.Spread[name]; ok {
		s = math.Max(s, f)
	}
	return s, nil
}

func measureSpread(impl Implementation, c *golden.Case) (map[string]float64, error) {
	baseOut, baseGrads, err := runEndToEnd(impl, c.Batch, model.ComputeFloat, 0)
	if err != nil {
		return nil, err
	}
	spreads := map[string]float64{}
	note := func(name string, alt, base *model.Tensor) {
		if alt == nil || base == nil {
			return
		}
		spreads[name] = math.Max(spreads[name], relativeL2(alt.Data, base.Data))
	}
	for run := uint64(1); run <= SpreadRuns; run++ {
		out, grads, err := runEndToEnd(impl, c.Batch, model.ComputeFloat, run)
		if err != nil {
			return nil, err
		}
		note("logits", out.Logits, baseOut.Logits)
		note("final_norm", out.FinalNorm, baseOut.FinalNorm)
		for i := range out.Hidden {
			if i < len(baseOut.Hidden) {
				note(golden.HiddenName(i), out.Hidden[i], baseOut.Hidden[i])
			}
		}
		for name, g := range grads.Grads {
			note("grad."+name, g, baseGrads.Grads[name])
		}
		if baseGrads.Loss != 0 {
			spreads["loss"] = math.Max(spreads["loss"], math.Abs(grads.Loss-baseGrads.Loss)/math.Abs(baseGrads.Loss))
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
