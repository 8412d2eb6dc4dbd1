"""``ternq export`` (student .npz -> compact deployable file) and ``ternq predict`` (run that file)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import click

from .. import report
from ..deploy import Deployable, float32_bytes, save_npy
from ..model import Model, atomic_write_bytes
from . import InputError, cli
from .options import check_writable, json_option, load_task, task_option


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the deployable file [default: MODEL with suffix .tqd].")
@json_option
def export(model_path, out, as_json):
    """Write a ternary student (.npz) as a compact deployable file.

    Trits are packed 5 per byte (base 3); row scales, biases and tau stay float32;
    a JSON manifest records dims, task, packing, counts and the payload's sha256.
    """
    model = Model.load(model_path)
    out = check_writable(out or Path(model_path).with_suffix(".tqd"), "deployable model")
    try:
        dep = Deployable.from_model(model)
    except ValueError as exc:
        raise InputError(f"{model_path}: {exc}") from None
    data = dep.to_bytes()
    if not (Deployable.from_bytes(data).params().tobytes() == dep.params().tobytes()):
        raise click.ClickException("internal error: the deployable file does not read back identically")
    try:
        atomic_write_bytes(Path(out), data)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    sections = {s[0]: len(s[1]) for s in dep._sections()}
    payload = sum(sections.values())
    f32 = float32_bytes(*dep.dims)
    res = {"model": str(model_path), "out": str(out), "dims": list(dep.dims), "file_bytes": len(data),
           "payload_bytes": payload, "manifest_bytes": len(data) - payload - 12, "trit_bytes": sections["trits"],
           "float_bytes": payload - sections["trits"], "trits": dep.n_trits,
           "zero_share": float((dep.trits_W == 0).sum() + (dep.trits_out == 0).sum()) / dep.n_trits,
           "float32_bytes": f32, "file_vs_float32": len(data) / f32, "payload_vs_float32": payload / f32,
           "npz_bytes": Path(model_path).stat().st_size}
    if as_json:
        report.print_json(res)
        return
    rows = {"written to": str(out), "dims (in, hidden, out)": str(tuple(dep.dims)),
            "file size": f"{len(data)} B ({res['file_vs_float32']:.1%} of float32)",
            "  payload": f"{payload} B ({res['payload_vs_float32']:.1%} of float32): {sections['trits']} B for "
                         f"{dep.n_trits} trits (5 per byte) + {res['float_bytes']} B float32 scales, biases, tau",
            "  header + manifest": f"{res['manifest_bytes'] + 12} B",
            "float32 size of the same model": f"{f32} B",
            "zero trits": f"{100 * res['zero_share']:.1f}%",
            "student .npz (shadow weights + scales)": f"{res['npz_bytes']} B"}
    report.out.print(report.kv_table(f"Exported {model_path}", rows))


@cli.command()
@click.argument("model_path", metavar="FILE", type=click.Path(dir_okay=False))
@task_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also save the predictions (N, T, n_out) float32 as .npy.")
@click.option("--factored", is_flag=True,
              help="Sum inputs with adds/subtracts only and multiply each row by its scale once "
                   "(not bit-identical to training; differs by ~1e-7).")
@click.option("--horizon", type=int, default=None, metavar="K",
              help="Also run the model free on its own predictions for K steps after a warm-up on every held-out "
                   "window; print the MSE at each horizon (bit-identical to the training-side rollout).")
@click.option("--warmup", type=int, default=None, metavar="W", help="With --horizon: true steps first [25].")
@json_option
def predict(model_path, task_name, data_path, out, factored, as_json, horizon=None, warmup=None):
    """Run a deployable file (from 'ternq export') on a task's held-out set and print the eval MSE.

    Without --task or --data, the task the model was trained on is used.
    """
    dep = Deployable.load(model_path)
    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("task_name").name not in ("DEFAULT", "DEFAULT_MAP")
    if data_path is None and not explicit and dep.task.get("name"):
        name = dep.task["name"]
        if name == "data":
            path = dep.task.get("path")
            if not (path and Path(path).is_file()
                    and hashlib.sha256(Path(path).read_bytes()).hexdigest() == dep.task.get("sha256")):
                raise InputError(f"{model_path} was trained on data file {path}, which is gone or has changed; "
                                 "pass --data FILE")
            data_path = path
        else:
            task_name = name
    task = load_task(task_name, data_path)
    if (task.n_in, task.n_out) != (dep.n_in, dep.n_out):
        raise InputError(f"{model_path} has {dep.n_in} inputs / {dep.n_out} outputs; task {task.name} has "
                         f"{task.n_in} / {task.n_out}")
    rollout = _rollout(dep, task, horizon, warmup, factored)  # --horizon (issue 14)
    if out is not None:
        out = check_writable(out, "predictions")
    X, Y = task.eval_set()
    t0 = time.perf_counter()
    mse, ys = dep.mse(X, Y, factored)
    seconds = time.perf_counter() - t0
    if out is not None:
        try:
            save_npy(out, ys)
        except OSError as exc:
            raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    same_task = dep.task == json.loads(json.dumps(task.describe()))
    recorded = dep.info.get("eval_mse_at_training") if same_task else None
    res = {"model": str(model_path), "task": task.describe(), "eval_mse": mse, "sequences": int(X.shape[0]),
           "steps": int(X.shape[1]), "factored": factored, "seconds": seconds,
           "eval_mse_at_training": recorded, "out": str(out) if out else None, **rollout}
    if as_json:
        report.print_json(res)
        return
    rows = {"eval MSE (held-out)": mse, "sequences x steps": f"{X.shape[0]} x {X.shape[1]}",
            "kernel": "factored (add/subtract, one multiply per row)" if factored
            else "exact (add/subtract of input x scale; bit-identical to training)",
            "time (s)": f"{seconds:.4f}"}
    if recorded is not None:
        rows["eval MSE recorded at training"] = f"{report.fmt(recorded)}" + (
            " (identical)" if recorded == mse else "")
    if out:
        rows["predictions saved to"] = str(out)
    if rollout:
        rows.update(report.forecast_rows(rollout, rollout["naive"], rollout["forecast_settings"]))
    report.out.print(report.kv_table(f"{model_path} on {task.name}", rows))


def _rollout(dep, task, horizon, warmup, factored) -> dict:
    """With --horizon: the engine's rollout figures of the deployable model and the naive baselines."""
    if horizon is None:
        if warmup is not None:
            raise InputError("--warmup needs --horizon")
        return {}
    if factored:
        raise InputError("--horizon runs the exact kernel; drop --factored")
    from ..experiment.forecasting import Forecaster, ForecastSettings

    try:
        fc = Forecaster(task, ForecastSettings(horizon, warmup))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return {**fc.rollout_figures(dep), "naive": fc.baselines_doc(), "forecast_settings": fc.settings.to_dict()}
