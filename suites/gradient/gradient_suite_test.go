// Package gradient_test checks gradient flow: finite, non-zero gradients for
// every parameter of every selected model, agreement with every golden
// case's gradients, and one SGD step lowering the loss.
package gradient_test

import (
	"flag"
	"testing"

	// The Ginkgo CLI runs a package as a Ginkgo suite, with its flags, only
	// when the package's tests import Ginkgo.
	_ "github.com/onsi/ginkgo/v2"

	"github.com/tritter-ai/conformance/conformance"
)

// config holds the harness options: flags after --, then CONFORMANCE_* variables.
var config = conformance.BindFlags(flag.CommandLine)

func TestGradient(t *testing.T) {
	conformance.Run(t, "Gradient Suite", config.WithEnv(), conformance.Gradient)
}
