package model_test

// The harness self-test: the conformance checks that the golden and
// gradient specs run must FAIL against a model carrying each realistic bug,
// and the failure must name the op and the layer. The bugs are injected
// through model/export_test.go, which production code cannot reach.

import (
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// bugTarget is the model with one bug, behind the harness's Target.
func bugTarget(bug string) conformance.Target {
	target := conformance.Target{
		Name: "model with " + bug,
		FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (conformance.Implementation, error) {
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

// failures runs the numerics (or gradient) checks of every case and returns
// "case: check: comparison" for each failing one.
func failures(t *testing.T, cases []*golden.Case, target conformance.Target, gradients bool) []string {
	t.Helper()
	var out []string
	for _, c := range cases {
		checks := conformance.NumericsChecks(c, target)
		if gradients {
			checks = conformance.GradChecks(c, target)
		}
		results, err := conformance.EvaluateCase(c, target, checks)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if !r.Passed() {
				out = append(out, c.Name+": "+r.String())
			}
		}
	}
	return out
}

func TestCorrectModelPassesEveryCheck(t *testing.T) {
	cases := committedCases(t)
	for _, gradients := range []bool{false, true} {
		if f := failures(t, cases, conformance.ModelTarget, gradients); len(f) > 0 {
			t.Errorf("the correct model fails %d checks (gradients=%v):\n%s", len(f), gradients, strings.Join(f, "\n"))
		}
	}
}

func TestHarnessCatchesEveryBug(t *testing.T) {
	cases := committedCases(t)
	// Each bug, whether the gradient specs (rather than the numerics specs)
	// must catch it, and the op and layer the failing check must name.
	bugs := []struct {
		bug       string
		gradients bool
		names     string
	}{
		{"round-half-away", false, "bitlinear y"},
		{"max-weight-scale", false, "layer 0 output"},
		{"no-attn-sub-norm", false, "layer 0 output"},
		{"no-ffn-sub-norm", false, "layer 0 output"},
		{"silu", false, "layer 0 output"},
		{"interleaved-rope", false, "layer 0 output"},
		{"gqa-mod-mapping", false, "layer 0 output"},
		{"no-causal-mask", false, "layer 0 output"},
		{"quantized-lm-head", false, "logits"},
		{"eps-outside-sqrt", false, "final_norm"},
		{"attn-scale-1-over-hd", false, "layer 0 output"},
		{"no-ste", true, "grad of model.layers.0.self_attn.q_proj.weight"},
		{"tied-grad-one-path", true, "grad of model.embed_tokens.weight"},
	}
	if len(bugs) != len(model.Bugs()) {
		t.Fatalf("the self-test covers %d bugs, model has %d: %v", len(bugs), len(model.Bugs()), model.Bugs())
	}
	for _, b := range bugs {
		t.Run(b.bug, func(t *testing.T) {
			f := failures(t, cases, bugTarget(b.bug), b.gradients)
			if len(f) == 0 {
				t.Fatalf("no check fails against a model with %s", b.bug)
			}
			named := false
			for _, line := range f {
				named = named || strings.Contains(line, b.names)
			}
			if !named {
				t.Errorf("%d checks fail, none naming %q:\n%s", len(f), b.names, strings.Join(f, "\n"))
			}
			t.Logf("%d failing checks; first: %s", len(f), f[0])
		})
	}
}
