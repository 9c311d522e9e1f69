"""How far typical implementation bugs move a case's outputs.

Usage: /usr/bin/python3 golden/gen/bugs.py

A tolerance policy must pass every correct float32 implementation (see
measure.py for how far those drift) and still fail on real bugs. This
script reruns each committed case with one deliberate bug patched into the
reference model and prints the relative L2 error of the buggy outputs
against the correct float32 ones: logits (y for bitlinear cases), loss, and
the worst gradient.
"""

import sys

sys.dont_write_bytecode = True

import torch  # noqa: E402

import bitnet_ref  # noqa: E402
import cases  # noqa: E402
import generate  # noqa: E402
import measure  # noqa: E402


def round_half_away(t):
    return torch.sign(t) * torch.floor(t.abs() + 0.5)


def act_quant_variant(round_fn=torch.round, per_token=True, enabled=True):
    def act_quant(x, recorder=None, perturb=None):
        if not enabled:
            return x
        absmax = x.detach().abs().amax(dim=-1, keepdim=True) if per_token else x.detach().abs().max()
        scale = bitnet_ref.ACT_LEVELS / absmax.clamp(min=bitnet_ref.SCALE_FLOOR)
        codes = round_fn(x.detach() * scale).clamp(-128, 127)
        return x + (codes / scale - x).detach()
    return act_quant


def weight_quant_variant(round_fn=torch.round, per_row=False):
    def weight_quant(w, recorder=None, perturb=None):
        mean = w.detach().abs().mean(dim=-1, keepdim=True) if per_row else w.detach().abs().mean()
        scale = 1.0 / mean.clamp(min=bitnet_ref.SCALE_FLOOR)
        codes = round_fn(w.detach() * scale).clamp(-1, 1)
        return w + (codes / scale - w).detach()
    return weight_quant


def interleaved_rope_cos_sin(T, hd, theta, dtype):
    cos, sin = ORIGINAL["rope_cos_sin"](T, hd, theta, dtype)
    half = hd // 2
    # Pair (2j, 2j+1) shares frequency j, as in the original RoFormer layout.
    return cos[:, :half].repeat_interleave(2, dim=-1), sin[:, :half].repeat_interleave(2, dim=-1)


def interleaved_rotate_half(x):
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def relu_mlp(cfg, p, y, recorder, perturb=None, trace=None, retain=False):
    # Same trace points as bitnet_ref.mlp, so forward() can still collect them.
    trace = {} if trace is None else trace
    keep = bitnet_ref.keep
    gate = keep(trace, "gate", bitnet_ref.bitlinear(y, p["mlp.gate_proj.weight"], recorder, perturb), retain)
    up = keep(trace, "up", bitnet_ref.bitlinear(y, p["mlp.up_proj.weight"], recorder, perturb), retain)
    act = keep(trace, "act", torch.relu(gate) * up, retain)
    inner = keep(trace, "ffn_sub_norm", bitnet_ref.rms_norm(act, p["mlp.ffn_sub_norm.weight"], cfg.rms_norm_eps), retain)
    return keep(trace, "down", bitnet_ref.bitlinear(inner, p["mlp.down_proj.weight"], recorder, perturb), retain)


ORIGINAL = {name: getattr(bitnet_ref, name) for name in ["rope_cos_sin", "rotate_half", "act_quant", "weight_quant", "mlp", "expand_kv"]}

# name -> (module patches, config changes, applies to bitlinear cases)
BUGS = [
    ("round half away from zero (both quantizers)",
     {"act_quant": act_quant_variant(round_half_away), "weight_quant": weight_quant_variant(round_half_away)}, None, True),
    ("act_quant scale per tensor, not per token", {"act_quant": act_quant_variant(per_token=False)}, None, True),
    ("weight_quant scale per output row, not per matrix", {"weight_quant": weight_quant_variant(per_row=True)}, None, True),
    ("no activation quantization", {"act_quant": act_quant_variant(enabled=False)}, None, True),
    ("interleaved RoPE", {"rope_cos_sin": interleaved_rope_cos_sin, "rotate_half": interleaved_rotate_half}, None, False),
    ("KV head h % nkv instead of h // group", {"expand_kv": lambda kv, group: kv.repeat(1, group, 1, 1)}, None, False),
    ("relu instead of relu^2", {"mlp": relu_mlp}, None, False),
    ("rope_theta 1e4 <-> 5e5 swapped", {}, lambda c: {"rope_theta": 10000.0 if c["rope_theta"] != 10000.0 else 500000.0}, False),
    ("rms_norm_eps x10", {}, lambda c: {"rms_norm_eps": c["rms_norm_eps"] * 10}, False),
]


def run_with(case, patches, config_change):
    for name, fn in patches.items():
        setattr(bitnet_ref, name, fn)
    try:
        if case.kind == "bitlinear":
            x, w, _, y = generate.run_bitlinear_case(case)
            return {"out": y, "loss": None, "grads": [x.grad, w.grad]}
        if config_change:
            case = cases.ModelCase(case.name, case.seed, dict(case.config, **config_change(case.config)),
                                   case.B, case.T, case.description)
        cfg, _, params, out = generate.run_model_case(case)
        return {"out": out["logits"], "loss": out["loss"], "grads": [params[n].grad for n, _, _ in cfg.inventory()]}
    finally:
        for name, fn in ORIGINAL.items():
            setattr(bitnet_ref, name, fn)


def main():
    generate.setup_determinism()
    model_cases = [c for c in cases.CASES if c.kind == "model"]
    bitlinear_cases = [c for c in cases.CASES if c.kind == "bitlinear"]
    reference = {c.name: run_with(c, {}, None) for c in cases.CASES}
    print("### Bugs vs the correct float32 run: logits rel L2 / worst gradient rel L2\n")
    print("| bug | " + " | ".join(c.name for c in model_cases) + " |")
    print("|---" * (len(model_cases) + 1) + "|")
    for bug, patches, change, _ in BUGS:
        cells = []
        for c in model_cases:
            got, want = run_with(c, patches, change), reference[c.name]
            worst_grad = max(measure.errors(a, b)[0] for a, b in zip(got["grads"], want["grads"]))
            cells.append("%.1e / %.1e" % (measure.errors(got["out"], want["out"])[0], worst_grad))
        print("| %s | %s |" % (bug, " | ".join(cells)))
    print("\n### Quantizer bugs on bitlinear cases: y rel L2 / worst gradient rel L2\n")
    print("| bug | " + " | ".join(c.name for c in bitlinear_cases) + " |")
    print("|---" * (len(bitlinear_cases) + 1) + "|")
    for bug, patches, _, on_bitlinear in BUGS:
        if not on_bitlinear:
            continue
        cells = []
        for c in bitlinear_cases:
            got, want = run_with(c, patches, None), reference[c.name]
            worst_grad = max(measure.errors(a, b)[0] for a, b in zip(got["grads"], want["grads"]))
            cells.append("%.1e / %.1e" % (measure.errors(got["out"], want["out"])[0], worst_grad))
        print("| %s | %s |" % (bug, " | ".join(cells)))
    print()


if __name__ == "__main__":
    main()
