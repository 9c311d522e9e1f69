"""One BLAS thread for the commands whose output must be bit-for-bit
reproducible (generate, sweep, measure, bugs, validate): OpenBLAS reads
OPENBLAS_NUM_THREADS when torch loads it, and a threaded sgemm may split
sums differently from run to run. Import this module before anything that
imports torch. baseline.py does not: it times torch with its own threads.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402  (after the variable is set)


def setup():
    """Deterministic torch algorithms on one intra-op thread."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
