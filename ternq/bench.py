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
- **Ceiling of the kernels' arithmetic** (single thread, float32): the forward's own
  multiply-add loop (:func:`ternq.kernels.cell.matvec_rows2`: two vectors against the
  rows of a matrix, compiled as the training kernels are, a multiply and an add apiece
  with no fused multiply-add, which would change every result's bits) on rows of 256
  values held in the L1 cache, best of 7. What this code's arithmetic does on this
  core when nothing else (short vectors, the time loop, transcendentals) holds it
  back; other loop shapes can do somewhat more, and the sgemm peak (fused
  multiply-adds, blocked for registers) much more. The machine's speed drifts, so it is
  measured at the start, between the single and the batched timings, and at the end;
  the floors use the highest.
- **Floor** = flops of a whole reference factorial / peak (and / ceiling): the time the
  factorial's training would take if every flop ran at that rate on one core.
- **Compile time**: a subprocess imports ternq and runs one tiny teacher and one
  tiny student training (every kernel the factorial needs, float32), once with a
  fresh empty ``NUMBA_CACHE_DIR`` (cold: compiles everything) and once more with
  the same directory (warm: loads from the cache).
- **Batched training**: the same epochs for 16 copies of the model in one call
  (:func:`ternq.multi.train_batch`, one SIMD lane per model), as model-epochs per
  second and GFLOP/s per core, and the ratio to the single path.
- **Whole commands** (:func:`bench_commands`): ``ternq factorial --seed 0`` warm and
  with an empty Numba cache (a first run), ``ternq factorial --seeds 0:10`` warm, and
  a built C program (``--c-ref``), each a whole child process: wall time and CPU
  time (user + system, ``os.wait4``), several runs, median with min and max; the C
  program's runs interleaved with the single seed's, ratios pair by pair.

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
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit

from .kernels.cell import matvec_rows2, n_params
from .settings import local_workers

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


def flops_factorial(teacher_epochs: int | None = None, student_epochs: int | None = None, widths=None) -> int:
    """Flops of a reference factorial's training (2 teachers, 8 students) [the default settings' epochs, widths]."""
    from .experiment.plans import ExperimentSettings

    defaults = ExperimentSettings()
    teacher_epochs = defaults.teacher.epochs if teacher_epochs is None else teacher_epochs
    student_epochs = defaults.student.epochs if student_epochs is None else student_epochs
    widths = defaults.widths if widths is None else widths
    total = 0
    for H in widths:
        total += teacher_epochs * flops_epoch(H, "teacher")
        total += 2 * student_epochs * flops_epoch(H, "student")
        total += 2 * student_epochs * flops_epoch(H, "distill")
    return total


# ---------------------------------------------------------------- epoch timing

def bench_inputs(H: int, kind: str, epochs: int, B: int, T: int, seed: int = 0):
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


def bench_lane(student: bool, distill: bool):
    """The settings every timing trains with: the notes' shaped student (its mask, beta and alpha schedules) or
    teacher, with the default settings."""
    from dataclasses import replace

    from .train import Lane, StudentConfig, TeacherConfig

    if not student:
        return Lane.of(TeacherConfig())
    return Lane.of(replace(StudentConfig(), shaped=True, distill=distill))


def time_epochs(theta, X, Y, student, tp, H, epochs):
    """Seconds to train ``epochs`` epochs on the single-model path; (seconds, first diverged epoch or -1, losses)."""
    from .kernels.loop import thresholds, train_epochs
    from .train import loop_of

    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    losses = np.full(epochs, np.nan)
    mses = np.full(epochs, np.nan)
    loop = loop_of([bench_lane(student, tp.size > 0)], (1, H, 1), epochs, student)
    thr = thresholds(loop, theta.dtype)
    t0 = time.perf_counter()
    bad = train_epochs(theta, m, v, X, Y, 0, epochs, loop, tp if tp.size else None, thr, losses, mses)
    dt = time.perf_counter() - t0
    return dt, bad, losses


def epoch_time(H: int, kind: str = "teacher", epochs: int = 200, repeat: int = 3,
               B: int = B_DEFAULT, T: int = T_DEFAULT) -> float:
    """Seconds per training epoch (best of ``repeat`` runs of ``epochs`` epochs), compiled."""
    theta0, X, Y, student, tp = bench_inputs(H, kind, epochs, B, T)
    time_epochs(theta0.copy(), X[:2], Y[:2], student, tp, H, 2)  # compile / load
    best = np.inf
    for _ in range(repeat):
        dt, _, _ = time_epochs(theta0.copy(), X, Y, student, tp, H, epochs)
        best = min(best, dt)
    return best / epochs


def epochs_for(H: int, budget: float = 0.25) -> int:
    """A number of epochs that takes roughly ``budget`` seconds at width H (rough guess)."""
    return int(max(20, min(1000, budget / (2e-6 * H * H + 3e-5))))


def memory_needed(widths=WIDTHS, batched_widths=(16, 32, 64), budget: float = 0.25) -> int:
    """Bytes the largest timed run of :func:`run` allocates (an upper estimate: a batch of models at once)."""
    from .memory import training_memory

    return max((M * training_memory(epochs_for(H, budget), B_DEFAULT, T_DEFAULT, H)
                for M, hs in ((1, widths), (BATCH_M, batched_widths)) for H in hs), default=0)


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


CEILING_ROWS, CEILING_LEN = 16, 256  # 17 KB with both vectors: in any L1 data cache


def ceiling_gflops(repeat: int = 7) -> float:
    """GFLOP/s of the forward's multiply-add loop on long rows in L1, one thread (see the module docstring)."""
    rng = np.random.default_rng(0)
    M = (rng.random((CEILING_ROWS, CEILING_LEN), dtype=np.float32) - 0.5) * 1e-3
    v = np.full(CEILING_ROWS, 1e-3, np.float32)
    w = np.full(CEILING_ROWS, -1e-3, np.float32)
    acc = np.zeros(CEILING_LEN, np.float32)
    bcc = np.zeros(CEILING_LEN, np.float32)
    reps = 10000
    _ceiling(acc, bcc, M, v, w, 1)  # compile / load
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        _ceiling(acc, bcc, M, v, w, reps)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 2 * CEILING_ROWS * CEILING_LEN * reps / best / 1e9


@njit(cache=True, nogil=True, error_model="numpy")
def _ceiling(acc, bcc, M, v, w, reps):
    """``reps`` passes of the forward's multiply-add loop: acc += M^T v, bcc += M^T w."""
    for _ in range(reps):
        matvec_rows2(acc, bcc, M, v, w, 0, M.shape[0])
    return acc[0] + bcc[0]


# ---------------------------------------------------------------- batched training

BATCH_M = 16  # models per batched call: one vector block, the batched kernels' best size


def batched_epoch_time(H: int, kind: str = "teacher", epochs: int = 200, repeat: int = 3, M: int = BATCH_M,
                       B: int = B_DEFAULT, T: int = T_DEFAULT) -> float:
    """Seconds per epoch of ``M`` models trained together (:func:`ternq.multi.train_batch`, one thread),
    best of ``repeat``; the same model and settings as :func:`epoch_time`, one copy per lane."""
    from . import multi

    theta0, X, Y, student, tp = bench_inputs(H, kind, epochs, B, T)
    lane = bench_lane(student, kind == "distill")
    th = np.repeat(theta0[None], M, axis=0)
    teacher = np.repeat(tp[None], M, axis=0) if kind == "distill" else None

    def once(n):
        t0 = time.perf_counter()
        multi.train_batch(th, X[None, :n], Y[None, :n], [0] * M, (1, H, 1), [lane] * M, student=student,
                          teacher=teacher, chunks=1)
        return time.perf_counter() - t0

    once(2)  # compile / load
    return min(once(epochs) for _ in range(repeat)) / epochs


# ---------------------------------------------------------------- compile time

_COMPILE_SNIPPET = """
import sys, time
t0 = time.perf_counter()
from ternq.bench import bench_inputs, time_epochs, batched_epoch_time
if sys.argv[1] == "single":
    for kind in ("teacher", "distill"):
        th, X, Y, st, tp = bench_inputs(4, kind, 2, 2, 5)
        time_epochs(th, X, Y, st, tp, 4, 2)
else:
    batched_epoch_time(4, "distill", epochs=2, repeat=1, M=4, B=2, T=5)
print(time.perf_counter() - t0)
"""


def compile_times() -> dict[str, float]:
    """Seconds to import and run every training kernel once: cold (empty cache) and warm, for the
    single-model path and for the batched one (each in its own fresh cache)."""
    out = {}
    for path in ("single", "batched"):
        with tempfile.TemporaryDirectory(prefix="ternq-bench-cache-") as d:
            env = dict(os.environ, NUMBA_CACHE_DIR=d)
            for label in ("cold", "cached"):
                r = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET, path], env=env, capture_output=True,
                                   text=True, check=True)
                out[label if path == "single" else f"{label}_batched"] = float(r.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------- whole commands

def time_process(cmd: list[str], env: dict | None = None) -> dict[str, float]:
    """Wall and CPU seconds (user + system, of the process and the children it waited for) of one
    whole command, from the operating system's accounting (``os.wait4``); its output is discarded."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {tail[0][:200]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def spread(values) -> dict:
    """Median, minimum and maximum of some figures, and how many (empty for none)."""
    v = [float(x) for x in values]
    return {"median": float(np.median(v)), "min": min(v), "max": max(v), "n": len(v)} if v else {}


def ternq_command(*args: str) -> list[str]:
    """``ternq factorial ARGS -q`` as a child process of this interpreter."""
    return [sys.executable, "-m", "ternq", "factorial", *args, "-q"]


def bench_commands(runs: int = 3, c_ref: str | None = None, c_runs: int = 3, seeds10: bool = True,
                   cold: bool = True, progress=None) -> dict:
    """Whole-command timings, each a :func:`spread` of wall and CPU seconds.

    - ``seed0``: ``ternq factorial --seed 0 -q``, warm (after one untimed run that fills the cache);
    - ``c_ref`` (with ``c_ref``): the C program, its runs interleaved with ``seed0``'s
      (A B A B ...), and ``vs_c``: the ratios C / ternq pair by pair;
    - ``seeds10``: ``ternq factorial --seeds 0:10 -q``, warm, and its ratio to the C program's median;
    - ``cold``: ``ternq factorial --seed 0 -q`` with a fresh, empty ``NUMBA_CACHE_DIR`` each run.

    The C program's figures serve every comparison of this call (never another call's).
    """
    say = progress or (lambda s: None)
    out: dict = {"runs": runs}
    seed0 = ternq_command("--seed", "0")
    say("factorial --seed 0 (warm-up)")
    time_process(seed0)
    a, c = [], []
    for i in range(max(runs, c_runs if c_ref else 0)):
        if i < runs:
            say(f"factorial --seed 0, run {i + 1} of {runs}")
            a.append(time_process(seed0))
        if c_ref and i < c_runs:
            say(f"C program, run {i + 1} of {c_runs} (about a minute)")
            c.append(time_process([c_ref]))
    out["seed0"] = {k: spread(r[k] for r in a) for k in ("wall_s", "cpu_s")}
    if c_ref:
        out["c_ref"] = {"path": c_ref, **{k: spread(r[k] for r in c) for k in ("wall_s", "cpu_s")}}
        pairs = list(zip(a, c, strict=False))
        out["vs_c"] = {k: spread(rc[k] / ra[k] for ra, rc in pairs) for k in ("wall_s", "cpu_s")}
    if seeds10:
        cmd = ternq_command("--seeds", "0:10")
        say("factorial --seeds 0:10 (warm-up)")
        time_process(cmd)
        r = []
        for i in range(runs):
            say(f"factorial --seeds 0:10, run {i + 1} of {runs}")
            r.append(time_process(cmd))
        out["seeds10"] = {k: spread(x[k] for x in r) for k in ("wall_s", "cpu_s")}
        if c_ref:
            out["seeds10"]["vs_c_wall"] = spread(out["c_ref"]["wall_s"]["median"] / x["wall_s"] for x in r)
    if cold:
        r = []
        for i in range(runs):
            say(f"factorial --seed 0 with an empty Numba cache, run {i + 1} of {runs}")
            with tempfile.TemporaryDirectory(prefix="ternq-bench-cold-") as d:
                r.append(time_process(seed0, env=dict(os.environ, NUMBA_CACHE_DIR=d)))
        out["cold"] = {k: spread(x[k] for x in r) for k in ("wall_s", "cpu_s")}
    return out


def device_factorials(seeds: tuple[int, ...], devices: tuple[str, ...], runs: int = 1, workers: int | None = None,
                       progress=None) -> list[dict]:
    """Whole ``ternq factorial --seeds 0:N --device D -q`` commands, each device side by side: for every N of
    ``seeds`` and every device, one untimed run that fills the caches, then ``runs`` timed ones (a
    :func:`spread` of wall and CPU seconds). The CPU runs train ``workers`` units at once [every core]; the GPU
    runs keep the default workers, which feed its launches."""
    say = progress or (lambda s: None)
    cpu_workers = local_workers(workers)
    rows = []
    for n in seeds:
        for device in devices:
            extra = ("--workers", str(cpu_workers)) if device == "cpu" else ()
            cmd = ternq_command("--seeds", f"0:{n}", "--device", device, *extra)
            say(f"factorial --seeds 0:{n} --device {device} (warm-up)")
            time_process(cmd)
            r = []
            for i in range(runs):
                say(f"factorial --seeds 0:{n} --device {device}, run {i + 1} of {runs}")
                r.append(time_process(cmd))
            rows.append({"seeds": n, "device": device, "workers": cpu_workers if device == "cpu" else None,
                         **{k: spread(x[k] for x in r) for k in ("wall_s", "cpu_s")}})
    return rows


# ---------------------------------------------------------------- targets

TARGETS = (  # (figure, label, target, at least?): the speed targets
    ("seed0_vs_c_wall", "factorial --seed 0 warm vs C, wall (x)", 25.0, True),
    ("seed0_vs_c_cpu", "factorial --seed 0 warm vs C, CPU (x)", 15.0, True),
    ("seeds10_wall", "factorial --seeds 0:10 warm, wall (s)", 8.0, False),
    ("seeds10_vs_c_wall", "factorial --seeds 0:10 warm vs C's one seed, wall (x)", 5.0, True),
    ("batched_h16_gflops", "batched training H=16, GFLOP/s per core", 40.0, True),
    ("cold_wall", "first run, empty Numba cache, wall (s)", 15.0, False),
)


def targets(doc: dict) -> list[dict]:
    """Each speed target that ``doc`` has figures for: median, min, max and whether the median meets it.

    The batched H=16 figure spreads over the three kinds (teacher, student, distilled student).
    """
    got: dict = {}
    cmd = doc.get("commands", {})
    if "vs_c" in cmd:
        got["seed0_vs_c_wall"] = cmd["vs_c"]["wall_s"]
        got["seed0_vs_c_cpu"] = cmd["vs_c"]["cpu_s"]
    if "seeds10" in cmd:
        got["seeds10_wall"] = cmd["seeds10"]["wall_s"]
        got["seeds10_vs_c_wall"] = cmd["seeds10"].get("vs_c_wall")
    got["batched_h16_gflops"] = spread(r["gflops"] for r in doc.get("batched_rows", []) if r["hidden"] == 16)
    if "cold" in cmd:
        got["cold_wall"] = cmd["cold"]["wall_s"]
    out = []
    for key, label, target, at_least in TARGETS:
        s = got.get(key)
        if s:
            met = s["median"] >= target if at_least else s["median"] <= target
            out.append({"key": key, "label": label, "target": target, "at_least": at_least, **s, "met": met})
    return out


# ---------------------------------------------------------------- GPU against CPU

DEVICE_MODELS = {"cuda": (1, 16, 256, 1024, 4096, 16384), "cpu": (4, 16, 64)}
DEVICE_WIDTHS = (16, 32, 64)
DEVICE_T = 100  # the reference size: B_DEFAULT sequences of 100 steps, one input and output


def _device_problem(M: int, H: int, E: int, rng: np.random.Generator):
    t = np.arange(DEVICE_T + 1) * 0.1
    s = np.sin(t + rng.uniform(0, 2 * np.pi, (1, E, B_DEFAULT, 1)))
    X = np.ascontiguousarray(s[..., :-1, None], np.float32)
    Y = np.ascontiguousarray(s[..., 1:, None], np.float32)
    theta = rng.normal(0, 0.3, (M, n_params(1, H, 1))).astype(np.float32)
    otau = 2 * H * (1 + H) + 2 * H
    theta[:, otau:otau + H] = 1.0
    return X, Y, theta


def _device_call(device: str, M: int, H: int, E: int, rng: np.random.Generator) -> float:
    """Seconds of one call training M teachers for E epochs (the default settings), copies included: the
    GPU's one launch, or the CPU's batched kernel on this thread."""
    from . import gpu, multi

    X, Y, th = _device_problem(M, H, E, rng)
    train = gpu.train_batch if device == "cuda" else multi.train_batch
    lanes = [bench_lane(False, False)] * M
    t0 = time.perf_counter()
    train(th, X, Y, [0] * M, (1, H, 1), lanes, student=False)
    return time.perf_counter() - t0


def _device_point(device: str, M: int, H: int, rng, seconds: float, epochs: int | None = None) -> dict:
    if epochs is None:  # enough epochs for a call of about ``seconds``
        epochs = int(min(400, max(2, seconds / (_device_call(device, M, H, 2, rng) / 2))))
    s = statistics.median(_device_call(device, M, H, epochs, rng) for _ in range(3))
    return {"H": H, "models": M, "epochs": epochs, "seconds": s, "model_epochs_per_s": M * epochs / s,
            "gflops": flops_epoch(H, T=DEVICE_T) * M * epochs / s / 1e9}


def device_run(device: str, widths=DEVICE_WIDTHS, models=None, seconds: float = 0.5, progress=None) -> dict:
    """Teacher training throughput of one device: M teachers in one call for each width and M (the CPU: one
    core, its batched kernel), medians of 3 calls of about ``seconds``; and one teacher of the default epochs (the
    CPU: a quarter of a call of 4 models, and ``alone``, one model on the single-model path)."""
    if device not in DEVICE_MODELS:
        raise ValueError(f"device must be one of {', '.join(DEVICE_MODELS)}, not {device!r}")
    rng = np.random.default_rng(0)
    _device_call(device, 4, widths[0], 2, rng)  # compiles
    points = []
    for H in widths:
        for M in models or DEVICE_MODELS[device]:
            if progress:
                progress(f"{device}: H={H}, {M} models")
            points.append(_device_point(device, M, H, rng, seconds))
    from .train import TeacherConfig

    epochs = TeacherConfig().epochs
    if progress:
        progress(f"{device}: one teacher of {epochs} epochs")
    single = _device_point(device, 1 if device == "cuda" else 4, 32, rng, seconds, epochs=epochs)
    out = {"device": device, "batch": B_DEFAULT, "steps": DEVICE_T, "points": points}
    if device == "cpu":  # the batched CPU kernel runs a multiple of 4 models: the time of one of them
        out["single"] = dict(single, models=1, seconds=single["seconds"] / 4, note="4 models in one call, time / 4")
        # and one teacher as a user trains it alone: the single-model path
        _single_path(32, 2, rng)  # compiles
        s = statistics.median(_single_path(32, epochs, rng) for _ in range(3))
        out["alone"] = {"H": 32, "models": 1, "epochs": epochs, "seconds": s, "model_epochs_per_s": epochs / s,
                        "gflops": flops_epoch(32, T=DEVICE_T) * epochs / s / 1e9, "note": "the single-model path"}
    else:
        out["single"] = single
    return out


def _single_path(H: int, E: int, rng: np.random.Generator) -> float:
    """Seconds of one teacher of E epochs on the CPU's single-model path (this thread), on the devices' problem."""
    X, Y, th = _device_problem(1, H, E, rng)
    return time_epochs(th[0].copy(), X[0], Y[0], False, np.empty(0, np.float32), H, E)[0]


# ---------------------------------------------------------------- all together

def run(widths=WIDTHS, kinds=KINDS, budget: float = 0.25, compile: bool = True, factorial: bool = False,
        progress=None, batched_widths=(16, 32, 64), runs: int = 3, c_ref: str | None = None, c_runs: int = 3,
        seeds10: bool = True) -> dict:
    """Everything ``ternq bench`` reports, as a JSON-ready dict."""
    load_start = os.getloadavg()[0]  # a busy machine makes every figure slower: reported beside them
    ceilings = [ceiling_gflops()]  # the machine's speed drifts: sampled before, between and after the kernels
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
    ceilings.append(ceiling_gflops())
    brows = []
    for H in batched_widths:
        n = max(10, epochs_for(H, budget) // 4)
        for kind in kinds:
            if progress:
                progress(f"H={H} {kind}, {BATCH_M} models batched")
            s = batched_epoch_time(H, kind, epochs=n)
            single = next((r for r in rows if (r["hidden"], r["kind"]) == (H, kind)), None)
            brows.append({"hidden": H, "kind": kind, "models": BATCH_M, "epochs_timed": n,
                          "model_epochs_per_s": BATCH_M / s, "gflops": BATCH_M * flops_epoch(H, kind) / s / 1e9,
                          "vs_single": BATCH_M / s / single["epochs_per_s"] if single else None})
    if progress:
        progress("peak and ceiling")
    peak = peak_gflops()
    ceilings.append(ceiling_gflops())
    ceiling = max(ceilings)
    ff = flops_factorial()
    out = {"batch": B_DEFAULT, "steps": T_DEFAULT, "dtype": "float32", "threads": 1, "rows": rows,
           "batched_rows": brows, "peak_gflops": peak,
           "peak_method": "numpy float32 matmul 768x768, one BLAS thread",
           "ceiling_gflops": ceiling, "ceiling_samples": ceilings,
           "ceiling_method": f"the forward's multiply-add loop, {CEILING_ROWS} rows of {CEILING_LEN} in L1, one thread",
           "factorial_gflop": ff / 1e9, "factorial_floor_s": ff / (peak * 1e9),
           "seeds10_floor_2cores_s": 10 * ff / (2 * peak * 1e9),
           "factorial_floor_ceiling_s": ff / (ceiling * 1e9),
           "seeds10_floor_ceiling_2cores_s": 10 * ff / (2 * ceiling * 1e9)}
    est = _estimate_factorial(rows)
    if est is not None:
        out["factorial_estimate_1core_s"] = est
    if compile:
        if progress:
            progress("compile times")
        out["compile_s"] = compile_times()
    if factorial:
        out["commands"] = bench_commands(runs, c_ref, c_runs, seeds10, cold=compile, progress=progress)
    out["targets"] = targets(out)
    out["load_average"] = {"start": load_start, "end": os.getloadavg()[0], "cores": os.cpu_count()}
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
