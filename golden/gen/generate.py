"""Writes the committed golden cases (format bitnet-golden/v2, or v1 on request).

Usage (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 golden/gen/generate.py --out golden/cases

Every file is a pure function of cases.py, bitnet_ref.py and the torch
build: running this twice on the same machine gives identical bytes.

A v2 model case is run six times on the same weights and inputs: the
file's own float32 run, one float64 run and PERTURBED_RUNS float32 runs with
every quantizer input multiplied by (1 + eps) (bitnet_ref.perturbed). The
five alternative runs give the `spread` metadata (see README.md).
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # keep golden/gen free of __pycache__
# One BLAS thread: OpenBLAS reads this when torch loads it, and a threaded
# sgemm may split sums differently from run to run.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

import bitnet_ref  # noqa: E402
import cases  # noqa: E402
import safetensors_io  # noqa: E402

FORMATS = {1: "bitnet-golden/v1", 2: "bitnet-golden/v2"}
SCRIPT = "golden/gen/generate.py"
PERTURBED_RUNS = 4  # float32 runs with perturbed quantizer inputs, on top of the float64 run


def setup_determinism():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def generator_note(case):
    note = "%s (independent PyTorch %s reference, HF BitNetForCausalLM online quant, STE), float32, seed %d" % (
        SCRIPT, torch.__version__, case.seed)
    if case.kind == "model" and case.version == 2:
        note += ("; spread over 1 float64 run and %d float32 runs with every quantizer input times (1+eps), "
                 "eps ~ U[-2^-21, 2^-21], perturbation seeds %s" % (
                     PERTURBED_RUNS, ", ".join(str(perturb_seed(case, r)) for r in range(PERTURBED_RUNS))))
    return note


def perturb_seed(case, run):
    """Seed of perturbed run `run` (0-based): distinct per run, fixed per case."""
    return (case.seed * 1009 + run + 1) % (2 ** 63)


def run_model_case(case, dtype=torch.float32, recorder=None, perturb=None, retain=False):
    """Returns (cfg, input_ids, params, outputs); params hold their gradients.

    With retain, the trace points, hidden states, final_norm and logits in
    outputs hold their gradients too (bitnet_ref.forward).
    """
    cfg, params, ids = cases.build_model_inputs(case)
    if dtype != torch.float32:
        params = {n: t.detach().to(dtype).requires_grad_(True) for n, t in params.items()}
    out = bitnet_ref.forward(cfg, params, ids, recorder, perturb, retain)
    out["loss"].backward()
    return cfg, ids, params, out


def run_bitlinear_case(case, dtype=torch.float32, recorder=None):
    """Returns x, weight (leaves with .grad), grad_y and y."""
    x, weight, grad_y = (t.to(dtype) for t in cases.build_bitlinear_inputs(case))
    x.requires_grad_(True)
    weight.requires_grad_(True)
    y = bitnet_ref.bitlinear(x, weight, recorder)
    (y * grad_y).sum().backward()
    return x, weight, grad_y, y


def model_tensors(cfg, ids, params, out):
    """The v1 file's tensors in order: inputs, parameters, outputs, gradients."""
    tensors = [("input_ids", ids)]
    names = [name for name, _, _ in cfg.inventory()]
    tensors += [(n, params[n].detach()) for n in names]
    tensors.append(("logits", out["logits"].detach()))
    tensors += [("hidden.%d" % i, h.detach()) for i, h in enumerate(out["hidden"])]
    tensors.append(("final_norm", out["final_norm"].detach()))
    tensors.append(("loss", out["loss"].detach().reshape(())))
    tensors += [("grad." + n, params[n].grad) for n in names]
    return tensors


def trace_nodes(out):
    """(name, tensor) for every v2 trace point, in computation order:
    hidden.0, trace.0.*, hidden.1, ..., hidden.L, final_norm, logits."""
    nodes = []
    for i, trace in enumerate(out["trace"]):
        nodes.append(("hidden.%d" % i, out["hidden"][i]))
        nodes += [("trace.%d.%s" % (i, point), trace[point]) for point in bitnet_ref.TRACE_POINTS]
    nodes.append(("hidden.%d" % len(out["trace"]), out["hidden"][-1]))
    nodes.append(("final_norm", out["final_norm"]))
    nodes.append(("logits", out["logits"]))
    return nodes


def model_tensors_v2(cfg, ids, params, out):
    """The v2 file's tensors in order: inputs, parameters, the forward trace,
    loss, parameter gradients, then the gradient at every trace point.
    out must come from a run with retain=True."""
    tensors = [("input_ids", ids)]
    names = [name for name, _, _ in cfg.inventory()]
    tensors += [(n, params[n].detach()) for n in names]
    nodes = trace_nodes(out)
    tensors += [(name, t.detach()) for name, t in nodes]
    tensors.append(("loss", out["loss"].detach().reshape(())))
    tensors += [("grad." + n, params[n].grad) for n in names]
    for name, t in nodes:
        if t.grad is None:
            raise RuntimeError("trace point %s has no gradient" % name)
        tensors.append(("grad." + name, t.grad))
    return tensors


def spread_values(cfg, params, out):
    """The tensors the spread covers, in the metadata's key order:
    loss, logits, final_norm, hidden.{i}, grad.{parameter}."""
    values = [("loss", out["loss"]), ("logits", out["logits"]), ("final_norm", out["final_norm"])]
    values += [("hidden.%d" % i, h) for i, h in enumerate(out["hidden"])]
    values += [("grad." + n, params[n].grad) for n, _, _ in cfg.inventory()]
    return [(name, t.detach().double()) for name, t in values]


def relative_distance(alt, ref):
    """||alt - ref||_2 / ||ref||_2 in float64 (|alt-ref|/|ref| for a scalar).
    A zero reference gives the absolute distance instead, so the number stays
    finite; it is then 0 unless alt is nonzero too."""
    diff = (alt - ref).norm().item()
    norm = ref.norm().item()
    return diff / norm if norm > 0 else diff


def measure_spread(case, cfg, params, out):
    """{key: spread} over the float64 run and the perturbed float32 runs."""
    reference = spread_values(cfg, params, out)
    spread = {name: 0.0 for name, _ in reference}
    runs = [(torch.float64, None)]
    runs += [(torch.float32, bitnet_ref.Perturbation(perturb_seed(case, r))) for r in range(PERTURBED_RUNS)]
    for dtype, perturb in runs:
        _, _, alt_params, alt_out = run_model_case(case, dtype, perturb=perturb)
        for (name, ref), (alt_name, alt) in zip(reference, spread_values(cfg, alt_params, alt_out)):
            assert name == alt_name
            spread[name] = max(spread[name], relative_distance(alt, ref))
    return spread


def bitlinear_tensors(x, weight, grad_y, y):
    return [
        ("x", x.detach()),
        ("weight", weight.detach()),
        ("y", y.detach()),
        ("grad_y", grad_y),
        ("grad.x", x.grad),
        ("grad.weight", weight.grad),
    ]


def write_case(case, out_dir):
    metadata = {"format": FORMATS[case.version], "case": case.kind, "generator": generator_note(case),
                "description": case.description}
    if case.kind == "model":
        metadata["config"] = json.dumps(case.config)
        if case.version == 1:
            tensors = model_tensors(*run_model_case(case))
        else:
            cfg, ids, params, out = run_model_case(case, retain=True)
            tensors = model_tensors_v2(cfg, ids, params, out)
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
