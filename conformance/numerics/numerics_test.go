package numerics_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// brokenModel panics in teacher forcing and errors in the forward and
// gradient passes; the checks must turn each into failing results and
// still run every other check.
type brokenModel struct{ *model.Model }

func (b brokenModel) TeacherForced(model.Batch, map[string]*model.Tensor, model.GradOptions) (*model.TeacherResult, error) {
	panic("index out of range [7] with length 7")
}

func (b brokenModel) Forward(model.Batch, model.ForwardOptions) (*model.Output, error) {
	return nil, errors.New("forward is not implemented")
}

func (b brokenModel) Gradients(model.Batch, model.GradOptions) (*model.GradResult, error) {
	return nil, errors.New("gradients are not implemented")
}

func TestChecksSurvivePanicsAndErrors(t *testing.T) {
	c, err := golden.Load(filepath.Join("..", "..", "golden", "cases", "model-mha-tied-L1-hd16-V251-T13.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	target := numerics.Target{
		Name: "broken",
		FromTensors: func(cfg model.Config, params map[string]*model.Tensor) (numerics.Implementation, error) {
			m, err := model.FromTensors(cfg, params)
			return brokenModel{m}, err
		},
	}
	checks := numerics.CaseChecks(c, target)
	results, err := numerics.Evaluate(c, target, checks, model.ComputeKernels)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(checks) {
		t.Fatalf("%d results for %d checks", len(results), len(checks))
	}
	for _, r := range results {
		if r.Passed() {
			t.Errorf("%s passed against a model that panics and errors", r.Check.Name)
			continue
		}
		want := "panic: index out of range"
		switch {
		case r.Check.Stage == numerics.StageEndToEnd && r.Check.IsGradient():
			want = "gradients are not implemented"
		case r.Check.Stage == numerics.StageEndToEnd:
			want = "forward is not implemented"
		}
		if !strings.Contains(r.String(), want) {
			t.Errorf("%s: %q lacks %q", r.Check.Name, r.String(), want)
		}
	}
	if first := numerics.FirstFailure(results); first == nil || !strings.Contains(first.Check.Name, "embedding") {
		t.Errorf("first failure %v, expected the embedding check (the first op)", first)
	}
}
