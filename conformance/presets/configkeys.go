package presets

// The HF config key policy: what each key a config.json can hold means for
// a BitNet b1.58 model. The model (package model) decodes only the keys it
// needs and ignores the rest, as HF does; the harness classifies every key
// so that the architecture suite can say, key by key, which a config
// honours, defaults, ignores harmlessly, or declares against BitNet b1.58.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/tritter-ai/conformance/model"
)

// KeyClass says what one key of a config.json means for a BitNet b1.58
// model.
type KeyClass int

const (
	// KeyChecked keys are read and compared (sizes, rope_theta, eps, …).
	KeyChecked KeyClass = iota
	// KeyDefaulted keys are absent, so HF BitNetConfig's default applies,
	// here as in transformers.
	KeyDefaulted
	// KeyHarmless keys do not affect weights or numerics (dtype, versions,
	// token ids, dropout 0, a feature flag that is off, …).
	KeyHarmless
	// KeyIncompatible keys declare an architecture BitNet b1.58 does not
	// have (QK-norm, LayerNorm, biases, rope_scaling, another family's
	// keys, …): the model would build a BitNet b1.58 block regardless, so
	// the harness refuses such a config (Problems).
	KeyIncompatible
	// KeyUnknown keys are not known to the harness: HF would store and
	// ignore them, so their intent is not honoured.
	KeyUnknown
)

func (k KeyClass) String() string {
	switch k {
	case KeyChecked:
		return "checked"
	case KeyDefaulted:
		return "defaulted"
	case KeyHarmless:
		return "harmless"
	case KeyIncompatible:
		return "incompatible"
	case KeyUnknown:
		return "unknown"
	}
	return fmt.Sprintf("KeyClass(%d)", int(k))
}

// KeyClasses lists the classes in report order.
var KeyClasses = []KeyClass{KeyChecked, KeyDefaulted, KeyHarmless, KeyIncompatible, KeyUnknown}

// ConfigKey is one classified key of a config.json.
type ConfigKey struct {
	Key   string // "use_qk_norm", or "quantization_config.linear_class" inside a block
	Value string // the value as compact JSON; "" when the key is absent
	Class KeyClass
	Note  string // what the key means for BitNet b1.58, in one line
}

// String is one report line, for example
// `use_qk_norm: true — adds q_norm/k_norm weights and normalises q,k before RoPE; BitNet b1.58 has none`.
func (k ConfigKey) String() string {
	if k.Value == "" {
		return k.Key + " — " + k.Note
	}
	return k.Key + ": " + k.Value + " — " + k.Note
}

// ConfigKeys is the classification of every key of one config.json.
type ConfigKeys []ConfigKey

// Of returns the keys of one class, in order.
func (ks ConfigKeys) Of(class KeyClass) ConfigKeys {
	var out ConfigKeys
	for _, k := range ks {
		if k.Class == class {
			out = append(out, k)
		}
	}
	return out
}

// Lines formats the keys one per line.
func (ks ConfigKeys) Lines() string {
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// defaultedKeys are the keys whose absence HF fills with a default that
// decides a shape or a numeric behaviour, with that default.
var defaultedKeys = []struct{ key, value string }{
	{"vocab_size", "128256"},
	{"hidden_size", "2560"},
	{"intermediate_size", "6912"},
	{"num_hidden_layers", "30"},
	{"num_attention_heads", "20"},
	{"num_key_value_heads", "5"},
	{"head_dim", "hidden_size / num_attention_heads"},
	{"hidden_act", `"relu2"`},
	{"max_position_embeddings", "2048"},
	{"rms_norm_eps", "1e-05"},
	{"rope_theta", "500000.0"},
	{"tie_word_embeddings", "false (the published 2B-4T sets true)"},
	{"attention_bias", "false"},
	{"attention_dropout", "0.0"},
	{"initializer_range", "0.02 (random initialisation only)"},
}

// keyRule classifies one present key from its value and the decoded config.
type keyRule func(v json.RawMessage, c *model.Config, all map[string]json.RawMessage) (KeyClass, string)

func fixed(class KeyClass, note string) keyRule {
	return func(json.RawMessage, *model.Config, map[string]json.RawMessage) (KeyClass, string) {
		return class, note
	}
}

// checked is a key the harness reads; null is refused because HF keeps None
// there instead of its default.
func checked(note string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		if isNull(v) {
			return KeyIncompatible, "null: HF keeps None here rather than its default, and cannot build the model"
		}
		return KeyChecked, note
	}
}

// flagOn is a boolean feature BitNet b1.58 lacks: off is harmless, on is
// incompatible.
func flagOn(meaning string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		if isNull(v) || isFalse(v) {
			return KeyHarmless, "off, so it declares nothing"
		}
		return KeyIncompatible, meaning
	}
}

// flagOff is a boolean feature BitNet b1.58 has: on is harmless, off is
// incompatible.
func flagOff(meaning string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		if isTrue(v) {
			return KeyHarmless, "on, as in BitNet b1.58"
		}
		return KeyIncompatible, meaning
	}
}

// zeroOrNull is a quantity BitNet b1.58 does not use (a dropout, a
// softcap): 0 or null is harmless, anything else incompatible.
func zeroOrNull(meaning string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		if f, ok := asNumber(v); isNull(v) || ok && f == 0 || isFalse(v) {
			return KeyHarmless, "0 or null, so it has no effect"
		}
		return KeyIncompatible, meaning
	}
}

// nullOnly is a block BitNet b1.58 does not have: null is harmless.
func nullOnly(meaning string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		if isNull(v) {
			return KeyHarmless, "null, so it has no effect"
		}
		return KeyIncompatible, meaning
	}
}

// numberIs is a setting whose only BitNet b1.58 value is want.
func numberIs(want float64, meaning string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		if f, ok := asNumber(v); ok && f == want {
			return KeyHarmless, fmt.Sprintf("%v, as in BitNet b1.58", want)
		}
		return KeyIncompatible, meaning
	}
}

// stringIn is a setting whose BitNet b1.58 values are listed.
func stringIn(meaning string, want ...string) keyRule {
	return func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		var s string
		if json.Unmarshal(v, &s) == nil {
			for _, w := range want {
				if strings.EqualFold(s, w) {
					return KeyHarmless, "as in BitNet b1.58"
				}
			}
		}
		return KeyIncompatible, meaning
	}
}

// otherName is another model family's key for a setting HF BitNetConfig
// reads under its own key: HF ignores it, so the config's intent is lost.
func otherName(family, hfKey string, value func(*model.Config) any) keyRule {
	return func(_ json.RawMessage, c *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		return KeyIncompatible, fmt.Sprintf("%s's key; HF BitNetConfig ignores it and uses %s = %v", family, hfKey, value(c))
	}
}

// otherAct is another family's activation key.
func otherAct(family string) keyRule {
	return func(_ json.RawMessage, c *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		return KeyIncompatible, fmt.Sprintf("%s's activation key; HF BitNet ignores it and uses hidden_act %q, so the activation this config intends is not applied", family, c.HiddenAct)
	}
}

const (
	layerNormMeaning   = "declares LayerNorm (mean-centred, with bias) by its epsilon; BitNet b1.58 uses RMSNorm with rms_norm_eps"
	qkNormMeaning      = "adds q_norm/k_norm weights and normalises q,k before RoPE; BitNet b1.58 has none"
	biasMeaning        = "adds biases to the linear layers; BitNet b1.58 linears have none"
	dropoutMeaning     = "dropout during training; BitNet b1.58 uses none (HF attention_dropout 0.0)"
	parallelMeaning    = "parallel residual: attention and MLP read the same input and are added together; BitNet b1.58 applies them one after the other"
	subNormMeaning     = "drops attn_sub_norm and ffn_sub_norm, which BitNet b1.58 applies before o_proj and down_proj"
	postNormMeaning    = "adds a norm after the MLP residual; BitNet b1.58 has none"
	thresholdMeaning   = "ternarizes weights by a threshold; BitNet b1.58 rounds W/mean|W| to {-1, 0, +1} (absmean)"
	actQuantMeaning    = "no 8-bit activation quantization; BitNet b1.58 quantizes every linear's input per token to int8 (absmax)"
	slidingMeaning     = "sliding-window attention: each token sees only the last N positions; BitNet b1.58 attends to every earlier position"
	softcapMeaning     = "scales or caps logits or attention scores; BitNet b1.58 does neither"
	partialRoPEMeaning = "partial rotary: RoPE rotates only part of each head; BitNet b1.58 rotates all head_dim dimensions"
)

var hiddenSizeOf = func(c *model.Config) any { return c.HiddenSize }
var layersOf = func(c *model.Config) any { return c.NumHiddenLayers }
var headsOf = func(c *model.Config) any { return c.NumAttentionHeads }
var kvHeadsOf = func(c *model.Config) any { return c.NumKeyValueHeads }
var intermediateOf = func(c *model.Config) any { return c.IntermediateSize }
var positionsOf = func(c *model.Config) any { return c.MaxPositionEmbeddings }
var thetaOf = func(c *model.Config) any { return c.RopeTheta }

// keyRules classifies every top-level key the harness knows.
var keyRules = map[string]keyRule{
	// Read and compared.
	"hidden_size":             checked("hidden size H"),
	"intermediate_size":       checked("MLP width I"),
	"num_hidden_layers":       checked("decoder layers L"),
	"num_attention_heads":     checked("query heads"),
	"num_key_value_heads":     kvHeadsRule,
	"head_dim":                headDimRule,
	"vocab_size":              checked("vocabulary V"),
	"max_position_embeddings": checked("longest sequence"),
	"rope_theta":              checked("RoPE base"),
	"rms_norm_eps":            checked("RMSNorm epsilon"),
	"tie_word_embeddings":     checked("lm_head shares the embedding matrix"),
	"initializer_range":       checked("std of random initialisation (not used for loaded weights)"),
	"hidden_act":              hiddenActRule,
	"attention_bias":          attentionBiasRule,
	"model_type":              modelTypeRule,
	"architectures":           architecturesRule,
	"rope_parameters":         ropeParametersRule,
	"conformance":             fixed(KeyHarmless, "the harness's own block; HF ignores it"),

	// Harmless.
	"transformers_version": fixed(KeyHarmless, "version of the writer"),
	"torch_dtype":          fixed(KeyHarmless, "storage dtype; the harness computes in float32"),
	"dtype":                fixed(KeyHarmless, "storage dtype; the harness computes in float32"),
	"_name_or_path":        fixed(KeyHarmless, "where the config came from"),
	"auto_map":             fixed(KeyHarmless, "remote-code class names"),
	"use_cache":            fixed(KeyHarmless, "KV cache at generation; numerics unchanged"),
	"bos_token_id":         fixed(KeyHarmless, "token id"),
	"eos_token_id":         fixed(KeyHarmless, "token id"),
	"pad_token_id":         fixed(KeyHarmless, "token id"),
	"unk_token_id":         fixed(KeyHarmless, "token id"),
	"sep_token_id":         fixed(KeyHarmless, "token id"),
	"tokenizer_class":      fixed(KeyHarmless, "tokenizer"),
	"output_attentions":    fixed(KeyHarmless, "what the model returns"),
	"output_hidden_states": fixed(KeyHarmless, "what the model returns"),
	"return_dict":          fixed(KeyHarmless, "what the model returns"),
	"attn_implementation":  fixed(KeyHarmless, "attention kernel choice; same math"),
	"id2label":             fixed(KeyHarmless, "classification labels"),
	"label2id":             fixed(KeyHarmless, "classification labels"),
	"task_specific_params": fixed(KeyHarmless, "generation settings"),
	"pretraining_tp":       numberIs(1, "splits every linear into slices summed separately (Llama pretraining_tp); BitNet b1.58 uses one product"),

	// Dropouts: harmless at 0.
	"attention_dropout":            zeroOrNull(dropoutMeaning),
	"hidden_dropout":               zeroOrNull(dropoutMeaning),
	"dropout":                      zeroOrNull(dropoutMeaning),
	"resid_pdrop":                  zeroOrNull(dropoutMeaning),
	"embd_pdrop":                   zeroOrNull(dropoutMeaning),
	"attn_pdrop":                   zeroOrNull(dropoutMeaning),
	"hidden_dropout_prob":          zeroOrNull(dropoutMeaning),
	"attention_probs_dropout_prob": zeroOrNull(dropoutMeaning),

	// Norms.
	"layer_norm_eps":     fixed(KeyIncompatible, layerNormMeaning),
	"layer_norm_epsilon": fixed(KeyIncompatible, layerNormMeaning),
	"norm_epsilon":       fixed(KeyIncompatible, layerNormMeaning),
	"norm_type":          stringIn("another norm type; BitNet b1.58 uses RMSNorm", "rmsnorm", "rms_norm"),
	"normalization_type": stringIn("another norm type; BitNet b1.58 uses RMSNorm", "rmsnorm", "rms_norm"),
	"use_rms_norm":       flagOff("RMSNorm off, i.e. LayerNorm; BitNet b1.58 uses RMSNorm"),
	"use_layernorm":      flagOn("LayerNorm instead of RMSNorm; BitNet b1.58 uses RMSNorm"),
	"use_layer_norm":     flagOn("LayerNorm instead of RMSNorm; BitNet b1.58 uses RMSNorm"),
	"use_qk_norm":        flagOn(qkNormMeaning),
	"qk_norm":            flagOn(qkNormMeaning),
	"qk_layernorm":       flagOn(qkNormMeaning),
	"use_qk_layernorm":   flagOn(qkNormMeaning),
	"use_sub_norm":       flagOff(subNormMeaning),
	"use_subln":          flagOff(subNormMeaning),
	"sub_norm":           flagOff(subNormMeaning),
	"use_post_mlp_norm":  flagOn(postNormMeaning),
	"post_mlp_norm":      flagOn(postNormMeaning),
	"use_post_norm":      flagOn(postNormMeaning),
	"post_norm":          flagOn(postNormMeaning),

	// Biases.
	"mlp_bias":        flagOn("adds biases to gate/up/down_proj; BitNet b1.58 has none"),
	"bias":            flagOn(biasMeaning),
	"use_bias":        flagOn(biasMeaning),
	"add_bias_linear": flagOn(biasMeaning),
	"qkv_bias":        flagOn("adds biases to q/k/v_proj; BitNet b1.58 has none"),
	"use_qkv_bias":    flagOn("adds biases to q/k/v_proj; BitNet b1.58 has none"),

	// Positions and attention.
	"rope_scaling":          nullOnly("rescales RoPE frequencies or positions; BitNet b1.58 uses plain RoPE with rope_theta"),
	"partial_rotary_factor": numberIs(1, partialRoPEMeaning),
	"rotary_pct":            numberIs(1, partialRoPEMeaning),
	"rotary_dim":            rotaryDimRule,
	"rotary_emb_base":       otherName("GPT-NeoX", "rope_theta", thetaOf),
	"use_sliding_window":    flagOn(slidingMeaning),
	"sliding_window":        slidingWindowRule,
	"sliding_window_size":   slidingWindowRule,
	"max_window_layers":     slidingWindowRule,
	"use_parallel_residual": flagOn(parallelMeaning),
	"parallel_attn":         flagOn(parallelMeaning),
	"parallel_residual":     flagOn(parallelMeaning),
	"alibi":                 flagOn("ALiBi position biases; BitNet b1.58 uses RoPE"),
	"position_embedding_type": stringIn("another position encoding; BitNet b1.58 uses RoPE",
		"rope", "rotary"),
	"attn_logit_softcapping":  zeroOrNull(softcapMeaning),
	"final_logit_softcapping": zeroOrNull(softcapMeaning),
	"logit_scale":             zeroOrNull(softcapMeaning),
	"query_pre_attn_scalar":   nullOnly("scales queries by another factor than head_dim^-0.5; BitNet b1.58 uses head_dim^-0.5"),

	// Activations.
	"activation_function": otherAct("GPT-2/GPT-J"),
	"hidden_activation":   otherAct("Gemma"),
	"activation":          otherAct("another family"),
	"act_fn":              otherAct("another family"),

	// Another family's names for the sizes.
	"n_embd":                   otherName("GPT-2", "hidden_size", hiddenSizeOf),
	"d_model":                  otherName("T5/OPT/MPT", "hidden_size", hiddenSizeOf),
	"n_layer":                  otherName("GPT-2", "num_hidden_layers", layersOf),
	"n_layers":                 otherName("MPT", "num_hidden_layers", layersOf),
	"num_layers":               otherName("Tritter/T5", "num_hidden_layers", layersOf),
	"n_head":                   otherName("GPT-2", "num_attention_heads", headsOf),
	"n_heads":                  otherName("MPT", "num_attention_heads", headsOf),
	"num_heads":                otherName("Tritter/T5", "num_attention_heads", headsOf),
	"num_kv_heads":             otherName("Tritter/Falcon", "num_key_value_heads", kvHeadsOf),
	"n_kv_heads":               otherName("Llama (Meta)", "num_key_value_heads", kvHeadsOf),
	"multi_query":              otherName("Falcon/GPT-BigCode", "num_key_value_heads", kvHeadsOf),
	"n_inner":                  otherName("GPT-2", "intermediate_size", intermediateOf),
	"ffn_dim":                  otherName("OPT", "intermediate_size", intermediateOf),
	"ffn_hidden_size":          otherName("Megatron", "intermediate_size", intermediateOf),
	"n_positions":              otherName("GPT-2", "max_position_embeddings", positionsOf),
	"n_ctx":                    otherName("GPT-2", "max_position_embeddings", positionsOf),
	"seq_length":               otherName("ChatGLM/Qwen", "max_position_embeddings", positionsOf),
	"new_decoder_architecture": flagOn("Falcon's parallel decoder with grouped KV; not BitNet b1.58"),

	// Tritter's own block (REFERENCE: LayerNorm, QK-norm, no sub-norms, a
	// post-MLP norm, threshold ternarization, no activation quantization,
	// biases) and its runtime settings.
	"model_size":             fixed(KeyIncompatible, "Tritter's size preset; HF BitNetConfig ignores it and reads hidden_size, num_hidden_layers, … instead"),
	"use_bitnet":             flagOff("ternary quantization off: full-precision linears; BitNet b1.58 quantizes every linear"),
	"bitnet_precision":       numberIs(1.58, "another weight precision than ternary (1.58 bits)"),
	"ternary_threshold":      nullOnly(thresholdMeaning),
	"quant_threshold":        nullOnly(thresholdMeaning),
	"weight_threshold":       nullOnly(thresholdMeaning),
	"ternarization":          stringIn(thresholdMeaning, "absmean"),
	"weight_quant":           stringIn(thresholdMeaning, "absmean"),
	"quantize_activations":   flagOff(actQuantMeaning),
	"activation_quant":       flagOff(actQuantMeaning),
	"use_activation_quant":   flagOff(actQuantMeaning),
	"activation_bits":        numberIs(8, actQuantMeaning),
	"attention_mode":         stringIn("another attention pattern than causal; BitNet b1.58 is causal", "causal"),
	"use_streaming_llm":      flagOn("StreamingLLM: evicts the KV cache and keeps attention sinks; BitNet b1.58 attends to every earlier position"),
	"use_attention_sinks":    flagOn("attention sinks: evicts the KV cache except the first tokens; BitNet b1.58 attends to every earlier position"),
	"num_sink_tokens":        fixed(KeyHarmless, "used only with use_attention_sinks"),
	"int4_kv_cache":          flagOn("quantizes keys and values to 4 bits; BitNet b1.58 attention uses full-precision K and V"),
	"use_vsa":                flagOn("vector-symbolic layers; not part of BitNet b1.58"),
	"use_hrr":                flagOn("holographic reduced representations; not part of BitNet b1.58"),
	"use_flash_attention":    fixed(KeyHarmless, "attention kernel choice; same math"),
	"gradient_checkpointing": fixed(KeyHarmless, "recomputes activations in backward; same math"),
	"use_layer_streaming":    fixed(KeyHarmless, "memory management"),
	"layer_group_size":       fixed(KeyHarmless, "memory management"),
	"gpu_memory_budget_gb":   fixed(KeyHarmless, "memory management"),
	"use_pinned_memory":      fixed(KeyHarmless, "memory management"),
	"prefetch_next_group":    fixed(KeyHarmless, "memory management"),
	"max_memory_gb":          fixed(KeyHarmless, "memory management"),
	"target_device":          fixed(KeyHarmless, "device choice"),
	"modalities":             fixed(KeyHarmless, "tokenizer and data pipeline"),
	"use_early_fusion":       fixed(KeyHarmless, "tokenizer and data pipeline"),
	"unified_embedding":      fixed(KeyHarmless, "tokenizer and data pipeline"),
	"accel_profile":          fixed(KeyHarmless, "backend choice"),
	"accel_feature_flags":    fixed(KeyHarmless, "backend choice"),
	"profile_name_override":  fixed(KeyHarmless, "run naming"),
	"profile_tag_overrides":  fixed(KeyHarmless, "run naming"),
}

// quantRules classifies the keys of quantization_config (HF BitNetQuantConfig).
var quantRules = map[string]keyRule{
	"quant_method":      quantMethodRule,
	"linear_class":      linearClassRule,
	"quantization_mode": quantizationModeRule,
	"use_rms_norm":      flagOn("AutoBitLinear adds an RMSNorm before act_quant in every linear; BitNet b1.58's norms are the sub-norm weights"),
	"rms_norm_eps":      fixed(KeyHarmless, "used only with use_rms_norm"),
	"modules_to_not_convert": func(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
		var names []string
		if isNull(v) {
			return KeyHarmless, "null: only lm_head stays full precision"
		}
		if json.Unmarshal(v, &names) == nil {
			extra := slicesWithout(names, "lm_head")
			if len(extra) == 0 {
				return KeyHarmless, "only lm_head stays full precision, as in BitNet b1.58"
			}
			return KeyIncompatible, fmt.Sprintf("keeps %s as full-precision linears; BitNet b1.58 ternarizes every linear but lm_head", strings.Join(extra, ", "))
		}
		return KeyIncompatible, "expected a list of module names"
	},
}

func slicesWithout(names []string, drop string) []string {
	var out []string
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}

func kvHeadsRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	if isNull(v) {
		return KeyChecked, "null: HF uses num_attention_heads (multi-head attention)"
	}
	return KeyChecked, "KV heads (GQA)"
}

func headDimRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	if isNull(v) {
		return KeyChecked, "null: hidden_size / num_attention_heads"
	}
	return KeyChecked, "head dimension"
}

var activationMeanings = map[string]string{
	"silu":  "silu(gate)·up (SwiGLU, Llama family); BitNet b1.58 uses relu(gate)²·up",
	"swish": "silu(gate)·up (SwiGLU, Llama family); BitNet b1.58 uses relu(gate)²·up",
	"relu":  "relu(gate)·up, without the square; BitNet b1.58 uses relu(gate)²·up",
	"gelu":  "gelu(gate)·up (GeGLU); BitNet b1.58 uses relu(gate)²·up",
}

func hiddenActRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return KeyIncompatible, "expected a string activation name"
	}
	if s == "relu2" {
		return KeyChecked, "MLP activation relu(gate)²·up"
	}
	if m, ok := activationMeanings[s]; ok {
		return KeyIncompatible, m
	}
	if strings.HasPrefix(s, "gelu") {
		return KeyIncompatible, activationMeanings["gelu"]
	}
	return KeyIncompatible, fmt.Sprintf("activation %q; BitNet b1.58 uses relu(gate)²·up (relu2)", s)
}

func attentionBiasRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	if isTrue(v) {
		return KeyIncompatible, "adds biases to q/k/v/o_proj; BitNet b1.58 has none"
	}
	return KeyChecked, "no attention bias"
}

var familyMeanings = map[string]string{
	"llama":    "SwiGLU MLP, no sub-norms, full-precision linears",
	"mistral":  "SwiGLU MLP, sliding-window attention, no sub-norms, full-precision linears",
	"qwen2":    "SwiGLU MLP, q/k/v biases, no sub-norms, full-precision linears",
	"gpt2":     "LayerNorm, GELU MLP, learned positions, biases",
	"gpt_neox": "LayerNorm, parallel residual, partial rotary, biases",
	"phi":      "LayerNorm, parallel attention and MLP, partial rotary, biases",
	"falcon":   "LayerNorm, parallel attention and MLP, multi-query attention",
	"gemma":    "GeGLU MLP, scaled embeddings, (1+w) RMSNorm",
	"olmo":     "non-parametric LayerNorm, SwiGLU MLP",
}

func modelTypeRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	var s string
	if json.Unmarshal(v, &s) == nil && s == "bitnet" {
		return KeyChecked, "HF builds BitNetForCausalLM"
	}
	note := fmt.Sprintf("HF builds the %s model class, not BitNetForCausalLM", compact(v))
	if m, ok := familyMeanings[s]; ok {
		note += " (" + m + ")"
	}
	return KeyIncompatible, note
}

func architecturesRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	var names []string
	if isNull(v) {
		return KeyHarmless, "null: the class comes from model_type"
	}
	if err := json.Unmarshal(v, &names); err != nil {
		return KeyIncompatible, "expected a list of class names"
	}
	if other := slicesWithout(names, "BitNetForCausalLM"); len(other) > 0 {
		return KeyIncompatible, fmt.Sprintf("%s is not BitNetForCausalLM", strings.Join(other, ", "))
	}
	return KeyChecked, "BitNetForCausalLM"
}

// ropeParametersRule accepts transformers' newer spelling of plain RoPE,
// {"rope_type": "default", "rope_theta": θ}, when θ agrees with rope_theta.
func ropeParametersRule(v json.RawMessage, c *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	if isNull(v) {
		return KeyHarmless, "null, so it has no effect"
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(v, &p); err != nil {
		return KeyIncompatible, "expected an object"
	}
	var ropeType string
	if raw, ok := p["rope_type"]; ok {
		json.Unmarshal(raw, &ropeType)
	}
	if ropeType != "default" {
		return KeyIncompatible, "rope_type other than \"default\" rescales RoPE; BitNet b1.58 uses plain RoPE with rope_theta"
	}
	for k, raw := range p {
		switch k {
		case "rope_type":
		case "rope_theta":
			if theta, ok := asNumber(raw); !ok || theta != c.RopeTheta {
				return KeyIncompatible, fmt.Sprintf("rope_theta %s here, but %v at the top level", compact(raw), c.RopeTheta)
			}
		default:
			return KeyIncompatible, fmt.Sprintf("%q changes RoPE; BitNet b1.58 uses plain RoPE with rope_theta", k)
		}
	}
	return KeyChecked, "plain RoPE"
}

func rotaryDimRule(v json.RawMessage, c *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	if f, ok := asNumber(v); isNull(v) || ok && int64(f) == c.HeadDim() && f == math.Trunc(f) {
		return KeyHarmless, "rotates the whole head, as in BitNet b1.58"
	}
	return KeyIncompatible, partialRoPEMeaning
}

func slidingWindowRule(v json.RawMessage, _ *model.Config, all map[string]json.RawMessage) (KeyClass, string) {
	if isNull(v) {
		return KeyHarmless, "null, so it has no effect"
	}
	if use, ok := all["use_sliding_window"]; ok && isFalse(use) {
		return KeyHarmless, "unused: use_sliding_window is false"
	}
	return KeyIncompatible, slidingMeaning
}

func quantMethodRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	var s string
	if json.Unmarshal(v, &s) == nil && s == "bitnet" {
		return KeyChecked, "HF's BitNet quantizer"
	}
	return KeyIncompatible, fmt.Sprintf("quantizer %s, not bitnet: HF does not build BitLinear layers", compact(v))
}

func linearClassRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	var s string
	json.Unmarshal(v, &s)
	switch s {
	case "autobitlinear":
		return KeyChecked, "offline weight_scale = mean|W|, multiplied: y = linear(act_quant(x), W_ternary)·weight_scale"
	case "bitlinear":
		return KeyChecked, "offline weight_scale = 1/mean|W|, divided: y = (Σ xq·wq)/(s_x·weight_scale)"
	}
	return KeyIncompatible, `expected "autobitlinear" or "bitlinear"`
}

func quantizationModeRule(v json.RawMessage, _ *model.Config, _ map[string]json.RawMessage) (KeyClass, string) {
	var s string
	json.Unmarshal(v, &s)
	switch s {
	case "online":
		return KeyChecked, "master weights, quantized at run time"
	case "offline":
		return KeyChecked, "packed ternary weights with weight_scale"
	}
	return KeyIncompatible, `expected "online" or "offline"`
}

// ClassifyKeys classifies every key of a config.json, absent ones with an
// HF default included. source names the file in errors.
func ClassifyKeys(data []byte, source string) (ConfigKeys, error) {
	c, err := model.DecodeConfig(data, source)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%s: %v", source, err)
	}
	return classifyKeys(top, &c), nil
}

// ReadConfigKeys classifies the keys of the config.json at path.
func ReadConfigKeys(path string) (ConfigKeys, error) {
	if _, err := model.ReadConfigFile(path); err != nil {
		return nil, err // missing, too large or not a config object
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ClassifyKeys(data, path)
}

// Problems is every problem of a preset: the fields the model cannot build
// (model.Config.Problems) and every key that declares an architecture
// BitNet b1.58 lacks, unless a field problem already names it.
func Problems(p Preset) []model.ConfigProblem {
	out := p.Config.Problems()
	for _, k := range p.Keys.Of(KeyIncompatible) {
		if !slices.ContainsFunc(out, func(q model.ConfigProblem) bool { return q.Field == k.Key }) {
			msg := k.Note
			if k.Value != "" {
				msg = k.Value + " — " + k.Note
			}
			out = append(out, model.ConfigProblem{Field: k.Key, Message: msg})
		}
	}
	return out
}

// classifyKeys classifies every key of a config.json object, absent ones
// with an HF default included. c is the config decoded from it.
func classifyKeys(top map[string]json.RawMessage, c *model.Config) ConfigKeys {
	out := classifyObject(top, "", keyRules, c)
	for _, d := range defaultedKeys {
		if _, ok := top[d.key]; !ok {
			out = append(out, ConfigKey{Key: d.key, Class: KeyDefaulted, Note: "absent: HF BitNetConfig default " + d.value + " applies"})
		}
	}
	raw, ok := top["quantization_config"]
	switch {
	case !ok || isNull(raw):
		out = append(out, ConfigKey{Key: "quantization_config", Class: KeyDefaulted,
			Note: "absent or null: the harness quantizes online; HF transformers applies BitNet quantization only through this block"})
	default:
		var q map[string]json.RawMessage
		if err := json.Unmarshal(raw, &q); err != nil {
			out = append(out, ConfigKey{Key: "quantization_config", Value: compact(raw), Class: KeyIncompatible, Note: "expected an object"})
			break
		}
		out = append(out, classifyObject(q, "quantization_config.", quantRules, c)...)
		if _, ok := q["quant_method"]; !ok {
			out = append(out, ConfigKey{Key: "quantization_config.quant_method", Class: KeyDefaulted,
				Note: "absent: the harness reads the block as BitNet's (\"bitnet\"); HF transformers refuses a quantization_config without quant_method"})
		}
		if _, ok := q["quantization_mode"]; !ok {
			out = append(out, ConfigKey{Key: "quantization_config.quantization_mode", Class: KeyDefaulted,
				Note: "absent: HF BitNetQuantConfig default \"offline\" applies (packed weights)"})
		}
		if _, ok := q["linear_class"]; !ok {
			out = append(out, ConfigKey{Key: "quantization_config.linear_class", Class: KeyDefaulted,
				Note: "absent: HF BitNetQuantConfig default \"bitlinear\" applies: an offline weight_scale is read as 1/mean|W| and divided by"})
		}
	}
	return out
}

// classifyObject classifies the keys of one JSON object, sorted by key.
func classifyObject(obj map[string]json.RawMessage, prefix string, rules map[string]keyRule, c *model.Config) ConfigKeys {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if prefix == "" && k == "quantization_config" {
			continue // classified key by key
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(ConfigKeys, 0, len(keys))
	for _, k := range keys {
		v := obj[k]
		key := ConfigKey{Key: prefix + k, Value: compact(v), Class: KeyUnknown,
			Note: "not a key the harness knows; HF would store it and ignore it"}
		if rule, ok := rules[k]; ok {
			key.Class, key.Note = rule(v, c, obj)
		}
		out = append(out, key)
	}
	return out
}

// maxValueChars bounds a value shown in a report line.
const maxValueChars = 80

func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return string(v)
	}
	if r := []rune(b.String()); len(r) > maxValueChars {
		return string(r[:maxValueChars]) + "…"
	}
	return b.String()
}

func isNull(v json.RawMessage) bool  { return string(bytes.TrimSpace(v)) == "null" }
func isTrue(v json.RawMessage) bool  { return string(bytes.TrimSpace(v)) == "true" }
func isFalse(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "false" }

func asNumber(v json.RawMessage) (float64, bool) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, false
	}
	return f, true
}
