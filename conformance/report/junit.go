package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"
)

// The JUnit file, shaped for how CI systems show it. A test case is named
// by JUnitName: its spec text, which holds the config or golden case
// ("Forward tiny-mha-tied is causal: ..."), without the leaf node type or
// labels, so that relabelling a spec keeps its history. Only a spec that
// did not pass carries its timeline in system-err; a failure's message is
// the failure element's message attribute. The suites write this file for
// Ginkgo's --junit-report, and cmd/summary -junit writes the same from the
// JSON report, so both routes give the same names.
var junitConfig = reporters.JunitReportConfig{
	OmitTimelinesForSpecState: types.SpecStatePassed | types.SpecStateSkipped | types.SpecStatePending,
	OmitSpecLabels:            true,
	OmitLeafNodeType:          true,
}

// JUnitNodeText names the ReportAfterSuite node that writes a suite's JUnit
// file. That node cannot be in the file it writes, so WriteJUnit leaves it
// out of every file, and both routes list the same test cases.
const JUnitNodeText = "JUnit report"

// JUnitName is a spec's test-case name in the JUnit file: its full text,
// or for a suite-level node (BeforeSuite, ReportAfterSuite), which has no
// spec text, its node type and text.
func JUnitName(s types.SpecReport) string {
	if s.LeafNodeType.Is(types.NodeTypesForSuiteLevelNodes) {
		return strings.TrimSpace(fmt.Sprintf("[%s] %s", s.LeafNodeType, s.LeafNodeText))
	}
	return s.FullText()
}

// WriteJUnit writes one testsuite per suite report into path.
func WriteJUnit(reports []types.Report, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), "junit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var parts []string
	for i, r := range reports {
		var specs types.SpecReports
		for _, s := range r.SpecReports {
			if s.LeafNodeType == types.NodeTypeReportAfterSuite && s.LeafNodeText == JUnitNodeText {
				continue
			}
			if s.LeafNodeType.Is(types.NodeTypesForSuiteLevelNodes) {
				s.LeafNodeText = JUnitName(s)
			}
			specs = append(specs, s)
		}
		r.SpecReports = specs
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
