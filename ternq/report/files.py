"""Plots of an experiment's results (the result files themselves are :mod:`ternq.experiment.results`')."""

from __future__ import annotations

from pathlib import Path

from ..experiment.results import models_of, save_results, split_timing, write_json  # noqa: F401 - one place
from ..experiment.units import TaskSpec


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """``rows`` (dicts of one set of keys, the first row's order) as a CSV file with a header, written atomically."""
    import csv
    import io

    from ..model import atomic_write_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


def save_plots(doc: dict, plan, results: dict, plot_dir) -> list:
    """PNGs: the effects (bars and half-normal) for any design; for a design plotted per width (the notes') also
    predictions of the teacher and every student, and learning curves (first seed's models)."""
    from . import plots

    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    words = plan.words
    if words.plots_per_width:
        task = TaskSpec.of(plan.settings).make()
        seed = plan.settings.seeds[0]
        lo = plan.settings.widths[0]
        for w in plan.settings.widths:
            models = {}
            for run in plan.runs:
                if run.student.hidden == w:
                    models.setdefault(words.teacher_label.format(name=w),
                                      results[plan.teachers[run.index, seed].digest][1])
                    models[f"{words.row} {run.index}"] = results[plan.students[run.index, seed].digest][1]
            if w == lo and ("teacher", seed) in plan.cs:
                models["PTQ+CS"] = results[plan.cs["teacher", seed].digest][1]
            written.append(plots.predictions(models, task, out / f"predictions-h{w}.png"))
            written.append(plots.curves({k: (m.meta["curve"]["epoch"], m.meta["curve"]["loss"])
                                         for k, m in models.items() if "curve" in m.meta}, out / f"curves-h{w}.png",
                                         seed=seed))
    written.append(plots.effects(doc, out / "effects.png"))
    written.append(plots.half_normal(doc, out / "effects-half-normal.png"))
    return written


def forecast_models_of(plan, results: dict, seed: int) -> dict:
    """One seed's models under the names of the results document's ``forecast.models`` rows."""
    out = {}
    for run in plan.runs:
        out[f"{plan.words.row} {run.index}"] = results[plan.students[run.index, seed].digest][1]
    for source, label in (("teacher", "PTQ+CS"), ("config1", "1+CS")):
        if (source, seed) in plan.cs:
            out[label] = results[plan.cs[source, seed].digest][1]
    for run in plan.runs:
        u = plan.teachers[run.index, seed]
        name = plan.words.teacher.format(hidden=u.hidden, key=u.key.split("/", 1)[1])
        out.setdefault(plan.words.teacher_label.format(name=name), results[u.digest][1])
    for run in plan.runs:
        r = plan.references.get((run.index, seed))
        if r is not None and r.digest != plan.teachers[run.index, seed].digest:
            out.setdefault(r.key.split("/", 1)[1], results[r.digest][1])
    return out


def save_forecast_plots(doc: dict, plan, results: dict, plot_dir) -> list:
    """With a horizon: rollout MSE against the horizon (every model and the baselines) and a free-running
    trace of the first seed's models on held-out window 0; for a design plotted per width (the notes') one of
    each per width."""
    from . import plots

    fc = doc.get("forecast")
    if not fc or "horizon" not in fc["baselines"]:
        return []
    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    hz = fc["baselines"]["horizon"]
    task = TaskSpec.of(plan.settings).make()
    seed = plan.settings.seeds[0]
    models = forecast_models_of(plan, results, seed)
    n = len(doc["seeds"])
    note = f"geometric mean over {n} seeds" if n > 1 else f"seed {seed}"
    groups = ([(f"-h{w}", f" H={w}", w) for w in plan.settings.widths] if plan.words.plots_per_width
              else [("", "", None)])
    written = []
    for suffix, what, w in groups:
        rows = [m for m in fc["models"] if w is None or m["width"] == w]
        written.append(plots.horizon(rows, hz, out / f"horizon{suffix}.png",
                                     f"{task.name}{what}: free-running error against horizon ({note})"))
        written.append(plots.trace({m["name"]: models[m["name"]] for m in rows}, task, hz["horizon"], hz["warmup"],
                                   out / f"trace{suffix}.png", window=0, seed=seed))
    return written
