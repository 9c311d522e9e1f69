package conformance

import (
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
		It("has every tensor of the preset's inventory with the right shape and dtype", func() {
			report, err := checkpoint.Inspect(dir, preset.Config)
			Expect(err).NotTo(HaveOccurred())
			AddReportEntry("checkpoint", report.Mode+" layout, "+plural(len(report.Files), "file")+", "+plural(report.TensorCount, "tensor"), ReportEntryVisibilityFailureOrVerbose)
			lines := ""
			for _, p := range report.Problems {
				lines += p.String() + "\n"
			}
			Expect(report.Problems).To(BeEmpty(), "%s: %d tensor problems against %s:\n%s", dir, len(report.Problems), preset.Name, lines)
		})
	})
}
