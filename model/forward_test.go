package model

import "testing"

// Changing a later token never changes earlier logits, and does change
// later ones.
func TestCausality(t *testing.T) {
	cfg := tinyConfig(true)
	m, _ := New(cfg, Options{Seed: 6})
	b := tinyBatch(cfg, 1, 8, 7)
	for _, c := range []Compute{ComputeKernels, ComputeFloat, ComputeFloat64} {
		base, err := m.Forward(b, ForwardOptions{Compute: c})
		if err != nil {
			t.Fatal(err)
		}
		changed := Batch{B: 1, T: 8, IDs: append([]int32(nil), b.IDs...)}
		changed.IDs[5] = (changed.IDs[5] + 1) % int32(cfg.VocabSize)
		out, _ := m.Forward(changed, ForwardOptions{Compute: c})
		V := int(cfg.VocabSize)
		for i := 0; i < 5*V; i++ {
			if out.Logits.Data[i] != base.Logits.Data[i] {
				t.Fatalf("%v: logit %d (position %d) changed with token 5", c, i, i/V)
			}
		}
		if compare(out.Logits.Data[5*V:], base.Logits.Data[5*V:]).maxAbs == 0 {
			t.Errorf("%v: positions ≥ 5 unchanged", c)
		}
	}
}
