"""The frontier: held-out error against weight bytes and instructions per step, for every weight format.

A frontier trains, for each weight format and each of its widths, one student with the same recipe and
budget (by default configs/best.toml's: 6000 epochs with progressive quantization, then 3000 epochs of
scales, biases and tau with the levels frozen), over the seeds; beside them the equal-budget float of each
width (the reference line) and, on request, post-training quantization (PTQ) of that float into each
format, with and without the levels-frozen fine-tune.

Everything trains through the one runner (:func:`ternq.experiment.run.run`): each format's widths become
cells of two widths each (a general design whose one factor is the width), so an output folder resumes,
units equal in content (a teacher, the float of a width) train once, and Dask runs them when asked. The
frontier then reads each model's scored eval MSE from the cells' documents, puts every model at its
weight bytes (:func:`ternq.formats.weight_bytes`) and, where they can be counted, its instructions per
step (:func:`instruction_counter`), and marks the Pareto front (:func:`pareto_front`) on each axis.

A frontier file is a settings file (its sections on top of the recipe) plus a ``[frontier]`` section::

    [frontier]
    seeds = "0:3"
    ptq = false                     # also PTQ of each width's float, with and without the fine-tune
    board = "m4"                    # where instructions are counted: m4 (Cortex-M4F) or m3 (Cortex-M3)
    [frontier.widths]               # format -> widths
    ternary = [16, 24, 32, 48]
    int4 = [8, 12, 16, 20]
    "ternary+cand:int8" = [16, 24]  # mixed: ternary, its candidate matrix int8 (ternq.formats.label)

A mixed point trains as the others do; it is not deployable yet, so no instructions are counted for it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import config, formats
from .config import ConfigError, ExperimentSettings
from .experiment.plans import GENERAL_WORDS, WIDTH, DesignSettings, Factor, Words
from .experiment.run import RESULTS_VERSION, Cell, Outcome, run
from .experiment.summary import geo
from .experiment.units import TaskSpec, versions
from .forecast import baseline_names
from .settings import MAX_HIDDEN, local_workers

FRONTIER_KEYS = {"seeds", "widths", "ptq", "board"}
BOARDS = ("m4", "m3")

# The default grid. Weight bytes are levels packed (ternary 5 a byte, int4 2, int8 1) plus a float32 scale per
# row (2H + O rows), so at small widths the scales weigh on int4 and int8. On lorenz (3 in, 3 out):
#   ternary H=16, 24, 32, 48: 272, 478, 736, 1404 bytes
#   int4    H=8, 12, 16, 20:  176, 306, 468, 662
#   int8    H=8, 12, 16, 20:  276, 504, 796, 1152
# so each format has a width near 270, 480 and 750 bytes (the study's three levels) and the ranges overlap
# from 270 to 1150 bytes; on one-channel tasks (sine, ecg) every figure is a little smaller, in the same order.
DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {"ternary": (16, 24, 32, 48), "int4": (8, 12, 16, 20),
                                              "int8": (8, 12, 16, 20)}
DEFAULT_SEEDS = (0, 1, 2)

# configs/best.toml's student recipe (a test keeps the two equal): the frontier's default for every format.
RECIPE = {"student": {"epochs": 6000, "progressive": 0.5, "finetune_epochs": 3000, "finetune_lr": 0.01}}

# How each kind of model of the frontier is trained, and its label.
QAT, PTQ, PTQ_FT = "qat", "ptq", "ptq+ft"
METHOD_LABEL = {QAT: "", PTQ: " PTQ", PTQ_FT: " PTQ+FT"}


@dataclass(frozen=True)
class Frontier:
    """A frontier: the settings every model shares, the widths of each format, the seeds and what else runs."""

    base: ExperimentSettings
    widths: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_WIDTHS))
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    ptq: bool = False
    board: str = "m4"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first mistake (an empty grid, an unknown format, bad widths)."""
        check_widths(self.widths)
        if self.base.student.float_matrices != "none":
            raise ConfigError(f"student.float_matrices: a frontier counts each point's weights at their format's "
                              f"bytes; a student with {self.base.student.float_matrices} kept in float is for "
                              "factorials (configs/research-where.toml), not a frontier point")
        for key in ("scale_group", "scale_sign"):
            if getattr(self.base.student, key):
                raise ConfigError(f"student.{key}: a frontier's formats carry one scale per row; compare scale "
                                  "layouts in a factorial (configs/research-groups.toml)")
        if self.board not in BOARDS:
            raise ConfigError(f"frontier.board: one of {', '.join(BOARDS)}, not {self.board!r}")
        for fmt in self.widths:
            try:
                config.from_dict(format_changes(fmt), self.base)
            except ConfigError as exc:
                raise ConfigError(f"frontier.widths.{fmt}: this ternq cannot train it ({exc})") from None
        self.cells()  # each method's settings (PTQ's too) are read and checked here, before anything runs

    def cells(self) -> list[FrontierCell]:
        """Every cell: per format (and, with ``ptq``, per PTQ method) its widths two by two (:func:`pairs`)."""
        out = []
        for fmt, widths in self.widths.items():
            for method in (QAT, PTQ, PTQ_FT) if self.ptq else (QAT,):
                base = method_settings(self.base, fmt, method)
                for lo, hi in pairs(widths):
                    design = DesignSettings((Factor(WIDTH, lo, hi, "width"),), words=words(fmt, method))
                    s = replace(base, seeds=self.seeds, widths=(lo, hi), design=design)
                    out.append(FrontierCell(Cell(cell_name(fmt, method, lo, hi), s), fmt, method))
        return out

    @property
    def task(self) -> TaskSpec:
        return TaskSpec.of(self.base)


@dataclass(frozen=True)
class FrontierCell:
    """A cell of the runner and the format and training method of its students."""

    cell: Cell
    format: str
    method: str


def check_widths(widths: dict[str, tuple[int, ...]]) -> None:
    """A grid: at least one format, each a known one with one or more distinct positive widths."""
    if not widths:
        raise ConfigError("frontier.widths: the grid is empty; give at least one format and its widths")
    for fmt, ws in widths.items():
        where = f"frontier.widths.{fmt}"
        try:
            formats.parse_label(fmt)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not ws:
            raise ConfigError(f"{where}: no widths")
        bad = [w for w in ws if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_HIDDEN]
        if bad:
            raise ConfigError(f"{where}: widths are integers from 1 to {MAX_HIDDEN}, not {bad[0]!r}")
        if len(set(ws)) != len(ws):
            raise ConfigError(f"{where}: the list repeats a width")


def pairs(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """The sorted widths two by two (an odd one out: itself twice, trained once). Each pair is one cell; fewer
    cells summarise faster (every cell scores its models against the simple forecasts)."""
    ws = sorted(widths)
    return [(ws[i], ws[min(i + 1, len(ws) - 1)]) for i in range(0, len(ws), 2)]


def cell_name(fmt: str, method: str, lo: int, hi: int) -> str:
    tag = formats.slug(fmt) + ("-" + method.replace("+", "-") if method != QAT else "")
    return f"{tag}-h{lo}" + (f"-h{hi}" if hi != lo else "")


def words(fmt: str, method: str) -> Words:
    """How a frontier cell names its units: the format and method in every student's key."""
    tag = formats.slug(fmt) + ("" if method == QAT else "-" + method.replace("+", "-"))
    return replace(GENERAL_WORDS, name="frontier", student_key=f"s{{seed}}/{tag}-h{{hidden}}")


def format_changes(fmt: str) -> dict:
    """The settings that make a student of format ``fmt``, one format or a mixed label (``ternary+cand:int8``:
    :func:`ternq.formats.parse_label`) (the one place the format's settings are named)."""
    return {"student": formats.parse_label(fmt)}


def method_settings(base: ExperimentSettings, fmt: str, method: str) -> ExperimentSettings:
    """The settings of one format and training method.

    PTQ quantizes the equal-budget float of each width: the cell's teacher is trained with the recipe's whole
    budget and schedule kind (so it is that float, one unit), and the student only rounds it (PTQ) or rounds
    it and fine-tunes scales, biases and tau with the levels frozen for the recipe's fine-tune epochs (its main
    epochs when it has none) (PTQ+FT). The float reference comes from the recipe's cells, so PTQ cells train
    none of their own.
    """
    s = config.from_dict(format_changes(fmt), base)
    if method == QAT:
        return s
    st = base.student
    return config.from_dict({"teacher": {"epochs": st.total_epochs, "schedule": st.schedule},
                             "student": ptq_student(method == PTQ_FT, st.finetune_epochs or st.epochs),
                             "run": {"float_reference": False}}, s)


def ptq_student(finetune: bool, finetune_epochs: int) -> dict:
    """The student settings of post-training quantization, with or without the levels-frozen fine-tune (PTQ has
    no quantization-aware epochs, so nothing of them: no progressive quantization, no distillation)."""
    return {"ptq": True, "progressive": 0.0, "distill": False, "distill_output": 0.0,
            "finetune_epochs": finetune_epochs if finetune else 0}


# --- reading a frontier file ---------------------------------------------------------------------

def recipe_base() -> ExperimentSettings:
    """The default settings of every model of a frontier: the defaults with the best recipe's student."""
    return config.from_dict(RECIPE)


def parse_frontier(data: dict) -> Frontier:
    """A frontier from a TOML document (its ``[frontier]`` section optional); :class:`ConfigError` on a mistake."""
    data = dict(data)
    body = data.pop("frontier", {})
    if not isinstance(body, dict):
        raise ConfigError("frontier: expected a table")
    for key in body:
        if key not in FRONTIER_KEYS:
            raise ConfigError(f"frontier.{key}: unknown key (known: {', '.join(sorted(FRONTIER_KEYS))})")
    if "design" in data:
        raise ConfigError("design: a frontier's design is its grid ([frontier.widths]), not a [design] section")
    for key in ("seeds", "widths"):
        if isinstance(data.get("experiment"), dict) and key in data["experiment"]:
            raise ConfigError(f"experiment.{key}: a frontier's {key} are set in [frontier]")
    base = config.from_dict(data, recipe_base())
    seeds = DEFAULT_SEEDS
    if "seeds" in body:
        try:
            seeds = config.parse_seeds(body["seeds"])
        except ConfigError as exc:
            raise ConfigError(f"frontier.{exc}") from None
    raw = body.get("widths", {k: list(v) for k, v in DEFAULT_WIDTHS.items()})
    if not isinstance(raw, dict):
        raise ConfigError("frontier.widths: expected a table of format = [widths]")
    for fmt, ws in raw.items():
        if not isinstance(ws, list):
            raise ConfigError(f"frontier.widths.{fmt}: expected a list of widths, got {ws!r}")
    ptq = body.get("ptq", False)
    if not isinstance(ptq, bool):
        raise ConfigError(f"frontier.ptq: expected true or false, got {ptq!r}")
    board = body.get("board", "m4")
    f = Frontier(base, {k: tuple(v) for k, v in raw.items()}, seeds, ptq, board)
    f.validate()
    return f


def load_frontier(path: str | Path | None) -> Frontier:
    """A frontier from a file (see the module docstring), or the default one (no file)."""
    return parse_frontier(config.read_toml(path, "frontier file") if path is not None else {})


def parse_grid(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``FORMAT=W1,W2,...`` items (the command line's ``--widths``) as a grid; :class:`ConfigError` otherwise."""
    grid: dict[str, tuple[int, ...]] = {}
    for text in items:
        m = re.fullmatch(r"\s*([A-Za-z0-9_+:]+)\s*=\s*([^=]*)", text)
        if not m:
            raise ConfigError(f"widths: {text!r} is not FORMAT=W1,W2,... (e.g. int4=8,12,16)")
        fmt, body = m.groups()
        if fmt in grid:
            raise ConfigError(f"widths: format {fmt} is given twice")
        parts = [p.strip() for p in body.split(",")]
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise ConfigError(f"widths: {text!r}: widths are positive integers separated by commas")
        grid[fmt] = tuple(int(p) for p in parts)
    check_widths(grid)
    return grid


# --- the front -----------------------------------------------------------------------------------

def pareto_front(costs: list[float | None], errors: list[float]) -> list[bool]:
    """Which points are on the Pareto front of (cost, error), both lower-is-better: no other point has a cost
    at most its own and a lower error, or a lower cost and an error at most its own. Equal points are on it
    together. A point without a cost (None) or with an error that is not finite is never on it."""
    ok = [c is not None and math.isfinite(c) and math.isfinite(e) for c, e in zip(costs, errors, strict=True)]
    idx = sorted((i for i in range(len(costs)) if ok[i]), key=lambda i: (costs[i], errors[i]))
    front = [False] * len(costs)
    best_below = math.inf  # the lowest error at a strictly lower cost
    k = 0
    while k < len(idx):
        j = k
        while j < len(idx) and costs[idx[j]] == costs[idx[k]]:
            j += 1
        lowest = errors[idx[k]]  # sorted by error within one cost
        if lowest < best_below:
            for i in idx[k:j]:
                front[i] = errors[i] == lowest
        best_below = min(best_below, lowest)
        k = j
    return front


# --- the instructions axis -----------------------------------------------------------------------

@dataclass(frozen=True)
class InstructionCounter:
    """Measures a student on a board (``count``: Model -> {"instructions_per_step", "flash", "ram",
    "counted_on"}), or says why it cannot (``count`` None, ``note`` "not counted (...)")."""

    board: str
    note: str
    count: Callable | None = None

    @property
    def available(self) -> bool:
        return self.count is not None


def instruction_counter(board: str = "m4") -> InstructionCounter:
    """The instructions axis, wired in this one place: the deployed model's budget on the emulated ``board``
    (:func:`ternq.device.export.budget`: its C library run on the board's emulator, which counts the
    instructions) where this ternq has it and the Arm toolchain is present; otherwise a counter that says
    plainly why not."""
    from .device import toolchain

    absent = toolchain.missing(board)
    if absent:
        return InstructionCounter(board, f"not counted (no toolchain: {', '.join(absent)} missing)")
    try:
        from .device.export import budget
    except ImportError:
        return InstructionCounter(board, "not counted (this ternq has no per-format budget on a board)")

    def count(model) -> dict:
        from .deploy import Deployable

        b = budget(Deployable.from_model(model), board)
        return {k: b.get(k) for k in ("instructions_per_step", "flash", "ram", "counted_on")}

    return InstructionCounter(board, f"counted on the emulated {toolchain.TARGETS[board].description}", count)


# --- running and reading a frontier --------------------------------------------------------------

@dataclass
class Point:
    """One model of the frontier (a format, a training method, a width) over the seeds."""

    format: str
    method: str
    hidden: int
    weight_bytes: int
    seeds: dict[int, dict] = field(default_factory=dict)  # seed -> its row of the cell's results
    instructions: float | None = None  # on the board, mean over seeds (None: not counted)
    flash: int | None = None
    ram: int | None = None

    @property
    def label(self) -> str:
        return self.format + METHOD_LABEL[self.method]


def is_mixed(fmt: str) -> bool:
    """Whether a frontier format label names more than one format (``ternary+cand:int8``)."""
    d = formats.parse_label(fmt)
    return len(set(d.values())) > 1


def label_bytes(fmt: str, n_in: int, hidden: int, n_out: int) -> int:
    """The weight bytes of a student of the format label ``fmt`` (:func:`ternq.formats.weight_bytes_mixed`)."""
    d = formats.parse_label(fmt)
    fmts = formats.matrix_formats(d["weight_format"], *(d.get(f"weight_format_{m}", "") for m in formats.MATRICES))
    return formats.weight_bytes_mixed(fmts, n_in, hidden, n_out)


def float_weight_bytes(n_in: int, hidden: int, n_out: int) -> int:
    """The weights of a float model of that width as float32 (4 bytes each, no scales)."""
    return 4 * (2 * hidden * (n_in + hidden) + n_out * hidden)


def run_frontier(spec: Frontier, out_dir: str | Path | None = None, *, counter: InstructionCounter | None = None,
                 **kwargs) -> tuple[dict, Outcome]:
    """Train every model of ``spec`` through :func:`ternq.experiment.run.run` (``kwargs`` go to it: workers,
    client, device, force, progress) and return the frontier document and the run's outcome."""
    cells = spec.cells()
    outcome = run([c.cell for c in cells], out_dir, **kwargs)
    workers = local_workers(kwargs.get("workers") or spec.base.run.workers)
    return frontier_doc(spec, cells, outcome, counter or instruction_counter(spec.board), workers), outcome


def frontier_doc(spec: Frontier, cells: list[FrontierCell], outcome: Outcome, counter: InstructionCounter,
                 workers: int = 1) -> dict:
    """The frontier's results document from a finished run of its cells (``outcome.cells`` in ``cells``' order);
    ``workers`` models are measured on the board at once (each measurement is a compiler and an emulator)."""
    task = spec.task.make()
    n_in, n_out = task.n_in, task.n_out
    points: dict[tuple[str, str, int], Point] = {}
    models: dict[tuple[str, str, int], list] = {}
    refs: dict[int, dict] = {}
    for fc, cr in zip(cells, outcome.cells, strict=True):
        for s in cr.doc["per_seed"]:
            for run_, row in zip(cr.plan.runs, s["runs"], strict=True):
                key = (fc.format, fc.method, row["hidden"])
                p = points.setdefault(key, Point(fc.format, fc.method, row["hidden"], label_bytes(
                    fc.format, n_in, row["hidden"], n_out)))
                if s["seed"] not in p.seeds:
                    p.seeds[s["seed"]] = row
                    models.setdefault(key, []).append(cr.results[cr.plan.students[run_.index, s["seed"]].digest][1])
            for ref in s["references"].values():
                refs.setdefault(ref["hidden"], {})[s["seed"]] = ref
    order = list(spec.widths)
    keys = sorted(points, key=lambda k: (order.index(k[0]), (QAT, PTQ, PTQ_FT).index(k[1]), k[2]))
    ordered = [points[k] for k in keys]
    note = counter.note
    t0 = time.perf_counter()
    if counter.available:
        counted = [k for k in keys if not is_mixed(k[0])]  # a mixed model is not deployable yet: no count
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            measured = {k: list(pool.map(counter.count, models[k])) for k in counted}
        for k, p in zip(keys, ordered, strict=True):
            if k not in measured:
                continue
            budgets = measured[k]
            p.instructions = sum(b["instructions_per_step"] for b in budgets) / len(budgets)
            p.flash = max(b["flash"] for b in budgets)
            p.ram = max(b["ram"] for b in budgets)
            note = f"counted on {budgets[0]['counted_on']}" if budgets[0].get("counted_on") else note
    errors = [geo([r["eval_mse_scored"] for r in p.seeds.values()])["geo_mean"] for p in ordered]
    on_bytes = pareto_front([p.weight_bytes for p in ordered], errors)
    on_instr = pareto_front([p.instructions for p in ordered], errors) if counter.available else [None] * len(
        ordered)
    doc_points = []
    for p, b, i in zip(ordered, on_bytes, on_instr, strict=True):
        rows = [p.seeds[k] for k in sorted(p.seeds)]
        doc_points.append({
            "label": p.label, "format": p.format, "method": p.method, "hidden": p.hidden,
            "weight_bytes": p.weight_bytes, "instructions_per_step": p.instructions, "flash": p.flash, "ram": p.ram,
            "eval_mse_scored": geo([r["eval_mse_scored"] for r in rows]),
            "eval_mse_whole": geo([r["eval_mse_whole"] for r in rows]),
            "vs_float_scored": geo([r["vs_float_scored"] for r in rows]),  # PTQ: against its own float, the same
            "front_bytes": b, "front_instructions": i,
            "per_seed": [{"seed": r["seed"], "key": r["key"], "eval_mse_scored": r["eval_mse_scored"],
                          "eval_mse_whole": r["eval_mse_whole"]} for r in rows]})
    references = []
    for h in sorted(refs):
        rows = [refs[h][k] for k in sorted(refs[h])]
        references.append({"label": f"float, {rows[0]['epochs']} epochs", "format": "float32", "hidden": h,
                           "epochs": rows[0]["epochs"], "schedule": rows[0]["schedule"],
                           "weight_bytes": float_weight_bytes(n_in, h, n_out),
                           "eval_mse_scored": geo([r["eval_mse_scored"] for r in rows]),
                           "eval_mse_whole": geo([r["eval_mse_whole"] for r in rows]),
                           "per_seed": [{"seed": r["seed"], "key": r["key"], "eval_mse_scored": r["eval_mse_scored"],
                                         "eval_mse_whole": r["eval_mse_whole"]} for r in rows]})
    first = outcome.cells[0].doc
    fc = first.get("forecast") or {}
    best = None
    if fc:
        base = fc["baselines"]
        name = min(baseline_names(base), key=lambda n: base[n]["mse"], default=None)
        best = {"name": name, "eval_mse_scored": base[name]["mse"], "period": base["period"],
                "info": {k: base[name][k] for k in ("orders", "order") if k in base[name]}} if name else None
    return {"ternq": "frontier", "version": RESULTS_VERSION, "task": task.describe(), "seeds": list(spec.seeds),
            "grid": {k: sorted(v) for k, v in spec.widths.items()}, "ptq": spec.ptq,
            "recipe": {k: v for k, v in spec.base.to_dict()["student"].items()
                       if k != "ptq" and not k.startswith("weight_format")},
            "teacher": spec.base.to_dict()["teacher"],
            "metric": first["metric"],
            "weight_bytes": "levels packed (ternary 5 a byte, binary 8, intN 8 // N; a mixed model's matrices each in "
                            "its own format) plus a float32 scale per row; biases and tau not counted; floats: 4 "
                            "bytes a weight",
            "mixed_instructions": "mixed formats are not deployable yet: no instructions are counted for them",
            "instructions": {"counted": counter.available, "board": counter.board, "note": note,
                             "what": "instructions per step: the mean over seeds; flash and RAM: the largest"},
            "float_reference": {"what": "a float of each width trained with the student's whole budget (main epochs "
                                        "and fine-tune) and schedule kind", "models": references},
            "best_simple_forecast": best,
            "points": doc_points, "cells": [c.cell.name for c in outcome.cells], "versions": versions(),
            "timing": {**outcome.timing, "counting_s": time.perf_counter() - t0}}


CSV_COLUMNS = ["label", "format", "method", "hidden", "seed", "weight_bytes", "instructions_per_step",
               "eval_mse_scored", "eval_mse_whole", "front_bytes", "front_instructions"]


def csv_rows(doc: dict) -> list[dict]:
    """One row per model and seed (the float references too), then one per model over seeds (seed "geo")."""
    rows = []
    for p in doc["points"] + doc["float_reference"]["models"]:
        common = {k: p.get(k, "") for k in ("label", "format", "method", "hidden", "weight_bytes",
                                            "instructions_per_step", "front_bytes", "front_instructions")}
        for r in p["per_seed"]:
            rows.append({**common, "seed": r["seed"], "eval_mse_scored": r["eval_mse_scored"],
                         "eval_mse_whole": r["eval_mse_whole"]})
        rows.append({**common, "seed": "geo", "eval_mse_scored": p["eval_mse_scored"]["geo_mean"],
                     "eval_mse_whole": p["eval_mse_whole"]["geo_mean"]})
    return [{k: ("" if r.get(k) is None else r.get(k, "")) for k in CSV_COLUMNS} for r in rows]


def save(doc: dict, out_dir: str | Path) -> list[Path]:
    """Write results.json (without wall times: those go to timing.json) and results.csv into ``out_dir``."""
    import csv
    import io

    from .experiment.results import split_timing, write_json
    from .model import atomic_write_bytes

    out = Path(out_dir)
    figures, timing = split_timing(doc)
    write_json(out / "results.json", figures)
    write_json(out / "timing.json", timing)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(doc))
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    return [out / "results.json", out / "results.csv"]
