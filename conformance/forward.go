package conformance

import (
	"fmt"
	"runtime"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// Forward are the forward-shape specs of every subject: output shape,
// finiteness, causality, batch independence, determinism and errors on
// bad input.
var Forward = func() *Specs {
	var s Specs
	s.DescribeSubject("Forward", describeForward, SuiteLabel("forward"))
	return &s
}()

func describeForward(s *Subject) {
	B, T := s.ForwardShape()
	V := int(s.Config.VocabSize)
	var m *model.Model
	var batch model.Batch
	// base is the forward pass on batch, computed once and shared by the
	// specs of this subject.
	var base *model.Output
	BeforeEach(func() {
		m = s.MustModel()
		batch = s.RandomBatch(B, T)
		if base == nil {
			base = s.Forward(batch)
		}
	})

	It(fmt.Sprintf("produces logits of shape [%d,%d,V]", B, T), func() {
		Expect(base.Logits.Shape).To(Equal([]int{B, T, V}))
		Expect(base.Logits.Data).To(HaveLen(B * T * V))
	})

	It("produces only finite logits", func() {
		Expect(base.Logits).To(BeAllFinite(s.Name + " logits"))
	})

	It("is causal: changing tokens after position t leaves logits at positions ≤ t bit-identical", func() {
		t := T / 2
		changed := model.Batch{B: B, T: T, IDs: append([]int32(nil), batch.IDs...)}
		for b := range B {
			for j := t + 1; j < T; j++ {
				changed.IDs[b*T+j] = int32((int(changed.IDs[b*T+j]) + 1 + j) % V)
			}
		}
		var out *model.Output
		Step("forward with the tail changed", func() {
			var err error
			out, err = m.Forward(changed, model.ForwardOptions{})
			Expect(err).NotTo(HaveOccurred())
		})
		for b := range B {
			prefix := func(x []float32) []float32 { return x[b*T*V : (b*T+t+1)*V] }
			diff := FirstBitDifference(prefix(out.Logits.Data), prefix(base.Logits.Data), []int{t + 1, V})
			Expect(diff).To(BeNil(), "row %d: logits at [position, vocab] %v changed when only tokens after position %d changed", b, diff, t)
		}
	})

	It("keeps batch rows independent: a row's logits do not depend on the other rows", func() {
		last := B - 1
		alone := model.Batch{B: 1, T: T, IDs: batch.IDs[last*T : (last+1)*T]}
		var out *model.Output
		Step("forward on the last row alone", func() {
			var err error
			out, err = m.Forward(alone, model.ForwardOptions{})
			Expect(err).NotTo(HaveOccurred())
		})
		diff := FirstBitDifference(out.Logits.Data, base.Logits.Data[last*T*V:], []int{T, V})
		Expect(diff).To(BeNil(), "row %d alone differs from row %d in the batch at [position, vocab] %v", last, last, diff)
	})

	It("is deterministic across runs and across GOMAXPROCS=1 and 2", func() {
		for _, procs := range []int{2, 1} {
			var out *model.Output
			Step(fmt.Sprintf("forward with GOMAXPROCS=%d", procs), func() {
				previous := runtime.GOMAXPROCS(procs)
				defer runtime.GOMAXPROCS(previous)
				var err error
				out, err = m.Forward(batch, model.ForwardOptions{})
				Expect(err).NotTo(HaveOccurred())
			})
			diff := FirstBitDifference(out.Logits.Data, base.Logits.Data, base.Logits.Shape)
			Expect(diff).To(BeNil(), "GOMAXPROCS=%d: logits differ from the first run at %v", procs, diff)
		}
	})

	It("gives bit-identical logits on every kernel path this CPU supports", func() {
		// The integer kernels are exact, so every path must give the
		// same bits. At full scale the pure-Go reference path runs at
		// about 1 GOPS, so the comparison there uses [1,2] tokens, which
		// still exercises every layer of every path.
		pathBatch, reference := batch, base
		if s.FullScale() {
			pathBatch = model.Batch{B: 1, T: 2, IDs: batch.IDs[:2]}
			Step("forward [1,2] on the active path", func() {
				var err error
				reference, err = m.Forward(pathBatch, model.ForwardOptions{})
				Expect(err).NotTo(HaveOccurred())
			})
		}
		active := kernels.ActivePath()
		defer func() { Expect(kernels.SetPath(active)).To(Succeed()) }()
		for _, path := range kernels.SupportedPaths() {
			Expect(kernels.SetPath(path)).To(Succeed())
			var out *model.Output
			Step(fmt.Sprintf("forward [%d,%d] on kernel path %s", pathBatch.B, pathBatch.T, path), func() {
				var err error
				out, err = m.Forward(pathBatch, model.ForwardOptions{})
				Expect(err).NotTo(HaveOccurred())
			})
			diff := FirstBitDifference(out.Logits.Data, reference.Logits.Data, reference.Logits.Shape)
			Expect(diff).To(BeNil(), "kernel path %s: logits differ from path %s at %v", path, active, diff)
		}
	})

	It("rejects a token id outside the vocabulary, naming the value and the limit", func() {
		bad := model.Batch{B: 1, T: 2, IDs: []int32{0, int32(V + 7)}}
		_, err := m.Forward(bad, model.ForwardOptions{})
		Expect(err).To(MatchError(And(ContainSubstring(fmt.Sprint(V+7)), ContainSubstring(fmt.Sprint(V)))))
		_, err = m.Forward(model.Batch{B: 1, T: 1, IDs: []int32{-1}}, model.ForwardOptions{})
		Expect(err).To(MatchError(ContainSubstring("-1")))
	})

	It("rejects a sequence longer than max_position_embeddings, naming both", func() {
		// The model must refuse before computing anything, so even
		// 131,073 tokens at 7B cost only the id slice.
		maxPos := int(s.Config.MaxPositionEmbeddings)
		_, err := m.Forward(model.Batch{B: 1, T: maxPos + 1, IDs: make([]int32, maxPos+1)}, model.ForwardOptions{})
		Expect(err).To(MatchError(And(ContainSubstring(fmt.Sprint(maxPos+1)), ContainSubstring(fmt.Sprint(maxPos)))))
	})

	It("rejects an empty batch", func() {
		_, err := m.Forward(model.Batch{}, model.ForwardOptions{})
		Expect(err).To(MatchError(ContainSubstring("empty")))
	})
}
