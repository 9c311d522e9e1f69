package conformance

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/model"
)

// Architecture are the architecture specs: the seed's checklist for every
// selected preset, internal consistency, published facts, compatibility
// claims, and, with -model-dir, the checkpoint's config.json and tensor
// headers (checkpoint.go).
var Architecture = func() *Specs {
	var s Specs
	s.DescribeConfig("Architecture", describePresetArchitecture, SuiteLabel("architecture"))
	s.DescribeRun("Architecture", describeCheckpointArchitecture, SuiteLabel("architecture"))
	return &s
}()

func describePresetArchitecture(p Preset) {
	cfg := p.Config
	facts, hasFacts := presets.KnownFacts[p.Name]

	entries := []TableEntry{}
	for _, f := range presets.Checklist {
		entries = append(entries, Entry(f.Name, f))
	}
	DescribeTable("checklist",
		func(f presets.Field) {
			value := f.Value(cfg)
			AddReportEntry(f.Name, value, ReportEntryVisibilityFailureOrVerbose)
			Expect(problemsFor(cfg, f.Name)).To(BeEmpty(), "%s: %s", p.Source, f.Name)
			if hasFacts {
				Expect(value).To(Equal(f.Fact(facts)), "%s: ours=%v, reference=%v (%s)", f.Name, value, f.Fact(facts), facts.Source)
			}
		},
		entries,
	)

	It("has positive sizes within int32", func() {
		Expect(sizeProblems(cfg)).To(BeEmpty(), "%s", p.Source)
	})
	It("has attention heads that divide the hidden size, unless head_dim is explicit", func() {
		Expect(problemsFor(cfg, "num_attention_heads")).To(BeEmpty(), "%s", p.Source)
		if cfg.HeadDimension == 0 && cfg.NumAttentionHeads > 0 {
			Expect(cfg.HiddenSize % cfg.NumAttentionHeads).To(BeZero())
		}
	})
	It("has KV heads that divide the attention heads", func() {
		Expect(problemsFor(cfg, "num_key_value_heads")).To(BeEmpty(), "%s", p.Source)
		AddReportEntry("GQA group size", cfg.GroupSize(), ReportEntryVisibilityFailureOrVerbose)
	})
	It("is buildable: no other inconsistent field", func() {
		Expect(presets.Problems(p)).To(BeEmpty(), "%s", p.Source)
	})

	It("has the analytic parameter count and memory footprint", func() {
		Expect(presets.Problems(p)).To(BeEmpty(), "%s", p.Source)
		n := cfg.ParamCount()
		fp := cfg.Footprint()
		AddReportEntry("parameters", n, ReportEntryVisibilityFailureOrVerbose)
		AddReportEntry("ternary parameters", cfg.TernaryParamCount(), ReportEntryVisibilityFailureOrVerbose)
		AddReportEntry("footprint", fmt.Sprintf("fp32 %s, bf16 %s, packed 2-bit %s", units.Bytes(fp.FP32Bytes), units.Bytes(fp.BF16Bytes), units.Bytes(fp.PackedBytes)), ReportEntryVisibilityFailureOrVerbose)
		Expect(fp.FP32Bytes).To(Equal(4 * n))
		Expect(fp.BF16Bytes).To(Equal(2 * n))
		Expect(fp.PackedBytes).To(BeNumerically("<", fp.BF16Bytes))
		if hasFacts {
			Expect(presets.CompareFacts(cfg, facts)).To(BeEmpty(), "%s differs from %s:\n%s", p.Name, facts.Source, presets.MismatchReport(presets.CompareFacts(cfg, facts)))
		}
	})

	It("declares no architecture BitNet b1.58 lacks, key by key", func() {
		reportKeys(p.Keys)
		msg := ""
		if incompatible := p.Keys.Of(presets.KeyIncompatible); len(incompatible) > 0 {
			msg += fmt.Sprintf("%s: keys that declare an architecture BitNet b1.58 does not have:\n%s", p.Source, incompatible.Lines())
		}
		if unknown := p.Keys.Of(presets.KeyUnknown); len(unknown) > 0 && presets.CompatibilityClaim(cfg) != "" {
			msg += fmt.Sprintf("%s claims compatible_with %s, but has keys the harness does not know:\n%s", p.Source, presets.CompatibilityClaim(cfg), unknown.Lines())
		}
		if msg != "" {
			Fail(msg)
		}
	})

	if ref := presets.CompatibilityClaim(cfg); ref != "" {
		It("matches "+ref+" on every field that decides a weight shape or numeric behaviour", func() {
			refPreset, err := presets.Reference(ref)
			Expect(err).NotTo(HaveOccurred())
			mismatches := presets.CompareConfigs(cfg, refPreset.Config)
			Expect(mismatches).To(BeEmpty(), "MISMATCH with %s:\n%s", ref, presets.MismatchReport(mismatches))
		})
	}
}

// reportKeys records a config's keys, one report entry per class.
func reportKeys(keys presets.ConfigKeys) {
	for _, class := range presets.KeyClasses {
		if of := keys.Of(class); len(of) > 0 {
			AddReportEntry("config keys, "+class.String(), of.Lines(), ReportEntryVisibilityFailureOrVerbose)
		}
	}
}

func problemsFor(c model.Config, field string) []string {
	var out []string
	for _, p := range c.Problems() {
		if p.Field == field {
			out = append(out, p.Error())
		}
	}
	return out
}

func sizeProblems(c model.Config) []string {
	var out []string
	for _, f := range []string{"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size", "max_position_embeddings"} {
		out = append(out, problemsFor(c, f)...)
	}
	return out
}
