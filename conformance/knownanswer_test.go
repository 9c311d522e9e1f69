package conformance_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/knownanswer"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// knownAnswerFrom writes the known answers of model m on ids: every
// position's mean logit and the logits of position 3 over [5, 25).
func knownAnswerFrom(t *testing.T, m *model.Model, ids []int32, fingerprint model.Config, tol float64, path string) {
	t.Helper()
	out, err := m.Forward(model.Batch{B: 1, T: len(ids), IDs: ids}, model.ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	V := int(m.Config().VocabSize)
	k := knownanswer.File{
		Format: knownanswer.Format, Checkpoint: "synthetic", Source: "this test's own run",
		Fingerprint: knownanswer.FingerprintOf(fingerprint), InputIDs: ids,
		MeanLogits:      &knownanswer.Expectation{Atol: tol, Rtol: tol},
		Slices:          []knownanswer.SliceExpectation{{Position: 3, Start: 5, Expectation: knownanswer.Expectation{Atol: tol, Rtol: tol}}},
		ToleranceReason: "same implementation, same weights",
	}
	for p := range ids {
		var sum float64
		for _, v := range out.Logits.Data[p*V : (p+1)*V] {
			sum += float64(v)
		}
		k.MeanLogits.Values = append(k.MeanLogits.Values, sum/float64(V))
	}
	for v := 5; v < 25; v++ {
		k.Slices[0].Values = append(k.Slices[0].Values, float64(out.Logits.Data[3*V+v]))
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

var knownAnswerIDs = []int32{1, 1, 17, 42, 7, 99, 3, 250}

// knownAnswerCheckpoint writes a synthetic offline checkpoint with two
// known-answer files beside it: one from its own run, one from a run with a
// small bug (RoPE base 10000 instead of the config's 500000, as a PyTorch
// reference with the wrong rope_theta would produce).
func knownAnswerCheckpoint(t *testing.T) (dir string, cfg model.Config) {
	t.Helper()
	cfg = preset(t, "tiny-mha-tied").Config
	dir = writeCheckpoint(t, cfg, "offline", 1)
	m, err := checkpoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	knownAnswerFrom(t, m, knownAnswerIDs, cfg, 1e-5, filepath.Join(dir, "own"+knownanswer.Suffix))
	buggy := cfg
	buggy.RopeTheta = 10000
	m, err = checkpoint.Load(writeCheckpoint(t, buggy, "offline", 1))
	if err != nil {
		t.Fatal(err)
	}
	knownAnswerFrom(t, m, knownAnswerIDs, cfg, 1e-5, filepath.Join(dir, "wrong-rope"+knownanswer.Suffix))
	return dir, cfg
}

func TestKnownAnswersOnSyntheticCheckpoint(t *testing.T) {
	dir, cfg := knownAnswerCheckpoint(t)
	m, err := checkpoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	answers, err := knownanswer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(answers) != 3 {
		t.Fatalf("%d known-answer files, expected the shipped one and two beside the checkpoint", len(answers))
	}
	byName := map[string]*knownanswer.File{}
	for _, k := range answers {
		byName[filepath.Base(k.Path)] = k
	}
	if reason := byName["bitnet-b1.58-2b-4t.json"].SkipReason(cfg); reason == "" {
		t.Error("the 2B-4T file matched a tiny checkpoint")
	}
	own := byName["own"+knownanswer.Suffix]
	if misses, err := own.Check(m); err != nil || len(misses) != 0 || own.SkipReason(cfg) != "" {
		t.Errorf("own known answers: %v, %v", err, misses)
	}
	misses, err := byName["wrong-rope"+knownanswer.Suffix].Check(m)
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, miss := range misses {
		named = append(named, miss.What)
		// Position 0 attends only to itself, and positions 0 and 1 hold the
		// same token, so RoPE cannot move them.
		if miss.What == "mean_logits[0]" || miss.What == "mean_logits[1]" {
			t.Errorf("a position RoPE cannot affect moved under a RoPE change: %s", miss)
		}
		if !(math.Abs(miss.Actual-miss.Expected) > miss.Allowed) {
			t.Errorf("miss within tolerance: %s", miss)
		}
	}
	if len(misses) == 0 || !strings.Contains(strings.Join(named, " "), "logits[0, 3, ") {
		t.Errorf("the RoPE-base bug was not caught at positions ≥ 1 and in the slice: %v", named)
	}
}

// Through the forward suite: the matching file passes, the buggy one fails
// naming the values, and the 2B-4T file is skipped with the reason.
func TestKnownAnswersInForwardSuite(t *testing.T) {
	dir, _ := knownAnswerCheckpoint(t)
	out, ok := runSuites(t, []string{"./suites/forward"}, "-model-dir="+dir, "-ginkgo.focus=Checkpoint numerics", "-ginkgo.v")
	if ok {
		t.Fatalf("the forward suite passed known answers from a buggy run:\n%s", out)
	}
	for _, want := range []string{
		"values outside tolerance against synthetic",
		"mean_logits[2]: ", // positions 0 and 1 hold the same token, so attention there ignores RoPE
		"wrong-rope" + knownanswer.Suffix,
		"[SKIPPED] answers/bitnet-b1.58-2b-4t.json (microsoft/bitnet-b1.58-2B-4T) is for another config: hidden_size: file 2560, checkpoint 64",
		"1 Passed | 1 Failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("suite output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// Through the forward suite with -master-dir: a correct conversion passes,
// an inverted-scale one fails naming the tensors.
func TestMasterDirInForwardSuite(t *testing.T) {
	cfg := preset(t, "tiny-gqa-untied").Config
	m, err := model.New(cfg, model.Options{Seed: 5, Storage: model.StorageBF16})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	master, packed := filepath.Join(root, "master"), filepath.Join(root, "packed")
	if err := checkpoint.Save(m, master, "online", 1); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.Save(m, packed, "offline", 1); err != nil {
		t.Fatal(err)
	}
	args := []string{"-model-dir=" + packed, "-master-dir=" + master, "-ginkgo.focus=Checkpoint numerics", "-ginkgo.v"}
	if out, ok := runSuites(t, []string{"./suites/forward"}, args...); !ok || !strings.Contains(out, "has the logits of -master-dir within relL2") {
		t.Fatalf("a correct conversion failed:\n%s", out)
	}
	// Swap the master in as the packed side's scales' inverse.
	bitlinear := filepath.Join(root, "inverted")
	if err := checkpoint.Save(m, bitlinear, "offline", 1); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(bitlinear, "config.json")
	saved, err := model.ReadConfigFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	saved.QuantizationConfig.LinearClass = "bitlinear" // autobitlinear scales read as bitlinear ones
	if err := os.WriteFile(cfgPath, saved.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	args[0] = "-model-dir=" + bitlinear
	out, ok := runSuites(t, []string{"./suites/forward"}, args...)
	if ok {
		t.Fatalf("an inverted-scale conversion passed:\n%s", out)
	}
	for _, want := range []string{"model.layers.0.self_attn.q_proj.weight_scale: [0]: ", "it is the inverse", "logits: relL2 "} {
		if !strings.Contains(out, want) {
			t.Errorf("suite output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
