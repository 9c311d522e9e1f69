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

// ForwardPlan is every forward pass that the Forward specs of one model
// need, by what it is for: the base batch, its tail changed (causality),
// its last row alone (batch independence), the base batch under
// GOMAXPROCS 2 and 1, and a batch on every kernel path with its reference
// on the active path ([1,2] tokens at full scale, where the pure-Go path
// runs at about 1 GOPS; the base batch and pass below that).
type ForwardPlan struct {
	Passes []model.Pass
	Names  []string // one per pass, for progress lines

	Batch         model.Batch
	Base          int
	CausalT       int // tokens after CausalT are changed in TailChanged
	TailChanged   int
	LastRow       int
	Procs         map[int]int // GOMAXPROCS → pass
	PathBatch     model.Batch
	PathReference int
	Paths         map[kernels.Path]int // kernel path → pass
}

// NewForwardPlan lays out the Forward specs' passes for cfg on a random
// [B,T] batch from seed; fullScale selects the [1,2] kernel-path batch.
func NewForwardPlan(cfg model.Config, B, T int, seed uint64, fullScale bool) *ForwardPlan {
	V := int(cfg.VocabSize)
	p := &ForwardPlan{Batch: RandomBatch(cfg, B, T, seed), Procs: map[int]int{}, Paths: map[kernels.Path]int{}}
	batch := p.Batch
	p.Base = p.add(fmt.Sprintf("[%d,%d]", B, T), model.Pass{Batch: batch})

	p.CausalT = T / 2
	changed := model.Batch{B: B, T: T, IDs: append([]int32(nil), batch.IDs...)}
	for b := range B {
		for j := p.CausalT + 1; j < T; j++ {
			changed.IDs[b*T+j] = int32((int(changed.IDs[b*T+j]) + 1 + j) % V)
		}
	}
	p.TailChanged = p.add("tail changed", model.Pass{Batch: changed})

	last := B - 1
	p.LastRow = p.add("last row alone", model.Pass{Batch: model.Batch{B: 1, T: T, IDs: batch.IDs[last*T : (last+1)*T]}})

	for _, procs := range []int{2, 1} {
		p.Procs[procs] = p.add(fmt.Sprintf("GOMAXPROCS=%d", procs), model.Pass{Batch: batch, Procs: procs})
	}

	p.PathBatch, p.PathReference = batch, p.Base
	if fullScale {
		p.PathBatch = model.Batch{B: 1, T: 2, IDs: batch.IDs[:2]}
		p.PathReference = p.add("[1,2] on the active path", model.Pass{Batch: p.PathBatch})
	}
	for _, path := range kernels.SupportedPaths() {
		p.Paths[path] = p.add(fmt.Sprintf("[%d,%d] on %s", p.PathBatch.B, p.PathBatch.T, path), model.Pass{Batch: p.PathBatch, Path: path})
	}
	return p
}

func (p *ForwardPlan) add(name string, pass model.Pass) int {
	p.Passes = append(p.Passes, pass)
	p.Names = append(p.Names, name)
	return len(p.Passes) - 1
}

func describeForward(s *Subject) {
	B, T := s.ForwardShape()
	V := int(s.Config.VocabSize)
	// Every forward pass of these specs is laid out here, while the spec
	// tree is built, and all of them run together when the first spec
	// needs a result (forwardRun).
	layout := NewForwardPlan(s.Config, B, T, s.Seed(), s.FullScale())
	plan := &forwardRun{s: s, plan: layout}
	base, causalT, last := layout.Base, layout.CausalT, B-1
	pathBatch, active := layout.PathBatch, kernels.ActivePath()

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
		Step("forward with the tail changed", func() { out = plan.result(layout.TailChanged) })
		for b := range B {
			prefix := func(x []float32) []float32 { return x[b*T*V : (b*T+causalT+1)*V] }
			diff := FirstBitDifference(prefix(out.Logits.Data), prefix(reference.Logits.Data), []int{causalT + 1, V})
			Expect(diff).To(BeNil(), "row %d: logits at [position, vocab] %v changed when only tokens after position %d changed", b, diff, causalT)
		}
	})

	It("keeps batch rows independent: a row's logits do not depend on the other rows", func() {
		reference := plan.result(base)
		var out *model.Output
		Step("forward on the last row alone", func() { out = plan.result(layout.LastRow) })
		diff := FirstBitDifference(out.Logits.Data, reference.Logits.Data[last*T*V:], []int{T, V})
		Expect(diff).To(BeNil(), "row %d alone differs from row %d in the batch at [position, vocab] %v", last, last, diff)
	})

	It("is deterministic across runs and across GOMAXPROCS=1 and 2", func() {
		reference := plan.result(base)
		for _, procs := range []int{2, 1} {
			var out *model.Output
			Step(fmt.Sprintf("forward with GOMAXPROCS=%d", procs), func() { out = plan.result(layout.Procs[procs]) })
			diff := FirstBitDifference(out.Logits.Data, reference.Logits.Data, reference.Logits.Shape)
			Expect(diff).To(BeNil(), "GOMAXPROCS=%d: logits differ from the first run at %v", procs, diff)
		}
	})

	It("gives bit-identical logits on every kernel path this CPU supports", func() {
		var reference *model.Output
		Step(fmt.Sprintf("forward [%d,%d] on the active path", pathBatch.B, pathBatch.T), func() { reference = plan.result(layout.PathReference) })
		for _, path := range kernels.SupportedPaths() {
			var out *model.Output
			Step(fmt.Sprintf("forward [%d,%d] on kernel path %s", pathBatch.B, pathBatch.T, path), func() { out = plan.result(layout.Paths[path]) })
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

// A forwardRun runs the passes of one subject's ForwardPlan. The specs
// lay the passes out while the spec tree is built; the first spec that
// needs a result runs all of them with model.ForwardPasses, so a
// layer-streamed model makes each layer once for every pass instead of
// once per pass, and later specs read their result. A run that failed
// fails every spec that reads it, with its error.
type forwardRun struct {
	s    *Subject
	plan *ForwardPlan

	ran  bool
	outs []*model.Output
	err  error
}

// result returns pass k's output, running the plan first if it has not
// run in this suite process.
func (r *forwardRun) result(k int) *model.Output {
	GinkgoHelper()
	if !r.ran {
		m := r.s.MustModel()
		p := r.plan
		Step(fmt.Sprintf("%d forward passes, layer by layer: %s", len(p.Passes), strings.Join(p.Names, ", ")), func() {
			r.outs, r.err = m.ForwardPasses(p.Passes, func(done, layers int) { Advance(done, layers, "layers") })
		})
		r.ran = true
	}
	Expect(r.err).NotTo(HaveOccurred())
	return r.outs[k]
}
