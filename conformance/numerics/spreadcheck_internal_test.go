package numerics

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// flipsCase is a committed case whose jittered runs flip quantization
// decisions, so its measured spreads are far from zero.
const flipsCase = "model-gqa-tied-L4-T96-flips"

func committedCase(t *testing.T, name string) *golden.Case {
	t.Helper()
	for _, f := range golden.LoadCommitted() {
		if f.Err != nil {
			t.Fatal(f.Err)
		}
		if f.Case.Name == name {
			return f.Case
		}
	}
	t.Fatalf("no committed case %s", name)
	return nil
}

func newTestRun(t *testing.T, c *golden.Case, target Target) *caseRun {
	t.Helper()
	r, err := newCaseRun(c, target, model.ComputeFloat)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// On the correct model every spread is reproduced, forward and gradient,
// and the end-to-end messages say so.
func TestSpreadCheckReproducesACorrectModel(t *testing.T) {
	c := committedCase(t, flipsCase)
	r := newTestRun(t, c, ModelTarget)
	for _, name := range []string{"logits", "grad.model.layers.0.mlp.down_proj.weight"} {
		e, err := r.spread(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.Run == 0 || e.Measured == 0 || e.Note != "" {
			t.Fatalf("%s: the flips case's spread should be set by a jittered run and reproduced: %+v", name, e)
		}
		if !strings.Contains(e.source(), "reproduced") {
			t.Errorf("%s: source %q", name, e.source())
		}
	}
}

// A spread that does not match the runs it came from fails the case,
// naming the tensor, the run and both values: the harness-side bug that
// multiplies the measured spread by 100 (issue 23) is caught at run time,
// and so is any factor down to 1 + 1e-6.
func TestSpreadCheckCatchesAnInflatedSpread(t *testing.T) {
	c := committedCase(t, flipsCase)
	for _, tc := range []struct {
		tensor string
		factor float64
	}{{"logits", 100}, {"logits", 1 + 1e-6}, {"", 100}} {
		r := newTestRun(t, c, ModelTarget)
		gradients := tc.tensor == ""
		measure := r.measureForwardSpread
		if gradients {
			measure = r.measureGradientSpread
		}
		set, err := measure()
		if err != nil {
			t.Fatal(err)
		}
		tensor := tc.tensor
		if gradients {
			tensor = set.checked
		}
		s := set.of[tensor]
		s.value *= tc.factor
		set.of[tensor] = s
		if gradients {
			r.gradSpreads = lazy[*spreadSet]{done: true, v: set}
		} else {
			r.forwardSpreads = lazy[*spreadSet]{done: true, v: set}
		}
		_, err = r.spread(tensor)
		if err == nil || !strings.Contains(err.Error(), "does not match its runs") || !strings.Contains(err.Error(), tensor) {
			t.Errorf("%s spread ×%g: err = %v, want a mismatch naming the tensor", tensor, tc.factor, err)
		}
	}
}

// nondeterministic is the correct model with a run-to-run wobble on the
// logits of jittered runs, as a parallel reduction in a varying order
// would give: correct, but its repeated runs differ.
type nondeterministic struct {
	*model.Model
	rng *rand.Rand
}

func (n nondeterministic) Forward(b model.Batch, opts model.ForwardOptions) (*model.Output, error) {
	out, err := n.Model.Forward(b, opts)
	if err == nil && opts.Jitter != 0 {
		for i := range out.Logits.Data {
			out.Logits.Data[i] *= 1 + float32(n.rng.NormFloat64())*1e-6
		}
	}
	return out, err
}

// A nondeterministic implementation is not failed for it: the message
// says its spread was not reproduced.
func TestSpreadCheckNamesANondeterministicImplementation(t *testing.T) {
	c := committedCase(t, flipsCase)
	target := ModelTarget
	target.FromTensors = func(cfg model.Config, params map[string]*model.Tensor) (Implementation, error) {
		m, err := model.FromTensors(cfg, params)
		return nondeterministic{m, rand.New(rand.NewPCG(1, 2))}, err
	}
	r := newTestRun(t, c, target)
	e, err := r.spread("logits")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.Note, "nondeterministic") || !strings.Contains(e.source(), "not reproduced") {
		t.Errorf("note %q, source %q", e.Note, e.source())
	}
}
