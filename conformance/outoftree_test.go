package conformance_test

import (
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A team's own module that requires this one registers a spec through the
// public API and runs it from its own folder, with this module's sources
// gone (as in a read-only module cache somewhere else): the golden cases
// come from the binary, paths and reports from the team's folder. The
// module is copied, the team's test binary built against the copy, and the
// copy removed before the binary runs, so nothing can be read from the
// source tree at run time. (Building under -trimpath would say the same
// but recompile every dependency, minutes on a cold CI machine.)
func TestSpecsRunFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a second module (about a minute with a cold cache); make unit runs it without -short")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir, module := t.TempDir(), t.TempDir()
	if err := copyModule(module, root); err != nil {
		t.Fatal(err)
	}
	goMod := "module example.com/team\n\ngo 1.26.8\n\nrequire github.com/tritter-ai/conformance v0.0.0\n\nreplace github.com/tritter-ai/conformance => " + module + "\n"
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
	build := exec.Command("go", "test", "-c", "-o", "team.test", "-mod=mod", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the team's suite: %v\n%s", err, out)
	}
	if err := os.RemoveAll(module); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "team.test"), "-test.v", "-ginkgo.v", "-configs=tiny-mha-tied",
		"-ginkgo.label-filter=config:tiny-mha-tied || golden", "-ginkgo.focus=Team|cases/bitlinear-edge", "-ginkgo.no-color")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONFORMANCE_CONFIGS=", "CONFORMANCE_GOLDEN_DIR=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the team's suite failed: %v\n%s", err, out)
	}
	for _, want := range []string{"Team tiny-mha-tied has finite logits", "Golden numerics cases/bitlinear-edge", "VALIDATION PASSED"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "reports", "numerics-filtered.json")); err != nil {
		t.Errorf("the numerics report of the filtered run is not in the team's ./reports: %v", err)
	}
}

// copyModule copies the module at root into dst: its go.mod, go.sum and
// every package's non-test sources and embedded files, without version
// control, reports, build outputs or test data.
func copyModule(dst, root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(name, ".") || name == "reports" || name == "bin" || name == "testdata" || name == "docs") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, "_test.go") || strings.HasSuffix(name, ".test") || strings.HasSuffix(name, ".prof") {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
