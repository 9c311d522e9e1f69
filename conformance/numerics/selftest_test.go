package numerics_test

// The harness self-test: the conformance checks that the golden and
// gradient specs run must FAIL against a model carrying each realistic bug,
// and the failure must name the op and the layer; they must PASS the
// correct model and the model with each float-equivalent reordering. The
// bugs and reorderings are op-table edits from internal/mutants, which the
// reference model's code does not contain.

import (
	"math"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/internal/mutants"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// mutantTarget is the model with one mutant, behind the harness's Target.
func mutantTarget(name string) numerics.Target {
	target := numerics.Target{
		Name: "model with " + name,
		FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (numerics.Implementation, error) {
			m, err := model.FromTensors(cfg, params)
			if err != nil {
				return nil, err
			}
			return m, mutants.Inject(m, name)
		},
		BitLinear:         model.BitLinear,
		BitLinearBackward: model.BitLinearBackward,
	}
	if mutants.AppliesToBitLinear(name) {
		target.BitLinear = func(x, w *model.Tensor) (*model.Tensor, error) { return mutants.BitLinear(name, x, w) }
		target.BitLinearBackward = func(x, w, gy *model.Tensor) (*model.Tensor, *model.Tensor, error) {
			return mutants.BitLinearBackward(name, x, w, gy)
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

// requirePassesEveryCheck fails t for every check of every case that
// target fails, on both compute paths.
func requirePassesEveryCheck(t *testing.T, cases []*golden.Case, target numerics.Target) {
	t.Helper()
	for _, compute := range []model.Compute{model.ComputeKernels, model.ComputeFloat} {
		for _, c := range cases {
			results, err := numerics.Evaluate(c, target, numerics.CaseChecks(c, target), compute)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if !r.Passed() {
					t.Errorf("%s (%v path): the %s fails %s", c.Name, compute, target.Name, r)
				}
			}
		}
	}
}

func TestCorrectModelPassesEveryCheck(t *testing.T) {
	requirePassesEveryCheck(t, committedCases(t), numerics.ModelTarget)
}

// largeScores reports whether a case was built with attention scores near
// float32's exp overflow (its name says so), where a softmax without the
// max shift overflows.
func largeScores(c *golden.Case) bool { return strings.Contains(c.Name, "large-scores") }

// A float-equivalent reordering (softmax without the max shift) computes
// each op in another order than the reference, so its rounding differs
// and quantizer decisions can flip: the checks' bounds must allow for
// that, on every committed case whose scores keep the reordering exact
// enough in float32.
func TestReorderingsPassEveryCheck(t *testing.T) {
	var moderate []*golden.Case
	for _, c := range committedCases(t) {
		if !largeScores(c) {
			moderate = append(moderate, c)
		}
	}
	for _, name := range mutants.Reorderings() {
		t.Run(name, func(t *testing.T) { requirePassesEveryCheck(t, moderate, mutantTarget(name)) })
	}
}

// On a case with attention scores near exp overflow, the softmax without
// the max shift is no longer equivalent: exp overflows float32, and the
// first check to fail must be the attention op's.
func TestSoftmaxWithoutMaxShiftFailsOnLargeScores(t *testing.T) {
	var large []*golden.Case
	for _, c := range committedCases(t) {
		if largeScores(c) {
			large = append(large, c)
		}
	}
	if len(large) == 0 {
		t.Skip("no committed golden case has attention scores near exp overflow (a file name with \"large-scores\" in golden/cases)")
	}
	first := firstFailures(t, large, mutantTarget("softmax-no-max-shift"))
	for _, c := range large {
		switch f := first[c]; {
		case f == nil:
			t.Errorf("%s: the model with softmax-no-max-shift passes every op check", c.Name)
		case !strings.Contains(f.Check.Op, "attention (RoPE, causal softmax)") || f.Check.Stage == numerics.StageEndToEnd:
			t.Errorf("%s: divergence starts at %q, expected the attention op", c.Name, f.Check.Name)
		default:
			t.Logf("%s: first failure %s", c.Name, f)
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
	if len(selfTestBugs) != len(mutants.Bugs()) {
		t.Fatalf("the self-test covers %d bugs, internal/mutants has %d: %v", len(selfTestBugs), len(mutants.Bugs()), mutants.Bugs())
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
			for c, first := range firstFailures(t, opLevel, mutantTarget(b.bug)) {
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

// offlineTarget is the model with every linear made offline in the
// autobitlinear convention: the ternary codes of online quantization and
// weight_scale = 1/s, which multiplies. That is online quantization
// computed in another order (·(1/s) instead of /s), so it must pass every
// check too.
var offlineTarget = numerics.Target{
	Name: "offline autobitlinear model",
	FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (numerics.Implementation, error) {
		m, err := model.FromTensors(cfg, params)
		if err != nil {
			return nil, err
		}
		for _, p := range m.Params() {
			if p.Spec().Kind != model.KindLinear {
				continue
			}
			w, shape := p.Float32(), p.Shape()
			s := kernels.WeightScale(w)
			codes := make([]int8, len(w))
			kernels.Ternarize(codes, w, s)
			tern, err := kernels.PackTernary(codes, shape[0], shape[1])
			if err != nil {
				return nil, err
			}
			if err := m.SetTernary(p.Name(), tern, 1/s); err != nil {
				return nil, err
			}
		}
		return m, nil
	},
	BitLinear:         model.BitLinear,
	BitLinearBackward: model.BitLinearBackward,
}

func TestOfflineModelPassesEveryCheck(t *testing.T) {
	var cases []*golden.Case
	for _, c := range committedCases(t) {
		if c.Kind != golden.KindBitlinear {
			cases = append(cases, c)
		}
	}
	requirePassesEveryCheck(t, cases, offlineTarget)
}
