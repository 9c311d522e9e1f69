package conformance

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"fmt"
	"os"

	"github.com/tritter-ai/conformance/kernels"
)

// Prepare resolves everything that shapes the spec tree — the harness
// options and the golden cases — and reports the kernel path. Suites call
// it in their Test function, before RunSpecs. Problems are kept and become
// failing specs, so a bad option or file never passes silently.
func Prepare() {
	loadGoldenCases()
	fmt.Fprintf(os.Stdout, "conformance: kernel path %s (supported: %v)\n", kernels.ActivePath(), kernels.SupportedPaths())
	if err := kernels.EnvError(); err != nil {
		fmt.Fprintf(os.Stdout, "conformance: %v\n", err)
	}
}

// SuiteSetup registers the suite-level setup every suite shares: it records
// the kernel path in the report and fails the suite on a bad KERNELS_PATH.
func SuiteSetup() bool {
	return BeforeSuite(func() {
		AddReportEntry("kernel path", string(kernels.ActivePath()), ReportEntryVisibilityFailureOrVerbose)
		AddReportEntry("supported kernel paths", fmt.Sprint(kernels.SupportedPaths()), ReportEntryVisibilityFailureOrVerbose)
		Expect(kernels.EnvError()).NotTo(HaveOccurred())
	})
}
