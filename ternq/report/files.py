"""Result files: results.json, results.csv, timing.json and the models, each written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..experiment.units import TaskSpec
from ..jsonsafe import clean
from ..model import atomic_write_bytes

CSV_COLUMNS = ["seed", "row", "config", "shaped", "distill", "width", "train_mse", "eval_mse", "ref_mse",
               "vs_float", "vs_baseline", "zero_share"]


def csv_rows(doc: dict) -> list[dict]:
    """One row per configuration or run (and teacher, and CS row) and seed."""
    rows = []
    general = "runs" in doc
    for s in doc["per_seed"]:
        for t in s["teachers"].values():
            rows.append({**t, "row": "teacher", "width": t["hidden"], "vs_float": 1.0})
        for r in s["runs" if general else "configs"]:
            rows.append({**r, "row": f"run{r['run']}" if general else f"config{r['config']}"})
        for r in s["cs"]:
            rows.append({**r, "row": f"cs-{r['source']}", "width": r["hidden"]})
    return [{k: r.get(k, "") for k in CSV_COLUMNS} | {"seed": r["seed"]} for r in rows]


def split_timing(doc: dict) -> tuple[dict, dict]:
    """The deterministic figures (same seed, same bytes) apart from wall times."""
    timing = {"run": doc.get("timing", {}), "units": {}}

    def strip(x):
        if isinstance(x, dict):
            if "key" in x and "seconds" in x:
                timing["units"][x["key"]] = x["seconds"]
            return {k: strip(v) for k, v in x.items() if k not in ("seconds", "timing")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(doc), timing


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(clean(obj), indent=2) + "\n").encode())


def save_results(doc: dict, models: dict, out_dir) -> None:
    """Write results.json, results.csv, timing.json and every model (``models``: key -> Model) under ``out_dir``."""
    out = Path(out_dir)
    (out / "models").mkdir(parents=True, exist_ok=True)
    for key, model in sorted(models.items()):
        model.save(out / "models" / (key.replace("/", "-") + ".npz"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(doc))
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    figures, timing = split_timing(doc)
    write_json(out / "results.json", figures)
    write_json(out / "timing.json", timing)


def save_plots(doc: dict, plan, results: dict, plot_dir) -> list:
    """PNGs: the effects (bars and half-normal) for any design; for the seeds' design also predictions of the
    teacher and every student, and learning curves (first seed's models)."""
    from . import plots

    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if plan.seeds_design:
        task = TaskSpec(plan.settings.task, plan.settings.data).make()
        seed = plan.settings.seeds[0]
        lo = plan.settings.widths[0]
        for w in plan.settings.widths:
            models = {}
            for run in plan.runs:
                if run.student.hidden == w:
                    models.setdefault(f"teacher H={w}", results[plan.teachers[run.index, seed].digest][1])
                    models[f"config {run.index}"] = results[plan.students[run.index, seed].digest][1]
            if w == lo and ("teacher", seed) in plan.cs:
                models["PTQ+CS"] = results[plan.cs["teacher", seed].digest][1]
            written.append(plots.predictions(models, task, out / f"predictions-h{w}.png"))
            written.append(plots.curves({k: (m.meta["curve"]["epoch"], m.meta["curve"]["loss"])
                                         for k, m in models.items() if "curve" in m.meta}, out / f"curves-h{w}.png",
                                         seed=seed))
    written.append(plots.effects(doc, out / "effects.png"))
    written.append(plots.half_normal(doc, out / "effects-half-normal.png"))
    return written


def models_of(plan, results: dict) -> dict:
    """Every unit's model by key."""
    return {u.key: results[u.digest][1] for u in plan.units}
