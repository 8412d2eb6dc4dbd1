"""The recipes on the GPU: one launch of M students with configs/best.toml's recipe beside the notes' protocol.

    python benchmarks/cuda_check.py OUT [--models 4096] [--hidden 32] [--epochs 60]

Each call trains M students for E epochs in one launch (copies to and from the GPU included): the notes'
shaped, distilled student ("plain") and best.toml's recipe, scaled to E epochs ("recipe": progressive
quantization over the first half of E * 2/3 main epochs, then E/3 epochs with the trits frozen; no
distillation). The two alternate, three calls each, after one call each that compiles; the medians go to
OUT/cuda_check.json. A small launch of both is also compared with the CPU's batched kernel, bit for bit.
Under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1) it runs, slowly, at tiny sizes.
"""

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def lanes(kind: str, epochs: int):
    from ternq.train import Lane, StudentConfig

    if kind == "plain":
        return Lane.of(replace(StudentConfig(), shaped=True, distill=True))
    fine = epochs // 3
    return Lane.of(replace(StudentConfig(), shaped=True, epochs=epochs - fine, progressive=0.5, finetune_epochs=fine,
                           finetune_lr=0.01))


def problem(M: int, H: int, E: int, B: int, T: int, seed: int = 0):
    from ternq.model import init_teacher, student_from
    from ternq.rng import stream
    from ternq.tasks import Sine

    task = Sine(steps=T)
    teacher = init_teacher(H, stream(seed, "cuda-check-init", H), task.n_in, task.n_out)
    X, Y = task.batches(stream(seed, "cuda-check-data", H), E, B)
    student = student_from(teacher)
    rng = np.random.default_rng(seed)
    theta = student.theta[None, :] * rng.uniform(0.8, 1.2, (M, student.theta.size)).astype(np.float32)
    tp = np.broadcast_to(teacher.params(), (M, teacher.params().size))
    return np.ascontiguousarray(theta, np.float32), X[None], Y[None], np.ascontiguousarray(tp, np.float32)


def call(device: str, kind: str, theta, X, Y, tp, H: int, E: int):
    from ternq import gpu, multi

    M = theta.shape[0]
    lane = lanes(kind, E)
    if lane.progressive:  # each model its own row order, as the engine draws them
        rng = np.random.default_rng(1)
        ls = [replace(lane, row_rank=rng.permutation(2 * H + 1)) for _ in range(M)]
    else:
        ls = [lane] * M
    train = gpu.train_batch if device == "cuda" else multi.train_batch
    t0 = time.perf_counter()
    res = train(theta, X, Y, [0] * M, (1, H, 1), ls, student=True, teacher=tp if lane.distill else None)
    return time.perf_counter() - t0, res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from ternq import gpu

    if not gpu.available():
        print("cuda_check: no GPU (and not under the simulator)", file=sys.stderr)
        return 2
    H, E, M = a.hidden, a.epochs, a.models
    doc = {"models": M, "hidden": H, "epochs": E, "batch": a.batch, "steps": a.steps}
    # bits: a small launch of both kinds against the CPU's batched kernel
    m_small = 8
    theta, X, Y, tp = problem(m_small, H, E, a.batch, a.steps)
    same = {}
    for kind in ("plain", "recipe"):
        _, g = call("cuda", kind, theta, X, Y, tp, H, E)
        _, c = call("cpu", kind, theta, X, Y, tp, H, E)
        same[kind] = bool(g.theta.tobytes() == c.theta.tobytes() and np.array_equal(g.losses, c.losses)
                          and np.array_equal(g.thresholds, c.thresholds))
    doc["bit_identical_to_cpu"] = same
    theta, X, Y, tp = problem(M, H, E, a.batch, a.steps)
    times = {"plain": [], "recipe": []}
    for kind in times:  # compiles, not timed
        call("cuda", kind, theta[:4], X, Y, tp[:4], H, 2)
    for _ in range(a.repeat):
        for kind in times:
            times[kind].append(call("cuda", kind, theta, X, Y, tp, H, E)[0])
    for kind, ts in times.items():
        s = statistics.median(ts)
        doc[kind] = {"seconds": ts, "median_s": s, "model_epochs_per_s": M * E / s}
    doc["recipe_over_plain"] = doc["recipe"]["median_s"] / doc["plain"]["median_s"]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cuda_check.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
