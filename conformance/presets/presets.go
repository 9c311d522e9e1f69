package conformance

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
//go:embed presets/*.json
var presetFiles embed.FS

// Preset is a named model configuration the specs run against.
type Preset struct {
	Name   string
	Source string // where the config came from: "presets/NAME.json" or a path
	Config model.Config
}

// FullScale reports whether the preset is a real-size model (at least 100M
// parameters). Specs at this size carry the "full-scale" label.
func (p Preset) FullScale() bool { return p.Config.ParamCount() >= FullScaleParams }

// FullScaleParams is the parameter count from which a preset counts as full scale.
const FullScaleParams = 100_000_000

// ReferencePresetName is the official architecture every compatibility claim is checked against.
const ReferencePresetName = "bitnet-b1.58-2b-4t"

// LoadPresets returns the embedded presets plus every *.json in the given
// folders. Configs are decoded but not validated here: the architecture
// specs report each inconsistent field, and model construction refuses them. A later folder's file overrides an earlier preset
// of the same name, so a user can shadow a built-in preset.
func LoadPresets(dirs ...string) (map[string]Preset, error) {
	presets := map[string]Preset{}
	entries, err := presetFiles.ReadDir("presets")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		source := "presets/" + e.Name()
		data, err := presetFiles.ReadFile(source)
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
			presets[presetName(path)] = Preset{Name: presetName(path), Source: path, Config: cfg}
		}
	}
	return presets, nil
}

func parsePreset(data []byte, source string) (Preset, error) {
	cfg, err := model.DecodeConfig(data, source)
	if err != nil {
		return Preset{}, err
	}
	return Preset{Name: presetName(source), Source: source, Config: cfg}, nil
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
