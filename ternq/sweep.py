"""Sweeps: a grid of experiments (seeds x tasks x widths x configurations) as one plan over the engine.

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

A sweep is one plan over the experiment engine: the units of every cell go
through one executor (:func:`ternq.experiment.execute.execute`: local threads or
Dask) into one store ``OUT/units``; units with equal digests, e.g. a teacher
shared by two cells, run once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import config
from .config import ConfigError, ExperimentSettings
from .experiment.execute import backend_for, execute
from .experiment.plans import plan
from .experiment.run import document, gradient_error, plan_widths
from .experiment.store import Store, Warn
from .experiment.units import Unit, versions
from .report.files import models_of, save_results, split_timing, write_json

SWEEP_KEYS = {"seeds", "tasks", "widths", "configs"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    return parse_sweep(config.read_toml(path, "sweep file"))


# --- running a sweep -----------------------------------------------------------------------------

def cell_summary(cell: Cell, doc: dict) -> dict:
    """The lines of ``sweep.json`` about one cell (its results.json has everything)."""
    return {"name": cell.name, "task": cell.task, "widths": list(cell.widths), "config": cell.config,
            "results": f"{cell.name}/results.json",
            "eval_mse": {str(r["config"]): r["eval_mse"] for r in doc["matrix"]},
            "cs_eval_mse": {r["source"]: r["eval_mse"] for r in doc["cs"]},
            "teachers": doc["teachers"],
            "effects": {k: {x: e[x] for x in ("mean", "lo", "hi", "n", "label")} for k, e in doc["effects"].items()},
            "checklist_ok": all(c["ok"] is not False for c in doc["checklist"]),
            "checks": {"passed": sum(c["ok"] is True for c in doc["checklist"]), "of": len(doc["checklist"]),
                       "failed": [c["item"] for c in doc["checklist"] if c["ok"] is False],
                       "undecided": [c["item"] for c in doc["checklist"] if c["ok"] is None]}}


def run_sweep(sweep: Sweep, out_dir: str | Path, client=None, workers: int = 2, check_gradients: bool = True,
              check_reproducible: bool = True, warn: Warn | None = None,
              on_done: Callable[[Unit], None] | None = None,
              on_resume: Callable[[int, int], None] | None = None) -> dict:
    """Run every cell of ``sweep`` (resuming from ``out_dir``), write all results, return the sweep document.

    One plan: the units of every cell, each digest once (a teacher shared by two
    cells trains once), in one store ``OUT/units``, through one executor
    (``client``: a Dask cluster; else ``workers`` local threads).
    ``on_done(unit)`` follows progress; ``on_resume(done, total)`` is told how many units were found done.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    cells = sweep.cells()
    plans = {c.name: plan(c.settings) for c in cells}
    grad = {}
    if check_gradients:  # every width set, before any training (the seeds require it)
        for c in cells:
            key = (tuple(plan_widths(plans[c.name])), c.settings.task, c.settings.seeds[0])
            if key not in grad:
                grad[key] = gradient_error(c.settings, plan_widths(plans[c.name]))
    t_grad = time.perf_counter() - t0
    store = Store(out / "units", warn)
    units = [u for c in cells for u in plans[c.name].units]
    done = store.scan(units)
    if on_resume is not None:
        on_resume(len(done), len({u.digest for u in units}))

    def finished(unit: Unit, fig: dict, model) -> None:
        store.save(unit, fig, model)
        if on_done is not None:
            on_done(unit)

    backend = backend_for(workers, client)
    try:
        results = execute(units, backend, done=done, on_done=finished)
    finally:
        backend.close()
    t_train = time.perf_counter() - t0 - t_grad
    summaries = []
    for c in cells:
        p = plans[c.name]
        rerun = None
        if check_reproducible:
            from .experiment.run import rerun_unit
            from .experiment.units import run_unit

            u = rerun_unit(p)
            rerun = run_unit(u, {})[1].theta.tobytes() == results[u.digest][1].theta.tobytes()
        err = grad.get((tuple(plan_widths(p)), c.settings.task, c.settings.seeds[0]))
        doc = document(p, results, err, rerun)
        doc["timing"] = {"workers": workers if client is None else "dask"}
        save_results(doc, models_of(p, results), out / c.name)
        summaries.append(cell_summary(c, doc))
    doc = {"ternq": "sweep", "seeds": list(sweep.seeds), "tasks": list(sweep.tasks),
           "widths": [list(w) for w in sweep.widths], "configs": sweep.configs,
           "base": sweep.base.to_dict() | {"seeds": list(sweep.seeds)}, "versions": versions(),
           "effect_labels": {k: v["label"] for k, v in summaries[0]["effects"].items()} if summaries else {},
           "cells": summaries,
           "timing": {"gradcheck_s": t_grad, "training_s": t_train, "total_s": time.perf_counter() - t0,
                      "workers": workers if client is None else "dask"}}
    figures, timing = split_timing(doc)
    write_json(out / "sweep.json", figures)
    write_json(out / "timing.json", timing)
    return doc
