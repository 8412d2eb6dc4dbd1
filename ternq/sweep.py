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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import config
from .config import ConfigError, ExperimentSettings
from .experiment.execute import OnStart
from .experiment.results import split_timing, write_json
from .experiment.run import RESULTS_VERSION, Cell, Outcome, run
from .experiment.store import Warn, stderr_warn
from .experiment.units import Unit, versions

SWEEP_KEYS = {"seeds", "tasks", "widths", "configs"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- sweep files ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridCell:
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

    def cells(self) -> list[GridCell]:
        out = []
        for task in self.tasks:
            for w in self.widths:
                for name, changes in self.configs.items():
                    s = config.from_dict(changes, replace(self.base, seeds=self.seeds, task=task, widths=w))
                    out.append(GridCell(task, w, name, s))
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

def cell_summary(cell: GridCell, doc: dict) -> dict:
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


def run_sweep(sweep: Sweep, out_dir: str | Path, client=None, workers: int | None = None,
              check_gradients: bool = True, check_reproducible: bool = True, force: bool = False,
              warn: Warn = stderr_warn, on_resume: Callable[[int, int], None] | None = None,
              on_start: OnStart | None = None,
              on_done: Callable[[Unit, dict], None] | None = None) -> tuple[dict, Outcome]:
    """Run every cell of ``sweep`` (resuming from ``out_dir``) with :func:`ternq.experiment.run.run`, write
    ``sweep.json`` beside the cells' folders; return it and the run's outcome. Arguments as
    :func:`~ternq.experiment.run.run`'s."""
    out = Path(out_dir)
    cells = sweep.cells()
    outcome = run([Cell(c.name, c.settings) for c in cells], out, workers=workers, client=client,
                  check_gradients=check_gradients, check_reproducible=check_reproducible, force=force, warn=warn,
                  on_resume=on_resume, on_start=on_start, on_done=on_done)
    summaries = [cell_summary(c, r.doc) for c, r in zip(cells, outcome.cells, strict=True)]
    doc = {"ternq": "sweep", "version": RESULTS_VERSION, "seeds": list(sweep.seeds), "tasks": list(sweep.tasks),
           "widths": [list(w) for w in sweep.widths], "configs": sweep.configs,
           "base": sweep.base.to_dict() | {"seeds": list(sweep.seeds)}, "versions": versions(),
           "effect_labels": {k: v["label"] for k, v in summaries[0]["effects"].items()} if summaries else {},
           "cells": summaries, "timing": outcome.timing}
    figures, timing = split_timing(doc)
    write_json(out / "sweep.json", figures)
    write_json(out / "timing.json", timing)
    return doc, outcome
