package conformance

import (
	. "github.com/onsi/ginkgo/v2"
)

// Specs is a set of recorded spec bodies. Recording does not touch Ginkgo;
// Run registers each body once per selected config, model subject or
// golden case, inside the containers and with the labels its kind calls
// for. The built-in suites are Specs values (Architecture, Forward, ...);
// a team's own specs go into the package-level set through the
// package-level Describe functions, which every Run includes.
type Specs struct {
	entries []entry
}

// kind is what a spec body runs on, which decides its cost label.
type kind int

const (
	onConfig  kind = iota // a preset's config only: cost:config
	onSubject             // a built model: cost:model, cost:full or cost:huge by size
	onGolden              // one golden case: cost:model
	onRun                 // once per run: the registrant's own labels
)

type entry struct {
	kind       kind
	text       string
	decorators []any
	configs    []string // ForConfigs: run only on these
	config     func(p Preset)
	subject    func(s *Subject)
	golden     func(c *GoldenCase)
	run        func(h *Harness)
}

// ForConfigs restricts a DescribeConfig or DescribeSubject body to the
// named configs: it is registered only for those of them the run selects.
// Pass it among the decorators.
type ForConfigs []string

// DescribeConfig records specs that read a config and build nothing: body
// runs once per selected preset, inside Describe(text) > Describe(preset),
// labelled config:<preset> and cost:config. Decorators (Ginkgo's, and
// ForConfigs) apply to the Describe(text) container.
func (s *Specs) DescribeConfig(text string, body func(p Preset), decorators ...any) {
	s.add(entry{kind: onConfig, text: text, config: body}, decorators)
}

// DescribeSubject records specs that run on a model: body runs once per
// model subject (every selected preset, or the -model-dir checkpoint
// instead), inside Describe(text) > Describe(subject), labelled
// config:<subject> and cost:model, cost:full (100M parameters or more,
// with the alias full-scale) or cost:huge (8B or more, layer-streamed,
// with the alias huge). The specs of one full-scale subject, from every
// Specs of the run, share one Ordered, Serial container, so its model is
// built once per suite process whatever the spec order.
func (s *Specs) DescribeSubject(text string, body func(s *Subject), decorators ...any) {
	s.add(entry{kind: onSubject, text: text, subject: body}, decorators)
}

// DescribeGoldenCases records specs that run on golden cases: body runs
// once per case (the committed ones and every -golden-dir file), inside
// Describe(text) > Describe(case), labelled golden and cost:model. A case
// that does not load becomes one failing spec naming the file.
func (s *Specs) DescribeGoldenCases(text string, body func(c *GoldenCase), decorators ...any) {
	s.add(entry{kind: onGolden, text: text, golden: body}, decorators)
}

// DescribeRun records specs that run once per run, inside Describe(text):
// body sees the harness and decides what to register. The registrant
// labels them (one cost label each).
func (s *Specs) DescribeRun(text string, body func(h *Harness), decorators ...any) {
	s.add(entry{kind: onRun, text: text, run: body}, decorators)
}

func (s *Specs) add(e entry, decorators []any) {
	for _, d := range decorators {
		if only, ok := d.(ForConfigs); ok {
			e.configs = append(e.configs, only...)
			continue
		}
		e.decorators = append(e.decorators, d)
	}
	s.entries = append(s.entries, e)
}

// The package-level set: what a team's spec files record with the
// package-level Describe functions, at package initialisation, for
// Run to register.
var teamSpecs Specs

// DescribeConfig records config-only specs in the package-level set; see
// Specs.DescribeConfig. It returns true so that it can be called as
// var _ = conformance.DescribeConfig(...).
func DescribeConfig(text string, body func(p Preset), decorators ...any) bool {
	teamSpecs.DescribeConfig(text, body, decorators...)
	return true
}

// DescribeSubject records model specs in the package-level set; see
// Specs.DescribeSubject.
func DescribeSubject(text string, body func(s *Subject), decorators ...any) bool {
	teamSpecs.DescribeSubject(text, body, decorators...)
	return true
}

// DescribeGoldenCases records golden-case specs in the package-level set;
// see Specs.DescribeGoldenCases.
func DescribeGoldenCases(text string, body func(c *GoldenCase), decorators ...any) bool {
	teamSpecs.DescribeGoldenCases(text, body, decorators...)
	return true
}

// register registers every entry of sets with Ginkgo, in order: config,
// golden and run specs under their own containers; model specs of small
// subjects under theirs; and the model specs of each full-scale subject,
// from every set, inside one Ordered, Serial, ContinueOnFailure container
// of their own.
func (h *Harness) register(sets []*Specs) {
	var entries []entry
	for _, set := range sets {
		entries = append(entries, set.entries...)
	}
	for _, e := range entries {
		switch e.kind {
		case onConfig:
			Describe(e.text, append(e.decorators, func() {
				for _, p := range h.presets {
					if e.selects(p.Name) {
						Describe(p.Name, configLabels(p.Name), func() { e.config(p) })
					}
				}
			})...)
		case onGolden:
			Describe(e.text, append(e.decorators, Label(LabelGolden, LabelCostModel), func() {
				h.describeGoldenCases(e.golden)
			})...)
		case onRun:
			Describe(e.text, append(e.decorators, func() { e.run(h) })...)
		}
	}
	for _, s := range h.subjects {
		var mine []entry
		for _, e := range entries {
			if e.kind == onSubject && e.selects(s.Name) {
				mine = append(mine, e)
			}
		}
		if len(mine) == 0 {
			continue
		}
		describe := func() {
			for _, e := range mine {
				Describe(e.text, append(e.decorators, func() {
					Describe(s.Name, s.labels(), func() { e.subject(s) })
				})...)
			}
		}
		if s.FullScale() {
			// A text-less container: spec names stay "Forward <subject> ...".
			Describe("", Ordered, Serial, ContinueOnFailure, describe)
		} else {
			describe()
		}
	}
}

func (e entry) selects(name string) bool {
	if len(e.configs) == 0 {
		return true
	}
	for _, c := range e.configs {
		if c == name {
			return true
		}
	}
	return false
}
