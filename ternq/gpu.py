"""Training, evaluation and rollouts of many models on an NVIDIA GPU, bit-identical to the CPU kernels.

The kernels are :mod:`ternq.kernels.cuda` (one thread block per model). This module checks inputs,
packs models into arrays (model index first), computes the float64 schedules with the CPU's own
code, launches and copies results back. Each call is one launch over every model it is given.

Needs the optional extra ``cuda`` (numba-cuda) and a GPU, or numba-cuda's simulator
(``NUMBA_ENABLE_CUDASIM=1``, slow: tests only).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterable

import numpy as np
from numba import njit

from .kernels.cell import n_params
from .kernels.loop import (
    ALPHA_LINEAR,
    BETA_LINEAR,
    LR_CONSTANT,
    OUTPUT_1_MINUS_ALPHA,
    OUTPUT_ONE,
    ROUND,
    alpha_at,
    beta_at,
    join_epoch_of,
    lr_at,
    rows_quantized,
    scale_rate,
)
from .kernels.ternary import MASK_NONE, MASK_REFERENCE, SCALE_ABSMEAN, SCALE_LEARNED, SCALE_TWN, n_scales, per_scale

# numba-cuda loads a kernel's module on its first launch, and two threads doing so at once collide:
# launches (quick: they only queue the work on the call's stream) are taken one at a time
_LAUNCH = threading.Lock()
_COUNT = threading.Lock()
_LAUNCHED = threading.Event()  # set at this process's first launch
_USED = threading.Event()  # set once this process starts a CUDA context or launches
_PREPARED: set = set()  # the launch shapes whose kernels prepare() has loaded or is loading
_PREPARE = threading.Lock()


def used() -> bool:
    """Whether this process has started the GPU's context (:func:`prepare`) or launched on it."""
    return _USED.is_set()


def launched(timeout: float | None = None) -> bool:
    """Whether this process has queued a launch, waiting for one at most ``timeout`` seconds (None: until one is)."""
    return _LAUNCHED.wait(timeout)


@contextlib.contextmanager
def _in_flight(cuda):
    """A launch's lifetime: from its first allocation to its last copy back. numba-cuda frees device arrays in
    batches (cuMemFree), and a free waits for every kernel on the GPU; freed inside another launch's lifetime,
    it would serialize launches meant to run beside each other. So nothing is freed while any launch is in
    flight: the arrays of finished launches are freed once the GPU is idle."""
    with _COUNT:  # numba-cuda counts the deferrals without a lock
        defer = cuda.defer_cleanup()
        defer.__enter__()
    try:
        yield
    finally:
        with _COUNT:
            defer.__exit__(None, None, None)


def _launch(kernel, config: tuple, args: tuple) -> None:
    """Queue a launch on its stream (``config``'s third entry) and wait for it there. The wait comes before any
    copy back: a copy into pageable memory waits for its kernel inside the driver, and other threads'
    launches queue behind it (measured on an H100: a 10-seed factorial's four first launches, meant to run
    together, ran one after another, and the command took 9.1-9.9 s rather than 6.2-6.5)."""
    with _LAUNCH, warnings.catch_warnings():
        # one block per model: a grid of few blocks is by design, not the beginner's slip numba-cuda warns of
        # (the message may come wrapped in a terminal's bold, as numba's highlighting writes it)
        warnings.filterwarnings("ignore", r".{0,8}Grid size \d+ will likely result in GPU under-utilization")
        kernel[config](*args)
    _USED.set()
    _LAUNCHED.set()
    config[2].synchronize()


class GPUUnavailable(RuntimeError):
    """No usable GPU: numba-cuda is missing, or it finds no device."""


def available() -> bool:
    """True when numba-cuda imports and sees a GPU (or its simulator is on)."""
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver or toolkit counts as no GPU
        return False


def prepare(launches: Iterable[tuple[int, int, int, int, int]] = ()) -> None:
    """Start, on a thread of its own, what a command about to launch would otherwise wait for at its first
    launch: this process's CUDA context (0.42-0.46 s measured on an H100), then the training kernel of each of
    ``launches`` (models, batch, n_in, hidden, n_out), loaded from numba-cuda's disk cache (0.30-0.33 s a
    kernel; compiled where the cache has none). That work then overlaps the CPU's before the first launch
    (Numba's first calls, the data). The launches' threads share the context and the loaded kernels; a failure
    here shows again at the launch, which is left to report it."""
    cuda, _ = _kernels()
    with _PREPARE:  # a command and its engine both prepare: each kernel is loaded once, the context made once
        first = not _USED.is_set()
        _USED.set()
        shapes = [s for s in dict.fromkeys((int(m), int(b), int(i), int(h), int(o)) for m, b, i, h, o in launches)
                  if s not in _PREPARED]
        _PREPARED.update(shapes)
    if not (first or shapes):
        return

    def start():
        try:
            cuda.current_context()
            for shape in shapes:
                _load(*shape)
        except Exception:  # noqa: BLE001, S110 - the launch meets it again and reports it
            pass

    threading.Thread(target=start, name="cuda-context", daemon=True).start()


def _load(models: int, batch: int, n_in: int, hidden: int, n_out: int) -> None:
    """Load the training kernel that a launch of ``models`` models of this shape uses, without launching it: one
    model of the shape through :func:`train_epochs`, so that its arguments have the launch's types."""
    _, K = _kernels()
    z = np.zeros((1, n_params(n_in, hidden, n_out)), np.float32)
    X, Y = np.zeros((1, 1, batch, 1, n_in), np.float32), np.zeros((1, 1, batch, 1, n_out), np.float32)
    train_epochs(z, z.copy(), z.copy(), X, Y, 0, 0, 1, 1, n_in, hidden, n_out, 0.1, False, lr=1.0, lr_min=0.0,
                 lr_kind=LR_CONSTANT, clip=1.0, losses=np.zeros((1, 1)), mses=np.zeros((1, 1)),
                 bad=np.full(1, -1, np.int64), threads=_threads(models, batch, hidden, None, K), _launcher=_bind)


def _bind(kernel, config: tuple, args: tuple) -> None:
    """In place of :func:`_launch`: find ``kernel``'s machine code for ``args``' types (numba-cuda's disk cache,
    else a compile) and load it into the context, as a first launch would, without launching it."""
    _, K = _kernels()
    if K.SIMULATED:  # the simulator's kernels are Python: nothing to load
        return
    with _LAUNCH:
        kernel.compile(tuple(kernel.typeof_pyval(a) for a in args)).bind()


def check_shape(batch: int, hidden: int) -> None:
    """ValueError where a model of width ``hidden`` trained on ``batch`` sequences an epoch does not fit one
    thread block's shared memory (the kernels' work for one model lives there)."""
    _, K = _kernels()
    K.shared_bytes(int(batch), int(hidden), 0)


def launches_at_once() -> int:
    """GPU launches worth having in flight together (each on its own stream): several where a launch of
    few models leaves most of the GPU idle; one under the simulator, which is not thread-safe."""
    from numba import config

    return 1 if config.ENABLE_CUDASIM else 4


def _kernels():
    if not available():
        raise GPUUnavailable("no GPU: install the 'cuda' extra (numba-cuda) on a machine with an NVIDIA GPU")
    from numba import cuda

    from .kernels import cuda as K
    return cuda, K


@njit(cache=True, nogil=True, error_model="numpy")
def _schedules(lr, lr_min, lr_kind, finetune_lr, n_main, alpha0, alpha1, alpha_kind, alpha_until, output_weight,
               beta0, beta1, beta_kind, distill, qmax, progressive, e0, e1, n_epochs, n, hidden, n_out, adam_a, adam_as,
               adam_e, cy, ch, w_y, alpha, beta, traj, nq, restart, lr_s, distill_output, output_share):
    """Per epoch and model: Adam's step size and epsilon (bias corrections folded in, as ``optim.adam``),
    the scales' step size per matrix (``loop.scale_rate`` of its format), the loss weights and the STE
    sharpness, in the CPU training loop's float64 expressions (``loop.begin_epoch``, ``loop.loss_weights``,
    ``loop.end_epoch``); traj: the trajectory term is on (a distilled model whose alpha is not 0 this
    epoch); nq: how many rows (in their rank's order) run quantized (progressive quantization); lr_s the scales'
    rates in float64, for the steps of Adam restarted at each row's join (``loop.adam_joins``); output_share:
    the teacher's share in the output target (``distill_output``, none in the fine-tune)."""
    beta_1, beta_2, eps = 0.9, 0.999, 1e-8
    n_rows = 2 * hidden + n_out
    for e in range(e0, e1):
        for m in range(lr.shape[0]):
            fine = e >= n_main[m]
            step = e - n_main[m] + 1 if fine and restart[m] else e + 1  # a restart counts from the fine-tune
            c1 = 1.0 - beta_1**step
            c2 = 1.0 - beta_2**step
            adam_e[e, m] = np.float32(eps * np.sqrt(c2))
            prog = e / n_main[m] if not fine else (e - n_main[m]) / (n_epochs - n_main[m])
            r = lr_at(finetune_lr[m] if fine else lr[m], lr_min[m], lr_kind[m], prog)
            adam_a[e, m] = np.float32(r * np.sqrt(c2) / c1)
            for i in range(3):  # gate, cand, out: each matrix's scales at its format's rate
                lr_s[e, i, m] = scale_rate(r, qmax[i, m])
                adam_as[e, i, m] = np.float32(lr_s[e, i, m] * np.sqrt(c2) / c1)
            a = 0.0
            if distill[m] and not fine:
                a = alpha_at(alpha_kind[m], alpha0[m], alpha1[m], prog, alpha_until[m])
            wy = 1.0 if fine or output_weight[m] == OUTPUT_ONE else 1.0 - a
            traj[e, m] = a != 0.0
            output_share[e, m] = 0.0 if fine else distill_output[m]
            alpha[e, m] = a
            w_y[e, m] = wy
            cy[e, m] = np.float32(wy) / np.float32(n * n_out)
            ch[e, m] = np.float32(a) / np.float32(n * hidden)
            beta[e, m] = beta_at(beta_kind[m], beta0[m], beta1[m], min(prog, 1.0) if not fine else 1.0)
            share = progressive[m]
            nq[e, m] = rows_quantized(n_rows, share, n_main[m], e) if share > 0.0 and not fine else n_rows


@njit(cache=True, nogil=True, error_model="numpy")
def _restart_tables(n_epochs, n_rows, share, n_main, rank, restart, e_join, c1, sq2, eps_s):
    """For Adam restarted at each row's join: the epoch each scale's row of each model joins (``loop.join_epoch``;
    rank (S, M) the row's rank among the ``n_rows`` rows, repeated for each of its scales), and
    per step count s + 1 the bias corrections 1 - beta1^(s+1) and sqrt(1 - beta2^(s+1)) (float64) and the
    epsilon, as ``optim.adam`` computes them."""
    for s in range(n_epochs):
        c1[s] = 1.0 - 0.9**(s + 1)
        sq2[s] = np.sqrt(1.0 - 0.999**(s + 1))
        eps_s[s] = np.float32(1e-8 * sq2[s])
    for m in range(rank.shape[1]):
        if restart[m]:
            for r in range(rank.shape[0]):
                e_join[r, m] = join_epoch_of(share[m], n_main[m], rank[r, m], n_rows)


def _host(a) -> np.ndarray:
    """``a`` C-contiguous with real strides, for a copy to the GPU. numpy calls a broadcast array of one model
    (stride 0) contiguous, and keeps its stride; numba-cuda types a device array with a zero stride as layout 'A',
    so a launch of one model would need a kernel specialization of its own, compiled and loaded apart from every
    other launch's."""
    a = np.ascontiguousarray(a)
    return a.copy() if 0 in a.strides else a


def _vec(x, M: int, dtype, name: str) -> np.ndarray:
    a = np.broadcast_to(np.asarray(x, dtype), (M,))
    if dtype is np.float64 and not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return _host(a)


def _threads(M: int, B: int, hidden: int, threads: int | None, K) -> int:
    if threads is None and K.SIMULATED:  # the simulator runs each thread in Python: few, each with 8 units
        threads = -(-((B + 1) // 2 * hidden) // 8)
    nt = (K.few_threads(hidden) if M < K.FEW_MODELS else K.THREADS) if threads is None else int(threads)
    if nt < 1 or nt > 1024:
        raise ValueError("threads must be in 1..1024")
    return nt


def train_epochs(theta: np.ndarray, adam_m: np.ndarray, adam_v: np.ndarray, X: np.ndarray, Y: np.ndarray,
                 data: np.ndarray, e0: int, e1: int, n_epochs: int, n_in: int, hidden: int, n_out: int, dt: float,
                 student: bool, *, lr, lr_min, lr_kind, clip, distill=False, alpha0=0.0, alpha1=0.0,
                 alpha_schedule=ALPHA_LINEAR, alpha_until=1.0, output_weight=OUTPUT_1_MINUS_ALPHA, beta0=1.0,
                 beta1=1.0, beta_schedule=BETA_LINEAR, mask_kind=MASK_NONE, qmax=1, quantized=1, finetune_epochs=None,
                 finetune_lr=None, progressive=None, row_rank=None, adam_restart=False,
                 thresholds: np.ndarray | None = None,
                 teacher: np.ndarray | None = None, losses: np.ndarray, mses: np.ndarray, bad: np.ndarray,
                 threads: int | None = None, distill_output=None, distill_hidden: np.ndarray | None = None,
                 scale_mode=SCALE_LEARNED, group: int = 0, zero_threshold=ROUND, _launcher=None) -> None:
    """Train M models in place for epochs ``e0 .. e1-1`` of ``n_epochs``: one launch, one block per model.

    Per model, the computation of :func:`ternq.kernels.multi.train_epochs` with every setting of the loop's
    record (:func:`ternq.train.loop_of`, whose fields :func:`train_batch` passes here), bit for bit: the
    learning rate's schedule, clipping, Adam (restarted at joins with ``adam_restart``); a student's format per
    row (``qmax``), STE with its mask and beta schedule, scale mode, rows kept in float (``quantized``),
    progressive quantization (``progressive``, ``row_rank``) and the levels-frozen fine-tune
    (``finetune_epochs``); distillation towards ``teacher`` (alpha's schedule, ``distill_hidden``,
    ``distill_output``).

    theta, adam_m, adam_v (M, P) float32, model index first (P = n_params, plus the scales for a
    student); X (D, E, B, T, n_in), Y (D, E, B, T, n_out) float32; data (M,) which data set each
    model trains on; per-model settings are scalars or (M,) arrays; teacher (M, Pe) for distilled
    students; losses, mses (M, E) float64 (epochs not trained keep their values); bad (M,) int64,
    -1 or the first epoch whose loss was not finite (such a model is frozen there); distill_hidden (H, M)
    or (0, M) float64 as the loop's record (None or (0, M): every unit weighs 1); scale_mode a student's
    scales (``ternary.SCALE_*``): learned, LSQ's gradient, or recomputed every epoch (absmean, TWN, whose
    per-scale thresholds are ``thresholds``); group the scale layout (``ternary.n_scales``), which makes every
    per-row array above (and the scales in theta) one entry per scale; zero_threshold a ternary weight's zero
    threshold as a share of its scale (``loop.zero_thresholds``; ``loop.ROUND``: the rounding's).
    _launcher queues the launch [:func:`_launch`; :func:`_load` passes one that only loads the kernel].
    """
    cuda, K = _kernels()
    theta = np.asarray(theta)
    if theta.ndim != 2 or theta.dtype != np.float32:
        raise ValueError("theta must be float32 (M, P)")
    M, P = theta.shape
    m_eff = n_params(n_in, hidden, n_out)
    group = int(group)
    if P != m_eff + (n_scales(n_in, hidden, n_out, group) if student else 0):
        raise ValueError(f"theta has {P} parameters; this shape needs {m_eff}{' plus scales' if student else ''}")
    for name, a in (("adam_m", adam_m), ("adam_v", adam_v)):
        if a.shape != theta.shape or a.dtype != np.float32:
            raise ValueError(f"{name} must be float32 like theta")
    if X.dtype != np.float32 or Y.dtype != np.float32 or X.ndim != 5 or Y.ndim != 5:
        raise ValueError("X and Y must be float32 (D, E, B, T, .)")
    D, E, B, T = X.shape[:4]
    if X.shape[4] != n_in or Y.shape != (D, E, B, T, n_out):
        raise ValueError("X, Y shapes do not match n_in, n_out")
    if not 0 <= e0 <= e1 <= min(n_epochs, E):
        raise ValueError("need 0 <= e0 <= e1 <= n_epochs, and data for every epoch")
    data = _vec(data, M, np.int64, "data")
    if ((data < 0) | (data >= D)).any():
        raise ValueError("data indices out of range")
    if losses.shape != (M, n_epochs) or mses.shape != (M, n_epochs) or bad.shape != (M,):
        raise ValueError("losses, mses must be (M, n_epochs) and bad (M,)")
    distill = _vec(distill, M, np.bool_, "distill")
    distill_output = np.zeros(M) if distill_output is None else _vec(distill_output, M, np.float64, "distill_output")
    if (distill.any() or (distill_output > 0).any()) and (
            teacher is None or teacher.shape != (M, m_eff) or teacher.dtype != np.float32):
        raise ValueError("distillation needs teacher float32 (M, n_params)")
    # the trajectory term's per-unit weights, float32 as the CPU's kernel keeps them
    weights = np.ones((M, hidden), np.float32)
    if distill_hidden is not None:
        distill_hidden = np.asarray(distill_hidden, np.float64)
        if distill_hidden.shape not in ((hidden, M), (0, M)) or not np.isfinite(distill_hidden).all():
            raise ValueError(f"distill_hidden must be finite float64 ({hidden}, {M}) or (0, {M})")
        if distill_hidden.shape[0] > 0:
            weights[:] = distill_hidden.T
    mask_kind = _vec(mask_kind, M, np.int64, "mask_kind")
    n_rows = n_scales(n_in, hidden, n_out, group)
    # each scale's format: (S, M), as the loop's record keeps them; one format per matrix
    qmax_rows = np.ascontiguousarray(np.broadcast_to(np.asarray(qmax, np.int64), (n_rows, M)))
    if (qmax_rows < 0).any():
        raise ValueError("qmax must be >= 0 (binary 0, ternary 1, intN 2^(N-1) - 1)")
    matrix = per_scale(np.repeat([0, 1, 2], [hidden, hidden, n_out]), n_in, hidden, n_out, group)
    qmax = np.ascontiguousarray(qmax_rows[[np.argmax(matrix == i) for i in range(3)]])  # (3, M): gate, cand, out
    if (qmax_rows != qmax[matrix]).any():
        raise ValueError("qmax must be the same for every row of a matrix (gate, cand, out)")
    quantized = np.ascontiguousarray(np.broadcast_to(np.asarray(quantized, np.int8), (n_rows, M)))
    rank = np.ascontiguousarray(np.broadcast_to(np.arange(n_rows)[:, None] if row_rank is None else row_rank,
                                                (n_rows, M)), np.int64)
    # None: no fine-tune, no progressive share
    share = np.zeros(M) if progressive is None else _vec(progressive, M, np.float64, "progressive")
    n_main = np.full(M, n_epochs, np.int64)
    if finetune_epochs is not None:
        n_main -= _vec(finetune_epochs, M, np.int64, "finetune_epochs")
    if ((n_main < 0) | (n_main > n_epochs)).any():  # all of them: post-training quantization's fine-tune
        raise ValueError("finetune_epochs must be in 0 .. n_epochs")
    if thresholds is None:
        thresholds = np.zeros((M, n_rows), np.float32)
    if thresholds.shape != (M, n_rows) or thresholds.dtype != np.float32:
        raise ValueError("thresholds must be float32 (M, scales)")
    if ((mask_kind < MASK_NONE) | (mask_kind > MASK_REFERENCE)).any():
        raise ValueError("unknown mask kind")
    scale_mode = _vec(scale_mode, M, np.int64, "scale_mode")
    if ((scale_mode < SCALE_LEARNED) | (scale_mode > SCALE_TWN)).any():
        raise ValueError("unknown scale mode")
    zero_threshold = _vec(zero_threshold, M, np.float64, "zero_threshold")
    moved = zero_threshold != ROUND
    if ((zero_threshold <= 0) | (zero_threshold > 1)).any() or (moved & (scale_mode >= SCALE_ABSMEAN)).any():
        raise ValueError("zero_threshold must be in (0, 1], and ROUND with recomputed scales")
    nt = _threads(M, B, hidden, threads, K)
    f64 = np.float64
    n = B * T
    adam_a = np.zeros((n_epochs, M), np.float32)
    adam_as = np.zeros((n_epochs, 3, M), np.float32)
    adam_e = np.zeros((n_epochs, M), np.float32)
    restart = _vec(adam_restart, M, np.bool_, "adam_restart") & student
    lr_s = np.zeros((n_epochs, 3, M))
    e_join = np.zeros((n_rows, M), np.int64)
    c1, sq2 = np.zeros(n_epochs), np.zeros(n_epochs)
    eps_s = np.zeros(n_epochs, np.float32)
    _restart_tables(n_epochs, 2 * hidden + n_out, share, n_main, rank, restart, e_join, c1, sq2, eps_s)
    cy = np.zeros((n_epochs, M), np.float32)
    ch = np.zeros((n_epochs, M), np.float32)
    w_y, alpha, beta = (np.zeros((n_epochs, M)) for _ in range(3))
    traj = np.zeros((n_epochs, M), np.bool_)
    nq = np.zeros((n_epochs, M), np.int64)
    share_e = np.zeros((n_epochs, M))
    _schedules(_vec(lr, M, f64, "lr"), _vec(lr_min, M, f64, "lr_min"), _vec(lr_kind, M, np.int64, "lr_kind"),
               _vec(lr if finetune_lr is None else finetune_lr, M, f64, "finetune_lr"), n_main,
               _vec(alpha0, M, f64, "alpha0"), _vec(alpha1, M, f64, "alpha1"),
               _vec(alpha_schedule, M, np.int64, "alpha_schedule"), _vec(alpha_until, M, f64, "alpha_until"),
               _vec(output_weight, M, np.int64, "output_weight"), _vec(beta0, M, f64, "beta0"),
               _vec(beta1, M, f64, "beta1"), _vec(beta_schedule, M, np.int64, "beta_schedule"), distill, qmax,
               share, e0, e1, n_epochs, n, hidden, n_out, adam_a, adam_as, adam_e,
               cy, ch, w_y, alpha, beta, traj, nq, restart, lr_s, distill_output, share_e)
    if teacher is None:
        teacher = np.zeros((M, m_eff), np.float32)
    shmem, p_shared = K.shared_bytes(B, hidden, m_eff)
    f32 = np.float32
    BH = B * hidden
    with _in_flight(cuda):
        stream = cuda.stream()  # a launch of its own: launches from other threads run beside it
        dv = lambda a: cuda.to_device(_host(a), stream=stream)  # noqa: E731
        d_theta, d_m, d_v, d_losses, d_mses, d_bad, d_thr = (dv(a) for a in (theta, adam_m, adam_v, losses, mses,
                                                                              bad.astype(np.int64), thresholds))

        def work(*shape):
            return cuda.device_array(shape, f32, stream=stream)

        if M > 0 and e1 > e0:
            kernel = K.train_kernel(nt, p_shared)
            args = (d_theta, d_m, d_v, dv(X.reshape(-1)), dv(Y.reshape(-1)), dv(data), E, e0, e1, n_in, hidden, n_out,
                    B, T, f32(dt), bool(student), dv(traj), dv(mask_kind), dv(qmax_rows), dv(quantized),
                    dv(rank), dv(nq), dv(n_main), d_thr,
                    dv(_vec(clip, M, f64, "clip")), dv(adam_a), dv(adam_as), dv(adam_e), dv(cy), dv(ch), dv(w_y),
                    dv(alpha), dv(beta), dv(teacher), d_losses, d_mses, d_bad,
                    work(M, 1 if p_shared else m_eff), work(M, P), work(M, (T + 1) * BH), work(M, T * BH),
                    work(M, T * BH), work(M, T * B * n_out),
                    work(M, (T + 1) * BH if traj.any() or share_e.any() else 1),
                    work(M, T * B * 2 * hidden), work(M, T * B * n_out),
                    dv(restart), dv(e_join), dv(lr_s), dv(c1), dv(sq2), dv(eps_s), dv(share_e), dv(weights),
                    dv(scale_mode), group, dv(zero_threshold.astype(f32)), dv(moved))
            (_launcher or _launch)(kernel, (M, nt, stream, shmem), args)
        outs = [d.copy_to_host(stream=stream) for d in (d_theta, d_m, d_v, d_losses, d_mses, d_bad, d_thr)]
        stream.synchronize()
    for dst, src in zip((theta, adam_m, adam_v, losses, mses, bad, thresholds), outs, strict=True):
        dst[...] = src


def rollout(p: np.ndarray, X: np.ndarray, data, n_in: int, hidden: int, n_out: int, dt: float, free: int = 0,
            Y: np.ndarray | None = None, threads: int | None = None):
    """Forward passes of M models from h_0 = 0: each on X[data[m]] (B, W, n_in), then ``free`` steps
    that read the last prediction (``ternq.kernels.rollout.rollout`` per model, bit for bit).

    p (M, n_params) float32 effective parameters; X (D, B, W, n_in) float32. Returns (hs, ys):
    (M, W + free + 1, B, H) and (M, W + free, B, n_out), time-major per model as the CPU kernels; with
    ``Y`` (D, B, W, n_out) and free == 0 also each model's MSE (M,), float64, as ``cell.mse``.
    """
    cuda, K = _kernels()
    p = np.asarray(p)
    if p.ndim != 2 or p.dtype != np.float32 or p.shape[1] != n_params(n_in, hidden, n_out):
        raise ValueError("p must be float32 (M, n_params)")
    if X.dtype != np.float32 or X.ndim != 4 or X.shape[3] != n_in:
        raise ValueError("X must be float32 (D, B, W, n_in)")
    if free < 0 or (free > 0 and n_in != n_out):
        raise ValueError("free steps need free >= 0 and n_in == n_out")
    M = p.shape[0]
    D, B, W = X.shape[:3]
    data = _vec(data, M, np.int64, "data")
    if ((data < 0) | (data >= D)).any():
        raise ValueError("data indices out of range")
    with_mse = Y is not None
    if with_mse and (free != 0 or Y.shape != (D, B, W, n_out) or Y.dtype != np.float32):
        raise ValueError("Y must be float32 (D, B, W, n_out), with free == 0")
    nt = _threads(M, B, hidden, threads, K)
    T = W + free
    f32 = np.float32
    m_eff = p.shape[1]
    shmem, p_shared = K.shared_bytes(B, hidden, m_eff)
    BH = B * hidden
    Yd = np.ascontiguousarray(Y).reshape(-1) if with_mse else np.zeros(0, f32)
    with _in_flight(cuda):
        stream = cuda.stream()
        hs = cuda.device_array((M, (T + 1) * BH), f32, stream=stream)
        ys = cuda.device_array((M, T * B * n_out), f32, stream=stream)
        sse = cuda.device_array(M, np.float64, stream=stream)
        if M > 0:
            kernel = K.rollout_kernel(nt, p_shared)
            args = (cuda.to_device(_host(p), stream=stream),
                    cuda.to_device(_host(X).reshape(-1), stream=stream),
                    cuda.to_device(data, stream=stream), W, free, n_in, hidden, n_out, B, f32(dt),
                    cuda.to_device(_host(Yd), stream=stream), hs, cuda.device_array((M, T * BH), f32, stream=stream),
                    cuda.device_array((M, T * BH), f32, stream=stream), ys, sse)
            _launch(kernel, (M, nt, stream, shmem), args)
        out = (hs.copy_to_host(stream=stream).reshape(M, T + 1, B, hidden),
               ys.copy_to_host(stream=stream).reshape(M, T, B, n_out))
        sse_h = sse.copy_to_host(stream=stream) if with_mse else None
        stream.synchronize()
    return (*out, sse_h / (B * W * n_out)) if with_mse else out


def train_batch(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, data, dims: tuple[int, int, int], lanes, *,
                student: bool, teacher: np.ndarray | None = None, threads: int | None = None):
    """:func:`ternq.multi.train_batch` on the GPU, in one launch: the same arguments, the same
    :class:`ternq.multi.BatchResult`, the same bits."""
    from .multi import BatchResult
    from .train import DT, loop_of

    n_in, hidden, n_out = (int(d) for d in dims)
    theta = np.array(theta, np.float32)  # a copy: trained in place
    if theta.ndim != 2 or theta.shape[0] == 0:
        raise ValueError(f"theta must be (M, P) with M >= 1, not {theta.shape}")
    M, E = theta.shape[0], np.shape(X)[1]
    if len(lanes) != M:
        raise ValueError(f"need one Lane per model: {len(lanes)} for {M} models")
    for lane in lanes:
        if lane.uses_teacher and not student:
            raise ValueError("only students distill")
    # the CPU's record of the models' settings: both devices read the same one
    loop = loop_of(list(lanes), (n_in, hidden, n_out), E, student)
    distill = np.array([ln.distill for ln in lanes], np.bool_)
    # the per-row thresholds: TWN's, then the frozen fine-tune's (zero without either, as on the CPU)
    res = BatchResult(theta, np.full((M, E), np.nan), np.full((M, E), np.nan), np.full(M, -1, np.int64),
                      np.zeros((M, n_scales(n_in, hidden, n_out, loop.group)), np.float32))
    train_epochs(theta, np.zeros_like(theta), np.zeros_like(theta), np.ascontiguousarray(X, np.float32),
                 np.ascontiguousarray(Y, np.float32), data, 0, E, E, n_in, hidden, n_out, DT, student,
                 lr=loop.lr, lr_min=loop.lr_min, lr_kind=loop.schedule, clip=loop.clip, distill=distill,
                 alpha0=loop.alpha[:, 0], alpha1=loop.alpha[:, 1], alpha_schedule=loop.alpha_schedule,
                 alpha_until=loop.alpha_until, output_weight=loop.output_weight, beta0=loop.beta[:, 0],
                 beta1=loop.beta[:, 1], beta_schedule=loop.beta_schedule, mask_kind=loop.mask,
                 qmax=loop.qmax if student else 1, quantized=loop.quantized if student else 1,
                 finetune_epochs=E - loop.n_main, finetune_lr=loop.finetune_lr, progressive=loop.progressive,
                 row_rank=loop.row_rank, adam_restart=loop.adam_restart, thresholds=res.thresholds,
                 teacher=None if teacher is None else np.ascontiguousarray(teacher, np.float32),
                 losses=res.losses, mses=res.mses, bad=res.diverged, threads=threads,
                 distill_output=loop.distill_output, distill_hidden=loop.distill_hidden,
                 scale_mode=loop.scale_mode if student else SCALE_LEARNED, group=loop.group,
                 zero_threshold=loop.zero_threshold)
    return res
