package conformance

import (
	"fmt"
	"strings"

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
	batch := s.RandomBatch(B, T)
	// Every forward pass of these specs is registered here, while the spec
	// tree is built, and all of them run together when the first spec
	// needs a result (forwardPlan).
	plan := &forwardPlan{s: s}
	base := plan.add(fmt.Sprintf("[%d,%d]", B, T), model.Pass{Batch: batch})

	causalT := T / 2
	changed := model.Batch{B: B, T: T, IDs: append([]int32(nil), batch.IDs...)}
	for b := range B {
		for j := causalT + 1; j < T; j++ {
			changed.IDs[b*T+j] = int32((int(changed.IDs[b*T+j]) + 1 + j) % V)
		}
	}
	tailChanged := plan.add("tail changed", model.Pass{Batch: changed})

	last := B - 1
	lastRow := plan.add("last row alone", model.Pass{Batch: model.Batch{B: 1, T: T, IDs: batch.IDs[last*T : (last+1)*T]}})

	procsPasses := map[int]int{}
	for _, procs := range []int{2, 1} {
		procsPasses[procs] = plan.add(fmt.Sprintf("GOMAXPROCS=%d", procs), model.Pass{Batch: batch, Procs: procs})
	}

	// The integer kernels are exact, so every path must give the same
	// bits. At full scale the pure-Go reference path runs at about 1 GOPS,
	// so the comparison there uses [1,2] tokens, which still exercises
	// every layer of every path.
	pathBatch, pathReference := batch, base
	if s.FullScale() {
		pathBatch = model.Batch{B: 1, T: 2, IDs: batch.IDs[:2]}
		pathReference = plan.add("[1,2] on the active path", model.Pass{Batch: pathBatch})
	}
	active := kernels.ActivePath()
	pathPasses := map[kernels.Path]int{}
	for _, path := range kernels.SupportedPaths() {
		pathPasses[path] = plan.add(fmt.Sprintf("[%d,%d] on %s", pathBatch.B, pathBatch.T, path), model.Pass{Batch: pathBatch, Path: path})
	}

	var m *model.Model
	BeforeEach(func() {
		m = s.MustModel()
	})

	It(fmt.Sprintf("produces logits of shape [%d,%d,V]", B, T), func() {
		out := plan.result(base)
		Expect(out.Logits.Shape).To(Equal([]int{B, T, V}))
		Expect(out.Logits.Data).To(HaveLen(B * T * V))
	})

	It("produces only finite logits", func() {
		Expect(plan.result(base).Logits).To(BeAllFinite(s.Name + " logits"))
	})

	It("is causal: changing tokens after position t leaves logits at positions ≤ t bit-identical", func() {
		reference := plan.result(base)
		var out *model.Output
		Step("forward with the tail changed", func() { out = plan.result(tailChanged) })
		for b := range B {
			prefix := func(x []float32) []float32 { return x[b*T*V : (b*T+causalT+1)*V] }
			diff := FirstBitDifference(prefix(out.Logits.Data), prefix(reference.Logits.Data), []int{causalT + 1, V})
			Expect(diff).To(BeNil(), "row %d: logits at [position, vocab] %v changed when only tokens after position %d changed", b, diff, causalT)
		}
	})

	It("keeps batch rows independent: a row's logits do not depend on the other rows", func() {
		reference := plan.result(base)
		var out *model.Output
		Step("forward on the last row alone", func() { out = plan.result(lastRow) })
		diff := FirstBitDifference(out.Logits.Data, reference.Logits.Data[last*T*V:], []int{T, V})
		Expect(diff).To(BeNil(), "row %d alone differs from row %d in the batch at [position, vocab] %v", last, last, diff)
	})

	It("is deterministic across runs and across GOMAXPROCS=1 and 2", func() {
		reference := plan.result(base)
		for _, procs := range []int{2, 1} {
			var out *model.Output
			Step(fmt.Sprintf("forward with GOMAXPROCS=%d", procs), func() { out = plan.result(procsPasses[procs]) })
			diff := FirstBitDifference(out.Logits.Data, reference.Logits.Data, reference.Logits.Shape)
			Expect(diff).To(BeNil(), "GOMAXPROCS=%d: logits differ from the first run at %v", procs, diff)
		}
	})

	It("gives bit-identical logits on every kernel path this CPU supports", func() {
		var reference *model.Output
		Step(fmt.Sprintf("forward [%d,%d] on the active path", pathBatch.B, pathBatch.T), func() { reference = plan.result(pathReference) })
		for _, path := range kernels.SupportedPaths() {
			var out *model.Output
			Step(fmt.Sprintf("forward [%d,%d] on kernel path %s", pathBatch.B, pathBatch.T, path), func() { out = plan.result(pathPasses[path]) })
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

// A forwardPlan holds the forward passes that the specs of one subject
// need. The specs register their passes while the spec tree is built; the
// first spec that needs a result runs all of them with
// model.ForwardPasses, so a layer-streamed model makes each layer once for
// every pass instead of once per pass, and later specs read their result.
// A plan that failed fails every spec that reads it, with its error.
type forwardPlan struct {
	s      *Subject
	passes []model.Pass
	names  []string

	ran  bool
	outs []*model.Output
	err  error
}

// add registers a pass and returns its index for result.
func (p *forwardPlan) add(name string, pass model.Pass) int {
	p.passes = append(p.passes, pass)
	p.names = append(p.names, name)
	return len(p.passes) - 1
}

// result returns pass k's output, running the plan first if it has not
// run in this suite process.
func (p *forwardPlan) result(k int) *model.Output {
	GinkgoHelper()
	if !p.ran {
		m := p.s.MustModel()
		Step(fmt.Sprintf("%d forward passes, layer by layer: %s", len(p.passes), strings.Join(p.names, ", ")), func() {
			p.outs, p.err = m.ForwardPasses(p.passes, func(done, layers int) { Advance(done, layers, "layers") })
		})
		p.ran = true
	}
	Expect(p.err).NotTo(HaveOccurred())
	return p.outs[k]
}
