"""Coordinate search over trits: the C program's baseline, as a compiled kernel.

For every ternary weight in turn (W rows, then W_out), try the two other trit
values and keep a change only when the search objective (MSE on a fixed set of
sequences) strictly drops. Scales, biases and tau stay fixed. Candidates are
scored in place (one entry of the effective parameters changes, then changes
back): no copy of the model per candidate. Two shortcuts keep it cheap and
exact: a candidate's squared error only grows as steps are added, so its
forward pass stops as soon as it can no longer win; and a W_out flip leaves the
hidden states alone, so it is scored from the cached states in O(N T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernels.cell import _decay, n_params, sigmoid, tanh, unpack
from .model import Model, student_from
from .train import DT


@njit(cache=True, nogil=True)
def _sse(p, X, Y, n_in, hidden, n_out, dt, bound, hs):
    """Sum of squared errors over the set, abandoned (returns inf) once it reaches ``bound``.

    The cell of :func:`ternq.kernels.cell.forward`, time-major; fills hs (T+1, B, H).
    """
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    B, T = X.shape[0], X.shape[1]
    h2 = 2 * hidden
    one = p.dtype.type(1.0)
    decay = np.empty(hidden, p.dtype)
    _decay(tau, p.dtype.type(dt), decay)
    pre = np.empty(h2, p.dtype)
    hs[0, :, :] = 0
    sse = 0.0
    for t in range(T):
        for bb in range(B):
            for r in range(h2):
                acc = b[r]
                for j in range(n_in):
                    acc += X[bb, t, j] * W[r, j]
                for j in range(hidden):
                    acc += hs[t, bb, j] * W[r, n_in + j]
                pre[r] = acc
            for i in range(hidden):
                gate = sigmoid(pre[i])
                cand = tanh(pre[hidden + i])
                hs[t + 1, bb, i] = (one - gate) * hs[t, bb, i] * decay[i] + gate * cand
            for o in range(n_out):
                y = bout[o]
                for i in range(hidden):
                    y += Wout[o, i] * hs[t + 1, bb, i]
                e = np.float64(y) - np.float64(Y[bb, t, o])
                sse += e * e
        if sse >= bound:
            return np.inf
    return sse


@njit(cache=True, nogil=True)
def _out_sse(p, Y, n_in, hidden, n_out, hs):
    """Sum of squared errors from cached hidden states (valid while W is unchanged)."""
    _, _, _, Wout, bout = unpack(p, n_in, hidden, n_out)
    T, B = hs.shape[0] - 1, hs.shape[1]
    sse = 0.0
    for t in range(T):
        for bb in range(B):
            for o in range(n_out):
                y = bout[o]
                for i in range(hidden):
                    y += Wout[o, i] * hs[t + 1, bb, i]
                e = np.float64(y) - np.float64(Y[bb, t, o])
                sse += e * e
    return sse


@njit(cache=True, nogil=True)
def _search(p, scales, X, Y, n_in, hidden, n_out, dt, max_sweeps, history):
    """Coordinate search in place on effective parameters ``p``; returns (flips, sweeps)."""
    B, T = X.shape[0], X.shape[1]
    hs = np.empty((T + 1, B, hidden), p.dtype)
    scratch = np.empty_like(hs)
    W, _, _, Wout, _ = unpack(p, n_in, hidden, n_out)
    z, h2 = n_in + hidden, 2 * hidden
    best = _sse(p, X, Y, n_in, hidden, n_out, dt, np.inf, hs)
    history[0] = best
    flips = 0
    sweeps = 0
    for _ in range(max_sweeps):
        changed = 0
        for r in range(h2 + n_out):
            s = scales[r]
            for j in range(z if r < h2 else hidden):
                old = W[r, j] if r < h2 else Wout[r - h2, j]
                q_old = 0 if old == 0 else (1 if old > 0 else -1)
                for q in (-1, 0, 1):
                    if q == q_old:
                        continue
                    new = s * p.dtype.type(q)
                    if r < h2:
                        W[r, j] = new
                        sse = _sse(p, X, Y, n_in, hidden, n_out, dt, best, scratch)
                    else:
                        Wout[r - h2, j] = new
                        sse = _out_sse(p, Y, n_in, hidden, n_out, hs)
                    if sse < best:
                        best = sse
                        old = new
                        q_old = q
                        changed += 1
                        if r < h2:
                            hs[:] = scratch
                    elif r < h2:
                        W[r, j] = old
                    else:
                        Wout[r - h2, j] = old
        flips += changed
        sweeps += 1
        history[sweeps] = best
        if changed == 0:
            break
    return flips, sweeps


@dataclass
class SearchResult:
    """What a coordinate search did: objective MSE per sweep, flips and sweeps run."""

    mse_history: list[float]
    flips: int
    sweeps: int


def coordinate_search(model: Model, X: np.ndarray, Y: np.ndarray, max_sweeps: int = 5) -> tuple[Model, SearchResult]:
    """Refine a student's trits by coordinate search on the sequences X, Y.

    Parameters
    ----------
    model : Model
        A student (from training, or :func:`quantize_teacher`). Not modified.
    X, Y : np.ndarray
        The search set: inputs (N, T, n_in) and targets (N, T, n_out).
    max_sweeps : int
        Upper bound on sweeps; the search stops early after a sweep with no change.

    Returns
    -------
    (Model, SearchResult)
        A new student whose shadow weights are its searched effective weights
        (so it quantizes to exactly them), and the record of the search.
    """
    if model.kind != "student":
        raise ValueError("coordinate search works on a student; quantize a teacher first")
    if max_sweeps <= 0:
        raise ValueError(f"max_sweeps must be positive, not {max_sweeps}")
    I, H, O = model.dims
    p = model.params()
    scales = np.ascontiguousarray(model.theta[model.n_cell:])
    X = np.ascontiguousarray(X, np.float32)
    Y = np.ascontiguousarray(Y, np.float32)
    n = X.shape[0] * X.shape[1] * O
    history = np.full(max_sweeps + 1, np.nan)
    flips, sweeps = _search(p, scales, X, Y, I, H, O, DT, max_sweeps, history)
    out = model.copy()
    out.theta[: n_params(I, H, O)] = p  # s * trit quantizes back to trit exactly
    return out, SearchResult([float(h) / n for h in history[: sweeps + 1]], int(flips), int(sweeps))


def quantize_teacher(teacher: Model) -> Model:
    """Post-training quantization: the teacher's weights as trits with absmean row scales."""
    return student_from(teacher)
