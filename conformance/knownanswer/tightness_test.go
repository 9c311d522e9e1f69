package knownanswer_test

import (
	"math"
	"testing"

	"github.com/tritter-ai/conformance/conformance/knownanswer"
	"github.com/tritter-ai/conformance/model"
)

// TestToleranceIsTight: a known answer is met within atol + rtol·|expected|
// (the formula as docs/checkpoints.md states it, written out here) and not
// beyond: the model's own logits moved by 1/2 of the allowance pass, moved
// by 3/2 of it fail, value by value.
func TestToleranceIsTight(t *testing.T) {
	cfg := preset(t, "tiny-mha-tied").Config
	m, err := model.New(cfg, model.Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{1, 5, 9, 2, 7}
	out, err := m.Forward(model.Batch{B: 1, T: len(ids), IDs: ids}, model.ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	V := int(cfg.VocabSize)
	const atol, rtol = 0.01, 0.02
	for _, k := range []float64{0.5, 1.5} {
		moved := func(v float64, i int) float64 {
			sign := 1.0
			if i%2 == 1 {
				sign = -1
			}
			// |moved − v| = k·(atol + rtol·|moved|), solved for moved.
			return (v + sign*k*atol) / (1 - sign*k*rtol*math.Copysign(1, v))
		}
		means := make([]float64, len(ids))
		for p := range ids {
			var sum float64
			for _, x := range out.Logits.Data[p*V : (p+1)*V] {
				sum += float64(x)
			}
			means[p] = moved(sum/float64(V), p)
		}
		slice := make([]float64, 8)
		for i := range slice {
			slice[i] = moved(float64(out.Logits.Data[2*V+i]), i)
		}
		f := &knownanswer.File{
			Path:       "tightness",
			InputIDs:   ids,
			MeanLogits: &knownanswer.Expectation{Values: means, Atol: atol, Rtol: rtol},
			Slices:     []knownanswer.SliceExpectation{{Position: 2, Start: 0, Expectation: knownanswer.Expectation{Values: slice, Atol: atol, Rtol: rtol}}},
		}
		misses, err := f.Check(m)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if k > 1 {
			want = len(means) + len(slice)
		}
		if len(misses) != want {
			t.Errorf("values moved by %g × the allowance: %d misses, want %d: %v", k, len(misses), want, misses)
		}
	}
}
