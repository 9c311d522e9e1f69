// Package gguf_test checks a bitnet.cpp GGUF file: with -gguf and
// -model-dir, the user's file against the HF checkpoint it was converted
// from (metadata, tensors, every code and scale, layout, zero tensors,
// logits) and what bitnet.cpp will compute from it; without -gguf, a GGUF
// the suite writes itself from a random checkpoint.
package gguf_test

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

func TestGGUF(t *testing.T) {
	conformance.Run(t, "GGUF Suite", config.WithEnv(), conformance.GGUF)
}
