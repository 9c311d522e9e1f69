package conformance

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// Subject is one model that the instantiation, forward and gradient specs
// run on: a preset with random weights, or the -model-dir checkpoint.
type Subject struct {
	Name      string // preset name, or "checkpoint"
	Source    string // preset file or checkpoint folder
	Config    model.Config
	FullScale bool
	// build builds the model, layer-streamed when streamed is true.
	build func(streamed bool) (*model.Model, error)
}

// Labels returns the subject's labels: config:<name>, plus full-scale and
// huge by size.
func (s Subject) Labels() Labels {
	return Label(append([]string{"config:" + s.Name}, sizeLabels(s.Config.ParamCount())...)...)
}

// Decorators returns the container decorators for the subject's specs. A
// full-scale subject's specs are Ordered (they run together, so one model
// serves them all) and Serial (ginkgo -p never holds two at once).
func (s Subject) Decorators() []any {
	d := []any{s.Labels()}
	if s.FullScale {
		d = append(d, Ordered, ContinueOnFailure, Serial)
	}
	return d
}

// Subjects resolves the harness options into the models to test. With
// -model-dir the checkpoint is the only subject.
func Subjects() ([]Subject, error) {
	opts := Flags.Resolved()
	if opts.ModelDir != "" {
		dir := opts.ModelDir
		cfg, err := model.LoadConfig(dir + "/config.json")
		if err != nil {
			return nil, err
		}
		return []Subject{{
			Name: "checkpoint", Source: dir, Config: cfg,
			FullScale: cfg.ParamCount() >= FullScaleParams,
			build: func(streamed bool) (*model.Model, error) {
				if streamed {
					return checkpoint.Load(dir, checkpoint.Streamed())
				}
				return checkpoint.Load(dir)
			},
		}}, nil
	}
	presets, err := opts.Select()
	if err != nil {
		return nil, err
	}
	subjects := make([]Subject, len(presets))
	for i, p := range presets {
		cfg := p.Config
		subjects[i] = Subject{
			Name: p.Name, Source: p.Source, Config: cfg, FullScale: p.FullScale(),
			build: func(streamed bool) (*model.Model, error) {
				return model.New(cfg, model.Options{Seed: opts.Seed, Streamed: streamed})
			},
		}
	}
	return subjects, nil
}

// subjectsOrFail resolves the subjects; on error it registers one failing
// spec carrying the message.
func subjectsOrFail() ([]Subject, bool) {
	subjects, err := Subjects()
	if err != nil {
		It("resolves the harness options", func() { Fail(err.Error()) })
		return nil, false
	}
	return subjects, true
}

// The model cache keeps every small model and at most one full-scale model
// per suite process, so the full-scale specs of a suite share one build.
var cache struct {
	sync.Mutex
	small     map[string]*model.Model
	fullName  string
	fullModel *model.Model
}

// Model returns the subject's model, building it on first use. Building a
// full-scale model first drops any other full-scale model. Before building,
// the memory plan (memory.go) decides between resident and layer-streamed
// layers; a model that cannot fit is an error, never an out-of-memory
// crash.
func (s Subject) Model() (*model.Model, error) {
	cache.Lock()
	defer cache.Unlock()
	if !s.FullScale {
		if m, ok := cache.small[s.Name]; ok {
			return m, nil
		}
	} else if cache.fullName == s.Name && cache.fullModel != nil {
		return cache.fullModel, nil
	}
	if s.FullScale && cache.fullModel != nil {
		cache.fullModel, cache.fullName = nil, ""
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
	if s.FullScale {
		fmt.Fprintf(GinkgoWriter, "built %s (%s parameters) in %.1fs, %s\n", s.Name, Thousands(m.ParamCount()), time.Since(start).Seconds(), plan.Reason)
		AddReportEntry("memory mode", plan.Reason)
		cache.fullModel, cache.fullName = m, s.Name
	} else {
		if cache.small == nil {
			cache.small = map[string]*model.Model{}
		}
		cache.small[s.Name] = m
	}
	return m, nil
}

// MemoryPlan decides how the subject's model is held (resident or
// layer-streamed) from -memory-mode, the model's estimated peak memory and
// the memory available now.
func (s Subject) MemoryPlan() (MemoryPlan, error) {
	avail, err := AvailableMemory()
	if err != nil {
		// Nothing to compare with (not Linux): trust the configured mode.
		avail = Available{Bytes: 1<<63 - 1, Source: err.Error()}
	}
	B, T := ForwardShape[0], min(ForwardShape[1], int(s.Config.MaxPositionEmbeddings))
	return PlanMemory(s.Name, s.Config, B, T, Flags.Resolved().MemoryMode, avail)
}
