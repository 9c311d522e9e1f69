"""Random small HF BitNet checkpoints for the checkpoint sweep (`make checkpoint-sweep`).

Usage (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 -B -m golden.toolkit.checkpoints --n N --seed S --out DIR [--bugs]

Written from REFERENCE.md with PyTorch alone, independently of the Go
writer (model/checkpoint): this is the reference the Go reader is checked
against. Case k (0-based) of seed S is drawn from random.Random(S*1000 + k)
and its weights from torch.Generator().manual_seed(S*1000 + k), so the
files are a pure function of (S, k). For case k, named NAME:

    DIR/NAME/master/          online bf16 master weights (quantization_mode online)
    DIR/NAME/autobitlinear/   offline packed, weight_scale = mean|W|, multiplied
    DIR/NAME/bitlinear/       offline packed, weight_scale = 1/mean|W|, divided
    DIR/golden/NAME.safetensors   the v2 golden case on the master's weights
                                  (generate.write_case, with its spread)
    DIR/presets/NAME-{master,autobitlinear,bitlinear}.json   each checkpoint's config.json

Each checkpoint is one model.safetensors or 2-3 shards with
model.safetensors.index.json (drawn per checkpoint); each offline one
stores its weight_scale as BF16 or F32 (drawn), and may leave a key to
HF's default: half of the bitlinear configs omit linear_class (HF's
default class is bitlinear), a quarter of the offline configs omit
quantization_mode (HF's default mode is offline).

With --bugs, DIR/bugs/BUG/ holds a broken offline checkpoint of case 0
for each of BUGS: inverted-scale (one linear's weight_scale inverted),
flipped-code (one code negated), packing-order (one linear packed four
consecutive rows to a byte), linear-class (config.json says bitlinear,
the scales are autobitlinear's) and linear-class-absent (the same with
linear_class left out, so HF's default, bitlinear, applies).

DIR/runs.tsv lists what the sweep runs, one line per checkpoint: label,
model dir, master dir ("-" for none), preset name, suites ("all" or
"forward"), expected result ("pass" or "fail") and, for a failure, the
words its output must contain, separated by "|".

Layout (REFERENCE.md, HF integrations/bitnet.py): every BitLinear weight W
[out, in] of the master becomes codes c = clamp(round(W / mean|W|), -1, 1),
packed as uint8 [out/4, in]: row r of c sits in packed row r mod (out/4), at
bits 2*(r div (out/4)), as c+1. Its weight_scale [1] is mean|W| under
linear_class autobitlinear and 1/mean|W| under bitlinear. The embedding,
the norms and the lm_head stay bf16.
"""

import argparse
import json
import os
import random
import time

from . import determinism  # noqa: F401  (first: one BLAS thread before torch loads)
import torch

from . import cases
from . import format as fmt
from . import generate
from . import safetensors_io
from .sweep import log_uniform_int

SCRIPT = "golden.toolkit.checkpoints"
CONVENTIONS = ["autobitlinear", "bitlinear"]
VARIANTS = ["master"] + CONVENTIONS
BUGS = ["inverted-scale", "flipped-code", "packing-order", "linear-class", "linear-class-absent"]
ACT_SCALE_FLOOR = 1e-5  # weight_quant clamps mean|W| from below (reference.SCALE_FLOOR)
METADATA = {"format": "pt"}  # what transformers writes in every shard


def draw_config(rng):
    """A small random config whose linears all pack (out_features a multiple
    of 4): (online config dict, B, T, norm_std, short description)."""
    L = rng.randint(1, 4)
    kind = rng.choice(["mha", "gqa", "mqa"])
    if kind == "mha":
        nh = log_uniform_int(rng, 1, 8)
        nkv = nh
    elif kind == "mqa":
        nh = log_uniform_int(rng, 2, 8)
        nkv = 1
    else:
        nkv = log_uniform_int(rng, 2, 4)
        nh = nkv * rng.randint(2, max(2, 8 // nkv))
    hd = 4 * log_uniform_int(rng, 1, 16)  # a multiple of 4: nh*hd and nkv*hd pack
    explicit = rng.random() < 0.3
    H = 4 * log_uniform_int(rng, 2, 64) if explicit else nh * hd
    H = max(H, 8)
    I = 4 * log_uniform_int(rng, max(2, H // 8), H)
    V = log_uniform_int(rng, 16, 512)
    tied = rng.random() < 0.5
    std = rng.uniform(0.02, 0.1)
    norm_std = rng.uniform(0.0, 0.2)
    T = log_uniform_int(rng, 2, 48)
    B = rng.randint(1, 2)
    config = cases.hf_config(H=H, I=I, L=L, nh=nh, nkv=nkv, V=V, tied=tied,
                             head_dim=hd if (explicit or H != nh * hd) else None,
                             rope_theta=rng.choice([10000.0, 500000.0]), rms_norm_eps=rng.choice([1e-5, 1e-6]),
                             max_positions=128, initializer_range=round(std, 4))
    shape = "%s-L%d-H%d-I%d-nh%d-kv%d-hd%d-V%d-%s" % (kind, L, H, I, nh, nkv, hd, V, "tied" if tied else "untied")
    return config, B, T, round(norm_std, 4), shape


class Checkpoint:
    """One case: its golden case, its master parameters and its draws."""

    def __init__(self, seed, k):
        self.seed = seed * 1000 + k
        rng = random.Random(self.seed)
        config, B, T, norm_std, shape = draw_config(rng)
        self.name = "ckpt-s%d-%03d-%s" % (seed, k, shape)
        description = "checkpoint sweep case %d of seed %d (%s): the bf16 master's weights, %s" % (
            k, seed, SCRIPT, shape)
        self.case = cases.ModelCase(self.name, self.seed, config, B, T, description, norm_std=norm_std,
                                    bf16_master=True)
        # Per checkpoint: the number of shards, and the weight_scale dtype.
        self.shards = {v: rng.choice([1, 1, 2, 3]) for v in VARIANTS}
        self.scale_dtype = {c: rng.choice([torch.bfloat16, torch.float32]) for c in CONVENTIONS}
        # HF's defaults stated by omission: a bitlinear config without
        # linear_class (HF's default class), an offline one without
        # quantization_mode (HF's default mode).
        self.omit_linear_class = rng.random() < 0.5
        self.omit_mode = {c: rng.random() < 0.25 for c in CONVENTIONS}
        self.bug_rng = random.Random(self.seed + 1)
        self._params = None

    def config(self, variant, explicit=False):
        """config.json of a variant: the master's online config, or offline
        with linear_class = variant; unless explicit, the keys this case
        leaves to HF's defaults (linear_class bitlinear, quantization_mode
        offline) are omitted."""
        c = json.loads(json.dumps(self.case.config))
        c["torch_dtype"] = "bfloat16"
        if variant != "master":
            q = {"quant_method": "bitnet", "linear_class": variant, "quantization_mode": "offline"}
            if not explicit and variant == "bitlinear" and self.omit_linear_class:
                del q["linear_class"]
            if not explicit and self.omit_mode[variant]:
                del q["quantization_mode"]
            c["quantization_config"] = q
        return c

    def summary(self):
        """One line: shards, weight_scale dtypes and the omitted keys."""
        omitted = []
        if self.omit_linear_class:
            omitted.append("bitlinear without linear_class")
        omitted += ["%s without quantization_mode" % c for c in CONVENTIONS if self.omit_mode[c]]
        return "shards %s, weight_scale %s%s" % (
            "/".join(str(self.shards[v]) for v in VARIANTS),
            "/".join(str(self.scale_dtype[c]).replace("torch.", "") for c in CONVENTIONS),
            "".join(", " + o for o in omitted))

    def params(self):
        """The master parameters, float32 holding bf16 values, with their kind."""
        if self._params is None:
            cfg, params, _ = cases.build_model_inputs(self.case)
            self._params = [(name, params[name].detach(), kind) for name, _, kind in cfg.inventory()]
        return self._params


def ternary(w):
    """(codes int8 in {-1, 0, 1}, mean|W|) of a master weight, as online
    weight_quant computes them in float32: codes = clamp(round(W * (1 /
    mean|W|)), -1, 1), mean|W| clamped from below at 1e-5."""
    mean = w.abs().mean().clamp(min=ACT_SCALE_FLOOR)
    codes = (w * (1.0 / mean)).round().clamp(-1, 1).to(torch.int8)
    return codes, mean


def pack(codes):
    """HF's packed layout of codes [out, in]: uint8 [out/4, in], row r in
    packed row r mod (out/4) at bits 2*(r div (out/4)), as c+1."""
    out_features = codes.shape[0]
    if out_features % 4:
        raise ValueError("pack: out_features %d is not a multiple of 4" % out_features)
    q = out_features // 4
    values = (codes.to(torch.int16) + 1).to(torch.uint8)
    packed = torch.zeros(q, codes.shape[1], dtype=torch.uint8)
    for i in range(4):
        packed |= values[i * q:(i + 1) * q] << (2 * i)
    return packed


def unpack(packed):
    """codes int8 [4*rows, in] of a packed [rows, in] (the inverse of pack)."""
    q = packed.shape[0]
    parts = [((packed >> (2 * i)) & 3).to(torch.int8) - 1 for i in range(4)]
    codes = torch.cat(parts, dim=0)
    if bool((codes == 2).any()):
        raise ValueError("unpack: a 2-bit field holds 3, not a ternary code")
    assert codes.shape[0] == 4 * q
    return codes


def pack_interleaved(codes):
    """The wrong packing order (the bug packing-order): row r in packed row
    r div 4 at bits 2*(r mod 4), four consecutive rows to a byte."""
    q = codes.shape[0] // 4
    values = (codes.to(torch.int16) + 1).to(torch.uint8).reshape(q, 4, codes.shape[1])
    packed = torch.zeros(q, codes.shape[1], dtype=torch.uint8)
    for i in range(4):
        packed |= values[:, i] << (2 * i)
    return packed


def master_tensors(ck):
    """(name, bf16 tensor) of the online master, in inventory order."""
    return [(name, t.to(torch.bfloat16)) for name, t, _ in ck.params()]


def offline_tensors(ck, convention, bug=None, bug_tensor=None):
    """(name, tensor) of an offline checkpoint, in inventory order: each
    linear as its packed codes then its weight_scale. bug (one of BUGS, or
    None) breaks the tensor bug_tensor (every linear for linear-class)."""
    scale_dtype = ck.scale_dtype[convention]
    out = []
    for name, w, kind in ck.params():
        if kind != "linear":
            out.append((name, w.to(torch.bfloat16)))
            continue
        codes, mean = ternary(w)
        scale = mean if convention == "autobitlinear" else 1.0 / mean
        packed = pack(codes)
        if name == bug_tensor and bug == "inverted-scale":
            scale = 1.0 / scale
        if name == bug_tensor and bug == "flipped-code":
            flat = (w * (1.0 / mean)).abs().argmax()  # the code farthest from a rounding threshold
            r, c = divmod(int(flat), w.shape[1])
            codes = codes.clone()
            codes[r, c] = -codes[r, c]
            packed = pack(codes)
        if name == bug_tensor and bug == "packing-order":
            packed = pack_interleaved(codes)
        if bug in ("linear-class", "linear-class-absent"):  # config: bitlinear (divide); scales: autobitlinear's
            scale = mean
        out.append((name, packed))
        out.append((name + "_scale", scale.reshape(1).to(scale_dtype)))
    return out


def write_checkpoint(folder, config, tensors, shards):
    """config.json and the tensors: model.safetensors, or `shards` files
    model-0000i-of-0000n.safetensors of consecutive tensors with
    model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"})."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    if shards == 1:
        safetensors_io.write(os.path.join(folder, "model.safetensors"), tensors, METADATA)
        return
    shards = min(shards, len(tensors))
    weight_map, total = {}, 0
    bounds = [len(tensors) * i // shards for i in range(shards + 1)]
    for i in range(shards):
        file = "model-%05d-of-%05d.safetensors" % (i + 1, shards)
        part = tensors[bounds[i]:bounds[i + 1]]
        safetensors_io.write(os.path.join(folder, file), part, METADATA)
        for name, t in part:
            weight_map[name] = file
            total += t.numel() * t.element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def read_checkpoint(folder):
    """(config, {name: tensor}) of a checkpoint folder written by write_checkpoint."""
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    files = ["model.safetensors"]
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(os.path.join(folder, files[0])):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    tensors = {}
    for file in files:
        tensors.update(safetensors_io.read(os.path.join(folder, file))[1])
    return config, tensors


def bug_target(ck, bug):
    """The linear a bug breaks, drawn from the case's bug generator: any
    linear, or for packing-order one with out_features >= 8 (with 4 rows
    both orders are the same)."""
    linears = [(n, t) for n, t, kind in ck.params() if kind == "linear"]
    if bug == "packing-order":
        linears = [(n, t) for n, t in linears if t.shape[0] >= 8]
    return ck.bug_rng.choice(linears)[0]


def bug_words(bug, tensor):
    """The words the suites' output must contain for a broken checkpoint."""
    return {
        "inverted-scale": [tensor + "_scale", "it is the inverse"],
        "flipped-code": [tensor, "online quantization of the master gives"],
        "packing-order": [tensor, "codes differ from online quantization of the master"],
        "linear-class": ["weight_scale", "the other convention's weight_scale, so linear_class or the converter is wrong"],
        "linear-class-absent": ["under bitlinear", "linear_class absent: HF's default, bitlinear",
                                "the other convention's weight_scale, so linear_class or the converter is wrong"],
    }[bug]


def write_case(ck, out):
    """Every checkpoint of one case, its golden case and presets; returns
    its runs.tsv lines."""
    lines = []
    base = os.path.join(out, ck.name)
    master = os.path.join(base, "master")
    write_checkpoint(master, ck.config("master"), master_tensors(ck), ck.shards["master"])
    for convention in CONVENTIONS:
        write_checkpoint(os.path.join(base, convention), ck.config(convention), offline_tensors(ck, convention),
                         ck.shards[convention])
    for variant in VARIANTS:
        preset = "%s-%s" % (ck.name, variant)
        with open(os.path.join(out, "presets", preset + ".json"), "w") as f:
            json.dump(ck.config(variant), f, indent=2)
        lines.append([preset, os.path.join(base, variant), master if variant != "master" else "-", preset, "all",
                      "pass", ""])
    generate.write_case(ck.case, os.path.join(out, "golden"), generator_name=SCRIPT)
    return lines


def write_bugs(ck, out):
    """The broken offline checkpoints of one case; returns their runs.tsv lines."""
    lines = []
    master = os.path.join(out, ck.name, "master")
    for bug in BUGS:
        folder = os.path.join(out, "bugs", bug)
        if bug in ("linear-class", "linear-class-absent"):
            tensor = None
            config = ck.config("bitlinear", explicit=True)
            if bug == "linear-class-absent":  # HF's default class, bitlinear, applies
                del config["quantization_config"]["linear_class"]
            tensors = offline_tensors(ck, "bitlinear", bug=bug)
        else:
            tensor = bug_target(ck, bug)
            config = ck.config("autobitlinear", explicit=True)
            tensors = offline_tensors(ck, "autobitlinear", bug=bug, bug_tensor=tensor)
        write_checkpoint(folder, config, tensors, 1)
        preset = "%s-bug-%s" % (ck.name, bug)
        with open(os.path.join(out, "presets", preset + ".json"), "w") as f:
            json.dump(config, f, indent=2)
        lines.append(["bug " + bug, folder, master, preset, "forward", "fail", "|".join(bug_words(bug, tensor or ""))])
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="number of cases (three checkpoints each)")
    parser.add_argument("--seed", type=int, required=True, help="sweep seed (>= 0)")
    parser.add_argument("--out", required=True, help="folder to write into")
    parser.add_argument("--bugs", action="store_true", help="also write the broken checkpoints of case 0")
    args = parser.parse_args()
    if args.seed < 0 or args.n < 1:
        parser.error("--n must be >= 1 and --seed >= 0")
    generate.setup_determinism()
    for sub in ("presets", "golden"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    start = time.perf_counter()
    lines = []
    first = None
    for k in range(args.n):
        ck = Checkpoint(args.seed, k)
        first = first or ck
        lines += write_case(ck, args.out)
        print("%s  %s" % (ck.name, ck.summary()), flush=True)
    if args.bugs:
        lines += write_bugs(first, args.out)
    with open(os.path.join(args.out, "runs.tsv"), "w") as f:
        for line in lines:
            f.write("\t".join(line) + "\n")
    print("checkpoints: seed %d, %d cases, %d runs in %s/runs.tsv, %.0f s" % (
        args.seed, args.n, len(lines), args.out, time.perf_counter() - start))


if __name__ == "__main__":
    main()
