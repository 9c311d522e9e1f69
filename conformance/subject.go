package conformance

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/memory"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/model"
)

// Subject is one model that model specs run on: a preset with random
// weights, or the -model-dir checkpoint.
type Subject struct {
	Name   string // preset name, or "checkpoint"
	Source string // preset file or checkpoint folder
	Config model.Config

	h *Harness
	// build builds the model, layer-streamed when streamed is true.
	build func(streamed bool) (*model.Model, error)
}

// FullScale reports whether the subject has presets.FullScaleParams
// parameters or more: its specs share one Ordered, Serial container.
func (s *Subject) FullScale() bool { return s.Config.ParamCount() >= presets.FullScaleParams }

func (s *Subject) labels() Labels { return modelLabels(s.Name, s.Config.ParamCount()) }

// Seed is the run's seed for random inputs (-seed).
func (s *Subject) Seed() uint64 { return s.h.config.Seed }

// ForwardShape is the seed's forward check: a batch of 2 sequences of 128
// tokens, shorter when max_position_embeddings is smaller.
func (s *Subject) ForwardShape() (B, T int) {
	return 2, min(128, int(s.Config.MaxPositionEmbeddings))
}

// RandomBatch returns deterministic token ids in [0, vocab) for B rows of
// T, from the run's seed.
func (s *Subject) RandomBatch(B, T int) model.Batch { return RandomBatch(s.Config, B, T, s.Seed()) }

// RandomBatch returns deterministic token ids in [0, V) for B rows of T.
func RandomBatch(cfg model.Config, B, T int, seed uint64) model.Batch {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(rng.IntN(int(cfg.VocabSize)))
	}
	return model.Batch{B: B, T: T, IDs: ids}
}

// Model returns the subject's model, building it on first use and sharing
// it with every other spec of the subject in this suite process: the
// harness keeps every small model and one full-scale model at a time.
// Before building, the memory plan decides between resident and
// layer-streamed layers; a model that cannot fit is an error naming the
// estimate, never an out-of-memory crash.
func (s *Subject) Model() (*model.Model, error) { return s.h.models.get(s) }

// MustModel is Model inside a spec: it narrates the build as a step and
// fails the spec on error.
func (s *Subject) MustModel() *model.Model {
	GinkgoHelper()
	var m *model.Model
	Step("building "+s.Name, func() {
		var err error
		m, err = s.Model()
		Expect(err).NotTo(HaveOccurred())
	})
	return m
}

// FreshModel builds a private, resident copy of the model, for specs that
// change weights.
func (s *Subject) FreshModel() (*model.Model, error) { return s.build(false) }

// Forward runs the shared model on a batch, as a narrated step, and fails
// the spec on error.
func (s *Subject) Forward(b model.Batch) *model.Output {
	GinkgoHelper()
	m := s.MustModel()
	var out *model.Output
	Step(fmt.Sprintf("forward [%d,%d]", b.B, b.T), func() {
		var err error
		out, err = m.Forward(b, model.ForwardOptions{})
		Expect(err).NotTo(HaveOccurred())
	})
	return out
}

// Report records a figure in the spec's report, shown on failure or with -v.
func (s *Subject) Report(name string, value any) {
	AddReportEntry(name, value, ReportEntryVisibilityFailureOrVerbose)
}

// MemoryPlan decides how the subject's model is held (resident or
// layer-streamed) from -memory-mode, the model's estimated peak memory and
// the memory available now.
func (s *Subject) MemoryPlan() (memory.Plan, error) {
	avail, err := memory.AvailableMemory()
	if err != nil {
		// Nothing to compare with (not Linux): trust the configured mode.
		avail = memory.Available{Bytes: 1<<63 - 1, Source: err.Error()}
	}
	B, T := s.ForwardShape()
	return memory.PlanFor(s.Name, s.Config, B, T, s.h.config.MemoryMode, avail)
}

// modelCache keeps every small model and at most one full-scale model, so
// that the full-scale specs of a suite share one build.
type modelCache struct {
	sync.Mutex
	small     map[string]*model.Model
	fullName  string
	fullModel *model.Model
}

func (c *modelCache) get(s *Subject) (*model.Model, error) {
	c.Lock()
	defer c.Unlock()
	full := s.FullScale()
	if !full {
		if m, ok := c.small[s.Name]; ok {
			return m, nil
		}
	} else if c.fullName == s.Name && c.fullModel != nil {
		return c.fullModel, nil
	}
	if full && c.fullModel != nil {
		c.fullModel, c.fullName = nil, ""
		runtime.GC()
		debug.FreeOSMemory()
	}
	plan, err := s.MemoryPlan()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	m, err := s.build(plan.Streamed)
	if err != nil {
		return nil, fmt.Errorf("%s: building the model: %w", s.Name, err)
	}
	if full {
		fmt.Fprintf(GinkgoWriter, "built %s (%s parameters) in %.1fs, %s\n", s.Name, units.Thousands(m.ParamCount()), time.Since(start).Seconds(), plan.Reason)
		AddReportEntry("memory mode", plan.Reason)
		c.fullModel, c.fullName = m, s.Name
		return m, nil
	}
	if c.small == nil {
		c.small = map[string]*model.Model{}
	}
	c.small[s.Name] = m
	return m, nil
}
