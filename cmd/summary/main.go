// Command summary prints the conformance summary of a whole run from
// Ginkgo's JSON report (reports/report.json): the config table, COMPATIBLE or
// MISMATCH, the spec counts of every suite and VALIDATION PASSED or FAILED.
// With -junit it also writes the run as a JUnit file for CI systems (see
// writeJUnit). It exits 1 when any suite failed. make conformance runs it
// last.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/tritter-ai/conformance/conformance"
)

func main() {
	report := flag.String("report", "reports/report.json", "Ginkgo JSON report of the run")
	junit := flag.String("junit", "", "write the run as a JUnit XML file at this path")
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
	if *junit != "" {
		if err := writeJUnit(reports, *junit); err != nil {
			fmt.Fprintln(os.Stderr, "summary:", err)
			os.Exit(2)
		}
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

// junitConfig shapes the JUnit file for how CI systems show it: a testcase
// is named by its spec text alone, which holds the config ("Forward
// tiny-mha-tied is causal: ..."), without the leaf node type or labels;
// only a spec that did not pass carries its timeline in system-err; a
// failure's message is the failure element's message attribute.
var junitConfig = reporters.JunitReportConfig{
	OmitTimelinesForSpecState: types.SpecStatePassed | types.SpecStateSkipped | types.SpecStatePending,
	OmitSpecLabels:            true,
	OmitLeafNodeType:          true,
}

// writeJUnit writes one testsuite per suite report into path. Suite-level
// nodes (BeforeSuite, ReportAfterSuite) have no spec text, so they are
// named by their node type, followed by their text if any.
func writeJUnit(reports []types.Report, path string) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), "junit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var parts []string
	for i, r := range reports {
		r.SpecReports = append(types.SpecReports(nil), r.SpecReports...)
		for j, s := range r.SpecReports {
			if s.LeafNodeType.Is(types.NodeTypesForSuiteLevelNodes) {
				r.SpecReports[j].LeafNodeText = fmt.Sprintf("[%s] %s", s.LeafNodeType, s.LeafNodeText)
			}
		}
		part := filepath.Join(dir, fmt.Sprintf("suite-%d.xml", i))
		if err := reporters.GenerateJUnitReportWithConfig(r, part, junitConfig); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		parts = append(parts, part)
	}
	if _, err := reporters.MergeAndCleanupJUnitReports(parts, path); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}
