"""``ternq export`` (student -> deployable file or C99 library) and ``ternq predict`` (run it)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from .. import report
from ..deploy import Deployable, channel_names, held_out_rmse, read_values, save_npy, score_values
from ..model import ModelFileError, atomic_write_bytes
from ..tasks import task_of
from . import InputError, cli
from .options import check_writable, json_option, load_task, model_task_option, same_file


def _load(model_path) -> Deployable:
    """A .tqd file or a student .npz; a teacher (or any unusable model) is bad input: one line, exit 2."""
    try:
        return Deployable.from_file(model_path)
    except ModelFileError:
        raise  # reported as one line, exit 2, by the CLI's main
    except ValueError as exc:
        raise InputError(f"{model_path}: {exc}") from None


def _task(dep: Deployable, model_path, task_name, data_path):
    """The task to run on: --task/--data if given, else the one the model was trained on."""
    if data_path is None and task_name is None and dep.task.get("name"):
        try:
            task = task_of(dep.task)
        except ValueError as exc:
            raise InputError(f"{model_path}: {exc}") from None
    else:
        task = load_task(task_name, data_path)
    if (task.n_in, task.n_out) != (dep.n_in, dep.n_out):
        raise InputError(f"{model_path} has {dep.n_in} inputs / {dep.n_out} outputs; task {task.name} has "
                         f"{task.n_in} / {task.n_out}")
    return task


def _size_row(s: dict | None) -> str:
    if s is None:
        return "not measured (arm-none-eabi-gcc not found)"
    stack = f", stack {s['stack']} B" if s.get("stack") is not None else ""
    return (f"flash {s['flash']} B (code {s['text']} + constants {s['rodata']}), RAM {s['ram']} B "
            f"(state {s['state']} + data {s['data'] + s['bss']}){stack}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(), default=None,
              help="Where to write: a file for --format tqd [default: MODEL with suffix .tqd], a folder for c and "
                   "c-int [default: MODEL's name with -c or -c-int].")
@click.option("--format", "fmt", type=click.Choice(["tqd", "c", "c-int"]), default="tqd", show_default=True,
              help="tqd: compact deployable file; c: C99 library, float32, bit-identical to 'ternq predict'; "
                   "c-int: C99 library, integers only, bit-identical to 'ternq predict --int'.")
@click.option("--layout", type=click.Choice(["sparse", "dense", "packed", "packed-table"]), default=None,
              help="C only: how the weight levels are stored. sparse: per-row lists of non-zero trits (zero trits "
                   "cost nothing) [default for ternary, binary, int2]; dense: one int8 per weight; packed: as in "
                   "the .tqd file (ternary 5 per byte, int4 2 per byte, ...), decoded in C, the least flash "
                   "[default for int3..int8, which are multiplied]; packed-table: ternary packed, each byte "
                   "decoded through a 486-byte table (no division by 3).")
@click.option("--force", is_flag=True, help="C only: write the export files into a non-empty folder.")
@click.option("--input", "input_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="--format c only: golden.h holds the rows of FILE (CSV or .npy, the series' own units) as one "
                   "sequence, and main.c runs them through ternq_step_units: it prints what 'ternq predict "
                   "--input FILE' saves with --out FILE.csv.")
@model_task_option
@json_option
def export(model_path, out, fmt, layout, force, task_name, data_path, as_json, input_path=None):
    """Export a quantized student (.npz, or a .tqd file) for deployment.

    --format tqd packs the weight levels (ternary 5 per byte in base 3, binary 8 per
    byte, int4 2 per byte, int8 1 per byte, ...) with float32 row scales, biases and
    tau and a JSON manifest. --format c / c-int write ternq_model.h, ternq_model.c,
    golden.h (the held-out sequences of the model's task, or --task/--data, with the
    expected outputs) and main.c (prints every output, exits 0 only if all match
    bit for bit); flash and RAM on a Cortex-M4F are reported when arm-none-eabi-gcc
    is installed.
    """
    if out is not None and not str(out).strip():
        raise InputError("the --out path is empty")
    dep = _load(model_path)
    if input_path is not None and fmt != "c":
        raise InputError("--input applies to --format c (the integer library takes normalised Q15.16 values)")
    if input_path is not None and (task_name is not None or data_path is not None):
        raise InputError("--input and --task/--data cannot be combined (the input file is the golden sequence)")
    if fmt == "tqd":
        if layout is not None or force:
            raise InputError("--layout and --force apply to --format c and c-int")
        out = out or Path(model_path).with_suffix(".tqd")
        if same_file(out, model_path):
            raise InputError(f"refusing to overwrite the model being exported ({model_path}); choose another --out")
        out = check_writable(out, "deployable model")
        _export_tqd(dep, model_path, out, as_json)
        return
    from ..device import c99
    from ..device import export as dx

    layout = layout or c99.layouts(dep)[0]
    suffix = "-c" if fmt == "c" else "-c-int"
    out = Path(out) if out else Path(model_path).with_name(Path(model_path).stem + suffix)
    if same_file(out, model_path):
        raise InputError(f"refusing to overwrite the model being exported ({model_path}); choose another --out")
    try:
        out = dx.check_out_dir(out, force, protect=(model_path,))
    except dx.ExportError as exc:
        raise InputError(str(exc)) from None
    if input_path is None:
        task = _task(dep, model_path, task_name, data_path)
        task_label, X = task.name, task.eval_set()[0]
    else:
        task_label, X = f"{input_path} (own units)", _read_values(dep, input_path)
    try:
        files = dx.write_c(dep, out, X, fmt, layout, source=Path(model_path).name, units=input_path is not None)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(f"{model_path}: {exc}") from None
    from ..device.toolchain import ToolchainError

    try:
        boards = dx.board_sizes(out, dep, fmt, ("m4", "m3") if fmt == "c-int" else ("m4",))
    except ToolchainError as exc:
        boards = {"error": str(exc)}
    res = {"model": str(model_path), "out": str(out), "format": fmt, "weight_format": dep.weight_format,
           "layout": layout, "dims": list(dep.dims),
           "task": task_label, "golden": {"sequences": int(X.shape[0]), "steps": int(X.shape[1])},
           "files": files, "boards": boards, "normalised": dep.units is not None,
           "golden_units": "own" if input_path is not None and dep.units is not None else "model"}
    if as_json:
        report.print_json(res)
        return
    rows = {"written to": f"{out}/ ({', '.join(files)})", "format": fmt + (" (integer only)" if fmt == "c-int"
                                                                            else " (float32, bit-exact)"),
            "weights": dep.weight_format, "weight layout": layout, "dims (in, hidden, out)": str(tuple(dep.dims)),
            "golden.h": (f"{X.shape[0]} x {X.shape[1]} held-out steps of {task_label}" if input_path is None else
                         f"{X.shape[1]} rows of {input_path} in the series' own units (ternq_step_units)")}
    if dep.units is not None:
        rows["units"] = ("ternq_step: normalised; ternq_step_units: the series' own units" if fmt == "c" else
                         "normalised Q15.16 (mean and sd in ternq_model.h)")
    if "error" in boards:
        rows["board sizes"] = boards["error"]
    for target, s in boards.items():
        if target != "error":
            rows[f"Cortex-{target.upper()} (library only)"] = _size_row(s)
    rows["check"] = f"cc -std=c99 -O2 -ffp-contract=off {out}/*.c -o m && ./m"
    report.out.print(report.kv_table(f"Exported {model_path}", rows))


def _read_values(dep: Deployable, path):
    try:
        return read_values(dep, path)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _export_tqd(dep: Deployable, model_path, out, as_json):
    data = dep.to_bytes()
    if not (Deployable.from_bytes(data).params().tobytes() == dep.params().tobytes()):
        raise click.ClickException("internal error: the deployable file does not read back identically")
    try:
        atomic_write_bytes(Path(out), data)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    res = {"model": str(model_path), "out": str(out), **dep.sizes(), "npz_bytes": Path(model_path).stat().st_size}
    if as_json:
        report.print_json(res)
        return
    rows = {"written to": str(out), "dims (in, hidden, out)": str(tuple(dep.dims)),
            "file size": f"{res['file_bytes']} B ({res['file_vs_float32']:.1%} of float32)",
            "  payload": f"{res['payload_bytes']} B ({res['payload_vs_float32']:.1%} of float32): "
                         f"{res['level_bytes']} B for {dep.n_weights} {dep.weight_format} weights "
                         f"({res['per_byte']} per byte) + {res['float_bytes']} B "
                         "float32 scales, biases, tau",
            "  header + manifest": f"{res['manifest_bytes'] + 12} B",
            "float32 size of the same model": f"{res['float32_bytes']} B",
            "zero weights": f"{100 * res['zero_share']:.1f}%",
            "input file": f"{res['npz_bytes']} B"}
    report.out.print(report.kv_table(f"Exported {model_path}", rows))


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@model_task_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also save the predictions: FILE.csv as one '%.9g' value per line (sequences, steps, channels "
                   "in order; integers with --int), exactly what the C harness prints, so 'cmp' compares them; "
                   "any other name: .npy, (N, T, n_out) float32 (int32 Q16 with --int). Normalised values for a "
                   "model of a --data series, its own units with --input.")
@click.option("--factored", is_flag=True,
              help="Sum inputs with adds/subtracts only and multiply each row by its scale once "
                   "(not bit-identical to training; differs by ~1e-7).")
@click.option("--int", "integer", is_flag=True,
              help="Run the integer-only model ('ternq export --format c-int'), and report its eval MSE next to "
                   "the float32 model's.")
@click.option("--horizon", type=int, default=None, metavar="K",
              help="Also run the model free on its own predictions for K steps after a warm-up on every held-out "
                   "window; print the MSE at each horizon (bit-identical to the training-side rollout).")
@click.option("--warmup", type=int, default=None, metavar="W", help="With --horizon: true steps first [25].")
@click.option("--input", "input_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Run on the rows of FILE (CSV or .npy, in the series' own units, the model's columns) as one "
                   "sequence instead of the held-out set: --out gets predictions in those units, and the errors "
                   "on rows 2.. are printed per channel in those units beside the normalised MSE.")
@json_option
def predict(model_path, task_name, data_path, out, factored, integer, as_json, horizon=None, warmup=None,
            input_path=None):
    """Run a deployable file (from 'ternq export') or a student .npz on a task's held-out set; print the eval MSE.

    Without --task or --data, the task the model was trained on is used. A model
    trained on --data works in normalised units; --input takes and --out returns
    the series' own units.
    """
    if factored and integer:
        raise InputError("--factored and --int cannot be combined")
    if input_path is not None:
        if integer or horizon is not None or warmup is not None:
            raise InputError("--input runs the float32 model on one sequence: drop --int, --horizon and --warmup")
        if task_name is not None or data_path is not None:
            raise InputError("--input and --task/--data cannot be combined (the input file is the sequence)")
        _predict_values(model_path, input_path, out, factored, as_json)
        return
    if integer and horizon is not None:
        raise InputError("--int and --horizon cannot be combined (the integer model has no rollout)")
    dep = _load(model_path)
    task = _task(dep, model_path, task_name, data_path)
    rollout = _rollout(dep, task, horizon, warmup, factored)
    if out is not None:
        if same_file(out, model_path):
            raise InputError(f"refusing to overwrite the model ({model_path}) with predictions; choose another --out")
        out = check_writable(out, "predictions")
    X, Y = task.eval_set()
    t0 = time.perf_counter()
    mse, ys = dep.mse(X, Y, factored)
    seconds = time.perf_counter() - t0
    rmse = held_out_rmse(ys, Y, task.describe())
    int_mse = None
    if integer:
        from ..device.fixed import ONE, IntModel

        try:
            im = IntModel.from_deployable(dep)
        except ValueError as exc:
            raise InputError(f"{model_path}: {exc}") from None
        t0 = time.perf_counter()
        int_mse, ys = im.mse(X, Y)
        seconds = time.perf_counter() - t0
        rmse = held_out_rmse(ys.astype(np.float64) / ONE, Y, task.describe())
    if out is not None:
        _write_predictions(out, ys)
    same_task = dep.task == json.loads(json.dumps(task.describe()))
    recorded = dep.info.get("eval_mse_at_training") if same_task else None
    res = {"model": str(model_path), "weight_format": dep.weight_format, "task": task.describe(),
           "eval_mse": int_mse if integer else mse,
           "sequences": int(X.shape[0]), "steps": int(X.shape[1]), "factored": factored, "integer": integer,
           "seconds": seconds, "eval_mse_at_training": recorded, "out": str(out) if out else None,
           "eval_rmse_units": rmse, **rollout}
    if integer:
        res.update({"float32_eval_mse": mse, "int_vs_float32": int_mse / mse if mse > 0 else None})
    if as_json:
        report.print_json(res)
        return
    rows = {"eval MSE (held-out)": res["eval_mse"] if rmse is None else f"{report.fmt(res['eval_mse'])} (normalised)"}
    rows.update(_rmse_rows(rmse, channel_names(task.describe(), task.n_out), "eval RMSE"))
    rows["sequences x steps"] = f"{X.shape[0]} x {X.shape[1]}"
    if integer:
        rows["kernel"] = "integer only (Q15.16 state, table sigmoid; bit-identical to --format c-int)"
        rows["float32 model eval MSE"] = mse
        if res["int_vs_float32"] is not None:
            rows["integer vs float32"] = f"{res['int_vs_float32']:.4f}x"
    else:
        rows["kernel"] = ("factored (add/subtract, one multiply per row)" if factored
                          else "exact (add/subtract of input x scale; bit-identical to training)")
    rows["time (s)"] = f"{seconds:.4f}"
    if recorded is not None and not integer:
        rows["eval MSE recorded at training"] = f"{report.fmt(recorded)}" + (
            " (identical)" if recorded == mse else "")
    if out:
        rows["predictions saved to"] = str(out)
    if rollout:
        rows.update(report.forecast_rows(rollout, rollout["naive"], rollout["forecast_settings"]))
    report.out.print(report.kv_table(f"{model_path} on {task.name}", rows))


def _rmse_rows(rmse: list[float] | None, names: list[str], label: str) -> dict:
    if rmse is None:
        return {}
    return {f"{label}, {name} (own units)": report.fmt(v) for name, v in zip(names, rmse, strict=True)}


def _write_predictions(out, ys) -> None:
    try:
        if str(out).lower().endswith(".csv"):
            from ..device.c99 import csv_lines

            atomic_write_bytes(Path(out), csv_lines(ys).encode())
        else:
            save_npy(out, ys)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None


def _predict_values(model_path, input_path, out, factored, as_json) -> None:
    """``predict --input``: one sequence in the series' own units."""
    dep = _load(model_path)
    X = _read_values(dep, input_path)
    if out is not None:
        if same_file(out, model_path) or same_file(out, input_path):
            raise InputError(f"refusing to overwrite an input ({model_path} or {input_path}); choose another --out")
        out = check_writable(out, "predictions")
    try:
        res = score_values(dep, X, factored)
    except ValueError as exc:
        raise InputError(f"{input_path}: {exc}") from None
    ys = res.pop("predictions")
    if out is not None:
        _write_predictions(out, ys)
    names = channel_names(dep.task, dep.n_out)
    res.update({"model": str(model_path), "input": str(input_path), "channels": names,
                "normalised": dep.units is not None, "factored": factored, "out": str(out) if out else None})
    if as_json:
        report.print_json(res)
        return
    rows = {"rows": f"{res['rows']} (each predicts the next; errors on rows 2..{res['rows']})"}
    if res["rmse"] is None:
        rows["errors"] = "none (one row: nothing to compare with)"
    else:
        rows["MSE (normalised)" if dep.units is not None else "MSE"] = res["mse_normalised"]
        rows.update(_rmse_rows(res["rmse"], names, "RMSE"))
    rows["units"] = ("the series' own units in and out (normalised inside the model)" if dep.units is not None
                     else "the task's own values (no normalisation)")
    if out:
        rows["predictions saved to"] = f"{out} (own units)"
    report.out.print(report.kv_table(f"{model_path} on {input_path}", rows))


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
