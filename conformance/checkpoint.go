package conformance

import (
	"fmt"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// CheckpointPreset is the preset a -model-dir checkpoint is compared with:
// the first preset named by -configs, or the reference architecture when
// -configs is not given.
func CheckpointPreset(selected []Preset) (Preset, error) {
	if len(splitList(Flags.Resolved().Configs)) > 0 && len(selected) > 0 {
		return selected[0], nil
	}
	return referencePreset(ReferencePresetName)
}

// CheckpointMismatches compares a checkpoint's config.json with a preset on
// every field that decides a weight shape or a numeric behaviour.
func CheckpointMismatches(dir string, preset Preset) ([]Mismatch, error) {
	cfg, err := model.ReadConfigFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	return CompareConfigs(cfg, preset.Config), nil
}

// describeCheckpointArchitecture checks a real checkpoint folder offline:
// its config.json against the preset, and every tensor header against the
// preset's inventory, without reading tensor data.
func describeCheckpointArchitecture(dir string, selected []Preset) {
	Describe("checkpoint "+dir, Label("checkpoint"), func() {
		var preset Preset
		BeforeEach(func() {
			var err error
			preset, err = CheckpointPreset(selected)
			Expect(err).NotTo(HaveOccurred())
		})
		It("has a config.json that matches the preset", func() {
			mismatches, err := CheckpointMismatches(dir, preset)
			Expect(err).NotTo(HaveOccurred())
			if len(mismatches) == 0 {
				AddReportEntry("checkpoint config", "COMPATIBLE with "+preset.Name, ReportEntryVisibilityFailureOrVerbose)
			}
			Expect(mismatches).To(BeEmpty(), "%s/config.json: MISMATCH with %s:\n%s", dir, preset.Name, MismatchReport(mismatches))
		})
		It("has a config.json whose every key is known and BitNet-compatible", func() {
			cfg, err := model.ReadConfigFile(filepath.Join(dir, "config.json"))
			Expect(err).NotTo(HaveOccurred())
			reportKeys(cfg.Keys)
			if bad := append(cfg.Keys.Of(model.KeyIncompatible), cfg.Keys.Of(model.KeyUnknown)...); len(bad) > 0 {
				Fail(fmt.Sprintf("%s/config.json: keys that declare an architecture BitNet b1.58 does not have, or that the harness does not know:\n%s", dir, bad.Lines()))
			}
		})
		It("has every tensor of the preset's inventory with the right shape and dtype", func() {
			report, err := checkpoint.Inspect(dir, preset.Config)
			Expect(err).NotTo(HaveOccurred())
			layout := report.Mode + " layout"
			if report.Mode == checkpoint.Offline {
				conv, err := report.Config.ScaleConvention()
				Expect(err).NotTo(HaveOccurred(), "%s/config.json", dir)
				layout += ", weight_scale convention " + conv.String()
				if report.Config.QuantizationConfig.LinearClass == "" {
					layout += " (linear_class absent: HF's default)"
				}
			}
			AddReportEntry("checkpoint", layout+", "+plural(len(report.Files), "file")+", "+plural(report.TensorCount, "tensor"), ReportEntryVisibilityFailureOrVerbose)
			lines := ""
			for _, p := range report.Problems {
				lines += p.String() + "\n"
			}
			Expect(report.Problems).To(BeEmpty(), "%s: %d tensor problems against %s:\n%s", dir, len(report.Problems), preset.Name, lines)
		})
	})
}

// masterBatch is the fixed batch on which a checkpoint and its master are
// run: 2 sequences of 16 tokens (fewer when max_position_embeddings is
// smaller).
func masterBatch(cfg model.Config) model.Batch {
	return RandomBatch(cfg, 2, min(16, int(cfg.MaxPositionEmbeddings)), Flags.Seed)
}

// DescribeCheckpointNumerics registers the checks of a -model-dir
// checkpoint's numbers: every known-answer file, skipped with the reason
// when its fingerprint is for another config, and with -master-dir the
// conversion against its master (checkpoint.CompareMaster, then logits
// within checkpoint.MasterLogitsRelL2).
func DescribeCheckpointNumerics() bool {
	return Describe("Checkpoint numerics", SuiteLabel("forward"), func() {
		opts := Flags.Resolved()
		answers, err := LoadKnownAnswers(opts.ModelDir)
		if err != nil {
			It("reads the known-answer files", func() { Fail(err.Error()) })
			return
		}
		if opts.ModelDir == "" {
			for _, k := range answers {
				It("matches known answers "+k.Path, func() {
					Skip(fmt.Sprintf("%s: needs -model-dir with the %s weights", k.Path, k.Checkpoint))
				})
			}
			if opts.MasterDir != "" {
				It("compares -model-dir with -master-dir", func() {
					Fail("-master-dir " + opts.MasterDir + " needs -model-dir: the offline checkpoint converted from it")
				})
			}
			return
		}
		subjects, ok := subjectsOrFail()
		if !ok {
			return
		}
		s := subjects[0]
		Describe(s.Name, s.Decorators(), func() {
			for _, k := range answers {
				It("matches known answers "+k.Path+" ("+k.Checkpoint+")", func() {
					if reason := k.SkipReason(s.Config); reason != "" {
						Skip(reason)
					}
					m, err := s.Model()
					Expect(err).NotTo(HaveOccurred())
					misses, err := k.Check(m)
					Expect(err).NotTo(HaveOccurred())
					if len(misses) > 0 {
						lines := ""
						for _, miss := range misses {
							lines += miss.String() + "\n"
						}
						Fail(fmt.Sprintf("%s: %d values outside tolerance against %s (source: %s):\n%s", k.Path, len(misses), k.Checkpoint, k.Source, lines))
					}
				})
			}
			if opts.MasterDir == "" {
				return
			}
			It("is the conversion of -master-dir "+opts.MasterDir+": every code, weight_scale and tensor", func() {
				var r *checkpoint.MasterReport
				Step("comparing every tensor with the master", func() {
					var err error
					r, err = checkpoint.CompareMaster(s.Source, opts.MasterDir)
					Expect(err).NotTo(HaveOccurred())
				})
				AddReportEntry("master comparison", fmt.Sprintf("%s, %d tensors, %d codes within the rounding tie band", r.Convention, r.Tensors, r.TieCodes), ReportEntryVisibilityFailureOrVerbose)
				Expect(r.Err()).NotTo(HaveOccurred())
			})
			It(fmt.Sprintf("has the logits of -master-dir within relL2 %g", checkpoint.MasterLogitsRelL2), func() {
				m, err := s.Model()
				Expect(err).NotTo(HaveOccurred())
				var c checkpoint.LogitsComparison
				Step("loading the master and running both", func() {
					master, err := checkpoint.Load(opts.MasterDir)
					Expect(err).NotTo(HaveOccurred())
					c, err = checkpoint.CompareLogits(m, master, masterBatch(s.Config))
					Expect(err).NotTo(HaveOccurred())
				})
				AddReportEntry("logits relL2 against the master", c.RelL2, ReportEntryVisibilityFailureOrVerbose)
				Expect(c.Err()).NotTo(HaveOccurred(), "%s against %s", s.Source, opts.MasterDir)
			})
		})
	})
}
