package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/internal/units"
)

// Run is what the whole-run summary says besides the suites' results.
type Run struct {
	// Presets are the selected presets, for the config table and the
	// compatibility lines.
	Presets []presets.Preset
	// ModelDir is the -model-dir checkpoint, if any, and CheckpointPreset
	// the preset it is compared with.
	ModelDir         string
	CheckpointPreset presets.Preset
	// Requested are the configs named with -configs; each must validate
	// something.
	Requested []string
	// AllowUnvalidated reports what validated nothing without failing the
	// run (-allow-unvalidated).
	AllowUnvalidated bool
}

// WriteSummary prints the summary of one or more suite reports and reports
// whether validation passed: every suite succeeded, no spec failed, and
// every config and the run as a whole validated something (unless
// run.AllowUnvalidated).
func WriteSummary(w io.Writer, reports []types.Report, run Run) bool {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "BitNet b1.58 conformance summary")
	if len(run.Presets) > 0 {
		writeConfigTable(w, run)
	}
	succeeded := true
	for _, r := range reports {
		succeeded = succeeded && r.SuiteSucceeded
		for _, s := range r.SpecReports {
			if !s.State.Is(types.SpecStateFailureStates) {
				continue
			}
			what := s.FullText()
			if s.LeafNodeType != types.NodeTypeIt {
				what = s.LeafNodeType.String()
			}
			fmt.Fprintf(w, "  FAILED %s: %s: %s\n", r.SuiteDescription, what, firstLine(s.Failure.Message))
		}
	}
	all, _ := Tally(reports...)
	fmt.Fprintf(w, "specs: %d passed, %d failed, %d skipped\n", all.Passed, all.Failed, all.Skipped)
	unvalidated := Unvalidated("the run", run.Requested, reports...)
	for _, line := range unvalidated {
		if run.AllowUnvalidated {
			line += " (allowed by -allow-unvalidated)"
		}
		fmt.Fprintln(w, line)
	}
	switch {
	case !succeeded || all.Failed > 0:
		fmt.Fprintln(w, "VALIDATION FAILED")
		return false
	case len(unvalidated) > 0 && !run.AllowUnvalidated:
		fmt.Fprintln(w, "NOTHING VALIDATED")
		return false
	}
	fmt.Fprintln(w, "VALIDATION PASSED")
	return true
}

func writeConfigTable(w io.Writer, run Run) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\thidden\tlayers\theads\tkv\thead_dim\tinter\tvocab\tparams\t")
	for _, p := range run.Presets {
		c := p.Config
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.Name, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim(), c.IntermediateSize, c.VocabSize, units.Thousands(c.ParamCount()))
	}
	tw.Flush()
	ref, err := presets.Reference(presets.ReferenceName)
	if err != nil {
		return
	}
	for _, p := range run.Presets {
		claim := presets.CompatibilityClaim(p.Config)
		mismatches := presets.CompareConfigs(p.Config, ref.Config)
		switch {
		case len(mismatches) == 0:
			fmt.Fprintf(w, "%s: COMPATIBLE with %s\n", p.Name, presets.ReferenceName)
		case claim != "":
			fmt.Fprintf(w, "%s: MISMATCH with %s: %s\n", p.Name, claim, fieldNames(mismatches))
		default:
			fmt.Fprintf(w, "%s: no compatibility claim (differs from %s in %d fields)\n", p.Name, presets.ReferenceName, len(mismatches))
		}
	}
	if run.ModelDir == "" {
		return
	}
	preset := run.CheckpointPreset
	switch ms, err := presets.CheckpointMismatches(run.ModelDir, preset); {
	case err != nil:
		fmt.Fprintf(w, "checkpoint %s: %v\n", run.ModelDir, err)
	case len(ms) == 0:
		fmt.Fprintf(w, "checkpoint %s: COMPATIBLE with %s\n", run.ModelDir, preset.Name)
	default:
		fmt.Fprintf(w, "checkpoint %s: MISMATCH with %s: %s\n", run.ModelDir, preset.Name, fieldNames(ms))
	}
}

func fieldNames(ms []presets.Mismatch) string {
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
