// Package model is a Go implementation of BitNet b1.58 (HF BitNetForCausalLM
// with online quantization): configuration, parameters, forward pass,
// hand-written backward pass and checkpoint I/O.
//
// Dimension legend used in shape comments throughout the package:
//
//	B   batch size            T   sequence length
//	H   hidden_size           I   intermediate_size
//	V   vocab_size            L   num_hidden_layers
//	nh  num_attention_heads   nkv num_key_value_heads
//	hd  head_dim
package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
)

// Config is an HF-style BitNet config.json. Field names follow the HF keys.
type Config struct {
	Architectures         []string `json:"architectures,omitempty"`
	ModelType             string   `json:"model_type,omitempty"`
	HiddenSize            int64    `json:"hidden_size"`
	IntermediateSize      int64    `json:"intermediate_size"`
	NumHiddenLayers       int64    `json:"num_hidden_layers"`
	NumAttentionHeads     int64    `json:"num_attention_heads"`
	NumKeyValueHeads      int64    `json:"num_key_value_heads"`
	HeadDimension         int64    `json:"head_dim,omitempty"` // 0 means HiddenSize / NumAttentionHeads
	VocabSize             int64    `json:"vocab_size"`
	MaxPositionEmbeddings int64    `json:"max_position_embeddings"`
	RopeTheta             float64  `json:"rope_theta"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	HiddenAct             string   `json:"hidden_act"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	AttentionBias         bool     `json:"attention_bias"`
	InitializerRange      float64  `json:"initializer_range,omitempty"`
	// Token ids are a number or a list (Llama 3 lists several eos ids);
	// they are kept as written, and no numerics use them.
	BOSTokenID json.RawMessage `json:"bos_token_id,omitempty"`
	EOSTokenID json.RawMessage `json:"eos_token_id,omitempty"`
	TorchDtype string          `json:"torch_dtype,omitempty"`

	QuantizationConfig *QuantizationConfig `json:"quantization_config,omitempty"`

	// Conformance holds harness-only facts about a preset. HF ignores it.
	Conformance *ConformanceInfo `json:"conformance,omitempty"`
}

// QuantizationConfig is the HF quantization_config block of a BitNet config.
type QuantizationConfig struct {
	QuantMethod      string `json:"quant_method,omitempty"`
	LinearClass      string `json:"linear_class,omitempty"`
	QuantizationMode string `json:"quantization_mode,omitempty"` // "online" or "offline"
}

// ConformanceInfo is the harness's own block inside a preset config.json.
type ConformanceInfo struct {
	// CompatibleWith names a preset (for example "bitnet-b1.58-2b-4t") whose
	// weight shapes and numeric behaviour this preset claims to reproduce.
	CompatibleWith string `json:"compatible_with,omitempty"`
	// Description is one line shown in reports.
	Description string `json:"description,omitempty"`
}

// MaxLayers bounds num_hidden_layers so that a hostile config cannot make
// Inventory allocate billions of entries.
const MaxLayers = 4096

// DefaultInitializerRange is used when a config does not set initializer_range.
const DefaultInitializerRange = 0.02

// ParseConfig decodes and validates an HF config.json. source names the
// file in errors.
func ParseConfig(data []byte, source string) (Config, error) {
	c, err := DecodeConfig(data, source)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", source, err)
	}
	return c, nil
}

// DecodeConfig decodes an HF config.json without validating it, so that the
// architecture specs can report each inconsistent field on its own. It
// reads the keys a BitNet b1.58 model needs and ignores the others, as HF
// does (the harness classifies every key: conformance/presets). An absent
// key takes HF BitNetConfig's default, as transformers would; a null
// num_key_value_heads means num_attention_heads, as in HF.
func DecodeConfig(data []byte, source string) (Config, error) {
	c := hfDefaults()
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return Config{}, fmt.Errorf("%s: field %q: expected %s, got JSON %s", source, typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return Config{}, fmt.Errorf("%s: invalid JSON: %v", source, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%s: invalid JSON: trailing data after the config object", source)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return Config{}, fmt.Errorf("%s: expected a JSON object of config keys, got %.20q", source, data)
	}
	if v, ok := top["num_key_value_heads"]; ok && string(bytes.TrimSpace(v)) == "null" {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	return c, nil
}

// The HF BitNetConfig defaults (transformers models/bitnet; shared/REFERENCE.md).
const (
	hfVocabSize             = 128256
	hfHiddenSize            = 2560
	hfIntermediateSize      = 6912
	hfNumHiddenLayers       = 30
	hfNumAttentionHeads     = 20
	hfNumKeyValueHeads      = 5
	hfHiddenAct             = "relu2"
	hfMaxPositionEmbeddings = 2048
	hfRMSNormEps            = 1e-5
	hfRopeTheta             = 500000.0
	// HF BitNetQuantConfig defaults.
	hfLinearClass      = "bitlinear"
	hfQuantizationMode = "offline"
)

// hfDefaults is the config HF BitNetConfig builds from an empty config.json.
func hfDefaults() Config {
	return Config{
		VocabSize: hfVocabSize, HiddenSize: hfHiddenSize, IntermediateSize: hfIntermediateSize,
		NumHiddenLayers: hfNumHiddenLayers, NumAttentionHeads: hfNumAttentionHeads, NumKeyValueHeads: hfNumKeyValueHeads,
		HiddenAct: hfHiddenAct, MaxPositionEmbeddings: hfMaxPositionEmbeddings, RMSNormEps: hfRMSNormEps,
		RopeTheta: hfRopeTheta, InitializerRange: DefaultInitializerRange,
		TieWordEmbeddings: false, AttentionBias: false,
	}
}

// maxConfigFileBytes bounds how much of a config.json is read; real ones are
// about 1 KB.
const maxConfigFileBytes = 1 << 20

// LoadConfig reads and validates an HF config.json from disk.
func LoadConfig(path string) (Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(data, path)
}

// ReadConfigFile reads an HF config.json from disk without validating it.
func ReadConfigFile(path string) (Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return Config{}, err
	}
	return DecodeConfig(data, path)
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.Size() > maxConfigFileBytes {
		return nil, fmt.Errorf("%s: config is %d bytes, more than the %d allowed for a config.json", path, info.Size(), maxConfigFileBytes)
	}
	data := make([]byte, info.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return data, nil
}

// ConfigProblem is one field of a config that this package cannot build.
type ConfigProblem struct {
	Field   string // HF key, for example "num_key_value_heads"
	Message string // expected versus actual
}

func (p ConfigProblem) Error() string { return p.Field + ": " + p.Message }

// Validate checks that the config describes a model this package can build.
// The error lists every problem; each names the field and both the expected
// and actual values.
func (c Config) Validate() error {
	problems := c.Problems()
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Problems lists every field that makes the config unbuildable.
func (c Config) Problems() []ConfigProblem {
	var out []ConfigProblem
	add := func(field, format string, args ...any) {
		out = append(out, ConfigProblem{field, fmt.Sprintf(format, args...)})
	}
	sizes := []struct {
		field string
		value int64
	}{
		{"hidden_size", c.HiddenSize},
		{"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads},
		{"vocab_size", c.VocabSize},
		{"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, s := range sizes {
		if s.value <= 0 || s.value > math.MaxInt32 {
			add(s.field, "expected a positive size within int32 (1..%d), got %d", math.MaxInt32, s.value)
		}
	}
	if c.NumHiddenLayers > MaxLayers {
		add("num_hidden_layers", "expected at most %d layers, got %d", MaxLayers, c.NumHiddenLayers)
	}
	if c.HeadDimension < 0 || c.HeadDimension > math.MaxInt32 {
		add("head_dim", "expected 0 (derived) or a positive size within int32, got %d", c.HeadDimension)
	}
	if len(out) > 0 {
		return out
	}
	if c.HeadDimension == 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		add("num_attention_heads", "expected a divisor of hidden_size %d (or an explicit head_dim), got %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		add("num_key_value_heads", "expected a divisor of num_attention_heads %d, got %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if hd := c.HeadDim(); hd == 0 || hd%2 != 0 {
		add("head_dim", "expected a positive even size (RoPE rotates halves), got %d", hd)
	}
	if c.NumAttentionHeads*c.HeadDim() > math.MaxInt32 {
		add("head_dim", "num_attention_heads*head_dim: expected at most %d, got %d", math.MaxInt32, c.NumAttentionHeads*c.HeadDim())
	}
	if c.HiddenAct != "relu2" {
		add("hidden_act", "expected %q, got %q", "relu2", c.HiddenAct)
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		add("rope_theta", "expected a finite positive number, got %v", c.RopeTheta)
	}
	if !(c.RMSNormEps > 0) || c.RMSNormEps >= 1 {
		add("rms_norm_eps", "expected a number in (0, 1), got %v", c.RMSNormEps)
	}
	if c.InitializerRange < 0 || math.IsInf(c.InitializerRange, 0) || math.IsNaN(c.InitializerRange) {
		add("initializer_range", "expected a finite non-negative number, got %v", c.InitializerRange)
	}
	if c.AttentionBias {
		add("attention_bias", "expected false (BitNet b1.58 has no attention bias), got true")
	}
	if q := c.QuantizationConfig; q != nil && q.QuantizationMode != "" && q.QuantizationMode != "online" && q.QuantizationMode != "offline" {
		add("quantization_config.quantization_mode", "expected \"online\" or \"offline\", got %q", q.QuantizationMode)
	}
	if q := c.QuantizationConfig; q != nil && q.LinearClass != "" && q.LinearClass != "autobitlinear" && q.LinearClass != "bitlinear" {
		add("quantization_config.linear_class", "expected \"autobitlinear\" or \"bitlinear\", got %q", q.LinearClass)
	}
	return out
}

// HeadDim is head_dim, or hidden_size / num_attention_heads when unset.
func (c Config) HeadDim() int64 {
	if c.HeadDimension > 0 {
		return c.HeadDimension
	}
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// GroupSize is the number of query heads that share one KV head (GQA).
func (c Config) GroupSize() int64 { return c.NumAttentionHeads / c.NumKeyValueHeads }

// QuantizationMode is quantization_config.quantization_mode. Without a
// quantization_config it is "online" (the harness's choice: HF would not
// quantize at all); within one that omits the key it is HF
// BitNetQuantConfig's default, "offline".
func (c Config) QuantizationMode() string {
	switch q := c.QuantizationConfig; {
	case q == nil:
		return "online"
	case q.QuantizationMode == "":
		return hfQuantizationMode
	default:
		return q.QuantizationMode
	}
}

// LinearClass is quantization_config.linear_class, or HF
// BitNetQuantConfig's default "bitlinear" when absent.
func (c Config) LinearClass() string {
	if c.QuantizationConfig == nil || c.QuantizationConfig.LinearClass == "" {
		return hfLinearClass
	}
	return c.QuantizationConfig.LinearClass
}

// ScaleConvention says how an offline linear's weight_scale dequantizes
// its ternary codes; linear_class decides it (shared/REFERENCE.md,
// "Checkpoint conventions").
type ScaleConvention int

const (
	// ScaleMultiplies is autobitlinear's (microsoft/bitnet-b1.58-2B-4T):
	// weight_scale = mean|W|, y = (Σ xq·wq)·weight_scale / s_x.
	ScaleMultiplies ScaleConvention = iota
	// ScaleDivides is bitlinear's (HF's older class and its default):
	// weight_scale = 1/mean|W|, y = (Σ xq·wq) / (s_x·weight_scale).
	ScaleDivides
)

func (s ScaleConvention) String() string {
	switch s {
	case ScaleMultiplies:
		return "autobitlinear (weight_scale = mean|W|, multiplied)"
	case ScaleDivides:
		return "bitlinear (weight_scale = 1/mean|W|, divided)"
	}
	return fmt.Sprintf("ScaleConvention(%d)", int(s))
}

// LinearClassName is the quantization_config.linear_class value that
// selects the convention.
func (s ScaleConvention) LinearClassName() string {
	if s == ScaleMultiplies {
		return "autobitlinear"
	}
	return "bitlinear"
}

// ScaleConvention is the convention of the config's linear_class. An
// unknown linear_class is an error naming the field.
func (c Config) ScaleConvention() (ScaleConvention, error) {
	switch lc := c.LinearClass(); lc {
	case "autobitlinear":
		return ScaleMultiplies, nil
	case "bitlinear":
		return ScaleDivides, nil
	default:
		return 0, fmt.Errorf("quantization_config.linear_class: expected \"autobitlinear\" or \"bitlinear\", got %q", lc)
	}
}

// InitStd is the standard deviation for random linear and embedding weights.
func (c Config) InitStd() float64 {
	if c.InitializerRange > 0 {
		return c.InitializerRange
	}
	return DefaultInitializerRange
}

// TensorKind says how a parameter tensor is used.
type TensorKind int

const (
	KindEmbedding TensorKind = iota // token embedding (and tied lm_head)
	KindNorm                        // RMSNorm weight
	KindLinear                      // BitLinear weight, quantized to ternary
	KindHead                        // untied lm_head, never quantized
)

func (k TensorKind) String() string {
	switch k {
	case KindEmbedding:
		return "embedding"
	case KindNorm:
		return "norm"
	case KindLinear:
		return "linear"
	case KindHead:
		return "lm_head"
	}
	return fmt.Sprintf("TensorKind(%d)", int(k))
}

// TensorSpec is one parameter of the HF checkpoint inventory.
type TensorSpec struct {
	Name  string
	Shape []int64
	Kind  TensorKind
	Layer int // decoder layer index, or -1 for model-level tensors
}

// Elements is the product of the shape.
func (t TensorSpec) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Inventory lists every parameter under its HF name, in checkpoint order:
// the embedding, each layer's tensors, the final norm, then lm_head when untied.
func (c Config) Inventory() []TensorSpec {
	H, I, V := c.HiddenSize, c.IntermediateSize, c.VocabSize
	q := c.NumAttentionHeads * c.HeadDim()
	kv := c.NumKeyValueHeads * c.HeadDim()
	specs := []TensorSpec{{Name: "model.embed_tokens.weight", Shape: []int64{V, H}, Kind: KindEmbedding, Layer: -1}}
	for i := 0; i < int(c.NumHiddenLayers); i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		specs = append(specs,
			TensorSpec{p + "input_layernorm.weight", []int64{H}, KindNorm, i},
			TensorSpec{p + "self_attn.q_proj.weight", []int64{q, H}, KindLinear, i},
			TensorSpec{p + "self_attn.k_proj.weight", []int64{kv, H}, KindLinear, i},
			TensorSpec{p + "self_attn.v_proj.weight", []int64{kv, H}, KindLinear, i},
			TensorSpec{p + "self_attn.attn_sub_norm.weight", []int64{q}, KindNorm, i},
			TensorSpec{p + "self_attn.o_proj.weight", []int64{H, q}, KindLinear, i},
			TensorSpec{p + "post_attention_layernorm.weight", []int64{H}, KindNorm, i},
			TensorSpec{p + "mlp.gate_proj.weight", []int64{I, H}, KindLinear, i},
			TensorSpec{p + "mlp.up_proj.weight", []int64{I, H}, KindLinear, i},
			TensorSpec{p + "mlp.ffn_sub_norm.weight", []int64{I}, KindNorm, i},
			TensorSpec{p + "mlp.down_proj.weight", []int64{H, I}, KindLinear, i},
		)
	}
	specs = append(specs, TensorSpec{"model.norm.weight", []int64{H}, KindNorm, -1})
	if !c.TieWordEmbeddings {
		specs = append(specs, TensorSpec{"lm_head.weight", []int64{V, H}, KindHead, -1})
	}
	return specs
}

// ParamCount is the analytic number of parameters.
func (c Config) ParamCount() int64 {
	var n int64
	for _, t := range c.Inventory() {
		n += t.Elements()
	}
	return n
}

// TernaryParamCount is the number of parameters in BitLinear layers.
func (c Config) TernaryParamCount() int64 {
	var n int64
	for _, t := range c.Inventory() {
		if t.Kind == KindLinear {
			n += t.Elements()
		}
	}
	return n
}

// Footprint is the memory needed to hold the parameters in three storages.
type Footprint struct {
	FP32Bytes int64 // every parameter in float32
	BF16Bytes int64 // every parameter in bfloat16
	// PackedBytes holds BitLinear weights at 2 bits each plus one float32
	// scale per matrix, and everything else (embedding, norms, untied
	// lm_head) in bfloat16, as bitnet.cpp-style inference stores them.
	PackedBytes int64
}

// Footprint computes the parameter memory for each storage.
func (c Config) Footprint() Footprint {
	var f Footprint
	for _, t := range c.Inventory() {
		n := t.Elements()
		f.FP32Bytes += 4 * n
		f.BF16Bytes += 2 * n
		if t.Kind == KindLinear {
			f.PackedBytes += (n+3)/4 + 4
		} else {
			f.PackedBytes += 2 * n
		}
	}
	return f
}

// JSON encodes the config as indented HF-style JSON.
func (c Config) JSON() []byte {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		// Config holds only plain fields; encoding cannot fail.
		panic(err)
	}
	return append(data, '\n')
}
