"""Reference BitNet b1.58 model in plain PyTorch, written from REFERENCE.md.

The generator writes the committed golden cases with it, the validator
recomputes from it, the dumper's example modules (examples.py) call it, and
the bug catalog (bugs.py) replaces its ops. It follows HF
BitNetForCausalLM with online quantization: every decoder linear is a
BitLinear (act_quant on the input, weight_quant on the latent weight,
straight-through backward); the lm_head is an ordinary linear.

Dimension legend used in shape comments:
    B batch, T sequence length, H hidden_size, I intermediate_size,
    V vocab_size, L num_hidden_layers, nh query heads, nkv key/value heads,
    hd head_dim.

The ops that a bug may replace are the fields of an Ops table (REFERENCE is
the correct one): the two quantizers, the RMSNorm of each role, the RoPE
tables and rotation, the GQA head mapping and the MLP activation.

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

from . import format as fmt

Config = fmt.Config

ACT_LEVELS = 127.0  # int8 activations: codes in [-128, 127]
SCALE_FLOOR = 1e-5  # both quantizers clamp their statistic from below

# Half-width of the relative perturbation of quantizer inputs: 2^-21 is
# about 4 float32 ulps, the size of a summation-order difference.
PERTURB_EPS = 2.0 ** -21

# The RMSNorms of the model, by role (the HF module of each).
NORM_ROLES = ["input_layernorm", "attn_sub_norm", "post_attention_layernorm", "ffn_sub_norm", "model.norm"]


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


def rms_norm(x, w, eps):
    """w * x / sqrt(mean(x^2) + eps) over the last dimension."""
    variance = x.pow(2).mean(dim=-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def norm(role, x, w, eps):
    """The RMSNorm of every role (NORM_ROLES); a bug may change one role's."""
    return rms_norm(x, w, eps)


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
    """x [B, heads, T, hd]; cos, sin [T, hd]: rotates the halves (x_j, x_{j+hd/2}) by angle j."""
    return x * cos + rotate_half(x) * sin


def expand_kv(kv, group):
    """[B, nkv, T, hd] -> [B, nkv*group, T, hd]: query head h reads KV head h // group."""
    return kv.repeat_interleave(group, dim=1)


def mlp_act(gate, up):
    """relu(gate)^2 * up."""
    return torch.relu(gate).pow(2) * up


class Ops:
    """The replaceable ops of the model. Ops() is the reference; Ops(name=fn)
    replaces the named ops (a bug of bugs.py)."""

    NAMES = ["act_quant", "weight_quant", "norm", "rope_cos_sin", "apply_rope", "expand_kv", "mlp_act"]

    def __init__(self, **replace):
        unknown = sorted(set(replace) - set(self.NAMES))
        if unknown:
            raise ValueError("Ops: unknown op(s) %s, known: %s" % (", ".join(unknown), ", ".join(self.NAMES)))
        for name in self.NAMES:
            setattr(self, name, replace.get(name, globals()[name]))


REFERENCE = Ops()


def bitlinear(x, w, recorder=None, perturb=None, ops=REFERENCE):
    """linear(act_quant(x), weight_quant(w)); x [..., in], w [out, in].

    act_quant runs before weight_quant, so a perturbation generator draws
    the input's eps first, then the weight's.
    """
    return F.linear(ops.act_quant(x, recorder, perturb), ops.weight_quant(w, recorder, perturb))


def causal_attention(q, k, v, nh, nkv, hd, cos, sin, ops=REFERENCE):
    """Causal GQA attention; q [B, T, nh*hd], k and v [B, T, nkv*hd] before
    RoPE; cos, sin [T, hd]. Returns the heads concatenated, [B, T, nh*hd].
    Runs in the dtype of its inputs (float64 for the validator)."""
    B, T, _ = q.shape
    q = q.view(B, T, nh, hd).transpose(1, 2)  # [B, nh, T, hd]
    k = k.view(B, T, nkv, hd).transpose(1, 2)  # [B, nkv, T, hd]
    v = v.view(B, T, nkv, hd).transpose(1, 2)  # [B, nkv, T, hd]
    q = ops.apply_rope(q, cos, sin)
    k = ops.apply_rope(k, cos, sin)
    k = ops.expand_kv(k, nh // nkv)  # [B, nh, T, hd]
    v = ops.expand_kv(v, nh // nkv)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (hd ** -0.5)  # [B, nh, T, T]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=scores.dtype)
    return torch.matmul(probs, v).transpose(1, 2).reshape(B, T, nh * hd)


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


def keep(trace, name, t, retain):
    """Stores trace point `name` and returns t unchanged.

    With retain, t.retain_grad() makes backward() fill t.grad with the total
    derivative d loss / d t, summed over every use of this tensor object.
    """
    if retain and t.requires_grad:
        t.retain_grad()
    trace[name] = t
    return t


def layer_params(params, i):
    prefix = "model.layers.%d." % i
    return {name[len(prefix):]: t for name, t in params.items() if name.startswith(prefix)}


def layer(cfg, p, x, cos, sin, recorder=None, perturb=None, retain=False, ops=REFERENCE):
    """One decoder layer on x = hidden.{i} [B, T, H]; returns (hidden.{i+1},
    {trace point: tensor}). Each trace tensor is the very object the next
    ops consume, so h = x + o and hidden.{i+1} = h + down hold bit for bit."""
    tr = {}
    eps = cfg.rms_norm_eps

    def lin(name, a, weight):
        return keep(tr, name, bitlinear(a, p[weight], recorder, perturb, ops), retain)

    attn_norm = keep(tr, "attn_norm", ops.norm("input_layernorm", x, p["input_layernorm.weight"], eps), retain)
    q = lin("q", attn_norm, "self_attn.q_proj.weight")  # [B, T, nh*hd]
    k = lin("k", attn_norm, "self_attn.k_proj.weight")  # [B, T, nkv*hd]
    v = lin("v", attn_norm, "self_attn.v_proj.weight")  # [B, T, nkv*hd]
    attn = keep(tr, "attn", causal_attention(q, k, v, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cos, sin, ops),
                retain)
    sub = keep(tr, "attn_sub_norm", ops.norm("attn_sub_norm", attn, p["self_attn.attn_sub_norm.weight"], eps), retain)
    o = lin("o", sub, "self_attn.o_proj.weight")  # [B, T, H]
    h = keep(tr, "h", x + o, retain)
    ffn_norm = keep(tr, "ffn_norm", ops.norm("post_attention_layernorm", h, p["post_attention_layernorm.weight"], eps),
                    retain)
    gate = lin("gate", ffn_norm, "mlp.gate_proj.weight")  # [B, T, I]
    up = lin("up", ffn_norm, "mlp.up_proj.weight")  # [B, T, I]
    act = keep(tr, "act", ops.mlp_act(gate, up), retain)
    inner = keep(tr, "ffn_sub_norm", ops.norm("ffn_sub_norm", act, p["mlp.ffn_sub_norm.weight"], eps), retain)
    down = lin("down", inner, "mlp.down_proj.weight")  # [B, T, H]
    return h + down, {name: tr[name] for name in fmt.TRACE_NAMES}


def loss_of(logits, input_ids):
    """Mean next-token cross-entropy of logits[:, :-1] against input_ids[:, 1:]."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1))


def forward(cfg, params, input_ids, recorder=None, perturb=None, retain=False, ops=REFERENCE):
    """Runs the model on input_ids [B, T] (int64).

    Returns a dict with hidden (list of L+1 [B, T, H]), trace (list of L
    dicts, trace point -> tensor), final_norm [B, T, H], logits [B, T, V]
    and loss (a scalar: mean next-token cross-entropy).

    With retain, every hidden, trace, final_norm and logits tensor keeps its
    gradient after loss.backward(): the total derivative of the loss with
    that tensor as one node of the graph.
    """
    B, T = input_ids.shape
    dtype = params["model.embed_tokens.weight"].dtype
    cos, sin = ops.rope_cos_sin(T, cfg.head_dim, cfg.rope_theta, dtype)
    x = F.embedding(input_ids, params["model.embed_tokens.weight"])  # [B, T, H]
    hidden = [keep({}, "hidden.0", x, retain)]
    traces = []
    for i in range(cfg.num_layers):
        x, tr = layer(cfg, layer_params(params, i), x, cos, sin, recorder, perturb, retain, ops)
        x = keep({}, "hidden", x, retain)
        hidden.append(x)
        traces.append(tr)
    final_norm = keep({}, "final_norm", ops.norm("model.norm", x, params["model.norm.weight"], cfg.rms_norm_eps), retain)
    head = params["model.embed_tokens.weight"] if cfg.tied else params["lm_head.weight"]
    logits = keep({}, "logits", F.linear(final_norm, head), retain)  # [B, T, V], never quantized
    loss = loss_of(logits, input_ids)
    return {"hidden": hidden, "trace": traces, "final_norm": final_norm, "logits": logits, "loss": loss}


def nodes(out):
    """(name, tensor) of every v2 node of a forward() result, in file order:
    hidden.0, trace.0.*, hidden.1, ..., hidden.L, final_norm, logits."""
    result = []
    for i, trace in enumerate(out["trace"]):
        result.append((fmt.hidden_name(i), out["hidden"][i]))
        result += [(fmt.trace_name(i, point), trace[point]) for point in fmt.TRACE_NAMES]
    result.append((fmt.hidden_name(len(out["trace"])), out["hidden"][-1]))
    result.append(("final_norm", out["final_norm"]))
    result.append(("logits", out["logits"]))
    return result
