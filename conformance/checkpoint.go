package conformance

import (
	"fmt"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/knownanswer"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// describeCheckpointArchitecture checks a real checkpoint folder offline:
// its config.json against the preset, and every tensor header against the
// preset's inventory, without reading tensor data.
// It registers nothing without -model-dir.
func describeCheckpointArchitecture(h *Harness) {
	dir := h.config.ModelDir
	if dir == "" {
		return
	}
	Describe("checkpoint "+dir, Label(LabelCheckpoint, LabelCostConfig), func() {
		var preset Preset
		BeforeEach(func() {
			var err error
			preset, err = h.CheckpointPreset()
			Expect(err).NotTo(HaveOccurred())
		})
		It("has a config.json that matches the preset", func() {
			mismatches, err := presets.CheckpointMismatches(dir, preset)
			Expect(err).NotTo(HaveOccurred())
			if len(mismatches) == 0 {
				AddReportEntry("checkpoint config", "COMPATIBLE with "+preset.Name, ReportEntryVisibilityFailureOrVerbose)
			}
			Expect(mismatches).To(BeEmpty(), "%s/config.json: MISMATCH with %s:\n%s", dir, preset.Name, presets.MismatchReport(mismatches))
		})
		It("has a config.json whose every key is known and BitNet-compatible", func() {
			keys, err := presets.ReadConfigKeys(filepath.Join(dir, "config.json"))
			Expect(err).NotTo(HaveOccurred())
			reportKeys(keys)
			if bad := append(keys.Of(presets.KeyIncompatible), keys.Of(presets.KeyUnknown)...); len(bad) > 0 {
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
			AddReportEntry("checkpoint", layout+", "+units.Plural(len(report.Files), "file")+", "+units.Plural(report.TensorCount, "tensor"), ReportEntryVisibilityFailureOrVerbose)
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
func masterBatch(s *Subject) model.Batch {
	return s.RandomBatch(2, min(16, int(s.Config.MaxPositionEmbeddings)))
}

// CheckpointNumerics are the checks of a -model-dir checkpoint's numbers:
// every known-answer file, skipped with the reason when its fingerprint is
// for another config, and with -master-dir the conversion against its
// master (checkpoint.CompareMaster, then logits within
// checkpoint.MasterLogitsRelL2). Without -model-dir each shipped
// known-answer file is one skipped spec saying what it needs.
var CheckpointNumerics = func() *Specs {
	var s Specs
	s.DescribeRun("Checkpoint numerics", describeWithoutCheckpoint, SuiteLabel("forward"))
	s.DescribeSubject("Checkpoint numerics", describeCheckpointNumerics, SuiteLabel("forward"), ForConfigs{"checkpoint"})
	return &s
}()

func describeWithoutCheckpoint(h *Harness) {
	cfg := h.config
	if cfg.ModelDir != "" {
		return
	}
	answers, err := knownanswer.Load("")
	if err != nil {
		It("reads the known-answer files", Label(LabelCostConfig), func() { Fail(err.Error()) })
		return
	}
	for _, k := range answers {
		It("matches known answers "+k.Path, Label(LabelCostConfig), func() {
			Skip(fmt.Sprintf("%s: needs -model-dir with the %s weights", k.Path, k.Checkpoint))
		})
	}
	if cfg.MasterDir != "" {
		It("compares -model-dir with -master-dir", Label(LabelCostConfig), func() {
			Fail("-master-dir " + cfg.MasterDir + " needs -model-dir: the offline checkpoint converted from it")
		})
	}
}

func describeCheckpointNumerics(s *Subject) {
	cfg := s.h.config
	answers, err := knownanswer.Load(cfg.ModelDir)
	if err != nil {
		It("reads the known-answer files", func() { Fail(err.Error()) })
		return
	}
	for _, k := range answers {
		It("matches known answers "+k.Path+" ("+k.Checkpoint+")", func() {
			if reason := k.SkipReason(s.Config); reason != "" {
				Skip(reason)
			}
			misses, err := k.Check(s.MustModel())
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
	if cfg.MasterDir == "" {
		return
	}
	It("is the conversion of -master-dir "+cfg.MasterDir+": every code, weight_scale and tensor", func() {
		var r *checkpoint.MasterReport
		Step("comparing every tensor with the master", func() {
			var err error
			r, err = checkpoint.CompareMaster(s.Source, cfg.MasterDir)
			Expect(err).NotTo(HaveOccurred())
		})
		s.Report("master comparison", fmt.Sprintf("%s, %d tensors, %d codes within the rounding tie band", r.Convention, r.Tensors, r.TieCodes))
		Expect(r.Err()).NotTo(HaveOccurred())
	})
	It(fmt.Sprintf("has the logits of -master-dir within relL2 %g", checkpoint.MasterLogitsRelL2), func() {
		m := s.MustModel()
		var c checkpoint.LogitsComparison
		Step("loading the master and running both", func() {
			master, err := checkpoint.Load(cfg.MasterDir)
			Expect(err).NotTo(HaveOccurred())
			c, err = checkpoint.CompareLogits(m, master, masterBatch(s))
			Expect(err).NotTo(HaveOccurred())
		})
		s.Report("logits relL2 against the master", c.RelL2)
		Expect(c.Err()).NotTo(HaveOccurred(), "%s against %s", s.Source, cfg.MasterDir)
	})
}
