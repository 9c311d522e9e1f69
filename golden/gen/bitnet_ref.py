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

They also take an optional `perturb` (a Perturbation). When given, every
quantizer sees its input multiplied elementwise by (1 + eps), eps uniform in
[-2^-21, 2^-21], before it computes its scale and rounds (see perturbed()).
This is how generate.py makes the alternative correct runs behind `spread`.
"""

import torch
import torch.nn.functional as F

ACT_LEVELS = 127.0  # int8 activations: codes in [-128, 127]
SCALE_FLOOR = 1e-5  # both quantizers clamp their statistic from below


# Half-width of the relative perturbation of quantizer inputs: 2^-21 is
# about 4 float32 ulps, the size of a summation-order difference.
PERTURB_EPS = 2.0 ** -21


class Perturbation:
    """The rounding noise of one alternative run (see perturbed()).

    A tensor that feeds several quantizers (attn_norm feeds q, k and v;
    ffn_norm feeds gate and up) gets one draw, reused by each of them: a
    real implementation computes that tensor once, so all its quantizations
    see the same rounding of it.
    """

    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)
        self.seen = {}  # id(tensor) -> (tensor, perturbed values); the tensor keeps the id alive

    def apply(self, t):
        key = id(t)
        if key not in self.seen:
            data = t.detach()
            u = torch.rand(data.shape, generator=self.generator, dtype=data.dtype)  # [0, 1)
            self.seen[key] = (t, data * (1.0 + (2.0 * u - 1.0) * PERTURB_EPS))
        return self.seen[key][1]


def perturbed(t, perturb):
    """The values a quantizer sees for t: t itself, or with a Perturbation,
    t times (1 + eps) elementwise, eps = (2u - 1) * 2^-21 with u ~ U[0, 1)
    drawn in t's dtype, one value per element in row-major order, in the
    order the quantizers first meet each tensor."""
    if perturb is None:
        return t.detach()
    return perturb.apply(t)


def weight_quant(w, recorder=None, perturb=None):
    """Ternary latent-weight quantizer with a straight-through gradient.

    s = 1 / max(mean|W|, 1e-5) over the whole matrix;
    Wq = clamp(round(W*s), -1, 1) / s. torch.round is round-half-to-even.
    With perturb, W is replaced by W*(1+eps) in both mean|W| and W*s; the
    gradient still passes to w unchanged.
    """
    seen = perturbed(w, perturb)
    scale = 1.0 / seen.abs().mean().clamp(min=SCALE_FLOOR)
    codes = (seen * scale).round().clamp(-1, 1)
    if recorder is not None:
        recorder.append(("weight", codes))
    return w + (codes / scale - w).detach()


def act_quant(x, recorder=None, perturb=None):
    """Per-token int8 activation quantizer with a straight-through gradient.

    s = 127 / max(max|x|, 1e-5) per row (last dimension);
    xq = clamp(round(x*s), -128, 127) / s.
    With perturb, x is replaced by x*(1+eps) in both max|x| and x*s; the
    gradient still passes to x unchanged.
    """
    seen = perturbed(x, perturb)
    absmax = seen.abs().amax(dim=-1, keepdim=True)
    scale = ACT_LEVELS / absmax.clamp(min=SCALE_FLOOR)
    codes = (seen * scale).round().clamp(-128, 127)
    if recorder is not None:
        recorder.append(("act", codes))
    return x + (codes / scale - x).detach()


def bitlinear(x, w, recorder=None, perturb=None):
    """linear(act_quant(x), weight_quant(w)); x [..., in], w [out, in].

    act_quant runs before weight_quant, so a perturbation generator draws
    the input's eps first, then the weight's.
    """
    return F.linear(act_quant(x, recorder, perturb), weight_quant(w, recorder, perturb))


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


def keep(trace, name, t, retain):
    """Stores trace point `name` and returns t unchanged.

    With retain, t.retain_grad() makes backward() fill t.grad with the total
    derivative d loss / d t, summed over every use of this tensor object.
    """
    if retain and t.requires_grad:
        t.retain_grad()
    trace[name] = t
    return t


def attention(cfg, p, x, cos, sin, recorder, perturb=None, trace=None, retain=False):
    """Causal GQA self-attention of x = attn_norm [B, T, H]; returns o [B, T, H].

    Records q, k, v (before RoPE), attn (before attn_sub_norm),
    attn_sub_norm and o into the dict `trace` when given.
    """
    if trace is None:
        trace = {}
    B, T, _ = x.shape
    nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = keep(trace, "q", bitlinear(x, p["self_attn.q_proj.weight"], recorder, perturb), retain)  # [B, T, nh*hd]
    k = keep(trace, "k", bitlinear(x, p["self_attn.k_proj.weight"], recorder, perturb), retain)  # [B, T, nkv*hd]
    v = keep(trace, "v", bitlinear(x, p["self_attn.v_proj.weight"], recorder, perturb), retain)  # [B, T, nkv*hd]
    q = q.view(B, T, nh, hd).transpose(1, 2)  # [B, nh, T, hd]
    k = k.view(B, T, nkv, hd).transpose(1, 2)  # [B, nkv, T, hd]
    v = v.view(B, T, nkv, hd).transpose(1, 2)  # [B, nkv, T, hd]
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    k = expand_kv(k, nh // nkv)  # [B, nh, T, hd]
    v = expand_kv(v, nh // nkv)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (hd ** -0.5)  # [B, nh, T, T]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=scores.dtype)
    out = keep(trace, "attn", torch.matmul(probs, v).transpose(1, 2).reshape(B, T, nh * hd), retain)  # [B, T, nh*hd]
    out = keep(trace, "attn_sub_norm", rms_norm(out, p["self_attn.attn_sub_norm.weight"], cfg.rms_norm_eps), retain)
    return keep(trace, "o", bitlinear(out, p["self_attn.o_proj.weight"], recorder, perturb), retain)


def mlp(cfg, p, y, recorder, perturb=None, trace=None, retain=False):
    """down_proj(ffn_sub_norm(relu(gate)^2 * up)); y = ffn_norm [B, T, H] -> down [B, T, H].

    Records gate, up, act, ffn_sub_norm and down into `trace` when given.
    """
    if trace is None:
        trace = {}
    gate = keep(trace, "gate", bitlinear(y, p["mlp.gate_proj.weight"], recorder, perturb), retain)  # [B, T, I]
    up = keep(trace, "up", bitlinear(y, p["mlp.up_proj.weight"], recorder, perturb), retain)  # [B, T, I]
    act = keep(trace, "act", torch.relu(gate).pow(2) * up, retain)
    inner = keep(trace, "ffn_sub_norm", rms_norm(act, p["mlp.ffn_sub_norm.weight"], cfg.rms_norm_eps), retain)
    return keep(trace, "down", bitlinear(inner, p["mlp.down_proj.weight"], recorder, perturb), retain)


def layer_params(params, i):
    prefix = "model.layers.%d." % i
    return {name[len(prefix):]: t for name, t in params.items() if name.startswith(prefix)}


# The op-level trace points of one decoder layer, in computation order
# (bitnet-golden/v2 `trace.{i}.*`).
TRACE_POINTS = ["attn_norm", "q", "k", "v", "attn", "attn_sub_norm", "o", "h",
                "ffn_norm", "gate", "up", "act", "ffn_sub_norm", "down"]


def forward(cfg, params, input_ids, recorder=None, perturb=None, retain=False):
    """Runs the model on input_ids [B, T] (int64).

    Returns a dict with hidden (list of L+1 [B, T, H]), trace (list of L
    dicts, TRACE_POINTS -> tensor), final_norm [B, T, H], logits [B, T, V]
    and loss (a scalar: mean next-token cross-entropy).

    With retain, every hidden, trace, final_norm and logits tensor keeps its
    gradient after loss.backward(): the total derivative of the loss with
    that tensor as one node of the graph.
    """
    B, T = input_ids.shape
    dtype = params["model.embed_tokens.weight"].dtype
    cos, sin = rope_cos_sin(T, cfg.head_dim, cfg.rope_theta, dtype)
    x = F.embedding(input_ids, params["model.embed_tokens.weight"])  # [B, T, H]
    hidden = [keep({}, "hidden.0", x, retain)]
    traces = []
    for i in range(cfg.num_layers):
        p = layer_params(params, i)
        tr = {}
        attn_norm = keep(tr, "attn_norm", rms_norm(x, p["input_layernorm.weight"], cfg.rms_norm_eps), retain)
        o = attention(cfg, p, attn_norm, cos, sin, recorder, perturb, tr, retain)
        h = keep(tr, "h", x + o, retain)
        ffn_norm = keep(tr, "ffn_norm", rms_norm(h, p["post_attention_layernorm.weight"], cfg.rms_norm_eps), retain)
        down = mlp(cfg, p, ffn_norm, recorder, perturb, tr, retain)
        x = keep({}, "hidden", h + down, retain)
        hidden.append(x)
        traces.append({name: tr[name] for name in TRACE_POINTS})
    final_norm = keep({}, "final_norm", rms_norm(x, params["model.norm.weight"], cfg.rms_norm_eps), retain)
    head = params["model.embed_tokens.weight"] if cfg.tied else params["lm_head.weight"]
    logits = keep({}, "logits", F.linear(final_norm, head), retain)  # [B, T, V], never quantized
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), input_ids[:, 1:].reshape(-1))
    return {"hidden": hidden, "trace": traces, "final_norm": final_norm, "logits": logits, "loss": loss}
