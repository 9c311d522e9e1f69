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
//	golden          specs driven by golden case files
//
// For example --label-filter='!full-scale' runs everything fast, and
// --label-filter='config:tritter-7b' runs one preset.
const (
	LabelFullScale = "full-scale"
)

// SuiteLabel is the label of a suite, for example "suite:architecture".
func SuiteLabel(suite string) Labels { return Label("suite:" + suite) }

// ConfigLabels labels the specs of one preset, adding full-scale for real
// model sizes.
func ConfigLabels(p Preset) Labels {
	if p.FullScale() {
		return Label("config:"+p.Name, LabelFullScale)
	}
	return Label("config:" + p.Name)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
