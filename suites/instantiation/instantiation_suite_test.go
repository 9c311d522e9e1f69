// Package instantiation_test builds every selected model and checks its
// parameter count, tensor inventory and memory.
package instantiation_test

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

func TestInstantiation(t *testing.T) {
	conformance.Run(t, "Instantiation Suite", config.WithEnv(), conformance.Instantiation)
}
