// Package forward_test runs the forward pass of every selected model (shape,
// finiteness, causality, batch independence, determinism, bad input) and
// compares it with every golden case (label suite:golden); with -model-dir
// it also checks the checkpoint against known answers and -master-dir.
package forward_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

func TestForward(t *testing.T) {
	RegisterFailHandler(Fail)
	conformance.Prepare()
	RunSpecs(t, "Forward Suite")
}

var (
	_ = conformance.SuiteSetup()
	_ = conformance.DescribeForward()
	_ = conformance.DescribeGolden()
	_ = conformance.DescribeCheckpointNumerics()
	_ = conformance.ReportSummary()
)
