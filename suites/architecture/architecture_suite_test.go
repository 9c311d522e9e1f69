// Package architecture_test checks every selected preset against the seed's
// architecture checklist and the official BitNet b1.58-2B-4T facts, and a
// -model-dir checkpoint's config.json and tensor headers.
package architecture_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

func TestArchitecture(t *testing.T) {
	RegisterFailHandler(Fail)
	conformance.Prepare()
	RunSpecs(t, "Architecture Suite")
}

var (
	_ = conformance.SuiteSetup()
	_ = conformance.DescribeArchitecture()
	_ = conformance.ReportSummary()
)
