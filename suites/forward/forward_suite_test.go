// Package forward_test runs the forward pass of every selected model (shape,
// finiteness, causality, batch independence, determinism, bad input) and
// compares it with every golden case (label suite:golden); with -model-dir
// it also checks the checkpoint against known answers and -master-dir.
package forward_test

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

func TestForward(t *testing.T) {
	conformance.Run(t, "Forward Suite", config.WithEnv(), conformance.Forward, conformance.GoldenNumerics, conformance.CheckpointNumerics)
}
