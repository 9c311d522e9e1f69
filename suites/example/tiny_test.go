package example_test

// The example of docs/adding-a-spec.md, on a tiny config so that make test
// runs it on every change and the doc cannot rot.

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance"
)

var _ = conformance.DescribeConfig("My team", func(p conformance.Preset) {
	It("has 2 layers and tied embeddings", func() {
		Expect(p.Config.NumHiddenLayers).To(Equal(int64(2)))
		Expect(p.Config.TieWordEmbeddings).To(BeTrue())
	})
}, conformance.ForConfigs{"tiny-mha-tied"})

var _ = conformance.DescribeSubject("My team", func(s *conformance.Subject) {
	It("predicts finite logits for the last position", func() {
		out := s.Forward(s.RandomBatch(1, 8))
		Expect(out.Logits).To(conformance.BeAllFinite("logits"))
		s.Report("logits shape", out.Logits.Shape)
	})
}, conformance.ForConfigs{"tiny-mha-tied"})
