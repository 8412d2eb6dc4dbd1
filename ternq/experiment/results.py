"""Result files: results.json, results.csv, timing.json and the models, each written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..forecast import baseline_names
from ..jsonsafe import clean
from ..model import atomic_write_bytes

CSV_COLUMNS = ["seed", "row", "config", "shaped", "distill", "width", "train_mse", "eval_mse", "eval_mse_scored",
               "eval_mse_whole", "ref_mse", "vs_float", "vs_float_scored", "vs_float_whole", "reference", "vs_baseline",
               "zero_share", "weight_format", "weight_bytes"]
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


def models_of(plan, results: dict) -> dict:
    """Every unit's model by key."""
    return {u.key: results[u.digest][1] for u in plan.units}


