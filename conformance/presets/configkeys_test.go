package presets_test

import (
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/model"
)

// tinyConfigJSON is a small valid BitNet config.
const tinyConfigJSON = `{"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
 "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
 "hidden_act": "relu2", "tie_word_embeddings": true}`

// replaceField replaces the "key": value pair of js by pair, or adds pair.
func replaceField(js, key, pair string) string {
	i := strings.Index(js, key)
	if i < 0 {
		return strings.Replace(js, "{", "{"+pair+", ", 1)
	}
	j := i + strings.IndexAny(js[i:], ",}")
	return js[:i] + pair + js[j:]
}

// classified is the preset of a config.json, its keys classified.
func classified(t *testing.T, data, source string) presets.Preset {
	t.Helper()
	c, err := model.DecodeConfig([]byte(data), source)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := presets.ClassifyKeys([]byte(data), source)
	if err != nil {
		t.Fatal(err)
	}
	return presets.Preset{Name: source, Source: source, Config: c, Keys: keys}
}

// problemText joins a preset's problems.
func problemText(p presets.Preset) string {
	var lines []string
	for _, q := range presets.Problems(p) {
		lines = append(lines, q.Error())
	}
	return strings.Join(lines, "\n")
}

// published2B4T is microsoft/bitnet-b1.58-2B-4T's config.json.
const published2B4T = `{
  "architectures": ["BitNetForCausalLM"],
  "attention_bias": false, "attention_dropout": 0.0,
  "auto_map": {"AutoConfig": "configuration_bitnet.BitNetConfig", "AutoModelForCausalLM": "modeling_bitnet.BitNetForCausalLM"},
  "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "relu2",
  "hidden_size": 2560, "initializer_range": 0.02, "intermediate_size": 6912,
  "max_position_embeddings": 4096, "model_type": "bitnet", "rms_norm_eps": 1e-05,
  "num_attention_heads": 20, "num_hidden_layers": 30, "num_key_value_heads": 5,
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.52.0.dev0", "use_cache": true, "vocab_size": 128256,
  "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"}
}`

// tritterNative is a config as Tritter's own PyTorch code writes it: its
// block has LayerNorm, QK-norm, no sub-norms, a post-MLP norm, threshold
// ternarization without activation quantization, and biases.
const tritterNative = `{
  "model_size": "7B", "hidden_size": 4096, "num_layers": 32, "num_heads": 32, "num_kv_heads": 8,
  "intermediate_size": 11008, "max_position_embeddings": 131072, "rope_theta": 500000.0,
  "vocab_size": 65536, "use_bitnet": true, "bitnet_precision": 1.58,
  "layer_norm_eps": 1e-5, "use_qk_norm": true, "use_sub_norm": false, "use_post_mlp_norm": true,
  "ternary_threshold": 0.5, "quantize_activations": false, "bias": true,
  "use_flash_attention": true, "use_sliding_window": false, "sliding_window_size": null,
  "int4_kv_cache": true, "gradient_checkpointing": true, "dropout": 0.1,
  "modalities": ["text", "code"], "target_device": "cuda", "tie_word_embeddings": false
}`

// llamaLike is a config from another family that only looks similar.
const llamaLike = `{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 16,
  "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 65536,
  "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
  "hidden_act": "silu", "mlp_bias": true, "attention_bias": true, "pretraining_tp": 1,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
  "partial_rotary_factor": 0.5, "use_parallel_residual": true, "sliding_window": 4096,
  "activation_function": "gelu_new", "n_embd": 2048, "head_dim": 128
}`

func keyOf(t *testing.T, keys presets.ConfigKeys, name string) presets.ConfigKey {
	t.Helper()
	for _, k := range keys {
		if k.Key == name {
			return k
		}
	}
	t.Fatalf("key %q not classified; keys:\n%s", name, keys.Lines())
	return presets.ConfigKey{}
}

func TestPublishedConfigHasNoIncompatibleOrUnknownKey(t *testing.T) {
	p := classified(t, published2B4T, "2b4t.json")
	c := p.Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if bad := append(p.Keys.Of(presets.KeyIncompatible), p.Keys.Of(presets.KeyUnknown)...); len(bad) > 0 {
		t.Errorf("published config has incompatible or unknown keys:\n%s", bad.Lines())
	}
	if k := keyOf(t, p.Keys, "quantization_config.linear_class"); k.Class != presets.KeyChecked || !strings.Contains(k.Note, "multiplied") {
		t.Errorf("linear_class: %v", k)
	}
	if k := keyOf(t, p.Keys, "head_dim"); k.Class != presets.KeyDefaulted {
		t.Errorf("head_dim absent: %v, expected defaulted", k)
	}
	if conv, err := c.ScaleConvention(); err != nil || conv != model.ScaleMultiplies || c.QuantizationMode() != "offline" {
		t.Errorf("convention %v, %v, mode %s", conv, err, c.QuantizationMode())
	}
}

// The case the issue measured: QK-norm, a LayerNorm eps instead of
// rms_norm_eps, activation_function instead of hidden_act. Each is named
// with its meaning, and the missing HF keys are said to be defaulted.
func TestConfigDeclaringQKNormAndLayerNorm(t *testing.T) {
	data := `{"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
	 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
	 "max_position_embeddings": 128, "rope_theta": 10000.0, "tie_word_embeddings": true,
	 "use_qk_norm": true, "layer_norm_eps": 1e-5, "activation_function": "gelu"}`
	p := classified(t, data, "user.json")
	for key, want := range map[string]string{
		"use_qk_norm":         "adds q_norm/k_norm weights and normalises q,k before RoPE; BitNet b1.58 has none",
		"layer_norm_eps":      "LayerNorm",
		"activation_function": `uses hidden_act "relu2"`,
	} {
		if k := keyOf(t, p.Keys, key); k.Class != presets.KeyIncompatible || !strings.Contains(k.String(), want) {
			t.Errorf("%s: %v, expected incompatible mentioning %q", key, k, want)
		}
	}
	for _, key := range []string{"hidden_act", "rms_norm_eps"} {
		if k := keyOf(t, p.Keys, key); k.Class != presets.KeyDefaulted || !strings.Contains(k.Note, "HF BitNetConfig default") {
			t.Errorf("%s: %v, expected defaulted", key, k)
		}
	}
	problems := problemText(p)
	for _, want := range []string{"use_qk_norm: true — adds q_norm/k_norm", "layer_norm_eps: 1e-5 —", "activation_function: \"gelu\" —"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems %q do not mention %q", problems, want)
		}
	}
}

func TestTritterNativeConfigReportedKeyByKey(t *testing.T) {
	p := classified(t, tritterNative, "tritter.json")
	incompatible := map[string]string{
		"model_size":           "Tritter's size preset",
		"num_layers":           "num_hidden_layers = 30",
		"num_heads":            "num_attention_heads = 20",
		"num_kv_heads":         "num_key_value_heads = 5",
		"layer_norm_eps":       "RMSNorm",
		"use_qk_norm":          "q_norm/k_norm",
		"use_sub_norm":         "attn_sub_norm and ffn_sub_norm",
		"use_post_mlp_norm":    "after the MLP residual",
		"ternary_threshold":    "threshold",
		"quantize_activations": "int8",
		"bias":                 "biases",
		"int4_kv_cache":        "4 bits",
		"dropout":              "dropout",
	}
	for key, want := range incompatible {
		if k := keyOf(t, p.Keys, key); k.Class != presets.KeyIncompatible || !strings.Contains(k.Note, want) {
			t.Errorf("%s: %v, expected incompatible mentioning %q", key, k, want)
		}
	}
	for _, key := range []string{"use_bitnet", "bitnet_precision", "use_flash_attention", "use_sliding_window", "sliding_window_size", "gradient_checkpointing", "modalities", "target_device"} {
		if k := keyOf(t, p.Keys, key); k.Class != presets.KeyHarmless {
			t.Errorf("%s: %v, expected harmless", key, k)
		}
	}
	problems := presets.Problems(p)
	for key := range incompatible {
		found := false
		for _, p := range problems {
			found = found || p.Field == key
		}
		if !found {
			t.Errorf("Problems does not name %s", key)
		}
	}
}

func TestOtherFamilyConfigReportedKeyByKey(t *testing.T) {
	p := classified(t, llamaLike, "llama.json")
	for key, want := range map[string]string{
		"model_type":            "not BitNetForCausalLM (SwiGLU",
		"architectures":         "LlamaForCausalLM is not BitNetForCausalLM",
		"hidden_act":            "silu(gate)·up",
		"mlp_bias":              "gate/up/down_proj",
		"attention_bias":        "q/k/v/o_proj",
		"rope_scaling":          "rescales RoPE",
		"partial_rotary_factor": "partial rotary",
		"use_parallel_residual": "parallel residual",
		"sliding_window":        "sliding-window",
		"activation_function":   "activation key",
		"n_embd":                "GPT-2's key; HF BitNetConfig ignores it and uses hidden_size = 2048",
	} {
		if k := keyOf(t, p.Keys, key); k.Class != presets.KeyIncompatible || !strings.Contains(k.Note, want) {
			t.Errorf("%s: %v, expected incompatible mentioning %q", key, k, want)
		}
	}
	if k := keyOf(t, p.Keys, "pretraining_tp"); k.Class != presets.KeyHarmless {
		t.Errorf("pretraining_tp 1: %v, expected harmless", k)
	}
	if problems := problemText(p); !strings.Contains(problems, "rope_scaling: {\"rope_type\":\"llama3\",\"factor\":8.0} — rescales RoPE") {
		t.Errorf("problems %q, expected rope_scaling named with its value", problems)
	}
}

func TestUnknownKeyIsListedButBuildable(t *testing.T) {
	data := replaceField(tinyConfigJSON, `"my_new_flag"`, `"my_new_flag": 3`)
	p := classified(t, data, "x.json")
	if err := p.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(presets.Problems(p)) != 0 {
		t.Errorf("an unknown key is a problem: %v", presets.Problems(p))
	}
	if k := keyOf(t, p.Keys, "my_new_flag"); k.Class != presets.KeyUnknown || k.Value != "3" {
		t.Errorf("my_new_flag: %v, expected unknown with value 3", k)
	}
}

func TestAbsentKeysAreDefaulted(t *testing.T) {
	p := classified(t, `{"num_key_value_heads": null}`, "empty.json")
	if defaulted := p.Keys.Of(presets.KeyDefaulted); len(defaulted) < 10 {
		t.Errorf("defaulted keys:\n%s", defaulted.Lines())
	}
}

// gpt2Config is openai-community/gpt2's config.json.
const gpt2Config = `{
  "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
  "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
  "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
  "summary_first_dropout": 0.1, "summary_proj_to_labels": true, "summary_type": "cls_index",
  "summary_use_proj": true, "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257
}`

// llama3Config has the list of eos ids Llama 3 configs carry.
const llama3Config = `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 2048,
  "intermediate_size": 8192, "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "rope_scaling": {"factor": 32.0, "rope_type": "llama3"}, "rope_theta": 500000.0, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
  "mlp_bias": false, "attention_bias": false, "pretraining_tp": 1, "head_dim": 64}`

// Configs of other families decode and get a key-by-key report, never a
// decode error on a field BitNet does not need.
func TestOtherFamiliesDecode(t *testing.T) {
	for _, tc := range []struct {
		name, data, modelType string
		incompatible, unknown []string
	}{
		{"gpt2", gpt2Config, "gpt2",
			[]string{"activation_function", "architectures", "attn_pdrop", "embd_pdrop", "layer_norm_epsilon", "model_type", "n_ctx", "n_embd", "n_head", "n_layer", "n_positions", "resid_pdrop"},
			[]string{"summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type", "summary_use_proj"}},
		{"llama3", llama3Config, "llama", []string{"architectures", "hidden_act", "model_type", "rope_scaling"}, nil},
	} {
		p := classified(t, tc.data, tc.name+".json")
		var got, unknown []string
		for _, k := range p.Keys.Of(presets.KeyIncompatible) {
			got = append(got, k.Key)
		}
		for _, k := range p.Keys.Of(presets.KeyUnknown) {
			unknown = append(unknown, k.Key)
		}
		if strings.Join(got, ",") != strings.Join(tc.incompatible, ",") || strings.Join(unknown, ",") != strings.Join(tc.unknown, ",") {
			t.Errorf("%s: incompatible %v, unknown %v; expected %v and %v", tc.name, got, unknown, tc.incompatible, tc.unknown)
		}
		if problems := problemText(p); !strings.Contains(problems, `model_type: "`+tc.modelType+`" — HF builds`) {
			t.Errorf("%s: problems %q", tc.name, problems)
		}
	}
}
