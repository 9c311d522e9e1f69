"""The committed golden cases: what each one is, and how its inputs are built.

Every case is fully determined by this file: a seed, a config and a batch
shape. build_model_inputs and build_bitlinear_inputs return float32 tensors;
callers may cast them to another dtype to rerun the same case.
"""

import math

import torch

from . import reference


def hf_config(H, I, L, nh, nkv, V, tied, head_dim=None, rope_theta=500000.0, rms_norm_eps=1e-5, max_positions=128,
              initializer_range=0.02):
    """An HF BitNet config.json (as a dict) with online quantization."""
    cfg = {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": H,
        "intermediate_size": I,
        "num_hidden_layers": L,
        "num_attention_heads": nh,
        "num_key_value_heads": nkv,
    }
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    cfg.update({
        "vocab_size": V,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": rms_norm_eps,
        "rope_theta": rope_theta,
        "tie_word_embeddings": tied,
        "initializer_range": initializer_range,
        "hidden_act": "relu2",
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"},
    })
    return cfg


class ModelCase:
    """A model case. version is the file format it is written in (2, or 1 to
    keep a v1 file that proves the reader still runs v1); norm_std is the
    standard deviation of the norm weights around 1; scale maps a parameter
    name suffix (e.g. "self_attn.q_proj.weight") to a power of two that every
    parameter ending with it is multiplied by after the random draw (the
    large-magnitude cases), so the draw itself is the unscaled case's;
    bf16_master rounds every parameter to bfloat16 after that (the values
    of a bf16 master checkpoint, which float32 holds exactly)."""

    kind = "model"

    def __init__(self, name, seed, config, B, T, description, version=2, norm_std=0.1, scale=None, bf16_master=False):
        self.name, self.seed, self.config, self.B, self.T = name, seed, config, B, T
        self.description = description
        self.version, self.norm_std = version, norm_std
        self.bf16_master = bf16_master
        self.scale = dict(scale or {})
        for suffix, factor in self.scale.items():
            mantissa, _ = math.frexp(factor)
            if factor <= 0 or mantissa != 0.5:
                raise ValueError("case %s: scale[%r] = %r: expected a positive power of two" % (name, suffix, factor))


class BitlinearCase:
    """A single-bitlinear case; its tensors are the same in v1 and v2."""

    kind = "bitlinear"

    def __init__(self, name, seed, builder, description, version=2):
        self.name, self.seed, self.builder, self.description = name, seed, builder, description
        self.version = version


def random_bitlinear(N, n_in, n_out):
    """x ~ N(0,1), weight ~ N(0,0.02), grad_y ~ N(0,1)."""
    def build(g):
        x = torch.randn(N, n_in, generator=g)
        weight = torch.randn(n_out, n_in, generator=g) * 0.02
        grad_y = torch.randn(N, n_out, generator=g)
        return x, weight, grad_y
    return build


def edge_bitlinear(g):
    """Odd sizes plus rows that hit the 1e-5 clamp and a large outlier.

    Row 0 is all zeros (act scale clamps, every code is 0); row 1 has
    max|x| = 3e-6 < 1e-5 (the clamp, not the max, sets the scale); row 2 has
    one outlier 1000x the rest, so most of its codes round to 0 or +-1.
    """
    N, n_in, n_out = 5, 37, 19
    x = torch.randn(N, n_in, generator=g)
    x[0] = 0.0
    x[1] = x[1] / x[1].abs().max() * 3e-6
    x[2, 5] = 1000.0 * x[2].abs().max()
    weight = torch.randn(n_out, n_in, generator=g) * 0.02
    grad_y = torch.randn(N, n_out, generator=g)
    return x, weight, grad_y


def tie_bitlinear(unit):
    """Exact round-half-to-even ties with both scales exact powers of two.

    With unit u, weight entries are +-u/2, +-3u/2 and +-u in equal numbers
    of the first two, so mean|W| = u and the weight scale is 1/u exactly;
    W*s lands on +-0.5 (to 0, not +-1) and +-1.5 (to +-2, clamped to +-1).
    Each x row has max|x| = 127u, so the act scale is 1/u exactly, and holds
    x*s = +-0.5, +-1.5, +-2.5, +-3.5, +-126.5: half-to-even gives 0, 2, 2, 4,
    126 where half-away-from-zero gives 1, 2, 3, 4, 127. grad_y is small
    integers, so y, grad.x and grad.weight are exact in float32.
    """
    def build(g):
        N, n_in, n_out = 4, 16, 8
        magnitudes = torch.tensor([0.5] * 32 + [1.5] * 32 + [1.0] * 64)
        signs = torch.randint(0, 2, (n_out * n_in,), generator=g) * 2 - 1
        order = torch.randperm(n_out * n_in, generator=g)
        weight = (magnitudes * signs)[order].reshape(n_out, n_in) * unit
        row = torch.tensor([127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 126.5, -126.5, 4.0, -7.0, 0.0, 64.5, -64.5])
        rows = []
        for r in range(N):
            sign = 1.0 if r % 2 == 0 else -1.0
            rows.append(row[torch.randperm(n_in, generator=g)] * sign)
        x = torch.stack(rows) * unit
        grad_y = (torch.randint(-3, 4, (N, n_out), generator=g)).to(torch.float32)
        return x, weight, grad_y
    return build


# The activation magnitude of bitlinear-large: max|x| per row is 2^122
# (5.3e36), so x*127 overflows float32 (3.4e38) while x*(127/max|x|) does not.
LARGE_ACT = 2.0 ** 122


def large_bitlinear(g):
    """Activations near float32 overflow and integer sums past int16.

    Every x row has max|x| = 2^122: an act_quant that forms x*127 before
    dividing by max|x| overflows to inf. Row 0 is the constant +2^122 (every
    code +127), row 1 alternates +-2^122 (codes +-127); weight row 0 is all
    +mean|W| and row 1 all -mean|W| (codes +1 and -1, every one), so
    y[0,0] and y[0,1] sum 127*320 = 40640 integer products, past an int16
    accumulator's 32767. Rows 2-3 of x are random. grad_y ~ N(0,1)/16, so
    grad.weight stays below 4*3*2^122/16, far from overflow.
    """
    N, n_in, n_out = 4, 320, 16
    x = torch.randn(N, n_in, generator=g)
    x = x / x.abs().amax(dim=1, keepdim=True)
    x[0] = 1.0
    x[1] = torch.tensor([1.0, -1.0]).repeat(n_in // 2)
    x = x * LARGE_ACT
    weight = torch.randn(n_out, n_in, generator=g) * 0.02
    m = weight.abs().mean()
    weight[0] = m
    weight[1] = -m
    grad_y = torch.randn(N, n_out, generator=g) / 16
    return x, weight, grad_y


CASES = [
    ModelCase(
        "model-mha-tied-L1-hd16-V251-T13", 101,
        hf_config(H=64, I=128, L=1, nh=4, nkv=4, V=251, tied=True, rope_theta=10000.0, rms_norm_eps=1e-6),
        B=1, T=13,
        description="MHA (4 heads, 4 KV heads), tied lm_head, 1 layer, odd vocab and T, rope_theta 1e4, eps 1e-6, B=1",
        version=1),  # kept in format v1 (byte-identical to the v1 generator's file) so v1 stays tested
    ModelCase(
        "model-gqa-untied-L2-hd32-V331-T17", 102,
        hf_config(H=64, I=160, L=2, nh=4, nkv=2, V=331, tied=False, head_dim=32),
        B=2, T=17,
        description="GQA 2:1, untied lm_head, explicit head_dim 32 with nh*hd=128 != hidden 64, odd vocab and T"),
    ModelCase(
        "model-mqa-untied-L3-hd24-B3", 103,
        hf_config(H=72, I=128, L=3, nh=3, nkv=1, V=256, tied=False, rope_theta=10000.0),
        B=3, T=11,
        description="MQA (3 heads over 1 KV head), untied, head_dim 24 derived from hidden/heads, 3 layers, B=3"),
    ModelCase(
        "model-gqa-tied-L4-hd8-V257-T24", 104,
        hf_config(H=64, I=100, L=4, nh=8, nkv=2, V=257, tied=True, rms_norm_eps=1e-6),
        B=2, T=24,
        description="GQA 4:1 with head_dim 8, tied, 4 layers, vocab 257, eps 1e-6"),
    ModelCase(
        "model-mqa-tied-L1-hd128", 105,
        hf_config(H=64, I=96, L=1, nh=2, nkv=1, V=256, tied=True, head_dim=128),
        B=2, T=16,
        description="MQA with explicit head_dim 128 (the official model's) and nh*hd=256 != hidden 64, rope_theta 5e5"),
    ModelCase(
        "model-gqa-untied-L2-hd16-std0.1", 107,
        hf_config(H=64, I=128, L=2, nh=4, nkv=2, V=199, tied=False, initializer_range=0.1),
        B=2, T=20,
        description="GQA 2:1, untied, latent weights ~ N(0, 0.1) so attention is far from uniform and RoPE, "
                    "masking and head-mapping bugs show in the logits, not only in the gradients"),
    ModelCase(
        "model-gqa-tied-L4-T96-oneflip", 20,
        hf_config(H=64, I=96, L=4, nh=4, nkv=2, V=128, tied=True),
        B=2, T=96,
        description="GQA 2:1, tied, 4 layers, T=96: float32 and float64 differ in exactly one activation rounding decision "
                    "(layer 3 down_proj input; see TOLERANCE.md)"),
    ModelCase(
        "model-gqa-tied-L4-T96-flips", 8,
        hf_config(H=64, I=96, L=4, nh=4, nkv=2, V=128, tied=True),
        B=2, T=96,
        description="GQA 2:1, tied, 4 layers, T=96: float32 and float64 differ in thousands of activation rounding decisions, "
                    "cascading from layer 1 o_proj input (see TOLERANCE.md)"),
    BitlinearCase(
        "bitlinear-random", 201, random_bitlinear(N=4, n_in=64, n_out=32),
        description="random x ~ N(0,1), weight ~ N(0,0.02), grad_y ~ N(0,1)"),
    BitlinearCase(
        "bitlinear-edge", 202, edge_bitlinear,
        description="odd sizes 5x37 -> 19; a zero row and a row below the 1e-5 clamp; an outlier row"),
    BitlinearCase(
        "bitlinear-ties", 203, tie_bitlinear(1.0),
        description="weight scale 1 and act scale 1 exactly; x*s and W*s on .5 ties where half-to-even differs from half-away"),
    BitlinearCase(
        "bitlinear-ties-scaled", 204, tie_bitlinear(0.5),
        description="as bitlinear-ties with weight and act scales exactly 2 (mean|W| = 0.5, max|x| = 63.5)"),
    # Large magnitudes: a softmax without the max shift (exp of a score or
    # logit above 88.7 is inf in float32), an act_quant that overflows, or an
    # int16 accumulator fails at its op on these, and only there.
    ModelCase(
        "model-gqa-tied-L2-large-scores", 108,
        hf_config(H=64, I=128, L=2, nh=4, nkv=2, V=128, tied=True),
        B=2, T=24,
        description="GQA 2:1, tied, 2 layers; q_proj and k_proj weights times 256, so attention scores reach "
                    "about 2900 and most rows' largest score is above 88.7 (and 709.8): exp without subtracting the "
                    "row max overflows float32 (and float64), the max-shifted softmax does not",
        scale={"self_attn.q_proj.weight": 256.0, "self_attn.k_proj.weight": 256.0}),
    ModelCase(
        "model-mha-untied-L2-large-logits", 109,
        hf_config(H=64, I=128, L=2, nh=4, nkv=4, V=160, tied=False),
        B=2, T=20,
        description="MHA, untied, 2 layers; model.norm weight times 2048, so logits reach about 1100 and every "
                    "position's largest logit is above 88.7: a log-softmax (loss) without the max shift overflows "
                    "float32 (and, above 709.8, float64)",
        scale={"model.norm.weight": 2048.0}),
    BitlinearCase(
        "bitlinear-large", 205, large_bitlinear,
        description="max|x| = 2^122 in every row (x*127 overflows float32); a constant row and an alternating row "
                    "of codes +-127 against weight rows of all +1 and all -1 codes: integer sums of 40640, past int16"),
]


def build_model_inputs(case):
    """Returns (cfg, params, input_ids) for a model case, in float32."""
    g = torch.Generator().manual_seed(case.seed)
    cfg = reference.Config(case.config)
    params = reference.init_params(cfg, g, std=case.config["initializer_range"], norm_std=case.norm_std)
    ids = torch.randint(0, cfg.vocab_size, (case.B, case.T), generator=g, dtype=torch.int64)
    apply_scale(case, params)
    if case.bf16_master:
        with torch.no_grad():
            for t in params.values():
                t.copy_(t.to(torch.bfloat16).to(torch.float32))
    # The largest id is both looked up and a loss target.
    ids[0, -2] = cfg.vocab_size - 1
    return cfg, params, ids


def apply_scale(case, params):
    """Multiplies the parameters named by case.scale, in place (exact: powers of two)."""
    for suffix, factor in case.scale.items():
        hit = [n for n in params if n.endswith(suffix)]
        if not hit:
            raise ValueError("case %s: scale[%r] matches no parameter" % (case.name, suffix))
        with torch.no_grad():
            for n in hit:
                params[n].mul_(factor)


def largest_magnitudes(cfg, out):
    """(largest attention score of each layer, largest logit) of a
    reference.forward result: the scores are recomputed from the trace's q
    and k as causal_attention computes them (RoPE, GQA, times hd^-0.5),
    over the causal entries only."""
    B, T, _ = out["logits"].shape
    nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    with torch.no_grad():
        cos, sin = reference.rope_cos_sin(T, hd, cfg.rope_theta, out["logits"].dtype)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = []
        for tr in out["trace"]:
            q = reference.apply_rope(tr["q"].view(B, T, nh, hd).transpose(1, 2), cos, sin)
            k = reference.apply_rope(tr["k"].view(B, T, nkv, hd).transpose(1, 2), cos, sin)
            k = reference.expand_kv(k, nh // nkv)
            s = torch.matmul(q, k.transpose(-1, -2)) * (hd ** -0.5)
            scores.append(float(s[..., causal].max()))
        return scores, float(out["logits"].max())


def build_bitlinear_inputs(case):
    """Returns (x, weight, grad_y) for a bitlinear case, in float32."""
    g = torch.Generator().manual_seed(case.seed)
    return case.builder(g)
