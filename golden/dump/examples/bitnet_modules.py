"""HF-named nn.Modules around the generator's reference math, and broken variants.

BitNetForCausalLM(config) is golden/gen/bitnet_ref.py's model as modules laid
out like HF BitNetForCausalLM; every op calls bitnet_ref (act_quant,
weight_quant, rms_norm, rope_cos_sin, apply_rope, expand_kv). Built with
seed=S, its weights are bitnet_ref.init_params of a torch.Generator seeded
with S, so its outputs are bitnet_ref.forward's, bit for bit.

The subclasses below each depart from BitNet b1.58 in one op, as a user's
model might; the harness must name that op and layer:

| class | departure | first op the harness must flag |
|---|---|---|
| InterleavedRoPE | RoPE rotates pairs (2j, 2j+1) instead of halves | layer 0 attention |
| NoAttnSubNorm | attn_sub_norm is nn.Identity | layer 0 attn_sub_norm |
| LayerNormInput | input_layernorm is nn.LayerNorm | layer 0 input_layernorm (attn_norm) |
| SiLUMLP | SiLU(gate)·up instead of relu(gate)²·up | layer 0 act |
| PerTensorActQuant | one activation scale per tensor, not per token | layer 0 q_proj |

and two whose layout differs, which the dumper refuses with a clear report:
MissingAttnSubNorm (the submodule is gone) and ExtraQNorm (a QK-norm).

Use from the repository root, e.g.
    /usr/bin/python3 golden/dump/dump.py \
        --module golden/dump/examples/bitnet_modules.py:BitNetForCausalLM --config cfg.json --out case.safetensors
"""

import os
import sys
import types

sys.dont_write_bytecode = True
_GEN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "gen")
if _GEN not in sys.path:
    sys.path.append(_GEN)  # last, so that golden/gen's module names shadow nothing

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bitnet_ref  # noqa: E402


def per_tensor_act_quant(x):
    """The departure: one int8 scale for the whole tensor."""
    scale = bitnet_ref.ACT_LEVELS / x.detach().abs().max().clamp(min=bitnet_ref.SCALE_FLOOR)
    codes = (x.detach() * scale).round().clamp(-128, 127)
    return x + (codes / scale - x).detach()


class BitLinear(nn.Module):
    """linear(act_quant(x), weight_quant(W)), straight-through (bitnet_ref.bitlinear)."""

    def __init__(self, n_in, n_out, act_quant=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.act_quant = act_quant or bitnet_ref.act_quant

    def forward(self, x):
        return F.linear(self.act_quant(x), bitnet_ref.weight_quant(self.weight))


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, hidden_states):
        return bitnet_ref.rms_norm(hidden_states, self.weight, self.eps)


class ReLUSquared(nn.Module):
    def forward(self, x):
        return torch.relu(x).pow(2)


def apply_rope_interleaved(x, cos, sin):
    """The departure: rotates pairs (x[2j], x[2j+1]) by angle j (GPT-J / Meta style)."""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.nh, self.nkv, self.hd = o.num_heads, o.num_kv_heads, o.head_dim
        q, kv, H = self.nh * self.hd, self.nkv * self.hd, o.hidden_size
        self.q_proj = BitLinear(H, q, o.act_quant)
        self.k_proj = BitLinear(H, kv, o.act_quant)
        self.v_proj = BitLinear(H, kv, o.act_quant)
        self.attn_sub_norm = nn.Identity() if o.skip_attn_sub_norm else RMSNorm(q, o.rms_norm_eps)
        self.o_proj = BitLinear(q, H, o.act_quant)
        self.rope = o.rope
        if o.q_norm:
            self.q_norm = RMSNorm(self.hd, o.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, **kwargs):
        cos, sin = position_embeddings
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(hidden_states).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(hidden_states).view(B, T, self.nkv, self.hd).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q = self.q_norm(q)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        k = bitnet_ref.expand_kv(k, self.nh // self.nkv)
        v = bitnet_ref.expand_kv(v, self.nh // self.nkv)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.hd ** -0.5)
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
        probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1, dtype=scores.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(self.attn_sub_norm(out)), None


class MLP(nn.Module):
    def __init__(self, o):
        super().__init__()
        H, I = o.hidden_size, o.intermediate_size
        self.gate_proj = BitLinear(H, I, o.act_quant)
        self.up_proj = BitLinear(H, I, o.act_quant)
        self.down_proj = BitLinear(I, H, o.act_quant)
        self.ffn_sub_norm = RMSNorm(I, o.rms_norm_eps)
        self.act_fn = nn.SiLU() if o.silu else ReLUSquared()

    def forward(self, x):
        return self.down_proj(self.ffn_sub_norm(self.act_fn(self.gate_proj(x)) * self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(o.hidden_size, eps=o.rms_norm_eps) if o.layernorm \
            else RMSNorm(o.hidden_size, o.rms_norm_eps)
        self.self_attn = Attention(o)
        self.post_attention_layernorm = RMSNorm(o.hidden_size, o.rms_norm_eps)
        self.mlp = MLP(o)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
        residual = hidden_states
        attn, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states),
                                 position_embeddings=position_embeddings, attention_mask=attention_mask)
        hidden_states = residual + attn
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return (hidden_states,)  # HF decoder layers return a tuple


class BitNetModel(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.o = o
        self.embed_tokens = nn.Embedding(o.vocab_size, o.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(o) for _ in range(o.num_layers))
        self.norm = RMSNorm(o.hidden_size, o.rms_norm_eps)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        T = input_ids.shape[1]
        x = self.embed_tokens(input_ids)
        pos = bitnet_ref.rope_cos_sin(T, self.o.head_dim, self.o.rope_theta, x.dtype)
        for layer in self.layers:
            x = layer(x, attention_mask=attention_mask, position_embeddings=pos)[0]
        return self.norm(x)


class BitNetForCausalLM(nn.Module):
    """The reference model as HF-named modules. config: the HF config.json dict.

    seed: the weights are bitnet_ref.init_params(Generator(seed), std =
    initializer_range); None draws the seed from torch's global generator
    (which dump.py seeds with --seed). Keyword options select departures
    (see the subclasses below).
    """

    def __init__(self, config, seed=None, rope=None, skip_attn_sub_norm=False, layernorm=False, silu=False,
                 act_quant=None, q_norm=False, drop=()):
        super().__init__()
        cfg = bitnet_ref.Config(config)
        o = types.SimpleNamespace(**{k: v for k, v in vars(cfg).items() if k != "raw"})
        o.rope = rope or bitnet_ref.apply_rope
        o.skip_attn_sub_norm, o.layernorm, o.silu, o.act_quant, o.q_norm = \
            skip_attn_sub_norm, layernorm, silu, act_quant, q_norm
        self.config = config
        self.model = BitNetModel(o)
        self.lm_head = nn.Linear(o.hidden_size, o.vocab_size, bias=False)
        if cfg.tied:
            self.lm_head.weight = self.model.embed_tokens.weight
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()).item())
        g = torch.Generator().manual_seed(seed)
        values = bitnet_ref.init_params(cfg, g, std=float(config.get("initializer_range", 0.02)))
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, t in values.items():
                if name in params:
                    params[name].copy_(t)
        for path in drop:  # remove submodules (layout-mismatch examples)
            parent, _, leaf = path.rpartition(".")
            delattr(self.get_submodule(parent), leaf)

    def forward(self, input_ids=None, attention_mask=None, labels=None, use_cache=None, **kwargs):
        logits = self.lm_head(self.model(input_ids, attention_mask=attention_mask))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return types.SimpleNamespace(logits=logits, loss=loss)


# Departures that keep the layout: the dumper writes them, the harness must catch them.
# Each is its own class, so the file's generator string names the departure.

class InterleavedRoPE(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, rope=apply_rope_interleaved)


class NoAttnSubNorm(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, skip_attn_sub_norm=True)


class LayerNormInput(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, layernorm=True)


class SiLUMLP(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, silu=True)


class PerTensorActQuant(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, act_quant=per_tensor_act_quant)


# Layout mismatches: the dumper must refuse them, naming what is missing and extra.

class MissingAttnSubNorm(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        L = int(config["num_hidden_layers"])
        super().__init__(config, seed, drop=["model.layers.%d.self_attn.attn_sub_norm" % i for i in range(L)])


class ExtraQNorm(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, q_norm=True)


# name -> (class, the op and layer the harness must flag first)
BROKEN = {
    "InterleavedRoPE": (InterleavedRoPE, "layer 0 attention"),
    "NoAttnSubNorm": (NoAttnSubNorm, "layer 0 attn_sub_norm"),
    "LayerNormInput": (LayerNormInput, "layer 0 input_layernorm (attn_norm)"),
    "SiLUMLP": (SiLUMLP, "layer 0 act"),
    "PerTensorActQuant": (PerTensorActQuant, "layer 0 q_proj"),
}
