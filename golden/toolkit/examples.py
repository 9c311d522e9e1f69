"""The reference model as HF-named nn.Modules, with the catalog's bugs, and
the dumper's example cases.

BitNetForCausalLM(config, seed, bug=None) lays reference.py's model out like
HF BitNetForCausalLM; every op goes through a reference.Ops table (the bug's,
bugs.py, or the reference). Built with seed=S, its weights are
reference.init_params of a torch.Generator seeded with S, so without a bug
its outputs are reference.forward's, bit for bit.

MissingAttnSubNorm (the submodule is gone) and ExtraQNorm (a QK-norm) are
laid out differently; the dumper refuses them with a report.

    /usr/bin/python3 -B -m golden.toolkit.examples --out DIR [--seed N]

writes DIR/reference-tied.safetensors, DIR/reference-untied.safetensors,
DIR/{bug}.safetensors for every bug of EXAMPLE_BUGS, and DIR/layout.json
with the dumper's report for each layout mismatch, in one process, so the
Go test (golden/dump/dump_test.go) pays torch's import once. Tiny config:
H=64, I=128, 2 layers, 4 query heads over 2 KV heads, V=256, B=2, T=16.
"""

import argparse
import importlib
import json
import os
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import bugs
from . import dump
from . import format as fmt
from . import reference

# The catalog's bugs the examples dump; golden/dump/dump_test.go says
# which op and layer the harness must flag first for each.
EXAMPLE_BUGS = ["interleaved-rope", "no-attn-sub-norm", "layernorm-input", "silu", "act-quant-per-tensor"]


class BitLinear(nn.Module):
    """linear(act_quant(x), weight_quant(W)), straight-through (reference.bitlinear)."""

    def __init__(self, n_in, n_out, ops):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.ops = ops

    def forward(self, x):
        return reference.bitlinear(x, self.weight, ops=self.ops)


class RMSNorm(nn.Module):
    def __init__(self, n, eps, role, ops):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps, self.role, self.ops = eps, role, ops

    def forward(self, hidden_states):
        return self.ops.norm(self.role, hidden_states, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.nh, self.nkv, self.hd, self.ops = o.num_heads, o.num_kv_heads, o.head_dim, o.ops
        q, kv, H = self.nh * self.hd, self.nkv * self.hd, o.hidden_size
        self.q_proj = BitLinear(H, q, o.ops)
        self.k_proj = BitLinear(H, kv, o.ops)
        self.v_proj = BitLinear(H, kv, o.ops)
        self.attn_sub_norm = RMSNorm(q, o.rms_norm_eps, "attn_sub_norm", o.ops)
        self.o_proj = BitLinear(q, H, o.ops)
        if o.q_norm:
            self.q_norm = RMSNorm(self.hd, o.rms_norm_eps, "q_norm", o.ops)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, **kwargs):
        cos, sin = position_embeddings
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states)
        if hasattr(self, "q_norm"):
            q = self.q_norm(q.view(B, T, self.nh, self.hd)).reshape(B, T, self.nh * self.hd)
        out = reference.causal_attention(q, self.k_proj(hidden_states), self.v_proj(hidden_states),
                                         self.nh, self.nkv, self.hd, cos, sin, self.ops)
        return self.o_proj(self.attn_sub_norm(out)), None


class MLP(nn.Module):
    def __init__(self, o):
        super().__init__()
        H, I = o.hidden_size, o.intermediate_size
        self.gate_proj = BitLinear(H, I, o.ops)
        self.up_proj = BitLinear(H, I, o.ops)
        self.down_proj = BitLinear(I, H, o.ops)
        self.ffn_sub_norm = RMSNorm(I, o.rms_norm_eps, "ffn_sub_norm", o.ops)
        self.ops = o.ops

    def forward(self, x):
        return self.down_proj(self.ffn_sub_norm(self.ops.mlp_act(self.gate_proj(x), self.up_proj(x))))


class DecoderLayer(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.input_layernorm = RMSNorm(o.hidden_size, o.rms_norm_eps, "input_layernorm", o.ops)
        self.self_attn = Attention(o)
        self.post_attention_layernorm = RMSNorm(o.hidden_size, o.rms_norm_eps, "post_attention_layernorm", o.ops)
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
        self.norm = RMSNorm(o.hidden_size, o.rms_norm_eps, "model.norm", o.ops)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        T = input_ids.shape[1]
        x = self.embed_tokens(input_ids)
        pos = self.o.ops.rope_cos_sin(T, self.o.head_dim, self.o.rope_theta, x.dtype)
        for layer in self.layers:
            x = layer(x, attention_mask=attention_mask, position_embeddings=pos)[0]
        return self.norm(x)


class BitNetForCausalLM(nn.Module):
    """The reference model as HF-named modules. config: the HF config.json dict.

    seed: the weights are reference.init_params(Generator(seed), std =
    initializer_range); None draws the seed from torch's global generator
    (which the dumper's command line seeds with --seed). bug: a bugs.py
    catalog name whose ops the modules use.
    """

    def __init__(self, config, seed=None, bug=None, q_norm=False, drop=()):
        super().__init__()
        cfg = fmt.Config(config)
        o = types.SimpleNamespace(**{k: v for k, v in vars(cfg).items() if k not in ("raw", "fields")})
        o.ops = bugs.get(bug).ops if bug else reference.REFERENCE
        o.q_norm = q_norm
        self.config, self.bug = config, bug
        self.model = BitNetModel(o)
        self.lm_head = nn.Linear(o.hidden_size, o.vocab_size, bias=False)
        if cfg.tied:
            self.lm_head.weight = self.model.embed_tokens.weight
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()).item())
        g = torch.Generator().manual_seed(seed)
        values = reference.init_params(cfg, g, std=float(config.get("initializer_range", 0.02)))
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


# Layout mismatches: the dumper must refuse them, naming what is missing and extra.

class MissingAttnSubNorm(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        L = int(config["num_hidden_layers"])
        super().__init__(config, seed, drop=["model.layers.%d.self_attn.attn_sub_norm" % i for i in range(L)])


class ExtraQNorm(BitNetForCausalLM):
    def __init__(self, config, seed=None):
        super().__init__(config, seed, q_norm=True)


def config(tied):
    return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": tied, "initializer_range": 0.05, "hidden_act": "relu2",
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "online"}}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Dumps the reference module, every example bug and the layout mismatches")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    # The classes under their package name (not __main__'s), so each file's
    # generator note names golden.toolkit.examples.BitNetForCausalLM.
    ex = importlib.import_module(__spec__.name if __spec__ else __name__)
    jobs = [("reference-tied", None, True), ("reference-untied", None, False)]
    jobs += [(bug, bug, True) for bug in EXAMPLE_BUGS]
    for name, bug, tied in jobs:
        cfg = config(tied)
        path = os.path.join(args.out, name + ".safetensors")
        description = "bug %s: %s" % (bug, bugs.get(bug).description) if bug else "the reference model"
        loss = dump.dump(ex.BitNetForCausalLM(cfg, seed=args.seed, bug=bug), cfg, path, seed=args.seed, batch=2, seq=16,
                         description=description)
        print("%s: loss %.6f" % (path, loss))
    layout = {}
    for cls in (ex.MissingAttnSubNorm, ex.ExtraQNorm):
        cfg = config(True)
        try:
            dump.dump(cls(cfg, seed=args.seed), cfg, os.path.join(args.out, cls.__name__ + ".safetensors"))
            layout[cls.__name__] = {"error": None}
        except ex.dump.LayoutError as e:
            layout[cls.__name__] = {"error": str(e), "missing": e.missing, "extra": e.extra}
    with open(os.path.join(args.out, "layout.json"), "w") as f:
        json.dump(layout, f, indent=1)


if __name__ == "__main__":
    main()
