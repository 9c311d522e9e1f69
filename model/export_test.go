package model

import (
	"fmt"
	"sort"
)

// Test-only access to the model's variation points, for the conformance
// harness self-test: each bug below must be caught by some spec. None of
// this is reachable from production code.

// bugQuirks maps each bug name to the quirk that implements it.
var bugQuirks = map[string]func(*quirks){
	"round-half-away":      func(q *quirks) { q.roundHalfAway = true },
	"max-weight-scale":     func(q *quirks) { q.maxWeightScale = true },
	"no-attn-sub-norm":     func(q *quirks) { q.noAttnSubNorm = true },
	"no-ffn-sub-norm":      func(q *quirks) { q.noFFNSubNorm = true },
	"silu":                 func(q *quirks) { q.silu = true },
	"interleaved-rope":     func(q *quirks) { q.interleavedRope = true },
	"gqa-mod-mapping":      func(q *quirks) { q.gqaModMapping = true },
	"no-causal-mask":       func(q *quirks) { q.noCausalMask = true },
	"quantized-lm-head":    func(q *quirks) { q.quantizedLMHead = true },
	"eps-outside-sqrt":     func(q *quirks) { q.epsOutsideSqrt = true },
	"attn-scale-1-over-hd": func(q *quirks) { q.attnScaleOneOverHD = true },
	"no-ste":               func(q *quirks) { q.noSTE = true },
	"tied-grad-one-path":   func(q *quirks) { q.tiedGradOnePath = true },

	"act-quant-per-tensor":     func(q *quirks) { q.actQuantPerTensor = true },
	"weight-grad-latent-x":     func(q *quirks) { q.weightGradLatentX = true },
	"input-grad-latent-w":      func(q *quirks) { q.inputGradLatentW = true },
	"no-attn-residual":         func(q *quirks) { q.noAttnResidual = true },
	"mlp-residual-from-input":  func(q *quirks) { q.mlpResidualFromInput = true },
	"no-residual-grad":         func(q *quirks) { q.noResidualGrad = true },
	"norm-grad-no-mean-term":   func(q *quirks) { q.normGradNoMeanTerm = true },
	"norm-weight-grad-no-rstd": func(q *quirks) { q.normWeightGradNoRstd = true },
	"softmax-grad-no-sum":      func(q *quirks) { q.softmaxGradNoSum = true },
	"gqa-grad-first-head":      func(q *quirks) { q.gqaGradFirstHead = true },
	"rope-grad-same-angle":     func(q *quirks) { q.ropeGradSameAngle = true },
	"relu2-grad-no-factor-2":   func(q *quirks) { q.reluSqGradNoFactor2 = true },
	"embedding-scaled":         func(q *quirks) { q.embeddingScaled = true },
	"embedding-grad-assign":    func(q *quirks) { q.embeddingGradAssign = true },
	"no-head-input-grad":       func(q *quirks) { q.noHeadInputGrad = true },
	"loss-no-shift":            func(q *quirks) { q.lossNoShift = true },
	"loss-grad-sum":            func(q *quirks) { q.lossGradSum = true },
}

// bitLinearBugs are the bugs a single BitLinear can show.
var bitLinearBugs = map[string]bool{"round-half-away": true, "max-weight-scale": true, "no-ste": true,
	"act-quant-per-tensor": true, "weight-grad-latent-x": true, "input-grad-latent-w": true}

// Bugs lists every bug name InjectBug accepts, sorted.
func Bugs() []string {
	var names []string
	for name := range bugQuirks {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// InjectBug makes m deviate from the reference in the named way (bugs add
// up). Models with quantizer bugs run on the float path.
func InjectBug(m *Model, bug string) error {
	set, ok := bugQuirks[bug]
	if !ok {
		return fmt.Errorf("unknown bug %q (known: %v)", bug, Bugs())
	}
	set(&m.quirks)
	if bug == "no-ste" || bug == "weight-grad-latent-x" || bug == "input-grad-latent-w" {
		// the integer kernels have no variation point; force the float path
		m.quirks.forceFloat = true
	}
	return nil
}

func bitLinearQuirks(bug string) (*quirks, error) {
	if !bitLinearBugs[bug] {
		return nil, fmt.Errorf("bug %q does not apply to a single BitLinear", bug)
	}
	q := &quirks{}
	bugQuirks[bug](q)
	return q, nil
}

// BitLinearWithBug is BitLinear with the named bug.
func BitLinearWithBug(bug string, x, w *Tensor) (*Tensor, error) {
	q, err := bitLinearQuirks(bug)
	if err != nil {
		return nil, err
	}
	return bitLinear(x, w, q)
}

// BitLinearBackwardWithBug is BitLinearBackward with the named bug.
func BitLinearBackwardWithBug(bug string, x, w, gradY *Tensor) (gradX, gradW *Tensor, err error) {
	q, err := bitLinearQuirks(bug)
	if err != nil {
		return nil, nil, err
	}
	return bitLinearBackward(x, w, gradY, q)
}
