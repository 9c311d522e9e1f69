package model

import (
	"testing"
)

// Every injectable bug must move the golden example's logits or gradients
// far outside the tolerances the golden tests use.
func TestInjectedBugsAreVisible(t *testing.T) {
	g := loadGolden(t, exampleGolden)
	// Bugs of the backward pass leave the forward pass alone.
	gradBugs := map[string]bool{"no-ste": true, "tied-grad-one-path": true, "weight-grad-latent-x": true,
		"input-grad-latent-w": true, "no-residual-grad": true, "norm-grad-no-mean-term": true,
		"norm-weight-grad-no-rstd": true, "softmax-grad-no-sum": true, "gqa-grad-first-head": true,
		"rope-grad-same-angle": true, "relu2-grad-no-factor-2": true, "embedding-grad-assign": true,
		"no-head-input-grad": true, "loss-grad-sum": true, "loss-no-shift": true}
	for _, bug := range Bugs() {
		t.Run(bug, func(t *testing.T) {
			if bug == "round-half-away" {
				t.Skip("random data has no exact .5 ties; TestBitLinearBugs covers this bug with tie inputs")
			}
			m, err := FromTensors(g.cfg, g.params())
			if err != nil {
				t.Fatal(err)
			}
			if err := InjectBug(m, bug); err != nil {
				t.Fatal(err)
			}
			if !gradBugs[bug] {
				out, err := m.Forward(g.batch, ForwardOptions{})
				if err != nil {
					t.Fatal(err)
				}
				s := compare(out.Logits.Data, g.tensors["logits"].Data)
				t.Logf("logits relL2 %.3g", s.relL2)
				if s.relL2 < 1e-3 {
					t.Errorf("bug %s moves logits by relL2 %.3g only", bug, s.relL2)
				}
				return
			}
			res, err := m.Gradients(g.batch, GradOptions{Keep: true})
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for name, grad := range res.Grads {
				worst = max(worst, compare(grad.Data, g.tensors["grad."+name].Data).relL2)
			}
			t.Logf("worst gradient relL2 %.3g", worst)
			if worst < 1e-2 {
				t.Errorf("bug %s moves gradients by relL2 %.3g only", bug, worst)
			}
		})
	}
	if err := InjectBug(&Model{}, "no-such-bug"); err == nil {
		t.Error("InjectBug accepted an unknown bug")
	}
}

func TestBitLinearBugs(t *testing.T) {
	c := newOpCheck(t)
	const N, out, in = 3, 8, 16
	x, w, gy := NewTensor(N, in), NewTensor(out, in), NewTensor(N, out)
	for _, tt := range []*Tensor{x, w, gy} {
		for i, v := range c.rand(len(tt.Data)) {
			tt.Data[i] = float32(v)
		}
	}
	// ties for round-half-away: a row whose max is 127 makes x·s = x exactly
	x.Data[0], x.Data[1] = 127, 2.5
	y, err := BitLinear(x, w)
	if err != nil {
		t.Fatal(err)
	}
	gx, gw, err := BitLinearBackward(x, w, gy)
	if err != nil {
		t.Fatal(err)
	}
	for _, bug := range []string{"round-half-away", "max-weight-scale"} {
		yb, err := BitLinearWithBug(bug, x, w)
		if err != nil {
			t.Fatal(err)
		}
		if s := compare(yb.Data, y.Data); s.relL2 == 0 {
			t.Errorf("%s: output unchanged", bug)
		}
	}
	bgx, bgw, err := BitLinearBackwardWithBug("no-ste", x, w, gy)
	if err != nil {
		t.Fatal(err)
	}
	if compare(bgx.Data, gx.Data).relL2 == 0 || compare(bgw.Data, gw.Data).relL2 == 0 {
		t.Error("no-ste: gradients unchanged")
	}
	if _, err := BitLinearWithBug("silu", x, w); err == nil {
		t.Error("BitLinearWithBug accepted a bug that does not apply")
	}
}
