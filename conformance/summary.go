package conformance

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
)

// ReportSummary registers a ReportAfterSuite node that prints the suite's
// result in one line, or with -v the suite's summary as WriteSummary
// prints it. cmd/summary prints the summary of a whole run. Call it once
// per suite.
func ReportSummary() bool {
	return ReportAfterSuite("conformance summary", func(r Report) {
		if _, reporter := GinkgoConfiguration(); reporter.Verbose || reporter.VeryVerbose {
			presets, _ := Flags.Select()
			WriteSummary(os.Stdout, []types.Report{r}, presets)
			return
		}
		writeSuiteResult(os.Stdout, r)
	})
}

// writeSuiteResult prints one line for a suite, for example
// "Forward Suite: 315 passed, 0 failed, 1 skipped: VALIDATION PASSED",
// after a newline that ends Ginkgo's line of progress dots.
func writeSuiteResult(w io.Writer, r types.Report) {
	passed, failed, skipped := specCounts(r)
	verdict := "VALIDATION PASSED"
	if !r.SuiteSucceeded || failed > 0 {
		verdict = "VALIDATION FAILED"
	}
	fmt.Fprintf(w, "\n%s: %d passed, %d failed, %d skipped: %s\n", r.SuiteDescription, passed, failed, skipped, verdict)
}

// specCounts counts a suite's It specs by outcome; setup nodes do not count.
func specCounts(r types.Report) (passed, failed, skipped int) {
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt {
			continue
		}
		switch {
		case s.State.Is(types.SpecStatePassed):
			passed++
		case s.State.Is(types.SpecStateFailureStates):
			failed++
		case s.State.Is(types.SpecStateSkipped | types.SpecStatePending):
			skipped++
		}
	}
	return passed, failed, skipped
}

// WriteSummary prints the summary of one or more suite reports and reports
// whether validation passed.
func WriteSummary(w io.Writer, reports []types.Report, presets []Preset) bool {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "BitNet b1.58 conformance summary")
	if len(presets) > 0 {
		writeConfigTable(w, presets)
	}
	passed, failed, skipped := 0, 0, 0
	var failures []string
	succeeded := true
	for _, r := range reports {
		succeeded = succeeded && r.SuiteSucceeded
		suitePassed, suiteFailed, suiteSkipped := specCounts(r)
		passed, failed, skipped = passed+suitePassed, failed+suiteFailed, skipped+suiteSkipped
		for _, s := range r.SpecReports {
			if !s.State.Is(types.SpecStateFailureStates) {
				continue
			}
			what := s.FullText()
			if s.LeafNodeType != types.NodeTypeIt {
				what = s.LeafNodeType.String()
			}
			failures = append(failures, fmt.Sprintf("%s: %s: %s", r.SuiteDescription, what, firstLine(s.Failure.Message)))
		}
	}
	for _, f := range failures {
		fmt.Fprintln(w, "  FAILED", f)
	}
	fmt.Fprintf(w, "specs: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if succeeded && failed == 0 {
		fmt.Fprintln(w, "VALIDATION PASSED")
		return true
	}
	fmt.Fprintln(w, "VALIDATION FAILED")
	return false
}

func writeConfigTable(w io.Writer, presets []Preset) {
	ref, refErr := referencePreset(ReferencePresetName)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\thidden\tlayers\theads\tkv\thead_dim\tinter\tvocab\tparams\t")
	for _, p := range presets {
		c := p.Config
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.Name, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim(), c.IntermediateSize, c.VocabSize, Thousands(c.ParamCount()))
	}
	tw.Flush()
	if refErr != nil {
		return
	}
	for _, p := range presets {
		claim := compatibilityClaim(p.Config)
		mismatches := CompareConfigs(p.Config, ref.Config)
		switch {
		case len(mismatches) == 0:
			fmt.Fprintf(w, "%s: COMPATIBLE with %s\n", p.Name, ReferencePresetName)
		case claim != "":
			fmt.Fprintf(w, "%s: MISMATCH with %s: %s\n", p.Name, claim, fieldNames(mismatches))
		default:
			fmt.Fprintf(w, "%s: no compatibility claim (differs from %s in %d fields)\n", p.Name, ReferencePresetName, len(mismatches))
		}
	}
	if dir := Flags.Resolved().ModelDir; dir != "" {
		if preset, err := CheckpointPreset(presets); err == nil {
			if ms, err := CheckpointMismatches(dir, preset); err != nil {
				fmt.Fprintf(w, "checkpoint %s: %v\n", dir, err)
			} else if len(ms) == 0 {
				fmt.Fprintf(w, "checkpoint %s: COMPATIBLE with %s\n", dir, preset.Name)
			} else {
				fmt.Fprintf(w, "checkpoint %s: MISMATCH with %s: %s\n", dir, preset.Name, fieldNames(ms))
			}
		}
	}
}

func fieldNames(ms []Mismatch) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Field
	}
	return strings.Join(names, ", ")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Thousands formats n with comma separators: 2,412,820,480.
func Thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
