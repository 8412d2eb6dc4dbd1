"""Epoch time of the GPU training kernel alone: ``ternq.gpu.train_epochs`` on teachers at fixed points.

    python benchmarks/cuda_epochs.py LABEL OUT.json

Each point (H, models M, epochs E) is one call of E epochs for M teachers (B=10 sequences of T=100
steps, one input and output, cosine learning rate, clipping); the median of three calls after one that
compiles, copies to and from the GPU included. Run it on two checkouts in one session of the same
machine to compare kernels (``cuda.md``: before and after, paired).
"""

import json
import statistics
import sys
import time

import numpy as np

from ternq import gpu
from ternq.bench import _device_problem

POINTS = ((32, 1, 200), (16, 1, 200), (64, 1, 100), (32, 4096, 10), (16, 4096, 10), (64, 4096, 4))


def teach(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, H: int, threads=None) -> None:
    """Train the teachers theta (M, P) in place for every epoch of X, Y (1, E, B, T, 1), one data set for all:
    one launch, cosine learning rate, clipping."""
    M, E = theta.shape[0], X.shape[1]
    gpu.train_epochs(theta, np.zeros_like(theta), np.zeros_like(theta), X, Y, np.zeros(M, np.int64), 0, E, E, 1, H,
                     1, 0.1, False, lr=0.01, lr_min=0.0, lr_kind=1, clip=1.0, losses=np.full((M, E), np.nan),
                     mses=np.full((M, E), np.nan), bad=np.full(M, -1, np.int64), threads=threads)


def point(H: int, M: int, E: int, rng, threads=None, T: int | None = None) -> dict:
    """One point: M teachers of width H for E epochs of B sequences of T steps (the reference's 100 unless given)."""
    X, Y, th = _device_problem(M, H, E, rng)
    X, Y = np.ascontiguousarray(X[:, :, :, :T]), np.ascontiguousarray(Y[:, :, :, :T])

    def call():
        t = th.copy()
        t0 = time.perf_counter()
        teach(t, X, Y, H, threads)
        return time.perf_counter() - t0

    call()
    s = statistics.median(call() for _ in range(3))
    return {"H": H, "M": M, "E": E, "T": X.shape[3], "threads": threads, "s": s, "ms_per_epoch": 1e3 * s / E,
            "me_per_s": M * E / s}


def main():
    label, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    rows = []
    for H, M, E in POINTS:
        r = dict(label=label, **point(H, M, E, rng))
        print(json.dumps(r), flush=True)
        rows.append(r)
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
