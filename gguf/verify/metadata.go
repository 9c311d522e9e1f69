package verify

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/model"
)

// archKey is one arch key the converter writes, with its HF source.
type archKey struct {
	suffix  string // after "<arch>."
	hfField string
	float   bool // f32 (else u32)
	want    func(c model.Config) float64
	// loaderDefault, when set, is what the loader uses for a missing key:
	// a missing key is a finding only when that differs from HF's value.
	loaderDefault func(c model.Config) (float64, bool)
}

var archKeys = []archKey{
	{"block_count", "num_hidden_layers", false, func(c model.Config) float64 { return float64(c.NumHiddenLayers) }, nil},
	{"context_length", "max_position_embeddings", false, func(c model.Config) float64 { return float64(c.MaxPositionEmbeddings) }, nil},
	{"embedding_length", "hidden_size", false, func(c model.Config) float64 { return float64(c.HiddenSize) }, nil},
	{"feed_forward_length", "intermediate_size", false, func(c model.Config) float64 { return float64(c.IntermediateSize) }, nil},
	{"attention.head_count", "num_attention_heads", false, func(c model.Config) float64 { return float64(c.NumAttentionHeads) }, nil},
	{"attention.head_count_kv", "num_key_value_heads", false, func(c model.Config) float64 { return float64(c.NumKeyValueHeads) },
		func(c model.Config) (float64, bool) { return float64(c.NumAttentionHeads), true }},
	{"rope.freq_base", "rope_theta", true, func(c model.Config) float64 { return float64(float32(c.RopeTheta)) },
		func(model.Config) (float64, bool) { return 10000, true }},
	{"attention.layer_norm_rms_epsilon", "rms_norm_eps", true, func(c model.Config) float64 { return float64(float32(c.RMSNormEps)) }, nil},
	{"vocab_size", "vocab_size", false, func(c model.Config) float64 { return float64(c.VocabSize) }, nil},
	{"rope.dimension_count", "head_dim", false, func(c model.Config) float64 { return float64(c.HeadDim()) }, nil},
}

// MetadataLine is one compared key, for reports: "bitnet-b1.58.block_count:
// gguf=30, hf num_hidden_layers=30".
type MetadataLine struct {
	Key  string
	OK   bool
	Text string
}

// Metadata checks general.architecture and every arch key the converter
// writes against the HF config, key by key. bitnet-25 is accepted as the
// same graph as bitnet-b1.58; the old "bitnet" arch (the SiLU graph) is
// named as incompatible; missing keys and keys under another prefix are
// named.
func (v *Verifier) Metadata() []Finding {
	var out []Finding
	for _, l := range v.MetadataLines() {
		if !l.OK {
			out = append(out, finding(CheckMetadata, l.Key, "", "", "", "%s", l.Text))
		}
	}
	return out
}

// MetadataLines are the key-by-key comparisons Metadata makes, passing or
// not, in file-format order.
func (v *Verifier) MetadataLines() []MetadataLine {
	var lines []MetadataLine
	add := func(key string, ok bool, format string, args ...any) {
		lines = append(lines, MetadataLine{key, ok, key + ": " + fmt.Sprintf(format, args...)})
	}
	arch := v.arch
	switch arch {
	case gguf.ArchB158:
		add("general.architecture", true, "gguf=%s (build_bitnet_158, relu²)", arch)
	case gguf.Arch25:
		add("general.architecture", true, "gguf=%s, the same build_bitnet_158 graph as bitnet-b1.58 (the name before the April 2025 re-upload)", arch)
	case gguf.ArchBitnet:
		add("general.architecture", false, "gguf=%s, expected %s: %q is the 2024 build_bitnet graph with SiLU, incompatible with this relu² model (hf hidden_act=%s)",
			arch, gguf.ArchB158, arch, v.cfg.HiddenAct)
	case "":
		add("general.architecture", false, "missing (or not a string), expected %s", gguf.ArchB158)
	default:
		add("general.architecture", false, "gguf=%s, expected %s (or %s): not a BitNet b1.58 architecture of the fork", arch, gguf.ArchB158, gguf.Arch25)
	}
	prefix := arch + "."
	if arch == "" {
		prefix = gguf.ArchB158 + "."
	}
	for _, k := range archKeys {
		key := prefix + k.suffix
		want := k.want(v.cfg)
		wantText := formatNumber(want, k.float)
		val, ok := v.file.Value(key)
		if !ok {
			if k.loaderDefault != nil {
				if d, _ := k.loaderDefault(v.cfg); d == want {
					add(key, true, "absent, the loader's default %s equals hf %s=%s", formatNumber(d, k.float), k.hfField, wantText)
					continue
				}
			}
			msg := fmt.Sprintf("missing, hf %s=%s", k.hfField, wantText)
			if k.loaderDefault != nil {
				d, _ := k.loaderDefault(v.cfg)
				msg += fmt.Sprintf("; the loader would use its default %s", formatNumber(d, k.float))
			}
			if others := v.keysWithSuffix(k.suffix, key); len(others) > 0 {
				msg += fmt.Sprintf("; the file has %s under another prefix, which the loader of %s does not read", strings.Join(others, ", "), strings.TrimSuffix(prefix, "."))
			}
			add(key, false, "%s", msg)
			continue
		}
		got, typeOK := numberOf(val, k.float)
		switch {
		case !typeOK:
			want := "u32"
			if k.float {
				want = "f32"
			}
			add(key, false, "type %s, expected %s (the loader reads it as %s), hf %s=%s", val.Type, want, want, k.hfField, wantText)
		case got != want:
			add(key, false, "gguf=%s, hf %s=%s", formatNumber(got, k.float), k.hfField, wantText)
		default:
			add(key, true, "gguf=%s, hf %s=%s", formatNumber(got, k.float), k.hfField, wantText)
		}
	}
	if ft, want, ok := v.expectedFileType(); ok {
		val, present := v.file.Value("general.file_type")
		got, typeOK := numberOf(val, false)
		switch {
		case !present:
			add("general.file_type", false, "missing, expected %d for %s linears", want, ft)
		case !typeOK:
			add("general.file_type", false, "type %s, expected u32 (%d for %s linears)", val.Type, want, ft)
		case got != float64(want):
			add("general.file_type", false, "gguf=%s, expected %d for %s linears", formatNumber(got, false), want, ft)
		default:
			add("general.file_type", true, "gguf=%d (%s linears)", want, ft)
		}
	}
	if val, ok := v.file.Value("general.quantization_version"); ok {
		got, typeOK := numberOf(val, false)
		if !typeOK || got != gguf.QuantizationVersion {
			add("general.quantization_version", false, "gguf=%s (%s), expected u32 %d (llama-quantize's GGML_QUANT_VERSION)", valueText(val), val.Type, gguf.QuantizationVersion)
		} else {
			add("general.quantization_version", true, "gguf=%d (the file went through llama-quantize)", gguf.QuantizationVersion)
		}
	}
	return lines
}

// keysWithSuffix lists the file's keys "<other>.<suffix>" other than key.
func (v *Verifier) keysWithSuffix(suffix, key string) []string {
	var out []string
	for _, kv := range v.file.KVs {
		if kv.Key != key && strings.HasSuffix(kv.Key, "."+suffix) && !strings.HasPrefix(kv.Key, "general.") {
			out = append(out, fmt.Sprintf("%s=%s", kv.Key, valueText(kv.Value)))
		}
	}
	return out
}

// expectedFileType is general.file_type for the type most of the file's
// linears have (LLAMA_FTYPE_MOSTLY_I2_S = 40 for I2_S).
func (v *Verifier) expectedFileType() (gguf.Type, uint32, bool) {
	counts := map[gguf.Type]int{}
	for _, t := range gguf.TensorMap(v.cfg) {
		if t.Spec.Kind != model.KindLinear {
			continue
		}
		if info, ok := v.file.Tensor(t.GGUF); ok {
			counts[info.Type]++
		}
	}
	best, n := gguf.Type(0), 0
	types := make([]gguf.Type, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	for _, t := range types {
		if counts[t] > n {
			best, n = t, counts[t]
		}
	}
	if n == 0 {
		return 0, 0, false
	}
	switch best {
	case gguf.TypeI2S:
		return best, gguf.FileTypeI2S, true
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeTL1, gguf.TypeTL2:
		return best, uint32(best), true
	case gguf.TypeBF16:
		return best, 32, true // LLAMA_FTYPE_MOSTLY_BF16
	}
	return 0, 0, false
}

// numberOf reads an integer (u32 only) or float (f32 only) key, as the
// loader's typed getters do.
func numberOf(val gguf.Value, float bool) (float64, bool) {
	if float {
		return val.Float, val.Type == gguf.ValueFloat32
	}
	return float64(val.Uint), val.Type == gguf.ValueUint32
}

func formatNumber(x float64, float bool) string {
	if float {
		return fmt.Sprintf("%g", float32(x))
	}
	return fmt.Sprintf("%d", int64(x))
}

func valueText(val gguf.Value) string {
	switch val.Type {
	case gguf.ValueUint8, gguf.ValueUint16, gguf.ValueUint32, gguf.ValueUint64:
		return fmt.Sprint(val.Uint)
	case gguf.ValueInt8, gguf.ValueInt16, gguf.ValueInt32, gguf.ValueInt64:
		return fmt.Sprint(val.Int)
	case gguf.ValueFloat32:
		return fmt.Sprintf("%g", float32(val.Float))
	case gguf.ValueFloat64:
		return fmt.Sprintf("%g", val.Float)
	case gguf.ValueBool:
		return fmt.Sprint(val.Bool)
	case gguf.ValueString:
		return fmt.Sprintf("%q", val.String)
	case gguf.ValueArray:
		return fmt.Sprintf("[%d %s]", len(val.Array), val.ItemType)
	}
	return "?"
}

// Inventory checks that the file holds exactly the tensors of the HF model
// (gguf.TensorMap: names, ne = HF shape reversed) with types bitnet.cpp
// loads: F16/F32/BF16 for token_embd and output, F32 for norms, I2_S (or
// TL1, TL2, F32, F16, BF16) for linears.
func (v *Verifier) Inventory() []Finding {
	var out []Finding
	expected := map[string]bool{}
	for _, t := range gguf.TensorMap(v.cfg) {
		expected[t.GGUF] = true
		info, ok := v.file.Tensor(t.GGUF)
		if !ok {
			out = append(out, finding(CheckInventory, "", t.GGUF, "present", "missing",
				"%s: missing, expected ne %v (HF %s %v)", t.GGUF, t.Ne(), t.HF, t.Spec.Shape))
			continue
		}
		if !equalNe(info.Ne, t.Ne()) {
			out = append(out, finding(CheckInventory, "", t.GGUF, fmt.Sprint(t.Ne()), fmt.Sprint(info.Ne),
				"%s: ne %v, expected %v (HF %s %v reversed)", t.GGUF, info.Ne, t.Ne(), t.HF, t.Spec.Shape))
		}
		if allowed := allowedTypes(t.Spec.Kind); !typeIn(info.Type, allowed) {
			out = append(out, finding(CheckInventory, "", t.GGUF, typeList(allowed), info.Type.String(),
				"%s: type %s, expected %s", t.GGUF, info.Type, typeList(allowed)))
		}
	}
	for _, info := range v.file.Tensors {
		if expected[info.Name] {
			continue
		}
		if info.Name == "output.weight" && v.cfg.TieWordEmbeddings {
			out = append(out, finding(CheckInventory, "", info.Name, "absent", "present",
				"%s: in the file, but the HF model is tied (tie_word_embeddings=true, no lm_head.weight): the converter writes no output.weight for a tied model", info.Name))
			continue
		}
		out = append(out, finding(CheckInventory, "", info.Name, "absent", "present",
			"%s: %s %v, not a tensor of this HF model", info.Name, info.Type, info.Ne))
	}
	return out
}

func allowedTypes(k model.TensorKind) []gguf.Type {
	switch k {
	case model.KindLinear:
		return []gguf.Type{gguf.TypeI2S, gguf.TypeTL1, gguf.TypeTL2, gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16}
	case model.KindNorm:
		return []gguf.Type{gguf.TypeF32}
	}
	return []gguf.Type{gguf.TypeF16, gguf.TypeF32, gguf.TypeBF16}
}

func typeIn(t gguf.Type, ts []gguf.Type) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

func typeList(ts []gguf.Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, " or ")
}

func equalNe(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// relDiff is |a-b|/|b|.
func relDiff(a, b float64) float64 { return math.Abs(a-b) / math.Abs(b) }
