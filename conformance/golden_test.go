package conformance_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// brokenModel panics in one op and errors in another; the checks must turn
// both into failing results and still run every other check.
type brokenModel struct{ *model.Model }

func (b brokenModel) Layer(i int, x *model.Tensor, c model.Compute) (*model.Tensor, error) {
	if i == 0 {
		panic("index out of range [7] with length 7")
	}
	return b.Model.Layer(i, x, c)
}

func (b brokenModel) FinalNorm(*model.Tensor) (*model.Tensor, error) {
	return nil, errors.New("final norm is not implemented")
}

func TestChecksSurvivePanicsAndErrors(t *testing.T) {
	c, err := golden.Load(filepath.Join(golden.Dir(), smallestModelCase))
	if err != nil {
		t.Fatal(err)
	}
	target := conformance.Target{
		Name: "broken",
		FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (conformance.Implementation, error) {
			m, err := model.FromTensors(cfg, params)
			return brokenModel{m}, err
		},
	}
	results, err := conformance.EvaluateCase(c, target, conformance.ForwardChecks(c))
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, r := range results {
		if !r.Passed() {
			failed = append(failed, r.String())
		}
	}
	joined := strings.Join(failed, "\n")
	if len(failed) != 2 || !strings.Contains(joined, "layer 0 output (hidden.1)") || !strings.Contains(joined, "panic: index out of range") ||
		!strings.Contains(joined, "final_norm") || !strings.Contains(joined, "not implemented") {
		t.Errorf("expected exactly the layer-0 panic and the final_norm error to fail, got:\n%s", joined)
	}
}

func TestCompareReportsWorstIndexAndFraction(t *testing.T) {
	expected := []float32{1, 2, 3, 4, 5, 6}
	actual := []float32{1, 2, 3, 4, 5.5, 6}
	cmp := conformance.Compare(actual, expected, []int{2, 3}, conformance.Policy[conformance.QuantityLayer])
	if cmp.WorstIndex[0] != 1 || cmp.WorstIndex[1] != 1 || cmp.MaxAbs != 0.5 || cmp.Outside != 1 {
		t.Errorf("comparison %+v", cmp)
	}
	for _, want := range []string{"max abs error 0.5 at [1 1]", "1 of 6 elements (16.67%)"} {
		if !strings.Contains(cmp.String(), want) {
			t.Errorf("%q lacks %q", cmp.String(), want)
		}
	}
}
