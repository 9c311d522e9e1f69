package report_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/conformance/report"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// TestNumericsReport writes the report for the shared v2 example, once as
// computed and once with one check made to fail, and reads it back.
func TestNumericsReport(t *testing.T) {
	c, err := golden.Load(filepath.Join("..", "..", "golden", "cases", "shared-example-tiny-gqa-v2.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	results, err := numerics.Evaluate(c, numerics.ModelTarget, numerics.CaseChecks(c, numerics.ModelTarget), model.ComputeKernels)
	if err != nil {
		t.Fatal(err)
	}
	passing := numerics.Record(c, results)
	failing := numerics.Record(c, results)
	failing.Case += "-broken"
	failing.Checks = append([]numerics.CheckRecord(nil), failing.Checks...)
	failing.Checks[5].Ratio, failing.Checks[5].Passed = 37, false
	failing.Checks[6].Ratio, failing.Checks[6].Passed = math.MaxFloat64, false // an exact op that differs
	failing.FirstFailure = failing.Checks[5].Name

	dir := t.TempDir()
	if err := report.WriteNumerics(dir, "golden", []numerics.CaseRecord{passing, failing}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "numerics-golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep report.Numerics
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Cases) != 2 || rep.Failed != 2 || rep.WorstPassingRatio <= 0 || rep.WorstPassingRatio > 1 {
		t.Errorf("report: %d cases, %d failed, worst passing ratio %g", len(rep.Cases), rep.Failed, rep.WorstPassingRatio)
	}
	for _, name := range []string{"numerics-golden.png", "numerics-golden-cases_shared-example-tiny-gqa-v2-broken.png"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if out := os.Getenv("NUMERICS_PICTURE_DIR"); out != "" {
		if err := report.WriteNumerics(out, "golden", []numerics.CaseRecord{passing, failing}); err != nil {
			t.Fatal(err)
		}
	}
}
