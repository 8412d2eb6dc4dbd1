"""Training and evaluation: the orchestration over the compiled loop in :mod:`ternq.kernels.loop`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .kernels.cell import forward, loss_grad, mse
from .kernels.loop import (
    LR_COSINE,
    LoopSettings,
    run_epochs,
)
from .kernels.ternary import (
    MASK_NONE,
    SCALE_ABSMEAN,
    SCALE_TWN,
    bake,
    ste_backward,
)
from .memory import training_memory
from .model import Model, init_teacher, student_from
from .rng import stream
from .settings import (
    ALPHA_SCHEDULES,
    BETA_SCHEDULES,
    MASKS,
    MAX_EPOCHS,
    MAX_HIDDEN,
    SCALE_MODES,
    SCHEDULES,
    SettingsError,
    StudentSettings,
    TeacherSettings,
)
from .tasks import Task

DT = 0.1
CHUNK_BYTES = 8 << 20  # the training sequences held at once (one chunk of epochs)
VARIANCE_FLOOR = 1e-2  # normalised matching: var_i + 1e-2 * mean var, so a quiet unit does not dominate

Progress = Callable[[int, int, float], None]  # (epochs done, total, last loss)


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""

    def __init__(self, epoch: int):
        super().__init__(f"training diverged: non-finite loss at epoch {epoch}")
        self.epoch = epoch


def _positive_int(key: str, value, most: int) -> None:
    if isinstance(value, bool) or int(value) != value or value <= 0:
        raise SettingsError(key, f"must be a positive integer, not {value}")
    if value > most:
        raise SettingsError(key, f"{value} is more than the most allowed, {most:,}")


@dataclass(frozen=True)
class TeacherConfig(TeacherSettings):
    """A teacher's width and training settings."""

    hidden: int = 16

    def validate(self) -> None:
        _positive_int("hidden", self.hidden, MAX_HIDDEN)
        super().validate()


RECIPE_KEYS = ("distill_hidden", "distill_output", "alpha_schedule", "alpha_until", "output_weight", "scale_mode",
               "beta_schedule", "progressive", "finetune_epochs", "finetune_lr")


@dataclass(frozen=True)
class StudentConfig(StudentSettings):
    """One student: its width and training settings."""

    hidden: int = 16

    def validate(self) -> None:
        _positive_int("hidden", self.hidden, MAX_HIDDEN)
        super().validate()


@dataclass
class History:
    """Per-epoch training loss and output MSE (measured before each epoch's update)."""

    loss: np.ndarray
    mse: np.ndarray
    extra: dict = field(default_factory=dict)


WORSE = 10.0  # a training whose last loss is this many times its first made things worse, not better


def worse_than_start(first_loss: float, last_loss: float, factor: float = WORSE) -> float | None:
    """``last_loss / first_loss`` when training ended more than ``factor`` times worse than it started, else None.

    A finite but exploding loss (a learning rate far too high) is no
    :class:`DivergedError`, yet its model is useless: the caller warns.
    """
    if not (math.isfinite(first_loss) and math.isfinite(last_loss)) or first_loss <= 0:
        return None
    ratio = last_loss / first_loss
    return ratio if ratio > factor else None


def chunk_epochs(task: Task, batch: int, epochs: int) -> int:
    """Epochs per chunk of training sequences: as many as fit in :data:`CHUNK_BYTES` (at least one)."""
    per_epoch = batch * task.steps * (task.n_in + task.n_out) * 4
    return max(1, min(epochs, CHUNK_BYTES // max(1, per_epoch)))


def training_bytes(task: Task, cfg: TeacherConfig | StudentConfig) -> int:
    """Memory one training of ``task`` with ``cfg`` needs at its peak, in bytes (an estimate, on the high side).

    The data is made a chunk of epochs at a time (:func:`chunk_epochs`); see
    :func:`ternq.memory.training_memory` for what is counted.
    """
    epochs = getattr(cfg, "total_epochs", cfg.epochs)
    chunk = chunk_epochs(task, cfg.batch, epochs)
    return training_memory(epochs, cfg.batch, task.steps, cfg.hidden, task.n_in, task.n_out, chunk=chunk,
                           distill=bool(getattr(cfg, "distill", False) or getattr(cfg, "distill_output", 0.0)))


def batchable(cfg: StudentConfig | TeacherConfig) -> bool:
    """True when ``cfg`` uses none of the recipes of issue 10 (every recipe setting at its default), so the
    batched kernels (:mod:`ternq.multi`) compute exactly what :func:`train_student` would; False otherwise.

    Teachers are always batchable. The engine's grouping calls this so that units using a recipe run on
    the single path.
    """
    if not isinstance(cfg, StudentSettings):
        return True
    base = StudentSettings()
    return all(getattr(cfg, k) == getattr(base, k) for k in RECIPE_KEYS) and cfg.mask != "none"


def _recipe_loop(loop: LoopSettings, cfg: StudentConfig, hidden_weights, row_rank) -> LoopSettings:
    """``loop`` with the recipe of ``cfg`` switched on (the loop :func:`ternq.kernels.loop.train_recipe`)."""
    from dataclasses import replace

    alpha = cfg.alpha if cfg.distill else (0.0, 0.0)  # output distillation alone: no trajectory term
    return replace(loop, ext=True, n_main=cfg.epochs, alpha=alpha, alpha_kind=ALPHA_SCHEDULES[cfg.alpha_schedule],
                   alpha_until=cfg.alpha_until, beta_kind=BETA_SCHEDULES[cfg.beta_schedule],
                   w_y_one=cfg.output_weight == "1", hidden_weights=hidden_weights,
                   output_teacher=cfg.distill_output, scale_kind=SCALE_MODES[cfg.scale_mode], row_rank=row_rank,
                   progressive=cfg.progressive, finetune_lr=cfg.finetune_lr)


def _run(theta, chunks, dims, cfg, student, mask_kind, teacher_p, progress, steps=100, recipe=None):
    """Drive the compiled loop chunk by chunk of data, in at most ``steps`` calls' worth of progress reports.

    ``recipe``: ``(hidden_weights, row_rank)`` to run a student's recipe (issue 10); None for the seeds' loop.
    """
    E = cfg.total_epochs if recipe is not None else cfg.epochs
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    losses = np.full(E, np.nan)
    mses = np.full(E, np.nan)
    loop = LoopSettings(n_epochs=E, dt=DT, lr=cfg.lr, lr_min=cfg.lr_min, lr_kind=SCHEDULES[cfg.schedule],
                        clip=cfg.clip, student=student, mask_kind=mask_kind,
                        beta=getattr(cfg, "beta", (1.0, 1.0)), alpha=getattr(cfg, "alpha", (0.0, 0.0)))
    thr = None
    if recipe is not None:
        loop = _recipe_loop(loop, cfg, *recipe)
        thr = loop.state(dims[1], dims[2], theta.dtype)
    step = max(1, -(-E // steps))
    for c0, X, Y in chunks:
        c1 = c0 + len(X)
        e0 = c0
        while e0 < c1:
            e1 = min(c1, (e0 // step + 1) * step)  # stop at chunk ends and at progress marks
            bad = run_epochs(theta, m, v, X, Y, e0, e1, dims, loop, teacher_p, losses, mses, x0=c0, thr=thr)
            if bad >= 0:
                raise DivergedError(bad)
            if progress is not None and (e1 % step == 0 or e1 == E):
                progress(e1, E, float(losses[e1 - 1]))
            e0 = e1
        del X, Y  # free this chunk before the next one is built
    if recipe is not None:
        # the trits as trained (thresholds, scales recomputed or frozen) become the shadow weights,
        # so that the model runs anywhere exactly as it trained
        frozen = cfg.finetune_epochs > 0
        kind = loop.scale_kind
        if not frozen and kind in (SCALE_ABSMEAN, SCALE_TWN):
            from .kernels.ternary import recompute_scales

            recompute_scales(theta, *dims, kind, thr)
        bake(theta, *dims, frozen or kind == SCALE_TWN, thr)
    return History(losses, mses)


def train_teacher(task: Task, cfg: TeacherConfig, seed: int, progress: Progress | None = None
                  ) -> tuple[Model, History]:
    """Train a float teacher with Adam, clipping and a learning-rate schedule.

    Parameters
    ----------
    task : Task
        Where the sequences come from.
    cfg : TeacherConfig
        Width, epochs, learning rate and schedule, batch, clipping.
    seed : int
        Seeds the teacher's own streams (init and data), independent per width.
    progress : callable, optional
        Called as ``progress(done, total, loss)`` between chunks of epochs.

    Returns
    -------
    (Model, History)
    """
    cfg.validate()
    model = init_teacher(cfg.hidden, stream(seed, "teacher-init", cfg.hidden), task.n_in, task.n_out)
    chunks = task.batch_chunks(stream(seed, "teacher-data", cfg.hidden), cfg.epochs, cfg.batch,
                          chunk_epochs(task, cfg.batch, cfg.epochs))
    hist = _run(model.theta, chunks, model.dims, cfg, False, MASK_NONE, np.empty(0, np.float32), progress)
    model.meta = {"config": asdict(cfg), "seed": seed, "task": task.describe()}
    return model, hist


def train_student(teacher: Model, task: Task, cfg: StudentConfig, seed: int,
                  progress: Progress | None = None) -> tuple[Model, History]:
    """Train a hard-ternary student that starts as a copy of ``teacher``.

    Parameters
    ----------
    teacher : Model
        A float teacher of the same width; also the distillation target.
    task : Task
        Where the sequences come from.
    cfg : StudentConfig
        The factorial's switches (``shaped``, ``distill``, ``hidden``), the mask,
        the beta and alpha schedules and the optimiser settings.
    seed : int
        Seeds the data stream; every configuration of one seed sees the same
        sequences (common random numbers), so their differences are the techniques'.
    progress : callable, optional
        Called as ``progress(done, total, loss)`` between chunks of epochs.
    """
    cfg.validate()
    if teacher.kind != "teacher" or teacher.hidden != cfg.hidden:
        raise ValueError(f"need a float teacher of width {cfg.hidden}, got a {teacher.kind} of width {teacher.hidden}")
    model = student_from(teacher)
    recipe = None if batchable(cfg) else _recipe_arrays(teacher, task, cfg, seed)
    E = cfg.total_epochs if recipe is not None else cfg.epochs
    chunks = task.batch_chunks(stream(seed, "student-data"), E, cfg.batch, chunk_epochs(task, cfg.batch, E))
    uses_teacher = cfg.distill or cfg.distill_output > 0
    teacher_p = teacher.params() if uses_teacher else np.empty(0, np.float32)
    kind = MASKS[cfg.mask] if cfg.shaped else MASK_NONE
    hist = _run(model.theta, chunks, model.dims, cfg, True, kind, teacher_p, progress, recipe=recipe)
    model.meta = {"config": asdict(cfg), "seed": seed, "task": task.describe()}
    return model, hist


def finetune_scales(model: Model, task: Task, epochs: int, lr: float, seed: int, batch: int = 10,
                    lr_min: float = 1e-4, clip: float = 5.0, data: str = "scale-finetune") -> tuple[Model, History]:
    """Fine-tune a student's scales, biases and tau with its trits frozen (the recipes' final fine-tune alone).

    Adam with a cosine schedule from ``lr`` to ``lr_min`` over ``epochs`` epochs of training sequences from
    the seed's own stream named ``data``. Returns a new student (``model`` is not modified) whose
    shadow weights are its effective weights, and the history.
    """
    if model.kind != "student":
        raise ValueError("only a student's scales can be fine-tuned")
    _positive_int("epochs", epochs, MAX_EPOCHS)
    out = model.copy()
    out.theta = np.ascontiguousarray(out.theta, np.float32)
    dims = out.dims
    chunks = task.batch_chunks(stream(seed, data), epochs, batch, chunk_epochs(task, batch, epochs))
    loop = LoopSettings(n_epochs=epochs, dt=DT, lr=lr, lr_min=lr_min, lr_kind=LR_COSINE, clip=clip, student=True,
                        ext=True, n_main=0, finetune_lr=lr)
    thr = loop.state(out.hidden, out.n_out, out.theta.dtype)
    m, v = np.zeros_like(out.theta), np.zeros_like(out.theta)
    losses, mses = np.full(epochs, np.nan), np.full(epochs, np.nan)
    for c0, X, Y in chunks:
        bad = run_epochs(out.theta, m, v, X, Y, c0, c0 + len(X), dims, loop, None, losses, mses, x0=c0, thr=thr)
        if bad >= 0:
            raise DivergedError(bad)
    bake(out.theta, *dims, True, thr)
    return out, History(losses, mses)


def hidden_variance(teacher: Model, X: np.ndarray) -> np.ndarray:
    """The teacher's variance of each hidden unit over every step of the sequences X (N, T, n_in)."""
    _, hs = predict(teacher, X)
    return hs[:, 1:].reshape(-1, teacher.hidden).astype(np.float64).var(axis=0)


def _recipe_arrays(teacher: Model, task: Task, cfg: StudentConfig, seed: int):
    """What a recipe needs besides its settings: the per-unit weights of normalised hidden matching
    (1 / (var_i + floor), from the teacher on sequences of the seed's own stream) and the order in which
    progressive quantization takes the rows (a permutation from the seed's own stream)."""
    hw = None
    if cfg.distill and cfg.distill_hidden == "normalised":
        X, _ = task.batches(stream(seed, "hidden-variance"), 1, cfg.batch)
        var = hidden_variance(teacher, X[0])
        hw = 1.0 / (var + VARIANCE_FLOOR * max(float(var.mean()), 1e-12))
    n_rows = 2 * cfg.hidden + task.n_out
    rank = np.argsort(stream(seed, "progressive-rows").permutation(n_rows)) if cfg.progressive > 0 else None
    return hw, rank


def evaluate(model: Model, task: Task) -> dict[str, float]:
    """Held-out MSE over the task's fixed evaluation set, and the C program's figure if any.

    Returns
    -------
    dict
        ``eval_mse`` and, for sine, ``ref_mse`` (phase 0, 100 steps).
    """
    out = {"eval_mse": predict_mse(model, *task.eval_set())}
    ref = task.reference_set()
    if ref is not None:
        out["ref_mse"] = predict_mse(model, *ref)
    return out


def predict(model: Model, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` on sequences X (N, T, n_in) from h_0 = 0.

    Returns
    -------
    (ys, hs)
        Predictions (N, T, n_out) and hidden states (N, T+1, H), float32.
    """
    I, H, O = model.dims
    X = np.ascontiguousarray(X, np.float32)
    N, T = X.shape[:2]
    ws = _workspace(N, T, I, H, O, np.float32)
    forward(model.params(), X, I, H, O, DT, ws["hs"], ws["gs"], ws["cs"], ws["ys"], ws["WT"])
    return ws["ys"].transpose(1, 0, 2).copy(), ws["hs"].transpose(1, 0, 2).copy()


def predict_mse(model: Model, X: np.ndarray, Y: np.ndarray) -> float:
    """MSE of ``model`` on sequences X (N, T, n_in) against Y (N, T, n_out), from h_0 = 0."""
    return float(mse(model.params(), np.ascontiguousarray(X, np.float32),
                     np.ascontiguousarray(Y, np.float32), *model.dims, DT))


def loss_and_grad(model: Model, X: np.ndarray, Y: np.ndarray, *, alpha: float = 0.0,
                  teacher: Model | None = None, beta: float = 1.0, mask: str | None = None,
                  dtype=np.float64) -> tuple[float, np.ndarray]:
    """Loss and analytical gradient of ``model`` with respect to its ``theta``.

    Parameters
    ----------
    model : Model
        Teacher (float) or student (hard-ternary forward, STE backward).
    X, Y : np.ndarray
        Sequences (B, T, n_in) and targets (B, T, n_out).
    alpha : float
        Weight of the trajectory term; the output term then has weight 1 - alpha.
    teacher : Model, optional
        Teacher whose hidden states the trajectory term pulls toward (needed if alpha > 0).
    beta, mask : float, str
        Student only: smoothstep sharpness and mask (None for vanilla STE).
    dtype : numpy dtype
        float64 (gradient checks) or float32 (as training runs).
    """
    I, H, O = model.dims
    theta = np.ascontiguousarray(model.theta, dtype)
    X = np.ascontiguousarray(X, dtype)
    Y = np.ascontiguousarray(Y, dtype)
    B, T = X.shape[:2]
    ws = _workspace(B, T, I, H, O, dtype)
    ht = ws["ht"]
    if alpha:
        if teacher is None:
            raise ValueError("alpha > 0 needs a teacher")
        forward(teacher.params(dtype), X, I, H, O, DT, ht, np.empty_like(ws["gs"]),
                np.empty_like(ws["cs"]), np.empty_like(ws["ys"]), ws["WT"])
    p = model.params(dtype) if model.kind == "student" else theta
    g_eff = np.zeros_like(p)
    loss, _ = loss_grad(p, X, Y, I, H, O, DT, 1.0 - alpha, alpha, ht, g_eff,
                        ws["hs"], ws["gs"], ws["cs"], ws["ys"], ws["WT"])
    if model.kind == "teacher":
        return float(loss), g_eff
    g = np.zeros_like(theta)
    kind = MASK_NONE if mask is None else MASKS[mask]
    ste_backward(theta, I, H, O, g_eff, beta, kind, g)
    return float(loss), g


def _workspace(B, T, I, H, O, dtype):
    return {"hs": np.empty((T + 1, B, H), dtype), "gs": np.empty((T, B, H), dtype),
            "cs": np.empty((T, B, H), dtype), "ys": np.empty((T, B, O), dtype),
            "WT": np.empty((I + H, 2 * H), dtype), "ht": np.zeros((T + 1, B, H), dtype)}
