"""The ternary part of a student: a weight transform forward, a gradient mask backward.

A student's parameter vector ``theta`` is the cell layout of
:mod:`ternq.kernels.cell` (float *shadow* weights) followed by one positive
scale per row of W (2H rows) and of Wout (O rows). Forward, every run uses the
hard-ternary effective weights ``s_r * trit(W[r, j] / s_r)`` (:func:`quantize`).
Backward (:func:`ste_backward`), the straight-through estimator passes the
effective-weight gradient to the shadow weight, times an optional mask:

- ``MASK_NONE``: vanilla STE, mask 1.
- ``MASK_NOTES``: the design notes' smoothstep bump at the zero/non-zero boundary,
  ``t = clamp((|w/s| - 0.5) * beta + 0.5, 0, 1)``, ``mask = 6 t (1 - t) beta``.
- ``MASK_REFERENCE``: the C program's ``1 - smoothstep(beta * |w/s - round(w/s)|)``,
  large at the trit centres instead.

The scale gradient treats the trits as frozen: ``dL/ds_r = sum_j dL/dWeff[r, j] * trit[r, j]``.
"""

import numpy as np
from numba import njit

from .cell import n_params, unpack

MASK_NONE = 0
MASK_NOTES = 1
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
    if kind == MASK_NOTES:
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


def quantize(theta, n_in, hidden, n_out, p):
    """Write the effective (hard-ternary) parameters of ``theta`` into ``p``: every row ternary, scaled by its
    learned scale (:func:`quantize_ext` with no recipe)."""
    n_rows = 2 * hidden + n_out  # a plain function: a compiled wrapper only lengthens a first run's compilation
    quantize_ext(theta, n_in, hidden, n_out, False, np.zeros(n_rows, theta.dtype), np.ones(n_rows, np.int8), p)


def ste_backward(theta, n_in, hidden, n_out, g_eff, beta, kind, g):
    """Map the effective-parameter gradient ``g_eff`` to the gradient ``g`` of ``theta``: the straight-through
    estimator times the mask ``kind`` for the shadow weights, trits frozen for the scales (:func:`ste_ext` with
    no recipe)."""
    n_rows = 2 * hidden + n_out
    ste_ext(theta, n_in, hidden, n_out, g_eff, float(beta), kind, False, np.zeros(n_rows, theta.dtype),
            np.ones(n_rows, np.int8), SCALE_LEARNED, False, g)


@njit(cache=True, nogil=True, error_model="numpy")
def absmean_scales(theta, n_in, hidden, n_out):
    """Set each row's scale to the mean absolute value of its shadow weights."""
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    h2 = 2 * hidden
    for r in range(h2 + n_out):
        row = W[r] if r < h2 else Wout[r - h2]
        scales[r] = max(np.mean(np.abs(row)), SCALE_MIN)


# ---------------------------------------------------------------- recipes
#
# The general forms of quantize and STE, which the training loop runs (the functions above are
# them with every recipe off). Per row r they know:
#   live[r]   1: the row runs hard-ternary; 0: it still runs its float shadow weights (progressive
#             quantization), with the identity as its gradient and no scale gradient;
#   thr[r]    with use_thr: the absolute threshold |w| > thr[r] of a non-zero trit (TWN, or the
#             trits frozen for the final fine-tune); without: trit(w, s), the notes' rounding.

SCALE_LEARNED = 0
SCALE_LSQ = 1
SCALE_ABSMEAN = 2
SCALE_TWN = 3
TWN_DELTA = 0.7  # Li et al. 2016: threshold 0.7 mean|w|


@njit(cache=True, nogil=True, error_model="numpy")
def trit_thr(w, t):
    """sign(w) where |w| > t, else 0 (TWN's ternarization with an absolute threshold)."""
    if abs(w) > t:
        return np.sign(w) + w * 0
    return w * 0


@njit(cache=True, nogil=True, error_model="numpy")
def recompute_scales(theta, n_in, hidden, n_out, kind, thr):
    """Scales from the shadow weights: absmean ``s = mean|w|`` (threshold s/2), or TWN
    ``delta = 0.7 mean|w|`` (written to ``thr``) and ``s = mean(|w| : |w| > delta)``."""
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    h2 = 2 * hidden
    for r in range(h2 + n_out):
        row = W[r] if r < h2 else Wout[r - h2]
        mean_abs = 0.0
        for j in range(row.shape[0]):
            mean_abs += abs(np.float64(row[j]))
        mean_abs /= row.shape[0]
        if kind == SCALE_ABSMEAN:
            scales[r] = max(mean_abs, SCALE_MIN)
            continue
        delta = TWN_DELTA * mean_abs
        kept = 0.0
        n = 0
        for j in range(row.shape[0]):
            a = abs(np.float64(row[j]))
            if a > delta:
                kept += a
                n += 1
        scales[r] = max(kept / n if n > 0 else mean_abs, SCALE_MIN)
        thr[r] = delta


@njit(cache=True, nogil=True, error_model="numpy")
def quantize_ext(theta, n_in, hidden, n_out, use_thr, thr, live, p):
    """:func:`quantize` with float rows (``live[r] == 0``) and absolute thresholds (``use_thr``)."""
    m = n_params(n_in, hidden, n_out)
    p[:] = theta[:m]
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    pW, _, _, pWout, _ = unpack(p, n_in, hidden, n_out)
    h2 = 2 * hidden
    for r in range(h2 + n_out):
        if live[r] == 0:
            continue
        s = scales[r]
        if r < h2:
            row, prow = W[r], pW[r]
        else:
            row, prow = Wout[r - h2], pWout[r - h2]
        if use_thr:
            t = thr[r]
            for j in range(row.shape[0]):
                prow[j] = s * trit_thr(row[j], t)
        else:
            for j in range(row.shape[0]):
                prow[j] = s * trit(row[j], s)


@njit(cache=True, nogil=True, error_model="numpy")
def ste_ext(theta, n_in, hidden, n_out, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, g):
    """:func:`ste_backward` for the recipes.

    - float rows (``live[r] == 0``): the identity, no scale gradient;
    - ``use_thr``: trits by threshold, the mask read at ``w / (2 thr)`` so that its boundary is the threshold;
    - ``scale_kind``: learned (trits frozen, as :func:`ste_backward`); LSQ (Esser et al. 2020:
      ``dWeff/ds = trit - w/s`` inside the clipping range ``|w/s| < 1``, ``trit`` outside, times the
      gradient scale ``1/sqrt(n)`` of a row of n weights); absmean and TWN: none (recomputed);
    - ``freeze``: the final fine-tune: no shadow-weight gradient, scales learned whatever ``scale_kind``.
    """
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
        if live[r] == 0:
            gs[r] = ds
            continue
        # the scale's gradient reads the effective gradient, then the shadow weights' is masked in place: two
        # passes with the switches outside them, so that the second (no running sum) vectorizes
        if scale_kind == SCALE_LSQ and not freeze:
            for j in range(row.shape[0]):
                q = trit_thr(row[j], thr[r]) if use_thr else trit(row[j], s)
                rr = row[j] / s
                ds += grow[j] * (q - rr if abs(rr) < 1 else q)
        elif use_thr:
            t = thr[r]
            for j in range(row.shape[0]):
                ds += grow[j] * trit_thr(row[j], t)
        else:
            for j in range(row.shape[0]):
                ds += grow[j] * trit(row[j], s)
        if freeze:
            grow[:] = 0
        elif kind != MASK_NONE:
            sm = ty(2.0) * thr[r] if use_thr else s
            for j in range(row.shape[0]):
                grow[j] = grow[j] * ty(mask(row[j], sm, beta, kind))
        if freeze or scale_kind == SCALE_LEARNED:
            gs[r] = ds
        elif scale_kind == SCALE_LSQ:
            gs[r] = ds * ty(1.0 / np.sqrt(row.shape[0]))
        else:
            gs[r] = ty(0.0)


@njit(cache=True, nogil=True, error_model="numpy")
def bake(theta, n_in, hidden, n_out, use_thr, thr):
    """Shadow weights := their effective weights ``s * trit``, which quantize back to exactly the same
    trits under the notes' rounding (so a model trained with thresholds runs anywhere as trained)."""
    m = n_params(n_in, hidden, n_out)
    p = np.empty(m, theta.dtype)
    live = np.ones(2 * hidden + n_out, np.int8)
    quantize_ext(theta, n_in, hidden, n_out, use_thr, thr, live, p)
    theta[:m] = p
