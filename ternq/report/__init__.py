"""Presentation: rich tables and progress displays (here), plots (:mod:`.plots`), files (:mod:`.files`).

No figure is computed here: the engine's summary (:mod:`ternq.experiment.summary`) makes them all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..jsonsafe import dumps

# a pipe or a file gets a fixed width wide enough for the factorial matrix
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact scientific format; '-' for missing."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x:.{digits - 1}e}"


def gradcheck_table(results, tolerance: float) -> Table:
    t = Table(title="Gradient check (float64, central differences + Richardson)")
    for col in ("model", "block", "parameters checked", "max relative error", "worst index", ""):
        t.add_column(col, justify="right" if col not in ("model", "block") else "left")
    for r in results:
        t.add_row(r.model, r.block, str(r.checked), fmt(r.max_rel_err), str(r.worst_index),
                  "[green]ok[/]" if r.max_rel_err < tolerance else "[red]FAIL[/]")
    return t


def kv_table(title: str, rows: dict) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("", style="bold")
    t.add_column("", justify="right")
    for k, v in rows.items():
        t.add_row(k, fmt(v) if isinstance(v, float) else str(v))
    return t


def print_json(obj) -> None:
    sys.stdout.write(dumps(obj, indent=2) + "\n")


def kernels_compiled() -> bool:
    """Whether Numba's cache holds the training loop compiled from today's source (else the first call compiles)."""
    from pathlib import Path

    from ..kernels import loop

    src = Path(loop.__file__)
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    index = list((src.parent / "__pycache__").glob(f"loop.train_epochs-*.{tag}.nbi"))
    return any(i.stat().st_mtime >= src.stat().st_mtime for i in index)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress | None]:
    """A rich progress display on stderr (with an ETA), or None when disabled.

    Says so first when the kernels are about to compile (the bars would stand still for a while).
    """
    if not enabled:
        yield None
        return
    if not kernels_compiled():
        err.print("compiling kernels (first run only; cached for the next runs)")
    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"),
                 TimeRemainingColumn(), console=err, transient=True)
    with p:
        yield p


def unit_line(done: int, total: int, key: str, fig: dict) -> None:
    """One line per finished unit on stderr when it is not a terminal (no bars there: a log instead)."""
    if err.is_terminal:
        return
    mse = fig.get("eval_mse")
    err.print(f"[{done}/{total}] {key}" + (f": eval MSE {fmt(mse)}" if isinstance(mse, float) else ""),
              highlight=False, soft_wrap=True)


def tracker(p: Progress | None, description: str, total: int):
    """A ``progress(done, total, loss)`` callback bound to a new bar, or None."""
    if p is None:
        return None
    task = p.add_task(description, total=total, loss="-")

    def update(done: int, total: int, loss: float) -> None:
        p.update(task, completed=done, total=total, loss=f"{loss:.3e}")

    return update


def _ci(d: dict, digits: int = 3) -> str:
    """'geo-mean' or 'geo-mean [lo, hi]' of a summary cell."""
    if d["n"] < 2 or np.isnan(d["lo"]):
        return fmt(d["geo_mean"], digits)
    return f"{fmt(d['geo_mean'], 2)} [{fmt(d['lo'], 2)}, {fmt(d['hi'], 2)}]"


def _ratio(d: dict) -> str:
    if d["n"] < 2 or np.isnan(d["lo"]):
        return f"{d['geo_mean']:.2f}x"
    return f"{d['geo_mean']:.2f}x [{d['lo']:.2f}, {d['hi']:.2f}]"


def _stacked(text: str) -> str:
    """'value [lo, hi]' as two lines (value, then the interval) for a narrow column."""
    value, sep, rest = text.partition(" [")
    return f"{value}\n[{rest}" if sep else value


def matrix_compact(doc: dict) -> Table:
    """The seeds' matrix in under 80 columns: switches as +/-, eval MSE and ratios with intervals below them."""
    n = len(doc["seeds"])
    note = f"geometric mean over {n} seeds [95% CI]" if n > 1 else f"seed {doc['seeds'][0]}"
    m = Table(title=f"Factorial on {doc['task']['name']} ({note}); eval MSE, held out")
    for col in ("Config", "A", "B", "H", "Eval MSE", "vs Float", "vs Base"):
        m.add_column(col, justify="center" if col in ("A", "B") else "right", no_wrap=True)
    for r in doc["matrix"]:
        m.add_row(str(r["config"]), "+" if r["shaped"] else "-", "+" if r["distill"] else "-", str(r["width"]),
                  _stacked(_ci(r["eval_mse"])), _stacked(_ratio(r["vs_float"])), _stacked(_ratio(r["vs_baseline"])))
    m.add_section()
    labels = {"teacher": "PTQ+CS", "config1": "1+CS"}
    for r in doc["cs"]:
        m.add_row(labels[r["source"]], "", "", str(r["width"]), _stacked(_ci(r["eval_mse"])),
                  _stacked(_ratio(r["vs_float"])), _stacked(_ratio(r["vs_baseline"])))
    for w, t in doc["teachers"].items():
        m.add_row("teacher", "", "", w, _stacked(_ci(t)), "1.00x", "")
    m.caption = ("A: shaped gradient, B: trajectory distillation (+ on, - off), H: width. PTQ+CS: the quantized "
                 "teacher, then coordinate search; 1+CS: search refining config 1. A wider terminal shows train MSE.")
    return m


def factorial_tables(doc: dict, width: int | None = None) -> list[Table]:
    """The seeds' matrix, the CS rows, the effects and the success checklist.

    The matrix has every column when it fits in ``width`` (the console's by
    default), else the compact layout of :func:`matrix_compact`.
    """
    n = len(doc["seeds"])
    many = n > 1
    note = f"geometric mean over {n} seeds [95% CI]" if many else f"seed {doc['seeds'][0]}"
    m = Table(title=f"Factorial on {doc['task']['name']} ({note}); eval MSE on held-out sequences")
    for col in ("Config", "Shaped", "Distill", "Width", "Train MSE", "Eval MSE", "vs Float", "vs Baseline"):
        m.add_column(col, justify="right" if col not in ("Shaped", "Distill") else "center", no_wrap=True)
    for r in doc["matrix"]:
        m.add_row(str(r["config"]), "Yes" if r["shaped"] else "No", "Yes" if r["distill"] else "No",
                  str(r["width"]), _ci(r["train_mse"]), _ci(r["eval_mse"]), _ratio(r["vs_float"]),
                  _ratio(r["vs_baseline"]))
    m.add_section()
    labels = {"teacher": "PTQ+CS", "config1": "1+CS"}
    m.caption = (f"PTQ+CS: the H={doc['widths'][0]} teacher quantized with absmean scales, then coordinate search "
                 "(the C program's baseline); 1+CS: coordinate search refining config 1. CS train MSE is its search "
                 "objective.")
    for r in doc["cs"]:
        m.add_row("CS", labels[r["source"]], "", str(r["width"]), _ci(r["train_mse"]), _ci(r["eval_mse"]),
                  _ratio(r["vs_float"]), _ratio(r["vs_baseline"]))
    for w, t in doc["teachers"].items():
        m.add_row("float", "teacher", "", w, "", _ci(t), "1.00x", "")

    e = effects_table(doc, width)
    if not _fits(m, width):
        m = matrix_compact(doc)
    return [m, e, checklist_table(doc), predictions_table(doc)]


def _fits(table: Table, width: int | None) -> bool:
    """Whether ``table`` at its natural width fits in ``width`` columns (the console's by default)."""
    return out.measure(table, options=out.options.update_width(10_000)).maximum <= (width or out.width)


def effects_table(doc: dict, width: int | None = None) -> Table:
    """Every effect with its interval, x MSE, verdict (and aliases, for a fractional design); the interval under
    the estimate when the table would not fit in ``width`` columns."""
    wide = _effects_table(doc, stacked=False)
    return wide if _fits(wide, width) else _effects_table(doc, stacked=True)


def _effects_table(doc: dict, stacked: bool) -> Table:
    n = len(doc["seeds"])
    many = n > 1
    fractional = bool(doc["design"]["generators"])
    e = Table(title=f"Effects on {doc.get('response', 'log10(eval MSE)')} (negative = lower error)"
              + (f"; mean over {n} seeds [95% CI]" if many else "; one seed: no interval"))
    cols = ["Effect", "Factor(s)", "Estimate", "95% CI", "x MSE", "Verdict"] + (["Aliases"] if fractional else [])
    if stacked:
        cols.remove("95% CI")
    for col in cols:
        e.add_column(col, justify="left" if col in ("Effect", "Factor(s)", "Verdict", "Aliases") else "right",
                     no_wrap=col in ("Estimate", "95% CI", "x MSE"))
    for name, d in doc["effects"].items():
        has_ci = d["n"] > 1 and not np.isnan(d["lo"])
        ci = f"[{d['lo']:+.3f}, {d['hi']:+.3f}]" if has_ci else "-"
        row = [name, d["label"], f"{d['mean']:+.3f}", ci, f"{10 ** d['mean']:.2f}x", d["verdict"]]
        if stacked:
            row[2:4] = [f"{d['mean']:+.3f}" + (f"\n{ci}" if has_ci else "")]
        if fractional:
            row.append(" = ".join(d["aliases"]) or "-")
        e.add_row(*row)
    return e


def checklist_table(doc: dict) -> Table:
    c = Table(title="Success criteria (the seeds')")
    c.add_column("")
    c.add_column("Criterion")
    c.add_column("Measured", justify="right")
    for item in doc["checklist"]:
        v = item["value"]
        shown = fmt(v) if isinstance(v, float) else ("yes" if v is True else "no" if v is False else str(v))
        if "config" in item:
            shown += f" (config {item['config']})"
        if "run" in item:
            shown += f" (run {item['run']})"
        mark = "[green]✓[/]" if item["ok"] else ("[yellow]?[/]" if item["ok"] is None else "[red]✗[/]")
        c.add_row(mark, item["item"], shown)
    return c


def predictions_table(doc: dict) -> Table | None:
    """The seeds' five predictions with the measured figure and the verdict (seeds' design only)."""
    if not doc.get("predictions"):
        return None
    t = Table(title=f"The seeds' predictions ({len(doc['seeds'])} seed{'s' if len(doc['seeds']) > 1 else ''})")
    for col in ("Prediction", "Measured", "Verdict"):
        t.add_column(col)
    colour = {"held": "green", "not held": "red"}
    for p in doc["predictions"]:
        v = p["verdict"]
        t.add_row(p["prediction"], p["measured"], f"[{colour[v]}]{v}[/]" if v in colour else v)
    return t


def design_tables(doc: dict) -> list[Table]:
    """A general design: its runs (levels and eval MSE), the effects, the checklist."""
    d = doc["design"]
    n = len(doc["seeds"])
    res = d["resolution"]
    kind = f"2^({d['k']}-{len(d['generators'])}) resolution {res}" if d["generators"] else f"full 2^{d['k']}"
    title = (f"Design: {kind}, {d['runs']} runs x {n} seed{'s' if n > 1 else ''} on {doc['task']['name']}"
             + (f"; generators {', '.join(d['generators'])}" if d["generators"] else ""))
    f = Table(title=title)
    for col in ("Letter", "Key", "Low (-)", "High (+)"):
        f.add_column(col)
    for fac in d["factors"]:
        f.add_row(fac["letter"], fac["key"], str(fac["levels"][0]), str(fac["levels"][1]))
    if d["generators"]:
        f.caption = "Defining relation: " + " = ".join(d["defining_relation"])
    r = Table(title="Runs: eval MSE on held-out sequences" + (" (geometric mean over seeds [95% CI])" if n > 1 else ""))
    r.add_column("Run", justify="right")
    for fac in d["factors"]:
        r.add_column(fac["letter"], justify="center")
    for col in ("Width", "Train MSE", "Eval MSE", "vs Float", "vs Run 1"):
        r.add_column(col, justify="right", no_wrap=True)
    for i, row in enumerate(doc["runs"]):
        r.add_row(str(row["run"]), *("+" if x > 0 else "-" for x in d["matrix"][i]), str(row["width"]),
                  _ci(row["train_mse"]), _ci(row["eval_mse"]), _ratio(row["vs_float"]), _ratio(row["vs_baseline"]))
    return [f, r, effects_table(doc), checklist_table(doc)]
