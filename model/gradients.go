package model

import (
	"fmt"

	"github.com/tritter-ai/conformance/internal/ops"
)

// GradOptions configure Gradients.
type GradOptions struct {
	// Keep returns every gradient in GradResult.Grads.
	Keep bool
	// Visit, when set, receives each parameter's complete gradient exactly
	// once, as soon as it is final. The slice may be reused after Visit
	// returns; copy what you keep.
	Visit func(name string, grad []float32)
	// Compute is the forward path the gradients are taken through;
	// ComputeKernels by default. The backward pass runs in float32, or in
	// float64 with ComputeFloat64.
	Compute Compute
	// Jitter seeds an alternative correct run (a rounding policy, not a
	// bug), as ForwardOptions.Jitter.
	Jitter uint64
}

// GradResult is the result of Gradients.
type GradResult struct {
	Loss  float64
	Grads map[string]*Tensor // with Keep: HF name → gradient, shaped like the parameter
}

// Gradients computes the mean next-token cross-entropy and its gradient with
// respect to every parameter, straight-through both quantizers. Weight
// gradients are streamed layer by layer, so only Keep holds them all.
func (m *Model) Gradients(b Batch, opts GradOptions) (*GradResult, error) {
	if err := m.checkBatch(b); err != nil {
		return nil, err
	}
	if b.T < 2 {
		return nil, fmt.Errorf("input_ids: the next-token loss needs T ≥ 2, got T=%d", b.T)
	}
	res := &GradResult{}
	if opts.Keep {
		res.Grads = make(map[string]*Tensor)
	}
	visit := func(name string, grad []float32) {
		if opts.Visit != nil {
			opts.Visit(name, grad)
		}
		if opts.Keep {
			res.Grads[name] = toTensor(append([]float32(nil), grad...), m.byName[name].Shape()...)
		}
	}
	var err error
	if res.Loss, _, err = m.backprop(b, opts, nil, visit); err != nil {
		return nil, err
	}
	return res, nil
}

// backprop runs forward and backward on the path opts selects, handing
// each parameter's gradient (as float32) to visit. With golden values it
// teacher-forces every op (observer.go) and also returns what each op
// computed.
func (m *Model) backprop(b Batch, opts GradOptions, golden map[string][]float32, visit func(name string, grad []float32)) (loss float64, computed map[string][]float32, err error) {
	if opts.Compute == ComputeFloat64 {
		net := m.network64(b.B, b.T, ops.Rounding{Seed: opts.Jitter})
		if golden != nil {
			t := newTeacher[float64](golden)
			net.observer, computed = t, t.computed
		}
		var buf []float32
		loss, err = net.gradients(b.IDs, func(name string, grad []float64) {
			buf = scratch(buf, len(grad))
			for i, v := range grad {
				buf[i] = float32(v)
			}
			visit(name, buf)
		})
		return loss, computed, err
	}
	net, err := m.network(b.B, b.T, opts.Compute, ops.Rounding{Seed: opts.Jitter})
	if err != nil {
		return 0, nil, err
	}
	defer net.release()
	if golden != nil {
		t := newTeacher[float32](golden)
		net.observer, computed = t, t.computed
	}
	loss, err = net.gradients(b.IDs, visit)
	return loss, computed, err
}
