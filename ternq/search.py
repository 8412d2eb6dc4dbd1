"""Coordinate search over trits: the C program's baseline.

For every ternary weight in turn (W rows, then W_out), try the two other trit
values and keep a change only when the search objective (MSE on a fixed set of
sequences) strictly drops. Scales, biases and tau stay fixed. Candidates are
scored in place (one entry of the effective parameters changes, then changes
back): no copy of the model per candidate. Each score is one call of the
compiled cell forward that training and evaluation use, so the search needs no
kernel of its own (nothing more to compile, nothing to keep in step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels.cell import forward_pass, n_params, unpack, work
from .model import Model, student_from
from .rng import stream
from .settings import SearchSettings
from .tasks import Task
from .train import DT, finetune_scales, predict_mse


def _search(p, scales, X, Y, n_in, hidden, n_out, max_sweeps, history):
    """Coordinate search in place on effective parameters ``p``; returns (flips, sweeps).

    Each candidate is one entry of ``p`` changed in place and scored by the
    compiled cell forward (:func:`ternq.kernels.cell.forward`, the very kernel
    evaluation uses), then changed back if it does not win.
    """
    B, T = X.shape[0], X.shape[1]
    dtype = p.dtype
    hs, gs, cs = (np.empty((T + 1, B, hidden), dtype), np.empty((T, B, hidden), dtype),
                  np.empty((T, B, hidden), dtype))
    ys, WT = np.empty((T, B, n_out), dtype), np.empty((n_in + hidden, 2 * hidden), dtype)
    target = np.ascontiguousarray(Y.transpose(1, 0, 2), np.float64)
    wk = work(B, 0, n_in, hidden, n_out, p)

    def sse() -> float:
        forward_pass(p, X, n_in, hidden, n_out, DT, hs, gs, cs, ys, WT, wk)
        return float(np.sum((ys - target) ** 2))

    W, _, _, Wout, _ = unpack(p, n_in, hidden, n_out)
    h2 = 2 * hidden
    rows = [(W[r], scales[r]) for r in range(h2)] + [(Wout[o], scales[h2 + o]) for o in range(n_out)]
    best = sse()
    history[0] = best
    flips = sweeps = 0
    for _ in range(max_sweeps):
        changed = 0
        for row, s in rows:
            for j in range(row.shape[0]):
                old = row[j]
                for q in (-1, 0, 1):
                    new = dtype.type(s * q)
                    if new == old:
                        continue
                    row[j] = new
                    score = sse()
                    if score < best:
                        best, old = score, new
                        changed += 1
                    else:
                        row[j] = old
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
    if model.weight_format != "ternary":
        raise ValueError(f"coordinate search flips trits: it refines ternary students, not {model.weight_format}")
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
