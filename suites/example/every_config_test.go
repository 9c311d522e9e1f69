package example_test

// A team spec with no ForConfigs runs on every selected config and on a
// -model-dir checkpoint. It reads only the config, so it costs nothing
// even on a 70B subject, and it gives this suite something to validate
// whatever the run selects: a suite that validates nothing fails the run.

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

var _ = conformance.DescribeSubject("My team", func(s *conformance.Subject) {
	It("shares each key/value head among the same number of query heads", func() {
		heads, kv := s.Config.NumAttentionHeads, s.Config.NumKeyValueHeads
		Expect(kv).To(BeNumerically(">", 0), "num_key_value_heads")
		Expect(heads%kv).To(BeZero(), "%d query heads over %d key/value heads", heads, kv)
	})
})
