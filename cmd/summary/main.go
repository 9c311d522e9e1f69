// Command summary prints the conformance summary of a whole run from
// Ginkgo's JSON report (reports/report.json): the config table, COMPATIBLE or
// MISMATCH, the spec counts of every suite and VALIDATION PASSED or FAILED.
// It exits 1 when any suite failed. make conformance runs it last.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/tritter-ai/conformance/conformance"
)

func main() {
	report := flag.String("report", "reports/report.json", "Ginkgo JSON report of the run")
	flag.Parse() // the harness flags (-configs, -config-dir, -model-dir) are registered by the conformance package
	data, err := os.ReadFile(*report)
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(2)
	}
	var reports []types.Report
	if err := json.Unmarshal(data, &reports); err != nil {
		fmt.Fprintf(os.Stderr, "summary: %s: %v\n", *report, err)
		os.Exit(2)
	}
	presets, err := conformance.Flags.Select()
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
	}
	for _, r := range reports {
		status := "passed"
		if !r.SuiteSucceeded {
			status = "FAILED"
		}
		fmt.Printf("%-22s %s\n", r.SuiteDescription, status)
	}
	if !conformance.WriteSummary(os.Stdout, reports, presets) {
		os.Exit(1)
	}
}
