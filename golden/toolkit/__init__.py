"""The golden toolkit: everything Python about bitnet-golden cases, in one package.

Run its commands from the repository root with Debian's torch
(apt-get install python3-torch libopenblas0-pthread), for example

    /usr/bin/python3 -B -m golden.toolkit.generate --out golden/cases

Modules (README.md in this folder has the commands):
    determinism    one BLAS thread and deterministic torch, for the reproducible commands
    format         golden/format.json: trace points, tensor names, order, shapes
    safetensors_io the one safetensors reader and writer
    reference      the reference BitNet b1.58 model (float32/float64, trace, spread perturbation, op table)
    cases          the committed cases
    generate       writes the committed cases
    sweep          writes random cases for make golden-sweep
    manifest       writes golden/cases/MANIFEST.sha256
    validate       the file validator
    dump           dumps any HF-named nn.Module to a v2 case
    examples       the reference model as HF-named nn.Modules, with bugs; writes the dumper's example cases
    bugs           the bug catalog (Go's bug names) and how far each bug moves each case
    measure        float32 vs float64 on every case (the data in docs/golden-tolerance.md)
    baseline       PyTorch float32 baseline of the full validation for one config
    test_toolkit   the package's tests
"""

import sys

# Keep the repository free of __pycache__ (run with -B to cover this file too).
sys.dont_write_bytecode = True
