"""Reference BitNet b1.58 model in plain PyTorch, written from REFERENCE.md.

This is the model the golden cases are generated with. It follows HF
BitNetForCausalLM with online quantization: every decoder linear is a
BitLinear (act_quant on the input, weight_quant on the latent weight,
straight-through backward); the lm_head is an ordinary linear.

Dimension legend used in shape comments:
    B batch, T sequence length, H hidden_size, I intermediate_size,
    V vocab_size, L num_hidden_layers, nh query heads, nkv key/value heads,
    hd head_dim.

The functions take an optional `recorder` list. When given, every quantizer
appends the integer codes it rounded to (in call order), so two runs in
different precisions can count how many rounding decisions flipped.
"""

import torch
import torch.nn.functional as F

ACT_LEVELS = 127.0  # int8 activations: codes in [-128, 127]
SCALE_FLOOR = 1e-5  # both quantizers clamp their statistic from below


def weight_quant(w, recorder=None):
    """Ternary latent-weight quantizer with a straight-through gradient.

    s = 1 / max(mean|W|, 1e-5) over the whole matrix;
    Wq = clamp(round(W*s), -1, 1) / s. torch.round is round-half-to-even.
    """
    scale = 1.0 / w.detach().abs().mean().clamp(min=SCALE_FLOOR)
    codes = (w.detach() * scale).round().clamp(-1, 1)
    if recorder is not None:
        recorder.append(("weight", codes))
    return w + (codes / scale - w).detach()


def act_quant(x, recorder=None):
    """Per-token int8 activation quantizer with a straight-through gradient.

    s = 127 / max(max|x|, 1e-5) per row (last dimension);
    xq = clamp(round(x*s), -128, 127) / s.
    """
    absmax = x.detach().abs().amax(dim=-1, keepdim=True)
    scale = ACT_LEVELS / absmax.clamp(min=SCALE_FLOOR)
    codes = (x.detach() * scale).round().clamp(-128, 127)
    if recorder is not None:
        recorder.append(("act", codes))
    return x + (codes / scale - x).detach()


def bitlinear(x, w, recorder=None):
    """linear(act_quant(x), weight_quant(w)); x [..., in], w [out, in]."""
    return F.linear(act_quant(x, recorder), weight_quant(w, recorder))


def rms_norm(x, w, eps):
    """w * x / sqrt(mean(x^2) + eps) over the last dimension."""
    variance = x.pow(2).mean(dim=-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def rope_cos_sin(T, hd, theta, dtype):
    """HF default (non-interleaved) rotary tables, each [T, hd]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(dtype) / hd))  # [hd/2]
    positions = torch.arange(T, dtype=torch.int64).to(dtype)  # [T]
    angles = positions[:, None] * inv_freq[None, :]  # [T, hd/2]
    emb = torch.cat((angles, angles), dim=-1)  # [T, hd]
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    """x [B, heads, T, hd]; cos, sin [T, hd]."""
    return x * cos + rotate_half(x) * sin


class Config:
    """The fields of an HF BitNet config.json that the math uses."""

    def __init__(self, raw):
        self.raw = raw
        self.hidden_size = int(raw["hidden_size"])
        self.intermediate_size = int(raw["intermediate_size"])
        self.num_layers = int(raw["num_hidden_layers"])
        self.num_heads = int(raw["num_attention_heads"])
        self.num_kv_heads = int(raw["num_key_value_heads"])
        self.head_dim = int(raw.get("head_dim") or self.hidden_size // self.num_heads)
        self.vocab_size = int(raw["vocab_size"])
        self.rms_norm_eps = float(raw["rms_norm_eps"])
        self.rope_theta = float(raw["rope_theta"])
        self.tied = bool(raw["tie_word_embeddings"])
        if raw.get("hidden_act", "relu2") != "relu2":
            raise ValueError("hidden_act must be relu2, got %r" % raw.get("hidden_act"))
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError("num_key_value_heads must divide num_attention_heads")

    def inventory(self):
        """(HF name, shape, kind) for every parameter, in checkpoint order."""
        H, I, V = self.hidden_size, self.intermediate_size, self.vocab_size
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        out = [("model.embed_tokens.weight", (V, H), "embedding")]
        for i in range(self.num_layers):
            p = "model.layers.%d." % i
            out += [
                (p + "input_layernorm.weight", (H,), "norm"),
                (p + "self_attn.q_proj.weight", (q, H), "linear"),
                (p + "self_attn.k_proj.weight", (kv, H), "linear"),
                (p + "self_attn.v_proj.weight", (kv, H), "linear"),
                (p + "self_attn.attn_sub_norm.weight", (q,), "norm"),
                (p + "self_attn.o_proj.weight", (H, q), "linear"),
                (p + "post_attention_layernorm.weight", (H,), "norm"),
                (p + "mlp.gate_proj.weight", (I, H), "linear"),
                (p + "mlp.up_proj.weight", (I, H), "linear"),
                (p + "mlp.ffn_sub_norm.weight", (I,), "norm"),
                (p + "mlp.down_proj.weight", (H, I), "linear"),
            ]
        out.append(("model.norm.weight", (H,), "norm"))
        if not self.tied:
            out.append(("lm_head.weight", (V, H), "head"))
        return out


def init_params(cfg, generator, std=0.02, norm_std=0.1, dtype=torch.float32):
    """Latent weights ~ N(0, std); norm weights ~ N(1, norm_std).

    Tensors are drawn in inventory order from `generator`, so a seed fixes
    every value. norm_std=0 gives HF's all-ones norm init.
    """
    params = {}
    for name, shape, kind in cfg.inventory():
        t = torch.randn(shape, generator=generator, dtype=dtype)
        if kind == "norm":
            t = t.mul_(norm_std).add_(1.0)
        else:
            t = t.mul_(std)
        params[name] = t.requires_grad_(True)
    return params


def expand_kv(kv, group):
    """[B, nkv, T, hd] -> [B, nkv*group, T, hd]: query head h reads KV head h // group."""
    return kv.repeat_interleave(group, dim=1)


def attention(cfg, p, x, cos, sin, recorder):
    """Causal GQA self-attention; x [B, T, H] -> [B, T, H]."""
    B, T, _ = x.shape
    nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = bitlinear(x, p["self_attn.q_proj.weight"], recorder).view(B, T, nh, hd).transpose(1, 2)  # [B, nh, T, hd]
    k = bitlinear(x, p["self_attn.k_proj.weight"], recorder).view(B, T, nkv, hd).transpose(1, 2)  # [B, nkv, T, hd]
    v = bitlinear(x, p["self_attn.v_proj.weight"], recorder).view(B, T, nkv, hd).transpose(1, 2)  # [B, nkv, T, hd]
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    k = expand_kv(k, nh // nkv)  # [B, nh, T, hd]
    v = expand_kv(v, nh // nkv)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (hd ** -0.5)  # [B, nh, T, T]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=scores.dtype)
    out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, nh * hd)  # [B, T, nh*hd]
    out = rms_norm(out, p["self_attn.attn_sub_norm.weight"], cfg.rms_norm_eps)
    return bitlinear(out, p["self_attn.o_proj.weight"], recorder)


def mlp(cfg, p, y, recorder):
    """down_proj(ffn_sub_norm(relu(gate)^2 * up)); y [B, T, H] -> [B, T, H]."""
    gate = bitlinear(y, p["mlp.gate_proj.weight"], recorder)  # [B, T, I]
    up = bitlinear(y, p["mlp.up_proj.weight"], recorder)  # [B, T, I]
    inner = rms_norm(torch.relu(gate).pow(2) * up, p["mlp.ffn_sub_norm.weight"], cfg.rms_norm_eps)
    return bitlinear(inner, p["mlp.down_proj.weight"], recorder)


def layer_params(params, i):
    prefix = "model.layers.%d." % i
    return {name[len(prefix):]: t for name, t in params.items() if name.startswith(prefix)}


def forward(cfg, params, input_ids, recorder=None):
    """Runs the model on input_ids [B, T] (int64).

    Returns a dict with hidden (list of L+1 [B, T, H]), final_norm [B, T, H],
    logits [B, T, V] and loss (a scalar: mean next-token cross-entropy).
    """
    B, T = input_ids.shape
    dtype = params["model.embed_tokens.weight"].dtype
    cos, sin = rope_cos_sin(T, cfg.head_dim, cfg.rope_theta, dtype)
    x = F.embedding(input_ids, params["model.embed_tokens.weight"])  # [B, T, H]
    hidden = [x]
    for i in range(cfg.num_layers):
        p = layer_params(params, i)
        h = x + attention(cfg, p, rms_norm(x, p["input_layernorm.weight"], cfg.rms_norm_eps), cos, sin, recorder)
        x = h + mlp(cfg, p, rms_norm(h, p["post_attention_layernorm.weight"], cfg.rms_norm_eps), recorder)
        hidden.append(x)
    final_norm = rms_norm(x, params["model.norm.weight"], cfg.rms_norm_eps)
    head = params["model.embed_tokens.weight"] if cfg.tied else params["lm_head.weight"]
    logits = F.linear(final_norm, head)  # [B, T, V], never quantized
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), input_ids[:, 1:].reshape(-1))
    return {"hidden": hidden, "final_norm": final_norm, "logits": logits, "loss": loss}
