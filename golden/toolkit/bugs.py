"""The bug catalog: deliberate departures from BitNet b1.58, as op
replacements of the reference model, and how far each moves each case.

Usage: /usr/bin/python3 -B -m golden.toolkit.bugs

A tolerance policy must pass every correct float32 implementation (see
measure.py for how far those drift) and still fail on real bugs. Each bug
here is an Ops table (reference.Ops) and/or a config change; the generator's
cases rerun with it show how far it moves the outputs, and the dumper's
examples (examples.py) dump HF-named modules that carry it.

A bug the Go model can inject too (model/quant.go's quirks, the self-test
in model/harness_selftest_test.go) has Go's name and go=True; the others
exist only here and are named in the same style.
"""

from . import determinism  # noqa: F401  (first: one BLAS thread before torch loads)
import torch
import torch.nn.functional as F

from . import cases
from . import generate
from . import measure
from . import reference


def round_half_away(t):
    return torch.sign(t) * torch.floor(t.abs() + 0.5)


def act_quant_variant(round_fn=torch.round, per_token=True, enabled=True):
    def act_quant(x, recorder=None, perturb=None):
        if not enabled:
            return x
        absmax = x.detach().abs().amax(dim=-1, keepdim=True) if per_token else x.detach().abs().max()
        scale = reference.ACT_LEVELS / absmax.clamp(min=reference.SCALE_FLOOR)
        codes = round_fn(x.detach() * scale).clamp(-128, 127)
        return x + (codes / scale - x).detach()
    return act_quant


def weight_quant_variant(round_fn=torch.round, statistic="mean"):
    """statistic: "mean" (mean|W|, the reference), "row-mean" (per output row) or "max" (max|W|)."""
    def weight_quant(w, recorder=None, perturb=None):
        a = w.detach().abs()
        stat = {"mean": a.mean, "max": a.max, "row-mean": lambda: a.mean(dim=-1, keepdim=True)}[statistic]()
        scale = 1.0 / stat.clamp(min=reference.SCALE_FLOOR)
        codes = round_fn(w.detach() * scale).clamp(-1, 1)
        return w + (codes / scale - w).detach()
    return weight_quant


def interleaved_rope(x, cos, sin):
    """Rotates pairs (x_2j, x_2j+1) by angle j (GPT-J / Meta layout) instead of halves."""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).flatten(-2)


def norm_variant(role, fn):
    """The reference norm except for `role`, which computes fn(x, w, eps)."""
    def norm(r, x, w, eps):
        return fn(x, w, eps) if r == role else reference.rms_norm(x, w, eps)
    return norm


def layer_norm(x, w, eps):
    return F.layer_norm(x, (x.shape[-1],), w, None, eps)


class Bug:
    """name: Go's bug name where go is True; ops: reference.Ops replacements;
    config: a function of the config dict returning the keys to change;
    bitlinear: whether it changes a single bitlinear (the bitlinear cases)."""

    def __init__(self, name, go, description, ops=None, config=None, bitlinear=False):
        self.name, self.go, self.description = name, go, description
        self.ops = reference.Ops(**(ops or {}))
        self.config, self.bitlinear = config, bitlinear


CATALOG = [
    Bug("round-half-away", True, "both quantizers round half away from zero instead of half to even",
        {"act_quant": act_quant_variant(round_half_away), "weight_quant": weight_quant_variant(round_half_away)},
        bitlinear=True),
    Bug("act-quant-per-tensor", True, "one activation scale for the whole input instead of one per token",
        {"act_quant": act_quant_variant(per_token=False)}, bitlinear=True),
    Bug("max-weight-scale", True, "weight scale from max|W| instead of mean|W|",
        {"weight_quant": weight_quant_variant(statistic="max")}, bitlinear=True),
    Bug("weight-scale-per-row", False, "weight scale per output row instead of per matrix",
        {"weight_quant": weight_quant_variant(statistic="row-mean")}, bitlinear=True),
    Bug("no-act-quant", False, "no activation quantization",
        {"act_quant": act_quant_variant(enabled=False)}, bitlinear=True),
    Bug("interleaved-rope", True, "RoPE rotates pairs (2j, 2j+1) instead of halves", {"apply_rope": interleaved_rope}),
    Bug("gqa-mod-mapping", True, "query head h reads KV head h mod nkv instead of h // group",
        {"expand_kv": lambda kv, group: kv.repeat(1, group, 1, 1)}),
    Bug("silu", True, "silu(gate)·up instead of relu(gate)²·up", {"mlp_act": lambda gate, up: F.silu(gate) * up}),
    Bug("relu-not-squared", False, "relu(gate)·up instead of relu(gate)²·up",
        {"mlp_act": lambda gate, up: torch.relu(gate) * up}),
    Bug("no-attn-sub-norm", True, "attn_sub_norm left out (the identity)",
        {"norm": norm_variant("attn_sub_norm", lambda x, w, eps: x)}),
    Bug("layernorm-input", False, "input_layernorm is a LayerNorm (mean subtracted) instead of an RMSNorm",
        {"norm": norm_variant("input_layernorm", layer_norm)}),
    Bug("rope-theta-swapped", False, "rope_theta 1e4 and 5e5 swapped",
        config=lambda c: {"rope_theta": 10000.0 if c["rope_theta"] != 10000.0 else 500000.0}),
    Bug("rms-norm-eps-x10", False, "rms_norm_eps ten times too large",
        config=lambda c: {"rms_norm_eps": c["rms_norm_eps"] * 10}),
]

BY_NAME = {b.name: b for b in CATALOG}


def get(name):
    """The catalog entry `name`; an unknown name is an error listing the known ones."""
    if name not in BY_NAME:
        raise KeyError("unknown bug %r; known: %s" % (name, ", ".join(BY_NAME)))
    return BY_NAME[name]


def run_with(case, bug=None):
    """The case's outputs and gradients, with `bug` (None: the reference)."""
    ops = bug.ops if bug else reference.REFERENCE
    if case.kind == "bitlinear":
        x, w, _, y = generate.run_bitlinear_case(case, ops=ops)
        return {"out": y, "loss": None, "grads": [x.grad, w.grad]}
    if bug and bug.config:
        case = cases.ModelCase(case.name, case.seed, dict(case.config, **bug.config(case.config)),
                               case.B, case.T, case.description)
    cfg, _, params, out = generate.run_model_case(case, ops=ops)
    # A parameter the bug leaves unused (no-attn-sub-norm) has a zero gradient.
    grads = [params[n].grad if params[n].grad is not None else torch.zeros_like(params[n]) for n, _, _ in cfg.inventory()]
    return {"out": out["logits"], "loss": out["loss"], "grads": grads}


def print_table(title, bugs, case_list, reference_runs):
    print("### %s\n" % title)
    print("| bug | " + " | ".join(c.name for c in case_list) + " |")
    print("|---" * (len(case_list) + 1) + "|")
    for bug in bugs:
        cells = []
        for c in case_list:
            got, want = run_with(c, bug), reference_runs[c.name]
            worst_grad = max(measure.errors(a, b)[0] for a, b in zip(got["grads"], want["grads"]))
            cells.append("%.1e / %.1e" % (measure.errors(got["out"], want["out"])[0], worst_grad))
        print("| %s%s | %s |" % (bug.name, "" if bug.go else " (Python only)", " | ".join(cells)))
    print()


def main():
    generate.setup_determinism()
    model_cases = [c for c in cases.CASES if c.kind == "model"]
    bitlinear_cases = [c for c in cases.CASES if c.kind == "bitlinear"]
    reference_runs = {c.name: run_with(c) for c in cases.CASES}
    print_table("Bugs vs the correct float32 run: logits rel L2 / worst gradient rel L2", CATALOG, model_cases,
                reference_runs)
    print_table("Quantizer bugs on bitlinear cases: y rel L2 / worst gradient rel L2",
                [b for b in CATALOG if b.bitlinear], bitlinear_cases, reference_runs)


if __name__ == "__main__":
    main()
