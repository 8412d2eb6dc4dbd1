"""Many models of one shape trained together: one compiled call, one SIMD lane per model.

:func:`train_teachers` and :func:`train_students` return, for each model, the same
``(Model, History)`` (same bits, same meta) as :func:`ternq.train.train_teacher` and
:func:`ternq.train.train_student` would, recipes included, so seeds of a sweep, the
students of one width of a factorial and the runs of a design can share a batch. Models that
share a seed share their data arrays (the common random numbers of the single path).

:func:`train_batch` is the typed wrapper over the kernel
(:func:`ternq.kernels.multi.train_epochs`) for callers that bring their own
parameters and data.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from .kernels import multi as K
from .kernels.cache import compiled as kernels_compiled
from .kernels.cell import n_params
from .kernels.loop import Loop, select
from .kernels.ternary import n_scales
from .model import Model, init_teacher, student_from
from .rng import stream
from .tasks import Task
from .train import (
    DivergedError,
    History,
    Lane,
    Progress,
    StudentConfig,
    TeacherConfig,
    finish,
    loop_of,
    recipe_arrays,
    uses_recipe,
)

__all__ = ["Lane", "BatchResult", "train_batch", "train_teachers", "train_students", "BATCH_MIN", "BATCH_MAX",
           "batch_min", "compiled"]

# Break-even and best group sizes of the batched kernels against the single path (per-model
# throughput; benchmarks/multi.py, and its --factorial-students for the four students of a factorial's
# width, two of them distilled; thread CPU time on a loaded 2-core machine):
# at H = 16, 0.3x at M = 1, 1.0-1.2x at M = 4, 1.8x at M = 8, 1.9-3x at M = 16; at H = 32 the
# factorial's students give 0.65x at M = 4, 1.0x at M = 8, 1.3x at M = 16 (the lanes' sequences spill
# out of the L2 cache). Larger groups than BATCH_MAX spill further.
BATCH_MIN = 4
BATCH_MAX = K.BLOCKS[0]
NARROW = 16  # widest hidden layer at which BATCH_MIN models repay a batch; wider ones need BATCH_MAX


def batch_min(hidden: int) -> int:
    """The fewest models of width ``hidden`` that train faster batched than one by one."""
    return BATCH_MIN if hidden <= NARROW else BATCH_MAX


def compiled() -> bool:
    """Whether the batched kernel is compiled in this process or in Numba's cache (loading it is cheap).

    Callers that may choose either path (results are the same bits) use it to spare a
    first run the batched kernel's compilation when a few models would not repay it.
    """
    return kernels_compiled(K.train_epochs, np.float32)


@dataclass
class BatchResult:
    """What :func:`train_batch` returns; model index first in every array.

    theta (M, P) trained parameters; losses, mses (M, E) per epoch (NaN from a
    model's divergence on); diverged (M,) -1 or the first epoch whose loss was not finite;
    thresholds (M, 2H + O) the per-row state training left (:func:`ternq.train.finish` reads it).
    """

    theta: np.ndarray
    losses: np.ndarray
    mses: np.ndarray
    diverged: np.ndarray
    thresholds: np.ndarray


def train_batch(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, data: Sequence[int],
                dims: tuple[int, int, int], lanes: Sequence[Lane], *, student: bool,
                teacher: np.ndarray | None = None, progress: Progress | None = None,
                chunks: int = 100, group: int | None = None) -> BatchResult:
    """Train M models of one shape together; each gets the single path's bits.

    Parameters
    ----------
    theta : np.ndarray
        (M, P) float32 initial parameters, one row per model (a student's with its scales).
    X, Y : np.ndarray
        (D, E, B, T, n_in) and (D, E, B, T, n_out) float32: D data sets of E epochs.
    data : sequence of int
        For each model, the index of its data set in X and Y.
    dims : (n_in, hidden, n_out)
    lanes : sequence of Lane
        Each model's settings (:class:`ternq.train.Lane`); the same ``finetune_epochs`` for all.
    student : bool
        Hard-ternary students (theta has row scales) or float teachers.
    teacher : np.ndarray, optional
        (M, Pe) float32 effective teacher parameters for the models with ``distill`` or ``distill_output``
        (rows of the others are ignored).
    progress : callable, optional
        ``progress(done, total, loss)`` between chunks; loss is the mean last loss of the live models.
    chunks : int
        How many compiled calls the epochs are split into (results do not depend on it).
    group : int, optional
        At most this many models per compiled call (default 16, one vector block: the
        fastest per model; larger groups spill out of the caches). Results do not depend on it.

    Returns
    -------
    BatchResult
    """
    n_in, hidden, n_out = (int(d) for d in dims)
    if min(n_in, hidden, n_out) <= 0:
        raise ValueError(f"dims must be positive, not {dims}")
    pe = n_params(n_in, hidden, n_out)
    n_s = n_scales(n_in, hidden, n_out, getattr(lanes[0], "scale_layout", 0) if len(lanes) else 0)
    P = pe + (n_s if student else 0)
    theta = np.asarray(theta)
    if theta.ndim != 2 or theta.shape[1] != P or theta.shape[0] == 0:
        raise ValueError(f"theta must have shape (M, {P}) with M >= 1, not {theta.shape}")
    M = theta.shape[0]
    if len(lanes) != M:
        raise ValueError(f"need one Lane per model: {len(lanes)} for {M} models")
    X = np.ascontiguousarray(X, np.float32)
    Y = np.ascontiguousarray(Y, np.float32)
    if X.ndim != 5 or Y.ndim != 5 or X.shape[:4] != Y.shape[:4] or X.shape[4] != n_in or Y.shape[4] != n_out:
        raise ValueError(f"X, Y must be (D, E, B, T, {n_in} / {n_out}), not {X.shape} and {Y.shape}")
    D, E = X.shape[:2]
    if min(X.shape[:4]) == 0:
        raise ValueError(f"X has an empty axis: {X.shape}")
    data = np.asarray(data, np.int64)
    if data.shape != (M,) or data.min() < 0 or data.max() >= D:
        raise ValueError(f"data must hold {M} indices in [0, {D})")
    for lane in lanes:
        if not isinstance(lane, Lane):
            raise TypeError(f"lanes must be Lane objects, not {type(lane).__name__}")
        lane.check(student)
    if len({lane.finetune_epochs for lane in lanes}) > 1 or lanes[0].finetune_epochs > E:
        raise ValueError(f"the models of a batch need one fine-tune of at most {E} epochs")
    loop = loop_of(list(lanes), (n_in, hidden, n_out), E, student)
    on = np.array([lane.uses_teacher for lane in lanes])
    if on.any():
        if not student:
            raise ValueError("only students distill")
        if teacher is None or np.shape(teacher) != (M, pe):
            raise ValueError(f"distillation needs teacher parameters of shape ({M}, {pe})")
        teacher = np.asarray(teacher, np.float32)
    group = K.BLOCKS[0] if group is None else int(group)
    if group < 1:
        raise ValueError(f"group must be positive, not {group}")
    # groups of at most `group` models, one compiled call each per chunk of epochs
    groups = [_Group(np.arange(g0, min(M, g0 + group)), theta, data, loop, teacher, on, pe, E)
              for g0 in range(0, M, group)]
    step = max(1, -(-E // max(1, int(chunks))))
    for e0 in range(0, E, step):
        e1 = min(E, e0 + step)
        for gr in groups:
            K.train_epochs(gr.theta, gr.adam_m, gr.adam_v, X, Y, gr.data, e0, e1, gr.loop, gr.teacher,
                           gr.thresholds, gr.losses, gr.mses, gr.bad)
        if progress is not None:
            last = np.concatenate([gr.losses[e1 - 1, : len(gr.idx)] for gr in groups])
            last = last[np.isfinite(last)]
            progress(e1, E, float(last.mean()) if last.size else math.nan)
    out = BatchResult(np.empty((M, P), np.float32), np.empty((M, E)), np.empty((M, E)), np.empty(M, np.int64),
                      np.empty((M, n_s), np.float32))
    for gr in groups:
        n = len(gr.idx)
        out.theta[gr.idx] = gr.theta[:n]
        out.losses[gr.idx] = gr.losses[:, :n].T
        out.mses[gr.idx] = gr.mses[:, :n].T
        out.diverged[gr.idx] = gr.bad[:n]
        out.thresholds[gr.idx] = gr.thresholds[:n]
    return out


class _Group:
    """The kernel's arrays for some of the models, padded to whole vectors of LANES with copies
    of the group's first model (deterministic; their results are discarded)."""

    def __init__(self, idx, theta, data, loop: Loop, teacher, on, pe, E):
        self.idx = idx
        n = len(idx)
        full = np.concatenate([idx, np.full(-(-n // K.LANES) * K.LANES - n, idx[0])])
        Mp = len(full)
        self.theta = np.ascontiguousarray(theta[full], np.float32)
        self.adam_m = np.zeros_like(self.theta)
        self.adam_v = np.zeros_like(self.theta)
        self.data = np.ascontiguousarray(data[full])
        self.loop = select(loop, full)
        self.thresholds = np.zeros((Mp, n_scales(loop.n_in, loop.hidden, loop.n_out, loop.group)), np.float32)
        if on[full].any():
            self.teacher = np.zeros((pe, Mp), np.float32)
            sel = on[full]
            self.teacher[:, sel] = teacher[full[sel]].T  # zeros elsewhere: finite, unused
        else:
            self.teacher = np.zeros((0, Mp), np.float32)
        self.losses = np.full((E, Mp), np.nan)
        self.mses = np.full((E, Mp), np.nan)
        self.bad = np.full(Mp, -1, np.int64)


def _group(cfgs, seeds, kind) -> tuple[list, list[int]]:
    """Validate configs and seeds (one config may serve every seed); return equal-length lists."""
    seeds = list(seeds)
    for s in seeds:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, not {s!r}")
    cfgs = [cfgs] * len(seeds) if isinstance(cfgs, kind) else list(cfgs)
    if len(cfgs) != len(seeds):
        raise ValueError(f"need one config per seed: {len(cfgs)} configs for {len(seeds)} seeds")
    for c in cfgs:
        if not isinstance(c, kind):
            raise TypeError(f"configs must be {kind.__name__}, not {type(c).__name__}")
        c.validate()
    if len({shape(c) for c in cfgs}) > 1:
        raise ValueError("models of one batch need the same hidden width, epochs (fine-tune's too), batch size "
                         "and scale layout")
    return cfgs, [int(s) for s in seeds]


def shape(cfg: TeacherConfig | StudentConfig) -> tuple[int, int, int, bool, int, int, bool]:
    """What the trainings of one batched call share: width, epochs (the fine-tune's too, and whether ``ptq`` skips
    the main ones), batch size and scale layout (scale_group, scale_sign)."""
    return (cfg.hidden, cfg.epochs, getattr(cfg, "finetune_epochs", 0), getattr(cfg, "ptq", False), cfg.batch,
            getattr(cfg, "scale_group", 0), getattr(cfg, "scale_sign", False))


DATA_THREADS = 8  # seeds whose data is built at once (numpy's loops release the interpreter)


def _data(task: Task, keys: list[int], name: str, cfg, hidden: int | None):
    """One data set per distinct seed, stacked (D, E, B, T, .), and each model's index into it. Each seed's set
    comes from its own stream, so building them on several threads gives the same bits (measured on 2 cores:
    100 seeds of a reference teacher, 400 MB each for X and Y, 0.7-1.5 s rather than 3.7-5.2 s one by one)."""
    uniq = sorted(set(keys))
    path = (name, hidden) if hidden is not None else (name,)
    epochs = getattr(cfg, "total_epochs", cfg.epochs)
    x0, y0 = task.batches(stream(uniq[0], *path), epochs, cfg.batch)
    X = np.empty((len(uniq), *x0.shape), x0.dtype)
    Y = np.empty((len(uniq), *y0.shape), y0.dtype)
    X[0], Y[0] = x0, y0

    def fill(k: int) -> None:
        X[k], Y[k] = task.batches(stream(uniq[k], *path), epochs, cfg.batch)

    if len(uniq) > 1:
        with ThreadPoolExecutor(min(len(uniq) - 1, DATA_THREADS)) as pool:
            list(pool.map(fill, range(1, len(uniq))))
    return X, Y, [uniq.index(s) for s in keys]


def _results(models, res: BatchResult, cfgs, seeds, task, errors, lanes):
    out = []
    for m, (model, cfg, seed) in enumerate(zip(models, cfgs, seeds, strict=True)):
        if res.diverged[m] >= 0:
            err = DivergedError(int(res.diverged[m]))
            if errors == "raise":
                raise err
            out.append(err)
            continue
        model.theta = res.theta[m].copy()
        if isinstance(cfg, StudentConfig) and uses_recipe(cfg):
            finish(model.theta, model.dims, lanes[m], res.thresholds[m].copy())
        model.meta = {"config": asdict(cfg), "seed": seed, "task": task.describe()}
        out.append((model, History(res.losses[m].copy(), res.mses[m].copy())))
    return out


def _check_errors(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")


DEVICES = ("cpu", "cuda")


def _on(device: str) -> Callable:
    """The batch trainer of ``device``: :func:`train_batch`, or for "cuda" the GPU's drop-in (the same bits; it
    reports no progress)."""
    if device == "cpu":
        return train_batch
    if device != "cuda":
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    from . import gpu

    def on_gpu(theta, X, Y, data, dims, lanes, *, student, teacher=None, progress=None):
        return gpu.train_batch(theta, X, Y, data, dims, lanes, student=student, teacher=teacher)
    return on_gpu


def train_teachers(task: Task, cfgs: TeacherConfig | Sequence[TeacherConfig], seeds: Sequence[int],
                   progress: Progress | None = None, errors: str = "raise", device: str = "cpu") -> list:
    """Train float teachers together; model k is bit-identical to ``train_teacher(task, cfgs[k], seeds[k])``.

    Parameters
    ----------
    task : Task
        Where the sequences come from (one task for the batch).
    cfgs : TeacherConfig or sequence of TeacherConfig
        One per seed (or one for all); the same ``hidden``, ``epochs`` and ``batch``.
    seeds : sequence of int
        Each model's seed (its init and data streams, as the single path).
    progress : callable, optional
        ``progress(done, total, loss)`` between chunks of epochs.
    errors : {"raise", "return"}
        On a model's divergence: raise its :class:`DivergedError` (after the batch ran),
        or return the error in that model's place.
    device : {"cpu", "cuda"}
        Where the batch trains: "cuda" is one launch of :func:`ternq.gpu.train_batch` (the same bits; no
        progress reports).

    Returns
    -------
    list of (Model, History), or of DivergedError where ``errors="return"``
    """
    _check_errors(errors)
    cfgs, seeds = _group(cfgs, seeds, TeacherConfig)
    if not seeds:
        return []
    H = cfgs[0].hidden
    models = [init_teacher(H, stream(s, "teacher-init", H), task.n_in, task.n_out) for s in seeds]
    X, Y, data = _data(task, seeds, "teacher-data", cfgs[0], H)
    lanes = [Lane.of(c) for c in cfgs]
    res = _on(device)(np.stack([m.theta for m in models]), X, Y, data, models[0].dims, lanes, student=False,
                      progress=progress)
    return _results(models, res, cfgs, seeds, task, errors, lanes)


def train_students(teachers: Model | Sequence[Model], task: Task, cfgs: StudentConfig | Sequence[StudentConfig],
                   seeds: Sequence[int], progress: Progress | None = None, errors: str = "raise",
                   device: str = "cpu") -> list:
    """Train hard-ternary students together; model k is bit-identical to
    ``train_student(teachers[k], task, cfgs[k], seeds[k])``.

    Parameters
    ----------
    teachers : Model or sequence of Model
        Each student's float teacher (its start and its distillation target); one may serve all.
    task : Task
        Where the sequences come from.
    cfgs : StudentConfig or sequence of StudentConfig
        One per seed (or one for all): switches, mask, schedules, optimiser, recipe;
        the same ``hidden``, ``epochs``, ``finetune_epochs`` and ``batch``.
    seeds : sequence of int
        Each student's seed (its data stream: students of one seed share their sequences).
    progress, errors, device
        As in :func:`train_teachers`.

    Returns
    -------
    list of (Model, History), or of DivergedError where ``errors="return"``
    """
    _check_errors(errors)
    cfgs, seeds = _group(cfgs, seeds, StudentConfig)
    if not seeds:
        return []
    teachers = [teachers] * len(seeds) if isinstance(teachers, Model) else list(teachers)
    if len(teachers) != len(seeds):
        raise ValueError(f"need one teacher per seed: {len(teachers)} teachers for {len(seeds)} seeds")
    H = cfgs[0].hidden
    for t in teachers:
        if not isinstance(t, Model) or t.kind != "teacher" or t.hidden != H:
            raise ValueError(f"need float teachers of width {H}")
        if (t.n_in, t.n_out) != (task.n_in, task.n_out):
            raise ValueError(f"teacher has {t.n_in} inputs / {t.n_out} outputs, the task {task.n_in} / {task.n_out}")
    models = [student_from(t, c.weight_format, c.float_matrices, c.weight_format_gate, c.weight_format_cand,
                           c.weight_format_out, c.scale_group, c.scale_sign)
              for t, c in zip(teachers, cfgs, strict=True)]
    lanes = [Lane.of(c, *recipe_arrays(t, task, c, s)) for t, c, s in zip(teachers, cfgs, seeds, strict=True)]
    if cfgs[0].total_epochs == 0:  # plain post-training quantization: nothing trains
        res = BatchResult(np.stack([m.theta for m in models]), np.empty((len(models), 0)),
                          np.empty((len(models), 0)), np.full(len(models), -1, np.int64),
                          np.zeros((len(models), models[0].n_scales), np.float32))
        return _results(models, res, cfgs, seeds, task, errors, lanes)
    X, Y, data = _data(task, seeds, "student-data", cfgs[0], None)
    tp = np.stack([t.params() for t in teachers])
    res = _on(device)(np.stack([m.theta for m in models]), X, Y, data, models[0].dims, lanes, student=True,
                      teacher=tp, progress=progress)
    return _results(models, res, cfgs, seeds, task, errors, lanes)
