"""Coordinate search over trits: the C program's baseline.

For every ternary weight in turn (W rows, then W_out), try the two other trit
values and keep a change only when the search objective (MSE on a fixed set of
sequences) strictly drops. Scales, biases and tau stay fixed. Candidates are
scored in place (one entry of the effective parameters changes, then changes
back): no copy of the model per candidate. Each score is one call of the
compiled cell forward that training and evaluation use (nothing to keep in
step), and the whole search is one compiled loop around it that holds no lock:
searches on several threads run side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernels.cell import forward_pass, n_params, work
from .model import Model, student_from
from .rng import stream
from .settings import SearchSettings
from .tasks import Task
from .train import DT, finetune_scales, predict_mse


@njit(cache=True, nogil=True, error_model="numpy")
def _block(a, lo, n):
    """numpy's pairwise summation of at most 128 terms: eight running sums, or a plain loop below 8."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def _pairwise(a, n):
    """numpy's pairwise summation of a[:n] (float64), bit for bit (np.sum of a contiguous array): halves
    (the first a multiple of 8) summed apart and added, down to blocks of 128. Its recursion runs on
    a stack of its own (a compiled recursive function is not safe to compile beside running threads)."""
    if n <= 128:
        return _block(a, 0, n)
    lo_s = np.empty(64, np.int64)
    n_s = np.empty(64, np.int64)
    stage = np.empty(64, np.int64)  # 0 fresh, 1 first half running, 2 first half summed, 3 second running, 4 both
    left = np.empty(64)
    right = np.empty(64)
    lo_s[0], n_s[0], stage[0] = 0, n, 0
    sp = 1
    while True:
        f = sp - 1
        m = n_s[f]
        half = m // 2 - (m // 2) % 8
        if m <= 128:
            v = _block(a, lo_s[f], m)
        elif stage[f] == 0 or stage[f] == 2:
            first = stage[f] == 0
            stage[f] += 1
            lo_s[sp] = lo_s[f] if first else lo_s[f] + half
            n_s[sp] = half if first else m - half
            stage[sp] = 0
            sp += 1
            continue
        else:
            v = left[f] + right[f]
        sp -= 1
        if sp == 0:
            return v
        f = sp - 1
        if stage[f] == 1:
            left[f] = v
            stage[f] = 2
        else:
            right[f] = v
            stage[f] = 4


@njit(cache=True, nogil=True, error_model="numpy")
def _sse(ys, target, sq):
    """float(np.sum((ys - target) ** 2)) for float32 ys and float64 target of one shape, bit for bit."""
    k = 0
    for t in range(ys.shape[0]):
        for bb in range(ys.shape[1]):
            for o in range(ys.shape[2]):
                d = np.float64(ys[t, bb, o]) - target[t, bb, o]
                sq[k] = d * d
                k += 1
    return _pairwise(sq, k)


@njit(cache=True, nogil=True, error_model="numpy")
def _search_kernel(p, scales, X, target, n_in, hidden, n_out, dt, max_sweeps, history, hs, gs, cs, ys, WT, wk, sq):
    """The coordinate search in place on p, compiled: it holds no lock, so searches on several threads
    run side by side."""
    z, h2 = n_in + hidden, 2 * hidden
    forward_pass(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, wk)
    best = _sse(ys, target, sq)
    history[0] = best
    flips = sweeps = 0
    for _ in range(max_sweeps):
        changed = 0
        for r in range(h2 + n_out):
            if r < h2:
                o0, w = r * z, z
            else:
                o0, w = h2 * z + 3 * hidden + (r - h2) * hidden, hidden
            s = scales[r]
            for j in range(w):
                k = o0 + j
                old = p[k]
                for q in (-1, 0, 1):
                    new = s * q  # exact: stored in p's dtype unchanged
                    if new == old:
                        continue
                    p[k] = new
                    forward_pass(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, wk)
                    score = _sse(ys, target, sq)
                    if score < best:
                        best, old = score, p[k]
                        changed += 1
                    else:
                        p[k] = old
        flips += changed
        sweeps += 1
        history[sweeps] = best
        if changed == 0:
            break
    return flips, sweeps


def _search(p, scales, X, Y, n_in, hidden, n_out, max_sweeps, history):
    """Coordinate search in place on effective parameters ``p``; returns (flips, sweeps).

    Each candidate is one entry of ``p`` changed in place and scored by the
    compiled cell forward (:func:`ternq.kernels.cell.forward_pass`, the very kernel
    evaluation uses), then changed back if it does not win; the objective is the
    squared error summed as numpy sums it.
    """
    B, T = X.shape[0], X.shape[1]
    dtype = p.dtype
    hs, gs, cs = (np.empty((T + 1, B, hidden), dtype), np.empty((T, B, hidden), dtype),
                  np.empty((T, B, hidden), dtype))
    ys, WT = np.empty((T, B, n_out), dtype), np.empty((n_in + hidden, 2 * hidden), dtype)
    target = np.ascontiguousarray(Y.transpose(1, 0, 2), np.float64)
    wk = work(B, 0, n_in, hidden, n_out, p)
    flips, sweeps = _search_kernel(p, scales, X, target, n_in, hidden, n_out, DT, max_sweeps, history, hs, gs, cs, ys,
                                   WT, wk, np.empty(T * B * n_out))
    return int(flips), int(sweeps)


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
    if model.weight_format != "ternary":
        raise ValueError(f"coordinate search flips trits: it refines ternary students, not {model.weight_format}")
    if model.scale_layout or model.float_matrices != "none":
        raise ValueError("coordinate search refines students of one scale per row, all quantized")
    if max_sweeps <= 0:
        raise ValueError(f"max_sweeps must be positive, not {max_sweeps}")
    I, H, O = model.dims
    p = model.params()
    scales = np.ascontiguousarray(model.theta[model.n_cell:])
    X = np.ascontiguousarray(X, np.float32)
    Y = np.ascontiguousarray(Y, np.float32)
    n = X.shape[0] * X.shape[1] * O
    history = np.full(max_sweeps + 1, np.nan)
    flips, sweeps = _search(p, scales, X, Y, I, H, O, max_sweeps, history)
    out = model.copy()
    out.theta[: n_params(I, H, O)] = p  # s * trit quantizes back to trit exactly
    return out, SearchResult([float(h) / n for h in history[: sweeps + 1]], int(flips), int(sweeps))


def quantize_teacher(teacher: Model) -> Model:
    """Post-training quantization: the teacher's weights as trits with absmean row scales."""
    return student_from(teacher)


def search_set(task: Task, settings: SearchSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The search objective's sequences: fixed, from the training distribution, drawn from the seed's own stream."""
    saved = task.steps
    try:
        task.steps = settings.steps
        X, Y = task.batches(stream(seed, "cs-data"), 1, settings.sequences)
    finally:
        task.steps = saved
    return X[0], Y[0]


def search_from(start: Model, task: Task, settings: SearchSettings, seed: int) -> tuple[Model, SearchResult]:
    """Coordinate search from ``start`` (a student) on the seed's search set: what ``ternq cs`` and the
    experiment's CS rows both run.

    Parameters
    ----------
    start : Model
        A student (trained, or :func:`quantize_teacher` of a teacher). Not modified.
    task : Task
        Where the search set comes from.
    settings : SearchSettings
        Sweeps and the size of the search set.
    seed : int
        Seeds the search set's stream.
    """
    settings.validate()
    X, Y = search_set(task, settings, seed)
    model, res = coordinate_search(start, X, Y, settings.sweeps)
    if settings.finetune_epochs == 0:
        return model, res  # the rounds would repeat a search that has stopped
    history, flips, sweeps = [], 0, 0
    for r in range(settings.rounds):
        if r:
            model, res = coordinate_search(model, X, Y, settings.sweeps)
        history += res.mse_history
        flips += res.flips
        sweeps += res.sweeps
        # the fine-tune's data: a stream of the seed's own per round
        model, _ = finetune_scales(model, task, settings.finetune_epochs, settings.finetune_lr, seed,
                                   data=f"cs-finetune-{r}")
        history.append(float(predict_mse(model, X, Y)))
    return model, SearchResult(history, flips, sweeps)
