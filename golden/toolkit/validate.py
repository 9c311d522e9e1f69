"""The golden file validator: checks files against docs/golden-format.md.

Usage (from the repository root):

    /usr/bin/python3 -B -m golden.toolkit.validate FILE... [--like REFERENCE] [--structure-only] [--rerun]

For every file, and exits 1 when any file fails:
- metadata: format, case, generator, config (online quantization), and in
  v2 model cases an optional spread with a finite number >= 0 for exactly
  format.json's spread keys;
- the tensors: every name format.json implies for the config and
  input_ids, no other, each with its dtype and shape, in format.json's
  order; no non-finite value;
- identities every correct file satisfies whatever the model computes
  inside its ops, bit for bit in float32: hidden.0 = embed[input_ids],
  h = hidden.i + o, hidden.{i+1} = h + down, grad.trace.{i}.o =
  grad.trace.{i}.h, grad.trace.{i}.down = grad.hidden.{i+1}; and, to
  relative L2 1e-5 in float64: loss from logits, grad.logits from logits;
- unless --structure-only (for files dumped from a model under test, whose
  ops may be wrong): the BitNet b1.58 semantics, recomputed in float64
  from the file's own tensors to relative L2 1e-5: act = relu(gate)^2 * up
  (bit for bit), every RMSNorm, attention from q, k, v, logits from
  final_norm. Bitlinear outputs recomputed in float32 are reported (not
  failed) when they differ, which a rounding flip may cause.

--like REFERENCE also requires the same tensor names, dtypes, shapes and
order as REFERENCE (a file of the same config shape) and its metadata keys.
--rerun runs the reference model on each model file's weights and
input_ids and prints the worst relative L2 distance per tensor group: how
far this generator is from the one that wrote the file.
"""

import argparse
import json
import math
import sys

from . import determinism  # noqa: F401  (first: one BLAS thread before torch loads)
import torch
import torch.nn.functional as F

from . import format as fmt
from . import reference
from . import safetensors_io

CLOSE = 1e-5  # relative L2 allowed for float64 recomputations of float32 values


def rel(a, b):
    """||a - b|| / ||b|| in float64 (the absolute distance when b is 0)."""
    a, b = a.double(), b.double()
    n = b.norm().item()
    d = (a - b).norm().item()
    return d / n if n > 0 else d


class Report:
    """The problems (failures) and notes (reported only) of one file."""

    def __init__(self, path):
        self.path, self.errors, self.notes = path, [], []

    def error(self, msg):
        self.errors.append(msg)

    def exact(self, name, got, want):
        if not torch.equal(got, want):
            self.error("%s: not bit-identical (%d of %d elements differ)" % (name, int((got != want).sum()), got.numel()))

    def close(self, name, got, want):
        r = rel(got, want)
        if not r <= CLOSE:
            self.error("%s: relative L2 %.2e from its float64 recompute (limit %.0e)" % (name, r, CLOSE))


def check_metadata(meta, report):
    """The metadata keys; returns (version, kind) or None when unusable."""
    version = fmt.VERSIONS.get(meta.get("format"))
    if version is None:
        report.error("metadata format: %r, expected one of %s" % (meta.get("format"), ", ".join(fmt.VERSIONS)))
        return None
    if not meta.get("generator", "").strip():
        report.error("metadata generator: missing or empty, expected free text naming the tool, version and seed")
    kind = meta.get("case", fmt.SPEC["default_case_kind"])
    if kind not in fmt.SPEC["case_kinds"]:
        report.error("metadata case: %r, expected one of %s" % (kind, ", ".join(fmt.SPEC["case_kinds"])))
        return None
    if kind == "model":
        if "config" not in meta:
            report.error("metadata config: missing, expected the HF config.json as a JSON string")
            return None
        mode = (json.loads(meta["config"]).get("quantization_config") or {}).get("quantization_mode")
        if mode != "online":
            report.error("metadata config: quantization_config.quantization_mode %r, expected 'online'" % mode)
    return version, kind


def check_layout(entries, want, report, where="format.json"):
    """entries: the file's (name, info) in file order; want: [(name, dtype, shape)]."""
    got = {name: (info["dtype"], tuple(info["shape"])) for name, info in entries}
    wanted = {name: (dtype, shape) for name, dtype, shape in want}
    for name, dtype, shape in want:
        if name not in got:
            report.error("tensor %s: missing, expected %s %s" % (name, dtype, list(shape)))
        elif got[name] != (dtype, shape):
            report.error("tensor %s: %s %s, expected %s %s" % (name, got[name][0], list(got[name][1]), dtype, list(shape)))
    for name, _ in entries:
        if name not in wanted:
            report.error("tensor %s: unexpected, not part of this case (%s)" % (name, where))
    if not report.errors:
        order = [name for name, _ in entries]
        expected = [name for name, _, _ in want]
        if order != expected:
            i = next(i for i, (a, b) in enumerate(zip(order, expected)) if a != b)
            report.error("tensor order: position %d holds %s, expected %s (%s order)" % (i, order[i], expected[i], where))


def expected_model_tensors(meta, entries, version, report):
    """(cfg, B, T, [(name, dtype, shape)]) of a model case, or None."""
    try:
        cfg = fmt.Config(json.loads(meta["config"]), "metadata config")
    except (fmt.FormatError, ValueError) as e:
        report.error(str(e))
        return None
    info = dict(entries).get("input_ids")
    if info is None or len(info["shape"]) != 2:
        report.error("tensor input_ids: missing or not I64 [B,T]")
        return None
    B, T = info["shape"]
    return cfg, B, T, fmt.model_tensors(cfg, B, T, version)


def check_spread(meta, cfg, report):
    spread = json.loads(meta["spread"])
    if not isinstance(spread, dict):
        report.error("metadata spread: not a JSON object")
        return
    keys = fmt.spread_keys(cfg)
    missing, unknown = sorted(set(keys) - set(spread)), sorted(set(spread) - set(keys))
    if missing or unknown:
        report.error("metadata spread: keys missing %s, unknown %s" % (missing, unknown))
    bad = [k for k, v in spread.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0]
    if bad:
        report.error("metadata spread: values not finite numbers >= 0 for %s" % bad)


def check_identities(cfg, t, version, report):
    """The relations any correct file satisfies, whatever its model's ops compute."""
    ids = t["input_ids"]
    report.exact("hidden.0 = embed[input_ids]", t[fmt.hidden_name(0)], t["model.embed_tokens.weight"][ids])
    logits = t["logits"].double()
    report.close("loss = cross-entropy of logits", t["loss"], reference.loss_of(logits, ids))
    if version < 2:
        return
    G = fmt.GRAD
    for i in range(cfg.num_layers):
        tr = {p: t[fmt.trace_name(i, p)] for p in fmt.TRACE_NAMES}
        x, nxt = t[fmt.hidden_name(i)], fmt.hidden_name(i + 1)
        report.exact("trace.%d.h = hidden.%d + o" % (i, i), tr["h"], x + tr["o"])
        report.exact("%s = trace.%d.h + down" % (nxt, i), t[nxt], tr["h"] + tr["down"])
        report.exact("grad.trace.%d.o = grad.trace.%d.h" % (i, i), t[G + fmt.trace_name(i, "o")], t[G + fmt.trace_name(i, "h")])
        report.exact("grad.trace.%d.down = grad.%s" % (i, nxt), t[G + fmt.trace_name(i, "down")], t[G + nxt])
    # d mean-CE / d logits = (softmax - onehot) / count; 0 at the last position.
    V, targets = cfg.vocab_size, ids[:, 1:]
    g = torch.zeros_like(logits)
    g[:, :-1] = (torch.softmax(logits[:, :-1], -1) - F.one_hot(targets, V).double()) / targets.numel()
    report.close("grad.logits = d cross-entropy / d logits", t[G + "logits"], g)


# (trace output, trace input, projection) of every bitlinear of a layer.
BITLINEARS = [("q", "attn_norm", "self_attn.q_proj"), ("k", "attn_norm", "self_attn.k_proj"),
              ("v", "attn_norm", "self_attn.v_proj"), ("o", "attn_sub_norm", "self_attn.o_proj"),
              ("gate", "ffn_norm", "mlp.gate_proj"), ("up", "ffn_norm", "mlp.up_proj"),
              ("down", "ffn_sub_norm", "mlp.down_proj")]


def check_semantics(cfg, t, version, report):
    """BitNet b1.58's math, recomputed in float64 from the file's own tensors."""
    eps = cfg.rms_norm_eps

    def norm64(x, w):
        return reference.rms_norm(x.double(), w.double(), eps)

    L = cfg.num_layers
    if version >= 2:
        T = t["input_ids"].shape[1]
        cos, sin = reference.rope_cos_sin(T, cfg.head_dim, cfg.rope_theta, torch.float64)
        for i in range(L):
            p = "model.layers.%d." % i
            tr = {point: t[fmt.trace_name(i, point)] for point in fmt.TRACE_NAMES}
            report.exact("trace.%d.act = relu(gate)^2 * up" % i, tr["act"], reference.mlp_act(tr["gate"], tr["up"]))
            report.close("trace.%d.attn_norm" % i, tr["attn_norm"], norm64(t[fmt.hidden_name(i)], t[p + "input_layernorm.weight"]))
            attn = reference.causal_attention(tr["q"].double(), tr["k"].double(), tr["v"].double(), cfg.num_heads,
                                              cfg.num_kv_heads, cfg.head_dim, cos, sin)
            report.close("trace.%d.attn" % i, tr["attn"], attn)
            report.close("trace.%d.attn_sub_norm" % i, tr["attn_sub_norm"], norm64(tr["attn"], t[p + "self_attn.attn_sub_norm.weight"]))
            report.close("trace.%d.ffn_norm" % i, tr["ffn_norm"], norm64(tr["h"], t[p + "post_attention_layernorm.weight"]))
            report.close("trace.%d.ffn_sub_norm" % i, tr["ffn_sub_norm"], norm64(tr["act"], t[p + "mlp.ffn_sub_norm.weight"]))
            # Bitlinear outputs from the file's own inputs, float32 as generated:
            # a rounding flip may differ, so this is reported, not failed.
            for out_name, in_name, proj in BITLINEARS:
                r = rel(reference.bitlinear(tr[in_name], t[p + proj + ".weight"]), tr[out_name])
                if r > CLOSE:
                    report.notes.append("trace.%d.%s: float32 bitlinear recompute differs, relative L2 %.1e" % (i, out_name, r))
    report.close("final_norm", t["final_norm"], norm64(t[fmt.hidden_name(L)], t["model.norm.weight"]))
    head = t["model.embed_tokens.weight"] if cfg.tied else t["lm_head.weight"]
    report.close("logits = final_norm @ head^T", t["logits"], t["final_norm"].double() @ head.double().T)


def rerun(meta, t):
    """Worst relative L2 per group: the reference model on the file's inputs vs the file."""
    cfg = fmt.Config(json.loads(meta["config"]))
    params = {n: t[n].clone().requires_grad_(True) for n, _, _ in cfg.inventory()}
    out = reference.forward(cfg, params, t["input_ids"], retain=True)
    out["loss"].backward()
    mine = {"loss": out["loss"].detach()}
    for name, x in reference.nodes(out):
        mine[name] = x.detach()
        mine[fmt.GRAD + name] = x.grad
    for n in params:
        mine[fmt.GRAD + n] = params[n].grad
    worst = {}
    for name, x in mine.items():
        if name not in t or x is None:
            continue
        group = "grad." + name.split(".")[1] if name.startswith(fmt.GRAD) else name.split(".")[0]
        r = rel(x, t[name])
        if r >= worst.get(group, (-1, ""))[0]:
            worst[group] = (r, name)
    return worst


def validate(path, like=None, structure_only=False):
    """Returns (errors, notes) for one file; no errors means it is valid."""
    report = Report(path)
    meta, entries = safetensors_io.read_header(path)
    got = check_metadata(meta, report)
    if got is None:
        return report.errors, report.notes
    version, kind = got
    if kind == "bitlinear":
        shapes = dict(entries)
        if "x" not in shapes or "weight" not in shapes or len(shapes["x"]["shape"]) != 2 or len(shapes["weight"]["shape"]) != 2:
            report.error("tensors x [N,in] and weight [out,in]: missing or not 2-D")
            return report.errors, report.notes
        (N, n_in), n_out = shapes["x"]["shape"], shapes["weight"]["shape"][0]
        want = fmt.bitlinear_tensors(N, n_in, n_out)
        if not any(name in shapes for name in fmt.BITLINEAR_ALL_OR_NONE):
            want = [w for w in want if w[0] not in fmt.BITLINEAR_ALL_OR_NONE]
        check_layout(entries, want, report)
        cfg = None
    else:
        expected = expected_model_tensors(meta, entries, version, report)
        if expected is None:
            return report.errors, report.notes
        cfg, B, T, want = expected
        check_layout(entries, want, report)
        if version >= 2 and "spread" in meta:
            check_spread(meta, cfg, report)
    if like and not report.errors:
        like_meta, like_entries = safetensors_io.read_header(like)
        check_layout(entries, [(n, i["dtype"], tuple(i["shape"])) for n, i in like_entries], report, like)
        for key in like_meta:
            if key not in meta and key != "spread":
                report.error("metadata %s: in %s but not here" % (key, like))
    if report.errors:
        return report.errors, report.notes
    _, t = safetensors_io.read(path)
    for name, x in t.items():
        if x.is_floating_point() and not torch.isfinite(x).all():
            report.error("tensor %s: %d non-finite values" % (name, int((~torch.isfinite(x)).sum())))
    if report.errors or cfg is None:
        return report.errors, report.notes
    check_identities(cfg, t, version, report)
    if not structure_only:
        check_semantics(cfg, t, version, report)
    return report.errors, report.notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--like", help="a reference file of the same config shape: same names, dtypes, shapes and order")
    parser.add_argument("--structure-only", action="store_true",
                        help="skip the BitNet semantics (for files dumped from a model under test)")
    parser.add_argument("--rerun", action="store_true", help="also compare the reference model on each model file's inputs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    failed = 0
    for path in args.files:
        errors, notes = validate(path, args.like, args.structure_only)
        meta, entries = safetensors_io.read_header(path)
        print("%s %s (%s, %d tensors)" % ("FAIL" if errors else "ok", path, meta.get("format"), len(entries)))
        for e in errors:
            print("    error: " + e)
        for n in notes:
            print("    note: " + n)
        if args.rerun and not errors and meta.get("case", "model") == "model":
            _, t = safetensors_io.read(path)
            for group, (r, name) in sorted(rerun(meta, t).items()):
                print("    rerun %-14s worst rel L2 %.2e (%s)" % (group, r, name))
        failed += bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
