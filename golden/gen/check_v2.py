"""Validates golden files against golden-format.md (v2, and the v1 subset).

Usage:
    /usr/bin/python3 golden/gen/check_v2.py FILE... [--rerun]

For each model file it checks, and exits non-zero on any failure:
- metadata: format, config, generator; in v2 a `spread` whose keys are
  exactly loss, logits, final_norm, every hidden.{i} and every
  grad.{parameter}, each a finite number >= 0;
- the tensor set: every required name present, no unknown name, right
  dtype and shape for the config and input_ids;
- relations that hold bit for bit in float32: hidden.0 = embedding lookup,
  h = hidden.i + o, hidden.{i+1} = h + down, act = relu(gate)^2 * up,
  grad.trace.{i}.down = grad.hidden.{i+1}, grad.trace.{i}.o = grad.trace.{i}.h;
- relations recomputed in float64 from the file's own inputs, to relative
  L2 1e-5: every rmsnorm, attention from q, k, v, logits from final_norm,
  loss from logits, grad.logits from logits.
It also reports (does not fail on) how many bitlinear outputs differ from a
float32 recompute from the file's input, which a rounding flip may cause.

With --rerun it also runs bitnet_ref on the file's own weights and
input_ids and prints the worst relative L2 distance per tensor group: how
far this generator is from the one that wrote the file.
"""

import argparse
import json
import math
import os
import sys

sys.dont_write_bytecode = True
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bitnet_ref  # noqa: E402
import safetensors_io  # noqa: E402

CLOSE = 1e-5  # relative L2 allowed for float64 recomputations of float32 values


def rel(a, b):
    a, b = a.double(), b.double()
    n = b.norm().item()
    d = (a - b).norm().item()
    return d / n if n > 0 else d


def expected_tensors(cfg, B, T, version):
    """{name: (dtype, shape)} that a file of this config must hold."""
    H, I, V, L = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_layers
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    want = {"input_ids": (torch.int64, (B, T))}
    for name, shape, _ in cfg.inventory():
        want[name] = (torch.float32, tuple(shape))
        want["grad." + name] = (torch.float32, tuple(shape))
    nodes = {"logits": (B, T, V), "final_norm": (B, T, H)}
    for i in range(L + 1):
        nodes["hidden.%d" % i] = (B, T, H)
    if version == 2:
        widths = {"attn_norm": H, "q": q, "k": kv, "v": kv, "attn": q, "attn_sub_norm": q, "o": H, "h": H,
                  "ffn_norm": H, "gate": I, "up": I, "act": I, "ffn_sub_norm": I, "down": H}
        assert list(widths) == bitnet_ref.TRACE_POINTS
        for i in range(L):
            for point, width in widths.items():
                nodes["trace.%d.%s" % (i, point)] = (B, T, width)
    for name, shape in nodes.items():
        want[name] = (torch.float32, shape)
        if version == 2:
            want["grad." + name] = (torch.float32, shape)
    want["loss"] = (torch.float32, ())
    return want


def rmsnorm64(x, w, eps):
    x, w = x.double(), w.double()
    return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def attention64(cfg, q, k, v):
    """Causal GQA attention in float64 from pre-RoPE q, k, v [B, T, heads*hd]."""
    B, T, _ = q.shape
    nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    cos, sin = bitnet_ref.rope_cos_sin(T, hd, cfg.rope_theta, torch.float64)
    q = bitnet_ref.apply_rope(q.double().view(B, T, nh, hd).transpose(1, 2), cos, sin)
    k = bitnet_ref.apply_rope(k.double().view(B, T, nkv, hd).transpose(1, 2), cos, sin)
    v = v.double().view(B, T, nkv, hd).transpose(1, 2)
    k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, nh * hd)


def check_model(path, meta, t, errors, notes):
    version = int(meta["format"].rsplit("v", 1)[1])
    cfg = bitnet_ref.Config(json.loads(meta["config"]))
    ids = t.get("input_ids")
    if ids is None or ids.dim() != 2:
        errors.append("input_ids missing or not [B,T]")
        return
    B, T = ids.shape
    want = expected_tensors(cfg, B, T, version)
    for name, (dtype, shape) in want.items():
        if name not in t:
            errors.append("missing tensor %s" % name)
        elif t[name].dtype != dtype or tuple(t[name].shape) != shape:
            errors.append("%s: %s %s, want %s %s" % (name, t[name].dtype, list(t[name].shape), dtype, list(shape)))
    for name in t:
        if name not in want:
            errors.append("unknown tensor %s" % name)
    if errors:
        return
    for name, x in t.items():
        if x.dtype == torch.float32 and not torch.isfinite(x).all():
            errors.append("%s has non-finite values" % name)

    if version == 2:
        if "spread" not in meta:
            errors.append("v2 model file without spread")
        else:
            spread = json.loads(meta["spread"])
            keys = ["loss", "logits", "final_norm"] + ["hidden.%d" % i for i in range(cfg.num_layers + 1)]
            keys += ["grad." + n for n, _, _ in cfg.inventory()]
            if sorted(spread) != sorted(keys):
                errors.append("spread keys: missing %s, unknown %s" % (
                    sorted(set(keys) - set(spread)), sorted(set(spread) - set(keys))))
            bad = [k for k, v in spread.items() if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0]
            if bad:
                errors.append("spread values not finite numbers >= 0: %s" % bad)

    def exact(name, got, want_t):
        if not torch.equal(got, want_t):
            errors.append("%s: not bit-identical (%d elements differ)" % (name, int((got != want_t).sum())))

    def close(name, got, want_t):
        r = rel(got, want_t)
        if not r <= CLOSE:
            errors.append("%s: relative L2 %.2e from its float64 recompute (limit %.0e)" % (name, r, CLOSE))

    eps = cfg.rms_norm_eps
    embed = t["model.embed_tokens.weight"]
    exact("hidden.0 = embed[input_ids]", t["hidden.0"], embed[ids])
    if version == 2:
        for i in range(cfg.num_layers):
            p = "model.layers.%d." % i
            tr = {point: t["trace.%d.%s" % (i, point)] for point in bitnet_ref.TRACE_POINTS}
            x = t["hidden.%d" % i]
            exact("trace.%d.h = hidden.%d + o" % (i, i), tr["h"], x + tr["o"])
            exact("hidden.%d = trace.%d.h + down" % (i + 1, i), t["hidden.%d" % (i + 1)], tr["h"] + tr["down"])
            exact("trace.%d.act = relu(gate)^2 * up" % i, tr["act"], torch.relu(tr["gate"]).pow(2) * tr["up"])
            exact("grad.trace.%d.down = grad.hidden.%d" % (i, i + 1), t["grad.trace.%d.down" % i],
                  t["grad.hidden.%d" % (i + 1)])
            exact("grad.trace.%d.o = grad.trace.%d.h" % (i, i), t["grad.trace.%d.o" % i], t["grad.trace.%d.h" % i])
            close("trace.%d.attn_norm" % i, tr["attn_norm"], rmsnorm64(x, t[p + "input_layernorm.weight"], eps))
            close("trace.%d.attn" % i, tr["attn"], attention64(cfg, tr["q"], tr["k"], tr["v"]))
            close("trace.%d.attn_sub_norm" % i, tr["attn_sub_norm"],
                  rmsnorm64(tr["attn"], t[p + "self_attn.attn_sub_norm.weight"], eps))
            close("trace.%d.ffn_norm" % i, tr["ffn_norm"], rmsnorm64(tr["h"], t[p + "post_attention_layernorm.weight"], eps))
            close("trace.%d.ffn_sub_norm" % i, tr["ffn_sub_norm"],
                  rmsnorm64(tr["act"], t[p + "mlp.ffn_sub_norm.weight"], eps))
            # Bitlinear outputs from the file's own inputs, float32 as generated:
            # a rounding flip may differ, so this is reported, not failed.
            for out_name, in_name, proj in [("q", "attn_norm", "self_attn.q_proj"), ("k", "attn_norm", "self_attn.k_proj"),
                                            ("v", "attn_norm", "self_attn.v_proj"), ("o", "attn_sub_norm", "self_attn.o_proj"),
                                            ("gate", "ffn_norm", "mlp.gate_proj"), ("up", "ffn_norm", "mlp.up_proj"),
                                            ("down", "ffn_sub_norm", "mlp.down_proj")]:
                y = bitnet_ref.bitlinear(tr[in_name], t[p + proj + ".weight"])
                r = rel(y, tr[out_name])
                if r > CLOSE:
                    notes.append("trace.%d.%s: float32 bitlinear recompute differs, relative L2 %.1e" % (i, out_name, r))
    L = cfg.num_layers
    close("final_norm", t["final_norm"], rmsnorm64(t["hidden.%d" % L], t["model.norm.weight"], eps))
    head = embed if cfg.tied else t["lm_head.weight"]
    logits64 = t["final_norm"].double() @ head.double().T
    close("logits = final_norm @ head^T", t["logits"], logits64)
    logits = t["logits"].double()
    flat, targets = logits[:, :-1].reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1)
    loss64 = F.cross_entropy(flat, targets)
    close("loss", t["loss"], loss64)
    if version == 2:
        # d mean-CE / d logits = (softmax - onehot) / count; 0 at the last position.
        g = torch.zeros_like(logits)
        g[:, :-1] = (torch.softmax(logits[:, :-1], -1) - F.one_hot(ids[:, 1:], cfg.vocab_size).double()) / targets.numel()
        close("grad.logits", t["grad.logits"], g)


def check_bitlinear(meta, t, errors):
    want = {"x": 2, "weight": 2, "y": 2, "grad_y": 2, "grad.x": 2, "grad.weight": 2}
    for name in want:
        if name not in t:
            errors.append("missing tensor %s" % name)
    for name in t:
        if name not in want:
            errors.append("unknown tensor %s" % name)


def rerun(t, meta):
    """Worst relative L2 per group: bitnet_ref on the file's inputs vs the file."""
    cfg = bitnet_ref.Config(json.loads(meta["config"]))
    params = {n: t[n].clone().requires_grad_(True) for n, _, _ in cfg.inventory()}
    out = bitnet_ref.forward(cfg, params, t["input_ids"], retain=True)
    out["loss"].backward()
    mine = {"loss": out["loss"].detach(), "logits": out["logits"], "final_norm": out["final_norm"]}
    for i, h in enumerate(out["hidden"]):
        mine["hidden.%d" % i] = h
    for i, tr in enumerate(out["trace"]):
        for point, x in tr.items():
            mine["trace.%d.%s" % (i, point)] = x
    for name in list(mine):
        if mine[name].grad is not None:
            mine["grad." + name] = mine[name].grad
    for n in params:
        mine["grad." + n] = params[n].grad
    worst = {}
    for name, x in mine.items():
        if name not in t:
            continue
        group = name.split(".")[0] if not name.startswith("grad.") else "grad." + name.split(".")[1]
        r = rel(x.detach(), t[name])
        if r >= worst.get(group, (-1, ""))[0]:
            worst[group] = (r, name)
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--rerun", action="store_true", help="also compare bitnet_ref on the file's inputs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    failed = 0
    for path in args.files:
        meta, t = safetensors_io.read(path)
        errors, notes = [], []
        if meta.get("format") not in ("bitnet-golden/v1", "bitnet-golden/v2"):
            errors.append("format %r" % meta.get("format"))
        elif not meta.get("generator"):
            errors.append("no generator metadata")
        elif meta.get("case", "model") == "model":
            check_model(path, meta, t, errors, notes)
        else:
            check_bitlinear(meta, t, errors)
        status = "FAIL" if errors else "ok"
        print("%s %s (%s, %d tensors)" % (status, path, meta.get("format"), len(t)))
        for e in errors:
            print("    error: " + e)
        for n in notes:
            print("    note: " + n)
        if args.rerun and not errors and meta.get("case", "model") == "model":
            for group, (r, name) in sorted(rerun(t, meta).items()):
                print("    rerun %-14s worst rel L2 %.2e (%s)" % (group, r, name))
        failed += bool(errors)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
