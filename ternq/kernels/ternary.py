"""The ternary part of a student: a weight transform forward, a gradient mask backward.

A student's parameter vector ``theta`` is the cell layout of
:mod:`ternq.kernels.cell` (float *shadow* weights) followed by one positive
scale per row of W (2H rows) and of Wout (O rows). Forward, every run uses the
hard-ternary effective weights ``s_r * trit(W[r, j] / s_r)`` (:func:`quantize`).
Backward (:func:`ste_backward`), the straight-through estimator passes the
effective-weight gradient to the shadow weight, times an optional mask:

- ``MASK_NONE``: vanilla STE, mask 1.
- ``MASK_SEED``: the seeds' smoothstep bump at the zero/non-zero boundary,
  ``t = clamp((|w/s| - 0.5) * beta + 0.5, 0, 1)``, ``mask = 6 t (1 - t) beta``.
- ``MASK_REFERENCE``: the C program's ``1 - smoothstep(beta * |w/s - round(w/s)|)``,
  large at the trit centres instead.

The scale gradient treats the trits as frozen: ``dL/ds_r = sum_j dL/dWeff[r, j] * trit[r, j]``.
"""

import numpy as np
from numba import njit

from .cell import n_params, unpack

MASK_NONE = 0
MASK_SEED = 1
MASK_REFERENCE = 2
SCALE_MIN = 1e-6


@njit(cache=True, nogil=True, error_model="numpy")
def trit(w, s):
    """clamp(round(w / s), -1, 1), rounding halves away from zero (as C's roundf)."""
    a = abs(w / s)
    if a < 0.5:
        return w * 0
    return np.sign(w) + w * 0


@njit(cache=True, nogil=True, error_model="numpy")
def mask(w, s, beta, kind):
    """Gradient multiplier of one shadow weight (see the module docstring), in float64."""
    if kind == MASK_NONE:
        return 1.0
    a = abs(np.float64(w) / np.float64(s))
    if kind == MASK_SEED:
        t = min(max((a - 0.5) * beta + 0.5, 0.0), 1.0)
        return 6.0 * t * (1.0 - t) * beta
    x = min(max(beta * abs(a - np.floor(a + 0.5)), 0.0), 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)


@njit(cache=True, nogil=True, error_model="numpy")
def n_scales(hidden: int, n_out: int) -> int:
    return 2 * hidden + n_out


@njit(cache=True, nogil=True, error_model="numpy")
def _rows(theta, n_in, hidden, n_out):
    """Shadow weight rows and their scales, W rows first, then Wout rows."""
    W, _, _, Wout, _ = unpack(theta, n_in, hidden, n_out)
    scales = theta[n_params(n_in, hidden, n_out) :]
    return W, Wout, scales


@njit(cache=True, nogil=True, error_model="numpy")
def quantize(theta, n_in, hidden, n_out, p):
    """Write the effective (hard-ternary) parameters of ``theta`` into ``p``."""
    m = n_params(n_in, hidden, n_out)
    p[:] = theta[:m]
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    pW, _, _, pWout, _ = unpack(p, n_in, hidden, n_out)
    h2 = 2 * hidden
    for r in range(h2):
        s = scales[r]
        for j in range(W.shape[1]):
            pW[r, j] = s * trit(W[r, j], s)
    for o in range(n_out):
        s = scales[h2 + o]
        for j in range(hidden):
            pWout[o, j] = s * trit(Wout[o, j], s)


@njit(cache=True, nogil=True, error_model="numpy")
def ste_backward(theta, n_in, hidden, n_out, g_eff, beta, kind, g):
    """Map the effective-parameter gradient ``g_eff`` to the gradient ``g`` of ``theta``."""
    m = n_params(n_in, hidden, n_out)
    g[:m] = g_eff
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    gW, _, _, gWout, _ = unpack(g, n_in, hidden, n_out)
    gs = g[m:]
    h2 = 2 * hidden
    ty = g.dtype.type
    for r in range(h2 + n_out):
        s = scales[r]
        ds = ty(0.0)
        if r < h2:
            row, grow = W[r], gW[r]
        else:
            row, grow = Wout[r - h2], gWout[r - h2]
        for j in range(row.shape[0]):
            ds += grow[j] * trit(row[j], s)
            grow[j] = grow[j] * ty(mask(row[j], s, beta, kind))
        gs[r] = ds


@njit(cache=True, nogil=True, error_model="numpy")
def absmean_scales(theta, n_in, hidden, n_out):
    """Set each row's scale to the mean absolute value of its shadow weights."""
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    h2 = 2 * hidden
    for r in range(h2 + n_out):
        row = W[r] if r < h2 else Wout[r - h2]
        scales[r] = max(np.mean(np.abs(row)), SCALE_MIN)
