// Package example_test is where a team's own specs go: each file records
// specs with the conformance package's Describe functions, and this
// bootstrap runs them on the selected configs, exactly as the built-in
// suites run theirs (docs/adding-a-spec.md).
package example_test

import (
	"flag"
	"testing"

	// The Ginkgo CLI runs a package as a Ginkgo suite, with its flags, only
	// when the package's tests import Ginkgo.
	_ "github.com/onsi/ginkgo/v2"

	"github.com/tritter-ai/conformance/conformance"
)

var config = conformance.BindFlags(flag.CommandLine)

func TestExample(t *testing.T) {
	conformance.Run(t, "Example Suite", config.WithEnv())
}
