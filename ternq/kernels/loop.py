"""The training loop over epochs, compiled: teacher and student share it.

Each epoch: quantize once (student), run the teacher alongside (distillation),
BPTT on the epoch's batch, STE mapping and mask (student), clip, Adam.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

from .cell import _forward, _loss_grad, n_params, work
from .optim import adam, clip_norm
from .ternary import SCALE_MIN, quantize, ste_backward

LR_CONSTANT = 0
LR_COSINE = 1


@njit(cache=True, nogil=True, error_model="numpy")
def lr_at(lr, lr_min, kind, prog):
    """Learning rate at training progress ``prog`` in [0, 1)."""
    if kind == LR_COSINE:
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + np.cos(np.pi * prog))
    return lr


@njit(cache=True, nogil=True, error_model="numpy")
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
    B, T = X.shape[1], X.shape[2]
    dtype = theta.dtype
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
    wk = work(B, T, n_in, hidden, n_out, theta)  # scratch of the cell, allocated once
    for e in range(e0, e1):
        prog = e / n_epochs
        if student:
            quantize(theta, n_in, hidden, n_out, p)
        else:
            p[:] = theta
        alpha = 0.0
        w_y = 1.0
        if distill:
            alpha = alpha0 + (alpha1 - alpha0) * prog
            w_y = 1.0 - alpha
            _forward(teacher, X[e - x0], n_in, hidden, n_out, dt, ht, tgs, tcs, tys, WT, wk)
        loss, mse_ = _loss_grad(p, X[e - x0], Y[e - x0], n_in, hidden, n_out, dt, w_y, alpha,
                                ht, g_eff, hs, gs, cs, ys, WT, wk)
        if not np.isfinite(loss):
            return e
        losses[e] = loss
        mses[e] = mse_
        if student:
            beta = beta0 + (beta1 - beta0) * prog
            ste_backward(theta, n_in, hidden, n_out, g_eff, beta, mask_kind, g)
            clip_norm(g[:m_eff], clip)
            clip_norm(g[m_eff:], clip)
        else:
            g[:] = g_eff
            clip_norm(g, clip)
        adam(theta, g, m, v, lr_at(lr, lr_min, lr_kind, prog), e + 1)
        if student:
            smin = dtype.type(SCALE_MIN)
            for k in range(m_eff, theta.shape[0]):
                if theta[k] < smin:
                    theta[k] = smin
    return -1


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


def run_epochs(theta: np.ndarray, m: np.ndarray, v: np.ndarray, X: np.ndarray, Y: np.ndarray, e0: int, e1: int,
               dims: tuple[int, int, int], s: LoopSettings, teacher: np.ndarray | None,
               losses: np.ndarray, mses: np.ndarray, x0: int = 0) -> int:
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

    Returns
    -------
    int
        -1, or the first epoch whose loss was not finite.
    """
    n_in, hidden, n_out = dims
    if not (x0 <= e0 <= e1 <= x0 + len(X)):
        raise ValueError(f"epochs {e0}..{e1 - 1} are not in the batches given (epochs {x0}..{x0 + len(X) - 1})")
    tp = np.empty(0, theta.dtype) if teacher is None else teacher
    return int(train_epochs(theta, m, v, X, Y, e0, e1, s.n_epochs, n_in, hidden, n_out, s.dt,
                            s.lr, s.lr_min, s.lr_kind, s.clip, s.student, s.mask_kind, s.beta[0], s.beta[1],
                            tp, s.alpha[0], s.alpha[1], losses, mses, x0))
