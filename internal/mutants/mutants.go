// Package mutants holds the conformance harness's deliberate bugs: each is
// a named edit of the model's op table (internal/ops) that replaces one op
// with a wrong implementation, the way a team's model could get it wrong.
// The harness self-test (conformance/numerics) injects each one and
// requires that the golden checks fail first at that op. The reference
// model carries no trace of them: a mutant reaches a model only through
// Model.UseVariant.
//
// Besides the bugs, the package holds float-equivalent reorderings: ops
// computed in another order that is exact in real arithmetic, which a
// correct harness must pass where float32 allows it (Reorderings).
//
// The mutants' own quantizers round half to even (or half away, for that
// bug) and ignore a jittered run's rounding policy: a mutant model's
// spread is that of its own rounding only.
package mutants

import (
	"fmt"
	"slices"

	"github.com/tritter-ai/conformance/internal/ops"
	"github.com/tritter-ai/conformance/model"
)

// mutant is one entry of the catalogue.
type mutant struct {
	variant ops.Variant
	// bitLinear: the mutant shows in a single BitLinear (bitlinear cases).
	bitLinear bool
	// reordering: float-equivalent to the reference, not a bug.
	reordering bool
}

var catalogue = map[string]mutant{
	// quantizers and BitLinear (the integer kernels have no variation
	// point, so these run on the float path)
	"round-half-away":      {variant: ops.Variant{Edit32: roundHalfAway[float32], Edit64: roundHalfAway[float64], FloatPath: true}, bitLinear: true},
	"max-weight-scale":     {variant: ops.Variant{Edit32: maxWeightScale[float32], Edit64: maxWeightScale[float64], FloatPath: true}, bitLinear: true},
	"act-quant-per-tensor": {variant: ops.Variant{Edit32: actQuantPerTensor[float32], Edit64: actQuantPerTensor[float64], FloatPath: true}, bitLinear: true},
	"no-ste":               {variant: ops.Variant{Edit32: noSTE[float32], Edit64: noSTE[float64], FloatPath: true}, bitLinear: true},
	"weight-grad-latent-x": {variant: ops.Variant{Edit32: weightGradLatentX[float32], Edit64: weightGradLatentX[float64], FloatPath: true}, bitLinear: true},
	"input-grad-latent-w":  {variant: ops.Variant{Edit32: inputGradLatentW[float32], Edit64: inputGradLatentW[float64], FloatPath: true}, bitLinear: true},
	"quantized-lm-head":    {variant: ops.Variant{Edit32: quantizedLMHead[float32], Edit64: quantizedLMHead[float64]}},
	"no-head-input-grad":   {variant: ops.Variant{Edit32: noHeadInputGrad[float32], Edit64: noHeadInputGrad[float64]}},

	// embedding and loss
	"embedding-scaled":      {variant: ops.Variant{Edit32: embeddingScaled[float32], Edit64: embeddingScaled[float64]}},
	"embedding-grad-assign": {variant: ops.Variant{Edit32: embeddingGradAssign[float32], Edit64: embeddingGradAssign[float64]}},
	"tied-grad-one-path":    {variant: ops.Variant{Edit32: tiedGradOnePath[float32], Edit64: tiedGradOnePath[float64]}},
	"loss-no-shift":         {variant: ops.Variant{Edit32: lossNoShift[float32], Edit64: lossNoShift[float64]}},
	"loss-grad-sum":         {variant: ops.Variant{Edit32: lossGradSum[float32], Edit64: lossGradSum[float64]}},

	// RMSNorm
	"eps-outside-sqrt":         {variant: ops.Variant{Edit32: epsOutsideSqrt[float32], Edit64: epsOutsideSqrt[float64]}},
	"no-attn-sub-norm":         {variant: ops.Variant{Edit32: noAttnSubNorm[float32], Edit64: noAttnSubNorm[float64]}},
	"no-ffn-sub-norm":          {variant: ops.Variant{Edit32: noFFNSubNorm[float32], Edit64: noFFNSubNorm[float64]}},
	"norm-grad-no-mean-term":   {variant: ops.Variant{Edit32: normGradNoMeanTerm[float32], Edit64: normGradNoMeanTerm[float64]}},
	"norm-weight-grad-no-rstd": {variant: ops.Variant{Edit32: normWeightGradNoRstd[float32], Edit64: normWeightGradNoRstd[float64]}},

	// RoPE and attention
	"interleaved-rope":     {variant: ops.Variant{Edit32: interleavedRope[float32], Edit64: interleavedRope[float64]}},
	"rope-grad-same-angle": {variant: ops.Variant{Edit32: ropeGradSameAngle[float32], Edit64: ropeGradSameAngle[float64]}},
	"gqa-mod-mapping":      {variant: ops.Variant{Edit32: gqaModMapping[float32], Edit64: gqaModMapping[float64]}},
	"no-causal-mask":       {variant: ops.Variant{Edit32: noCausalMask[float32], Edit64: noCausalMask[float64]}},
	"attn-scale-1-over-hd": {variant: ops.Variant{Edit32: attnScaleOneOverHD[float32], Edit64: attnScaleOneOverHD[float64]}},
	"softmax-grad-no-sum":  {variant: ops.Variant{Edit32: softmaxGradNoSum[float32], Edit64: softmaxGradNoSum[float64]}},
	"gqa-grad-first-head":  {variant: ops.Variant{Edit32: gqaGradFirstHead[float32], Edit64: gqaGradFirstHead[float64]}},
	"softmax-no-max-shift": {variant: ops.Variant{Edit32: softmaxNoMaxShift[float32], Edit64: softmaxNoMaxShift[float64]}, reordering: true},

	// MLP and residuals
	"silu":                    {variant: ops.Variant{Edit32: silu[float32], Edit64: silu[float64]}},
	"relu2-grad-no-factor-2":  {variant: ops.Variant{Edit32: reluSqGradNoFactor2[float32], Edit64: reluSqGradNoFactor2[float64]}},
	"no-attn-residual":        {variant: ops.Variant{Edit32: noAttnResidual[float32], Edit64: noAttnResidual[float64]}},
	"mlp-residual-from-input": {variant: ops.Variant{Edit32: mlpResidualFromInput[float32], Edit64: mlpResidualFromInput[float64]}},
	"no-residual-grad":        {variant: ops.Variant{Edit32: noResidualGrad[float32], Edit64: noResidualGrad[float64]}},
}

// Bugs lists every bug, sorted: each must be caught by the golden checks.
func Bugs() []string { return names(false) }

// Reorderings lists the float-equivalent reorderings, sorted: each must
// pass every check of a case whose values keep it exact enough in float32.
func Reorderings() []string { return names(true) }

func names(reorderings bool) []string {
	var out []string
	for name, m := range catalogue {
		if m.reordering == reorderings {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Variant is the named mutant as an edit of the op table.
func Variant(name string) (ops.Variant, error) {
	m, ok := catalogue[name]
	if !ok {
		return ops.Variant{}, fmt.Errorf("unknown mutant %q (bugs: %v; reorderings: %v)", name, Bugs(), Reorderings())
	}
	v := m.variant
	v.Name = name
	return v, nil
}

// Inject makes m run with the named mutant in place of the reference op.
func Inject(m *model.Model, name string) error {
	v, err := Variant(name)
	if err != nil {
		return err
	}
	m.UseVariant(v)
	return nil
}

// AppliesToBitLinear reports whether the named mutant changes a single
// BitLinear, so that the bitlinear golden cases can catch it.
func AppliesToBitLinear(name string) bool { return catalogue[name].bitLinear }

// BitLinear is model.BitLinear with the named mutant.
func BitLinear(name string, x, w *model.Tensor) (*model.Tensor, error) {
	l, err := bitLinear(name, x, w)
	if err != nil {
		return nil, err
	}
	N, out := x.Shape[0], w.Shape[0]
	y := model.NewTensor(N, out)
	l.Forward(y.Data, x.Data, N)
	return y, nil
}

// BitLinearBackward is model.BitLinearBackward with the named mutant.
func BitLinearBackward(name string, x, w, gradY *model.Tensor) (gradX, gradW *model.Tensor, err error) {
	if _, _, err := model.BitLinearBackward(x, w, gradY); err != nil {
		return nil, nil, err // the shapes
	}
	l, err := bitLinear(name, x, w)
	if err != nil {
		return nil, nil, err
	}
	N, out, in := x.Shape[0], w.Shape[0], w.Shape[1]
	gradX, gradW = model.NewTensor(N, in), model.NewTensor(out, in)
	l.Backward(gradX.Data, gradW.Data, x.Data, gradY.Data, N)
	return gradX, gradW, nil
}

func bitLinear(name string, x, w *model.Tensor) (ops.Linear[float32], error) {
	if !AppliesToBitLinear(name) {
		return nil, fmt.Errorf("mutant %q does not apply to a single BitLinear", name)
	}
	if _, err := model.BitLinear(x, w); err != nil {
		return nil, err // the shapes
	}
	v, _ := Variant(name)
	table := ops.TableOf[float32](v)
	return table.Linear(w.Data, w.Shape[0], w.Shape[1], ops.Rounding{}), nil
}
