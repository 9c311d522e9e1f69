// Package kernels_test runs the parity specs of package kernels: every SIMD
// path the CPU supports against the pure-Go reference loop, bit-exact.
// They are plain Ginkgo specs; the harness adds the kernel-path check, the
// verdict and the JUnit file, and accepts the harness options like every
// suite, though no kernel spec depends on a config.
package kernels_test

import (
	"flag"
	"testing"

	// The Ginkgo CLI runs a package as a Ginkgo suite, with its flags, only
	// when the package's tests import Ginkgo.
	_ "github.com/onsi/ginkgo/v2"

	"github.com/tritter-ai/conformance/conformance"
)

var config = conformance.BindFlags(flag.CommandLine)

func TestKernels(t *testing.T) {
	conformance.Run(t, "Kernels Suite", config.WithEnv())
}
