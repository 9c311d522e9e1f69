// Package instantiation_test builds every selected model and checks its
// parameter count, tensor inventory and memory.
package instantiation_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

func TestInstantiation(t *testing.T) {
	RegisterFailHandler(Fail)
	conformance.Prepare()
	RunSpecs(t, "Instantiation Suite")
}

var (
	_ = conformance.SuiteSetup()
	_ = conformance.DescribeInstantiation()
	_ = conformance.ReportSummary()
)
