"""The CUDA kernels against the CPU kernels, bit for bit: on a GPU at full size, elsewhere under
numba-cuda's simulator at tiny sizes (the simulator runs in a subprocess, as it must be chosen before
numba starts)."""

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba_cuda")

from numba import config, cuda  # noqa: E402

from ternq import gpu, multi  # noqa: E402
from ternq.config import load  # noqa: E402
from ternq.experiment.plans import plan  # noqa: E402
from ternq.experiment.run import run_experiment  # noqa: E402
from ternq.experiment.units import batch_key, on_gpu_group  # noqa: E402
from ternq.kernels import multi as KM  # noqa: E402
from ternq.kernels.cell import mse, n_params  # noqa: E402
from ternq.kernels.loop import select  # noqa: E402
from ternq.kernels.rollout import rollout  # noqa: E402
from ternq.kernels.ternary import MASK_NONE, MASK_NOTES, MASK_REFERENCE, n_scales  # noqa: E402
from ternq.multi import Lane  # noqa: E402
from ternq.settings import MASKS, SCHEDULES  # noqa: E402
from ternq.train import StudentConfig, TeacherConfig, loop_of  # noqa: E402

SIMULATED = bool(config.ENABLE_CUDASIM)
ON_DEVICE = SIMULATED or gpu.available()
needs_device = pytest.mark.skipif(not ON_DEVICE, reason="no GPU and not under the simulator")

# tiny under the simulator (it runs every thread as a Python thread), the reference size on a GPU
if SIMULATED or not ON_DEVICE:
    N_IN, H, N_OUT, B, T, E, M, THREADS = 1, 4, 1, 2, 3, 3, 4, 4
else:  # pragma: no cover - on a GPU
    N_IN, H, N_OUT, B, T, E, M, THREADS = 1, 32, 1, 10, 100, 30, 16, None
DT = 0.1
D = 2


@pytest.mark.skipif(SIMULATED or gpu.available(), reason="runs the simulator where there is no GPU")
def test_simulator():
    """This file's tests under the simulator, in a subprocess."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-x", "-p", "no:cacheprovider", __file__]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and " skipped" in r.stdout  # test_simulator itself is skipped there


def _data(rng):
    t = np.arange(T + 1) * DT
    X = np.empty((D, E, B, T, N_IN), np.float32)
    Y = np.empty((D, E, B, T, N_OUT), np.float32)
    for d in range(D):
        ph = rng.uniform(0, 2 * np.pi, (E, B, 1))
        s = np.sin((d + 1) * t[None, None, :] + ph)
        X[d] = s[..., :-1, None]
        Y[d] = s[..., 1:, None]
    return X, Y


def _theta(rng, student):
    pe = n_params(N_IN, H, N_OUT)
    th = (rng.normal(0, 0.4, (M, pe))).astype(np.float32)
    z = N_IN + H
    otau = 2 * H * z + 2 * H
    th[:, otau:otau + H] = rng.uniform(0.5, 2.0, (M, H))
    if student:
        th = np.concatenate([th, rng.uniform(0.2, 0.6, (M, n_scales(N_IN, H, N_OUT))).astype(np.float32)], axis=1)
    return th


def _both(student, settings, teacher=None, big_lr=False, threads=THREADS):
    """Train on the GPU and with the batched CPU kernel from the same start; return both results."""
    settings = {k: np.resize(np.asarray(v), M) for k, v in settings.items()}  # the 4 kinds repeated
    rng = np.random.default_rng(7)
    X, Y = _data(rng)
    theta = _theta(rng, student)
    if big_lr:
        theta[1, 0] = np.nan  # this model's loss is NaN: it must freeze where the CPU freezes it
    data = np.arange(M) % D
    # GPU, model index first
    g_theta, g_m, g_v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    g_l, g_s = np.full((M, E), np.nan), np.full((M, E), np.nan)
    g_bad = np.full(M, -1, np.int64)
    gpu.train_epochs(g_theta, g_m, g_v, X, Y, data, 0, 1, E, N_IN, H, N_OUT, DT, student, teacher=teacher,
                     losses=g_l, mses=g_s, bad=g_bad, threads=threads, **settings)
    gpu.train_epochs(g_theta, g_m, g_v, X, Y, data, 1, E, E, N_IN, H, N_OUT, DT, student, teacher=teacher,
                     losses=g_l, mses=g_s, bad=g_bad, threads=threads, **settings)
    # CPU: the batched kernel on the same models, M padded to whole vectors of its lanes
    kinds = {v: k for k, v in SCHEDULES.items()}
    masks = {v: k for k, v in MASKS.items() if v != MASK_NONE}
    lanes = []
    for k in range(M):
        one = {name: v[k] for name, v in settings.items()}
        extra = {}
        if student:
            extra = dict(mask=masks.get(int(one["mask_kind"])), beta=(one["beta0"], one["beta1"]),
                         alpha=(one["alpha0"], one["alpha1"]), distill=bool(one["distill"]))
        lanes.append(Lane(float(one["lr"]), float(one["lr_min"]), kinds[int(one["lr_kind"])], float(one["clip"]),
                          **extra))
    Mp = -(-M // KM.LANES) * KM.LANES
    pad = np.concatenate([np.arange(M), np.zeros(Mp - M, int)])
    loop = select(loop_of(lanes, (N_IN, H, N_OUT), E, student), pad)
    c_theta = np.ascontiguousarray(theta[pad])
    c_m, c_v = np.zeros_like(c_theta), np.zeros_like(c_theta)
    c_teacher = np.ascontiguousarray(teacher[pad].T) if teacher is not None else np.zeros((0, Mp), np.float32)
    c_thr = np.zeros((Mp, n_scales(N_IN, H, N_OUT)), np.float32)
    c_l, c_s = np.full((E, Mp), np.nan), np.full((E, Mp), np.nan)
    c_bad = np.full(Mp, -1, np.int64)
    KM.train_epochs(c_theta, c_m, c_v, X, Y, data[pad], 0, E, loop, c_teacher, c_thr, c_l, c_s, c_bad)
    gpu_res = (g_theta, g_m, g_v, g_l, g_s, g_bad)
    cpu_res = (c_theta[:M], c_m[:M], c_v[:M], c_l.T[:M], c_s.T[:M], c_bad[:M])
    return gpu_res, cpu_res


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # NaN == NaN here; every other value bit for bit
        assert np.array_equal(np.asarray(x).view(np.uint8), np.ascontiguousarray(y).view(np.uint8))


TEACHERS = dict(lr=[0.01, 0.003, 0.02, 0.005], lr_min=[0.0, 0.0, 0.001, 0.0], lr_kind=[1, 0, 1, 1],
                clip=[1.0, 0.05, 10.0, 0.5])


@needs_device
def test_teachers_bit_identical_to_the_cpu():
    g, c = _both(False, TEACHERS)
    _same(g, c)
    assert np.isfinite(g[3]).all() and (g[5] == -1).all()
    assert (g[3][:, -1] < g[3][:, 0]).any()  # it learns


@needs_device
def test_students_every_mask_and_distillation_bit_identical_to_the_cpu():
    rng = np.random.default_rng(3)
    teacher = _theta(rng, False)
    settings = dict(TEACHERS, mask_kind=[MASK_NONE, MASK_NOTES, MASK_REFERENCE, MASK_NOTES],
                    distill=[False, True, False, True], alpha0=0.3, alpha1=0.8, beta0=[1.0, 2.0, 3.0, 2.0],
                    beta1=[5.0, 8.0, 6.0, 2.0])
    g, c = _both(True, settings, teacher=teacher, threads=THREADS or 96)  # 96: several units per thread
    _same(g, c)
    assert np.isfinite(g[3]).all()


@needs_device
@pytest.mark.parametrize("spare", [0, 1])
def test_one_or_two_sequences_a_thread_are_the_same_bits(spare):
    """A block with a thread for every (sequence, unit) gives each thread one sequence; one thread fewer, and
    threads take two: the forward, BPTT and the teacher's forward give the CPU's bits either way."""
    rng = np.random.default_rng(5)
    teacher = _theta(rng, False)
    settings = dict(TEACHERS, mask_kind=MASK_NOTES, distill=True, alpha0=0.3, alpha1=0.8, beta0=1.0, beta1=5.0)
    g, c = _both(True, settings, teacher=teacher, threads=B * H - spare)
    _same(g, c)
    assert np.isfinite(g[3]).all()


@needs_device
def test_the_trajectory_sum_by_a_spare_warp_during_bptt_is_the_same_bits():
    """Where a block has a warp with no unit in BPTT and no tau sum, that warp adds the trajectory term's squares
    during BPTT: the loss and every weight are the CPU's bits."""
    from ternq.kernels import cuda as K

    rng = np.random.default_rng(11)
    teacher = _theta(rng, False)
    settings = dict(TEACHERS, mask_kind=MASK_NOTES, distill=[True, False, True, True], alpha0=0.3, alpha1=0.8,
                    beta0=1.0, beta1=5.0)
    threads = 96 if SIMULATED else 512  # units on 8 (320) threads, the spare warp at 32 (320), tau sums at 92 (480)
    assert (-(-B * H // 32) * 32 + 32) <= threads - H
    g, c = _both(True, settings, teacher=teacher, threads=threads)
    _same(g, c)
    assert np.isfinite(g[3]).all()
    assert K.RED >= 64  # the warp's two buffers of 32 terms


@needs_device
def test_the_warps_trajectory_sum_is_the_blocks_over_several_chunks():
    """The spare warp's sum of a step's terms, chunk after chunk of 32 (three here, the last short), is the bits
    of the block's ordered sum, with per-unit weights."""
    from ternq.kernels import cuda as K

    hidden, n = 5, 85  # 17 rows of 5 units
    rng = np.random.default_rng(2)
    hs = rng.normal(0, 1, 2 * n).astype(np.float32)
    ht = rng.normal(0, 1, 2 * n).astype(np.float32)
    w = rng.uniform(0.5, 2.0, hidden).astype(np.float32)
    out = np.zeros(2)

    @cuda.jit
    def both(hs, ht, w, out):
        sd = cuda.shared.array(2 * K.RED + 8, np.float64)
        tid = cuda.threadIdx.x
        block = K._traj_sum(hs, ht, n, n, hidden, w, sd, tid, cuda.blockDim.x)
        if tid == 0:
            out[0] = block
        cuda.syncthreads()
        total = 0.0
        if tid >= 32:
            total = K._traj_rows(total, hs, ht, n, n, hidden, w, sd, tid - 32)
        if tid == 32:
            out[1] = total

    both[1, 64](hs, ht, w, out)
    d = (hs[n:] - ht[n:]).astype(np.float64)  # the difference in float32, its square in float64
    e = d * d * np.resize(w, n).astype(np.float64)
    expect = 0.0
    for x in e:  # the CPU's order
        expect += x
    assert out[0] == expect and out[1] == expect


@needs_device
def test_a_diverging_model_freezes_where_the_cpu_freezes_it():
    g, c = _both(False, TEACHERS, big_lr=True)
    _same(g, c)
    assert g[5][1] == 0 and (np.delete(g[5], 1) == -1).all()


@needs_device
def test_rollouts_and_held_out_mse_bit_identical_to_the_cpu():
    rng = np.random.default_rng(5)
    X, Y = _data(rng)
    p = _theta(rng, False)
    data = np.arange(M) % D
    hs, ys, m = gpu.rollout(p, X[:, 0], data, N_IN, H, N_OUT, DT, Y=Y[:, 0], threads=THREADS)
    free = 4
    fhs, fys = gpu.rollout(p, X[:, 0], data, N_IN, H, N_OUT, DT, free=free, threads=THREADS)
    for k in range(M):
        x, y = X[data[k], 0], Y[data[k], 0]
        assert m[k] == mse(p[k], x, y, N_IN, H, N_OUT, DT)
        chs = np.empty((T + free + 1, B, H), np.float32)
        cys = np.empty((T + free, B, N_OUT), np.float32)
        rollout(p[k], x, N_IN, H, N_OUT, DT, free, chs, cys)
        _same((fhs[k], fys[k], hs[k], ys[k]), (chs, cys, chs[: T + 1], cys[:T]))


@needs_device
def test_a_launch_is_announced_to_the_work_that_waits_for_it(monkeypatch):
    """The engine's baselines wait for the process's first launch: a launch, and only a launch, announces it."""
    import threading

    monkeypatch.setattr(gpu, "_LAUNCHED", threading.Event())
    rng = np.random.default_rng(6)
    X, _ = _data(rng)
    p = _theta(rng, False)
    assert not gpu.launched(0)
    gpu.rollout(p[:0], X[:, 0], [], N_IN, H, N_OUT, DT, threads=THREADS)  # no models: nothing is launched
    assert not gpu.launched(0)
    gpu.rollout(p[:1], X[:, 0], [0], N_IN, H, N_OUT, DT, threads=THREADS)
    assert gpu.launched(0)


@needs_device
def test_a_launch_of_few_models_raises_no_occupancy_warning(monkeypatch):
    """numba-cuda warns of grids under 128 blocks; one block per model makes small grids by design, and a user's
    command should not print that warning at every launch."""
    import warnings

    from ternq.kernels import cuda as K

    real = K.rollout_kernel

    class Warns:  # numba-cuda's launch configuration, which warns as it is built
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, config):
            msg = f"Grid size {config[0]} will likely result in GPU under-utilization due to low occupancy."
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            warnings.warn(f"\x1b[1m{msg}\x1b[0m", RuntimeWarning, stacklevel=2)  # in bold, as numba prints it on a GPU
            return self.kernel[config]

    monkeypatch.setattr(K, "rollout_kernel", lambda nt, shared: Warns(real(nt, shared)))
    rng = np.random.default_rng(7)
    X, _ = _data(rng)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gpu.rollout(_theta(rng, False)[:1], X[:, 0], [0], N_IN, H, N_OUT, DT, threads=THREADS)
        warnings.warn("a warning of the caller's own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a warning of the caller's own"]


@needs_device
def test_a_command_for_the_gpu_starts_its_context_at_once(monkeypatch):
    """check_device("cuda") starts creating the CUDA context on a thread of its own, so that the driver's work
    overlaps the CPU's before the first launch."""
    import threading

    from numba import cuda

    from ternq.experiment.run import check_device

    made = threading.Event()
    monkeypatch.setattr(cuda, "current_context", lambda: made.set())
    monkeypatch.setattr(gpu, "_USED", threading.Event())  # as in a process that has not used the GPU yet
    assert check_device("cpu") == "cpu" and not made.wait(0.2)
    assert check_device("cuda", launches_here=False) == "cuda" and not made.wait(0.2)  # a Dask cluster's run
    assert check_device("cuda") == "cuda"
    assert made.wait(5)


def _types(args):
    """What numba-cuda types a launch's arguments by: each array's dtype, rank and whether a stride is 0 (layout
    'A', not 'C'), each scalar's type."""
    return tuple((str(a.dtype), a.ndim, 0 in a.strides and a.size > 0) if hasattr(a, "strides")
                 else type(a).__name__ for a in args)


@needs_device
def test_a_launch_of_one_model_has_the_argument_types_of_any_other(monkeypatch):
    """One model's settings, broadcast from scalars, must reach the kernel as real arrays: a zero stride types as
    layout 'A', a kernel specialization of its own that a one-model command would compile and load apart."""
    seen = []
    monkeypatch.setattr(gpu, "_launch", lambda kernel, config, args: seen.append((kernel, config[1], _types(args))))
    rng = np.random.default_rng(5)
    X, Y = _data(rng)
    theta = _theta(rng, False)
    for m in (1, 2):
        gpu.train_batch(theta[:m], X, Y, np.arange(m) % D, (N_IN, H, N_OUT), [Lane()] * m, student=False)
        gpu.rollout(theta[:m], X[:, 0], np.arange(m) % D, N_IN, H, N_OUT, DT, Y=Y[:, 0])
    assert not any(flat for _, _, types in seen for t in types if isinstance(t, tuple) for flat in t[2:])
    assert seen[0] == seen[2] and seen[1] == seen[3]


@needs_device
def test_the_kernel_loaded_ahead_is_the_one_the_launch_uses(monkeypatch):
    """gpu._load, which prepare runs for the first launches, asks for the launch's own kernel and argument types:
    otherwise the launch would load (or compile) another."""
    seen, loaded = [], []
    monkeypatch.setattr(gpu, "_launch", lambda kernel, config, args: seen.append((kernel, config[1], _types(args))))
    monkeypatch.setattr(gpu, "_bind", lambda kernel, config, args: loaded.append((kernel, config[1], _types(args))))
    rng = np.random.default_rng(6)
    X, Y = _data(rng)
    theta = _theta(rng, False)
    for m in (1, M):
        gpu.train_batch(theta[:m], X, Y, np.arange(m) % D, (N_IN, H, N_OUT), [Lane()] * m, student=False)
        gpu._load(m, B, N_IN, H, N_OUT)
    student = _theta(rng, True)
    lanes = [Lane(distill=True, alpha=(0.3, 0.6), mask="seed", beta=(1.0, 4.0))] * M
    gpu.train_batch(student, X, Y, np.arange(M) % D, (N_IN, H, N_OUT), lanes, student=True, teacher=theta)
    assert loaded == seen[:2] and seen[2] == seen[1]


@needs_device
def test_prepare_loads_the_kernel_of_each_first_launch_once(monkeypatch):
    """check_device("cuda") hands prepare the launches the run starts with (its trainings that need no other's
    model, one launch of each shape), and prepare loads each distinct one once, on its thread."""
    import threading
    import time

    from ternq.experiment.run import check_device

    asked, loaded, done = [], [], threading.Event()
    monkeypatch.setattr("ternq.experiment.run.gpu_prepare", lambda launches: asked.append(sorted(launches)))
    settings = replace(load(None), seeds=(0, 1, 2))
    check_device("cuda", [settings], launches=[(1, 10, 1, 8, 1)])
    # per width: three teachers in one launch, three equal-budget floats in another
    assert asked == [sorted([(1, 10, 1, 8, 1), (3, 10, 1, 16, 1), (3, 10, 1, 16, 1), (3, 10, 1, 32, 1),
                             (3, 10, 1, 32, 1)])]
    monkeypatch.setattr(gpu, "_load", lambda *shape: (loaded.append(shape), len(loaded) == 3 and done.set()))
    monkeypatch.setattr(gpu, "_PREPARED", set())
    gpu.prepare(asked[0])
    assert done.wait(5) and sorted(loaded) == [(1, 10, 1, 8, 1), (3, 10, 1, 16, 1), (3, 10, 1, 32, 1)]
    gpu.prepare([(3, 10, 1, 16, 1)])  # the engine's own check after the command's: nothing loaded twice
    gpu.prepare([(3, 10, 1, 16, 1), (2, 10, 1, 16, 1)])
    time.sleep(0.5)
    assert sorted(loaded) == [(1, 10, 1, 8, 1), (2, 10, 1, 16, 1), (3, 10, 1, 16, 1), (3, 10, 1, 32, 1)]


def test_no_gpu_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(gpu, "available", lambda: False)
    with pytest.raises(gpu.GPUUnavailable, match="no GPU"):
        gpu.rollout(np.zeros((1, n_params(1, 4, 1)), np.float32), np.zeros((1, 1, 1, 1), np.float32), [0], 1, 4, 1,
                    0.1)


@needs_device
def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="float32"):
        gpu.rollout(np.zeros((1, n_params(1, 4, 1))), np.zeros((1, 1, 1, 1), np.float32), [0], 1, 4, 1, 0.1)
    with pytest.raises(ValueError, match="free"):
        gpu.rollout(np.zeros((1, n_params(2, 4, 1)), np.float32), np.zeros((1, 1, 1, 2), np.float32), [0], 2, 4, 1,
                    0.1, free=3)
    pe = n_params(1, 4, 1)
    theta = np.zeros((1, pe + n_scales(1, 4, 1)), np.float32)
    X, Y = np.zeros((1, 1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1, 1), np.float32)
    common = dict(lr=0.01, lr_min=0.0, lr_kind=0, clip=1.0, losses=np.zeros((1, 1)), mses=np.zeros((1, 1)),
                  bad=np.full(1, -1, np.int64))
    with pytest.raises(ValueError, match="teacher"):  # the output share runs the teacher too
        gpu.train_epochs(theta, np.zeros_like(theta), np.zeros_like(theta), X, Y, [0], 0, 1, 1, 1, 4, 1, 0.1, True,
                         distill_output=0.5, **common)
    with pytest.raises(ValueError, match="distill_hidden"):
        gpu.train_epochs(theta, np.zeros_like(theta), np.zeros_like(theta), X, Y, [0], 0, 1, 1, 1, 4, 1, 0.1, True,
                         distill_hidden=np.ones((3, 1)), **common)


@needs_device
def test_train_batch_is_the_cpu_train_batch():
    """The typed wrapper: Lanes in, BatchResult out, as ternq.multi.train_batch."""
    from ternq.multi import Lane, train_batch

    rng = np.random.default_rng(11)
    X, Y = _data(rng)
    theta = _theta(rng, True)
    teacher = _theta(rng, False)
    lanes = [Lane(lr=0.01, mask="seed", beta=(1.0, 4.0)), Lane(lr=0.005, schedule="constant", clip=0.1),
             Lane(mask="reference", beta=(2.0, 6.0), alpha=(0.3, 0.8), distill=True),
             Lane(distill=True, alpha=(0.5, 0.5))]
    lanes = [lanes[k % 4] for k in range(M)]
    data = np.arange(M) % D
    g = gpu.train_batch(theta, X, Y, data, (N_IN, H, N_OUT), lanes, student=True, teacher=teacher, threads=THREADS)
    c = train_batch(theta, X, Y, data, (N_IN, H, N_OUT), lanes, student=True, teacher=teacher)
    _same((g.theta, g.losses, g.mses, g.diverged), (c.theta, c.losses, c.mses, c.diverged))


@needs_device
def test_an_odd_width_and_batch_with_several_channels_is_the_cpus():
    """An odd width and an odd number of sequences (the kernel pairs recurrent columns and sequences: the middle
    ones have no partner) with two inputs and two outputs: teachers, and students distilled from them, as
    multi.train_batch's; under the simulator with few threads, each of which takes several units."""
    from ternq.kernels.ternary import init_scales
    from ternq.multi import Lane, train_batch

    dims = n_in, hidden, n_out = 2, H + 1, 2
    threads = 2 if SIMULATED else THREADS
    rng = np.random.default_rng(43)
    X = rng.normal(0, 1, (D, E, B + 1, T, n_in)).astype(np.float32)
    Y = np.tanh(X[..., ::-1]).astype(np.float32)
    pe = n_params(*dims)
    theta = rng.normal(0, 0.4, (M, pe)).astype(np.float32)
    otau = 2 * hidden * (n_in + hidden) + 2 * hidden
    theta[:, otau:otau + hidden] = rng.uniform(0.5, 2.0, (M, hidden))
    data = np.arange(M) % D
    lanes = [Lane(lr=0.01 * (1 + k % 3)) for k in range(M)]
    g = gpu.train_batch(theta, X, Y, data, dims, lanes, student=False, threads=threads)
    c = train_batch(theta, X, Y, data, dims, lanes, student=False)
    _same((g.theta, g.losses, g.mses, g.diverged), (c.theta, c.losses, c.mses, c.diverged))
    lanes = [Lane(lr=0.02, mask="seed", beta=(1.0, 4.0), distill=k % 2 == 1, alpha=(0.3, 0.6)) for k in range(M)]
    student = np.concatenate([g.theta, np.zeros((M, n_scales(*dims)), np.float32)], axis=1)
    for k in range(M):
        init_scales(student[k], *dims, 0, *lanes[k].scale_rows(dims))
    gs = gpu.train_batch(student, X, Y, data, dims, lanes, student=True, teacher=g.theta, threads=threads)
    cs = train_batch(student, X, Y, data, dims, lanes, student=True, teacher=g.theta)
    _same((gs.theta, gs.losses, gs.mses, gs.diverged), (cs.theta, cs.losses, cs.mses, cs.diverged))
    assert np.isfinite(gs.losses).all() and not np.array_equal(gs.theta, student)


def _start(rng, lanes, teacher=True):
    """For students of ``lanes`` (any count): the data, their starts (:func:`_formats_theta`), teachers (or None)
    and each model's data set."""
    X, Y = _data(rng)
    n = len(lanes)
    theta = np.concatenate([_formats_theta(rng, lanes[i:i + M]) for i in range(0, n, M)])[:n]
    tp = np.concatenate([_theta(rng, False) for _ in range(0, n, M)])[:n] if teacher else None
    return X, Y, theta, tp, np.arange(n) % D


def _students_as_cpu(theta, X, Y, data, lanes, teacher=None):
    """Students trained on the GPU and by multi.train_batch from the same start: the GPU's result and the CPU's,
    asserted the same bits (theta, losses, mses, divergence, thresholds) and finite."""
    from ternq.multi import train_batch

    g = gpu.train_batch(theta, X, Y, data, (N_IN, H, N_OUT), lanes, student=True, teacher=teacher, threads=THREADS)
    c = train_batch(theta, X, Y, data, (N_IN, H, N_OUT), lanes, student=True, teacher=teacher)
    _same((g.theta, g.losses, g.mses, g.diverged, g.thresholds),
          (c.theta, c.losses, c.mses, c.diverged, c.thresholds))
    assert np.isfinite(g.losses).all()
    return g, c


def _formats_theta(rng, lanes):
    """Students whose scales start as the CPU starts them for each lane's format (ternary.init_scales), and
    some weights a whole number of scales apart, at the boundaries where the formats round or clip."""
    from ternq.kernels.ternary import init_scales

    theta = _theta(rng, True)
    pe = n_params(N_IN, H, N_OUT)
    for k, lane in enumerate(lanes):
        init_scales(theta[k], N_IN, H, N_OUT, 0, *lane.scale_rows((N_IN, H, N_OUT)))
        s = theta[k, pe]  # row 0's scale: its first weights at exact halves and beyond the largest level
        theta[k, 0:3] = np.float32([0.5, -1.5, 200.0]) * s
    return theta


@needs_device
def test_every_weight_format_in_one_launch_bit_identical_to_the_cpu():
    """Ternary, binary, int2, int4 and int8 students, each mask, some distilled, in one launch: theta, losses,
    mses, divergence and thresholds as multi.train_batch's."""

    kinds = [("binary", None), ("int8", "seed"), ("int4", "reference"), ("ternary", "seed"), ("int2", None),
             ("binary", "reference"), ("int8", None), ("binary", "seed")]
    lanes = [Lane(lr=0.02, mask=mask, beta=(1.0 + k % 3, 6.0), weight_format=fmt, distill=k % 2 == 1,
                  alpha=(0.3, 0.6), schedule="cosine" if k % 3 else "constant")
             for k, (fmt, mask) in enumerate(kinds[k % len(kinds)] for k in range(max(M, len(kinds))))]
    rng = np.random.default_rng(13)
    X, Y, theta, teacher, data = _start(rng, lanes)
    g, c = _students_as_cpu(theta, X, Y, data, lanes, teacher)
    assert not np.array_equal(g.theta, theta)  # it trained


@needs_device
def test_schedules_output_weight_and_float_matrices_bit_identical_to_the_cpu():
    """Alpha schedules (early: the trajectory term stops mid-training), the output term's weight, beta
    schedules and rows kept in float, each model its own, several formats, in one launch."""

    kinds = [dict(alpha_schedule="early", alpha_until=0.5, distill=True, weight_format="int4", mask="seed"),
             dict(alpha_schedule="falling", output_weight="1", distill=True, beta_schedule="geometric",
                  mask="seed", float_matrices="gate"),
             dict(alpha_schedule="constant", distill=True, beta_schedule="cosine", mask="reference",
                  float_matrices="out", weight_format="binary"),
             dict(float_matrices="cand", weight_format="int8", mask="reference", beta_schedule="geometric")]
    lanes = [Lane(lr=0.02, alpha=(0.4, 0.1), beta=(1.5, 6.0), **kinds[k % len(kinds)]) for k in range(M)]
    rng = np.random.default_rng(17)
    X, Y, theta, teacher, data = _start(rng, lanes)
    g, c = _students_as_cpu(theta, X, Y, data, lanes, teacher)
    pe = n_params(N_IN, H, N_OUT)
    assert (g.theta[1, pe:pe + H] == theta[1, pe:pe + H]).all()  # the float gate rows' scales never move


@needs_device
def test_progressive_quantization_and_the_frozen_fine_tune_bit_identical_to_the_cpu():
    """Progressive quantization (each model its own row order and share) and the fine-tune with the levels
    frozen (its own rate), with several formats and rows kept in float, in one launch: theta, losses,
    mses and the frozen levels' thresholds as multi.train_batch's."""

    rows = n_scales(N_IN, H, N_OUT)
    order = np.random.default_rng(19).permutation(rows)
    kinds = [dict(progressive=1.0, row_rank=order, weight_format="int4", mask="seed"),
             dict(finetune_epochs=1, finetune_lr=0.05, weight_format="binary", mask="reference"),
             dict(progressive=1.0, finetune_epochs=1, finetune_lr=0.03, float_matrices="out", mask="seed"),
             dict(progressive=0.6, row_rank=order[::-1].copy(), finetune_epochs=1, weight_format="int8",
                  distill=True, alpha=(0.5, 0.2))]
    lanes = [Lane(lr=0.02, beta=(1.5, 6.0), finetune_epochs=1 if k % 2 else 0, **kinds[k % len(kinds)])
             if "finetune_epochs" not in kinds[k % len(kinds)] else Lane(lr=0.02, beta=(1.5, 6.0), **kinds[k % 4])
             for k in range(M)]
    lanes = [ln if ln.finetune_epochs else replace(ln, finetune_epochs=1) for ln in lanes]  # one fine-tune for all
    lanes[0] = replace(lanes[0], finetune_epochs=1)
    rng = np.random.default_rng(23)
    X, Y, theta, teacher, data = _start(rng, lanes)
    g, c = _students_as_cpu(theta, X, Y, data, lanes, teacher)
    assert (g.thresholds > 0).all()  # the fine-tune froze every model's levels


@needs_device
def test_mixed_formats_bit_identical_to_the_cpu():
    """Each matrix in its own format (its scales at their format's rate), beside single-format models, with
    progressive quantization and the fine-tune, in one launch: the same bits as multi.train_batch."""

    order = np.random.default_rng(29).permutation(n_scales(N_IN, H, N_OUT))
    kinds = [dict(weight_format_cand="int8"),
             dict(weight_format_gate="int4", weight_format_out="binary", progressive=1.0, row_rank=order),
             dict(weight_format="int4", weight_format_cand="ternary", mask="seed"),
             dict(weight_format="int8", mask="reference")]
    lanes = [Lane(lr=0.03, beta=(1.5, 6.0), finetune_epochs=1, **kinds[k % len(kinds)]) for k in range(M)]
    rng = np.random.default_rng(31)
    X, Y, theta, _, data = _start(rng, lanes, teacher=False)
    g, c = _students_as_cpu(theta, X, Y, data, lanes)
    pe = n_params(N_IN, H, N_OUT)
    assert not np.array_equal(g.theta[0, pe + H:pe + 2 * H], theta[0, pe + H:pe + 2 * H])  # the int8 scales moved


@needs_device
def test_float_columns_bit_identical_to_the_cpu():
    """W's input or recurrent columns kept in float (the rest of each row quantized and scaled), with
    progressive quantization, LSQ, Adam's restart, several formats and the fine-tune, in one launch: the same
    bits as multi.train_batch; the float columns trained."""

    order = np.random.default_rng(43).permutation(n_scales(N_IN, H, N_OUT))
    kinds = [dict(float_matrices="input", progressive=1.0, row_rank=order, mask="seed"),
             dict(float_matrices="recurrent", scale_mode="lsq", weight_format="int4", mask="reference"),
             dict(float_matrices="input", weight_format="int8", adam_restart=True, progressive=0.6),
             dict(float_matrices="recurrent", distill=True, alpha=(0.4, 0.2), mask="seed")]
    lanes = [Lane(lr=0.03, beta=(1.5, 6.0), finetune_epochs=1, finetune_lr=0.02, **kinds[k % len(kinds)])
             for k in range(M)]
    rng = np.random.default_rng(47)
    X, Y, theta, teacher, data = _start(rng, lanes)
    g, c = _students_as_cpu(theta, X, Y, data, lanes, teacher)
    z = N_IN + H
    W = g.theta[:, : 2 * H * z].reshape(-1, 2 * H, z)
    start = theta[:, : 2 * H * z].reshape(-1, 2 * H, z)
    assert not np.array_equal(W[0, :, :N_IN], start[0, :, :N_IN])  # the float input columns trained
    assert not np.array_equal(W[1, :, N_IN:], start[1, :, N_IN:])  # and the float recurrent ones


@needs_device
def test_adam_restarted_at_joins_bit_identical_to_the_cpu():
    """Adam's moments and step count restarted for each scale at its row's join and for every parameter at the
    fine-tune (loop.adam_joins), beside models without the restart, in one launch: the CPU's bits."""

    order = np.random.default_rng(37).permutation(n_scales(N_IN, H, N_OUT))
    kinds = [dict(adam_restart=True, progressive=1.0, row_rank=order),
             dict(adam_restart=True, weight_format="int4", float_matrices="gate", progressive=1.0),
             dict(adam_restart=True, weight_format_cand="int8", mask="seed"),
             dict(progressive=1.0, row_rank=order)]
    lanes = [Lane(lr=0.03, beta=(1.5, 6.0), finetune_epochs=1, finetune_lr=0.02, **kinds[k % len(kinds)])
             for k in range(M)]
    rng = np.random.default_rng(41)
    X, Y, theta, _, data = _start(rng, lanes, teacher=False)
    g, c = _students_as_cpu(theta, X, Y, data, lanes)
    plain = gpu.train_batch(theta, X, Y, data, (N_IN, H, N_OUT), [replace(ln, adam_restart=False) for ln in lanes],
                            student=True, threads=THREADS)
    assert not np.array_equal(plain.theta[0], g.theta[0])  # the restart changed the training


@needs_device
def test_output_and_hidden_distillation_bit_identical_to_the_cpu():
    """The teacher's share in the output target (with and without the trajectory term: the teacher runs
    for either) and the trajectory term's per-unit weights, each model its own, beside a model with
    neither, all with a fine-tune (which turns both off), in one launch: as multi.train_batch's bits."""
    from ternq.multi import train_batch

    rng = np.random.default_rng(29)
    kinds = [dict(distill_output=0.6, weight_format="int4"),
             dict(distill=True, alpha=(0.5, 0.2), distill_output=0.3, distill_hidden=rng.uniform(0.1, 3.0, H)),
             dict(distill=True, alpha=(0.4, 0.4), distill_hidden=rng.uniform(0.1, 3.0, H), mask="reference"),
             dict(weight_format="binary")]
    lanes = [Lane(lr=0.02, beta=(1.5, 6.0), mask="seed", finetune_epochs=1, finetune_lr=0.03)] * M
    lanes = [replace(ln, **kinds[k % len(kinds)]) for k, ln in enumerate(lanes)]
    X, Y, theta, teacher, data = _start(rng, lanes)
    g, c = _students_as_cpu(theta, X, Y, data, lanes, teacher)
    # the settings change the training: without them the same models end elsewhere
    plain = [replace(ln, distill_output=0.0, distill_hidden=None) for ln in lanes]
    p = train_batch(theta, X, Y, data, (N_IN, H, N_OUT), plain, student=True, teacher=teacher)
    for k in range(3):
        assert (p.losses[k] != c.losses[k]).any()


@needs_device
@pytest.mark.parametrize("fine_tune", [1, 0])
def test_the_scale_modes_bit_identical_to_the_cpu(fine_tune):
    """Learned scales, LSQ's gradient and the scales recomputed every epoch (absmean; TWN with its per-row
    thresholds), each model its own, with several formats, progressive quantization and the frozen fine-tune
    (whose first epoch recomputes the scales before it bakes the levels), in one launch: theta, losses, mses
    and thresholds as multi.train_batch's."""

    rows = n_scales(N_IN, H, N_OUT)
    order = np.random.default_rng(29).permutation(rows)
    kinds = [dict(scale_mode="lsq", weight_format="int4", progressive=1.0, row_rank=order, mask="seed"),
             dict(scale_mode="absmean", progressive=0.6, finetune_lr=0.03, mask="seed"),
             dict(scale_mode="twn", mask="reference", float_matrices="out"),
             dict(scale_mode="learned", weight_format="binary", mask="reference"),
             dict(scale_mode="twn", weight_format="int2", distill=True, alpha=(0.5, 0.2), mask="seed"),
             dict(scale_mode="lsq", weight_format="int8", mask="reference", distill=True, alpha=(0.3, 0.6))]
    lanes = [Lane(lr=0.02, beta=(1.5, 6.0), finetune_epochs=fine_tune, **kind) for kind in kinds]
    rng = np.random.default_rng(31 + fine_tune)
    X, Y, theta, teacher, data = _start(rng, lanes)
    g, c = _students_as_cpu(theta, X, Y, data, lanes, teacher)
    twn = [k for k, kind in enumerate(kinds) if kind["scale_mode"] == "twn"]
    assert (g.thresholds[twn] > 0).all()  # TWN's (or the frozen levels') thresholds came back
    assert (g.thresholds > 0).all() == bool(fine_tune)  # with no fine-tune, only TWN keeps thresholds


@needs_device
@pytest.mark.parametrize("layout,fine_tune", [(dict(scale_group=2), 1), (dict(scale_sign=True), 2), ({}, 0)])
def test_scale_groups_signs_and_moved_thresholds_bit_identical_to_the_cpu(layout, fine_tune):
    """A scale per run of columns (the last run of a row shorter), two per row by sign, and moved zero
    thresholds, with the scale modes, formats, progressive quantization, Adam restarted at joins, rows kept in
    float and the frozen fine-tune, each model its own, in one launch: theta, losses, mses and thresholds as
    multi.train_batch's."""
    from ternq.kernels.ternary import init_scales

    order = np.random.default_rng(37).permutation(2 * H + N_OUT)
    kinds = [dict(scale_mode="lsq", weight_format="int4", progressive=1.0, row_rank=order, adam_restart=True,
                  mask="seed"),
             dict(zero_threshold=0.35, mask="reference", distill=True, alpha=(0.3, 0.6)),
             dict(scale_mode="twn", mask="seed", float_matrices="out"),
             dict(zero_threshold=0.65, scale_mode="lsq", progressive=0.6, mask="seed"),
             dict(scale_mode="absmean", float_matrices="gate"),
             dict(weight_format="int8", mask="reference", finetune_lr=0.03)]
    lanes = [Lane(lr=0.02, beta=(1.5, 6.0), finetune_epochs=fine_tune, **layout, **kinds[k % len(kinds)])
             for k in range(max(M, len(kinds)))]
    rng = np.random.default_rng(41)
    X, Y = _data(rng)
    pe = n_params(N_IN, H, N_OUT)
    group = lanes[0].scale_layout
    n = len(lanes)
    weights = np.concatenate([_theta(rng, False) for _ in range(0, n, M)])[:n]
    theta = np.concatenate([weights, np.zeros((n, n_scales(N_IN, H, N_OUT, group)), np.float32)], axis=1)
    for k, lane in enumerate(lanes):
        init_scales(theta[k], N_IN, H, N_OUT, group, *lane.scale_rows((N_IN, H, N_OUT)))
    teacher = np.concatenate([_theta(rng, False) for _ in range(0, n, M)])[:n]
    g, c = _students_as_cpu(theta, X, Y, np.arange(n) % D, lanes, teacher)
    assert g.thresholds.shape == (n, n_scales(N_IN, H, N_OUT, group))
    assert not np.array_equal(g.theta[:, pe:], theta[:, pe:])  # the scales trained


@needs_device
def test_the_formats_levels_and_masks_are_the_cpus():
    """The kernel's level and mask functions against ternary.level / level_mask on every format, at
    exact halves, beyond the largest level, at zero and signed zero."""
    from ternq.kernels import cuda as K
    from ternq.kernels.ternary import level, level_mask

    w = np.float32([0.0, -0.0, 0.49, 0.5, -0.5, 1.5, -2.5, 3.49, 7.5, -200.0, 126.5, 1.0, -1.0]) * np.float32(0.3)
    qs = np.int64([0, 1, 2, 7, 127])
    out_l = np.zeros((len(qs), 3, len(w)), np.float32)
    out_m = np.zeros((len(qs), 3, len(w)), np.float64)

    @cuda.jit
    def probe(w, s, qs, beta, out_l, out_m):
        i = cuda.threadIdx.x
        for a in range(qs.shape[0]):
            for kind in range(3):
                out_l[a, kind, i] = K._level(w[i], s, qs[a])
                out_m[a, kind, i] = K._level_mask(w[i], s, beta, kind, qs[a])

    probe[1, len(w)](w, np.float32(0.3), qs, 2.5, out_l, out_m)
    for a, q in enumerate(qs):
        for kind in range(3):
            want_l = np.float32([level(x, np.float32(0.3), q) for x in w])
            want_m = np.float64([level_mask(x, np.float32(0.3), 2.5, kind, q) for x in w])
            _same((out_l[a, kind], out_m[a, kind]), (want_l, want_m))


@needs_device
@pytest.mark.parametrize("finetune_epochs", [2, 0])
def test_post_training_quantization_on_the_gpu_is_the_cpus(finetune_epochs):
    """Post-training quantization: the whole training is the levels-frozen fine-tune (or nothing)."""
    from ternq.tasks import Sine

    task = Sine(steps=T)
    teachers = [r[0] for r in multi.train_teachers(task, replace(TeacherConfig(), hidden=H, epochs=2, batch=B),
                                                    [0, 1])]
    cfg = replace(StudentConfig(), hidden=H, batch=B, weight_format="int8", ptq=True,
                  finetune_epochs=finetune_epochs)
    cpu, cuda_ = (multi.train_students(teachers, task, cfg, [0, 1], device=d) for d in ("cpu", "cuda"))
    assert [a[0].theta.tobytes() for a in cpu] == [b[0].theta.tobytes() for b in cuda_]


QUICK = Path(__file__).resolve().parent.parent / "configs" / "quick.toml"


def _tiny(seeds=(0,)):
    """The quick design, tiny under the simulator (it runs each GPU thread in Python)."""
    s = replace(load(QUICK), seeds=tuple(seeds))
    if SIMULATED:
        s = replace(s, widths=(2, 4), teacher=replace(s.teacher, epochs=3, batch=2),
                    student=replace(s.student, epochs=2, batch=2), cs=replace(s.cs, sweeps=1, sequences=1, steps=5))
    return s


@needs_device
def test_factorial_on_the_gpu_writes_the_cpus_results(tmp_path):
    """Every result file but timing.json is the same bytes whether the trainings ran on the GPU or the CPU."""
    s = _tiny()
    workers = 1 if SIMULATED else 2  # the simulator is not thread-safe
    for device in ("cpu", "cuda"):
        run_experiment(s, workers=workers, device=device, check_gradients=False, check_reproducible=False,
                       out_dir=tmp_path / device)
    for name in ("results.json", "results.csv"):
        assert (tmp_path / "cpu" / name).read_bytes() == (tmp_path / "cuda" / name).read_bytes(), name
    assert json.loads((tmp_path / "cuda" / "timing.json").read_text())["run"]["device"] == "cuda"
    units = sorted(p.name for p in (tmp_path / "cuda" / "units").rglob("*") if p.is_file())
    assert units == sorted(p.name for p in (tmp_path / "cpu" / "units").rglob("*") if p.is_file())


@pytest.mark.skipif(ON_DEVICE, reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    from ternq.cli import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["factorial", "--config", str(QUICK), "--device", "cuda", "--out", str(out), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device" in err and "GPU" in err
    assert not out.exists()  # refused before anything was written


@needs_device
def test_device_cuda_with_a_width_too_wide_for_a_block_is_one_line_and_exit_2(tmp_path, capsys):
    from ternq.cli import main

    cfg = tmp_path / "wide.toml"
    cfg.write_text(QUICK.read_text().replace("widths = [4, 8]", "widths = [4, 400]"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["factorial", "--config", str(cfg), "--device", "cuda", "--out", str(out), "--quiet", "--no-gradcheck"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "width 400" in err and "shared memory" in err, err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["frontier", "--widths", "ternary=8,400", "--device", "cuda", "--out", str(out), "--quiet"])
    assert exc.value.code == 2 and "width 400" in capsys.readouterr().err
    assert not out.exists()


def test_device_is_no_part_of_a_unit_and_the_gpu_takes_whole_batches():
    from ternq.experiment.execute import batches

    s = replace(load(QUICK), seeds=tuple(range(40)))
    cpu = plan(s)
    on = plan(replace(s, run=replace(s.run, device="cuda")))
    assert [u.digest for u in cpu.units] == [u.digest for u in on.units]  # a resume may switch device
    teachers = list({u.digest: u for u in cpu.units if u.kind == "teacher"}.values())
    shapes = Counter(batch_key(u) for u in teachers)
    assert min(shapes.values()) == 40
    launches = batches(teachers, "always", device="cuda")
    assert sorted(len(g) for g in launches) == sorted(shapes.values())  # one launch per shape
    assert all(len({batch_key(u) for u in g}) == 1 for g in launches)
    assert max(len(g) for g in batches(teachers, "always")) == multi.BATCH_MAX
    # students of every setting go to the GPU, their batches whole; coordinate searches stay on the CPU
    recipe = plan(replace(s, run=replace(s.run, device="cuda"),
                          student=replace(s.student, scale_mode="twn", adam_restart=True, progressive=0.5)))
    students = [u for u in recipe.units if u.kind == "student" and u.seed < 20]
    assert students and all(on_gpu_group([u], "cuda") for u in students)
    assert max(len(g) for g in batches(students, "always", device="cuda")) > multi.BATCH_MAX
    assert not any(on_gpu_group([u], "cuda") for u in recipe.units if u.kind == "cs")


def test_on_dask_each_gpu_launch_asks_for_a_gpu_where_workers_have_them():
    """Several GPUs: one Dask worker per GPU, started with ``--resources GPU=1``. A GPU launch asks for one GPU
    (so that each GPU's worker takes one launch at a time); coordinate searches, and every task where no
    worker declares a GPU, ask for nothing (a resource no worker has would never run)."""
    pytest.importorskip("distributed")  # the backend's submit imports it before it asks
    from ternq.experiment.execute import Dask

    class Client:
        def __init__(self, resources):
            self.resources, self.asked = resources, []

        def scheduler_info(self, n_workers):
            return {"workers": {f"w{i}": {"nthreads": 1, "resources": r} for i, r in enumerate(self.resources)}}

        def submit(self, fn, *args, **kw):
            self.asked.append(kw.get("resources"))
            raise RuntimeError("recorded")  # as far as the test goes: what was asked

    s = replace(load(QUICK), seeds=(0, 1))
    units = plan(replace(s, run=replace(s.run, device="cuda"))).units
    teachers = [u for u in units if u.kind == "teacher"][:1]
    searches = [u for u in units if u.kind == "cs"][:1]
    for resources, want in (([{"GPU": 1}, {"GPU": 1}, {}], {"GPU": 1}), ([{}, {}], None)):
        client = Client(resources)
        dask = Dask(client)
        assert dask.gpus == sum(r.get("GPU", 0) for r in resources)
        for group, device, asked in ((teachers, "cuda", want), (searches, "cuda", None), (teachers, "cpu", None)):
            with pytest.raises(RuntimeError, match="recorded"):
                dask.submit(None, group, {}, None, device)
            assert client.asked[-1] == asked, (group[0].kind, device, resources)


@needs_device
def test_teacher_command_on_the_gpu_saves_the_cpus_model(tmp_path, capsys):
    from conftest import invoke

    conf = tmp_path / "tiny.toml"
    conf.write_text("[teacher]\nbatch = 2\n" if SIMULATED else "")
    thetas = []
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.npz"
        code, _, err = invoke(["teacher", "--config", str(conf), "--hidden", "4", "--epochs", "3", "--device",
                               device, "--out", str(out), "--quiet", "--json"], capsys)
        assert code == 0, err
        thetas.append(np.load(out)["theta"].tobytes())
    assert thetas[0] == thetas[1]


@needs_device
def test_parameters_in_global_memory_and_predictions_on_idle_threads_are_the_same_bits(monkeypatch):
    """Where the parameters do not fit in shared memory they stay in global memory; where a block has
    threads to spare the predictions are made by them: neither changes a bit."""
    from ternq.kernels import cuda as K

    rng = np.random.default_rng(3)
    teacher = _theta(rng, False)
    settings = dict(TEACHERS, mask_kind=[MASK_NONE, MASK_NOTES, MASK_REFERENCE, MASK_NOTES],
                    distill=[False, True, False, True], alpha0=0.3, alpha1=0.8, beta0=[1.0, 2.0, 3.0, 2.0],
                    beta1=[5.0, 8.0, 6.0, 2.0])
    many = B * H + B * N_OUT if SIMULATED else 1024  # enough threads for a unit each and the predictions
    assert K.shared_bytes(B, H, n_params(N_IN, H, N_OUT))[1]
    g_shared, c = _both(True, settings, teacher=teacher, threads=many)
    _same(g_shared, c)
    monkeypatch.setattr(K, "SHARED_BYTES", 4 * K.shared_words(B, H))
    assert not K.shared_bytes(B, H, n_params(N_IN, H, N_OUT))[1]
    g_global, c = _both(True, settings, teacher=teacher, threads=many)
    _same(g_global, c)


def test_a_block_whose_work_does_not_fit_its_shared_memory_is_refused_before_anything_reaches_the_gpu():
    from ternq.kernels import cuda as K

    words = K.SHARED_BYTES // 4
    hidden = (words - K.F0) // (3 + 4 * B)  # the widest whose work fits
    assert K.shared_bytes(B, hidden, 1)[0] <= K.SHARED_BYTES
    with pytest.raises(ValueError, match="shared memory"):
        K.shared_bytes(B, hidden + 1, 1)


def test_gpu_launches_run_beside_the_cpus_trainings(monkeypatch):
    """With device "cuda", groups that train on the GPU take threads of their own: two GPU launches and a
    CPU training are in flight together though the CPU has one worker (a barrier of three would break
    otherwise), and the CPU's trainings still run one at a time."""
    import threading

    from ternq.experiment import execute as X

    s = replace(load(QUICK), seeds=(0, 1))
    units = [u for u in plan(s).units if u.kind == "teacher"]
    widths = sorted({u.config.hidden for u in units})
    assert len(widths) >= 2  # two GPU launches, one per width
    together = threading.Barrier(3, timeout=30)
    cpu_now, cpu_most, arrived = [0], [0], [0]
    lock = threading.Lock()

    def fake_run_group(g, deps, progress=None, device="cpu"):
        gpu = X.on_gpu_group(g, device)
        with lock:
            first = arrived[0] < 3
            arrived[0] += 1
            if not gpu:
                cpu_now[0] += 1
                cpu_most[0] = max(cpu_most[0], cpu_now[0])
        if first:  # the two launches and a CPU training
            together.wait()
        if not gpu:
            with lock:
                cpu_now[0] -= 1
        return [({"seconds": 0.0}, None) for _ in g]

    # the GPU takes the first seed's teachers (one launch per width); the second seed's train on the CPU
    monkeypatch.setattr(X, "on_gpu_group", lambda g, device: device == "cuda" and g[0].seed == 0)
    monkeypatch.setattr(X, "run_group", fake_run_group)

    def group(ready, device="cpu"):
        return [[u] for u in ready]

    backend = X.Threads(1, gpu_slots=len(widths))
    try:
        done = X.execute(units, backend, group=group, device="cuda")
    finally:
        backend.close()
    assert len(done) == len(units) and not together.broken
    assert cpu_most[0] == 1
