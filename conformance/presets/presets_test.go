package presets_test

import (
	"os"
	"path/filepath"

	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/presets"
)

func TestOfficialParameterCounts(t *testing.T) {
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"bitnet-b1.58-2b-4t": 2_412_820_480,
		// shared/REFERENCE.md, "Tritter sizes"
		"tritter-1b":  1_090_709_504,
		"tritter-3b":  2_397_688_832,
		"tritter-7b":  6_208_319_488,
		"tritter-10b": 9_262_092_288,
		"tritter-13b": 11_682_309_120,
		"tritter-70b": 69_529_051_136,
	} {
		p, ok := all[name]
		if !ok {
			t.Fatalf("preset %s missing", name)
		}
		if got := p.Config.ParamCount(); got != want {
			t.Errorf("%s: ParamCount = %d, expected %d", name, got, want)
		}
		if mismatches := presets.CompareFacts(p.Config, presets.KnownFacts[name]); len(mismatches) > 0 {
			t.Errorf("%s differs from its published facts:\n%s", name, presets.MismatchReport(mismatches))
		}
	}
	if got := all["bitnet-b1.58-2b-4t"].Config.TernaryParamCount(); got != 2_084_044_800 {
		t.Errorf("2B-4T ternary parameters = %d, expected 2,084,044,800", got)
	}
	fp := all["tritter-7b"].Config.Footprint()
	if fp.FP32Bytes != 24_833_277_952 {
		t.Errorf("tritter-7b fp32 footprint = %d, expected 24,833,277,952 (24.8 GB)", fp.FP32Bytes)
	}
}

// Every JSON file in the preset folder is a preset: adding one needs no code.
func TestPresetFolderIsTheRegistry(t *testing.T) {
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no preset files: %v", err)
	}
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(files) {
		t.Errorf("%d presets loaded from %d files", len(all), len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		p, ok := all[name]
		if !ok {
			t.Errorf("%s is not a preset", f)
			continue
		}
		if err := p.Config.Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
	for _, name := range presets.Defaults {
		if _, ok := all[name]; !ok {
			t.Errorf("default config %s is not a preset", name)
		}
	}
}

func TestConfigDirAddsAndOverridesPresets(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("tiny-mha-tied.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "my-preset.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	selected, err := presets.Select([]string{"my-preset", "tiny-gqa-untied"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(selected) != 2 || selected[0].Name != "my-preset" || selected[0].Source != filepath.Join(dir, "my-preset.json") {
		t.Errorf("selected %+v", selected)
	}
}

func TestUnknownPresetListsKnownOnes(t *testing.T) {
	_, err := presets.Select([]string{"bitnet-2b"})
	if err == nil || !strings.Contains(err.Error(), `unknown preset "bitnet-2b"`) || !strings.Contains(err.Error(), "bitnet-b1.58-2b-4t, tiny-gqa-untied") {
		t.Errorf("Select(bitnet-2b) = %v", err)
	}
}

func TestCompareConfigsNamesEveryField(t *testing.T) {
	all, _ := presets.Load()
	ref := all["bitnet-b1.58-2b-4t"].Config
	seed := ref
	seed.HiddenSize, seed.NumHiddenLayers, seed.NumAttentionHeads, seed.NumKeyValueHeads = 2048, 24, 32, 32
	seed.IntermediateSize, seed.VocabSize, seed.RopeTheta, seed.HeadDimension = 5632, 152064, 10000, 0
	report := presets.MismatchReport(presets.CompareConfigs(seed, ref))
	for _, line := range []string{
		"hidden_size: ours=2048, reference=2560",
		"num_hidden_layers: ours=24, reference=30",
		"num_attention_heads: ours=32, reference=20",
		"num_key_value_heads: ours=32, reference=5",
		"intermediate_size: ours=5632, reference=6912",
		"vocab_size: ours=152064, reference=128256",
		"rope_theta: ours=10000, reference=500000",
		"head_dim: ours=64, reference=128",
	} {
		if !strings.Contains(report, line+"\n") {
			t.Errorf("report lacks %q:\n%s", line, report)
		}
	}
}

// The presets of 10B parameters and up are huge, and the default configs
// never select one; make conformance-huge runs them.
func TestHugePresetsAreNotDefault(t *testing.T) {
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	for name, huge := range map[string]bool{
		"tritter-1b": false, "tritter-3b": false, "tritter-7b": false, "bitnet-b1.58-2b-4t": false,
		"tritter-10b": true, "tritter-13b": true, "tritter-70b": true,
	} {
		if got := all[name].Huge(); got != huge {
			t.Errorf("%s: Huge() = %v, expected %v", name, got, huge)
		}
	}
	for _, name := range presets.Defaults {
		if all[name].Huge() {
			t.Errorf("default config %s is huge", name)
		}
	}
}
