package conformance

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/model"
)

// DescribeArchitecture registers the architecture specs: the seed's
// checklist for every selected preset, internal consistency, published
// facts, compatibility claims, and, with -model-dir, the checkpoint's
// config.json and tensor headers.
func DescribeArchitecture() bool {
	return Describe("Architecture", SuiteLabel("architecture"), func() {
		presets, ok := selectPresetsOrFail()
		if !ok {
			return
		}
		for _, p := range presets {
			describePresetArchitecture(p)
		}
		if dir := Flags.Resolved().ModelDir; dir != "" {
			describeCheckpointArchitecture(dir, presets)
		}
	})
}

// selectPresetsOrFail resolves -configs. On error it registers one failing
// spec that carries the message, so a typo never passes silently.
func selectPresetsOrFail() ([]Preset, bool) {
	presets, err := Flags.Select()
	if err != nil {
		It("selects the presets named by -configs", func() { Fail(err.Error()) })
		return nil, false
	}
	return presets, true
}

func describePresetArchitecture(p Preset) {
	cfg := p.Config
	facts, hasFacts := KnownFacts[p.Name]
	Describe(p.Name, ConfigLabels(p), func() {
		entries := []TableEntry{}
		for _, f := range Checklist {
			entries = append(entries, Entry(f.Name, f))
		}
		DescribeTable("checklist",
			func(f Field) {
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
			Expect(cfg.Problems()).To(BeEmpty(), "%s", p.Source)
		})

		It("has the analytic parameter count and memory footprint", func() {
			Expect(cfg.Problems()).To(BeEmpty(), "%s", p.Source)
			n := cfg.ParamCount()
			fp := cfg.Footprint()
			AddReportEntry("parameters", n, ReportEntryVisibilityFailureOrVerbose)
			AddReportEntry("ternary parameters", cfg.TernaryParamCount(), ReportEntryVisibilityFailureOrVerbose)
			AddReportEntry("footprint", fmt.Sprintf("fp32 %s, bf16 %s, packed 2-bit %s", HumanBytes(fp.FP32Bytes), HumanBytes(fp.BF16Bytes), HumanBytes(fp.PackedBytes)), ReportEntryVisibilityFailureOrVerbose)
			Expect(fp.FP32Bytes).To(Equal(4 * n))
			Expect(fp.BF16Bytes).To(Equal(2 * n))
			Expect(fp.PackedBytes).To(BeNumerically("<", fp.BF16Bytes))
			if hasFacts {
				Expect(CompareFacts(cfg, facts)).To(BeEmpty(), "%s differs from %s:\n%s", p.Name, facts.Source, MismatchReport(CompareFacts(cfg, facts)))
			}
		})

		It("declares no architecture BitNet b1.58 lacks, key by key", func() {
			reportKeys(cfg.Keys)
			msg := ""
			if incompatible := cfg.Keys.Of(model.KeyIncompatible); len(incompatible) > 0 {
				msg += fmt.Sprintf("%s: keys that declare an architecture BitNet b1.58 does not have:\n%s", p.Source, incompatible.Lines())
			}
			if unknown := cfg.Keys.Of(model.KeyUnknown); len(unknown) > 0 && compatibilityClaim(cfg) != "" {
				msg += fmt.Sprintf("%s claims compatible_with %s, but has keys the harness does not know:\n%s", p.Source, compatibilityClaim(cfg), unknown.Lines())
			}
			if msg != "" {
				Fail(msg)
			}
		})

		if ref := compatibilityClaim(cfg); ref != "" {
			It("matches "+ref+" on every field that decides a weight shape or numeric behaviour", func() {
				refPreset, err := referencePreset(ref)
				Expect(err).NotTo(HaveOccurred())
				mismatches := CompareConfigs(cfg, refPreset.Config)
				Expect(mismatches).To(BeEmpty(), "MISMATCH with %s:\n%s", ref, MismatchReport(mismatches))
			})
		}
	})
}

// reportKeys records a config's keys, one report entry per class.
func reportKeys(keys model.ConfigKeys) {
	for _, class := range model.KeyClasses {
		if of := keys.Of(class); len(of) > 0 {
			AddReportEntry("config keys, "+class.String(), of.Lines(), ReportEntryVisibilityFailureOrVerbose)
		}
	}
}

func compatibilityClaim(c model.Config) string {
	if c.Conformance == nil {
		return ""
	}
	return c.Conformance.CompatibleWith
}

// referencePreset loads a preset by name from the embedded set only, so a
// user's config folder cannot redefine the reference.
func referencePreset(name string) (Preset, error) {
	presets, err := LoadPresets()
	if err != nil {
		return Preset{}, err
	}
	p, ok := presets[name]
	if !ok {
		return Preset{}, fmt.Errorf("compatible_with names unknown preset %q: known presets are %s", name, strings.Join(SortedNames(presets), ", "))
	}
	return p, nil
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

// HumanBytes formats a byte count in GiB, MiB or KiB.
func HumanBytes(bytes int64) string {
	switch b := float64(bytes); {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
}
