package conformance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/conformance/report"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// Preset is a named model configuration (presets.Preset).
type Preset = presets.Preset

// Harness is one run: a TestConfig resolved into the presets, model
// subjects and golden cases the specs run on, with the caches the specs
// share (models, golden evaluations) and the numerics records. Problems
// with the config are kept and become failing specs, so a bad option never
// passes silently.
type Harness struct {
	config   TestConfig
	compute  model.Compute
	presets  []Preset
	subjects []*Subject
	problems []error

	goldenOnce  sync.Once
	goldenCases []golden.Loaded
	goldenErr   error

	models modelCache

	mu          sync.Mutex
	evaluations map[string]*evaluation // by case path
	records     []numerics.CaseRecord
}

// NewHarness resolves cfg: relative paths, the selected presets and the
// model subjects (the presets, or the -model-dir checkpoint instead).
func NewHarness(cfg TestConfig) *Harness {
	h := &Harness{config: cfg.resolvePaths(), evaluations: map[string]*evaluation{}}
	var err error
	if h.compute, err = h.config.goldenCompute(); err != nil {
		h.problems = append(h.problems, err)
	}
	if h.presets, err = presets.Select(h.config.Configs, h.config.ConfigDirs...); err != nil {
		h.problems = append(h.problems, err)
	}
	if h.config.ModelDir != "" {
		s, err := h.checkpointSubject(h.config.ModelDir)
		if err != nil {
			h.problems = append(h.problems, err)
		} else {
			h.subjects = []*Subject{s}
		}
		return h
	}
	for _, p := range h.presets {
		h.subjects = append(h.subjects, h.presetSubject(p))
	}
	return h
}

func (h *Harness) presetSubject(p Preset) *Subject {
	cfg, seed := p.Config, h.config.Seed
	return &Subject{Name: p.Name, Source: p.Source, Config: cfg, h: h,
		build: func(streamed bool) (*model.Model, error) {
			if err := incompatible(p.Source, presets.Problems(p)); err != nil {
				return nil, err
			}
			return model.New(cfg, model.Options{Seed: seed, Streamed: streamed})
		}}
}

// incompatible refuses a config that declares an architecture BitNet
// b1.58 lacks (presets.Problems: invalid sizes, and keys such as
// use_qk_norm that the model does not read but HF would act on), so no
// model spec runs on something that is not BitNet b1.58.
func incompatible(source string, problems []model.ConfigProblem) error {
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return fmt.Errorf("%s is not a BitNet b1.58 config:\n%w", source, errors.Join(errs...))
}

func (h *Harness) checkpointSubject(dir string) (*Subject, error) {
	cfg, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	keys, err := presets.ReadConfigKeys(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	problems := presets.Problems(Preset{Name: "checkpoint", Source: dir, Config: cfg, Keys: keys})
	return &Subject{Name: "checkpoint", Source: dir, Config: cfg, h: h,
		build: func(streamed bool) (*model.Model, error) {
			if err := incompatible(filepath.Join(dir, "config.json"), problems); err != nil {
				return nil, err
			}
			if streamed {
				return checkpoint.Load(dir, checkpoint.Streamed())
			}
			return checkpoint.Load(dir)
		}}, nil
}

// Config returns the run's resolved TestConfig.
func (h *Harness) Config() TestConfig { return h.config }

// Presets returns the selected presets, in the order named.
func (h *Harness) Presets() []Preset { return h.presets }

// Subjects returns the model subjects: the selected presets, or the
// -model-dir checkpoint.
func (h *Harness) Subjects() []*Subject { return h.subjects }

// CheckpointPreset is the preset a -model-dir checkpoint is compared with:
// the first preset named by -configs, or the reference architecture when
// -configs is not given.
func (h *Harness) CheckpointPreset() (Preset, error) {
	if len(h.config.Configs) > 0 && len(h.presets) > 0 {
		return h.presets[0], nil
	}
	return presets.Reference(presets.ReferenceName)
}

// Run runs a suite: it builds a harness from cfg, registers the
// suite-level nodes (the kernel path, the verdict, the numerics report and
// the JUnit file), every set of specs given and every spec recorded with
// the package-level Describe functions, then calls Ginkgo's RunSpecs with
// Ginkgo's Fail as the fail handler. A suite's Test function is one call:
//
//	func TestForward(t *testing.T) {
//		conformance.Run(t, "Forward Suite", config.WithEnv(), conformance.Forward, conformance.GoldenNumerics)
//	}
func Run(t *testing.T, description string, cfg TestConfig, sets ...*Specs) bool {
	RegisterFailHandler(Fail)
	h := NewHarness(cfg)
	suiteConfig, reporterConfig := GinkgoConfiguration()
	fmt.Fprintf(os.Stdout, "conformance: kernel path %s (supported: %v)\n", kernels.ActivePath(), kernels.SupportedPaths())
	if err := kernels.EnvError(); err != nil {
		fmt.Fprintf(os.Stdout, "conformance: %v\n", err)
	}
	// The harness writes the JUnit file itself, with the names cmd/summary
	// gives (report.JUnitName), instead of Ginkgo's default names.
	junitPath := reporterConfig.JUnitReport
	reporterConfig.JUnitReport = ""
	reportsDir := h.reportsDir(reporterConfig, junitPath)

	BeforeSuite(func() {
		AddReportEntry("kernel path", string(kernels.ActivePath()), ReportEntryVisibilityFailureOrVerbose)
		AddReportEntry("supported kernel paths", fmt.Sprint(kernels.SupportedPaths()), ReportEntryVisibilityFailureOrVerbose)
		Expect(kernels.EnvError()).NotTo(HaveOccurred())
	})
	if len(h.problems) > 0 {
		It("resolves the harness options", Label(LabelCostConfig), func() { Fail(errors.Join(h.problems...).Error()) })
	}
	h.register(append(sets, &teamSpecs))
	ReportAfterSuite("conformance verdict", func(r Report) { h.verdict(r, reporterConfig) })
	ReportAfterSuite("numerics report", func(r Report) { h.writeNumerics(reportsDir, r) })
	if junitPath != "" {
		ReportAfterSuite(report.JUnitNodeText, func(r Report) {
			if err := report.WriteJUnit([]types.Report{r}, junitPath); err != nil {
				Fail(err.Error())
			}
		})
	}
	return RunSpecs(t, description, suiteConfig, reporterConfig)
}

// reportsDir is TestConfig.ReportsDir, else the folder of a report Ginkgo
// was asked for (the CLI makes those paths absolute under --output-dir),
// else ./reports.
func (h *Harness) reportsDir(rc types.ReporterConfig, junitPath string) string {
	if h.config.ReportsDir != "" {
		return h.config.ReportsDir
	}
	for _, p := range []string{rc.JSONReport, junitPath} {
		if p != "" {
			return filepath.Dir(p)
		}
	}
	return "reports"
}

// verdict prints the suite's result line, and fails the suite when it
// validated nothing (unless -allow-unvalidated) or when two specs share a
// JUnit name. With -v it prints the suite's summary instead of one line.
func (h *Harness) verdict(r Report, rc types.ReporterConfig) {
	unvalidated := report.Unvalidated(r.SuiteDescription, h.config.Configs, r)
	verdict := report.SuiteVerdict(r, unvalidated, h.config.AllowUnvalidated)
	if rc.Verbose || rc.VeryVerbose {
		preset, _ := h.CheckpointPreset()
		report.WriteSummary(os.Stdout, []types.Report{r}, report.Run{Presets: h.presets, ModelDir: h.config.ModelDir, CheckpointPreset: preset, Requested: h.config.Configs, AllowUnvalidated: h.config.AllowUnvalidated})
	} else {
		fmt.Fprintf(os.Stdout, "\n%s\n", report.ResultLine(r, verdict))
		for _, line := range unvalidated {
			fmt.Fprintln(os.Stdout, line)
		}
	}
	if dups := report.DuplicateNames(r); len(dups) > 0 {
		Fail(fmt.Sprintf("%s: specs share a JUnit test-case name, which CI history keys on; give each a distinct text:\n%v", r.SuiteDescription, dups))
	}
	if len(unvalidated) > 0 && !h.config.AllowUnvalidated {
		Fail(fmt.Sprintf("%s (pass -allow-unvalidated to filter on purpose)", unvalidated[0]))
	}
}
