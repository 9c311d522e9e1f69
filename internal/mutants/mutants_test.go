package mutants_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/internal/mutants"
	"github.com/tritter-ai/conformance/model"
)

// relL2 is ||a − b|| / ||b||.
func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// Every bug must move the golden example's logits or gradients far
// outside rounding: the harness self-test (conformance/numerics) then
// checks that the golden checks catch each one at its op.
func TestBugsAreVisible(t *testing.T) {
	c, err := golden.Load(filepath.Join(golden.Dir(), "shared-example-tiny-gqa.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	// Bugs of the backward pass leave the forward pass alone.
	gradBugs := map[string]bool{"no-ste": true, "tied-grad-one-path": true, "weight-grad-latent-x": true,
		"input-grad-latent-w": true, "no-residual-grad": true, "norm-grad-no-mean-term": true,
		"norm-weight-grad-no-rstd": true, "softmax-grad-no-sum": true, "gqa-grad-first-head": true,
		"rope-grad-same-angle": true, "relu2-grad-no-factor-2": true, "embedding-grad-assign": true,
		"no-head-input-grad": true, "loss-grad-sum": true, "loss-no-shift": true}
	for _, bug := range mutants.Bugs() {
		t.Run(bug, func(t *testing.T) {
			if bug == "round-half-away" {
				t.Skip("random data has no exact .5 ties; TestBitLinearBugs covers this bug with tie inputs")
			}
			m, err := model.FromTensors(c.Config, c.Params)
			if err != nil {
				t.Fatal(err)
			}
			if err := mutants.Inject(m, bug); err != nil {
				t.Fatal(err)
			}
			if !gradBugs[bug] {
				out, err := m.Forward(c.Batch, model.ForwardOptions{})
				if err != nil {
					t.Fatal(err)
				}
				d := relL2(out.Logits.Data, c.Logits.Data)
				t.Logf("logits relL2 %.3g", d)
				if d < 1e-3 {
					t.Errorf("bug %s moves logits by relL2 %.3g only", bug, d)
				}
				return
			}
			res, err := m.Gradients(c.Batch, model.GradOptions{Keep: true})
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for name, grad := range res.Grads {
				worst = max(worst, relL2(grad.Data, c.Grads[name].Data))
			}
			t.Logf("worst gradient relL2 %.3g", worst)
			if worst < 1e-2 {
				t.Errorf("bug %s moves gradients by relL2 %.3g only", bug, worst)
			}
		})
	}
	if err := mutants.Inject(&model.Model{}, "no-such-bug"); err == nil {
		t.Error("Inject accepted an unknown bug")
	}
}

func TestBitLinearBugs(t *testing.T) {
	const N, out, in = 3, 8, 16
	x, w, gy := model.NewTensor(N, in), model.NewTensor(out, in), model.NewTensor(N, out)
	for i, tt := range []*model.Tensor{x, w, gy} {
		for j := range tt.Data {
			tt.Data[j] = float32(math.Sin(float64(1 + i*977 + j*31))) // deterministic, no ties
		}
	}
	// ties for round-half-away: a row whose max is 127 makes x·s = x exactly
	x.Data[0], x.Data[1] = 127, 2.5
	y, err := model.BitLinear(x, w)
	if err != nil {
		t.Fatal(err)
	}
	gx, gw, err := model.BitLinearBackward(x, w, gy)
	if err != nil {
		t.Fatal(err)
	}
	for _, bug := range []string{"round-half-away", "max-weight-scale", "act-quant-per-tensor"} {
		yb, err := mutants.BitLinear(bug, x, w)
		if err != nil {
			t.Fatal(err)
		}
		if relL2(yb.Data, y.Data) == 0 {
			t.Errorf("%s: output unchanged", bug)
		}
	}
	for _, bug := range []string{"no-ste", "weight-grad-latent-x", "input-grad-latent-w"} {
		bgx, bgw, err := mutants.BitLinearBackward(bug, x, w, gy)
		if err != nil {
			t.Fatal(err)
		}
		if relL2(bgx.Data, gx.Data) == 0 && relL2(bgw.Data, gw.Data) == 0 {
			t.Errorf("%s: gradients unchanged", bug)
		}
	}
	if _, err := mutants.BitLinear("silu", x, w); err == nil {
		t.Error("BitLinear accepted a bug that does not apply")
	}
	if _, err := mutants.BitLinear("no-ste", model.NewTensor(2, 5), w); err == nil {
		t.Error("BitLinear accepted mismatched shapes")
	}
}

// A reordering must change the computed bits, or the self-test's
// requirement that the model with it passes every check would hold
// vacuously.
func TestReorderingsChangeBits(t *testing.T) {
	c, err := golden.Load(filepath.Join(golden.Dir(), "shared-example-tiny-gqa.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := model.FromTensors(c.Config, c.Params)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Forward(c.Batch, model.ForwardOptions{Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range mutants.Reorderings() {
		m, _ := model.FromTensors(c.Config, c.Params)
		if err := mutants.Inject(m, name); err != nil {
			t.Fatal(err)
		}
		got, err := m.Forward(c.Batch, model.ForwardOptions{Trace: true})
		if err != nil {
			t.Fatal(err)
		}
		if relL2(got.Hidden[1].Data, want.Hidden[1].Data) == 0 {
			t.Errorf("%s: the first layer's output is bit-identical to the reference's", name)
		}
	}
}
