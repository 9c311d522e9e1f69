// Package conformance is the BitNet b1.58 conformance harness: config
// presets, harness options, spec registration, tensor matchers and the
// tolerance policy. Suites under suites/ call its Describe functions; a user
// can call the same functions inside their own Ginkgo suite.
package conformance

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// Options are the harness options every suite accepts. Flags bind straight
// to the fields; an environment variable fills a field whose flag was not set.
type Options struct {
	// Configs lists the presets to run, by name (flag -configs=a,b, env
	// CONFORMANCE_CONFIGS). Empty means DefaultConfigs.
	Configs string
	// ConfigDir is a folder of extra preset JSON files (flag -config-dir,
	// env CONFORMANCE_CONFIG_DIR). A file there named like a built-in
	// preset replaces it.
	ConfigDir string
	// ModelDir is an HF checkpoint folder to check and run (flag -model-dir,
	// env CONFORMANCE_MODEL_DIR). Empty means random initialisation only.
	ModelDir string
	// MasterDir is the online (bf16/f32 master) checkpoint folder that the
	// offline ModelDir checkpoint was converted from (flag -master-dir, env
	// CONFORMANCE_MASTER_DIR). When set, the forward suite checks the
	// conversion code by code, scale by scale, tensor by tensor and on
	// logits. Empty means no cross-checkpoint check.
	MasterDir string
	// GoldenDir is a comma-separated list of extra golden-case folders
	// (flag -golden-dir, env CONFORMANCE_GOLDEN_DIR). The project's own
	// golden/cases folder always runs.
	GoldenDir string
	// GoldenCompute is the path the golden checks run the model on (flag
	// -golden-compute, env CONFORMANCE_GOLDEN_COMPUTE): kernels (integer
	// kernels, the default), float (torch's float32 formulation) or float64.
	GoldenCompute string
	// MemoryMode is how models hold their decoder layers (flag
	// -memory-mode, env CONFORMANCE_MEMORY_MODE): auto (the default:
	// resident when the estimate fits comfortably, else layer-streamed),
	// resident or streamed (memory.go).
	MemoryMode string
	// Seed seeds random initialisation and random inputs (flag -seed).
	Seed uint64
}

// DefaultConfigs are the presets a run uses when none are named: the
// official architecture at full scale plus the small presets.
var DefaultConfigs = []string{"bitnet-b1.58-2b-4t", "tiny-gqa-untied", "tiny-mha-tied", "tiny-mqa-tied"}

// Flags holds the options bound to the command line by RegisterFlags.
var Flags Options

var registerOnce sync.Once

// RegisterFlags binds the harness options to flag.CommandLine. It is called
// from this package's init, so every suite binary that imports the harness
// accepts them (ginkgo ./suites/... -- -configs=tiny-mha-tied).
func RegisterFlags() {
	registerOnce.Do(func() {
		flag.StringVar(&Flags.Configs, "configs", "", "comma-separated presets to run (env CONFORMANCE_CONFIGS; default "+strings.Join(DefaultConfigs, ",")+")")
		flag.StringVar(&Flags.ConfigDir, "config-dir", "", "folder of extra preset config.json files (env CONFORMANCE_CONFIG_DIR)")
		flag.StringVar(&Flags.ModelDir, "model-dir", "", "HF BitNet checkpoint folder to check (env CONFORMANCE_MODEL_DIR)")
		flag.StringVar(&Flags.MasterDir, "master-dir", "", "online master checkpoint folder that the offline -model-dir was converted from (env CONFORMANCE_MASTER_DIR)")
		flag.StringVar(&Flags.GoldenDir, "golden-dir", "", "comma-separated extra golden-case folders (env CONFORMANCE_GOLDEN_DIR)")
		flag.StringVar(&Flags.GoldenCompute, "golden-compute", "", "compute path of the golden checks: kernels (default), float or float64 (env CONFORMANCE_GOLDEN_COMPUTE)")
		flag.StringVar(&Flags.MemoryMode, "memory-mode", "", "how models hold their layers: auto (default), resident or streamed (env CONFORMANCE_MEMORY_MODE)")
		flag.Uint64Var(&Flags.Seed, "seed", 1, "seed for random initialisation and inputs")
	})
}

func init() { RegisterFlags() }

// Resolved returns the options after applying the environment to unset fields.
func (o Options) Resolved() Options {
	fill := func(field *string, env string) {
		if *field == "" {
			*field = os.Getenv(env)
		}
	}
	fill(&o.Configs, "CONFORMANCE_CONFIGS")
	fill(&o.ConfigDir, "CONFORMANCE_CONFIG_DIR")
	fill(&o.ModelDir, "CONFORMANCE_MODEL_DIR")
	fill(&o.MasterDir, "CONFORMANCE_MASTER_DIR")
	fill(&o.GoldenDir, "CONFORMANCE_GOLDEN_DIR")
	fill(&o.GoldenCompute, "CONFORMANCE_GOLDEN_COMPUTE")
	fill(&o.MemoryMode, "CONFORMANCE_MEMORY_MODE")
	o.ConfigDir, o.ModelDir, o.MasterDir = fromRoot(o.ConfigDir), fromRoot(o.ModelDir), fromRoot(o.MasterDir)
	dirs := splitList(o.GoldenDir)
	for i, d := range dirs {
		dirs[i] = fromRoot(d)
	}
	o.GoldenDir = strings.Join(dirs, ",")
	return o
}

// fromRoot resolves a relative path that does not exist from the working
// directory against the repository root instead. make and
// `ginkgo ./suites/...` are run from the root, but ginkgo runs each suite
// binary in its own package folder, where a path the user typed relative to
// the root would not resolve.
func fromRoot(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	root := filepath.Join(golden.Dir(), "..", "..")
	if _, err := os.Stat(filepath.Join(root, path)); err == nil {
		return filepath.Join(root, path)
	}
	return path
}

// GoldenComputePath maps GoldenCompute to a model compute path.
func (o Options) GoldenComputePath() (model.Compute, error) {
	switch v := o.Resolved().GoldenCompute; v {
	case "", "kernels":
		return model.ComputeKernels, nil
	case "float":
		return model.ComputeFloat, nil
	case "float64":
		return model.ComputeFloat64, nil
	default:
		return 0, fmt.Errorf("-golden-compute: expected kernels, float or float64, got %q", v)
	}
}

// GoldenDirs splits GoldenDir into folders.
func (o Options) GoldenDirs() []string { return splitList(o.GoldenDir) }

// Select loads every preset (embedded plus ConfigDir) and returns the ones
// named by Configs, in the order named. An unknown name is an error that
// lists the known presets.
func (o Options) Select() ([]Preset, error) {
	o = o.Resolved()
	presets, err := LoadPresets(o.ConfigDir)
	if err != nil {
		return nil, err
	}
	names := splitList(o.Configs)
	if len(names) == 0 {
		names = DefaultConfigs
	}
	var selected []Preset
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		p, ok := presets[name]
		if !ok {
			return nil, fmt.Errorf("unknown preset %q: known presets are %s", name, strings.Join(SortedNames(presets), ", "))
		}
		selected = append(selected, p)
	}
	return selected, nil
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
