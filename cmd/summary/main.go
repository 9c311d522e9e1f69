// Command summary prints the conformance summary of a whole run from
// Ginkgo's JSON report (reports/report.json): the config table, COMPATIBLE or
// MISMATCH, the spec counts of every suite, what validated nothing, and
// VALIDATION PASSED, FAILED or NOTHING VALIDATED. With -junit it also writes
// the run as a JUnit file with the same test-case names the suites give
// Ginkgo's --junit-report (report.JUnitName). It exits 1 when validation
// did not pass. make conformance runs it last.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/tritter-ai/conformance/conformance"
	"github.com/tritter-ai/conformance/conformance/report"
)

func main() {
	reportPath := flag.String("report", "reports/report.json", "Ginkgo JSON report of the run")
	junit := flag.String("junit", "", "write the run as a JUnit XML file at this path")
	config := conformance.BindFlags(flag.CommandLine) // the same harness options as the suites
	flag.Parse()
	data, err := os.ReadFile(*reportPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(2)
	}
	var reports []types.Report
	if err := json.Unmarshal(data, &reports); err != nil {
		fmt.Fprintf(os.Stderr, "summary: %s: %v\n", *reportPath, err)
		os.Exit(2)
	}
	if *junit != "" {
		if err := report.WriteJUnit(reports, *junit); err != nil {
			fmt.Fprintln(os.Stderr, "summary:", err)
			os.Exit(2)
		}
	}
	h := conformance.NewHarness(config.WithEnv())
	preset, _ := h.CheckpointPreset()
	for _, r := range reports {
		status := "passed"
		if !r.SuiteSucceeded {
			status = "FAILED"
		}
		fmt.Printf("%-22s %s\n", r.SuiteDescription, status)
	}
	run := report.Run{Presets: h.Presets(), ModelDir: h.Config().ModelDir, CheckpointPreset: preset, Requested: h.Config().Configs, AllowUnvalidated: h.Config().AllowUnvalidated}
	if !report.WriteSummary(os.Stdout, reports, run) {
		os.Exit(1)
	}
}
