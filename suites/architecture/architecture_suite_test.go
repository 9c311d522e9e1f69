// Package architecture_test checks every selected preset against the seed's
// architecture checklist and the official BitNet b1.58-2B-4T facts, and a
// -model-dir checkpoint's config.json and tensor headers.
package architecture_test

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

func TestArchitecture(t *testing.T) {
	conformance.Run(t, "Architecture Suite", config.WithEnv(), conformance.Architecture)
}
