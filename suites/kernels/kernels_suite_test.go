package kernels_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

// TestKernels runs the parity specs of package kernels: every SIMD path the
// CPU supports against the pure-Go reference loop, bit-exact. It accepts
// the harness options like every suite, though no kernel spec depends on a
// preset.
func TestKernels(t *testing.T) {
	RegisterFailHandler(Fail)
	conformance.Prepare()
	RunSpecs(t, "Kernels Suite")
}

// SuiteSetup fails the suite on a bad KERNELS_PATH and records the active
// and supported paths in the report.
var _ = conformance.SuiteSetup()
