"""Throughput of batched training (ternq.multi) against the single-model loop, in one process.

Timings alternate between the single path and each batch size M (several repeats;
thread CPU time, so time spent waiting for a core shared with other work is not
counted), and the ratio (batched model-epochs per second / single model-epochs per
second, from medians; from minima in brackets) is the figure to read on a loaded
machine. GFLOP/s use the flop count of ``ternq.bench`` (per model-epoch).

    python benchmarks/multi.py --hidden 16 --kind student --sizes 1,4,8,16,32,64
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ternq import multi
from ternq.bench import B_DEFAULT, T_DEFAULT, _run_epochs, _setup, flops_epoch


def batched(theta0, X, Y, student, tp, H, M):
    lane = multi.Lane(lr=1e-3 if student else 1e-2, lr_min=1e-4, mask="seed" if student else None,
                      beta=(1.0, 20.0), alpha=(0.3, 0.8), distill=tp.shape[0] > 0)
    th = np.repeat(theta0[None], M, axis=0)
    teacher = np.repeat(tp[None], M, axis=0) if tp.shape[0] else None
    t0 = time.thread_time()
    multi.train_batch(th, X[None], Y[None], [0] * M, (1, H, 1), [lane] * M, student=student,
                      teacher=teacher, chunks=1)
    return time.thread_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--kind", choices=("teacher", "student", "distill"), default="student")
    ap.add_argument("--sizes", default="1,4,8,16,32,64")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    H, sizes = a.hidden, [int(s) for s in a.sizes.split(",")]
    theta0, X, Y, student, tp = _setup(H, a.kind, a.epochs, B_DEFAULT, T_DEFAULT)
    _run_epochs(theta0.copy(), X[:2], Y[:2], student, tp, H, 2)  # compile / load
    batched(theta0, X[:2], Y[:2], student, tp, H, 2)
    fl = flops_epoch(H, a.kind)
    print(f"H={H} {a.kind}: B={B_DEFAULT} T={T_DEFAULT}, {a.epochs} epochs, median of {a.repeat}")
    print(f"{'M':>4} {'single ep/s':>12} {'batched model-ep/s':>19} {'ratio [min]':>14} "
          f"{'single GF/s':>12} {'batched GF/s':>13}")
    for M in sizes:
        ts, tb = [], []
        for _ in range(a.repeat):
            ts.append(_run_epochs(theta0.copy(), X, Y, student, tp, H, a.epochs)[0])
            tb.append(batched(theta0, X, Y, student, tp, H, M))
        s = a.epochs / np.median(ts)
        b = M * a.epochs / np.median(tb)
        rmin = M * min(ts) / min(tb)
        print(f"{M:>4} {s:>12.0f} {b:>19.0f} {b / s:>6.2f} [{rmin:>5.2f}] {s * fl / 1e9:>12.1f} {b * fl / 1e9:>13.1f}")


if __name__ == "__main__":
    main()
