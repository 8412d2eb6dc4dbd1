"""The one runner: cells -> plans -> one executor -> result files. A factorial is a one-cell sweep.

:func:`run` builds every cell's plan once and checks, before any training, the
forecast settings against the task and the memory the trainings need. The
gradient check (the notes' precondition) and a rerun of each cell's first
training (bit-identity) run on a side thread beside the trainings; no result is
reported unless the check passes. With an output folder, the runner holds its
lock, refuses a folder written with other settings (unless ``force``), saves
every finished unit into ``OUT/units`` at once (a rerun resumes from them) and
writes each cell's results.json, results.csv, timing.json and models into
``OUT/<cell name>`` (``OUT`` itself for a cell named ""). A training that ended
far worse than it started is returned in :attr:`Outcome.worse`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue

from ..gpu import available as gpu_available
from ..gpu import check_shape as gpu_check_shape
from ..gpu import launched as gpu_launched
from ..gpu import launches_at_once
from ..gpu import prepare as gpu_prepare
from ..gradcheck import TOLERANCE, check_all_beside
from ..memory import check_fits
from ..settings import SettingsError, local_workers
from .execute import Cancelled, OnStart, backend_for, cancellable, execute
from .forecasting import Forecaster, ForecastSettings
from .plans import ExperimentSettings, Plan, plan
from .results import models_of, save_results
from .store import FolderLock, Store, Warn, claim_out_dir, stderr_warn
from .summary import forecaster_of, summarize
from .units import Result, TaskSpec, Unit, batch_key, run_unit, versions

RESULTS_VERSION = 2  # the results document's schema (results.json "version")


class GradientCheckError(RuntimeError):
    """The analytical gradients disagree with finite differences: no result can be trusted."""


@dataclass(frozen=True)
class Cell:
    """One experiment of a run: its settings, and its folder under the output folder ("" for the folder itself)."""

    name: str
    settings: ExperimentSettings


@dataclass
class CellResult:
    """What one cell produced: its plan, its results document and every result by digest."""

    cell: Cell
    plan: Plan
    doc: dict
    results: dict[str, Result]


@dataclass
class Outcome:
    """A finished run: the cells' results, the trainings that ended far worse than they started, the timing."""

    cells: list[CellResult]
    worse: list[tuple[str, float]] = field(default_factory=list)  # (unit key, last loss / first loss)
    units: int = 0  # distinct units
    resumed: int = 0  # of them, found done in the store
    timing: dict = field(default_factory=dict)


def forecast_of(settings: ExperimentSettings, task=None) -> ForecastSettings:
    """The ``[run]`` forecast settings checked against the task's held-out windows (:class:`SettingsError`)."""
    r = settings.run
    task = task or settings_task(settings)
    try:
        fs = ForecastSettings(r.horizon, r.warmup, r.period, r.metric).checked(task)
        return fs.for_response(r.response).checked(task)
    except ValueError as exc:
        raise SettingsError("run", str(exc)) from None


def settings_task(settings: ExperimentSettings):
    return TaskSpec.of(settings).make()


def gradient_error(settings: ExperimentSettings, widths=None, apart: bool = False) -> float:
    """The finite-difference check at the experiment's widths; raise :class:`GradientCheckError` if it fails.
    ``apart``: in a child process (:func:`ternq.gradcheck.check_all_beside`)."""
    task = settings_task(settings)
    widths = sorted(set(widths or settings.widths))
    err = max(r.max_rel_err for r in check_all_beside(tuple(widths), settings.seeds[0], task.n_in, task.n_out,
                                                      apart=apart))
    if not err < TOLERANCE:  # the notes: abort before any training result
        raise GradientCheckError(f"gradient check failed: max relative error {err:.2e} > {TOLERANCE:g}; "
                                 "see 'ternq gradcheck'")
    return err


def memory_needed(p: Plan, workers: int = 1) -> int:
    """Bytes the plan's trainings need at once on this machine: the ``workers`` largest side by side, and the
    reproducibility rerun beside them."""
    from ..train import training_bytes

    task = settings_task(p.settings)
    counts = Counter(u.config for u in p.units if u.kind != "cs")
    sizes = sorted((training_bytes(task, c) for c, n in counts.items() for _ in range(min(n, workers))),
                   reverse=True)
    return sum(sizes[:max(1, workers)]) + training_bytes(task, rerun_unit(p).config)


def rerun_unit(p: Plan) -> Unit:
    """The training rerun for the reproducibility check: the first seed's first teacher."""
    return p.teachers[p.runs[0].index, p.settings.seeds[0]]


def plan_widths(p: Plan) -> list[int]:
    return sorted({r.student.hidden for r in p.runs})


def document(p: Plan, results: dict[str, Result], grad_err: float | None = None,
             reproducible: bool | None = None, forecast: ForecastSettings | None = None,
             forecaster: Forecaster | None = None, scored: dict[str, dict] | None = None) -> dict:
    """The results document (without timing): what was run, on what, with which code, and the summary."""
    doc = summarize(p, results, grad_err, reproducible, p.settings.run.response, forecast, forecaster, scored)
    settings = p.settings.to_dict()
    del settings["run"]["device"]  # the results are the same bits on either; timing.json says where they ran
    return {"ternq": "factorial", "version": RESULTS_VERSION, "task": settings_task(p.settings).describe(),
            "settings": settings, "versions": versions(), **doc}


def claim_settings(cells: list[Cell]):
    """What an output folder records as made with, compared on resume: the settings the units depend on (not
    ``[run]``: another response or horizon over the same units is a resume)."""
    def units_of(s: ExperimentSettings) -> dict:
        return {k: v for k, v in s.to_dict().items() if k != "run"}

    if len(cells) == 1 and not cells[0].name:
        return units_of(cells[0].settings)
    return [{"cell": c.name, "settings": units_of(c.settings)} for c in cells]


def check_device(device: str, settings: Sequence[ExperimentSettings] = (),
                 launches: Sequence[tuple[int, int, int, int, int]] = (), launches_here: bool = True) -> str:
    """``device``, or :class:`ternq.settings.SettingsError` where it is unknown, "cuda" finds no usable GPU, or
    a training of ``settings`` (or of one of the ``launches``: models, batch, n_in, width, n_out) does not fit the
    GPU kernels. A usable "cuda" where this process ``launches_here`` starts the GPU's context and loads the
    kernels of the first launches (``launches``, and the trainings of ``settings`` that need no other's model) on
    a thread of its own (:func:`ternq.gpu.prepare`)."""
    if device not in ("cpu", "cuda"):
        raise SettingsError("device", f"must be cpu or cuda, not {device!r}")
    if device == "cuda" and not gpu_available():
        raise SettingsError("device", "cuda needs numba-cuda (pip install 'ternq[cuda]') and an NVIDIA GPU; "
                                      "none is usable here")
    if device == "cuda":
        units = [u for s in settings for u in plan(s).units if batch_key(u) is not None]
        for batch, hidden in {*((b, h) for _, b, _, h, _ in launches), *((u.config.batch, u.config.hidden)
                                                                          for u in units)}:
            try:
                gpu_check_shape(batch, hidden)
            except ValueError as e:
                raise SettingsError("device", f"cuda: {e}") from None
        if launches_here:
            first: dict = {}  # the trainings ready at the start, by launch: {digest: unit}
            for u in units:
                if not u.deps:
                    first.setdefault(batch_key(u), {})[u.digest] = u
            tasks: dict = {}
            for group in first.values():
                u = next(iter(group.values()))
                task = tasks.setdefault(u.task, u.task.make())
                launches = [*launches, (len(group), u.config.batch, task.n_in, u.config.hidden, task.n_out)]
            gpu_prepare(launches)
    return device


def run(cells: list[Cell], out_dir: str | Path | None = None, *, workers: int | None = None,
        device: str | None = None, client=None,
        check_gradients: bool = True, check_reproducible: bool = True, check_memory: bool = True,
        force: bool = False, warn: Warn = stderr_warn, on_resume: Callable[[int, int], None] | None = None,
        on_start: OnStart | None = None, on_done: Callable[[Unit, dict], None] | None = None) -> Outcome:
    """Run ``cells`` through one executor; with ``out_dir``, keep every unit and write the result files.

    Parameters
    ----------
    cells : list of Cell
        The experiments (a factorial: one cell named ""). Units equal in content run once across cells.
    out_dir : path, optional
        The output folder (locked while running; see the module docstring).
    workers : int, optional
        Local trainings at once (threads; results do not depend on it) [the first cell's ``run.workers``].
    device : {"cpu", "cuda"}, optional
        Where the trainings the GPU kernels run go (results do not depend on it) [the first cell's
        ``run.device``]; "cuda" without a usable GPU raises :class:`ternq.settings.SettingsError` at once.
    client : distributed.Client, optional
        Run the units on this Dask cluster instead.
    check_gradients, check_reproducible : bool
        The finite-difference check at every width set first; the rerun of each cell's first teacher.
    check_memory : bool
        Refuse (:class:`ternq.memory.MemoryShortError`) a run that does not fit this machine's memory.
    on_resume, on_start, on_done
        Progress: (units done in the store, distinct units); a unit starts (may return a progress callback);
        a unit is done (its figures).
    """
    from ..train import quantized_from, worse_than_start

    t0 = time.perf_counter()
    workers = local_workers(workers or cells[0].settings.run.workers)
    device = check_device(device or cells[0].settings.run.device, [c.settings for c in cells],
                          launches_here=client is None)
    plans = [plan(c.settings) for c in cells]
    forecasts = [forecast_of(c.settings) for c in cells]
    if check_memory and client is None:
        check_fits(max(memory_needed(p, workers) for p in plans), "this run")
    units = [u for p in plans for u in p.units]
    out = Path(out_dir) if out_dir is not None else None
    store = Store(out / "units", warn) if out is not None else None
    worse: list[tuple[str, float]] = []
    timing: dict = {}

    checked: set[str] = set()
    cells_of: dict[str, list[int]] = {}  # each unit's cells (a unit shared by cells runs once)
    for i, p in enumerate(plans):
        for d in dict.fromkeys(u.digest for u in p.units):
            cells_of.setdefault(d, []).append(i)
    scored: list[dict[str, dict]] = [{} for _ in cells]  # per cell: forecast figures by digest, made beside
    finished_models: SimpleQueue = SimpleQueue()  # (digest, model) as trainings finish; None after the last
    progressed = threading.Event()  # a unit finished, or the trainings ended

    def finished(unit: Unit, fig: dict, model) -> None:
        finished_models.put((unit.digest, model))
        progressed.set()
        curve = model.meta.get("curve", {})
        start = quantized_from(unit.config)  # the loss to compare with: the student's own format's first
        first = next((x for e, x in zip(curve.get("epoch", []), curve.get("loss", []), strict=True) if e >= start),
                     None)
        if first is not None and "train_loss" in fig and unit.digest not in checked:  # once per training
            checked.add(unit.digest)
            ratio = worse_than_start(first, fig["train_loss"])
            if ratio is not None:
                worse.append((unit.key, ratio))
        if store is not None:
            store.save(unit, fig, model)
        if on_done is not None:
            on_done(unit, fig)

    stop = threading.Event()
    grad_keys = {}
    for c, p in zip(cells, plans, strict=True):
        grad_keys.setdefault((tuple(plan_widths(p)), c.settings.task, c.settings.data, c.settings.seeds[0]), c)
    reruns = {rerun_unit(p).digest: rerun_unit(p) for p in plans}

    def make_baselines():
        return [forecaster_of(p, fs, p.settings.run.response) for p, fs in zip(plans, forecasts, strict=True)]

    def score_beside():
        """The baselines, then each finished model's figures against them while the others train (at 100 seeds
        the figures of 1,400 models take seconds, which would otherwise follow the last training). On the GPU,
        the baselines wait until its first launch is queued (or a unit is done): statsmodels' import and the
        fits hold the interpreter and Numba's compiler lock, which the first launches need for their data and
        their functions' first calls."""
        while device == "cuda" and not (gpu_launched(0.02) or progressed.is_set() or stop.is_set()):
            pass
        made = make_baselines()
        while (item := finished_models.get()) is not None and not stop.is_set():
            digest, model = item
            for i in cells_of.get(digest, ()):
                if digest not in scored[i]:
                    scored[i][digest] = made[i].figures(model)
        return made

    def gradients(apart: bool):
        grad = {}
        if check_gradients:
            for key, c in grad_keys.items():
                grad[key] = gradient_error(c.settings, list(key[0]), apart)
        timing["gradcheck_s"] = time.perf_counter() - t0
        return grad

    def reproduce():
        again = {}
        if check_reproducible:
            for digest, u in reruns.items():
                if stop.is_set():
                    break
                again[digest] = run_unit(u, {}, cancellable(stop))[1]
        return again

    with FolderLock(out) if out is not None else nullcontext():
        if out is not None:
            claim_out_dir(out, claim_settings(cells), force)
        done = store.scan(units) if store is not None else {}
        distinct = len({u.digest for u in units})
        resumed = len(done)
        if on_resume is not None:
            on_resume(resumed, distinct)
        backend = backend_for(workers, client, gpu_slots=launches_at_once() if device == "cuda" else 0)
        try:
            with ThreadPoolExecutor(max_workers=3) as side:
                # the baselines and the models' figures need no training: where a core is left free (a cluster or
                # the GPU trains, or there are more cores than workers and the checks' threads), their fits,
                # statsmodels' import (seconds) and the figures run beside it; otherwise they would take CPU from
                # the trainings (measured on 2 cores: 12-19% more wall) and are made after them. There the
                # gradient check runs in a child process too: this one's threads would hold it up (see apart).
                free = client is not None or device == "cuda" or local_workers(None) > workers + 1
                grads = side.submit(gradients, free)
                again_f = side.submit(reproduce)
                baselines = side.submit(score_beside) if free else None
                try:
                    results = execute(units, backend, done=done, on_start=on_start, on_done=finished,
                                      device=device)
                except BaseException:
                    stop.set()  # the rerun ends at its next progress report
                    raise
                finally:
                    progressed.set()
                    finished_models.put(None)
                    try:
                        grad = grads.result()  # a failed check wins over any training error
                    except BaseException:
                        stop.set()  # the rerun ends at its next progress report
                        raise
                    try:
                        again = again_f.result()
                    except Cancelled:
                        pass
        finally:
            backend.close()
        t_train = time.perf_counter() - t0
        timing.update(training_s=t_train, total_s=time.perf_counter() - t0,
                      workers=f"{backend.workers} Dask" if client is not None else workers, device=device)
        timing.setdefault("gradcheck_s", 0.0)
        out_cells = []
        made = baselines.result() if baselines is not None else make_baselines()
        for i, (c, p, fs, fc) in enumerate(zip(cells, plans, forecasts, made, strict=True)):
            u = rerun_unit(p)
            reproducible = (again[u.digest].theta.tobytes() == results[u.digest][1].theta.tobytes()
                            if u.digest in again else None)
            err = grad.get((tuple(plan_widths(p)), c.settings.task, c.settings.data, c.settings.seeds[0]))
            doc = document(p, results, err, reproducible, fs, fc, scored[i])
            doc["timing"] = dict(timing)
            if out is not None:
                save_results(doc, models_of(p, results), out / c.name)
            out_cells.append(CellResult(c, p, doc, results))
    return Outcome(out_cells, worse, distinct, resumed, timing)


def run_experiment(settings: ExperimentSettings, workers: int | None = None, device: str | None = None, client=None,
                   check_gradients: bool = True, check_reproducible: bool = True,
                   out_dir: str | Path | None = None, **events) -> tuple[dict, Plan, dict[str, Result]]:
    """Run the experiment of ``settings`` (one cell); return its results document, its plan and every result by
    digest. Arguments as :func:`run`'s."""
    outcome = run([Cell("", settings)], out_dir, workers=workers, device=device, client=client,
                  check_gradients=check_gradients,
                  check_reproducible=check_reproducible, **events)
    c = outcome.cells[0]
    return c.doc, c.plan, c.results

