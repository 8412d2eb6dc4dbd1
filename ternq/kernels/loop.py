"""The training loop over epochs, compiled: teacher and student share it.

Each epoch: quantize once (student), run the teacher alongside (distillation),
BPTT on the epoch's batch, STE mapping and mask (student), clip, Adam.

The recipes of issue 10 (``ext``: schedules' shapes, normalised hidden matching,
output distillation, LSQ / absmean / TWN scales, progressive quantization, a final
fine-tune with trits frozen) run in branches of their own; with ``ext`` off the loop
does exactly the seeds' arithmetic.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

from .cell import _forward, _loss_grad, n_params, work
from .optim import adam, clip_norm
from .ternary import (
    SCALE_ABSMEAN,
    SCALE_LEARNED,
    SCALE_MIN,
    SCALE_TWN,
    bake,
    quantize_ext,
    recompute_scales,
    ste_ext,
)

LR_CONSTANT = 0
LR_COSINE = 1
# alpha schedules: linear start -> end (the seeds'), constant start, falling max -> min, early: linear
# start -> end over the first ``until`` of training, then 0 (distillation only while the trits settle)
ALPHA_LINEAR = 0
ALPHA_CONSTANT = 1
ALPHA_FALLING = 2
ALPHA_EARLY = 3
# beta schedules: linear (the seeds'), geometric start * (end/start)^prog, cosine (slow at both ends)
BETA_LINEAR = 0
BETA_GEOMETRIC = 1
BETA_COSINE = 2


@njit(cache=True, nogil=True, error_model="numpy")
def lr_at(lr, lr_min, kind, prog):
    """Learning rate at training progress ``prog`` in [0, 1)."""
    if kind == LR_COSINE:
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + np.cos(np.pi * prog))
    return lr


@njit(cache=True, nogil=True, error_model="numpy")
def alpha_at(kind, a0, a1, prog, until):
    """Trajectory weight at training progress ``prog`` in [0, 1) (see ALPHA_*)."""
    if kind == ALPHA_CONSTANT:
        return a0
    if kind == ALPHA_FALLING:
        hi, lo = max(a0, a1), min(a0, a1)
        return hi + (lo - hi) * prog
    if kind == ALPHA_EARLY:
        if prog >= until:
            return 0.0
        return a0 + (a1 - a0) * (prog / until)
    return a0 + (a1 - a0) * prog


@njit(cache=True, nogil=True, error_model="numpy")
def beta_at(kind, b0, b1, prog):
    """Smoothstep sharpness at training progress ``prog`` (see BETA_*)."""
    if kind == BETA_GEOMETRIC:
        return b0 * (b1 / b0) ** prog
    if kind == BETA_COSINE:
        return b0 + (b1 - b0) * 0.5 * (1.0 - np.cos(np.pi * prog))
    return b0 + (b1 - b0) * prog


@njit(cache=True, nogil=True, error_model="numpy")
def train_recipe(theta, m, v, X, Y, e0, e1, n_epochs, n_in, hidden, n_out, dt, lr, lr_min, lr_kind,
                 clip, student, mask_kind, beta0, beta1, teacher, alpha0, alpha1, losses, mses, x0,
                 n_main, alpha_kind, alpha_until, beta_kind, w_y_one, hw, lam, scale_kind, rank,
                 prog_frac, ft_lr, thr):
    """:func:`train_epochs` for a recipe (issue 10); :class:`LoopSettings` documents the extra arguments.

    :func:`train_epochs` is this loop with every recipe setting neutral. The
    schedules run over the ``n_main`` main epochs; epochs ``n_main .. n_epochs-1``
    are the fine-tune with trits frozen. ``thr`` (one per row) is state the caller
    keeps between calls (TWN thresholds, the frozen trits' thresholds).
    """
    B, T = X.shape[1], X.shape[2]
    dtype = theta.dtype
    ty = dtype.type
    m_eff = n_params(n_in, hidden, n_out)
    p = np.empty(m_eff, dtype)
    g_eff = np.empty(m_eff, dtype)
    g = np.zeros(theta.shape[0], dtype)
    hs = np.empty((T + 1, B, hidden), dtype)
    gs = np.empty((T, B, hidden), dtype)
    cs = np.empty((T, B, hidden), dtype)
    ys = np.empty((T, B, n_out), dtype)
    WT = np.empty((n_in + hidden, 2 * hidden), dtype)
    distill = teacher.shape[0] > 0
    ht = np.empty((T + 1, B, hidden), dtype)
    tgs = np.empty((T, B, hidden), dtype)
    tcs = np.empty((T, B, hidden), dtype)
    tys = np.empty((T, B, n_out), dtype)
    Yb = np.empty((B, T, n_out), dtype)  # the output target blended with the teacher's predictions
    no_hw = np.empty(0, dtype)
    n_rows = 2 * hidden + n_out
    live = np.ones(n_rows, np.int8)
    wk = work(B, T, n_in, hidden, n_out, theta)
    W0 = 2 * hidden * (n_in + hidden)  # the shadow weights: W, then Wout after b and tau
    o0 = W0 + 3 * hidden
    for e in range(e0, e1):
        fine = e >= n_main
        if fine and e == n_main and student:
            # the fine-tune starts: trits frozen as they are now, shadow weights baked to s * trit and
            # held (no gradient, no Adam momentum), thresholds halfway to the baked values
            if scale_kind >= SCALE_ABSMEAN:
                recompute_scales(theta, n_in, hidden, n_out, scale_kind, thr)
            bake(theta, n_in, hidden, n_out, scale_kind == SCALE_TWN, thr)
            for r in range(n_rows):
                thr[r] = ty(0.5) * theta[m_eff + r]
            m[:W0] = 0
            m[o0 : o0 + n_out * hidden] = 0
        prog = e / n_main if not fine else (e - n_main) / (n_epochs - n_main)
        use_thr = False
        if student:
            if fine:
                use_thr = True
            else:
                if scale_kind >= SCALE_ABSMEAN:
                    recompute_scales(theta, n_in, hidden, n_out, scale_kind, thr)
                use_thr = scale_kind == SCALE_TWN
                if prog_frac > 0.0:
                    n_q = int(n_rows * (e + 1) / (prog_frac * n_main))
                    for r in range(n_rows):
                        live[r] = 1 if rank[r] < n_q else 0
            quantize_ext(theta, n_in, hidden, n_out, use_thr, thr, live, p)
        else:
            p[:] = theta
        alpha = 0.0
        w_y = 1.0
        target = Y[e - x0]
        if distill and not fine:
            alpha = alpha_at(alpha_kind, alpha0, alpha1, prog, alpha_until)
            w_y = 1.0 if w_y_one else 1.0 - alpha
            _forward(teacher, X[e - x0], n_in, hidden, n_out, dt, ht, tgs, tcs, tys, WT, wk)
            if lam > 0.0:
                a, b = ty(1.0 - lam), ty(lam)
                for bb in range(B):
                    for t in range(T):
                        for o in range(n_out):
                            Yb[bb, t, o] = a * target[bb, t, o] + b * tys[t, bb, o]
                target = Yb
        loss, mse_ = _loss_grad(p, X[e - x0], target, n_in, hidden, n_out, dt, w_y, alpha,
                                ht, g_eff, hs, gs, cs, ys, WT, wk, hw if not fine else no_hw)
        if not np.isfinite(loss):
            return e
        losses[e] = loss
        mses[e] = mse_
        if student:
            beta = beta_at(beta_kind, beta0, beta1, min(prog, 1.0) if not fine else 1.0)
            ste_ext(theta, n_in, hidden, n_out, g_eff, beta, mask_kind, use_thr, thr, live, scale_kind, fine, g)
            clip_norm(g[:m_eff], clip)
            clip_norm(g[m_eff:], clip)
        else:
            g[:] = g_eff
            clip_norm(g, clip)
        rate = lr_at(ft_lr, lr_min, lr_kind, prog) if fine else lr_at(lr, lr_min, lr_kind, prog)
        adam(theta, g, m, v, rate, e + 1)
        if student:
            smin = dtype.type(SCALE_MIN)
            for k in range(m_eff, theta.shape[0]):
                if theta[k] < smin:
                    theta[k] = smin
    return -1


def train_epochs(
    theta, m, v, X, Y, e0, e1, n_epochs, n_in, hidden, n_out, dt,
    lr, lr_min, lr_kind, clip,
    student, mask_kind, beta0, beta1,
    teacher, alpha0, alpha1,
    losses, mses, x0=0,
):
    """Train ``theta`` in place for epochs ``e0 .. e1-1`` of ``n_epochs``.

    X, Y (E', B, T, I/O): the batches of epochs x0 .. x0 + E' - 1 (epoch e reads
    X[e - x0]), so the data can be made a chunk of epochs at a time. ``student``: theta holds
    shadow weights and scales, run hard-ternary. ``teacher``: effective
    parameters of the float teacher for trajectory distillation, or an empty
    array for none. Schedules run linearly over progress e / n_epochs.
    Writes each epoch's loss and output MSE (before its update) into
    ``losses``/``mses``. Returns -1, or the first epoch whose loss was not
    finite (training stops there, theta as it was before that epoch).
    """
    # the seeds' loop is the recipe loop with every recipe setting neutral: one loop body, one source of bits
    # (a plain function: a compiled wrapper would make Numba optimise the whole loop twice on a first run)
    empty = np.empty(0, theta.dtype)
    n_rows = 2 * hidden + n_out
    return int(train_recipe(theta, m, v, X, Y, e0, e1, n_epochs, n_in, hidden, n_out, dt, float(lr), float(lr_min),
                            lr_kind, float(clip), bool(student), mask_kind, float(beta0), float(beta1), teacher,
                            float(alpha0), float(alpha1), losses, mses, x0, n_epochs, ALPHA_LINEAR, 0.5, BETA_LINEAR,
                            False, empty, 0.0, SCALE_LEARNED, np.zeros(n_rows, np.int64), 0.0, float(lr),
                            np.zeros(n_rows, theta.dtype)))


# --- the typed entry point: callers name the schedule instead of passing 25 positional arguments ----

@dataclass(frozen=True)
class LoopSettings:
    """What :func:`train_epochs` needs besides the arrays: schedule, optimiser and the student's switches.

    ``beta`` and ``alpha`` are (start, end) of the smoothstep sharpness and the
    trajectory weight, run linearly over the epochs; ``lr_kind`` is
    :data:`LR_CONSTANT` or :data:`LR_COSINE`; ``mask_kind`` a mask of
    :mod:`ternq.kernels.ternary`.
    """

    n_epochs: int
    dt: float
    lr: float
    lr_min: float
    lr_kind: int = LR_COSINE
    clip: float = 5.0
    student: bool = False
    mask_kind: int = 0
    beta: tuple[float, float] = (1.0, 1.0)
    alpha: tuple[float, float] = (0.0, 0.0)
    # the recipes (issue 10); with ext False none of these is read and the seeds' loop runs
    ext: bool = False
    n_main: int = -1  # epochs before the fine-tune (-1: all of n_epochs; 0: all are fine-tune)
    alpha_kind: int = ALPHA_LINEAR
    alpha_until: float = 0.5  # ALPHA_EARLY: the share of the main epochs with distillation
    beta_kind: int = BETA_LINEAR
    w_y_one: bool = False  # the output term's weight: 1 instead of 1 - alpha
    hidden_weights: np.ndarray | None = None  # per-unit weights of the trajectory term (None: 1)
    output_teacher: float = 0.0  # share of the teacher's predictions in the output target
    scale_kind: int = 0  # ternary.SCALE_*
    row_rank: np.ndarray | None = None  # progressive: the order in which rows are quantized
    progressive: float = 0.0  # share of the main epochs over which the quantized rows grow to all
    finetune_lr: float = 1e-3  # the fine-tune's learning rate, scheduled as lr_kind down to lr_min

    def state(self, hidden: int, n_out: int, dtype) -> np.ndarray:
        """The per-row thresholds :func:`train_recipe` keeps between calls (make once per training)."""
        return np.zeros(2 * hidden + n_out, dtype)


def run_epochs(theta: np.ndarray, m: np.ndarray, v: np.ndarray, X: np.ndarray, Y: np.ndarray, e0: int, e1: int,
               dims: tuple[int, int, int], s: LoopSettings, teacher: np.ndarray | None,
               losses: np.ndarray, mses: np.ndarray, x0: int = 0, thr: np.ndarray | None = None) -> int:
    """Train ``theta`` (with Adam moments ``m``, ``v``) in place for epochs ``e0 .. e1-1``.

    Parameters
    ----------
    theta, m, v : np.ndarray
        Parameters and Adam moments, one dtype, updated in place.
    X, Y : np.ndarray
        The batches of epochs ``x0 ..``, (E', B, T, n_in) and (E', B, T, n_out); they must hold e0 .. e1-1.
    e0, e1 : int
        The epochs to run, of ``s.n_epochs``.
    dims : (n_in, hidden, n_out)
    s : LoopSettings
        Schedule, optimiser and the student's switches.
    teacher : np.ndarray or None
        The float teacher's effective parameters for trajectory distillation (None: none).
    losses, mses : np.ndarray
        Per-epoch loss and output MSE, written for the epochs run.
    x0 : int
        The epoch of ``X[0]``.
    thr : np.ndarray, optional
        A recipe's per-row state (:meth:`LoopSettings.state`), kept by the caller between calls.

    Returns
    -------
    int
        -1, or the first epoch whose loss was not finite.
    """
    n_in, hidden, n_out = dims
    if not (x0 <= e0 <= e1 <= x0 + len(X)):
        raise ValueError(f"epochs {e0}..{e1 - 1} are not in the batches given (epochs {x0}..{x0 + len(X) - 1})")
    tp = np.empty(0, theta.dtype) if teacher is None else teacher
    if s.ext:
        dt = theta.dtype
        hw = np.empty(0, dt) if s.hidden_weights is None else np.ascontiguousarray(s.hidden_weights, dt)
        n_rows = 2 * hidden + n_out
        rank = np.arange(n_rows) if s.row_rank is None else np.ascontiguousarray(s.row_rank, np.int64)
        if thr is None:
            thr = s.state(hidden, n_out, dt)
        n_main = s.n_epochs if s.n_main < 0 else s.n_main
        return int(train_recipe(theta, m, v, X, Y, e0, e1, s.n_epochs, n_in, hidden, n_out, s.dt,
                                s.lr, s.lr_min, s.lr_kind, s.clip, s.student, s.mask_kind, s.beta[0], s.beta[1],
                                tp, s.alpha[0], s.alpha[1], losses, mses, x0,
                                n_main, s.alpha_kind, s.alpha_until, s.beta_kind, s.w_y_one, hw,
                                s.output_teacher, s.scale_kind, rank, s.progressive, s.finetune_lr, thr))
    return int(train_epochs(theta, m, v, X, Y, e0, e1, s.n_epochs, n_in, hidden, n_out, s.dt,
                            s.lr, s.lr_min, s.lr_kind, s.clip, s.student, s.mask_kind, s.beta[0], s.beta[1],
                            tp, s.alpha[0], s.alpha[1], losses, mses, x0))
