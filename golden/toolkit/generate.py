"""Writes the committed golden cases (format bitnet-golden/v2, or v1 on request).

Usage (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 -B -m golden.toolkit.generate --out golden/cases

Every file is a pure function of cases.py, reference.py and the torch
build: running this twice on the same machine gives identical bytes.

A v2 model case is run six times on the same weights and inputs: the
file's own float32 run, one float64 run and PERTURBED_RUNS float32 runs with
every quantizer input multiplied by (1 + eps) (reference.perturbed). The
five alternative runs give the `spread` metadata (see README.md).
"""

import argparse
import json
import os

from . import determinism  # first: one BLAS thread before torch loads
import torch

from . import cases
from . import format as fmt
from . import reference
from . import safetensors_io

# The generator's name in the `generator` note. Every committed case records
# this path (where the generator lived when the files were written);
# changing it changes every committed file's bytes.
GENERATOR_NAME = "golden/gen/generate.py"
PERTURBED_RUNS = 4  # float32 runs with perturbed quantizer inputs, on top of the float64 run


def setup_determinism():
    determinism.setup()


def generator_note(case, name=GENERATOR_NAME):
    note = "%s (independent PyTorch %s reference, HF BitNetForCausalLM online quant, STE), float32, seed %d" % (
        name, torch.__version__, case.seed)
    if case.kind == "model" and case.version == 2:
        note += ("; spread over 1 float64 run and %d float32 runs with every quantizer input times (1+eps), "
                 "eps ~ U[-2^-21, 2^-21], perturbation seeds %s" % (
                     PERTURBED_RUNS, ", ".join(str(perturb_seed(case, r)) for r in range(PERTURBED_RUNS))))
    return note


def perturb_seed(case, run):
    """Seed of perturbed run `run` (0-based): distinct per run, fixed per case."""
    return (case.seed * 1009 + run + 1) % (2 ** 63)


def run_model_case(case, dtype=torch.float32, recorder=None, perturb=None, retain=False, ops=reference.REFERENCE):
    """Returns (cfg, input_ids, params, outputs); params hold their gradients.

    With retain, the trace points, hidden states, final_norm and logits in
    outputs hold their gradients too (reference.forward).
    """
    cfg, params, ids = cases.build_model_inputs(case)
    if dtype != torch.float32:
        params = {n: t.detach().to(dtype).requires_grad_(True) for n, t in params.items()}
    out = reference.forward(cfg, params, ids, recorder, perturb, retain, ops)
    out["loss"].backward()
    return cfg, ids, params, out


def run_bitlinear_case(case, dtype=torch.float32, recorder=None, ops=reference.REFERENCE):
    """Returns x, weight (leaves with .grad), grad_y and y."""
    x, weight, grad_y = (t.to(dtype) for t in cases.build_bitlinear_inputs(case))
    x.requires_grad_(True)
    weight.requires_grad_(True)
    y = reference.bitlinear(x, weight, recorder, ops=ops)
    (y * grad_y).sum().backward()
    return x, weight, grad_y, y


def model_tensors(cfg, ids, params, out, version):
    """The file's tensors in format.json's order for this version: input_ids,
    parameters and outputs, their gradients (the node gradients need a run
    with retain=True)."""
    values = {"input_ids": ids, "loss": out["loss"].detach().reshape(())}
    for name in params:
        values[name] = params[name].detach()
        values[fmt.GRAD + name] = params[name].grad
    for name, t in reference.nodes(out):
        values[name] = t.detach()
        if version >= 2:
            if t.grad is None:
                raise RuntimeError("trace point %s has no gradient" % name)
            values[fmt.GRAD + name] = t.grad
    B, T = ids.shape
    return [(name, values[name]) for name, _, _ in fmt.model_tensors(cfg, B, T, version)]


def spread_values(cfg, params, out):
    """The tensors the spread covers, in format.json's spread_keys order:
    loss, logits, final_norm, hidden.{i}, grad.{parameter}."""
    values = {"loss": out["loss"], "logits": out["logits"], "final_norm": out["final_norm"]}
    values.update((fmt.hidden_name(i), h) for i, h in enumerate(out["hidden"]))
    values.update((fmt.GRAD + n, params[n].grad) for n, _, _ in cfg.inventory())
    return [(name, values[name].detach().double()) for name in fmt.spread_keys(cfg)]


def relative_distance(alt, ref):
    """||alt - ref||_2 / ||ref||_2 in float64 (|alt-ref|/|ref| for a scalar).
    A zero reference gives the absolute distance instead, so the number stays
    finite; it is then 0 unless alt is nonzero too."""
    diff = (alt - ref).norm().item()
    norm = ref.norm().item()
    return diff / norm if norm > 0 else diff


def measure_spread(case, cfg, params, out):
    """{key: spread} over the float64 run and the perturbed float32 runs."""
    file_values = spread_values(cfg, params, out)
    spread = {name: 0.0 for name, _ in file_values}
    runs = [(torch.float64, None)]
    runs += [(torch.float32, reference.Perturbation(perturb_seed(case, r))) for r in range(PERTURBED_RUNS)]
    for dtype, perturb in runs:
        _, _, alt_params, alt_out = run_model_case(case, dtype, perturb=perturb)
        for (name, ref), (alt_name, alt) in zip(file_values, spread_values(cfg, alt_params, alt_out)):
            assert name == alt_name
            spread[name] = max(spread[name], relative_distance(alt, ref))
    return spread


def bitlinear_tensors(x, weight, grad_y, y):
    values = {"x": x.detach(), "weight": weight.detach(), "y": y.detach(), "grad_y": grad_y,
              "grad.x": x.grad, "grad.weight": weight.grad}
    return [(name, values[name]) for name, _, _ in fmt.bitlinear_tensors(x.shape[0], x.shape[1], weight.shape[0])]


def write_case(case, out_dir, generator_name=GENERATOR_NAME):
    metadata = {"format": fmt.FORMATS[case.version], "case": case.kind, "generator": generator_note(case, generator_name),
                "description": case.description}
    if case.kind == "model":
        metadata["config"] = json.dumps(case.config)
        if case.version == 1:
            tensors = model_tensors(*run_model_case(case), version=1)
        else:
            cfg, ids, params, out = run_model_case(case, retain=True)
            tensors = model_tensors(cfg, ids, params, out, version=2)
            metadata["spread"] = json.dumps(measure_spread(case, cfg, params, out))
    else:
        tensors = bitlinear_tensors(*run_bitlinear_case(case))
    path = os.path.join(out_dir, case.name + ".safetensors")
    safetensors_io.write(path, tensors, metadata)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the .safetensors cases into")
    parser.add_argument("--only", action="append", default=[], help="write only the named case (repeatable)")
    args = parser.parse_args()
    setup_determinism()
    os.makedirs(args.out, exist_ok=True)
    known = {c.name for c in cases.CASES}
    for name in args.only:
        if name not in known:
            parser.error("unknown case %r; known: %s" % (name, ", ".join(sorted(known))))
    for case in cases.CASES:
        if args.only and case.name not in args.only:
            continue
        path = write_case(case, args.out)
        print("%-45s %8d bytes" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
