"""Presentation: rich tables and progress displays (here), plots (:mod:`.plots`), files (:mod:`.files`).

No figure is computed here: the engine's summary (:mod:`ternq.experiment.summary`) makes them all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from ..forecast import baseline_names
from ..jsonsafe import dumps

# a pipe or a file gets a fixed width wide enough for the factorial matrix, unless COLUMNS says otherwise
# (a process started with stdout closed has none: it then prints nothing, and its files are still written)
_tty = sys.stdout is not None and sys.stdout.isatty()
out = Console(width=None if _tty or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True)


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact scientific format; '-' for missing."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x:.{digits - 1}e}"


def gradcheck_table(results, tolerance: float) -> Table:
    t = Table(title="Gradient check (float64, central differences + Richardson)")
    for col in ("model", "block", "checked", "max rel. err", "worst at", ""):  # at 80 columns names wrap, figures not
        named = col in ("model", "block")
        t.add_column(col, justify="left" if named else "right", no_wrap=not named,
                     min_width=None if named else len(col))
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
    print(dumps(obj, indent=2))  # nothing where stdout is closed


def kernels_compiled() -> bool:
    """Whether the training loop is compiled, here or in Numba's cache (else the first call compiles)."""
    from ..kernels import loop

    return loop.compiled(np.float32)


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
    def whole():  # figures are never cut: on a narrow terminal the bar gives way and the label folds
        return Column(no_wrap=True)

    p = Progress(TextColumn("{task.description}", table_column=Column(overflow="fold")),
                 BarColumn(bar_width=None, table_column=Column(ratio=1)), MofNCompleteColumn(table_column=whole()),
                 TextColumn("loss {task.fields[loss]}", table_column=whole()), TimeElapsedColumn(table_column=whole()),
                 TextColumn("eta", table_column=whole()), TimeRemainingColumn(table_column=whole()), console=err,
                 transient=True)
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
    """The notes' matrix in under 80 columns: switches as +/-, eval MSE and ratios with intervals below them."""
    n = len(doc["seeds"])
    note = f"geometric mean over {n} seeds [95% CI]" if n > 1 else f"seed {doc['seeds'][0]}"
    m = Table(title=f"Factorial on {doc['task']['name']} ({note}); {metric_note(doc)}")
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
        m.add_row("teacher", "", "", w, _stacked(_ci(t)), "", "")
    for ref in doc.get("float_reference", {}).get("models", {}).values():
        m.add_row("float", "", "", str(ref["hidden"]), _stacked(_ci(ref["eval_mse"])), "1.00x", "")
    m.caption = ("A: shaped gradient, B: trajectory distillation (+ on, - off), H: width. PTQ+CS: the quantized "
                 "teacher, then coordinate search; 1+CS: search refining config 1. A wider terminal shows train MSE "
                 "and the other metric. " + reference_caption(doc))
    return m


def metric_note(doc: dict) -> str:
    """The metric in a few words: which steps are scored."""
    m = doc.get("metric")
    if m is None:
        return "eval MSE on held-out sequences"
    if m["name"] == "whole":
        return "eval MSE over every step from h_0 = 0 (the notes' metric)"
    a, b = m["scored_steps"]
    return f"eval MSE over steps {a}-{b} (warm-up {m['warmup']})"


def reference_caption(doc: dict) -> str:
    """What "vs Float" divides by, with the budgets."""
    budgets = sorted({(r["width"], r["reference"]["kind"], r["reference"]["epochs"], r["reference"]["student_epochs"],
                       r["reference"]["teacher_epochs"]) for r in doc.get("matrix", doc.get("runs", []))
                      if "reference" in r})
    if not budgets:
        return ""
    parts = [f"H={h}: {'an equal-budget float, ' + str(e) + ' epochs' if k != 'teacher' else 'the teacher'}"
             f" (student {se}, teacher {te} epochs)" for h, k, e, se, te in budgets]
    lead = ("vs Float: against a float of the student's width trained with the student's whole budget and schedule "
            "kind" if budgets[0][1] != "teacher" else
            "vs Float: against the teacher, NOT an equal-budget float (the float reference is off)")
    return f"{lead}; " + "; ".join(parts) + "."


def _other_metric(doc: dict) -> str | None:
    m = doc.get("metric")
    return None if m is None else "whole" if m["name"] == "scored" else "scored"


def factorial_tables(doc: dict, width: int | None = None) -> list[Table]:
    """The notes' matrix, the CS rows, the effects and the success checklist.

    The matrix has every column when it fits in ``width`` (the console's by
    default), else the compact layout of :func:`matrix_compact`. Beside the metric's
    eval MSE and "vs Float" stand the other metric's (scored after the warm-up, or whole).
    """
    n = len(doc["seeds"])
    many = n > 1
    note = f"geometric mean over {n} seeds [95% CI]" if many else f"seed {doc['seeds'][0]}"
    other = _other_metric(doc)
    m = Table(title=f"Factorial on {doc['task']['name']} ({note}); {metric_note(doc)}")
    cols = ["Config", "Shaped", "Distill", "Width", "Train MSE", "Eval MSE"]
    if other:
        cols.append(f"Eval MSE ({other})")
    cols.append("vs Float")
    if other:
        cols.append(f"vs Float ({other})")
    cols.append("vs Baseline")
    for col in cols:
        m.add_column(col, justify="right" if col not in ("Shaped", "Distill") else "center", no_wrap=True)

    def cells(r):
        out = [_ci(r["train_mse"]), _ci(r["eval_mse"])]
        if other:
            out.append(_ci(r[f"eval_mse_{other}"]))
        out.append(_ratio(r["vs_float"]))
        if other:
            out.append(_ratio(r[f"vs_float_{other}"]))
        return [*out, _ratio(r["vs_baseline"])]

    for r in doc["matrix"]:
        m.add_row(str(r["config"]), "Yes" if r["shaped"] else "No", "Yes" if r["distill"] else "No",
                  str(r["width"]), *cells(r))
    m.add_section()
    labels = {"teacher": "PTQ+CS", "config1": "1+CS"}
    m.caption = (f"PTQ+CS: the H={doc['widths'][0]} teacher quantized with absmean scales, then coordinate search "
                 "(the C program's baseline); 1+CS: coordinate search refining config 1. CS train MSE is its search "
                 "objective. " + reference_caption(doc))
    for r in doc["cs"]:
        m.add_row("CS", labels[r["source"]], "", str(r["width"]), *cells(r))
    blank = [""] * (2 if other else 1)
    for w, t in doc["teachers"].items():
        m.add_row("float", "teacher", "", w, "", _ci(t), *([""] if other else []), *blank, "")
    for ref in doc.get("float_reference", {}).get("models", {}).values():
        m.add_row("float", f"{ref['epochs']} epochs", "", str(ref["hidden"]), "", _ci(ref["eval_mse"]),
                  *([_ci(ref[f"eval_mse_{other}"])] if other else []), "1.00x", *([""] if other else []), "")

    e = effects_table(doc, width)
    if not fits(m, width):
        m = matrix_compact(doc)
    return [m, e, checklist_table(doc), predictions_table(doc)]


def fits(table: Table, width: int | None = None) -> bool:
    """Whether ``table`` at its natural width fits in ``width`` columns (the console's by default)."""
    return out.measure(table, options=out.options.update_width(10_000)).maximum <= (width or out.width)


def effects_table(doc: dict, width: int | None = None) -> Table:
    """Every effect with its interval, x MSE, verdict (and aliases, for a fractional design); the interval under
    the estimate when the table would not fit in ``width`` columns."""
    wide = _effects_table(doc, stacked=False)
    return wide if fits(wide, width) else _effects_table(doc, stacked=True)


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
    c = Table(title="Success criteria (the notes')")
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
    """The notes' five predictions with the measured figure and the verdict (the notes' design only)."""
    if not doc.get("predictions"):
        return None
    t = Table(title=f"The notes' predictions ({len(doc['seeds'])} seed{'s' if len(doc['seeds']) > 1 else ''})")
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
    other = _other_metric(doc)
    r = Table(title=f"Runs: {metric_note(doc)}" + (" (geometric mean over seeds [95% CI])" if n > 1 else ""))
    r.add_column("Run", justify="right")
    for fac in d["factors"]:
        r.add_column(fac["letter"], justify="center")
    for col in ("Width", "Train MSE", "Eval MSE", *([f"Eval MSE ({other})"] if other else []), "vs Float",
                *([f"vs Float ({other})"] if other else []), "vs Run 1"):
        r.add_column(col, justify="right", no_wrap=True)
    for i, row in enumerate(doc["runs"]):
        r.add_row(str(row["run"]), *("+" if x > 0 else "-" for x in d["matrix"][i]), str(row["width"]),
                  _ci(row["train_mse"]), _ci(row["eval_mse"]), *([_ci(row[f"eval_mse_{other}"])] if other else []),
                  _ratio(row["vs_float"]), *([_ratio(row[f"vs_float_{other}"])] if other else []),
                  _ratio(row["vs_baseline"]))
    r.caption = reference_caption(doc)
    return [f, r, effects_table(doc), checklist_table(doc)]


def _passes(d: dict | None, horizon: int) -> str:
    """A pass horizon over seeds: 'median' or 'median [min-max]'; '>K' where not within K."""
    if d is None:
        return "-"

    def one(v):
        return f">{horizon}" if v is None else f"{v:g}"

    if d["n"] < 2 or d["min"] == d["max"] is not None or d["passed"] == 0:
        return one(d["median"])
    return f"{one(d['median'])} [{one(d['min'])}, {one(d['max'])}]"


def _times(x: float) -> str:
    """A ratio in at most 8 characters: 3 significant digits, or scientific below 0.01 and from 1000."""
    return f"{x:.3g}x" if 0.01 <= x < 1000 else f"{x:.1e}x"


def _beats(m: dict, n: int) -> str:
    k = m["seeds_beating_persistence"]
    mixed = f" ({k}/{n})" if 0 < k < n or (n > 1 and k == 0) else ""
    return f"yes{mixed}" if m["beats_persistence"] else f"[red]NO{mixed}[/]"


def _baseline_label(name: str, period, info: dict | None = None) -> str:
    info = info or {}
    if name == "seasonal":
        return f"seasonal (m={period})"
    if name == "ar":
        orders = info.get("orders", [])
        return f"AR({orders[0]})" if len(set(orders)) == 1 else f"AR({','.join(map(str, orders))})" if orders else "AR"
    if name == "var":
        return f"VAR({info['order']})" if "order" in info else "VAR"
    return {"climatology": f"climatology (m={period})", "anomaly": f"anomaly persistence (m={period})"}.get(name, name)


def base_label(models: list[dict], key: str, base: dict) -> str:
    """The label of the best baseline the models are compared with (the same for every model)."""
    name = models[0][key] if models else "persistence"
    return _baseline_label(name, base["period"], base.get(name))


def _best_line(models: list[dict], losers: list[str], best: str, where: str) -> list[str]:
    if not losers:
        return []
    if len(losers) == len(models):
        return [f"[red]✗ no model beats the best simple forecast, {escape(best)}, {where}[/]"]
    return [f"[red]✗ no better than the best simple forecast ({escape(best)}) {where}: {', '.join(losers)}[/]"]


def forecast_tables(doc: dict) -> list:
    """The models against the naive baselines (one-step), a warning line naming those that do not beat
    persistence, and with a horizon the free-running table; empty when the task has no naive forecast."""
    fc = doc.get("forecast")
    if not fc:
        return []
    n = len(doc["seeds"])
    base = fc["baselines"]
    note = f"geometric mean over {n} seeds" if n > 1 else f"seed {doc['seeds'][0]}"
    t = Table(title=f"Against naive and classical forecasts on {doc['task']['name']}, one step ahead, "
                    f"steps scored after a warm-up of {base['warmup']} ({note})")
    for col in ("Model", "Eval MSE", "vs naive", "vs best", "MASE", "Beats persistence"):
        t.add_column(col, justify="left" if col == "Model" else "right", no_wrap=col != "Beats persistence")
    for m in fc["models"]:
        t.add_row(m["name"], fmt(m["eval_mse_scored"]["geo_mean"]), _times(m["vs_naive"]["geo_mean"]),
                  _times(m["vs_best"]["geo_mean"]), f"{m['mase']['geo_mean']:.2f}", _beats(m, n))
    t.add_section()
    best = min(base[b]["mse"] for b in baseline_names(base))
    for b in baseline_names(base):
        t.add_row(_baseline_label(b, base["period"], base[b]), fmt(base[b]["mse"]), _times(base[b]["vs_naive"]),
                  _times(base[b]["mse"] / best) if best > 0 else "-", f"{base[b]['mase']:.2f}", "")
    t.caption = escape("Eval MSE: the forecasts made after the warm-up, as every baseline. vs naive: over the better "
                 "naive forecast's (persistence repeats the last value"
                 + (f"; seasonal naive the value {base['period']} rows earlier" if "seasonal" in base else "")
                 + "), below 1 beats it; vs best: over the best baseline's, naive or classical (AR: one autoregression "
                 "per channel, order by AIC; VAR: one over all channels; climatology: the training mean at the "
                 "position in the season; anomaly: the deviation from it persists); MASE: mean absolute error "
                 "over the in-sample one-step naive one (Hyndman & Koehler 2006)"
                 + ("; (k/n): the seeds that beat persistence." if n > 1 else ".")
                 + (f" Not fitted: {base['classical']['not_fitted']}." if base["classical"].get("not_fitted") else ""))
    out: list = [t]
    losers = fc["loses_to_persistence"]
    if losers:
        out.append("[red]✗ no model beats persistence (copying the last value)[/]" if len(losers) == len(fc["models"])
                   else f"[red]✗ no better than persistence (copying the last value): {', '.join(losers)}[/]")
    out.extend(_best_line(fc["models"], fc["loses_to_best"], base_label(fc["models"], "best_baseline", base),
                          "one step ahead"))
    hz = base.get("horizon")
    if hz is None:
        return out
    K = hz["horizon"]
    h = Table(title=f"Free-running forecasts on {doc['task']['name']}: horizons 1-{K} after {hz['warmup']} true "
                    f"steps, {hz['windows']} held-out windows ({note})")
    cols = ["Model", f"MSE at {K}", f"Mean MSE 1-{K}", "Passes persist."]
    seasonal = "seasonal" in hz["mse"]
    if seasonal:
        cols.append("Passes seasonal")
    cols.append(f"Passes RMSE {hz['threshold']:g}")
    vpt = hz["lyapunov_per_step"] is not None
    if vpt:
        cols.append("VPT (Lyapunov)")
    for col in cols:
        h.add_column(col, justify="left" if col == "Model" else "right", no_wrap=True)
    for m in fc["models"]:
        row = [m["name"], fmt(m["rollout_mse_at_horizon"]["geo_mean"]), fmt(m["rollout_mse_mean"]["geo_mean"]),
               _passes(m["passes_persistence"], K)]
        if seasonal:
            row.append(_passes(m.get("passes_seasonal"), K))
        row.append(_passes(m["passes_threshold"], K))
        if vpt:
            v = m["vpt_lyapunov"]
            row.append(f"{v['mean']:.2f}" + ("" if v["n"] < 2 or np.isnan(v["lo"]) else f" ±{v['hi'] - v['mean']:.2f}"))
        h.add_row(*row)
    h.add_section()
    for b in hz["mse"]:
        s = hz["summary"][b]
        row = [_baseline_label(b, hz["period"], base.get(b)), fmt(hz["mse"][b][-1]), fmt(float(np.mean(hz["mse"][b]))),
               "-" if b == "persistence" else _passes({"median": s["passes_persistence"], "n": 1}, K)]
        if seasonal:
            row.append("-" if b == "seasonal" else _passes({"median": s["passes_seasonal"], "n": 1}, K))
        row.append(_passes({"median": s["passes_threshold"], "n": 1}, K))
        if vpt:
            row.append(f"{s['vpt_lyapunov']:.2f}")
        h.add_row(*row)
    h.caption = escape("MSE at the horizon: geometric mean over seeds. Passes: the first horizon at which the MSE "
                 f"exceeds the persistence forecast's{', the seasonal naive one' if seasonal else ''} or an RMSE of "
                 f"{hz['threshold']:g} (normalised units); median over seeds [range]; >{K}: not within {K}."
                 + (f" VPT: valid prediction time (RMSE <= {hz['threshold']:g}), mean over windows in Lyapunov "
                    "times (largest exponent 0.91), ± the 95% half-interval over seeds." if vpt else ""))
    out.append(h)
    out.extend(_best_line(fc["models"], fc.get("loses_to_best_over_horizon", []),
                          base_label(fc["models"], "rollout_best_baseline", base), f"over horizons 1-{K}"))
    return out


def forecast_rows(fig: dict, base: dict | None, settings: dict) -> dict:
    """Rows for a single model's table (teacher, student, cs): the naive baselines, "vs naive", MASE, the flag,
    and with a horizon the rollout figures."""
    if base is None or not fig:
        return {}
    rows = {}
    if "eval_mse_scored" in fig:
        rows[f"eval MSE after a warm-up of {settings['warmup']} (scored steps)"] = fig["eval_mse_scored"]
    if "vs_naive" in fig:  # one-step figures (a deployable file's rollout comes without them)
        rows["persistence MSE (naive)"] = base["persistence"]["mse"]
        if "seasonal" in base:
            rows[f"seasonal naive MSE (period {base['period']})"] = base["seasonal"]["mse"]
        flag = "" if fig["beats_persistence"] else "  [red]✗ no better than persistence[/]"
        rows["vs naive (MSE ratio)"] = f"{fig['vs_naive']:.2f}x{flag}"
        best = _baseline_label(fig["best_baseline"], base["period"], base.get(fig["best_baseline"]))
        flag = "" if fig["beats_best"] else "  [red]✗ no better than the best simple forecast[/]"
        rows[f"vs best simple forecast, {escape(best)} (MSE ratio)"] = f"{fig['vs_best']:.3g}x{flag}"
        rows["MASE"] = f"{fig['mase']:.3f}"
    K = settings.get("horizon")
    if K is not None and "rollout_mse" in fig:
        rows[f"rollout MSE at horizon {K} (warm-up {settings['warmup']})"] = fig["rollout_mse_at_horizon"]
        rows[f"persistence rollout MSE at horizon {K}"] = base["horizon"]["mse"]["persistence"][-1]
        rows["passes persistence at horizon"] = _passes({"median": fig["passes_persistence"], "n": 1}, K)
        if "passes_seasonal" in fig:
            rows["passes seasonal naive at horizon"] = _passes({"median": fig["passes_seasonal"], "n": 1}, K)
        rows[f"passes RMSE {base['horizon']['threshold']:g} at horizon"] = _passes(
            {"median": fig["passes_threshold"], "n": 1}, K)
        if "vpt_lyapunov" in fig:
            rows["valid prediction time"] = f"{fig['vpt_lyapunov']:.2f} Lyapunov times"
    return rows
