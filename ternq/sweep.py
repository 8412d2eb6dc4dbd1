"""Sweeps (seeds x tasks x widths x configurations) and running units on a Dask cluster.

A sweep file is a settings file (``[experiment]``, ``[teacher]``, ``[student]``,
``[cs]``: the base) plus a ``[sweep]`` section naming the grid::

    [sweep]
    seeds = "0:8"                 # replaces experiment.seeds
    tasks = ["sine"]              # default: [experiment.task]
    widths = [[4, 8], [8, 16]]    # (narrow, wide) pairs; default: [experiment.widths]

    [sweep.configs.seed-mask]     # named configurations: changes to the base settings
    student.mask = "seed"
    [sweep.configs.reference-mask]
    student.mask = "reference"

Every (task, widths, configuration) is a *cell*: a whole factorial over the
seeds, written to ``OUT/<task>-w<lo>x<hi>-<config>/`` exactly as ``ternq
factorial --out`` writes it (its ``units/`` folder makes it resumable), and
``OUT/sweep.json`` sums the cells up.

Units run on local threads (:func:`ternq.factorial.execute`) or, given a Dask
``Client``, as Dask tasks: each task gets the unit, the settings and its
dependencies' models (a few kB), never more. Units with equal digests
(:func:`ternq.store.unit_digest`), e.g. a teacher shared by two cells, run once.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import config, stats
from .config import ConfigError, ExperimentSettings
from .factorial import (
    Unit,
    assemble,
    clean,
    code_fingerprint,
    execute,
    gradient_error,
    plan,
    run_unit,
    save_results,
    split_timing,
    versions,
)
from .model import Model, atomic_write_bytes
from .store import UnitStore, Warn, unit_digest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Result = tuple[dict, Model]
SWEEP_KEYS = {"seeds", "tasks", "widths", "configs"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- Dask ----------------------------------------------------------------------------------------

class ClusterError(RuntimeError):
    """The Dask cluster cannot be used (unreachable, no workers, other package versions)."""


def _own(model: Model) -> Model:
    """Writable, contiguous float32 parameters: arrays that came over the wire may be read-only,
    and a read-only array is another type to Numba (a fresh compile, not the cached kernel)."""
    if not (model.theta.flags.writeable and model.theta.flags.c_contiguous and model.theta.dtype == "float32"):
        model.theta = model.theta.astype("float32", copy=True)
    return model


def remote_unit(unit: Unit, settings: ExperimentSettings, *dep_models: Model | Result) -> Result:
    """What a Dask worker runs: one unit, given its dependencies (in ``unit.deps()`` order).

    A dependency is its model, or its (figures, model) when it comes straight
    from another task (Dask moves it from worker to worker; figures are a few hundred bytes).
    """
    models = [m[1] if isinstance(m, tuple) else m for m in dep_models]
    deps = {d.key: _own(m.copy()) for d, m in zip(unit.deps(), models, strict=True)}
    return run_unit(unit, settings, deps)


CODE = code_fingerprint()  # a long-lived worker keeps the code it imported: compare this, not the files


def worker_environment() -> dict:
    """Package versions and ternq's code on a worker (the numbers are bit-identical only with the same ones)."""
    return versions()  # includes "ternq code", fixed when first computed in this process


def connect(address: str, workers_timeout: float = 60.0):
    """A ``distributed.Client`` on the scheduler at ``address``, checked for workers and versions.

    The connection timeout is Dask's ``distributed.comm.timeouts.connect``
    (30 s; environment ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``).
    """
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs Dask: pip install 'ternq[dask]'") from None
    try:
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
    try:
        check_cluster(client, workers_timeout)
    except BaseException:
        client.close()
        raise
    return client


def check_cluster(client, workers_timeout: float = 60.0) -> None:
    """Wait for a worker; refuse workers whose packages differ from ours (results would differ)."""
    try:
        client.wait_for_workers(1, timeout=workers_timeout)
    except TimeoutError:
        raise ClusterError(f"no Dask worker joined the scheduler within {workers_timeout:.0f} s") from None
    here = worker_environment()
    try:
        there = client.run(worker_environment)
    except ImportError as exc:
        raise ClusterError(f"a Dask worker cannot import ternq ({exc}); install it on every worker") from None
    for worker, env in sorted(there.items()):
        diff = [f"{k} {env.get(k)} (here {v})" for k, v in here.items() if env.get(k) != v]
        if diff:
            raise ClusterError(f"Dask worker {worker} runs {', '.join(diff)}: results would not be bit-identical"
                               " (install the same versions there, or restart workers that predate a code change)")


@dataclass
class Job:
    """A unit of one cell (``tag``) under that cell's settings."""

    tag: object
    unit: Unit
    settings: ExperimentSettings

    @property
    def digest(self) -> str:
        return unit_digest(self.unit, self.settings)


def run_on_dask(client, jobs: list[Job], done: dict[tuple, Result],
                on_done: Callable[[Job, dict, Model], None] | None = None) -> dict[tuple, Result]:
    """Run ``jobs`` (dependencies before dependants) on the cluster; results keyed by ``(tag, unit.key)``.

    ``done`` holds results already available, by ``(tag, key)``. Jobs with
    equal digests run once. A dependency already done travels inside its
    dependant's task; one still running is passed as a future, so Dask moves
    its model from worker to worker. ``on_done`` runs here, as each job
    finishes (e.g. to write its unit file).
    """
    from distributed import as_completed

    results: dict[tuple, Result] = dict(done)
    known: dict[str, Result] = {}  # digest -> result, for units already done
    for job in jobs:
        if (job.tag, job.unit.key) in results:
            known[job.digest] = results[(job.tag, job.unit.key)]
    waiting: dict[str, list[Job]] = {}  # digest -> the jobs that take its result
    futures = {}
    token = uuid.uuid4().hex[:8]
    for job in jobs:
        if (job.tag, job.unit.key) in results:
            continue
        digest = job.digest
        if digest in known:  # the same unit is done in another cell
            fig, model = known[digest]
            results[(job.tag, job.unit.key)] = (dict(fig), model)
            if on_done is not None:
                on_done(job, dict(fig), model)
            continue
        waiting.setdefault(digest, []).append(job)
        if digest in futures:
            continue
        args = []
        for dep in job.unit.deps():
            dd = unit_digest(dep, job.settings)
            if dd in known:
                args.append(known[dd][1])
            elif dd in futures:
                args.append(futures[dd])
            else:
                raise RuntimeError(f"{job.unit.key}: dependency {dep.key} is not planned before it")
        futures[digest] = client.submit(remote_unit, job.unit, job.settings, *args, pure=False,
                                        key=f"ternq-{job.unit.key.replace('/', '-')}-{digest[:10]}-{token}")
    by_key = {f.key: d for d, f in futures.items()}
    try:
        for fut in as_completed(list(futures.values()), loop=client.loop) if futures else ():
            fig, model = fut.result()
            model = _own(model)
            digest = by_key[fut.key]
            for job in waiting.pop(digest):
                results[(job.tag, job.unit.key)] = (dict(fig), model)
                if on_done is not None:
                    on_done(job, dict(fig), model)
            futures.pop(digest).release()
    finally:
        if futures:
            client.cancel(list(futures.values()))
    return results


def dask_runner(client):
    """A replacement for :func:`ternq.factorial.execute` (same signature) that runs units on ``client``.

    ``workers`` is ignored (the cluster decides) and ``on_start`` is not called:
    a unit's progress cannot be followed from here, only its end.
    """

    def runner(units: Iterable[Unit], settings: ExperimentSettings, workers: int = 1,
               done: dict[str, Result] | None = None, on_start=None,
               on_done: Callable[[Unit, dict, Model], None] | None = None) -> dict[str, Result]:
        jobs = [Job(None, u, settings) for u in units]
        cb = None if on_done is None else (lambda job, fig, model: on_done(job.unit, fig, model))
        out = run_on_dask(client, jobs, {(None, k): r for k, r in (done or {}).items()}, cb)
        return {key: r for (_, key), r in out.items()}

    return runner


# --- sweep files ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One (task, widths, configuration) of a sweep: a factorial over the sweep's seeds."""

    task: str
    widths: tuple[int, int]
    config: str
    settings: ExperimentSettings

    @property
    def name(self) -> str:
        return f"{self.task}-w{self.widths[0]}x{self.widths[1]}-{self.config}"


@dataclass
class Sweep:
    base: ExperimentSettings
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    widths: tuple[tuple[int, int], ...]
    configs: dict[str, dict] = field(default_factory=dict)  # name -> changes (nested, as in TOML)

    def cells(self) -> list[Cell]:
        out = []
        for task in self.tasks:
            for w in self.widths:
                for name, changes in self.configs.items():
                    s = config.from_dict(changes, replace(self.base, seeds=self.seeds, task=task, widths=w))
                    out.append(Cell(task, w, name, s))
        return out

    def with_seeds(self, seeds: tuple[int, ...]) -> Sweep:
        return replace(self, seeds=seeds)


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep file {path} is not valid TOML: {exc}") from None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_sweep(data: dict) -> Sweep:
    """A sweep from a TOML document; :class:`ConfigError` naming the key on any mistake."""
    data = dict(data)
    body = data.pop("sweep", None)
    if body is None:
        raise ConfigError("sweep: missing section [sweep] (see configs/sweep-quick.toml)")
    if not isinstance(body, dict):
        raise ConfigError("sweep: expected a table")
    base = config.from_dict(data)
    for key in body:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"sweep.{key}: unknown key (known: {', '.join(sorted(SWEEP_KEYS))})")
    seeds = base.seeds
    if "seeds" in body:
        try:
            seeds = config.parse_seeds(body["seeds"])
        except ConfigError as exc:
            raise ConfigError(f"sweep.{exc}") from None
    tasks = body.get("tasks", [base.task])
    if not (isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks)):
        raise ConfigError(f"sweep.tasks: expected a non-empty list of task names, got {tasks!r}")
    from .tasks import get_task

    for t in tasks:
        try:
            get_task(t)
        except ValueError as exc:
            raise ConfigError(f"sweep.tasks: {exc}") from None
    if len(set(tasks)) != len(tasks):
        raise ConfigError("sweep.tasks: the list repeats a task")
    widths = body.get("widths", [list(base.widths)])
    if not (isinstance(widths, list) and widths and all(
            isinstance(w, list) and len(w) == 2 and all(_is_int(x) for x in w) for w in widths)):
        raise ConfigError(f"sweep.widths: expected a list of [narrow, wide] integer pairs, got {widths!r}")
    for w in widths:
        if w[0] == w[1] or min(w) <= 0:
            raise ConfigError(f"sweep.widths: {w} is not two different positive widths")
    widths = tuple(tuple(w) for w in widths)
    if len(set(widths)) != len(widths):
        raise ConfigError("sweep.widths: the list repeats a pair")
    raw = body.get("configs", {"base": {}})
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("sweep.configs: expected a table of named configurations")
    configs = {}
    for name, changes in raw.items():
        where = f"sweep.configs.{name}"
        if not NAME.match(name):
            raise ConfigError(f"{where}: a configuration name is letters, digits, '_', '.', '-'")
        if not isinstance(changes, dict):
            raise ConfigError(f"{where}: expected a table")
        if "experiment" in changes:
            raise ConfigError(f"{where}.experiment: seeds, tasks and widths are set in [sweep], not per configuration")
        try:
            config.from_dict(changes, base)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        configs[name] = changes
    return Sweep(base, seeds, tuple(tasks), widths, configs)


def load_sweep(path: str | Path) -> Sweep:
    """A sweep from a TOML file (see the module docstring)."""
    return parse_sweep(_read_toml(Path(path)))


# --- running a sweep -----------------------------------------------------------------------------

def cell_summary(cell: Cell, doc: dict) -> dict:
    """The lines of ``sweep.json`` about one cell (its results.json has everything)."""
    return {"name": cell.name, "task": cell.task, "widths": list(cell.widths), "config": cell.config,
            "results": f"{cell.name}/results.json",
            "eval_mse": {str(r["config"]): r["eval_mse"] for r in doc["matrix"]},
            "cs_eval_mse": {r["source"]: r["eval_mse"] for r in doc["cs"]},
            "teachers": doc["teachers"],
            "effects": {k: {x: e[x] for x in ("mean", "lo", "hi", "n")} for k, e in doc["effects"].items()},
            "checklist_ok": all(c["ok"] is not False for c in doc["checklist"])}


def run_sweep(sweep: Sweep, out_dir: str | Path, client=None, workers: int = 2, check_gradients: bool = True,
              check_reproducible: bool = True, warn: Warn | None = None,
              on_done: Callable[[Cell, Unit], None] | None = None,
              on_resume: Callable[[int, int], None] | None = None) -> dict:
    """Run every cell of ``sweep`` (resuming from ``out_dir``), write all results, return the sweep document.

    ``client`` (a ``distributed.Client``) runs the units on a Dask cluster;
    without one they run on ``workers`` local threads. ``on_done(cell, unit)``
    follows progress; ``on_resume(done, total)`` is told how many units were found done.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    cells = sweep.cells()
    grad = {}
    if check_gradients:  # every width pair, before any training (the seeds require it)
        for cell in cells:
            key = (cell.widths, cell.settings.seeds[0])
            if key not in grad:
                grad[key] = gradient_error(cell.settings)
    t_grad = time.perf_counter() - t0
    stores = {c.name: UnitStore(out / c.name / "units", warn) for c in cells}
    plans = {c.name: plan(c.settings) for c in cells}
    done: dict[tuple, Result] = {}
    for c in cells:
        for key, r in stores[c.name].scan(plans[c.name], c.settings).items():
            done[(c.name, key)] = r
    if on_resume is not None:
        on_resume(len(done), sum(len(p) for p in plans.values()))
    by_name = {c.name: c for c in cells}

    def finished(job: Job, fig: dict, model: Model) -> None:
        stores[job.tag].save(job.unit, job.digest, fig, model)
        if on_done is not None:
            on_done(by_name[job.tag], job.unit)

    if client is not None:
        jobs = [Job(c.name, u, c.settings) for c in cells for u in plans[c.name]]
        results = run_on_dask(client, jobs, done, finished)
    else:
        results = dict(done)
        units = {(c.name, u.key): u for c in cells for u in plans[c.name]}
        pool = {unit_digest(units[tk], by_name[tk[0]].settings): r for tk, r in done.items()}
        for c in cells:
            mine = {k: r for (t, k), r in results.items() if t == c.name}
            for u in plans[c.name]:  # units another cell already has
                d = unit_digest(u, c.settings)
                if u.key not in mine and d in pool:
                    fig, model = pool[d]
                    mine[u.key] = (dict(fig), model)
                    finished(Job(c.name, u, c.settings), *mine[u.key])

            def cell_done(unit, fig, model, c=c):
                pool[unit_digest(unit, c.settings)] = (fig, model)
                finished(Job(c.name, unit, c.settings), fig, model)

            got = execute(plans[c.name], c.settings, workers=workers, done=mine, on_done=cell_done)
            results.update({(c.name, k): r for k, r in got.items()})
    t_train = time.perf_counter() - t0 - t_grad
    summaries = []
    for c in cells:
        res = {k: r for (t, k), r in results.items() if t == c.name}
        doc = assemble(c.settings, res, grad.get((c.widths, c.settings.seeds[0])), check_reproducible)
        doc["timing"] = {"workers": workers if client is None else "dask"}
        save_results(doc, res, out / c.name)
        summaries.append(cell_summary(c, doc))
    doc = {"ternq": "sweep", "seeds": list(sweep.seeds), "tasks": list(sweep.tasks),
           "widths": [list(w) for w in sweep.widths], "configs": sweep.configs,
           "base": sweep.base.to_dict() | {"seeds": list(sweep.seeds)}, "versions": versions(),
           "effect_labels": dict(stats.EFFECT_NAMES), "cells": summaries,
           "timing": {"gradcheck_s": t_grad, "training_s": t_train, "total_s": time.perf_counter() - t0,
                      "workers": workers if client is None else "dask"}}
    figures, timing = split_timing(doc)
    atomic_write_bytes(out / "sweep.json", (json.dumps(clean(figures), indent=2) + "\n").encode())
    atomic_write_bytes(out / "timing.json", (json.dumps(clean(timing), indent=2) + "\n").encode())
    return doc
