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

// exampleRecords evaluates the shared v2 example and returns its record as
// the forward suite and the gradient suite would write it (each with the
// checks it runs), plus a copy of the whole record with two checks made to
// fail.
func exampleRecords(t *testing.T) (forward, gradient, failing numerics.CaseRecord) {
	t.Helper()
	c, err := golden.Load(filepath.Join("..", "..", "golden", "cases", "shared-example-tiny-gqa-v2.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	checks := numerics.CaseChecks(c, numerics.ModelTarget)
	results, err := numerics.Evaluate(c, numerics.ModelTarget, checks, model.ComputeKernels)
	if err != nil {
		t.Fatal(err)
	}
	var fwd, grad []numerics.Result
	for _, r := range results {
		if r.Check.IsGradient() {
			grad = append(grad, r)
		} else {
			fwd = append(fwd, r)
		}
	}
	forward, gradient = numerics.Record(c, fwd), numerics.Record(c, grad)
	failing = numerics.Record(c, results)
	failing.Case += "-broken"
	failing.Path += "-broken"
	failing.Checks[5].Ratio, failing.Checks[5].Passed = 37, false
	failing.Checks[6].Ratio, failing.Checks[6].Passed = math.MaxFloat64, false // an exact op that differs
	failing.FirstFailure = failing.Checks[5].Name
	return forward, gradient, failing
}

func readReport(t *testing.T, path string) report.Numerics {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep report.Numerics
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestNumericsReportOneRecordPerCase: the forward and the gradient suite
// of one run write one record per case with the union of their checks, in
// computation order; a later run (another parent process, even with the
// same seed) replaces the report; a filtered run writes its own.
func TestNumericsReportOneRecordPerCase(t *testing.T) {
	forward, gradient, failing := exampleRecords(t)
	total := len(forward.Checks) + len(gradient.Checks)
	dir := t.TempDir()
	run := report.RunKey{Seed: 1}
	if err := report.WriteNumerics(dir, run, "forward", []numerics.CaseRecord{forward}); err != nil {
		t.Fatal(err)
	}
	if err := report.WriteNumerics(dir, run, "gradient", []numerics.CaseRecord{gradient, failing}); err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, filepath.Join(dir, "numerics.json"))
	if len(rep.Cases) != 2 || len(rep.Suites) != 2 {
		t.Fatalf("report of one run: %d cases from suites %v, want 2 cases from forward and gradient", len(rep.Cases), rep.Suites)
	}
	merged := rep.Cases[0]
	if merged.Case != forward.Case || len(merged.Checks) != total {
		t.Fatalf("%s: %d checks, want %d (forward %d + gradient %d)", merged.Case, len(merged.Checks), total, len(forward.Checks), len(gradient.Checks))
	}
	for i, ch := range merged.Checks {
		if ch.Order != i {
			t.Fatalf("merged check %d (%s) has order %d: not in computation order", i, ch.Name, ch.Order)
		}
	}
	if rep.Failed != 2 || rep.WorstPassingRatio <= 0 || rep.WorstPassingRatio > 1 || rep.Cases[1].FirstFailure != failing.Checks[5].Name {
		t.Errorf("report: %d failed, worst passing ratio %g, first failure %q", rep.Failed, rep.WorstPassingRatio, rep.Cases[1].FirstFailure)
	}
	for _, name := range []string{"numerics.png", "numerics-cases_shared-example-tiny-gqa-v2-broken.png"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", name, err)
		}
	}

	filtered := report.RunKey{Seed: 1, Filter: `--focus="attention"`}
	if err := report.WriteNumerics(dir, filtered, "forward", []numerics.CaseRecord{forward}); err != nil {
		t.Fatal(err)
	}
	if rep := readReport(t, filepath.Join(dir, "numerics.json")); len(rep.Cases) != 2 {
		t.Errorf("a filtered run changed the full run's report: %d cases", len(rep.Cases))
	}
	if rep := readReport(t, filepath.Join(dir, "numerics-filtered.json")); len(rep.Cases) != 1 || rep.Run != filtered {
		t.Errorf("filtered report: %d cases, run %+v", len(rep.Cases), rep.Run)
	}

	if err := report.WriteNumerics(dir, report.RunKey{Parent: 7, Seed: 1}, "forward", []numerics.CaseRecord{forward}); err != nil {
		t.Fatal(err)
	}
	if rep := readReport(t, filepath.Join(dir, "numerics.json")); len(rep.Cases) != 1 || len(rep.Cases[0].Checks) != len(forward.Checks) || len(rep.Suites) != 1 {
		t.Errorf("a new run kept the old run's records: %d cases, suites %v", len(rep.Cases), rep.Suites)
	}

	// NUMERICS_PICTURE_DIR=docs/img go test -run OneRecord ./conformance/report
	// redraws the sample picture in docs/numerics-report.md.
	if out := os.Getenv("NUMERICS_PICTURE_DIR"); out != "" {
		if err := report.WriteNumerics(out, run, "forward+gradient", []numerics.CaseRecord{failing}); err != nil {
			t.Fatal(err)
		}
	}
}
