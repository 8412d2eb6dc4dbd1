"""Throughput of batched training (ternq.multi) against the single-model loop, in one process.

Timings alternate between the single path and each batch size M (several repeats;
thread CPU time, so time spent waiting for a core shared with other work is not
counted), and the ratio (batched model-epochs per second / single model-epochs per
second, from medians; from minima in brackets) is the figure to read on a loaded
machine. GFLOP/s use the flop count of ``ternq.bench`` (per model-epoch).

    python benchmarks/multi.py --hidden 16 --kind student --sizes 1,4,8,16,32,64
    python benchmarks/multi.py --factorial-students 32 4,8,16   (the engine's break-even by width)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ternq import multi
from ternq.bench import B_DEFAULT, T_DEFAULT, bench_inputs, bench_lane, flops_epoch, time_epochs


def batched(theta0, X, Y, student, tp, H, M):
    lane = bench_lane(student, tp.shape[0] > 0)
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
    theta0, X, Y, student, tp = bench_inputs(H, a.kind, a.epochs, B_DEFAULT, T_DEFAULT)
    time_epochs(theta0.copy(), X[:2], Y[:2], student, tp, H, 2)  # compile / load
    batched(theta0, X[:2], Y[:2], student, tp, H, 2)
    fl = flops_epoch(H, a.kind)
    print(f"H={H} {a.kind}: B={B_DEFAULT} T={T_DEFAULT}, {a.epochs} epochs, median of {a.repeat}")
    print(f"{'M':>4} {'single ep/s':>12} {'batched model-ep/s':>19} {'ratio [min]':>14} "
          f"{'single GF/s':>12} {'batched GF/s':>13}")
    for M in sizes:
        ts, tb = [], []
        for _ in range(a.repeat):
            ts.append(time_epochs(theta0.copy(), X, Y, student, tp, H, a.epochs)[0])
            tb.append(batched(theta0, X, Y, student, tp, H, M))
        s = a.epochs / np.median(ts)
        b = M * a.epochs / np.median(tb)
        rmin = M * min(ts) / min(tb)
        print(f"{M:>4} {s:>12.0f} {b:>19.0f} {b / s:>6.2f} [{rmin:>5.2f}] {s * fl / 1e9:>12.1f} {b * fl / 1e9:>13.1f}")


def factorial_students(H: int, sizes, epochs: int = 1500, repeat: int = 3) -> None:
    """The engine's break-even: the factorial's four students of one width (plain and distilled, shaped and
    not; ternq.train one by one) against M of them batched (ternq.multi.train_students, the four
    configurations repeated), per model, thread CPU time alternating, median of ``repeat``."""
    from dataclasses import replace

    from ternq.tasks import get_task
    from ternq.train import StudentConfig, TeacherConfig, train_student, train_teacher

    task = get_task("sine")
    teacher, _ = train_teacher(task, TeacherConfig(hidden=H, epochs=50), 0)
    cfgs = [StudentConfig(hidden=H, epochs=epochs, shaped=s, distill=d) for d in (False, True) for s in (False, True)]
    multi.train_students(teacher, task, [replace(c, epochs=2) for c in cfgs], [0] * 4)  # compile / load
    for c in cfgs:
        train_student(teacher, task, replace(c, epochs=2), 0)
    print(f"H={H}, the factorial's 4 students, {epochs} epochs: single / batched time per model (median of {repeat})")
    for M in sizes:
        batch = (cfgs * (M // 4 + 1))[:M]
        ts, tb = [], []
        for _ in range(repeat):
            t0 = time.thread_time()
            for c in cfgs:
                train_student(teacher, task, c, 0)
            ts.append((time.thread_time() - t0) / 4)
            t0 = time.thread_time()
            multi.train_students(teacher, task, batch, [0] * M)
            tb.append((time.thread_time() - t0) / M)
        print(f"{M:>4} {np.median(ts) / np.median(tb):>6.2f}x")


if __name__ == "__main__":
    if "--factorial-students" in sys.argv:  # python benchmarks/multi.py --factorial-students H M1,M2,..
        i = sys.argv.index("--factorial-students")
        factorial_students(int(sys.argv[i + 1]), [int(m) for m in sys.argv[i + 2].split(",")])
    else:
        main()
