package example_test

// Specs for Tritter-7B in one file: the config checks take microseconds
// (cost:config), the model check builds the 6.2B-parameter model once and
// shares it with every other 7B spec of the suite (cost:full).
//
//	go tool ginkgo ./suites/example -- -configs=tritter-7b
//	go tool ginkgo --label-filter='!full-scale' ./suites/example -- -configs=tritter-7b

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

var _ = conformance.DescribeConfig("Tritter-7B", func(p conformance.Preset) {
	It("has 32 layers of width 4096", func() {
		Expect(p.Config.NumHiddenLayers).To(Equal(int64(32)))
		Expect(p.Config.HiddenSize).To(Equal(int64(4096)))
	})
	It("has 8 KV heads for 32 query heads (GQA 4:1)", func() {
		Expect(p.Config.NumAttentionHeads / p.Config.NumKeyValueHeads).To(Equal(int64(4)))
	})
}, conformance.ForConfigs{"tritter-7b"})

var _ = conformance.DescribeSubject("Tritter-7B", func(s *conformance.Subject) {
	It("has an untied lm_head of its own", func() {
		m := s.MustModel()
		Expect(m.ParamCount()).To(Equal(s.Config.ParamCount()))
		Expect(s.Config.TieWordEmbeddings).To(BeFalse())
	})
}, conformance.ForConfigs{"tritter-7b"})
