"""Writes N random bitnet-golden/v2 model cases for the false-failure sweep.

Usage (from the repository root):

    /usr/bin/python3 -B -m golden.toolkit.sweep --n N --seed S --out DIR [--only K]

Case k (0-based) is drawn from its own seed S*1000 + k, so the files are a
pure function of (S, k): `--seed S --only K` rewrites case K alone, and
sweeps with the same seed share their first cases whatever N is. Each case
is generated and written exactly as generate.py writes a v2 model case
(trace, trace-point gradients, spread from 5 alternative runs).

The space (see draw_config): 1-8 layers, T 2-256, B 1-3, MHA, GQA and MQA,
head_dim derived or explicit (even, may differ from hidden/heads), hidden
8-512, intermediate hidden/2 .. 4*hidden, vocab 16-1024, odd sizes
allowed, tied and untied, latent init std U[0.02, 0.1], norm weight std
U[0, 0.2], rope_theta 1e4 or 5e5, eps 1e-5 or 1e-6; LARGE_FRACTION of
the cases are large-magnitude (make_large: attention scores, logits or
both scaled by powers of two to reach 150-3000, past exp's float32
overflow at 88.7). Sizes are drawn
log-uniformly, so most cases are small and cheap, and a draw whose file
would exceed --max-bytes or whose work would exceed --max-work is redrawn
(from the same case seed, so still deterministic).
"""

import argparse
import math
import os
import random
import time

from . import determinism  # noqa: F401  (first: one BLAS thread before torch loads)
import torch

from . import cases
from . import generate
from . import reference

SCRIPT = "golden.toolkit.sweep"

MAX_BYTES = 40 * 1000 * 1000  # one case file
# Multiply-adds of one forward pass (linears + attention), summed over the
# batch. generate.py runs forward+backward six times (one in float64); a
# case at this limit takes a few seconds here, so the file size, not the
# work, is what usually rejects a draw.
MAX_WORK = 4e8
# The share of cases made large-magnitude (see make_large), and what each
# large case scales: the attention scores, the logits, or both.
LARGE_FRACTION = 0.2
LARGE_KINDS = ["scores", "logits", "both"]
# Largest attention score or logit a large case is scaled to reach, drawn
# log-uniformly: above 88.7, where exp overflows float32, and up to past
# 709.8, where it overflows float64.
LARGE_TARGET = (150.0, 3000.0)


def log_uniform_int(rng, lo, hi):
    """An integer in [lo, hi], log-uniformly distributed."""
    if hi <= lo:
        return lo
    return min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))


def draw_config(rng):
    """One random case: (config dict, B, T, norm_std, short description)."""
    L = rng.randint(1, 8)
    T = log_uniform_int(rng, 2, 256)
    B = rng.randint(1, 3)
    kind = rng.choice(["mha", "gqa", "mqa"])
    if kind == "mha":
        nh = log_uniform_int(rng, 1, 16)
        nkv = nh
    elif kind == "mqa":
        nh = log_uniform_int(rng, 2, 16)
        nkv = 1
    else:
        nkv = log_uniform_int(rng, 2, 8)
        nh = nkv * rng.randint(2, max(2, 16 // nkv))
    explicit = rng.random() < 0.35
    if explicit:
        # head_dim free (even for RoPE); nh*hd usually differs from hidden.
        hd = 2 * log_uniform_int(rng, 1, 64)
        H = log_uniform_int(rng, 8, 512)
    else:
        # hidden = nh * head_dim with head_dim even, hidden in [8, 512].
        half_lo = max(1, math.ceil(8 / (2 * nh)))
        half_hi = max(half_lo, 512 // (2 * nh))
        hd = 2 * log_uniform_int(rng, half_lo, half_hi)
        H = nh * hd
    I = log_uniform_int(rng, max(8, H // 2), max(16, 4 * H))
    V = log_uniform_int(rng, 16, 1024)
    tied = rng.random() < 0.5
    std = rng.uniform(0.02, 0.1)
    norm_std = rng.uniform(0.0, 0.2)
    config = cases.hf_config(H=H, I=I, L=L, nh=nh, nkv=nkv, V=V, tied=tied, head_dim=hd if explicit else None,
                             rope_theta=rng.choice([10000.0, 500000.0]), rms_norm_eps=rng.choice([1e-5, 1e-6]),
                             max_positions=max(128, T), initializer_range=round(std, 4))
    shape = "%s-L%d-B%d-T%d-H%d-I%d-nh%d-kv%d-hd%d%s-V%d-%s" % (
        kind, L, B, T, H, I, nh, nkv, hd, "x" if explicit else "", V, "tied" if tied else "untied")
    return config, B, T, round(norm_std, 4), shape


def estimate(config, B, T):
    """(file bytes, forward multiply-adds) of a v2 case, from its shapes."""
    H, I, V, L = config["hidden_size"], config["intermediate_size"], config["vocab_size"], config["num_hidden_layers"]
    nh, nkv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or H // nh
    q, kv = nh * hd, nkv * hd
    linear = q * H + 2 * kv * H + H * q + 3 * I * H  # per layer
    params = V * H * (1 if config["tie_word_embeddings"] else 2) + L * (linear + 2 * H + q + I) + H
    # Per token: every trace point and hidden state, final_norm and logits.
    per_token = L * (5 * H + 3 * q + 2 * kv + 4 * I) + (L + 2) * H + V
    floats = 2 * params + 2 * B * T * per_token  # values and their gradients
    work = B * T * (L * linear + V * H) + B * L * nh * T * T * hd  # QK^T and PV over the causal half, roughly
    return 4 * floats + B * T * 8, work


def power_of_two_at_least(x):
    """The smallest power of two >= x (x > 0)."""
    return 2.0 ** math.ceil(math.log2(x))


def make_large(case, kind, target):
    """Returns case with its q_proj and k_proj weights (kind "scores" or
    "both") and its model.norm weight ("logits" or "both") multiplied by
    powers of two, so that its largest layer-0 attention score, and its
    largest logit, reach at least target. The factors come from one float32
    run of the unscaled case, and the scaling is exact: layer 0's scores
    are multiplied by the product of the q and k factors (one factor each,
    the square root of what is needed), the logits by the model.norm
    factor. Later layers' scores move with what layer 0 changed."""
    cfg, params, ids = cases.build_model_inputs(case)
    with torch.no_grad():
        scores, logit = cases.largest_magnitudes(cfg, reference.forward(cfg, params, ids))
    scale = {}
    if kind in ("scores", "both"):
        factor = power_of_two_at_least(math.sqrt(target / max(scores[0], 1e-6)))
        scale["self_attn.q_proj.weight"] = scale["self_attn.k_proj.weight"] = max(factor, 1.0)
    if kind in ("logits", "both"):
        scale["model.norm.weight"] = max(power_of_two_at_least(target / max(logit, 1e-6)), 1.0)
    note = ", ".join("%s x%g" % (n, f) for n, f in scale.items())
    description = "%s; large %s (target %.0f): %s" % (case.description, kind, target, note)
    return cases.ModelCase(case.name + "-large-" + kind, case.seed, case.config, case.B, case.T, description,
                           version=case.version, norm_std=case.norm_std, scale=scale)


def draw_case(seed, k, max_bytes, max_work):
    case_seed = seed * 1000 + k
    rng = random.Random(case_seed)
    for _ in range(10000):
        config, B, T, norm_std, shape = draw_config(rng)
        size, work = estimate(config, B, T)
        if size <= max_bytes and work <= max_work:
            break
    else:
        raise RuntimeError("case %d: no draw within budget" % k)
    name = "sweep-s%d-%03d-%s" % (seed, k, shape)
    description = "random sweep case %d of seed %d (%s): %s, init std %s, norm std %s" % (
        k, seed, SCRIPT, shape, config["initializer_range"], norm_std)
    case = cases.ModelCase(name, case_seed, config, B, T, description, version=2, norm_std=norm_std)
    # Drawn after the config, so a seed's configs are those of the sweep
    # before large cases existed.
    if rng.random() < LARGE_FRACTION:
        kind = rng.choice(LARGE_KINDS)
        target = math.exp(rng.uniform(math.log(LARGE_TARGET[0]), math.log(LARGE_TARGET[1])))
        case = make_large(case, kind, target)
    return case


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="number of cases")
    parser.add_argument("--seed", type=int, required=True, help="sweep seed (>= 0)")
    parser.add_argument("--out", required=True, help="folder to write the cases into")
    parser.add_argument("--only", type=int, action="append", default=[], help="write only case K (0-based; repeatable)")
    parser.add_argument("--max-bytes", type=float, default=MAX_BYTES, help="largest file of one case")
    parser.add_argument("--max-work", type=float, default=MAX_WORK, help="largest forward multiply-add count of one case")
    args = parser.parse_args()
    if args.seed < 0 or args.n < 0:
        parser.error("--n and --seed must be >= 0")
    generate.setup_determinism()
    os.makedirs(args.out, exist_ok=True)
    print("sweep: seed %d, %d cases, into %s" % (args.seed, args.n, args.out))
    start_all, total_bytes = time.perf_counter(), 0
    for k in range(args.n):
        if args.only and k not in args.only:
            continue
        case = draw_case(args.seed, k, args.max_bytes, args.max_work)
        start = time.perf_counter()
        path = generate.write_case(case, args.out, generator_name=SCRIPT)
        size = os.path.getsize(path)
        total_bytes += size
        print("%s  %.1f MB  %.1f s" % (case.name, size / 1e6, time.perf_counter() - start), flush=True)
    print("sweep: seed %d done, %.1f MB in %.0f s" % (args.seed, total_bytes / 1e6, time.perf_counter() - start_all))


if __name__ == "__main__":
    main()
