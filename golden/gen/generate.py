"""Writes the committed golden cases (format bitnet-golden/v1).

Usage (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 golden/gen/generate.py --out golden/cases

Every file is a pure function of cases.py, bitnet_ref.py and the torch
build: running this twice on the same machine gives identical bytes.
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # keep golden/gen free of __pycache__

import torch  # noqa: E402

import bitnet_ref  # noqa: E402
import cases  # noqa: E402
import safetensors_io  # noqa: E402

FORMAT = "bitnet-golden/v1"
SCRIPT = "golden/gen/generate.py"


def setup_determinism():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def generator_note(case):
    return "%s (independent PyTorch %s reference, HF BitNetForCausalLM online quant, STE), float32, seed %d" % (
        SCRIPT, torch.__version__, case.seed)


def run_model_case(case, dtype=torch.float32, recorder=None):
    """Returns (cfg, input_ids, params, outputs); params hold their gradients."""
    cfg, params, ids = cases.build_model_inputs(case)
    if dtype != torch.float32:
        params = {n: t.detach().to(dtype).requires_grad_(True) for n, t in params.items()}
    out = bitnet_ref.forward(cfg, params, ids, recorder)
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
    """The file's tensors in order: inputs, parameters, outputs, gradients."""
    tensors = [("input_ids", ids)]
    names = [name for name, _, _ in cfg.inventory()]
    tensors += [(n, params[n].detach()) for n in names]
    tensors.append(("logits", out["logits"].detach()))
    tensors += [("hidden.%d" % i, h.detach()) for i, h in enumerate(out["hidden"])]
    tensors.append(("final_norm", out["final_norm"].detach()))
    tensors.append(("loss", out["loss"].detach().reshape(())))
    tensors += [("grad." + n, params[n].grad) for n in names]
    return tensors


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
    metadata = {"format": FORMAT, "case": case.kind, "generator": generator_note(case), "description": case.description}
    if case.kind == "model":
        cfg, ids, params, out = run_model_case(case)
        metadata["config"] = json.dumps(case.config)
        tensors = model_tensors(cfg, ids, params, out)
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
