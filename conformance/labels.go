package conformance

import (
	. "github.com/onsi/ginkgo/v2"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/conformance/report"
)

// Label scheme, usable with --label-filter. Every spec carries exactly one
// cost label, given by what it asks for, never by hand:
//
//	cost:config    reads configs, files' headers or published facts only:
//	               microseconds (DescribeConfig)
//	cost:model     builds a small model, runs golden cases or kernel
//	               checks: seconds (DescribeSubject on a small subject,
//	               DescribeGoldenCases)
//	cost:full      runs a model of 100M parameters or more
//	               (presets.FullScaleParams): minutes
//	cost:huge      runs a model of 8B parameters or more
//	               (presets.HugeParams), layer-streamed: up to an hour
//	suite:<name>   one per suite (suite:architecture, suite:forward, ...)
//	config:<name>  every spec that runs on one config (or config:checkpoint)
//	golden         specs driven by golden case files
//	checkpoint     specs of a -model-dir checkpoint
//
// full-scale and huge are kept as aliases of cost:full and cost:huge for
// existing filters (a huge spec carries cost:huge, full-scale and huge).
// For example --label-filter='!cost:full && !cost:huge' or '!full-scale'
// runs everything that takes seconds, and still runs every config check of
// 2B-4T and 7B.
const (
	LabelCostConfig = "cost:config"
	LabelCostModel  = "cost:model"
	LabelCostFull   = "cost:full"
	LabelCostHuge   = "cost:huge"
	LabelFullScale  = "full-scale"
	LabelHuge       = "huge"
	LabelGolden     = "golden"
	LabelCheckpoint = "checkpoint"
)

// SuiteLabel is the label of a suite, for example "suite:architecture".
func SuiteLabel(suite string) Labels { return Label("suite:" + suite) }

// ConfigLabel is the label of the specs of one config: "config:tritter-7b".
func ConfigLabel(name string) string { return report.ConfigLabelPrefix + name }

// configLabels are the labels of a config-only container.
func configLabels(name string) Labels { return Label(ConfigLabel(name), LabelCostConfig) }

// modelLabels are the labels of the model specs of a subject with the
// given parameter count.
func modelLabels(name string, params int64) Labels {
	switch {
	case params >= presets.HugeParams:
		return Label(ConfigLabel(name), LabelCostHuge, LabelFullScale, LabelHuge)
	case params >= presets.FullScaleParams:
		return Label(ConfigLabel(name), LabelCostFull, LabelFullScale)
	}
	return Label(ConfigLabel(name), LabelCostModel)
}
