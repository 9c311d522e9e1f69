// Package gradient_test checks gradient flow: finite, non-zero gradients for
// every parameter of every selected model, agreement with every golden
// case's gradients, and one SGD step lowering the loss.
package gradient_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

func TestGradient(t *testing.T) {
	RegisterFailHandler(Fail)
	conformance.Prepare()
	RunSpecs(t, "Gradient Suite")
}

var (
	_ = conformance.SuiteSetup()
	_ = conformance.DescribeGradient()
	_ = conformance.ReportSummary()
)
