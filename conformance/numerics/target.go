package numerics

import "github.com/tritter-ai/conformance/model"

// Implementation is the model under test, as the golden and gradient specs
// see it. *model.Model is the production implementation; the harness's own
// self-tests run the same specs against deliberately broken ones.
//
// The golden op checks need one entry point beyond the forward and
// backward passes: TeacherForced, which runs both with every op fed the
// golden values of its inputs (see model.TeacherForced). Spread
// measurement calls Forward and Gradients with a Jitter seed.
//
// Each call returns tensors the caller owns: the harness keeps the results
// of several calls side by side (the spread measurement compares a
// repeated run with the first).
type Implementation interface {
	Forward(b model.Batch, opts model.ForwardOptions) (*model.Output, error)
	Gradients(b model.Batch, opts model.GradOptions) (*model.GradResult, error)
	TeacherForced(b model.Batch, golden map[string]*model.Tensor, opts model.GradOptions) (*model.TeacherResult, error)
}

// Target builds implementations from golden weights.
type Target struct {
	Name string
	// FromTensors builds a model from a config and its float32 parameters.
	FromTensors func(cfg model.Config, params map[string]*model.Tensor) (Implementation, error)
	// BitLinear is linear(act_quant(x), weight_quant(w)) for bitlinear cases.
	BitLinear func(x, w *model.Tensor) (*model.Tensor, error)
	// BitLinearKernels, when set, is the same on the implementation's
	// integer path (int8 activations, ternary×int8 accumulation), which
	// bitlinear cases then check as well: their large-magnitude inputs
	// reach accumulator sums a model case cannot.
	BitLinearKernels func(x, w *model.Tensor) (*model.Tensor, error)
	// BitLinearBackward returns the straight-through gradients of
	// sum(y·gradY) with respect to x and w.
	BitLinearBackward func(x, w, gradY *model.Tensor) (gradX, gradW *model.Tensor, err error)
}

// ModelTarget is the Go model in this repository.
var ModelTarget = Target{
	Name: "model",
	FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (Implementation, error) {
		return model.FromTensors(cfg, params)
	},
	BitLinear:         model.BitLinear,
	BitLinearKernels:  model.BitLinearKernels,
	BitLinearBackward: model.BitLinearBackward,
}
