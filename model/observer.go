package model

import (
	"fmt"

	"github.com/tritter-ai/conformance/internal/ops"
)

// An observer sees the value of each traced tensor of the network as soon
// as the op that computes it has run, by its name in the golden format
// (hidden.i, trace.i.p, final_norm, logits and their grad.* gradients),
// and may overwrite it before the next op reads it.
type observer[F ops.Float] interface {
	observe(name string, v []F)
}

// layerObserver is an observer bound to one layer: trace point p of layer
// i is trace.{i}.{p}, its gradient grad.trace.{i}.{p}. Its zero value
// observes nothing.
type layerObserver[F ops.Float] struct {
	o     observer[F]
	layer int
}

func (lo layerObserver[F]) forward(point string, v []F) {
	if lo.o != nil {
		lo.o.observe(fmt.Sprintf("trace.%d.%s", lo.layer, point), v)
	}
}

func (lo layerObserver[F]) backward(point string, v []F) {
	if lo.o != nil {
		lo.o.observe(fmt.Sprintf("grad.trace.%d.%s", lo.layer, point), v)
	}
}

// Teacher forcing at every op. The golden checks compare each op of the
// model with a golden file op by op: the op must get exactly the golden
// inputs, so that its output differs from the golden output only by the
// op's own rounding. Rather than a second implementation of every op for
// that purpose, the network's own forward and backward code runs with a
// teacher as its observer: the teacher records what each op computed and
// then overwrites it with the golden value before the next op reads it. A
// wrong wiring (an op reading the wrong tensor) shows at that op, as would
// any op bug.

// teacher holds the golden values and what the model computed.
type teacher[F ops.Float] struct {
	golden   map[string][]float32 // tensor name (as in the golden file) → golden values
	computed map[string][]float32 // tensor name → what the model computed from golden inputs
}

func newTeacher[F ops.Float](golden map[string][]float32) *teacher[F] {
	return &teacher[F]{golden: golden, computed: map[string][]float32{}}
}

// observe records v under name and, when the golden case has that tensor,
// replaces v with it.
func (t *teacher[F]) observe(name string, v []F) {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	t.computed[name] = out
	if g, ok := t.golden[name]; ok && len(g) == len(v) {
		for i, x := range g {
			v[i] = F(x)
		}
	}
}

// TeacherResult is what TeacherForced returns.
type TeacherResult struct {
	// Computed maps each traced tensor name of the golden format (hidden.i,
	// trace.i.p, final_norm, logits and their grad.* gradients) to the
	// value the model computed for it from the golden inputs of its op.
	Computed map[string]*Tensor
	// Grads maps each parameter name to its gradient, computed from the
	// golden forward values and golden upstream gradients.
	Grads map[string]*Tensor
	// Loss is the cross-entropy of the golden logits.
	Loss float64
}

// TeacherForced runs the forward and backward pass on b, feeding every op
// the golden value of each of its inputs that golden holds (names as in
// the golden format: hidden.i, trace.i.p, final_norm, logits, grad.*), and
// returns what each op computed. Tensors golden lacks flow as computed, so
// a v1 case (hidden states only) gives layer-level teacher forcing.
// opts.Compute selects the path; opts.Keep and opts.Visit are ignored.
func (m *Model) TeacherForced(b Batch, golden map[string]*Tensor, opts GradOptions) (*TeacherResult, error) {
	if err := m.checkBatch(b); err != nil {
		return nil, err
	}
	if b.T < 2 {
		return nil, fmt.Errorf("input_ids: the next-token loss needs T ≥ 2, got T=%d", b.T)
	}
	values := make(map[string][]float32, len(golden))
	for name, t := range golden {
		values[name] = t.Data
	}
	res := &TeacherResult{Computed: map[string]*Tensor{}, Grads: map[string]*Tensor{}}
	keep := func(name string, grad []float32) {
		res.Grads[name] = toTensor(append([]float32(nil), grad...), m.byName[name].Shape()...)
	}
	loss, computed, err := m.backprop(b, opts, values, keep)
	if err != nil {
		return nil, err
	}
	res.Loss = loss
	for name, v := range computed {
		shape := []int{b.B, b.T, len(v) / (b.B * b.T)}
		res.Computed[name] = toTensor(v, shape...)
	}
	return res, nil
}
