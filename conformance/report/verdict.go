package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
)

// ConfigLabelPrefix starts the label that names the config a spec runs on:
// "config:tritter-7b".
const ConfigLabelPrefix = "config:"

// Counts are the It specs of a suite, or of one config, by outcome. Setup
// nodes do not count. A spec ran when it passed or failed; one left out by
// a label filter or focus, or one that called Skip, did not.
type Counts struct {
	Passed, Failed, Skipped int
}

// Total is the number of specs counted.
func (c Counts) Total() int { return c.Passed + c.Failed + c.Skipped }

// Ran is the number of specs that ran.
func (c Counts) Ran() int { return c.Passed + c.Failed }

func (c *Counts) add(s types.SpecReport) {
	switch {
	case s.State.Is(types.SpecStatePassed):
		c.Passed++
	case s.State.Is(types.SpecStateFailureStates):
		c.Failed++
	case s.State.Is(types.SpecStateSkipped | types.SpecStatePending):
		c.Skipped++
	}
}

// Tally counts the It specs of reports, in all and per config label.
func Tally(reports ...types.Report) (all Counts, byConfig map[string]Counts) {
	byConfig = map[string]Counts{}
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if s.LeafNodeType != types.NodeTypeIt {
				continue
			}
			all.add(s)
			for _, label := range s.Labels() {
				if name, ok := strings.CutPrefix(label, ConfigLabelPrefix); ok {
					c := byConfig[name]
					c.add(s)
					byConfig[name] = c
				}
			}
		}
	}
	return all, byConfig
}

// Unvalidated lists what validated nothing: the whole set of reports when
// none of its specs ran, and each requested config (named with -configs)
// that has specs of which none ran (all filtered out or skipped), for
// example "NOTHING VALIDATED for tritter-7b: 0 of 18 specs ran (label
// filter 'cost:huge')". A config the run took by default may be filtered
// out on purpose (--label-filter=golden runs the golden specs alone). what
// names the whole set ("Architecture Suite", "the run").
func Unvalidated(what string, requested []string, reports ...types.Report) []string {
	all, byConfig := Tally(reports...)
	why := filterNote(reports)
	var out []string
	if all.Ran() == 0 {
		out = append(out, fmt.Sprintf("NOTHING VALIDATED in %s: 0 of %s ran%s", what, specs(all.Total()), why))
	}
	names := append([]string(nil), requested...)
	sort.Strings(names)
	for _, name := range names {
		if c := byConfig[name]; c.Total() > 0 && c.Ran() == 0 {
			out = append(out, fmt.Sprintf("NOTHING VALIDATED for %s: 0 of %s ran%s", name, specs(c.Total()), why))
		}
	}
	return out
}

func specs(n int) string {
	if n == 1 {
		return "1 spec"
	}
	return fmt.Sprintf("%d specs", n)
}

// filterNote says which filters were in force, if any:
// " (label filter '!full-scale')".
func filterNote(reports []types.Report) string {
	var parts []string
	seen := map[string]bool{}
	note := func(s string) {
		if !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	for _, r := range reports {
		c := r.SuiteConfig
		if c.LabelFilter != "" {
			note(fmt.Sprintf("label filter '%s'", c.LabelFilter))
		}
		if len(c.FocusStrings) > 0 {
			note(fmt.Sprintf("focus '%s'", strings.Join(c.FocusStrings, "', '")))
		}
		if len(c.SkipStrings) > 0 {
			note(fmt.Sprintf("skip '%s'", strings.Join(c.SkipStrings, "', '")))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// DuplicateNames lists the JUnit test-case names (JUnitName) that more
// than one spec of a suite shares: CI systems key their history by name.
func DuplicateNames(r types.Report) []string {
	count := map[string]int{}
	for _, s := range r.SpecReports {
		if s.LeafNodeType == types.NodeTypeIt {
			count[JUnitName(s)]++
		}
	}
	var out []string
	for name, n := range count {
		if n > 1 {
			out = append(out, fmt.Sprintf("%q (%d specs)", name, n))
		}
	}
	sort.Strings(out)
	return out
}

// SuiteVerdict is the verdict of one suite: VALIDATION PASSED only when the
// suite succeeded, no spec failed and something was validated.
func SuiteVerdict(r types.Report, unvalidated []string, allowUnvalidated bool) string {
	all, _ := Tally(r)
	switch {
	case !r.SuiteSucceeded || all.Failed > 0:
		return "VALIDATION FAILED"
	case len(unvalidated) > 0 && !allowUnvalidated:
		return "NOTHING VALIDATED"
	}
	return "VALIDATION PASSED"
}

// ResultLine is a suite's one-line result, for example
// "Forward Suite: 315 passed, 0 failed, 1 skipped: VALIDATION PASSED".
func ResultLine(r types.Report, verdict string) string {
	all, _ := Tally(r)
	return fmt.Sprintf("%s: %d passed, %d failed, %d skipped: %s", r.SuiteDescription, all.Passed, all.Failed, all.Skipped, verdict)
}
