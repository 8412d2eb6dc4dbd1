"""Every setting, defined once: its section, name, default, type, range or choices and help.

A section is a frozen dataclass whose fields are declared with :func:`setting`;
the field is the setting. TOML files (:mod:`ternq.config`), command-line flags
(:func:`option`), ``--factor`` levels and sweep files all read a value through
:func:`coerce`, and every block checks itself with :func:`check` (each field's
type and range) plus the few rules that tie two settings together (``lr_min``
at most ``lr``). Adding a setting is one :func:`setting` line in its section
(and, when a kernel reads it, the code that passes it on).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from . import formats
from .kernels.loop import (
    ALPHA_CONSTANT,
    ALPHA_EARLY,
    ALPHA_FALLING,
    ALPHA_LINEAR,
    BETA_COSINE,
    BETA_GEOMETRIC,
    BETA_LINEAR,
    LR_CONSTANT,
    LR_COSINE,
    OUTPUT_1_MINUS_ALPHA,
    OUTPUT_ONE,
    ROUND,
)
from .kernels.ternary import (
    FLOAT_MATRICES,
    MASK_NONE,
    MASK_NOTES,
    MASK_REFERENCE,
    SCALE_ABSMEAN,
    SCALE_LEARNED,
    SCALE_LSQ,
    SCALE_TWN,
)

# Upper bounds: far above any useful run, low enough that a typo fails in one line instead of in the allocator.
MAX_HIDDEN = 4096
MAX_EPOCHS = 10_000_000
MAX_BATCH = 100_000
MAX_SEED = 2**32 - 1  # seeds are 32-bit: the C program's and numpy's SeedSequence words
MAX_SEEDS = 10_000  # seeds in one experiment
MAX_WORKERS = 1024
MAX_SCALE_GROUP = 2 * MAX_HIDDEN  # a scale group at least a row long is one scale per row

# The names a setting may take, and the kernel's code for each.
SCHEDULES = {"constant": LR_CONSTANT, "cosine": LR_COSINE}
MASKS = {"seed": MASK_NOTES, "reference": MASK_REFERENCE, "none": MASK_NONE}
ALPHA_SCHEDULES = {"linear": ALPHA_LINEAR, "constant": ALPHA_CONSTANT, "falling": ALPHA_FALLING,
                   "early": ALPHA_EARLY}
BETA_SCHEDULES = {"linear": BETA_LINEAR, "geometric": BETA_GEOMETRIC, "cosine": BETA_COSINE}
SCALE_MODES = {"learned": SCALE_LEARNED, "lsq": SCALE_LSQ, "absmean": SCALE_ABSMEAN, "twn": SCALE_TWN}
HIDDEN_MATCHING = ("raw", "normalised")
OUTPUT_WEIGHTS = {"1-alpha": OUTPUT_1_MINUS_ALPHA, "1": OUTPUT_ONE}

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}


class SettingsError(ValueError):
    """A setting that cannot be used; ``key`` names it (the message starts with it)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Spec:
    """What a setting accepts. ``kind``: bool, int, float, str, pair (two floats), seeds, widths (two ints),
    columns (names or indices); ``optional``: None (its default) means "not set"."""

    kind: str
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    flag: str | None = None  # the flag of the command that trains this section alone (ternq student, teacher, cs)

    @property
    def factor(self) -> bool:
        """Whether two levels of it make a factor (a single value of a plain type)."""
        return self.kind in ("bool", "int", "float", "str")


def setting(default: Any, help: str, *, kind: str | None = None, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, choices=(), flag: str | None = None):
    """A dataclass field that is a setting (``kind`` follows the default unless given)."""
    if kind is None:
        kind = ("bool" if isinstance(default, bool) else "int" if isinstance(default, int)
                else "float" if isinstance(default, float) else "str" if isinstance(default, str) else "pair")
    spec = Spec(kind, help, lo, hi, lo_open, tuple(choices), default is None, flag)
    return field(default=default, metadata={"spec": spec})


def spec_of(f) -> Spec | None:
    """The :class:`Spec` of a dataclass field (None: not a setting, e.g. a nested section)."""
    return f.metadata.get("spec")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _text(key: str, value: str, kind: str):
    text = value.strip()
    try:
        if kind == "bool":
            if text.lower() not in TRUE | FALSE:
                raise ValueError
            return text.lower() in TRUE
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise SettingsError(key, f"expected {kind}, got {value!r}") from None
    return value


def coerce(key: str, value, spec: Spec):
    """``value`` as setting ``key`` holds it: typed (TOML, click) or text (a flag, a ``--factor`` level), in its
    type and range; :class:`SettingsError` naming ``key`` otherwise."""
    kind = spec.kind
    if value is None and spec.optional:
        return None
    if isinstance(value, str) and kind in ("bool", "int", "float"):
        value = _text(key, value, kind)
    if kind == "seeds":
        return parse_seeds(value, key)
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = _number(value)
        value = float(value) if ok else value
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "pair":
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value)
        value = tuple(float(v) for v in value) if ok else value
    elif kind == "widths":
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    elif kind == "columns":
        if isinstance(value, str):
            value = [int(v) if v.strip().isdigit() else v.strip() for v in value.split(",")]
        ok = isinstance(value, (list, tuple)) and all(
            (isinstance(v, str) and v) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a kind without a reader is a programming error
        raise AssertionError(kind)
    if not ok:
        want = {"pair": "a list of 2 numbers", "widths": "a list of two integers",
                "columns": "a list of column names or indices (from 0)"}.get(kind, kind)
        raise SettingsError(key, f"expected {want}, got {value!r}")
    _check_value(key, value, spec)
    return value


def _check_value(key: str, value, spec: Spec) -> None:
    """The range or choices of one typed value."""
    if spec.choices and value not in spec.choices:
        raise SettingsError(key, f"one of {', '.join(map(repr, spec.choices))}, not {value!r}")
    if spec.kind == "pair":
        if not all(math.isfinite(x) for x in value):
            raise SettingsError(key, f"must be two finite numbers (start, end), not {list(value)}")
        return
    if spec.kind not in ("int", "float"):
        return
    if spec.kind == "float" and not math.isfinite(value):
        raise SettingsError(key, f"must be a finite number, not {value}")
    lo, hi = spec.lo, spec.hi
    if spec.kind == "int":
        if lo == 1 and value < 1:
            raise SettingsError(key, f"must be a positive integer, not {value}")
        if lo is not None and value < lo:
            raise SettingsError(key, f"must be an integer from {lo:,} to {hi:,}, not {value}")
        if hi is not None and value > hi:
            raise SettingsError(key, f"{value:,} is more than the most allowed, {hi:,}")
        return
    below = lo is not None and (value <= lo if spec.lo_open else value < lo)
    above = hi is not None and value > hi
    if below or above:
        if hi is None and lo == 0 and spec.lo_open:
            raise SettingsError(key, f"must be a finite positive number, not {value}")
        left = "(" if spec.lo_open else "["
        raise SettingsError(key, f"must lie in {left}{lo:g}, {'inf)' if hi is None else f'{hi:g}]'}, not {value}")


def check(block) -> None:
    """Every setting of ``block`` (a section dataclass) in its type and range."""
    for f in fields(block):
        spec = spec_of(f)
        if spec is not None:
            coerce(f.name, getattr(block, f.name), spec)


def parse_seeds(value, key: str = "seeds") -> tuple[int, ...]:
    """Seeds from an int (that many seeds from 0), a list, or a range string ``'A:B'`` (B excluded).

    >>> parse_seeds("0:3"), parse_seeds(2), parse_seeds([4, 7])
    ((0, 1, 2), (0, 1), (4, 7))
    """
    if isinstance(value, bool):
        raise SettingsError(key, "expected a count, a list of integers or a range 'A:B'")
    if isinstance(value, int):
        if value <= 0:
            raise SettingsError(key, f"a count must be positive, not {value}")
        if value > MAX_SEEDS:
            raise SettingsError(key, f"{value:,} seeds is more than the most allowed, {MAX_SEEDS:,}")
        return tuple(range(value))
    if isinstance(value, str):
        text = value.strip()
        if ":" in text:
            a, _, b = text.partition(":")
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise SettingsError(key, f"{value!r} is not a range 'A:B' of integers") from None
            if hi <= lo:
                raise SettingsError(key, f"range {value!r} is empty")
            if lo < 0 or hi - 1 > MAX_SEED:
                raise SettingsError(key, f"seeds are integers from 0 to {MAX_SEED}, not the range {value!r}")
            if hi - lo > MAX_SEEDS:
                raise SettingsError(key, f"{hi - lo:,} seeds is more than the most allowed, {MAX_SEEDS:,}")
            return tuple(range(lo, hi))
        try:
            count = int(text)
        except ValueError:
            raise SettingsError(key, f"{value!r} is not a count or a range 'A:B'") from None
        return parse_seeds(count, key)
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in value):
        if len(set(value)) != len(value):
            raise SettingsError(key, "the list repeats a seed")
        bad = [x for x in value if not 0 <= x <= MAX_SEED]
        if bad:
            raise SettingsError(key, f"seeds are integers from 0 to {MAX_SEED}, not {bad[0]}")
        if len(value) > MAX_SEEDS:
            raise SettingsError(key, f"{len(value):,} seeds is more than the most allowed, {MAX_SEEDS:,}")
        return tuple(value)
    raise SettingsError(key, "expected a count, a list of integers or a range 'A:B'")


# --- the sections ---------------------------------------------------------------------------------

def _epochs(default: int):
    return setting(default, "Epochs (one Adam step each).", lo=1, hi=MAX_EPOCHS, flag="--epochs")


def _finetune_epochs():
    return setting(0, "Epochs of scales, biases and tau only, trits frozen, added at the end (0: none).",
                   lo=0, hi=MAX_EPOCHS)


def _finetune_lr():
    return setting(1e-3, "The fine-tune's learning rate (scheduled down to lr_min).", lo=0.0, lo_open=True)


def _lr_floor(block) -> None:
    if block.lr_min > block.lr:
        raise SettingsError("lr_min", f"must lie in [0, lr], not {block.lr_min} (lr is {block.lr}); "
                            "give a lower lr_min with a lower lr")


@dataclass(frozen=True)
class OptimiserSettings:
    """What teacher and student training share: epochs, Adam's learning rate and schedule, batch, clipping."""

    epochs: int = _epochs(2000)
    lr: float = setting(1e-2, "Peak learning rate (Adam).", lo=0.0, lo_open=True, flag="--lr")
    lr_min: float = setting(1e-4, "Learning rate at the end of the schedule (at most lr).", lo=0.0,
                            flag="--lr-min")
    schedule: str = setting("cosine", "Learning-rate schedule.", choices=SCHEDULES, flag="--schedule")
    batch: int = setting(10, "Sequences per epoch.", lo=1, hi=MAX_BATCH, flag="--batch")
    clip: float = setting(5.0, "Gradient clipping: the largest global L2 norm.", lo=0.0, lo_open=True,
                          flag="--clip")

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first setting that cannot be used."""
        check(self)
        _lr_floor(self)


@dataclass(frozen=True)
class TeacherSettings(OptimiserSettings):
    """How a float teacher trains (the C program's protocol, plus a learning-rate schedule)."""


@dataclass(frozen=True)
class StudentSettings(OptimiserSettings):
    """How a ternary student trains: the notes' switches, optimiser, mask and the beta and alpha schedules."""

    epochs: int = _epochs(1500)
    shaped: bool = setting(False, "Smoothstep-shaped gradient (A).", flag="--shaped/--no-shaped")
    distill: bool = setting(False, "Trajectory distillation (B).", flag="--distill/--no-distill")
    mask: str = setting("seed", "Shaped-gradient mask: seed (the notes' bump at |w/s| = 0.5, the boundaries "
                        "between levels), reference (the C program's) or none.", choices=MASKS, flag="--mask")
    beta: tuple[float, float] = setting((1.0, 20.0), "Smoothstep sharpness, start and end.", flag="--beta")
    alpha: tuple[float, float] = setting((0.3, 0.8), "Trajectory weight, start and end.", flag="--alpha")
    distill_hidden: str = setting("raw", "The trajectory term: raw, or normalised per unit by the teacher's "
                                  "hidden-state variance.", choices=HIDDEN_MATCHING)
    distill_output: float = setting(0.0, "The share of the teacher's predictions in the output target (0: the "
                                    "data only, 1: the teacher's only).", lo=0.0, hi=1.0)
    alpha_schedule: str = setting("linear", "How alpha moves from start to end.", choices=ALPHA_SCHEDULES)
    alpha_until: float = setting(0.5, "alpha_schedule early: the share of training with distillation.",
                                 lo=0.0, lo_open=True, hi=1.0)
    output_weight: str = setting("1-alpha", "The output term's weight under distillation.", choices=OUTPUT_WEIGHTS)
    scale_mode: str = setting("learned", "Scales: learned, lsq (LSQ's gradient), absmean or twn (recomputed).",
                              choices=SCALE_MODES)
    beta_schedule: str = setting("linear", "How beta moves from start to end.", choices=BETA_SCHEDULES)
    progressive: float = setting(0.0, "Quantize a growing share of rows over this share of training (0: off).",
                                 lo=0.0, hi=1.0)
    finetune_epochs: int = _finetune_epochs()
    finetune_lr: float = _finetune_lr()
    weight_format: str = setting("ternary", "What the weights are: ternary, binary (+-1) or int2..int8 (symmetric "
                                 "signed levels), each times a float32 scale per row.", choices=formats.FORMATS,
                                 flag="--weight-format")
    # Mixed formats: a matrix of its own format ("": weight_format's), to place a mostly ternary student between
    # the formats on the error-vs-bytes front (the candidate matrix carries most of ternary's error).
    weight_format_gate: str = setting("", "The gate matrix's (W's first H rows) weight format; empty: weight_format.",
                                      choices=("", *formats.FORMATS), flag="--weight-format-gate")
    weight_format_cand: str = setting("", "The candidate matrix's (W's next H rows) weight format; empty: "
                                      "weight_format.", choices=("", *formats.FORMATS), flag="--weight-format-cand")
    weight_format_out: str = setting("", "The output matrix's (W_out) weight format; empty: weight_format.",
                                     choices=("", *formats.FORMATS), flag="--weight-format-out")
    adam_restart: bool = setting(False, "Restart Adam's moments and step count for the parameters that join: each "
                                 "row's scale when progressive quantization takes its row, and the scales, biases "
                                 "and tau at the fine-tune's start (else their first steps are oversized).")
    float_matrices: str = setting("none", "Research: keep one part in float, unquantized: gate (W's first H rows), "
                                  "cand (W's next H rows) or out (W_out), rows without scales; or input or "
                                  "recurrent, the columns of W that read x or h_prev, with the rest of each row "
                                  "quantized and scaled; none: all quantized.", choices=FLOAT_MATRICES)
    scale_group: int = setting(0, "Columns per scale: 0, one float32 scale per row; G > 0, one per run of G "
                               "columns of each row (finer scales at 4 bytes each; the last run of a row may be "
                               "shorter).", lo=0, hi=MAX_SCALE_GROUP, flag="--scale-group")
    scale_sign: bool = setting(False, "Two float32 scales per row, as trained ternary quantization's: one for the "
                               "row's weights >= 0, one for its weights < 0, each with its own threshold s/2.",
                               flag="--scale-sign/--no-scale-sign")
    zero_threshold: float = setting(ROUND, "Ternary's zero threshold as a share of the row's scale: a trit is 0 where "
                                    "|w| <= zero_threshold s (0.5: rounding w / s). Ternary only, with learned or "
                                    "lsq scales.", lo=0.0, lo_open=True, hi=1.0,
                                    flag="--zero-threshold")
    # Post-training quantization is a way to make a student, not a recipe of its training: the student starts as
    # its teacher (the run's float, trained with the teacher's settings) with the format's starting scales, and the
    # quantization-aware epochs are skipped, so only the levels-frozen fine-tune trains (none: plain PTQ).
    ptq: bool = setting(False, "Post-training quantization: the float teacher's weights quantized at the format's "
                        "starting scales, no quantization-aware epochs (epochs is not used), then finetune_epochs "
                        "of scales, biases and tau with the levels frozen (0: plain PTQ).", flag="--ptq/--no-ptq")

    def validate(self) -> None:
        super().validate()
        if not all(0.0 <= a < 1.0 for a in self.alpha):
            raise SettingsError("alpha", f"values must lie in [0, 1), not {list(self.alpha)}")
        if not all(b > 0 for b in self.beta):
            raise SettingsError("beta", f"values must be positive, not {list(self.beta)}")
        for m, fmt in zip(formats.MATRICES, self.matrix_formats, strict=True):
            key = "weight_format" if fmt.name == self.weight_format else f"weight_format_{m}"
            if self.scale_mode in ("absmean", "twn") and fmt.qmax != 1:
                raise SettingsError("scale_mode", f"{self.scale_mode} recomputes ternary scales; {key} "
                                    f"{fmt.name} takes learned or lsq")
            if self.scale_mode == "lsq" and fmt.qmax == formats.BINARY:
                raise SettingsError("scale_mode", f"lsq's gradient is of a rounding step, which binary's sign has "
                                    f"not; {key} binary takes learned")
            if self.float_matrices == m and getattr(self, f"weight_format_{m}"):
                raise SettingsError(f"weight_format_{m}", f"float_matrices {m} keeps that matrix in float: it has "
                                    "no weight format")
        if self.float_matrices in ("input", "recurrent") and self.scale_mode in ("absmean", "twn"):
            raise SettingsError("float_matrices", f"{self.float_matrices} keeps part of every row of W in float; "
                                f"scale_mode {self.scale_mode} recomputes scales from whole rows: use learned or lsq")
        if self.zero_threshold != StudentSettings.zero_threshold:
            if any(f.qmax != 1 for f in self.matrix_formats):
                raise SettingsError("zero_threshold", f"a ternary setting; {self.format_label} has other levels")
            if self.scale_mode in ("absmean", "twn"):
                raise SettingsError("zero_threshold", f"scale_mode {self.scale_mode} sets its own thresholds: use "
                                    "learned or lsq")
        if self.scale_sign and self.scale_group:
            raise SettingsError("scale_sign", "two scales per row by sign, or one per scale_group columns: not both")
        if (self.scale_group or self.scale_sign) and self.float_matrices in ("input", "recurrent"):
            raise SettingsError("scale_sign" if self.scale_sign else "scale_group",
                                f"float_matrices {self.float_matrices} splits each row of W by its columns already; "
                                "use one scale per row with it")
        if self.ptq:
            qat = [k for k in ("distill", "progressive", "distill_output") if getattr(self, k)]
            if qat:
                raise SettingsError("ptq", f"post-training quantization has no quantization-aware epochs for "
                                    f"{', '.join(qat)}; turn {'them' if len(qat) > 1 else 'it'} off")

    @property
    def qmax(self) -> int:
        """The kernels' code of ``weight_format`` (:mod:`ternq.formats`)."""
        return formats.get(self.weight_format).qmax

    @property
    def matrix_formats(self) -> tuple[formats.Format, formats.Format, formats.Format]:
        """The gate's, candidate's and output matrix's formats (:func:`ternq.formats.matrix_formats`)."""
        return formats.matrix_formats(self.weight_format, self.weight_format_gate, self.weight_format_cand,
                                      self.weight_format_out)

    @property
    def format_label(self) -> str:
        """The formats' name, ``ternary`` or ``ternary+cand:int8`` (:func:`ternq.formats.label`)."""
        return formats.label(self.weight_format, self.weight_format_gate, self.weight_format_cand,
                             self.weight_format_out)

    @property
    def total_epochs(self) -> int:
        """Epochs trained in all: the main ones (none under ``ptq``) and the fine-tune's (the budget)."""
        return (0 if self.ptq else self.epochs) + self.finetune_epochs


MAX_SEARCH_STEPS = 100_000  # sequences x steps of the search set: 500 times the default's


@dataclass(frozen=True)
class SearchSettings:
    """The coordinate search: at most ``sweeps`` sweeps, scored on ``sequences`` fixed training-distribution
    sequences of ``steps`` steps (never the held-out set).

    As a refinement: ``rounds`` rounds of search, each followed by ``finetune_epochs`` epochs of scale, bias
    and tau fine-tuning with the trits frozen (learning rate ``finetune_lr``), on the training distribution.
    The defaults (one round, no fine-tune) are the C program's baseline.
    """

    sweeps: int = setting(5, "Most sweeps; stops early when nothing improves.", lo=1, hi=MAX_EPOCHS,
                          flag="--sweeps")
    sequences: int = setting(4, "Fixed training-distribution sequences in the search objective.", lo=1,
                             hi=MAX_BATCH)
    steps: int = setting(50, "Steps of each search sequence.", lo=1, hi=MAX_EPOCHS)
    rounds: int = setting(1, "Rounds of search (each followed by the fine-tune).", lo=1, hi=MAX_EPOCHS)
    finetune_epochs: int = _finetune_epochs()
    finetune_lr: float = _finetune_lr()

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first setting that cannot be used."""
        check(self)
        if self.sequences * self.steps > MAX_SEARCH_STEPS:  # each trit's trial reruns the whole set
            raise SettingsError("steps", f"sequences x steps = {self.sequences * self.steps} exceeds "
                                f"{MAX_SEARCH_STEPS}: the search would take hours")


@dataclass(frozen=True)
class RunSettings:
    """How an experiment runs and what it reports beyond the one-step figures (not what it trains).

    Horizon, warm-up and period are checked against the task's held-out windows when the run starts
    (:meth:`ternq.experiment.forecasting.ForecastSettings.checked`): their limits depend on the task.
    """

    horizon: int | None = setting(None, "Rollouts of K free-running steps after a warm-up; the MSE per horizon "
                                  "1..K against the naive forecasts [none].", kind="int",
                                  flag="--horizon")
    warmup: int | None = setting(None, "True rows that warm the state before the first scored forecast, in every "
                                 "evaluation: the one-step eval MSE scores the forecasts made after them, rollouts "
                                 "and baselines start after them [25, or half a held-out window if shorter].",
                                 kind="int", flag="--warmup")
    metric: str = setting("scored", "The eval MSE of tables, effects and vs-float ratios: scored (the forecasts "
                          "after the warm-up) or whole (every step from h_0 = 0, the notes' metric); the other is "
                          "printed beside it.", choices=("scored", "whole"), flag="--metric")
    float_reference: bool = setting(True, "Divide vs-float by a float of the student's width trained with the "
                                    "student's whole budget (main epochs and fine-tune) and schedule kind; off: by "
                                    "the teacher (faster).", flag="--float-reference")
    period: int | None = setting(None, "Seasonal period in rows for the seasonal naive baseline [the task's: "
                                 "sine 63, ecg 64, sunspots 11, co2 52; none for lorenz, multisine and data "
                                 "files].", kind="int", flag="--period")
    response: str = setting("eval_mse", "What the effects are computed on: eval_mse (log10 of the one-step eval "
                            "MSE) or rollout:K (of the rollout MSE at horizon K; sets the horizon when not "
                            "given).", flag="--response")
    workers: int | None = setting(None, "Trainings at once (threads); results are identical for any value [one "
                                  "per CPU this process may use].", kind="int", lo=1, hi=MAX_WORKERS,
                                  flag="--workers")
    device: str = setting("cpu", "Where teachers and students train (coordinate searches and evaluations stay "
                          "on the CPU): cpu, or cuda (one launch per ready batch; needs "
                          "numba-cuda and an NVIDIA GPU). Results are identical on either.",
                          choices=("cpu", "cuda"), flag="--device")

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first setting that cannot be used."""
        check(self)
        from .experiment.summary import response

        try:
            response(self.response)
        except ValueError as exc:
            raise SettingsError("response", str(exc)) from None


CPU_QUOTA = "/sys/fs/cgroup/cpu.max"  # a container's CPU limit (cgroup v2): "QUOTA PERIOD", or "max PERIOD"


def local_workers(workers: int | None) -> int:
    """``workers``, or where it is None (the setting's default) one per CPU this process may use: its CPU affinity
    (else the machine's count), and no more than a container's CPU quota allows."""
    if workers is not None:
        return workers
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        n = os.cpu_count() or 1
    try:
        with open(CPU_QUOTA) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):  # no cgroup v2 limit here, or one that cannot be read
        pass
    return max(1, min(n, MAX_WORKERS))


# --- the command line -----------------------------------------------------------------------------

def default_text(value) -> str:
    """A default as --help shows it."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return " ".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


SECTIONS = {"teacher": TeacherSettings, "student": StudentSettings, "cs": SearchSettings, "run": RunSettings}
