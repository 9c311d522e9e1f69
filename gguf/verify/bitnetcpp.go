package verify

import (
	"fmt"
	"strings"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/model"
)

// The bitnet.cpp classes say what bitnet.cpp will do with a faithful file
// (facts from the llama.cpp fork's build_bitnet_158 and loader, and
// BitNet's I2_S kernels; docs/gguf.md): every finding has Runtime set.

// HeadDim names a head_dim other than hidden_size / num_attention_heads:
// the loader takes n_embd_head = n_embd / n_head, rope.dimension_count as
// n_rot, and build_bitnet_158 asserts they are equal, so the load aborts
// (or, from convert-ms-to-gguf-bitnet.py, which writes hidden/heads as the
// rope dimension, runs with the wrong head size).
func (v *Verifier) HeadDim() []Finding {
	c := v.cfg
	H, nh, hd := c.HiddenSize, c.NumAttentionHeads, c.HeadDim()
	if nh > 0 && H%nh == 0 && hd == H/nh {
		return nil
	}
	key := v.archPrefix() + "rope.dimension_count"
	got := "absent"
	if val, ok := v.file.Value(key); ok {
		got = valueText(val)
	}
	nEmbdHead := "not an integer"
	if nh > 0 && H%nh == 0 {
		nEmbdHead = fmt.Sprint(H / nh)
	}
	return []Finding{finding(CheckHeadDim, key, "", fmt.Sprint(hd), nEmbdHead,
		"%s: gguf=%s, hf head_dim=%d, but bitnet.cpp takes n_embd_head = hidden_size/num_attention_heads = %d/%d = %s and build_bitnet_158 asserts n_embd_head == n_rot: a model with head_dim != hidden/heads cannot run in bitnet.cpp",
		key, got, hd, H, nh, nEmbdHead)}
}

// archPrefix is the prefix of the file's arch keys.
func (v *Verifier) archPrefix() string {
	if v.arch == "" {
		return gguf.ArchB158 + "."
	}
	return v.arch + "."
}

// SubNormSize names attn_sub_norm tensors of num_attention_heads·head_dim
// elements when that is not hidden_size: the loader creates
// blk.N.attn_sub_norm.weight as {n_embd} and refuses any other shape.
func (v *Verifier) SubNormSize() []Finding {
	c := v.cfg
	q := c.NumAttentionHeads * c.HeadDim()
	if q == c.HiddenSize {
		return nil
	}
	name := "blk.0.attn_sub_norm.weight"
	got := fmt.Sprintf("[%d]", q)
	if info, ok := v.file.Tensor(name); ok {
		got = fmt.Sprint(info.Ne)
	}
	return []Finding{finding(CheckSubNormSize, "", name, fmt.Sprintf("[%d]", c.HiddenSize), got,
		"%s (and the same tensor of all %d layers): ne %s = num_attention_heads·head_dim = %d·%d, but bitnet.cpp's loader requires {n_embd} = [%d]: the load fails with a wrong-shape error",
		name, c.NumHiddenLayers, got, c.NumAttentionHeads, c.HeadDim(), c.HiddenSize)}
}

// RowWidths names I2_S linears whose input width (ne[0]) is not a multiple
// of 128: bitnet.cpp's kernel reads nb = K/128 whole 128-element blocks
// per row at x + row·K/4, so rows are self-contained only when K % 128 ==
// 0; otherwise a flat file that is correct element by element computes
// garbage. One finding per tensor kind, naming the first layer's tensor.
func (v *Verifier) RowWidths() []Finding {
	var out []Finding
	seen := map[string]bool{}
	for _, t := range gguf.TensorMap(v.cfg) {
		if t.Spec.Kind != model.KindLinear {
			continue
		}
		info, ok := v.file.Tensor(t.GGUF)
		if !ok || !info.Type.Ternary() || len(info.Ne) == 0 || info.Ne[0]%128 == 0 {
			continue
		}
		kind := t.GGUF[strings.Index(t.GGUF, ".")+1:]
		kind = kind[strings.Index(kind, ".")+1:]
		if seen[kind] {
			continue
		}
		seen[kind] = true
		K := info.Ne[0]
		out = append(out, finding(CheckRowWidths, "", t.GGUF, "ne[0] a multiple of 128", fmt.Sprint(K),
			"%s (and %s of every layer): input width ne[0]=%d is not a multiple of 128: bitnet.cpp's I2_S kernel reads %d whole 128-element blocks per row at row·%d/4 bytes, so rows are not self-contained and it computes garbage",
			t.GGUF, kind, K, K/128, K))
	}
	return out
}

// FloatLinears names linears stored as F32, F16 or BF16: bitnet.cpp runs
// them as plain float matmuls, and activations are quantized only inside
// its I2_S and TL kernels, so such a file does not compute HF's BitLinear
// (act_quant then a ternary product).
func (v *Verifier) FloatLinears() []Finding {
	var first string
	var typ gguf.Type
	n, total := 0, 0
	for _, t := range gguf.TensorMap(v.cfg) {
		if t.Spec.Kind != model.KindLinear {
			continue
		}
		total++
		info, ok := v.file.Tensor(t.GGUF)
		if !ok || info.Type.Ternary() {
			continue
		}
		if n == 0 {
			first, typ = t.GGUF, info.Type
		}
		n++
	}
	if n == 0 {
		return nil
	}
	return []Finding{finding(CheckFloatLinears, "", first, "I2_S", typ.String(),
		"%d of %d linears are float tensors, first %s (%s): bitnet.cpp runs them as plain float matmuls and quantizes activations only inside its I2_S/TL kernels, so it skips HF's per-token int8 act_quant: not HF online semantics (convert with --outtype i2_s, or llama-quantize I2_S)",
		n, total, first, typ)}
}
