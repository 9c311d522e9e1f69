"""Structural and consistency checks of a bitnet-golden/v2 model case.

    /usr/bin/python3 golden/dump/check_case.py FILE [--like REFERENCE_FILE]

Checks what the format page requires of a v2 model case: the metadata keys,
every tensor name, dtype and shape the config implies (no missing, no
extra), and identities between tensors that hold for every correct dump
whatever the model computes inside its ops (the residuals, grad.o = grad.h,
grad.down = grad.hidden.{i+1}, the cross-entropy gradient of the logits,
...). With --like, the tensor names must also appear in the same order as
in the reference file (e.g. ../shared/golden-examples/example-tiny-gqa-v2.safetensors)
when both files have the same config shape. Exit status 1 on any problem.
"""

import argparse
import json
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dump  # noqa: E402

TRACE_NAMES = [n for n, _, _ in dump.TRACE_POINTS]


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    return h.pop("__metadata__", {}), h


def expected_layout(shapes, B, T):
    """[(name, dtype, shape)] in the order the format lists them."""
    H, V, L = shapes.H, shapes.V, shapes.L
    out = [("input_ids", "I64", [B, T])]
    inv = shapes.inventory()
    out += [(n, "F32", list(s)) for n, s in inv]
    acts = []
    for i in range(L):
        acts.append(("hidden.%d" % i, [B, T, H]))
        acts += [("trace.%d.%s" % (i, n), [B, T, shapes.trace_width(n)]) for n in TRACE_NAMES]
    acts.append(("hidden.%d" % L, [B, T, H]))
    acts += [("final_norm", [B, T, H]), ("logits", [B, T, V])]
    out += [(n, "F32", s) for n, s in acts if n != "logits"]
    out += [("logits", "F32", [B, T, V]), ("loss", "F32", [])]
    out += [("grad." + n, "F32", list(s)) for n, s in inv]
    out += [("grad." + n, "F32", s) for n, s in acts]
    return out


def check(path, like=None, tol=1e-5):
    problems = []
    meta, h = header(path)
    if meta.get("format") != dump.FORMAT:
        problems.append("metadata format %r, expected %r" % (meta.get("format"), dump.FORMAT))
    for key in ("config", "generator"):
        if not meta.get(key):
            problems.append("metadata %s missing" % key)
    if problems:
        return problems
    config = json.loads(meta["config"])
    if (config.get("quantization_config") or {}).get("quantization_mode") != "online":
        problems.append("config quantization_config.quantization_mode is not online")
    if "spread" in meta:
        spread = json.loads(meta["spread"])
        if not isinstance(spread, dict):
            problems.append("spread is not a JSON object")
    shapes = dump.Shapes(config)
    B, T = h["input_ids"]["shape"]
    want = expected_layout(shapes, B, T)
    got = [(n, info["dtype"], info["shape"]) for n, info in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0])]
    want_names, got_names = {w[0] for w in want}, {g[0] for g in got}
    for n in sorted(want_names - got_names):
        problems.append("missing tensor %s" % n)
    for n in sorted(got_names - want_names):
        problems.append("unexpected tensor %s" % n)
    wd = {w[0]: w for w in want}
    for g in got:
        if g[0] in wd and wd[g[0]] != g:
            problems.append("tensor %s: %s %s, expected %s %s" % (g[0], g[1], g[2], wd[g[0]][1], wd[g[0]][2]))
    if like:
        lmeta, lh = header(like)
        lorder = [n for n, _ in sorted(lh.items(), key=lambda kv: kv[1]["data_offsets"][0])]
        lshapes = {n: (i["dtype"], i["shape"]) for n, i in lh.items()}
        if set(lorder) == got_names:
            if lorder != [g[0] for g in got]:
                problems.append("tensor order differs from %s" % like)
            for n, dt, s in got:
                if lshapes[n] != (dt, s):
                    problems.append("tensor %s: %s %s, %s has %s" % (n, dt, s, like, lshapes[n]))
        else:
            problems.append("cannot compare with %s: its tensor names differ (another config?)" % like)
        for key in lmeta:
            if key not in meta and key != "spread":
                problems.append("metadata %s is in %s but not here" % (key, like))
    if problems:
        return problems
    problems += identities(path, shapes, tol)
    return problems


def identities(path, shapes, tol):
    """Relations every correct dump satisfies, whatever the ops compute."""
    import safetensors_io
    _, t = safetensors_io.read(path)
    problems = []

    def close(name, a, b, scale=None):
        scale = scale if scale is not None else max(float(b.abs().max()), 1e-30)
        err = float((a - b).abs().max())
        if err > tol * scale:
            problems.append("%s: max |difference| %.3g (scale %.3g)" % (name, err, scale))

    L, V = shapes.L, shapes.V
    for i in range(L):
        p = "trace.%d." % i
        close("trace.%d.h = hidden.%d + o" % (i, i), t[p + "h"], t["hidden.%d" % i] + t[p + "o"])
        close("hidden.%d = h + down" % (i + 1), t["hidden.%d" % (i + 1)], t[p + "h"] + t[p + "down"])
        close("grad.trace.%d.o = grad.h" % i, t["grad." + p + "o"], t["grad." + p + "h"])
        close("grad.trace.%d.down = grad.hidden.%d" % (i, i + 1), t["grad." + p + "down"], t["grad.hidden.%d" % (i + 1)])
    ids = t["input_ids"]
    logits = t["logits"]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V).double(), ids[:, 1:].reshape(-1))
    close("loss = cross-entropy of logits", t["loss"].double(), loss, scale=float(loss))
    lg = logits.double().requires_grad_(True)
    F.cross_entropy(lg[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1)).backward()
    close("grad.logits = d cross-entropy / d logits", t["grad.logits"].double(), lg.grad)
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--like", help="a reference v2 file with the same config shape")
    args = parser.parse_args()
    problems = check(args.file, args.like)
    for p in problems:
        print("%s: %s" % (args.file, p))
    if not problems:
        print("%s: ok" % args.file)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
