package conformance_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/gguf/verify"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// The gguf suite with -gguf and -model-dir: a faithful file passes every
// spec; an ARM-packed file fails exactly the specs its defect touches,
// each naming the tensor; -gguf without -model-dir is a failing spec.
func TestGGUFSuiteChecksTheGivenFile(t *testing.T) {
	m, err := model.New(conformance.GGUFSelfCheck, model.Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "hf")
	if err := checkpoint.Save(m, dir, checkpoint.Online, 1); err != nil {
		t.Fatal(err)
	}
	write := func(d gguf.Defect) string {
		path := filepath.Join(t.TempDir(), d.String()+".gguf")
		if err := gguf.WriteBitNet(path, m.Config(), verify.SourceOf(m), gguf.BitNetOptions{Defect: d}); err != nil {
			t.Fatal(err)
		}
		return path
	}

	out, ok := runSuites(t, []string{"./suites/gguf"}, "-model-dir="+dir, "-gguf="+write(gguf.Faithful))
	if !ok || !strings.Contains(out, "Ran 12 of 12 Specs") || !strings.Contains(out, "12 Passed") {
		t.Fatalf("a faithful file did not pass all 12 specs:\n%s", out)
	}

	out, ok = runSuites(t, []string{"./suites/gguf"}, "-model-dir="+dir, "-gguf="+write(gguf.ARMLayout))
	if ok {
		t.Fatalf("an ARM-packed file passed:\n%s", out)
	}
	for _, want := range []string{
		"[FAIL] GGUF arm-layout.gguf [It] has every ternary code of the HF checkpoint, row by row",
		"[FAIL] GGUF arm-layout.gguf [It] is packed in the x86 ACT_PARALLEL I2_S layout bitnet.cpp reads",
		"[FAIL] GGUF arm-layout.gguf [It] has the logits of the HF model within the end-to-end bound",
		"packed in the ARM NEON 64/16 layout, first blk.0.ffn_down.weight",
		"9 Passed | 3 Failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	out, ok = runSuites(t, []string{"./suites/gguf"}, "-gguf="+write(gguf.Faithful))
	if ok || !strings.Contains(out, "needs -model-dir") {
		t.Errorf("-gguf without -model-dir did not fail naming -model-dir:\n%s", out)
	}
	if t.Failed() {
		t.Log(out)
	}
}
