// Package conformance is the BitNet b1.58 conformance harness's spec layer:
// one TestConfig value holds everything a run needs, a Harness built from
// it resolves the configs, models and golden cases, and the Describe
// functions record specs that Run registers with Ginkgo once per
// selected config or golden case. The built-in suites under suites/ are
// made of the same calls a team uses for its own specs (docs/adding-a-spec.md).
//
// The Ginkgo-free parts live below it: presets (configs and published
// facts), numerics (golden checks and their bounds), memory (resident or
// layer-streamed), knownanswer and report (numerics report, verdicts,
// summary, JUnit).
package conformance

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tritter-ai/conformance/conformance/memory"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/model"
)

// TestConfig is everything a run needs. NewTestConfig gives the defaults;
// a suite's bootstrap fills it from the command line (BindFlags) and the
// environment (WithEnv). Nothing else in the harness reads flags or the
// environment. Relative paths resolve from the working directory, or else
// from the root of the module being tested (the nearest go.mod above the
// working directory), because ginkgo runs each suite in its package folder.
type TestConfig struct {
	// Configs names the presets to run (-configs=a,b, CONFORMANCE_CONFIGS).
	// Empty means presets.Defaults.
	Configs []string
	// ConfigDirs are folders of extra preset JSON files (-config-dir,
	// CONFORMANCE_CONFIG_DIR). A file named like a built-in preset
	// replaces it.
	ConfigDirs []string
	// ModelDir is an HF checkpoint folder to check and run (-model-dir,
	// CONFORMANCE_MODEL_DIR). It replaces the presets as the subject of the
	// model specs. Empty means random initialisation only.
	ModelDir string
	// MasterDir is the online (bf16/f32 master) checkpoint that the
	// offline ModelDir was converted from (-master-dir,
	// CONFORMANCE_MASTER_DIR); the forward suite then checks the
	// conversion code by code, scale by scale and on logits.
	MasterDir string
	// GGUFPath is a bitnet.cpp GGUF file to check against the -model-dir
	// checkpoint it was converted from (-gguf, CONFORMANCE_GGUF); the gguf
	// suite then checks it key by key, code by code and on logits. Empty
	// means the suite checks a GGUF it writes itself.
	GGUFPath string
	// GoldenDirs are extra golden-case folders (-golden-dir=a,b,
	// CONFORMANCE_GOLDEN_DIR). The committed cases, built into the binary,
	// always run.
	GoldenDirs []string
	// GoldenCompute is the path the golden checks run the model on
	// (-golden-compute, CONFORMANCE_GOLDEN_COMPUTE): "kernels" (the
	// integer kernels, the default), "float" (torch's float32
	// formulation) or "float64".
	GoldenCompute string
	// MemoryMode is how models hold their decoder layers (-memory-mode,
	// CONFORMANCE_MEMORY_MODE): memory.ModeAuto (the default),
	// memory.ModeResident or memory.ModeStreamed.
	MemoryMode string
	// Seed seeds random initialisation and random inputs (-seed). Default 1.
	Seed uint64
	// ReportsDir is where the numerics report goes (-reports-dir,
	// CONFORMANCE_REPORTS_DIR). Empty
	// means the folder of Ginkgo's --json-report or --junit-report (which
	// --output-dir decides), else ./reports of the working directory.
	ReportsDir string
	// AllowUnvalidated reports a suite or config that validated nothing
	// (every spec filtered out or skipped) without failing the run
	// (-allow-unvalidated), for people who filter on purpose.
	AllowUnvalidated bool
}

// NewTestConfig returns the defaults: the default presets, the kernels
// compute path, automatic memory mode, seed 1.
func NewTestConfig() TestConfig {
	return TestConfig{GoldenCompute: "kernels", MemoryMode: memory.ModeAuto, Seed: 1}
}

// BindFlags binds a new TestConfig with the defaults to fs, the standard
// library's way: the returned value is filled when fs is parsed (go test
// parses flag.CommandLine before it runs the Test functions). The suites
// call it once, at package level:
//
//	var config = conformance.BindFlags(flag.CommandLine)
func BindFlags(fs *flag.FlagSet) *TestConfig {
	c := NewTestConfig()
	fs.Var((*listFlag)(&c.Configs), "configs", "comma-separated presets to run (env CONFORMANCE_CONFIGS; default "+strings.Join(presets.Defaults, ",")+")")
	fs.Var((*listFlag)(&c.ConfigDirs), "config-dir", "comma-separated folders of extra preset config.json files (env CONFORMANCE_CONFIG_DIR)")
	fs.StringVar(&c.ModelDir, "model-dir", "", "HF BitNet checkpoint folder to check (env CONFORMANCE_MODEL_DIR)")
	fs.StringVar(&c.MasterDir, "master-dir", "", "online master checkpoint folder that the offline -model-dir was converted from (env CONFORMANCE_MASTER_DIR)")
	fs.StringVar(&c.GGUFPath, "gguf", "", "bitnet.cpp GGUF file converted from -model-dir, to check (env CONFORMANCE_GGUF)")
	fs.Var((*listFlag)(&c.GoldenDirs), "golden-dir", "comma-separated extra golden-case folders (env CONFORMANCE_GOLDEN_DIR)")
	fs.StringVar(&c.GoldenCompute, "golden-compute", c.GoldenCompute, "compute path of the golden checks: kernels, float or float64 (env CONFORMANCE_GOLDEN_COMPUTE)")
	fs.StringVar(&c.MemoryMode, "memory-mode", c.MemoryMode, "how models hold their layers: auto, resident or streamed (env CONFORMANCE_MEMORY_MODE)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed for random initialisation and inputs")
	fs.StringVar(&c.ReportsDir, "reports-dir", "", "folder for the numerics report (env CONFORMANCE_REPORTS_DIR; default: beside Ginkgo's reports, else ./reports)")
	fs.BoolVar(&c.AllowUnvalidated, "allow-unvalidated", false, "report a suite or config that validated nothing without failing")
	return &c
}

// WithEnv returns c with every field that is still at its default filled
// from its CONFORMANCE_* environment variable, where that is set.
func (c TestConfig) WithEnv() TestConfig {
	def := NewTestConfig()
	list := func(field *[]string, env string) {
		if len(*field) == 0 {
			*field = splitList(os.Getenv(env))
		}
	}
	text := func(field *string, defaultValue, env string) {
		if v := os.Getenv(env); *field == defaultValue && v != "" {
			*field = v
		}
	}
	list(&c.Configs, "CONFORMANCE_CONFIGS")
	list(&c.ConfigDirs, "CONFORMANCE_CONFIG_DIR")
	list(&c.GoldenDirs, "CONFORMANCE_GOLDEN_DIR")
	text(&c.ModelDir, "", "CONFORMANCE_MODEL_DIR")
	text(&c.MasterDir, "", "CONFORMANCE_MASTER_DIR")
	text(&c.GGUFPath, "", "CONFORMANCE_GGUF")
	text(&c.GoldenCompute, def.GoldenCompute, "CONFORMANCE_GOLDEN_COMPUTE")
	text(&c.MemoryMode, def.MemoryMode, "CONFORMANCE_MEMORY_MODE")
	text(&c.ReportsDir, "", "CONFORMANCE_REPORTS_DIR")
	return c
}

// goldenCompute maps GoldenCompute to a model compute path.
func (c TestConfig) goldenCompute() (model.Compute, error) {
	switch c.GoldenCompute {
	case "", "kernels":
		return model.ComputeKernels, nil
	case "float":
		return model.ComputeFloat, nil
	case "float64":
		return model.ComputeFloat64, nil
	}
	return 0, fmt.Errorf("-golden-compute: expected kernels, float or float64, got %q", c.GoldenCompute)
}

// resolvePaths makes every path of c usable from this process's working
// directory: kept when it exists from there, else taken from the module
// root when it exists from there.
func (c TestConfig) resolvePaths() TestConfig {
	root := moduleRoot()
	one := func(p string) string {
		if p == "" || filepath.IsAbs(p) || root == "" {
			return p
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return filepath.Join(root, p)
		}
		return p
	}
	many := func(ps []string) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = one(p)
		}
		return out
	}
	c.ConfigDirs, c.GoldenDirs = many(c.ConfigDirs), many(c.GoldenDirs)
	c.ModelDir, c.MasterDir, c.GGUFPath = one(c.ModelDir), one(c.MasterDir), one(c.GGUFPath)
	return c
}

// moduleRoot is the folder of the nearest go.mod at or above the working
// directory, or "" when there is none.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, splitList(s)...)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
