package conformance

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
)

// Label scheme, usable with --label-filter:
//
//	suite:<name>    one per suite (suite:architecture, suite:forward, ...)
//	config:<preset> every spec that runs against one preset
//	full-scale      specs at real model sizes (FullScaleParams or more)
//	huge            specs on presets of HugeParams or more (Tritter 10B, 13B,
//	                70B): never in DefaultConfigs; make conformance-huge
//	golden          specs driven by golden case files
//
// For example --label-filter='!full-scale' runs everything fast, and
// --label-filter='config:tritter-7b' runs one preset.
const (
	LabelFullScale = "full-scale"
	LabelHuge      = "huge"
)

// HugeParams is the parameter count from which a preset is huge: past about
// 8B parameters the resident model no longer fits a 24 GiB machine, and its
// specs run layer-streamed (memory.go).
const HugeParams = 8_000_000_000

// sizeLabels are the size labels of a model with the given parameter count.
func sizeLabels(params int64) []string {
	var labels []string
	if params >= FullScaleParams {
		labels = append(labels, LabelFullScale)
	}
	if params >= HugeParams {
		labels = append(labels, LabelHuge)
	}
	return labels
}

// SuiteLabel is the label of a suite, for example "suite:architecture".
func SuiteLabel(suite string) Labels { return Label("suite:" + suite) }

// ConfigLabels labels the specs of one preset, adding full-scale for real
// model sizes and huge from HugeParams.
func ConfigLabels(p Preset) Labels {
	return Label(append([]string{"config:" + p.Name}, sizeLabels(p.Config.ParamCount())...)...)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
