"""Speed measurements of the compiled kernels: ``ternq bench``.

What is measured
----------------
- **Epoch time** of the compiled training loop (:func:`ternq.kernels.loop.train_epochs`)
  for a float teacher, a ternary student, and a student with trajectory distillation
  (which also runs a teacher forward every epoch), on the sine task: batch ``B`` = 10
  sequences of ``T`` = 50 steps, one Adam step per epoch, float32, one thread.
  The best of a few repeats of ``epochs`` consecutive epochs, divided by ``epochs``.
- **Achieved GFLOP/s** = analytic flop count of one epoch / epoch time.
- **Machine peak** (single thread, float32): numpy's BLAS ``sgemm`` on 768 x 768
  matrices in a subprocess limited to one thread (``OMP_NUM_THREADS=1`` and
  friends), counted as 2 n^3 flops, best of 7. A practical ceiling for
  vectorized FMA code on this core; the cell's recurrences (short vectors,
  a serial time loop, transcendentals) cannot reach it.
- **Floor** = flops of a whole reference factorial / peak: the time the factorial's
  training would take if every flop ran at peak on one core.
- **Compile time**: a subprocess imports ternq and runs one tiny teacher and one
  tiny student training (every kernel the factorial needs, float32), once with a
  fresh empty ``NUMBA_CACHE_DIR`` (cold: compiles everything) and once more with
  the same directory (warm: loads from the cache).
- **Factorial wall time**: :func:`bench_factorial`, through :func:`ternq.experiment.run.run_experiment`.

Flop count of one epoch
-----------------------
Sizes: input I, hidden H, output O, Z = I + H, batch B, steps T, N = B*T steps.
A multiply-add counts 2 flops, an add, multiply or divide 1, a transcendental
(exp, tanh, sqrt) 1. Small O(H) per-epoch terms (decay) are ignored.

Forward, per step of one sequence::

    pre = W z + b          2 * 2H * Z         (matrix-vector, 2H rows)
    gate, cand             2H transcendentals + 2H (sigmoid's add and divide)
    h                      5H
    y = Wout h + bout      2 * O * H

    F_fwd = N * (4 H Z + 2 H + 2 H + 5 H + 2 O H)

Backward (BPTT), per step::

    output error, dWout, dh += Wout^T dy       3 O + 4 O H
    gate/cand/tau derivatives                   ~ 14 H
    dW += dpre z^T                              2 * 2H * Z
    dh += W_h^T dpre                            2 * 2H * H

    F_bwd = N * (3 O + 4 O H + 14 H + 4 H Z + 4 H^2)
    (+ N * 4 H with distillation: the trajectory error and its gradient)

Per epoch, with P the number of parameters (P_s = P + 2H + O scales for a student)::

    teacher:  F_fwd + F_bwd + clip 3 P + Adam 10 P
    student:  F_fwd + F_bwd + quantize 3 Pw + STE backward 10 Pw + clip 3 P_s + Adam 10 P_s
              (Pw = 2H Z + O H ternary weights)
    distill:  student + 4 N H + F_fwd (the teacher's forward)

A reference factorial (the C program's protocol) is 2000 teacher epochs at H = 16
and H = 32 and, at each width, 1500 epochs of 2 plain and 2 distilled students.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

B_DEFAULT = 10
T_DEFAULT = 50
WIDTHS = (16, 32, 64, 128)
KINDS = ("teacher", "student", "distill")


# ---------------------------------------------------------------- flop counts

def flops_forward(H: int, I: int = 1, O: int = 1, B: int = B_DEFAULT, T: int = T_DEFAULT) -> int:
    """Flops of one forward pass over a batch (see the module docstring)."""
    Z = I + H
    return B * T * (4 * H * Z + 9 * H + 2 * O * H)


def flops_backward(H: int, I: int = 1, O: int = 1, B: int = B_DEFAULT, T: int = T_DEFAULT,
                   distill: bool = False) -> int:
    """Flops of the BPTT pass over a batch."""
    Z = I + H
    per = 3 * O + 4 * O * H + 14 * H + 4 * H * Z + 4 * H * H + (4 * H if distill else 0)
    return B * T * per


def flops_epoch(H: int, kind: str = "teacher", I: int = 1, O: int = 1, B: int = B_DEFAULT,
                T: int = T_DEFAULT) -> int:
    """Flops of one training epoch of a ``teacher``, ``student`` or ``distill`` (student) run."""
    Z = I + H
    P = 2 * H * Z + 3 * H + O * H + O
    distill = kind == "distill"
    f = flops_forward(H, I, O, B, T) + flops_backward(H, I, O, B, T, distill)
    if kind == "teacher":
        return f + 13 * P
    Pw = 2 * H * Z + O * H
    Ps = P + 2 * H + O
    f += 13 * Pw + 13 * Ps
    if distill:
        f += flops_forward(H, I, O, B, T)
    return f


def flops_factorial(teacher_epochs: int = 2000, student_epochs: int = 1500, widths=(16, 32)) -> int:
    """Flops of a reference factorial's training (2 teachers, 8 students)."""
    total = 0
    for H in widths:
        total += teacher_epochs * flops_epoch(H, "teacher")
        total += 2 * student_epochs * flops_epoch(H, "student")
        total += 2 * student_epochs * flops_epoch(H, "distill")
    return total


# ---------------------------------------------------------------- epoch timing

def _setup(H: int, kind: str, epochs: int, B: int, T: int, seed: int = 0):
    from .model import init_teacher, student_from
    from .rng import stream
    from .tasks import Sine

    task = Sine(steps=T)
    teacher = init_teacher(H, stream(seed, "bench-init", H), task.n_in, task.n_out)
    X, Y = task.batches(stream(seed, "bench-data", H), epochs, B)
    if kind == "teacher":
        return teacher.theta.copy(), X, Y, False, np.empty(0, np.float32)
    student = student_from(teacher)
    tp = teacher.params() if kind == "distill" else np.empty(0, np.float32)
    return student.theta.copy(), X, Y, True, tp


def _run_epochs(theta, X, Y, student, tp, H, epochs):
    from .kernels.loop import LR_COSINE, LoopSettings, run_epochs
    from .kernels.ternary import MASK_SEED
    from .train import DT

    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    losses = np.full(epochs, np.nan)
    mses = np.full(epochs, np.nan)
    s = LoopSettings(n_epochs=epochs, dt=DT, lr=1e-3 if student else 1e-2, lr_min=1e-4, lr_kind=LR_COSINE, clip=5.0,
                     student=student, mask_kind=MASK_SEED if student else 0, beta=(1.0, 20.0), alpha=(0.3, 0.8))
    t0 = time.perf_counter()
    bad = run_epochs(theta, m, v, X, Y, 0, epochs, (1, H, 1), s, tp, losses, mses)
    dt = time.perf_counter() - t0
    return dt, bad, losses


def epoch_time(H: int, kind: str = "teacher", epochs: int = 200, repeat: int = 3,
               B: int = B_DEFAULT, T: int = T_DEFAULT) -> float:
    """Seconds per training epoch (best of ``repeat`` runs of ``epochs`` epochs), compiled."""
    theta0, X, Y, student, tp = _setup(H, kind, epochs, B, T)
    _run_epochs(theta0.copy(), X[:2], Y[:2], student, tp, H, 2)  # compile / load
    best = np.inf
    for _ in range(repeat):
        dt, _, _ = _run_epochs(theta0.copy(), X, Y, student, tp, H, epochs)
        best = min(best, dt)
    return best / epochs


def epochs_for(H: int, budget: float = 0.25) -> int:
    """A number of epochs that takes roughly ``budget`` seconds at width H (rough guess)."""
    return int(max(20, min(1000, budget / (2e-6 * H * H + 3e-5))))


# ---------------------------------------------------------------- machine peak

_PEAK_SNIPPET = """
import time, numpy as np
n = 768
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
a @ b
best = 1e9
for _ in range(7):
    t0 = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t0)
print(2.0 * n ** 3 / best / 1e9)
"""


def peak_gflops() -> float:
    """Single-thread float32 matrix-multiply throughput in GFLOP/s (see the module docstring)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               BLIS_NUM_THREADS="1", VECLIB_MAXIMUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _PEAK_SNIPPET], env=env, capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- compile time

_COMPILE_SNIPPET = """
import time
t0 = time.perf_counter()
from ternq.bench import _setup, _run_epochs
for kind in ("teacher", "distill"):
    th, X, Y, st, tp = _setup(4, kind, 2, 2, 5)
    _run_epochs(th, X, Y, st, tp, 4, 2)
print(time.perf_counter() - t0)
"""


def compile_times() -> dict[str, float]:
    """Seconds to import and run every training kernel once: cold (empty cache) and warm."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="ternq-bench-cache-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for label in ("cold", "cached"):
            r = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, capture_output=True,
                               text=True, check=True)
            out[label] = float(r.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------- factorial hook

C_PROGRAM_S = 60.0  # the C program, gcc -O3 -march=native, same machine (REFERENCE.md)


def bench_factorial(seed: int = 0, cold: bool = True) -> dict:
    """Wall times of the reference factorial (``ternq factorial --seed SEED`` defaults).

    - ``serial_s`` / ``parallel_s``: :func:`ternq.experiment.run.run_experiment` in this
      process with 1 and 2 workers (kernels already compiled; the gradient check
      and the reproducibility rerun included), and whether both runs produced the
      same bits for every model (``identical``).
    - ``process_s``: the whole command ``ternq factorial --seed SEED -q`` in a
      child process, start-up and printing included, cache warm.
    - ``cold_process_s`` (with ``cold``): the same command with a fresh, empty
      ``NUMBA_CACHE_DIR``: a first run, compilation included.
    """
    import os
    import subprocess
    import sys
    import tempfile

    from .config import ExperimentSettings
    from .experiment.run import run_experiment

    settings = ExperimentSettings(seeds=(seed,))
    out: dict = {"available": True, "c_program_s": C_PROGRAM_S}
    runs = {}
    for workers in (1, 2, 2):  # the first parallel run also warms the numba cache for the serial one
        t0 = time.perf_counter()
        _, _, results = run_experiment(settings, workers=workers)
        runs[workers] = (time.perf_counter() - t0, results)
    out["serial_s"], serial = runs[1]
    out["parallel_s"], parallel = runs[2]
    out["identical"] = all(serial[k][1].theta.tobytes() == parallel[k][1].theta.tobytes() for k in serial)
    out["speedup_vs_c"] = C_PROGRAM_S / out["parallel_s"]
    cmd = [sys.executable, "-m", "ternq", "factorial", "--seed", str(seed), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    out["process_s"] = time.perf_counter() - t0
    if cold:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, NUMBA_CACHE_DIR=d))
            out["cold_process_s"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------- all together

def run(widths=WIDTHS, kinds=KINDS, budget: float = 0.25, compile: bool = True, factorial: bool = False,
        progress=None) -> dict:
    """Everything ``ternq bench`` reports, as a JSON-ready dict."""
    rows = []
    for H in widths:
        n = epochs_for(H, budget)
        for kind in kinds:
            if progress:
                progress(f"H={H} {kind}")
            s = epoch_time(H, kind, epochs=n)
            f = flops_epoch(H, kind)
            rows.append({"hidden": H, "kind": kind, "epochs_timed": n, "ms_per_epoch": s * 1e3,
                         "epochs_per_s": 1.0 / s, "mflop_per_epoch": f / 1e6, "gflops": f / s / 1e9})
    if progress:
        progress("peak")
    peak = peak_gflops()
    ff = flops_factorial()
    out = {"batch": B_DEFAULT, "steps": T_DEFAULT, "dtype": "float32", "threads": 1, "rows": rows,
           "peak_gflops": peak, "peak_method": "numpy float32 matmul 768x768, one BLAS thread",
           "factorial_gflop": ff / 1e9, "factorial_floor_s": ff / (peak * 1e9)}
    est = _estimate_factorial(rows)
    if est is not None:
        out["factorial_estimate_1core_s"] = est
    if compile:
        if progress:
            progress("compile times")
        out["compile_s"] = compile_times()
    if factorial:
        if progress:
            progress("factorial")
        out["factorial"] = bench_factorial(cold=compile)
    return out


def _estimate_factorial(rows) -> float | None:
    """Training time of a reference factorial on one core, from the measured epoch times."""
    t = {(r["hidden"], r["kind"]): r["ms_per_epoch"] / 1e3 for r in rows}
    total = 0.0
    for H in (16, 32):
        try:
            total += 2000 * t[H, "teacher"] + 2 * 1500 * (t[H, "student"] + t[H, "distill"])
        except KeyError:
            return None
    return total


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(compile=False), indent=1))
