// Package presets holds the named model configurations the specs run on:
// one HF-style config.json per preset, embedded from this folder, plus the
// published architecture facts they are checked against (facts.go). It
// knows nothing of Ginkgo.
package presets

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tritter-ai/conformance/model"
)

// presetFiles holds one HF-style config.json per preset; the file name
// without ".json" is the preset name. Dropping a file here adds a preset.
//
//go:embed *.json
var presetFiles embed.FS

// Preset is a named model configuration the specs run against.
type Preset struct {
	Name   string
	Source string // where the config came from: "presets/NAME.json" or a path
	Config model.Config
	// Keys classifies every key of the config.json, and each absent key
	// HF fills with a default (configkeys.go).
	Keys ConfigKeys
}

// FullScale reports whether the preset is a real-size model (FullScaleParams
// or more).
func (p Preset) FullScale() bool { return p.Config.ParamCount() >= FullScaleParams }

// Huge reports whether the preset is so large (HugeParams or more) that its
// models are layer-streamed on a 24 GiB machine.
func (p Preset) Huge() bool { return p.Config.ParamCount() >= HugeParams }

// FullScaleParams is the parameter count from which a model counts as full
// scale: its specs run in one shared, Ordered and Serial container.
const FullScaleParams = 100_000_000

// HugeParams is the parameter count from which a model is huge: past about
// 8B parameters the resident model no longer fits a 24 GiB machine, and its
// specs run layer-streamed.
const HugeParams = 8_000_000_000

// ReferenceName is the official architecture every compatibility claim is
// checked against.
const ReferenceName = "bitnet-b1.58-2b-4t"

// Defaults are the presets a run uses when none are named: the official
// architecture at full scale plus the small presets.
var Defaults = []string{"bitnet-b1.58-2b-4t", "tiny-gqa-untied", "tiny-mha-tied", "tiny-mqa-tied"}

// Load returns the embedded presets plus every *.json in the given
// folders. Configs are decoded but not validated here: the architecture
// specs report each inconsistent field, and model construction refuses them. A later folder's file overrides an earlier preset
// of the same name, so a user can shadow a built-in preset.
func Load(dirs ...string) (map[string]Preset, error) {
	presets := map[string]Preset{}
	entries, err := presetFiles.ReadDir(".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		source := "presets/" + e.Name()
		data, err := presetFiles.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		p, err := parsePreset(data, source)
		if err != nil {
			return nil, err
		}
		presets[p.Name] = p
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("config dir: %v", err)
		}
		paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("config dir %s: %v", dir, err)
		}
		sort.Strings(paths)
		for _, path := range paths {
			info, err := os.Stat(path)
			if err != nil {
				return nil, err
			}
			if info.IsDir() {
				continue
			}
			cfg, err := model.ReadConfigFile(path)
			if err != nil {
				return nil, fmt.Errorf("preset %s: %w", presetName(path), err)
			}
			keys, err := ReadConfigKeys(path)
			if err != nil {
				return nil, fmt.Errorf("preset %s: %w", presetName(path), err)
			}
			presets[presetName(path)] = Preset{Name: presetName(path), Source: path, Config: cfg, Keys: keys}
		}
	}
	return presets, nil
}

func parsePreset(data []byte, source string) (Preset, error) {
	cfg, err := model.DecodeConfig(data, source)
	if err != nil {
		return Preset{}, err
	}
	keys, err := ClassifyKeys(data, source)
	if err != nil {
		return Preset{}, err
	}
	return Preset{Name: presetName(source), Source: source, Config: cfg, Keys: keys}, nil
}

func presetName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".json")
}

// SortedNames lists preset names in order.
func SortedNames(presets map[string]Preset) []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Select loads every preset (embedded plus dirs) and returns the ones named,
// in the order named, each once; no names means Defaults. An unknown name
// is an error that lists the known presets.
func Select(names []string, dirs ...string) ([]Preset, error) {
	all, err := Load(dirs...)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		names = Defaults
	}
	var selected []Preset
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		p, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("unknown preset %q: known presets are %s", name, strings.Join(SortedNames(all), ", "))
		}
		selected = append(selected, p)
	}
	return selected, nil
}

// Reference returns a preset from the embedded set only, so that a user's
// config folder cannot redefine a reference.
func Reference(name string) (Preset, error) {
	all, err := Load()
	if err != nil {
		return Preset{}, err
	}
	p, ok := all[name]
	if !ok {
		return Preset{}, fmt.Errorf("compatible_with names unknown preset %q: known presets are %s", name, strings.Join(SortedNames(all), ", "))
	}
	return p, nil
}

// CompatibilityClaim is the preset a config claims to be compatible with
// (its conformance.compatible_with key), or "".
func CompatibilityClaim(c model.Config) string {
	if c.Conformance == nil {
		return ""
	}
	return c.Conformance.CompatibleWith
}
