package model

import (
	"fmt"
	"math"
)

// Teacher forcing at every op. The golden checks compare each op of the
// model with a golden file op by op: the op must get exactly the golden
// inputs, so that its output differs from the golden output only by the
// op's own rounding. Rather than a second implementation of every op for
// that purpose, the network's own forward and backward code calls a tap
// after each op: the tap records what the op computed and then overwrites
// it with the golden value before the next op reads it. A wrong wiring
// (an op reading the wrong tensor) shows at that op, as would any op bug.

// teacher holds the golden values and what the model computed. A nil
// teacher taps nothing (the normal forward and backward pass).
type teacher[F float] struct {
	golden   map[string][]float32 // tensor name (as in the golden file) → golden values
	computed map[string][]float32 // tensor name → what the model computed from golden inputs
}

// tap records v under name and, when the golden case has that tensor,
// replaces v with it.
func (t *teacher[F]) tap(name string, v []F) {
	if t == nil {
		return
	}
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

// layerTap is a teacher bound to one layer: trace point p of layer i is
// trace.{i}.{p}, its gradient grad.trace.{i}.{p}.
type layerTap[F float] struct {
	t     *teacher[F]
	layer int
}

func (lt layerTap[F]) forward(point string, v []F) {
	if lt.t != nil {
		lt.t.tap(fmt.Sprintf("trace.%d.%s", lt.layer, point), v)
	}
}

func (lt layerTap[F]) backward(point string, v []F) {
	if lt.t != nil {
		lt.t.tap(fmt.Sprintf("grad.trace.%d.%s", lt.layer, point), v)
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

// ----------------------------------------------------------------------------
// jitter: alternative correct runs, for measuring a case's spread

// A golden case's spread is how far alternative correct computations land
// from each other: runs that differ only in floating-point rounding, which
// flip the quantizers' near-tie decisions differently. A jittered run
// multiplies every quantizer input (each act_quant input element and each
// latent weight before weight_quant rounds it) by (1 + ε), with ε uniform in
// [-2^-21, 2^-21] (about four float32 ulps, the size of a summation-order
// difference), as golden-format.md defines for the generator's own spread.
// ε is a hash of the seed, the element's index and its bits, so the forward
// pass and the backward pass's re-quantization of the same input agree and
// the result does not depend on the number of threads. On top of that, a
// jittered run decides every near-tie (a pre-rounding value within 2^-18
// of itself from a rounding boundary) at random, and run 1 flips them all
// (quirks.quantRound): a correct implementation whose own rounding lands
// on the other side of such a tie must not fall outside the spread only
// because the ±2^-21 perturbations happened to leave that tie alone.

const jitterScale = 1.0 / (1 << 21)

// jitterFactor is 1 + ε for element i holding v.
func jitterFactor(seed uint64, i int, v float64) float64 {
	h := seed ^ uint64(i)*0x9e3779b97f4a7c15 ^ math.Float64bits(v)*0xbf58476d1ce4e5b9
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	h ^= h >> 29
	u := float64(h>>11) / (1 << 53) // [0, 1)
	return 1 + (2*u-1)*jitterScale
}
