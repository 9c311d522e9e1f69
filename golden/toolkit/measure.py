"""Measures how far float32 is from float64 on every golden case.

Usage: /usr/bin/python3 -B -m golden.toolkit.measure [--scan] [--only NAME] [--example PATH]

For each case it runs the generator twice on the same weights and inputs,
once in float32 (what the committed files hold) and once in float64, and
prints a markdown table per case: relative L2 error ||a32 - a64|| / ||a64||
and max |a32 - a64| for every output and gradient, and how many quantizer
rounding decisions (integer codes) differ between the two runs.

With --example it also runs the float32 model on a golden file written by
someone else (its own weights and input_ids) and prints the same table
against that file's tensors.
"""

import argparse
import json

from . import determinism  # noqa: F401  (first: one BLAS thread before torch loads)
import torch

from . import cases
from . import format as fmt
from . import generate
from . import reference
from . import safetensors_io


def errors(a, b):
    """(relative L2, max abs) of a against the reference b, in float64."""
    a, b = a.detach().double(), b.detach().double()
    diff = a - b
    norm = b.norm().item()
    rel = diff.norm().item() / norm if norm > 0 else diff.norm().item()
    return rel, diff.abs().max().item() if diff.numel() else 0.0


# Order in which one decoder layer calls its quantizers (act, then weight,
# for each projection), used to say where the first flip happened.
LAYER_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def count_flips(rec32, rec64):
    """Differing codes per quantizer kind, decisions made, first flip site."""
    flips = {"weight": 0, "act": 0}
    total = {"weight": 0, "act": 0}
    first = None
    for index, ((kind, c32), (_, c64)) in enumerate(zip(rec32, rec64)):
        n = int((c32.double() != c64).sum().item())
        flips[kind] += n
        total[kind] += c32.numel()
        if n and first is None:
            first = index
    return flips, total, first


def flip_site(index):
    """Names quantizer call `index` of a model forward."""
    per_layer = 2 * len(LAYER_PROJECTIONS)
    layer, within = divmod(index, per_layer)
    kind = "input (act_quant)" if within % 2 == 0 else "weight (weight_quant)"
    return "layer %d %s %s" % (layer, LAYER_PROJECTIONS[within // 2], kind)


def model_rows(case):
    rec32, rec64 = [], []
    cfg, _, p32, o32 = generate.run_model_case(case, torch.float32, rec32)
    _, _, p64, o64 = generate.run_model_case(case, torch.float64, rec64)
    rows = [("loss", errors(o32["loss"], o64["loss"])), ("logits", errors(o32["logits"], o64["logits"]))]
    rows += [(fmt.hidden_name(i), errors(a, b)) for i, (a, b) in enumerate(zip(o32["hidden"], o64["hidden"]))]
    rows.append(("final_norm", errors(o32["final_norm"], o64["final_norm"])))
    rows += [("grad." + n, errors(p32[n].grad, p64[n].grad)) for n, _, _ in cfg.inventory()]
    return rows, count_flips(rec32, rec64)


def bitlinear_rows(case):
    rec32, rec64 = [], []
    x32, w32, _, y32 = generate.run_bitlinear_case(case, torch.float32, rec32)
    x64, w64, _, y64 = generate.run_bitlinear_case(case, torch.float64, rec64)
    rows = [("y", errors(y32, y64)), ("grad.x", errors(x32.grad, x64.grad)), ("grad.weight", errors(w32.grad, w64.grad))]
    return rows, count_flips(rec32, rec64)


def print_table(title, rows, flips=None, site=None):
    print("### %s\n" % title)
    if flips is not None:
        f, total, first = flips
        print("Rounding flips: %d of %d activation codes, %d of %d weight codes.%s\n" % (
            f["act"], total["act"], f["weight"], total["weight"],
            " First flip: %s." % site(first) if first is not None and site else ""))
    print("| tensor | rel L2 | max abs |")
    print("|---|---|---|")
    for name, (rel, mx) in rows:
        print("| %s | %.2e | %.2e |" % (name, rel, mx))
    worst = max(rows, key=lambda r: r[1][0])
    print("\nWorst rel L2: %.2e (%s).\n" % (worst[1][0], worst[0]))


def print_summary(measured):
    """One line per case: the worst relative L2 error in each group."""
    print("### Summary: float32 vs float64, worst rel L2 per group\n")
    print("| case | flips (act+weight) | loss | logits | worst hidden | final_norm | worst grad (tensor) |")
    print("|---|---|---|---|---|---|---|")
    for case, rows, (f, _, _) in measured:
        by_name = dict(rows)

        def worst(prefix):
            group = [(rel, name) for name, (rel, _) in rows if name.startswith(prefix)]
            return max(group) if group else None

        def cell(name):
            return "%.1e" % by_name[name][0] if name in by_name else "-"

        hidden = worst("hidden.")
        grad = worst("grad.")
        print("| %s | %d | %s | %s | %s | %s | %.1e (%s) |" % (
            case.name, f["act"] + f["weight"], cell("loss"), cell("logits") if case.kind == "model" else cell("y") + " (y)",
            "%.1e" % hidden[0] if hidden else "-", cell("final_norm"), grad[0], grad[1]))
    print()


def example_rows(path):
    metadata, t = safetensors_io.read(path)
    cfg = reference.Config(json.loads(metadata["config"]))
    params = {n: t[n].clone().requires_grad_(True) for n, _, _ in cfg.inventory()}
    out = reference.forward(cfg, params, t["input_ids"])
    out["loss"].backward()
    rows = [("loss", errors(out["loss"], t["loss"])), ("logits", errors(out["logits"], t["logits"]))]
    rows += [(fmt.hidden_name(i), errors(h, t[fmt.hidden_name(i)])) for i, h in enumerate(out["hidden"])]
    rows.append(("final_norm", errors(out["final_norm"], t["final_norm"])))
    rows += [("grad." + n, errors(params[n].grad, t["grad." + n])) for n in params if "grad." + n in t]
    return rows


def scan():
    """How often float32 and float64 disagree, over seeds, at 4 layers T=96."""
    print("### Seed sweep: 4 layers, GQA 2:1, tied, T=96, float32 vs float64\n")
    print("| H | I | V | B | seed | flips | logits rel L2 | loss rel | worst grad rel L2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for H, I, V, B in [(64, 96, 128, 2), (64, 160, 256, 2), (128, 256, 256, 1)]:
        for seed in range(1, 16):
            case = cases.ModelCase("scan", seed, cases.hf_config(H=H, I=I, L=4, nh=4, nkv=2, V=V, tied=True),
                                   B=B, T=96, description="")
            rows, (f, _, _) = model_rows(case)
            by_name = dict(rows)
            worst_grad = max(r[1][0] for r in rows if r[0].startswith("grad."))
            print("| %d | %d | %d | %d | %d | %d | %.2e | %.2e | %.2e |" % (
                H, I, V, B, seed, f["act"] + f["weight"], by_name["logits"][0], by_name["loss"][0], worst_grad))
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", action="append", default=[], help="a golden file from another generator to compare against")
    parser.add_argument("--scan", action="store_true", help="also sweep seeds 1..15 of the 4-layer T=96 configs")
    parser.add_argument("--only", action="append", default=[], help="measure only the named case (repeatable)")
    args = parser.parse_args()
    generate.setup_determinism()
    measured = []
    for case in cases.CASES:
        if args.only and case.name not in args.only:
            continue
        if case.kind == "model":
            rows, flips = model_rows(case)
        else:
            rows, flips = bitlinear_rows(case)
        measured.append((case, rows, flips))
    print_summary(measured)
    for case, rows, flips in measured:
        print_table("%s: float32 vs float64" % case.name, rows, flips, flip_site if case.kind == "model" else None)
    for path in args.example:
        print_table("%s: this generator (float32) vs the file" % path, example_rows(path))
    if args.scan:
        scan()


if __name__ == "__main__":
    main()
