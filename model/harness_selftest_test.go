package model_test

// The harness self-test: the conformance checks that the golden and
// gradient specs run must FAIL against a model carrying each realistic bug,
// and the failure must name the op and the layer. The bugs are injected
// through model/export_test.go, which production code cannot reach.

import (
	"math"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// bugTarget is the model with one bug, behind the harness's Target.
func bugTarget(bug string) numerics.Target {
	target := numerics.Target{
		Name: "model with " + bug,
		FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (numerics.Implementation, error) {
			m, err := model.FromTensors(cfg, params)
			if err != nil {
				return nil, err
			}
			return m, model.InjectBug(m, bug)
		},
		BitLinear:         model.BitLinear,
		BitLinearBackward: model.BitLinearBackward,
	}
	if _, err := model.BitLinearWithBug(bug, model.NewTensor(1, 1), model.NewTensor(1, 1)); err == nil {
		target.BitLinear = func(x, w *model.Tensor) (*model.Tensor, error) { return model.BitLinearWithBug(bug, x, w) }
		target.BitLinearBackward = func(x, w, gy *model.Tensor) (*model.Tensor, *model.Tensor, error) {
			return model.BitLinearBackwardWithBug(bug, x, w, gy)
		}
	}
	return target
}

func committedCases(t *testing.T) []*golden.Case {
	t.Helper()
	paths, err := golden.Discover(golden.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var cases []*golden.Case
	for _, p := range paths {
		c, err := golden.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	return cases
}

// firstFailures returns, per case, the first failing op check in
// computation order (the end-to-end checks come after every op check, so a
// bug caught at its op never needs them), or nothing for a case that passes.
func firstFailures(t *testing.T, cases []*golden.Case, target numerics.Target) map[*golden.Case]*numerics.Result {
	t.Helper()
	out := map[*golden.Case]*numerics.Result{}
	for _, c := range cases {
		var ops []numerics.Check
		for _, check := range numerics.CaseChecks(c, target) {
			if check.Stage != numerics.StageEndToEnd {
				ops = append(ops, check)
			}
		}
		first, err := numerics.FirstFailingCheck(c, target, ops, model.ComputeKernels)
		if err != nil {
			t.Fatal(err)
		}
		if first != nil {
			out[c] = first
		}
	}
	return out
}

func TestCorrectModelPassesEveryCheck(t *testing.T) {
	cases := committedCases(t)
	for _, compute := range []model.Compute{model.ComputeKernels, model.ComputeFloat} {
		for _, c := range cases {
			results, err := numerics.Evaluate(c, numerics.ModelTarget, numerics.CaseChecks(c, numerics.ModelTarget), compute)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if !r.Passed() {
					t.Errorf("%s (%v path): the correct model fails %s", c.Name, compute, r)
				}
			}
		}
	}
}

// selfTestBugs lists each injectable bug with the op whose check must be
// the first to fail (computation order) on every committed case the bug
// changes, and the layer of that check (-1: model-level or a bitlinear
// case; -2: any layer, for backward bugs that show first in the last
// layer the backward pass reaches).
var selfTestBugs = []struct {
	bug, op string
	layer   int
}{
	{"round-half-away", "BitLinear", -1},
	{"max-weight-scale", "BitLinear", -2},
	{"act-quant-per-tensor", "BitLinear", -2},
	{"no-ste", "BitLinear", -2},
	{"weight-grad-latent-x", "BitLinear", -2},
	{"input-grad-latent-w", "BitLinear", -2},
	{"no-attn-sub-norm", "attn_sub_norm (RMSNorm)", 0},
	{"no-ffn-sub-norm", "ffn_sub_norm (RMSNorm)", 0},
	{"eps-outside-sqrt", "input_layernorm (RMSNorm)", 0},
	{"silu", "relu²(gate)·up", 0},
	{"interleaved-rope", "attention (RoPE, causal softmax)", 0},
	{"gqa-mod-mapping", "attention (RoPE, causal softmax)", 0},
	{"no-causal-mask", "attention (RoPE, causal softmax)", 0},
	{"attn-scale-1-over-hd", "attention (RoPE, causal softmax)", 0},
	{"no-attn-residual", "attention residual (x + o)", 0},
	{"mlp-residual-from-input", "MLP residual (h + down)", 0},
	{"embedding-scaled", "embedding lookup", -1},
	{"quantized-lm-head", "lm_head (unquantized)", -1},
	{"loss-no-shift", "cross-entropy loss", -1},
	{"loss-grad-sum", "cross-entropy backward", -1},
	{"no-head-input-grad", "lm_head backward", -1},
	{"norm-grad-no-mean-term", "final norm (model.norm, RMSNorm) backward", -1},
	{"norm-weight-grad-no-rstd", "final norm (model.norm, RMSNorm) weight gradient", -1},
	{"relu2-grad-no-factor-2", "relu²(gate)·up backward", -2},
	{"softmax-grad-no-sum", "attention backward (RoPE, causal softmax)", -2},
	{"gqa-grad-first-head", "attention backward (RoPE, causal softmax)", -2},
	{"rope-grad-same-angle", "attention backward (RoPE, causal softmax)", -2},
	{"no-residual-grad", "attention residual backward", -2},
	{"embedding-grad-assign", "embedding gradient", -1},
	{"tied-grad-one-path", "embedding gradient (lookup + tied lm_head)", -1},
}

// TestHarnessCatchesEveryBug injects each bug and requires that some
// committed case fails, and that on every failing v2 or bitlinear case the
// first failing check is the op the bug breaks.
func TestHarnessCatchesEveryBug(t *testing.T) {
	cases := committedCases(t)
	if len(selfTestBugs) != len(model.Bugs()) {
		t.Fatalf("the self-test covers %d bugs, model has %d: %v", len(selfTestBugs), len(model.Bugs()), model.Bugs())
	}
	var opLevel []*golden.Case
	for _, c := range cases {
		if c.Kind == golden.KindBitlinear || c.Version >= 2 {
			opLevel = append(opLevel, c)
		}
	}
	for _, b := range selfTestBugs {
		t.Run(b.bug, func(t *testing.T) {
			caught, smallest := 0, math.Inf(1)
			for c, first := range firstFailures(t, opLevel, bugTarget(b.bug)) {
				caught++
				smallest = math.Min(smallest, first.Measure.Ratio)
				if !strings.Contains(first.Check.Op, b.op) || (b.layer != -2 && first.Check.Layer != b.layer) {
					t.Errorf("%s: divergence starts at %q (layer %d), expected op %q (layer %d)", c.Name, first.Check.Name, first.Check.Layer, b.op, b.layer)
				}
			}
			if caught == 0 {
				t.Fatalf("no committed case fails against a model with %s", b.bug)
			}
			t.Logf("caught on %d cases, smallest error/bound ratio of the first failing check %.3g", caught, smallest)
		})
	}
}
