"""Dumps the reference module and every broken variant into one folder.

    /usr/bin/python3 golden/dump/examples/write_cases.py --out DIR [--seed N]

Writes DIR/reference-tied.safetensors and DIR/reference-untied.safetensors
(bitnet_modules.BitNetForCausalLM), one DIR/{Class}.safetensors per entry of
bitnet_modules.BROKEN, and DIR/layout.json with the dumper's report for
each layout mismatch (MissingAttnSubNorm, ExtraQNorm). One process, so the
Go test (golden/dump/dump_test.go) pays torch's import once. Tiny config:
H=64, I=128, 2 layers, 4 query heads over 2 KV heads, V=256, B=2, T=16.
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import bitnet_modules as bm  # noqa: E402
import dump  # noqa: E402


def config(tied):
    return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": tied, "initializer_range": 0.05, "hidden_act": "relu2",
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "online"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    jobs = [("reference-tied", bm.BitNetForCausalLM, True), ("reference-untied", bm.BitNetForCausalLM, False)]
    jobs += [(name, cls, True) for name, (cls, _) in bm.BROKEN.items()]
    for name, cls, tied in jobs:
        cfg = config(tied)
        path = os.path.join(args.out, name + ".safetensors")
        loss = dump.dump(cls(cfg, seed=args.seed), cfg, path, seed=args.seed, batch=2, seq=16)
        print("%s: loss %.6f" % (path, loss))
    layout = {}
    for name, cls in (("MissingAttnSubNorm", bm.MissingAttnSubNorm), ("ExtraQNorm", bm.ExtraQNorm)):
        cfg = config(True)
        try:
            dump.dump(cls(cfg, seed=args.seed), cfg, os.path.join(args.out, name + ".safetensors"))
            layout[name] = {"error": None}
        except dump.LayoutError as e:
            layout[name] = {"error": str(e), "missing": e.missing, "extra": e.extra}
    with open(os.path.join(args.out, "layout.json"), "w") as f:
        json.dump(layout, f, indent=1)


if __name__ == "__main__":
    main()
