"""Training and evaluation: the orchestration over the compiled loop in :mod:`ternq.kernels.loop`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from . import formats
from .kernels.cell import forward, loss_grad, mse, n_params
from .kernels.loop import (
    ROUND,
    Loop,
    stack,
    thresholds,
    train_epochs,
    zero_thresholds,
)
from .kernels.ternary import (
    FLOAT_MATRICES,
    MASK_NONE,
    SCALE_ABSMEAN,
    SCALE_TWN,
    bake_rows,
    n_scales,
    per_scale,
    recompute_scales,
    scale_layout,
    ste_backward,
)
from .memory import training_memory
from .model import Model, init_teacher, scale_rows, student_from
from .rng import stream
from .settings import (
    ALPHA_SCHEDULES,
    BETA_SCHEDULES,
    MASKS,
    MAX_EPOCHS,
    MAX_HIDDEN,
    OUTPUT_WEIGHTS,
    SCALE_MODES,
    SCHEDULES,
    OptimiserSettings,
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
               "beta_schedule", "progressive", "finetune_epochs", "finetune_lr", "weight_format", "adam_restart",
               "float_matrices", "weight_format_gate", "weight_format_cand", "weight_format_out", "scale_group",
               "scale_sign", "zero_threshold")


def uses_recipe(cfg: StudentSettings) -> bool:
    """Whether any recipe setting (a weight format other than ternary, post-training quantization, or the mask
    ``"none"``) leaves the notes' protocol; training then ends by baking the levels as trained into the shadow
    weights, so that the model runs anywhere as it trained."""
    return (any(getattr(cfg, k) != getattr(StudentSettings, k) for k in RECIPE_KEYS) or cfg.mask == "none"
            or cfg.ptq)


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


def quantized_from(cfg) -> int:
    """The first epoch at which every row of a student of ``cfg`` runs quantized (0 without progressive
    quantization, and for a teacher): before it the loss is partly a float model's, so a rise from the first
    epoch's loss is the quantization's, not a sign of a bad learning rate."""
    share = getattr(cfg, "progressive", 0.0)
    if share <= 0.0:
        return 0
    return max(0, math.ceil(share * cfg.epochs) - 1)  # kernels.loop.rows_quantized reaches every row here


def chunk_epochs(task: Task, batch: int, epochs: int) -> int:
    """Epochs per chunk of training sequences: as many as fit in :data:`CHUNK_BYTES` (at least one)."""
    per_epoch = batch * task.steps * (task.n_in + task.n_out) * 4
    return max(1, min(epochs, CHUNK_BYTES // max(1, per_epoch)))


def training_bytes(task: Task, cfg: TeacherConfig | StudentConfig) -> int:
    """Memory one training of ``task`` with ``cfg`` needs at its peak, in bytes (an estimate, on the high side).

    The data is made a chunk of epochs at a time (:func:`chunk_epochs`); see
    :func:`ternq.memory.training_memory` for what is counted.
    """
    epochs = max(1, getattr(cfg, "total_epochs", cfg.epochs))  # plain post-training quantization trains none
    chunk = chunk_epochs(task, cfg.batch, epochs)
    return training_memory(epochs, cfg.batch, task.steps, cfg.hidden, task.n_in, task.n_out, chunk=chunk,
                           distill=bool(getattr(cfg, "distill", False) or getattr(cfg, "distill_output", 0.0)))


@dataclass(frozen=True)
class Lane:
    """One model's training settings as the loop reads them: everything that may differ between the models of
    a batch (:mod:`ternq.multi`), and what :func:`train_teacher` and :func:`train_student` run alone.

    ``mask`` is ``None`` for the vanilla straight-through estimator, else a key of :data:`MASKS`
    (students only). ``alpha`` matters only with ``distill``. ``distill_hidden`` holds the trajectory
    term's per-unit weights (None: 1 for every unit) and ``row_rank`` the order in which progressive
    quantization takes the rows (None: row order); :meth:`of` makes both from a configuration.
    """

    lr: float = OptimiserSettings.lr
    lr_min: float = OptimiserSettings.lr_min
    schedule: str = OptimiserSettings.schedule
    clip: float = OptimiserSettings.clip
    mask: str | None = None
    beta: tuple[float, float] = (1.0, 1.0)
    alpha: tuple[float, float] = (0.0, 0.0)
    distill: bool = False
    distill_hidden: np.ndarray | None = None
    distill_output: float = StudentSettings.distill_output
    alpha_schedule: str = StudentSettings.alpha_schedule
    alpha_until: float = StudentSettings.alpha_until
    output_weight: str = StudentSettings.output_weight
    scale_mode: str = StudentSettings.scale_mode
    beta_schedule: str = StudentSettings.beta_schedule
    progressive: float = StudentSettings.progressive
    row_rank: np.ndarray | None = None
    finetune_epochs: int = StudentSettings.finetune_epochs
    finetune_lr: float = StudentSettings.finetune_lr
    weight_format: str = StudentSettings.weight_format
    adam_restart: bool = StudentSettings.adam_restart
    float_matrices: str = StudentSettings.float_matrices
    weight_format_gate: str = StudentSettings.weight_format_gate
    weight_format_cand: str = StudentSettings.weight_format_cand
    weight_format_out: str = StudentSettings.weight_format_out
    scale_group: int = StudentSettings.scale_group
    scale_sign: bool = StudentSettings.scale_sign
    zero_threshold: float = StudentSettings.zero_threshold

    @classmethod
    def of(cls, cfg: TeacherConfig | StudentConfig, distill_hidden: np.ndarray | None = None,
           row_rank: np.ndarray | None = None) -> Lane:
        """The lane of a teacher or student configuration (with a recipe's arrays, :func:`recipe_arrays`)."""
        if not isinstance(cfg, StudentConfig):
            return cls(cfg.lr, cfg.lr_min, cfg.schedule, cfg.clip)
        return cls(cfg.lr, cfg.lr_min, cfg.schedule, cfg.clip, cfg.mask if cfg.shaped else None, tuple(cfg.beta),
                   tuple(cfg.alpha), cfg.distill, distill_hidden, cfg.distill_output, cfg.alpha_schedule,
                   cfg.alpha_until, cfg.output_weight, cfg.scale_mode, cfg.beta_schedule, cfg.progressive, row_rank,
                   cfg.finetune_epochs, cfg.finetune_lr, cfg.weight_format, cfg.adam_restart, cfg.float_matrices,
                   cfg.weight_format_gate, cfg.weight_format_cand, cfg.weight_format_out, cfg.scale_group,
                   cfg.scale_sign, cfg.zero_threshold)

    @property
    def scale_layout(self) -> int:
        """The kernels' ``group`` (:func:`ternq.kernels.ternary.scale_layout`)."""
        return scale_layout(self.scale_group, self.scale_sign)

    def scale_rows(self, dims: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The kernels' per-scale ``qmax`` and ``live`` (:func:`ternq.model.scale_rows`)."""
        fmts = formats.matrix_formats(self.weight_format, self.weight_format_gate, self.weight_format_cand,
                                      self.weight_format_out)
        return scale_rows(dims, fmts, self.float_matrices, self.scale_layout)

    @property
    def uses_teacher(self) -> bool:
        return self.distill or self.distill_output > 0

    def check(self, student: bool) -> None:
        """Raise ValueError naming the first setting the loop cannot use."""
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.lr_min) and 0 <= self.lr_min <= self.lr):
            raise ValueError(f"need lr > 0 and lr_min in [0, lr], not {self.lr}, {self.lr_min}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a finite positive number, not {self.clip}")
        if self.mask is not None and (not student or self.mask not in MASKS):
            raise ValueError(f"mask {self.mask!r}: only students have one, of {', '.join(MASKS)}")
        for name in ("beta", "alpha"):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(math.isfinite(x) for x in pair):
                raise ValueError(f"{name} must be two finite numbers (start, end)")
        recipe = any(getattr(self, k) != getattr(Lane, k) for k in RECIPE_KEYS if k != "distill_hidden")
        if (recipe or self.distill_hidden is not None or self.row_rank is not None) and not student:
            raise ValueError("only students have recipe settings")
        for key, known in (("alpha_schedule", ALPHA_SCHEDULES), ("output_weight", OUTPUT_WEIGHTS),
                           ("scale_mode", SCALE_MODES), ("beta_schedule", BETA_SCHEDULES),
                           ("weight_format", formats.FORMATS), ("float_matrices", FLOAT_MATRICES),
                           ("weight_format_gate", ("", *formats.FORMATS)),
                           ("weight_format_cand", ("", *formats.FORMATS)),
                           ("weight_format_out", ("", *formats.FORMATS))):
            if getattr(self, key) not in known:
                raise ValueError(f"{key} must be one of {', '.join(map(repr, known))}, not {getattr(self, key)!r}")


def loop_of(lanes: list[Lane], dims: tuple[int, int, int], n_epochs: int, student: bool) -> Loop:
    """The loop's record for models of one shape trained ``n_epochs`` epochs (the fine-tune's included)."""
    n_in, hidden, n_out = dims
    rows = 2 * hidden + n_out
    groups = {lane.scale_layout for lane in lanes}
    if len(groups) > 1:
        raise ValueError("the models of one call need one scale layout (scale_group, scale_sign)")
    group = groups.pop()
    n_s = n_scales(n_in, hidden, n_out, group)

    def one(lane: Lane) -> Loop:
        if lane.distill_hidden is not None and np.shape(lane.distill_hidden) != (hidden,):
            raise ValueError(f"distill_hidden must hold {hidden} weights, not shape {np.shape(lane.distill_hidden)}")
        if lane.row_rank is not None and sorted(np.asarray(lane.row_rank).tolist()) != list(range(rows)):
            raise ValueError(f"row_rank must be a permutation of 0..{rows - 1}")
        weights = np.empty((0, 1)) if lane.distill_hidden is None else np.reshape(lane.distill_hidden, (hidden, 1))
        rank = np.arange(rows) if lane.row_rank is None else np.asarray(lane.row_rank)
        qmax, live = lane.scale_rows(dims)
        return Loop(
            n_in, hidden, n_out, DT, student, n_epochs, group,
            n_main=np.array([n_epochs - lane.finetune_epochs], np.int64), lr=np.array([lane.lr], np.float64),
            lr_min=np.array([lane.lr_min], np.float64), schedule=np.array([SCHEDULES[lane.schedule]], np.int64),
            finetune_lr=np.array([lane.finetune_lr], np.float64), clip=np.array([lane.clip], np.float64),
            mask=np.array([MASK_NONE if lane.mask is None else MASKS[lane.mask]], np.int64),
            beta=np.array([lane.beta], np.float64),
            beta_schedule=np.array([BETA_SCHEDULES[lane.beta_schedule]], np.int64),
            alpha=np.array([lane.alpha if lane.distill else (0.0, 0.0)], np.float64),
            alpha_schedule=np.array([ALPHA_SCHEDULES[lane.alpha_schedule]], np.int64),
            alpha_until=np.array([lane.alpha_until], np.float64),
            output_weight=np.array([OUTPUT_WEIGHTS[lane.output_weight]], np.int64),
            distill_output=np.array([lane.distill_output], np.float64), distill_hidden=np.asarray(weights, np.float64),
            scale_mode=np.array([SCALE_MODES[lane.scale_mode]], np.int64),
            progressive=np.array([lane.progressive], np.float64),
            row_rank=np.ascontiguousarray(per_scale(rank, *dims, group), np.int64).reshape(n_s, 1),
            qmax=qmax.reshape(n_s, 1),
            adam_restart=np.array([lane.adam_restart], np.bool_),
            quantized=live.reshape(n_s, 1),
            zero_threshold=np.array([lane.zero_threshold], np.float64))

    return stack([one(lane) for lane in lanes])


def finish(theta: np.ndarray, dims: tuple[int, int, int], lane: Lane, thr: np.ndarray) -> None:
    """After a student's recipe: the levels as trained (thresholds, scales recomputed or frozen) become the
    shadow weights, so that the model runs anywhere exactly as it trained."""
    frozen = lane.finetune_epochs > 0
    kind = SCALE_MODES[lane.scale_mode]
    moved = not frozen and lane.zero_threshold != ROUND
    if not frozen and kind in (SCALE_ABSMEAN, SCALE_TWN):
        recompute_scales(theta, *dims, lane.scale_layout, kind, thr)
    if moved:
        zero_thresholds(theta, n_params(*dims), lane.zero_threshold, thr)
    qmax, live = lane.scale_rows(dims)
    bake_rows(theta, *dims, lane.scale_layout, frozen or kind == SCALE_TWN or moved, thr, live, qmax)


def _run(theta, chunks, dims, lane: Lane, E: int, student: bool, teacher_p, progress, steps=100):
    """Drive the compiled loop chunk by chunk of data, in at most ``steps`` calls' worth of progress reports.

    Returns the history and the per-row thresholds as training left them.
    """
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    losses = np.full(E, np.nan)
    mses = np.full(E, np.nan)
    loop = loop_of([lane], dims, E, student)
    thr = thresholds(loop, theta.dtype)
    step = max(1, -(-E // steps))
    for c0, X, Y in chunks:
        c1 = c0 + len(X)
        e0 = c0
        while e0 < c1:
            e1 = min(c1, (e0 // step + 1) * step)  # stop at chunk ends and at progress marks
            bad = train_epochs(theta, m, v, X, Y, e0, e1, loop, teacher_p, thr, losses, mses, x0=c0)
            if bad >= 0:
                raise DivergedError(bad)
            if progress is not None and (e1 % step == 0 or e1 == E):
                progress(e1, E, float(losses[e1 - 1]))
            e0 = e1
        del X, Y  # free this chunk before the next one is built
    return History(losses, mses), thr


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
    hist, _ = _run(model.theta, chunks, model.dims, Lane.of(cfg), cfg.epochs, False, None, progress)
    model.meta = {"config": asdict(cfg), "seed": seed, "task": task.describe()}
    return model, hist


def train_student(teacher: Model, task: Task, cfg: StudentConfig, seed: int,
                  progress: Progress | None = None) -> tuple[Model, History]:
    """Train a student of ``cfg.weight_format`` that starts as a copy of ``teacher`` (under ``cfg.ptq``: is
    ``teacher`` quantized, then only fine-tuned with its levels frozen).

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
    model = student_from(teacher, cfg.weight_format, cfg.float_matrices, cfg.weight_format_gate,
                         cfg.weight_format_cand, cfg.weight_format_out, cfg.scale_group, cfg.scale_sign)
    lane = Lane.of(cfg, *recipe_arrays(teacher, task, cfg, seed))
    E = cfg.total_epochs
    if E == 0:  # plain post-training quantization: nothing trains
        hist, thr = History(np.empty(0), np.empty(0)), np.zeros(model.n_scales, np.float32)
    else:
        chunks = task.batch_chunks(stream(seed, "student-data"), E, cfg.batch, chunk_epochs(task, cfg.batch, E))
        teacher_p = teacher.params() if lane.uses_teacher else None
        hist, thr = _run(model.theta, chunks, model.dims, lane, E, True, teacher_p, progress)
    if uses_recipe(cfg):
        finish(model.theta, model.dims, lane, thr)
    model.meta = {"config": asdict(cfg), "seed": seed, "task": task.describe()}
    return model, hist


def finetune_scales(model: Model, task: Task, epochs: int, lr: float, seed: int,
                    batch: int = OptimiserSettings.batch, lr_min: float = OptimiserSettings.lr_min,
                    clip: float = OptimiserSettings.clip, data: str = "scale-finetune") -> tuple[Model, History]:
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
    chunks = task.batch_chunks(stream(seed, data), epochs, batch, chunk_epochs(task, batch, epochs))
    lane = Lane(lr=lr, lr_min=lr_min, schedule="cosine", clip=clip, finetune_epochs=epochs, finetune_lr=lr,
                weight_format=model.weight_format, float_matrices=model.float_matrices,
                weight_format_gate=model.weight_format_gate, weight_format_cand=model.weight_format_cand,
                weight_format_out=model.weight_format_out, scale_group=model.scale_group,
                scale_sign=model.scale_sign)
    hist, thr = _run(out.theta, chunks, out.dims, lane, epochs, True, None, None)
    finish(out.theta, out.dims, lane, thr)
    return out, hist


def hidden_variance(teacher: Model, X: np.ndarray) -> np.ndarray:
    """The teacher's variance of each hidden unit over every step of the sequences X (N, T, n_in)."""
    _, hs = predict(teacher, X)
    return hs[:, 1:].reshape(-1, teacher.hidden).astype(np.float64).var(axis=0)


def recipe_arrays(teacher: Model, task: Task, cfg: StudentConfig, seed: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What a recipe needs besides its settings, as :class:`Lane` takes them: ``distill_hidden``, the per-unit
    weights of normalised hidden matching (1 / (var_i + floor), from the teacher on sequences of the seed's
    own stream), and ``row_rank``, the order in which progressive quantization takes the rows (a permutation
    from the seed's own stream); None where the recipe is off."""
    weights = None
    if cfg.distill and cfg.distill_hidden == "normalised":
        X, _ = task.batches(stream(seed, "hidden-variance"), 1, cfg.batch)
        var = hidden_variance(teacher, X[0])
        weights = 1.0 / (var + VARIANCE_FLOOR * max(float(var.mean()), 1e-12))
    n_rows = 2 * cfg.hidden + task.n_out
    rank = np.argsort(stream(seed, "progressive-rows").permutation(n_rows)) if cfg.progressive > 0 else None
    return weights, rank


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
    ste_backward(theta, I, H, O, g_eff, beta, kind, g, model.row_qmax(), model.scale_layout)
    return float(loss), g


def _workspace(B, T, I, H, O, dtype):
    return {"hs": np.empty((T + 1, B, H), dtype), "gs": np.empty((T, B, H), dtype),
            "cs": np.empty((T, B, H), dtype), "ys": np.empty((T, B, O), dtype),
            "WT": np.empty((I + H, 2 * H), dtype), "ht": np.zeros((T + 1, B, H), dtype)}
