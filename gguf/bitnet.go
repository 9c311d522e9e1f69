package gguf

import (
	"fmt"
	"strings"

	"github.com/tritter-ai/conformance/model"
)

// The architecture strings of the BitNet llama.cpp fork (LLM_ARCH_NAMES):
// bitnet-b1.58 and bitnet-25 run build_bitnet_158 (relu²); bitnet is the
// 2024 build_bitnet graph with SiLU.
const (
	ArchB158   = "bitnet-b1.58"
	Arch25     = "bitnet-25"
	ArchBitnet = "bitnet"
)

// FileTypeI2S is general.file_type of an I2_S file (LLAMA_FTYPE_MOSTLY_I2_S).
const FileTypeI2S = 40

// QuantizationVersion is the general.quantization_version llama-quantize appends.
const QuantizationVersion = 2

// layerTensors maps each decoder-layer HF name suffix to its GGUF name
// suffix, in the fork's file order (the sorted safetensors keys).
var layerTensors = []struct{ hf, gguf string }{
	{"input_layernorm.weight", "attn_norm.weight"},
	{"mlp.down_proj.weight", "ffn_down.weight"},
	{"mlp.ffn_sub_norm.weight", "ffn_sub_norm.weight"},
	{"mlp.gate_proj.weight", "ffn_gate.weight"},
	{"mlp.up_proj.weight", "ffn_up.weight"},
	{"post_attention_layernorm.weight", "ffn_norm.weight"},
	{"self_attn.attn_sub_norm.weight", "attn_sub_norm.weight"},
	{"self_attn.k_proj.weight", "attn_k.weight"},
	{"self_attn.o_proj.weight", "attn_output.weight"},
	{"self_attn.q_proj.weight", "attn_q.weight"},
	{"self_attn.v_proj.weight", "attn_v.weight"},
}

// Tensor is one tensor of a BitNet GGUF with its HF counterpart.
type Tensor struct {
	HF, GGUF string
	Spec     model.TensorSpec // the HF inventory entry: shape [out, in], kind, layer
}

// Ne is the ggml shape: the HF shape reversed.
func (t Tensor) Ne() []uint64 {
	ne := make([]uint64, len(t.Spec.Shape))
	for i, d := range t.Spec.Shape {
		ne[len(ne)-1-i] = uint64(d)
	}
	return ne
}

// TensorMap lists the GGUF tensors of cfg in file order: token_embd, the
// untied output (when cfg is untied), each layer, output_norm.
func TensorMap(cfg model.Config) []Tensor {
	specs := map[string]model.TensorSpec{}
	for _, s := range cfg.Inventory() {
		specs[s.Name] = s
	}
	out := []Tensor{{"model.embed_tokens.weight", "token_embd.weight", specs["model.embed_tokens.weight"]}}
	if s, ok := specs["lm_head.weight"]; ok {
		out = append(out, Tensor{"lm_head.weight", "output.weight", s})
	}
	for i := 0; i < int(cfg.NumHiddenLayers); i++ {
		for _, lt := range layerTensors {
			hf := fmt.Sprintf("model.layers.%d.%s", i, lt.hf)
			out = append(out, Tensor{hf, fmt.Sprintf("blk.%d.%s", i, lt.gguf), specs[hf]})
		}
	}
	return append(out, Tensor{"model.norm.weight", "output_norm.weight", specs["model.norm.weight"]})
}

// A Source gives an HF model's tensors as the converter sees them.
type Source interface {
	// Ternary returns a linear's ternary values [out·in] (-1, 0, 1,
	// row-major) and the scale that multiplies them (≈ mean|W|).
	Ternary(hfName string) (w []int8, scale float32, err error)
	// Floats returns an embedding, norm or lm_head as float32.
	Floats(hfName string) ([]float32, error)
}

// Defect is a kind of broken file the writer can make on purpose.
type Defect int

const (
	Faithful Defect = iota
	// InvertedScale stores 1/scale (a bitlinear checkpoint's weight_scale
	// taken for autobitlinear's).
	InvertedScale
	// PermutedQK applies llama's Q/K row permutation (LlamaModel.permute).
	PermutedQK
	// SequentialLayout, ARMLayout and RowInterleavedLayout pack every
	// ternary tensor in that layout instead of x86 ACT_PARALLEL.
	SequentialLayout
	ARMLayout
	RowInterleavedLayout
	// WrongKeyPrefix writes the arch keys under "llama." while
	// general.architecture says bitnet-b1.58.
	WrongKeyPrefix
	// OldArch labels the file "bitnet", the SiLU graph.
	OldArch
	// Untied adds output.weight (a copy of the embedding) to a tied model.
	Untied
	// FlippedCode changes one ternary code of DefectTensor.
	FlippedCode
	// ZeroTensor makes DefectTensor all zero (codes 0x55, scale 0), as the
	// zeroed re-uploads.
	ZeroTensor
)

var defectNames = []string{"faithful", "inverted-scale", "permuted-qk", "sequential-layout", "arm-layout",
	"row-interleaved-layout", "wrong-key-prefix", "old-arch", "untied", "flipped-code", "zero-tensor"}

func (d Defect) String() string {
	if int(d) < len(defectNames) {
		return defectNames[d]
	}
	return fmt.Sprintf("Defect(%d)", int(d))
}

// Defects lists every broken kind.
var Defects = []Defect{InvertedScale, PermutedQK, SequentialLayout, ARMLayout, RowInterleavedLayout, WrongKeyPrefix, OldArch, Untied, FlippedCode, ZeroTensor}

// ParseDefect is the Defect called name.
func ParseDefect(name string) (Defect, error) {
	for i, n := range defectNames {
		if n == name {
			return Defect(i), nil
		}
	}
	return 0, fmt.Errorf("defect %q: expected one of %v", name, defectNames)
}

// BitNetOptions configure WriteBitNet.
type BitNetOptions struct {
	// Name is general.name (the converter writes the model folder's name).
	Name string
	// OutType is "i2_s" (the default, llama-quantize's output), or "f32"
	// or "f16" (the converter's --outtype: ternarized floats ±scale, 0).
	OutType string
	Defect  Defect
	// DefectTensor is the GGUF tensor FlippedCode and ZeroTensor break;
	// by default blk.0.attn_v.weight and blk.0.ffn_down.weight.
	DefectTensor string
}

// WriteBitNet writes cfg's model from src as convert-hf-to-gguf-bitnet.py
// followed by llama-quantize I2_S writes it: arch bitnet-b1.58, the keys of
// the facts page in the converter's order with general.quantization_version
// appended, tensors under their GGUF names with ne the HF shape reversed,
// F16 token_embd (and output when untied), F32 norms, linears in I2_S x86
// layout with the scale in the 32-byte tail. No tokenizer keys are written
// (a synthetic model has no tokenizer). opts.Defect breaks it on purpose.
func WriteBitNet(path string, cfg model.Config, src Source, opts BitNetOptions) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var linearType Type
	switch opts.OutType {
	case "", "i2_s":
		linearType = TypeI2S
	case "f32":
		linearType = TypeF32
	case "f16":
		linearType = TypeF16
	default:
		return fmt.Errorf("%s: out type %q: expected i2_s, f32 or f16", path, opts.OutType)
	}
	tensors := TensorMap(cfg)
	if opts.Defect == Untied && cfg.TieWordEmbeddings {
		extra := Tensor{"model.embed_tokens.weight", "output.weight", tensors[0].Spec}
		tensors = append(tensors[:1], append([]Tensor{extra}, tensors[1:]...)...)
	}
	target := opts.DefectTensor
	if target == "" && opts.Defect == FlippedCode {
		target = "blk.0.attn_v.weight"
	}
	if target == "" && opts.Defect == ZeroTensor {
		target = "blk.0.ffn_down.weight"
	}
	layout := LayoutX86
	switch opts.Defect {
	case SequentialLayout:
		layout = LayoutSequential
	case ARMLayout:
		layout = LayoutARM
	case RowInterleavedLayout:
		layout = LayoutRowInterleaved
	}
	var wts []WriteTensor
	for _, t := range tensors {
		t := t
		wt := WriteTensor{Name: t.GGUF, Ne: t.Ne()}
		switch t.Spec.Kind {
		case model.KindLinear:
			wt.Type = linearType
			wt.Data = func() ([]byte, error) {
				return linearBytes(cfg, src, t, linearType, layout, opts.Defect, t.GGUF == target)
			}
		case model.KindNorm:
			wt.Type = TypeF32
			wt.Data = func() ([]byte, error) { return floatBytes(src, t.HF, TypeF32) }
		default:
			wt.Type = TypeF16
			wt.Data = func() ([]byte, error) { return floatBytes(src, t.HF, TypeF16) }
		}
		wts = append(wts, wt)
	}
	return Write(path, bitnetKVs(cfg, opts, linearType), wts)
}

func floatBytes(src Source, name string, t Type) ([]byte, error) {
	v, err := src.Floats(name)
	if err != nil {
		return nil, err
	}
	return EncodeFloats(t, v), nil
}

func linearBytes(cfg model.Config, src Source, t Tensor, typ Type, layout Layout, defect Defect, target bool) ([]byte, error) {
	w, scale, err := src.Ternary(t.HF)
	if err != nil {
		return nil, err
	}
	rows, cols := int(t.Spec.Shape[0]), int(t.Spec.Shape[1])
	if len(w) != rows*cols {
		return nil, fmt.Errorf("source gave %d ternary values for %s [%d, %d]", len(w), t.HF, rows, cols)
	}
	switch {
	case defect == InvertedScale:
		scale = 1 / scale
	case defect == PermutedQK && QKHeads(cfg, t.GGUF) > 0:
		w = LlamaPermute(w, rows, cols, QKHeads(cfg, t.GGUF))
	case defect == FlippedCode && target:
		w = append([]int8(nil), w...)
		e := min(cols+2, len(w)-1) // row 1, col 2
		w[e] = (w[e]+2)%3 - 1      // -1→0, 0→1, 1→-1
	case defect == ZeroTensor && target:
		w = make([]int8, len(w))
		scale = 0
	}
	if typ == TypeI2S {
		return PackI2S(layout, w, rows, cols, scale)
	}
	v := make([]float32, len(w))
	for i, c := range w {
		v[i] = float32(c) * scale
	}
	return EncodeFloats(typ, v), nil
}

// QKHeads is the head count of a Q (num_attention_heads) or K
// (num_key_value_heads) projection, 0 for any other tensor.
func QKHeads(cfg model.Config, ggufName string) int {
	switch {
	case strings.HasSuffix(ggufName, ".attn_q.weight"):
		return int(cfg.NumAttentionHeads)
	case strings.HasSuffix(ggufName, ".attn_k.weight"):
		return int(cfg.NumKeyValueHeads)
	}
	return 0
}

// LlamaPermute reorders the rows of w [rows, cols] (codes, or a mask of
// them) as the llama
// converter's permute(weights, n_head) does: within each head, row
// j·hd/2 + i moves to 2i + j (interleaving the two rotary halves).
func LlamaPermute[T any](w []T, rows, cols, heads int) []T {
	hd := rows / heads
	out := make([]T, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				dst, src := h*hd+2*i+j, h*hd+j*(hd/2)+i
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

// bitnetKVs are the metadata pairs in convert-hf-to-gguf-bitnet.py's order,
// then llama-quantize's general.quantization_version for I2_S.
func bitnetKVs(cfg model.Config, opts BitNetOptions, linearType Type) []KV {
	arch, prefix := ArchB158, ArchB158+"."
	switch opts.Defect {
	case WrongKeyPrefix:
		prefix = "llama."
	case OldArch:
		arch, prefix = ArchBitnet, ArchBitnet+"."
	}
	name := opts.Name
	if name == "" {
		name = "bitnet"
	}
	fileType := uint32(linearType)
	if linearType == TypeI2S {
		fileType = FileTypeI2S
	}
	kvs := []KV{
		{"general.architecture", Str(arch)},
		{"general.name", Str(name)},
		{prefix + "block_count", U32(uint32(cfg.NumHiddenLayers))},
		{prefix + "context_length", U32(uint32(cfg.MaxPositionEmbeddings))},
		{prefix + "embedding_length", U32(uint32(cfg.HiddenSize))},
		{prefix + "feed_forward_length", U32(uint32(cfg.IntermediateSize))},
		{prefix + "attention.head_count", U32(uint32(cfg.NumAttentionHeads))},
		{prefix + "attention.head_count_kv", U32(uint32(cfg.NumKeyValueHeads))},
		{prefix + "rope.freq_base", F32(float32(cfg.RopeTheta))},
		{prefix + "attention.layer_norm_rms_epsilon", F32(float32(cfg.RMSNormEps))},
		{"general.file_type", U32(fileType)},
		{prefix + "vocab_size", U32(uint32(cfg.VocabSize))},
		{prefix + "rope.dimension_count", U32(uint32(cfg.HeadDim()))},
	}
	if linearType == TypeI2S {
		kvs = append(kvs, KV{"general.quantization_version", U32(QuantizationVersion)})
	}
	return kvs
}
