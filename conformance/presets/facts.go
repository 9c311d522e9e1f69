package presets

import (
	"fmt"
	"path/filepath"

	"github.com/tritter-ai/conformance/model"
)

// Facts are published architecture facts, written here independently of the
// preset JSON files so that a spec can catch an edited preset.
type Facts struct {
	Source                string
	HiddenSize            int64
	NumHiddenLayers       int64
	NumAttentionHeads     int64
	HeadDim               int64
	NumKeyValueHeads      int64
	IntermediateSize      int64
	VocabSize             int64
	MaxPositionEmbeddings int64
	RopeTheta             float64
	HiddenAct             string
	RMSNormEps            float64
	TieWordEmbeddings     bool
	ParamCount            int64
	TernaryParamCount     int64 // 0 when not published
}

// KnownFacts maps a preset name to the facts it must reproduce.
var KnownFacts = map[string]Facts{
	// HF microsoft/bitnet-b1.58-2B-4T config.json (shared/REFERENCE.md).
	"bitnet-b1.58-2b-4t": {
		Source:     "microsoft/bitnet-b1.58-2B-4T config.json",
		HiddenSize: 2560, NumHiddenLayers: 30, NumAttentionHeads: 20, HeadDim: 128, NumKeyValueHeads: 5,
		IntermediateSize: 6912, VocabSize: 128256, MaxPositionEmbeddings: 4096, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: true,
		ParamCount: 2_412_820_480, TernaryParamCount: 2_084_044_800,
	},
	// Tritter's own model specs with the BitNet block (shared/REFERENCE.md,
	// "Tritter sizes").
	"tritter-7b": {
		Source:     "Tritter-7B model spec",
		HiddenSize: 4096, NumHiddenLayers: 32, NumAttentionHeads: 32, HeadDim: 128, NumKeyValueHeads: 8,
		IntermediateSize: 11008, VocabSize: 65536, MaxPositionEmbeddings: 131072, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: false,
		ParamCount: 6_208_319_488,
	},
	"tritter-1b": {
		Source:     "Tritter-1B model spec",
		HiddenSize: 2048, NumHiddenLayers: 16, NumAttentionHeads: 16, HeadDim: 128, NumKeyValueHeads: 16,
		IntermediateSize: 5632, VocabSize: 65536, MaxPositionEmbeddings: 131072, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: false,
		ParamCount: 1_090_709_504,
	},
	"tritter-3b": {
		Source:     "Tritter-3B model spec",
		HiddenSize: 2560, NumHiddenLayers: 26, NumAttentionHeads: 20, HeadDim: 128, NumKeyValueHeads: 20,
		IntermediateSize: 6912, VocabSize: 65536, MaxPositionEmbeddings: 131072, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: false,
		ParamCount: 2_397_688_832,
	},
	"tritter-10b": {
		Source:     "Tritter-10B model spec",
		HiddenSize: 4096, NumHiddenLayers: 40, NumAttentionHeads: 32, HeadDim: 128, NumKeyValueHeads: 8,
		IntermediateSize: 14336, VocabSize: 65536, MaxPositionEmbeddings: 131072, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: false,
		ParamCount: 9_262_092_288,
	},
	"tritter-13b": {
		Source:     "Tritter-13B model spec",
		HiddenSize: 5120, NumHiddenLayers: 40, NumAttentionHeads: 40, HeadDim: 128, NumKeyValueHeads: 8,
		IntermediateSize: 13824, VocabSize: 65536, MaxPositionEmbeddings: 131072, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: false,
		ParamCount: 11_682_309_120,
	},
	"tritter-70b": {
		Source:     "Tritter-70B model spec",
		HiddenSize: 8192, NumHiddenLayers: 80, NumAttentionHeads: 64, HeadDim: 128, NumKeyValueHeads: 8,
		IntermediateSize: 28672, VocabSize: 65536, MaxPositionEmbeddings: 131072, RopeTheta: 500000,
		HiddenAct: "relu2", RMSNormEps: 1e-5, TieWordEmbeddings: false,
		ParamCount: 69_529_051_136,
	},
}

// Field is one architecture field of the seed's checklist.
type Field struct {
	Name string // HF config key
	// ShapeOrNumerics marks fields that decide a weight shape or a numeric
	// behaviour; a compatibility claim must match on all of them.
	ShapeOrNumerics bool
	config          func(model.Config) any
	facts           func(Facts) any
}

// Value returns the field's value in a config (derived values included).
func (f Field) Value(c model.Config) any { return f.config(c) }

// Fact returns the field's published value.
func (f Field) Fact(x Facts) any { return f.facts(x) }

// Checklist is the seed's architecture checklist, in its order.
var Checklist = []Field{
	{"hidden_size", true, func(c model.Config) any { return c.HiddenSize }, func(f Facts) any { return f.HiddenSize }},
	{"num_hidden_layers", true, func(c model.Config) any { return c.NumHiddenLayers }, func(f Facts) any { return f.NumHiddenLayers }},
	{"num_attention_heads", true, func(c model.Config) any { return c.NumAttentionHeads }, func(f Facts) any { return f.NumAttentionHeads }},
	{"head_dim", true, func(c model.Config) any { return c.HeadDim() }, func(f Facts) any { return f.HeadDim }},
	{"num_key_value_heads", true, func(c model.Config) any { return c.NumKeyValueHeads }, func(f Facts) any { return f.NumKeyValueHeads }},
	{"intermediate_size", true, func(c model.Config) any { return c.IntermediateSize }, func(f Facts) any { return f.IntermediateSize }},
	{"vocab_size", true, func(c model.Config) any { return c.VocabSize }, func(f Facts) any { return f.VocabSize }},
	{"max_position_embeddings", true, func(c model.Config) any { return c.MaxPositionEmbeddings }, func(f Facts) any { return f.MaxPositionEmbeddings }},
	{"rope_theta", true, func(c model.Config) any { return c.RopeTheta }, func(f Facts) any { return f.RopeTheta }},
	{"hidden_act", true, func(c model.Config) any { return c.HiddenAct }, func(f Facts) any { return f.HiddenAct }},
	{"rms_norm_eps", true, func(c model.Config) any { return c.RMSNormEps }, func(f Facts) any { return f.RMSNormEps }},
	{"tie_word_embeddings", true, func(c model.Config) any { return c.TieWordEmbeddings }, func(f Facts) any { return f.TieWordEmbeddings }},
}

// Mismatch is one field where a config differs from a reference.
type Mismatch struct {
	Field           string
	Ours, Reference any
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s: ours=%v, reference=%v", m.Field, m.Ours, m.Reference)
}

// CompareConfigs lists every checklist field that decides a weight shape or
// a numeric behaviour on which ours differs from reference, plus
// attention_bias.
func CompareConfigs(ours, reference model.Config) []Mismatch {
	var out []Mismatch
	for _, f := range Checklist {
		if !f.ShapeOrNumerics {
			continue
		}
		if a, b := f.Value(ours), f.Value(reference); a != b {
			out = append(out, Mismatch{f.Name, a, b})
		}
	}
	if ours.AttentionBias != reference.AttentionBias {
		out = append(out, Mismatch{"attention_bias", ours.AttentionBias, reference.AttentionBias})
	}
	return out
}

// CompareFacts lists every checklist field on which a config differs from
// published facts, plus the parameter counts.
func CompareFacts(c model.Config, facts Facts) []Mismatch {
	var out []Mismatch
	for _, f := range Checklist {
		if a, b := f.Value(c), f.Fact(facts); a != b {
			out = append(out, Mismatch{f.Name, a, b})
		}
	}
	if n := c.ParamCount(); n != facts.ParamCount {
		out = append(out, Mismatch{"parameter count", n, facts.ParamCount})
	}
	if facts.TernaryParamCount != 0 && c.TernaryParamCount() != facts.TernaryParamCount {
		out = append(out, Mismatch{"ternary parameter count", c.TernaryParamCount(), facts.TernaryParamCount})
	}
	return out
}

// MismatchReport formats mismatches one per line.
func MismatchReport(ms []Mismatch) string {
	s := ""
	for _, m := range ms {
		s += m.String() + "\n"
	}
	return s
}

// CheckpointMismatches compares a checkpoint folder's config.json with a
// preset on every field that decides a weight shape or a numeric behaviour.
func CheckpointMismatches(dir string, preset Preset) ([]Mismatch, error) {
	cfg, err := model.ReadConfigFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	return CompareConfigs(cfg, preset.Config), nil
}
