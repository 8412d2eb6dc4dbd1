"""Presentation: rich tables and progress displays. No computation lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console()
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
    sys.stdout.write(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress | None]:
    """A rich progress display on stderr, or None when disabled."""
    if not enabled:
        yield None
        return
    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=err, transient=True)
    with p:
        yield p


def tracker(p: Progress | None, description: str, total: int):
    """A ``progress(done, total, loss)`` callback bound to a new bar, or None."""
    if p is None:
        return None
    task = p.add_task(description, total=total, loss="-")

    def update(done: int, total: int, loss: float) -> None:
        p.update(task, completed=done, total=total, loss=f"{loss:.3e}")

    return update
