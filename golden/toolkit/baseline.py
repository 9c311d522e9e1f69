"""PyTorch float32 baseline of the harness's full validation for one config.

Usage:

    /usr/bin/time -v /usr/bin/python3 -B -m golden.toolkit.baseline conformance/presets/tiny-mha-tied.json

It does what the seed's users do today, with the same model as the golden
generator: instantiate every parameter (latent weights ~ N(0,
initializer_range), norm weights 1), run a forward pass on a random [2, 128]
batch, then loss.backward() and check that every parameter received a
finite, non-zero gradient. It prints the wall time of each phase;
/usr/bin/time -v adds the peak RSS ("Maximum resident set size").

At the official 2B-4T size this needs about 11 GiB for the forward pass and
more than 24 GiB with backward (see REFERENCE.md); use --no-backward there.
"""

import argparse
import json
import resource
import sys
import time

import torch

from . import reference


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="path to an HF BitNet config.json (for example a conformance preset)")
    parser.add_argument("--batch", type=int, default=2, help="batch size B (default 2)")
    parser.add_argument("--seq", type=int, default=128, help="sequence length T (default 128)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and token ids (default 0)")
    parser.add_argument("--no-backward", action="store_true", help="stop after the forward pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with open(args.config) as f:
        raw = json.load(f)
    cfg = reference.Config(raw)
    std = float(raw.get("initializer_range") or 0.02)
    n_params = sum(torch.Size(shape).numel() for _, shape, _ in cfg.inventory())
    print("config %s: %d parameters, B=%d T=%d, %d threads, torch %s" % (
        args.config, n_params, args.batch, args.seq, args.threads, torch.__version__))

    phases = []
    start = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    params = reference.init_params(cfg, g, std=std, norm_std=0.0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=g, dtype=torch.int64)
    phases.append(("init", time.perf_counter() - start))

    start = time.perf_counter()
    if args.no_backward:
        with torch.no_grad():
            out = reference.forward(cfg, params, ids)
    else:
        out = reference.forward(cfg, params, ids)
    loss = out["loss"]
    phases.append(("forward", time.perf_counter() - start))

    bad = []
    if not args.no_backward:
        start = time.perf_counter()
        loss.backward()
        for name, p in params.items():
            if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0:
                bad.append(name)
        phases.append(("backward", time.perf_counter() - start))

    for name, seconds in phases:
        print("%-9s %9.3f s" % (name, seconds))
    print("%-9s %9.3f s" % ("total", sum(s for _, s in phases)))
    print("loss      %.6f" % loss.item())
    # ru_maxrss is in KiB on Linux.
    print("peak RSS  %.3f GiB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20))
    if not args.no_backward:
        print("gradient flow: %s" % ("ok, every parameter has a finite non-zero gradient" if not bad else
                                     "FAILED for " + ", ".join(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
