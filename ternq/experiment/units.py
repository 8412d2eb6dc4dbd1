"""What a unit of work is, its digest, and how one runs.

A :class:`Unit` is one training (a float teacher, a ternary student) or one
coordinate search, described completely by its own fields: kind, seed, task,
its settings block and the units it needs (a student needs its teacher). Its
*digest* hashes that content and the code that computes it, so equal digests
give bit-identical results: the executor runs each digest once and the store
files results under it. Units draw their randomness from named streams
(:mod:`ternq.rng`), so results do not depend on where or in which order they run.

:func:`run_group` is what an executor calls, locally or on a Dask worker: a
group of same-shaped trainings (:func:`batch_key`) trains in one batched call
(:mod:`ternq.multi`, the same bits as one by one); anything else unit by unit.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache

from ..model import Model
from ..search import SearchResult, SearchSettings, quantize_teacher, search_from
from ..tasks import Task, from_file, get_task
from ..train import (
    History,
    Progress,
    StudentConfig,
    TeacherConfig,
    evaluate,
    train_student,
    train_teacher,
)

UNIT_FORMAT = "ternq-unit"
UNIT_VERSION = 2
KINDS = ("teacher", "student", "cs")
Result = tuple[dict, Model]  # a unit's figures (JSON-able) and its model


@dataclass(frozen=True)
class TaskSpec:
    """The task of an experiment: a named task, or a series file (``data``, which wins when set)."""

    task: str = "sine"
    data: str = ""
    columns: tuple = ()  # the data file's columns (names or indices; empty: all)

    @classmethod
    def of(cls, settings) -> TaskSpec:
        """The task of experiment settings."""
        return cls(settings.task, settings.data, tuple(settings.columns))

    def make(self) -> Task:
        """A fresh task object (tasks are cheap; each unit gets its own)."""
        if not self.data:
            return get_task(self.task)
        return from_file(self.data, columns=list(self.columns)) if self.columns else from_file(self.data)


@lru_cache(maxsize=64)
def _describe(spec: TaskSpec) -> str:
    return json.dumps(spec.make().describe(), sort_keys=True)


@dataclass(frozen=True)
class Unit:
    """One independent piece of work.

    Attributes
    ----------
    kind : str
        "teacher", "student" or "cs".
    key : str
        A readable name, unique within a plan (e.g. ``s0/student-Sd-h16``); not part of the digest.
    seed : int
        Seeds the unit's streams.
    task : TaskSpec
    config : TeacherConfig, StudentConfig or SearchSettings
        Everything the unit's own computation reads.
    deps : tuple of Unit
        The units whose models it needs: a student its teacher; a coordinate search its start.
    source : str
        For "cs": "teacher" (absmean quantization of the teacher, then search) or "student".
    """

    kind: str
    key: str
    seed: int
    task: TaskSpec
    config: TeacherConfig | StudentConfig | SearchSettings
    deps: tuple[Unit, ...] = ()
    source: str = ""

    @property
    def digest(self) -> str:
        return unit_digest(self)

    @property
    def hidden(self) -> int:
        return self.config.hidden if self.kind != "cs" else self.deps[0].hidden

    def cost(self) -> float:
        """Rough relative cost, for scheduling only (epochs x H^2, distillation ~1.5x)."""
        if self.kind == "teacher":
            return self.config.epochs * self.hidden**2
        if self.kind == "student":
            epochs = self.config.epochs + self.config.finetune_epochs  # a recipe's trits-frozen fine-tune too
            return epochs * self.hidden**2 * (1.5 if self.config.distill else 1.0)
        return 0.5 * self.deps[0].cost()


COMPUTE = ("kernels/*.py", "experiment/units.py", "model.py", "multi.py", "rng.py", "search.py", "tasks/*.py",
           "train.py")  # the modules a unit's numbers come from


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the sources of :data:`COMPUTE` as they were when first asked (once per process)."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    h = hashlib.sha256()
    for f in sorted({f for pattern in COMPUTE for f in root.glob(pattern)}):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of ternq and the packages its numbers depend on, and the code fingerprint."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "ternq code": code_fingerprint()}
    for pkg in ("ternq", "numpy", "numba", "llvmlite", "click", "rich"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


NUMBERS = ("ternq", "ternq code", "numpy", "numba", "llvmlite")  # the versions a unit's bits depend on


@lru_cache(maxsize=65536)
def unit_digest(unit: Unit) -> str:
    """Hash of everything ``unit``'s result depends on: equal digests, bit-identical results."""
    body = {"format": UNIT_FORMAT, "version": UNIT_VERSION, "kind": unit.kind, "seed": unit.seed,
            "task": _describe(unit.task), "config": asdict(unit.config), "source": unit.source,
            "deps": [unit_digest(d) for d in unit.deps],
            "code": {k: v for k, v in versions().items() if k in NUMBERS}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=list).encode()).hexdigest()


def trained_figures(model: Model, hist: History, task: Task) -> dict:
    """A trained model's figures: last epoch's loss and MSE (NaN where nothing trained: plain post-training
    quantization), a student's zero share, weight format and weight bytes, the held-out figures."""
    fig = {"train_loss": float(hist.loss[-1]) if len(hist.loss) else math.nan,
           "train_mse": float(hist.mse[-1]) if len(hist.mse) else math.nan}
    if model.kind == "student":
        fig["zero_share"] = model.zero_share()
        fig["weight_format"] = model.format_label  # ternary+cand:int8 for a mixed student
        fig["weight_bytes"] = model.weight_bytes()
    fig.update(evaluate(model, task))
    return fig


def search_figures(start: Model, model: Model, res: SearchResult, task: Task) -> dict:
    """A coordinate search's figures: held-out MSE before, the objective per sweep, flips, the held-out figures."""
    fig = {"start_eval_mse": evaluate(start, task)["eval_mse"], "train_mse": res.mse_history[-1],
           "search_mse": res.mse_history, "flips": res.flips, "sweeps": res.sweeps, "zero_share": model.zero_share()}
    fig.update(evaluate(model, task))
    return fig


def own(model: Model) -> Model:
    """A private, writable, contiguous float32 copy: models that came over the wire may be read-only,
    and a read-only array is another type to Numba (a fresh compile, not the cached kernel)."""
    m = model.copy()
    if not (m.theta.flags.writeable and m.theta.flags.c_contiguous and m.theta.dtype == "float32"):
        m.theta = m.theta.astype("float32", copy=True)
    return m


def run_unit(unit: Unit, deps: dict[str, Model], progress: Progress | None = None) -> Result:
    """Run one unit given its dependencies' models (by digest); return its figures and its model."""
    task = unit.task.make()
    t0 = time.perf_counter()
    if unit.kind == "cs":
        start = deps[unit.deps[0].digest]
        if unit.source == "teacher":
            start = quantize_teacher(start)
        model, res = search_from(start, task, unit.config, unit.seed)
        fig = search_figures(start, model, res, task)
        if progress is not None:
            progress(1, 1, res.mse_history[-1])
    else:
        if unit.kind == "teacher":
            model, hist = train_teacher(task, unit.config, unit.seed, progress)
        elif unit.kind == "student":
            model, hist = train_student(deps[unit.deps[0].digest], task, unit.config, unit.seed, progress)
        else:
            raise ValueError(f"unknown unit kind {unit.kind!r}")
        fig = trained_figures(model, hist, task)
        _keep_curve(model, hist)
    fig["seconds"] = time.perf_counter() - t0
    model.meta.update(unit=unit.key, figures=dict(fig))
    return fig, model


def _keep_curve(model: Model, hist: History) -> None:
    """The learning curve, thinned to at most ~200 points, kept with the model."""
    step = max(1, len(hist.loss) // 200)
    model.meta["curve"] = {"epoch": list(range(0, len(hist.loss), step)), "loss": hist.loss[::step].tolist()}


def batch_key(unit: Unit) -> tuple | None:
    """Units with equal keys can train in one batched call (:mod:`ternq.multi`): same kind, task and
    :func:`ternq.multi.shape`; ``None`` for a unit that trains alone (a coordinate search)."""
    from ..multi import shape

    if unit.kind not in ("teacher", "student"):
        return None
    return (unit.kind, unit.task, *shape(unit.config))


def on_gpu_group(units: list[Unit], device: str) -> bool:
    """Whether ``units`` train in one GPU launch on ``device``: same-shaped trainings (teachers or students of one
    :func:`batch_key`; the GPU trains every setting of both)."""
    return device == "cuda" and batch_key(units[0]) is not None and len({batch_key(u) for u in units}) == 1


FIGURE_THREADS = 8  # a GPU batch's models evaluated at once


def run_batch(units: list[Unit], deps: dict[str, Model], progress: dict[str, Callable] | None = None,
              device: str = "cpu") -> list[Result]:
    """Train units of one :func:`batch_key` together (one SIMD lane per model, or on ``device`` "cuda" one
    GPU launch); each result is the same bits as :func:`run_unit`'s. A unit's ``seconds`` is its share of
    the batch and its own figures."""
    from .. import multi

    key = batch_key(units[0])
    if key is None or any(batch_key(u) != key for u in units):
        raise ValueError("a batch needs teachers or students of one kind, task and shape (multi.shape)")
    task = units[0].task.make()
    calls = [c for c in ((progress or {}).get(u.digest) for u in units) if c is not None]

    def report(done: int, total: int, loss: float) -> None:
        for call in calls:
            call(done, total, loss)

    t0 = time.perf_counter()
    cfgs, seeds = [u.config for u in units], [u.seed for u in units]
    if key[0] == "teacher":
        pairs = multi.train_teachers(task, cfgs, seeds, report if calls else None, device=device)
    else:
        pairs = multi.train_students([deps[u.deps[0].digest] for u in units], task, cfgs, seeds,
                                     report if calls else None, device=device)
    share = (time.perf_counter() - t0) / len(units)

    def result(u: Unit, pair) -> Result:
        model, hist = pair
        t1 = time.perf_counter()
        fig = trained_figures(model, hist, task)
        _keep_curve(model, hist)
        fig["seconds"] = share + time.perf_counter() - t1
        model.meta.update(unit=u.key, figures=dict(fig))
        return fig, model

    if device != "cuda" or len(units) == 1:
        return [result(u, pair) for u, pair in zip(units, pairs, strict=True)]
    # the CPU is idle while the GPU trains, and the launches that need these models wait for their figures: the
    # models' evaluations (compiled, free of the interpreter's lock) run side by side
    with ThreadPoolExecutor(min(len(units), FIGURE_THREADS)) as pool:
        return list(pool.map(result, units, pairs))


def run_group(units: list[Unit], deps: dict[str, Model],
              progress: dict[str, Callable] | None = None, device: str = "cpu") -> list[Result]:
    """Run a group of units that the executor found ready together; results in the group's order.

    A group of several same-shaped trainings (see :func:`batch_key`) trains in one
    batched call (:func:`run_batch`); any other group runs unit by unit. With ``device``
    "cuda", a group of same-shaped trainings that the GPU runs (:func:`on_gpu`), one or
    many, is one GPU launch. Either way every unit's result is the same bits.
    """
    mine = {d: own(m) for d, m in deps.items()}
    if on_gpu_group(units, device):
        return run_batch(units, mine, progress, device)
    if len(units) > 1 and batch_key(units[0]) is not None and len({batch_key(u) for u in units}) == 1:
        return run_batch(units, mine, progress)
    return [run_unit(u, mine, (progress or {}).get(u.digest)) for u in units]
