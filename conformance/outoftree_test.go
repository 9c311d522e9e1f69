package conformance_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A team's own module that requires this one registers a spec through the
// public API and runs it under -trimpath from its own folder: the golden
// cases come from the binary, paths and reports from the team's folder.
func TestSpecsRunFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a second module (about a minute with a cold cache); make unit runs it without -short")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goMod := "module example.com/team\n\ngo 1.26.8\n\nrequire github.com/tritter-ai/conformance v0.0.0\n\nreplace github.com/tritter-ai/conformance => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	spec := `package team_test

import (
	"flag"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

var config = conformance.BindFlags(flag.CommandLine)

var _ = conformance.DescribeSubject("Team", func(s *conformance.Subject) {
	It("has finite logits", func() {
		Expect(s.Forward(s.RandomBatch(1, 4)).Logits).To(conformance.BeAllFinite("logits"))
	})
}, conformance.ForConfigs{"tiny-mha-tied"})

func TestTeam(t *testing.T) {
	conformance.Run(t, "Team Suite", config.WithEnv(), conformance.GoldenNumerics)
}
`
	for name, data := range map[string]string{"go.mod": goMod, "go.sum": string(sum), "team_test.go": spec} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-v", "-trimpath", "-count=1", "-mod=mod", ".", "-args", "-configs=tiny-mha-tied",
		"-ginkgo.label-filter=config:tiny-mha-tied || golden", "-ginkgo.focus=Team|cases/bitlinear-edge", "-ginkgo.no-color")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONFORMANCE_CONFIGS=", "CONFORMANCE_GOLDEN_DIR=", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the team's suite failed: %v\n%s", err, out)
	}
	for _, want := range []string{"Team Suite: ", "VALIDATION PASSED"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "reports", "numerics-filtered.json")); err != nil {
		t.Errorf("the numerics report of the filtered run is not in the team's ./reports: %v", err)
	}
}
