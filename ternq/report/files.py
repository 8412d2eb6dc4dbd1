"""Result files: results.json, results.csv, timing.json and the models, each written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..experiment.units import TaskSpec
from ..forecast import baseline_names
from ..jsonsafe import clean
from ..model import atomic_write_bytes

CSV_COLUMNS = ["seed", "row", "config", "shaped", "distill", "width", "train_mse", "eval_mse", "eval_mse_scored",
               "eval_mse_whole", "ref_mse", "vs_float", "vs_float_scored", "vs_float_whole", "reference", "vs_baseline",
               "zero_share"]
FORECAST_COLUMNS = ["eval_mae", "mase", "vs_persistence", "vs_naive", "beats_persistence", "vs_best", "best_baseline",
                    "beats_best", "rollout_mse_at_horizon", "rollout_mse_mean", "passes_persistence",
                    "passes_threshold", "vpt_lyapunov"]  # the naive baselines' and rollouts'
CSV_COLUMNS += FORECAST_COLUMNS


def csv_rows(doc: dict) -> list[dict]:
    """One row per configuration or run (and teacher, and CS row) and seed."""
    rows = []
    general = "runs" in doc
    for s in doc["per_seed"]:
        for t in s["teachers"].values():
            rows.append({**t, "row": "teacher", "width": t["hidden"]})
        for name, t in s.get("references", {}).items():
            rows.append({**t, "row": name, "width": t["hidden"], "vs_float": 1.0})
        for r in s["runs" if general else "configs"]:
            rows.append({**r, "row": f"run{r['run']}" if general else f"config{r['config']}"})
        for r in s["cs"]:
            rows.append({**r, "row": f"cs-{r['source']}", "width": r["hidden"]})
    rows += baseline_csv_rows(doc)
    return [{k: r.get(k, "") for k in CSV_COLUMNS} | {"seed": r["seed"]} for r in rows]


def baseline_csv_rows(doc: dict) -> list[dict]:
    """The naive and classical baselines as CSV rows (no seed: they depend only on the task); their eval MSE
    is over the scored steps."""
    fc = doc.get("forecast")
    if not fc:
        return []
    base = fc["baselines"]
    hz = base.get("horizon")
    rows = []
    for name in baseline_names(base):
        b = base[name]
        row = {"seed": "", "row": name, "eval_mse": b["mse"], "eval_mse_scored": b["mse"], "eval_mae": b["mae"],
               "mase": b["mase"], "vs_persistence": b["vs_persistence"], "vs_naive": b["vs_naive"]}
        if hz is not None:
            row.update(rollout_mse_at_horizon=hz["mse"][name][-1], rollout_mse_mean=sum(hz["mse"][name]) / len(
                hz["mse"][name]), **hz["summary"][name])
        rows.append(row)
    return rows


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


def forecast_models_of(plan, results: dict, seed: int) -> dict:
    """One seed's models under the names of the results document's ``forecast.models`` rows."""
    out = {}
    for run in plan.runs:
        label = f"config {run.index}" if plan.seeds_design else f"run {run.index}"
        out[label] = results[plan.students[run.index, seed].digest][1]
    for source, label in (("teacher", "PTQ+CS"), ("config1", "1+CS")):
        if (source, seed) in plan.cs:
            out[label] = results[plan.cs[source, seed].digest][1]
    for run in plan.runs:
        u = plan.teachers[run.index, seed]
        out.setdefault(f"teacher H={u.hidden}" if plan.seeds_design else u.key.split("/", 1)[1],
                       results[u.digest][1])
    for run in plan.runs:
        r = plan.references.get((run.index, seed))
        if r is not None and r.digest != plan.teachers[run.index, seed].digest:
            out.setdefault(r.key.split("/", 1)[1], results[r.digest][1])
    return out


def save_forecast_plots(doc: dict, plan, results: dict, plot_dir) -> list:
    """With a horizon: rollout MSE against the horizon (every model and the baselines) and a free-running
    trace of the first seed's models on held-out window 0; for the seeds' design one of each per width."""
    from . import plots

    fc = doc.get("forecast")
    if not fc or "horizon" not in fc["baselines"]:
        return []
    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    hz = fc["baselines"]["horizon"]
    task = TaskSpec(plan.settings.task, plan.settings.data).make()
    seed = plan.settings.seeds[0]
    models = forecast_models_of(plan, results, seed)
    n = len(doc["seeds"])
    note = f"geometric mean over {n} seeds" if n > 1 else f"seed {seed}"
    groups = ([(f"-h{w}", f" H={w}", w) for w in plan.settings.widths] if plan.seeds_design else [("", "", None)])
    written = []
    for suffix, what, w in groups:
        rows = [m for m in fc["models"] if w is None or m["width"] == w]
        written.append(plots.horizon(rows, hz, out / f"horizon{suffix}.png",
                                     f"{task.name}{what}: free-running error against horizon ({note})"))
        written.append(plots.trace({m["name"]: models[m["name"]] for m in rows}, task, hz["horizon"], hz["warmup"],
                                   out / f"trace{suffix}.png", window=0, seed=seed))
    return written
