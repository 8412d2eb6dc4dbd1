"""The quantized part of a student: a weight transform forward, a gradient mask backward.

A student's parameter vector ``theta`` is the cell layout of
:mod:`ternq.kernels.cell` (float *shadow* weights) followed by its positive scales:
one per row of W (2H rows) and of Wout (O rows); with a scale group ``group`` > 0
one per run of ``group`` columns of each row (:func:`scale_cols`; the last run of a
row may be shorter); with ``group`` SCALE_BY_SIGN two per row, the first for the row's
weights w >= 0 and the second for its w < 0 (trained ternary quantization's two scales,
Zhu et al. 2017, each with its own rounding threshold s/2). Forward, every run uses the effective weights
``s_v * level(W[r, j], s_v, qmax)`` of the scale v that holds column j (:func:`quantize`), where the
weight format's ``qmax`` (:mod:`ternq.formats`) caps the integer level: 1 is ternary
(:func:`trit`), 2^(bits-1) - 1 a signed integer, ``BINARY`` (0) the sign (+1 at 0).
Backward (:func:`ste_backward`), the straight-through estimator passes the
effective-weight gradient to the shadow weight, times an optional mask (``a = |w/s|``):

- ``MASK_NONE``: vanilla STE, mask 1; binary: the clipped identity, 1 where ``a <= 1``
  (BinaryConnect's: a sign level never moves a shadow weight back from beyond the level).
- ``MASK_NOTES``: the design notes' smoothstep bump at the boundary between two levels
  nearest ``a`` (``b = k + 0.5``, k = 0 .. qmax - 1; binary: ``b = 0``),
  ``t = clamp((a - b) * beta + 0.5, 0, 1)``, ``mask = 6 t (1 - t) beta``.
- ``MASK_REFERENCE``: the C program's ``1 - smoothstep(beta * |a - c|)``, large at the
  level centre ``c`` nearest ``a`` instead (``round(a)``; capped at qmax for integer formats,
  uncapped for ternary as the C program; binary: ``c = 1``).

The scale gradient treats the levels as frozen: ``dL/ds_v = sum_j dL/dWeff[r, j] * level[r, j]`` over v's
columns j. Every per-row array of the kernels (``live``, ``qmax``, ``thr``) holds one entry per scale.
"""

import numpy as np
from numba import njit

from ..formats import BINARY
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
def level(w, s, qmax):
    """sign(w) min(round(|w / s|), qmax), rounding halves away from zero (as C's roundf); binary (qmax 0):
    sign(w) with +1 at 0. ``|w / s|`` is computed in w's type; the level comes back as a float64 (an exact
    small integer, which callers cast to their type). For qmax 1 it is :func:`trit`, bit for bit."""
    if qmax == BINARY:
        return -1.0 if w < 0 else 1.0
    if qmax == 1:
        return np.float64(trit(w, s))
    a = abs(w / s)
    if a < 0.5:
        return np.float64(w) * 0.0  # zero with w's sign, as trit's
    f = np.floor(a)
    k = np.float64(f)
    if a - f >= 0.5:  # the fraction is exact; floor(a + 0.5) may round up just below a half
        k += 1.0
    k = min(k, np.float64(qmax))
    return -k if w < 0 else k


@njit(cache=True, nogil=True, error_model="numpy")
def level_mask(w, s, beta, kind, qmax):
    """Gradient multiplier of one shadow weight of the format ``qmax`` (see the module docstring), in float64."""
    a = abs(np.float64(w) / np.float64(s))
    if qmax == BINARY:
        if kind == MASK_NONE:
            return 1.0 if a <= 1.0 else 0.0
        if kind == MASK_NOTES:
            t = min(max(a * beta + 0.5, 0.0), 1.0)
            return 6.0 * t * (1.0 - t) * beta
        x = min(max(beta * abs(a - 1.0), 0.0), 1.0)
        return 1.0 - x * x * (3.0 - 2.0 * x)
    if kind == MASK_NONE:
        return 1.0
    if kind == MASK_NOTES:
        b = min(max(np.floor(a) + 0.5, 0.5), qmax - 0.5)
        t = min(max((a - b) * beta + 0.5, 0.0), 1.0)
        return 6.0 * t * (1.0 - t) * beta
    c = np.floor(a + 0.5)
    if qmax > 1:
        c = min(c, np.float64(qmax))
    x = min(max(beta * abs(a - c), 0.0), 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)


@njit(cache=True, nogil=True, error_model="numpy")
def mask(w, s, beta, kind):
    """Gradient multiplier of one ternary shadow weight (see the module docstring), in float64."""
    return level_mask(w, s, beta, kind, 1)


SCALE_BY_SIGN = -1  # the kernels' ``group`` of two scales per row, by the weight's sign


def scale_layout(scale_group: int, scale_sign: bool) -> int:
    """The kernels' ``group`` of the settings ``scale_group`` and ``scale_sign`` (which exclude each other)."""
    return SCALE_BY_SIGN if scale_sign else scale_group


@njit(cache=True, nogil=True, error_model="numpy")
def n_scales(n_in: int, hidden: int, n_out: int, group: int = 0) -> int:
    """How many scales a student has: one per row (``group`` 0), one per ``group`` columns of each row, or two
    per row (SCALE_BY_SIGN)."""
    if group == SCALE_BY_SIGN:
        return 2 * (2 * hidden + n_out)
    if group <= 0:
        return 2 * hidden + n_out
    return 2 * hidden * -(-(n_in + hidden) // group) + n_out * -(-hidden // group)


@njit(cache=True, nogil=True, error_model="numpy")
def scale_cols(v, n_in, hidden, n_out, group):
    """The row r (W's rows, then Wout's) and the columns [ca, cb) of that row that scale ``v`` scales (by sign:
    the whole row, of one sign: :func:`scale_sign`)."""
    h2, z = 2 * hidden, n_in + hidden
    if group == SCALE_BY_SIGN:
        v //= 2
    if group <= 0:
        return v, 0, (z if v < h2 else hidden)
    per_w = -(-z // group)
    if v < h2 * per_w:
        ca = (v % per_w) * group
        return v // per_w, ca, min(ca + group, z)
    u = v - h2 * per_w
    per_o = -(-hidden // group)
    ca = (u % per_o) * group
    return h2 + u // per_o, ca, min(ca + group, hidden)


@njit(cache=True, nogil=True, error_model="numpy")
def scale_sign(v, group):
    """Which weights of its columns scale ``v`` scales: all (0), or by sign those >= 0 (1) or < 0 (-1)."""
    if group != SCALE_BY_SIGN:
        return 0
    return 1 if v % 2 == 0 else -1


@njit(cache=True, nogil=True, error_model="numpy")
def _member(w, sign):
    """Whether a weight ``w`` belongs to a scale of ``sign`` (:func:`scale_sign`)."""
    return sign == 0 or (w < 0) == (sign < 0)


def per_scale(rows: np.ndarray, n_in: int, hidden: int, n_out: int, group: int = 0) -> np.ndarray:
    """A per-row array (2H + O, ...) repeated for each of its row's scales (:func:`scale_cols`)."""
    rows = np.asarray(rows)
    if group == SCALE_BY_SIGN:
        return np.repeat(rows, 2, axis=0)
    if group <= 0:
        return rows
    per_w, per_o = -(-(n_in + hidden) // group), -(-hidden // group)
    counts = np.repeat(np.array([per_w, per_o]), [2 * hidden, n_out])
    return np.repeat(rows, counts, axis=0)


# A row's code in ``live`` (:func:`quantized_rows`): how much of it runs quantized. Only W's rows (columns
# [x ; h]) take the column codes; their float columns run their shadow weights with the identity as gradient.
ROW_FLOAT = 0  # the whole row in float
ROW_QUANTIZED = 1  # the whole row quantized
ROW_FLOAT_INPUT = 2  # the input columns (x) in float, the recurrent columns (h) quantized
ROW_FLOAT_RECURRENT = 3  # the recurrent columns in float, the input columns quantized


@njit(cache=True, nogil=True, error_model="numpy")
def quantized_cols(code, n_in, n_cols):
    """The columns [qa, qb) of a row of ``n_cols`` that run quantized under its ``code`` (the whole row for
    ROW_QUANTIZED, and for ROW_FLOAT, whose row is skipped before its columns are read)."""
    if code == ROW_FLOAT_INPUT:
        return n_in, n_cols
    if code == ROW_FLOAT_RECURRENT:
        return 0, n_in
    return 0, n_cols


@njit(cache=True, nogil=True, error_model="numpy")
def _rows(theta, n_in, hidden, n_out):
    """Shadow weight rows and their scales, W rows first, then Wout rows."""
    W, _, _, Wout, _ = unpack(theta, n_in, hidden, n_out)
    scales = theta[n_params(n_in, hidden, n_out) :]
    return W, Wout, scales


@njit(cache=True, nogil=True, error_model="numpy")
def _scaled(v, code, n_in, hidden, n_out, group):
    """Scale v's row index and its quantized columns [qa, qb): its columns under the row's ``code``."""
    r, ca, cb = scale_cols(v, n_in, hidden, n_out, group)
    qa, qb = quantized_cols(code, n_in, n_in + hidden if r < 2 * hidden else hidden)
    return r, max(qa, ca), min(qb, cb)


def row_qmax(qmax: int | np.ndarray, n_rows: int) -> np.ndarray:
    """(n_rows,) int64: each row's format code, from one code for all rows or a code per row."""
    out = np.ascontiguousarray(np.broadcast_to(np.asarray(qmax, np.int64), (n_rows,)))
    return out


def quantize(theta, n_in, hidden, n_out, p, qmax: int | np.ndarray = 1, live: np.ndarray | None = None,
             group: int = 0):
    """Write the effective parameters of ``theta`` into ``p``: every row's levels of its format ``qmax`` (one
    code, or one per scale: :func:`row_qmax`; ternary by default), scaled by their learned scales
    (:func:`quantize_ext` with no recipe); rows with ``live[v] == 0`` (:func:`quantized_rows`) run their float
    weights."""
    n = n_scales(n_in, hidden, n_out, group)  # a plain function: a compiled wrapper only lengthens a first compile
    live = np.ones(n, np.int8) if live is None else np.ascontiguousarray(live, np.int8)
    quantize_ext(theta, n_in, hidden, n_out, group, False, np.zeros(n, theta.dtype), live, row_qmax(qmax, n), p)


def ste_backward(theta, n_in, hidden, n_out, g_eff, beta, kind, g, qmax: int | np.ndarray = 1, group: int = 0):
    """Map the effective-parameter gradient ``g_eff`` to the gradient ``g`` of ``theta``: the straight-through
    estimator times the mask ``kind`` for the shadow weights, levels frozen for the scales (:func:`ste_ext` with
    no recipe)."""
    n = n_scales(n_in, hidden, n_out, group)
    ste_ext(theta, n_in, hidden, n_out, group, g_eff, float(beta), kind, False, np.zeros(n, theta.dtype),
            np.ones(n, np.int8), SCALE_LEARNED, False, row_qmax(qmax, n), g)


@njit(cache=True, nogil=True, error_model="numpy")
def init_scales(theta, n_in, hidden, n_out, group, qmax, live):
    """Each scale's start for its format ``qmax[v]``, from its quantized weights (``live``, the codes of
    :func:`quantized_rows`): ternary (and int2) absmean ``mean|w|``; binary ``mean|w|`` too (XNOR-net's L2-optimal
    sign scale); intN ``max|w| / qmax``, so that no weight clips at the start."""
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    h2 = 2 * hidden
    for v in range(scales.shape[0]):
        r, qa, qb = _scaled(v, live[v], n_in, hidden, n_out, group)
        row = W[r] if r < h2 else Wout[r - h2]
        part = np.abs(row[qa:qb])
        sign = scale_sign(v, group)
        if sign != 0:  # the weights of the scale's sign; none: the row's, so that the scale stays usable
            mine = np.empty(qb - qa, np.bool_)
            for j in range(qa, qb):
                mine[j - qa] = _member(row[j], sign)
            if mine.any():
                part = part[mine]
        if qmax[v] <= 1:
            scales[v] = max(np.mean(part), SCALE_MIN)
        else:
            scales[v] = max(np.max(part) / qmax[v], SCALE_MIN)


# ---------------------------------------------------------------- recipes
#
# The general forms of quantize and STE, which the training loop runs (the functions above are
# them with every recipe off). Per row r they know:
#   (one entry per scale: per row, per scale group of a row, or per sign of a row)
#   live[r]   1: the row runs quantized; 0: it still runs its float shadow weights (progressive
#             quantization, float_matrices), with the identity as its gradient and no scale gradient;
#             2 and 3: its input or its recurrent columns run float that way (quantized_cols);
#   thr[r]    with use_thr: the absolute threshold |w| > thr[r] of a non-zero trit (TWN, or the
#             trits frozen for the final fine-tune); without: trit(w, s), the notes' rounding.
#             Other formats' frozen levels read the baked weights at their baked scale 2 thr[r]
#             (level_thr).
#   qmax[r]   the row's format code (ternary 1, :mod:`ternq.formats`): one matrix may differ from another's
#             (mixed formats); levels are cast to theta's type.

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
def level_thr(w, t, qmax):
    """The level of ``w`` with the threshold ``t``: ternary :func:`trit_thr`; other formats round at the scale
    ``2 t`` (the frozen fine-tune's thresholds are half the baked scales)."""
    if qmax == 1:
        return np.float64(trit_thr(w, t))
    return level(w, t + t, qmax)


@njit(cache=True, nogil=True, error_model="numpy")
def recompute_scales(theta, n_in, hidden, n_out, group, kind, thr):
    """Scales from the shadow weights of their columns: absmean ``s = mean|w|`` (threshold s/2), or TWN
    ``delta = 0.7 mean|w|`` (written to ``thr``) and ``s = mean(|w| : |w| > delta)``."""
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    h2 = 2 * hidden
    for v in range(scales.shape[0]):
        r, ca, cb = scale_cols(v, n_in, hidden, n_out, group)
        sign = scale_sign(v, group)
        row = W[r] if r < h2 else Wout[r - h2]
        mean_abs = 0.0
        m = 0
        for j in range(ca, cb):
            if _member(row[j], sign):
                mean_abs += abs(np.float64(row[j]))
                m += 1
        mean_abs /= max(m, 1)
        if kind == SCALE_ABSMEAN:
            scales[v] = max(mean_abs, SCALE_MIN)
            continue
        delta = TWN_DELTA * mean_abs
        kept = 0.0
        n = 0
        for j in range(ca, cb):
            a = abs(np.float64(row[j]))
            if a > delta and _member(row[j], sign):
                kept += a
                n += 1
        scales[v] = max(kept / n if n > 0 else mean_abs, SCALE_MIN)
        thr[v] = delta


@njit(cache=True, nogil=True, error_model="numpy")
def quantize_ext(theta, n_in, hidden, n_out, group, use_thr, thr, live, qmax, p):
    """:func:`quantize` with float rows and columns (``live``: :func:`quantized_rows`'s codes, one per scale) and
    absolute thresholds (``use_thr``)."""
    ty = theta.dtype.type
    m = n_params(n_in, hidden, n_out)
    p[:] = theta[:m]
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    pW, _, _, pWout, _ = unpack(p, n_in, hidden, n_out)
    h2 = 2 * hidden
    for v in range(scales.shape[0]):
        if live[v] == 0:
            continue
        s = scales[v]
        r, qa, qb = _scaled(v, live[v], n_in, hidden, n_out, group)  # the other columns keep theta's copy
        if r < h2:
            row, prow = W[r], pW[r]
        else:
            row, prow = Wout[r - h2], pWout[r - h2]
        q = qmax[v]
        sign = scale_sign(v, group)
        if sign != 0:  # two scales per row: the weights of this one's sign
            for j in range(qa, qb):
                if _member(row[j], sign):
                    prow[j] = s * ty(level_thr(row[j], thr[v], q) if use_thr else level(row[j], s, q))
        elif use_thr:
            t = thr[v]
            for j in range(qa, qb):
                prow[j] = s * ty(level_thr(row[j], t, q))
        elif q == 1:  # ternary's own loop: the format's switch outside it
            for j in range(qa, qb):
                prow[j] = s * trit(row[j], s)
        else:
            for j in range(qa, qb):
                prow[j] = s * ty(level(row[j], s, q))


@njit(cache=True, nogil=True, error_model="numpy")
def ste_ext(theta, n_in, hidden, n_out, group, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
    """:func:`ste_backward` for the recipes.

    - float rows (``live[r] == ROW_FLOAT``) and a row's float columns (:func:`quantized_cols`): the identity, no
      scale gradient from them;
    - ``use_thr``: trits by threshold, the mask read at ``w / (2 thr)`` so that its boundary is the threshold;
    - ``scale_kind``: learned (levels frozen, as :func:`ste_backward`); LSQ (Esser et al. 2020:
      ``dWeff/ds = level - w/s`` inside the clipping range ``|w/s| < qmax``, ``level`` outside, times the
      gradient scale ``1/sqrt(n qmax)`` of a row of n quantized weights; not for binary, whose sign has no rounding
      step); absmean and TWN (ternary only): none (recomputed);
    - ``freeze``: the final fine-tune: no shadow-weight gradient, scales learned whatever ``scale_kind``.
    """
    m = n_params(n_in, hidden, n_out)
    g[:m] = g_eff
    W, Wout, scales = _rows(theta, n_in, hidden, n_out)
    gW, _, _, gWout, _ = unpack(g, n_in, hidden, n_out)
    gs = g[m:]
    h2 = 2 * hidden
    ty = g.dtype.type
    for v in range(gs.shape[0]):
        q = qmax[v]
        cap = ty(max(q, 1))  # LSQ's clipping range
        s = scales[v]
        ds = ty(0.0)
        if live[v] == ROW_FLOAT:
            gs[v] = ds
            continue
        r, qa, qb = _scaled(v, live[v], n_in, hidden, n_out, group)  # the float columns keep the identity
        if r < h2:
            row, grow = W[r], gW[r]
        else:
            row, grow = Wout[r - h2], gWout[r - h2]
        sign = scale_sign(v, group)
        if sign != 0:  # two scales per row: one pass over the weights of this one's sign, each read then masked
            n = 0
            sm = ty(2.0) * thr[v] if use_thr else s
            for j in range(qa, qb):
                if not _member(row[j], sign):
                    continue
                n += 1
                lv = level_thr(row[j], thr[v], q) if use_thr else level(row[j], s, q)
                rr = row[j] / s
                ds += grow[j] * (lv - rr if scale_kind == SCALE_LSQ and not freeze and abs(rr) < cap else lv)
                if freeze:
                    grow[j] = 0
                elif kind != MASK_NONE or q == BINARY:
                    grow[j] = grow[j] * ty(level_mask(row[j], sm, beta, kind, q))
            if freeze or scale_kind == SCALE_LEARNED:
                gs[v] = ds
            elif scale_kind == SCALE_LSQ:
                gs[v] = ds * ty(1.0 / np.sqrt(max(n, 1) * max(q, 1)))
            else:
                gs[v] = ty(0.0)
            continue
        # the scale's gradient (summed in float64: levels are float64) reads the effective gradient, then the
        # shadow weights' is masked in place: two passes with the switches outside them, so that the second
        # (no running sum) vectorizes
        if scale_kind == SCALE_LSQ and not freeze:
            for j in range(qa, qb):
                lv = level_thr(row[j], thr[v], q) if use_thr else level(row[j], s, q)
                rr = row[j] / s
                ds += grow[j] * (lv - rr if abs(rr) < cap else lv)
        elif use_thr:
            t = thr[v]
            for j in range(qa, qb):
                ds += grow[j] * level_thr(row[j], t, q)
        elif q == 1:
            for j in range(qa, qb):
                ds += grow[j] * trit(row[j], s)
        else:
            for j in range(qa, qb):
                ds += grow[j] * level(row[j], s, q)
        if freeze:
            grow[qa:qb] = 0
        elif kind != MASK_NONE or q == BINARY:
            sm = ty(2.0) * thr[v] if use_thr else s
            if q == 1:
                for j in range(qa, qb):
                    grow[j] = grow[j] * ty(mask(row[j], sm, beta, kind))
            else:
                for j in range(qa, qb):
                    grow[j] = grow[j] * ty(level_mask(row[j], sm, beta, kind, q))
        if freeze or scale_kind == SCALE_LEARNED:
            gs[v] = ds
        elif scale_kind == SCALE_LSQ:
            gs[v] = ds * ty(1.0 / np.sqrt((qb - qa) * max(q, 1)))
        else:
            gs[v] = ty(0.0)


@njit(cache=True, nogil=True, error_model="numpy")
def bake(theta, n_in, hidden, n_out, group, use_thr, thr, qmax):
    """Shadow weights := their effective weights ``s * level``, which quantize back to exactly the same
    levels under the notes' rounding (so a model trained with thresholds runs anywhere as trained)."""
    bake_rows(theta, n_in, hidden, n_out, group, use_thr, thr, np.ones(qmax.shape[0], np.int8), qmax)


@njit(cache=True, nogil=True, error_model="numpy")
def bake_rows(theta, n_in, hidden, n_out, group, use_thr, thr, live, qmax):
    """:func:`bake` of the quantized weights (``live``'s codes) only; float rows and columns keep theta's."""
    m = n_params(n_in, hidden, n_out)
    p = np.empty(m, theta.dtype)
    quantize_ext(theta, n_in, hidden, n_out, group, use_thr, thr, live, qmax, p)
    theta[:m] = p


# The parts of a student that may be kept in float (``float_matrices``): no rows, W's first H rows (the gate's),
# its next H rows (the candidate's), Wout's rows, or a part of every row of W: its input columns (those that read
# x) or its recurrent columns (those that read h_prev).
FLOAT_MATRICES = ("none", "gate", "cand", "out", "input", "recurrent")


def quantized_rows(hidden: int, n_out: int, float_matrices: str = "none") -> np.ndarray:
    """(2H + O,) int8: each row's code (ROW_QUANTIZED, ROW_FLOAT, or for W's rows ROW_FLOAT_INPUT and
    ROW_FLOAT_RECURRENT) for the part ``float_matrices`` kept in float."""
    if float_matrices not in FLOAT_MATRICES:
        raise ValueError(f"float_matrices must be one of {', '.join(FLOAT_MATRICES)}, not {float_matrices!r}")
    rows = np.full(2 * hidden + n_out, ROW_QUANTIZED, np.int8)
    if float_matrices in ("input", "recurrent"):
        rows[: 2 * hidden] = ROW_FLOAT_INPUT if float_matrices == "input" else ROW_FLOAT_RECURRENT
        return rows
    start, stop = {"none": (0, 0), "gate": (0, hidden), "cand": (hidden, 2 * hidden),
                   "out": (2 * hidden, 2 * hidden + n_out)}[float_matrices]
    rows[start:stop] = ROW_FLOAT
    return rows
