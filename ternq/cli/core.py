"""``ternq gradcheck`` and ``ternq teacher``."""

from __future__ import annotations

import time

import click

from .. import report
from ..experiment.units import trained_figures
from ..gradcheck import TOLERANCE, check_all
from ..memory import check_fits
from ..settings import RunSettings, TeacherSettings
from ..train import TeacherConfig, train_teacher, training_bytes
from . import InputError, cli
from .options import (
    HIDDEN_INT,
    SEED_INT,
    check_writable,
    json_option,
    load_task,
    option,
    quiet_option,
    task_option,
    warn_if_worse,
)


@cli.command()
@click.option("--hidden", "widths", type=HIDDEN_INT, multiple=True, default=(16, 32), show_default=True,
              help="Width(s) to check; repeat the option for several.")
@click.option("--seed", type=SEED_INT, default=0, show_default=True)
@task_option
@json_option
def gradcheck(widths, seed, task_name, data_path, as_json):
    """Check every analytical gradient against finite differences (float64).

    Exits 1 when any relative error exceeds 1e-3, the notes' bar.
    """
    task = load_task(task_name, data_path)  # only its input and output sizes matter here
    results = check_all(widths, seed, task.n_in, task.n_out)
    worst = max(r.max_rel_err for r in results)
    if as_json:
        report.print_json({"tolerance": TOLERANCE, "max_rel_err": worst,
                           "blocks": [dict(vars(r), ok=r.ok) for r in results]})
    else:
        report.out.print(report.gradcheck_table(results, TOLERANCE))
        status = "[green]PASS[/]" if worst < TOLERANCE else "[red]FAIL[/]"
        report.out.print(f"{status}: max relative error {worst:.2e} over {sum(r.checked for r in results)} "
                         f"checks (bar {TOLERANCE:g})")
    return 0 if worst < TOLERANCE else 1


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Settings file (TOML, see configs/): its [teacher] and [run]; flags override it.")
@click.option("--hidden", type=HIDDEN_INT, default=16, show_default=True, help="Hidden units.")
@click.option("--seed", type=SEED_INT, default=0, show_default=True)
@option(TeacherSettings, "epochs")
@option(TeacherSettings, "lr")
@option(TeacherSettings, "lr_min")
@option(TeacherSettings, "schedule")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the model [default: teacher-h{H}-s{SEED}.npz].")
@task_option
@quiet_option
@json_option
@option(RunSettings, "horizon")
@option(RunSettings, "warmup")
@option(RunSettings, "period")
@option(RunSettings, "device")
def teacher(config_path, hidden, seed, epochs, lr, lr_min, schedule, out, task_name, data_path, quiet, as_json,
            horizon, warmup, period, device):
    """Train a float CfC teacher with Adam, clipping and a learning-rate schedule."""
    from ..experiment.forecasting import model_forecasts
    from ..experiment.run import check_device
    from ..multi import train_teachers
    from .experiment import command_settings, command_task, forecast_settings

    settings = command_settings(config_path, task_name, data_path, teacher__epochs=epochs, teacher__lr=lr,
                                teacher__lr_min=lr_min, teacher__schedule=schedule, run__horizon=horizon,
                                run__warmup=warmup, run__period=period, run__device=device)
    task = command_task(settings)
    fs = forecast_settings(settings, task)
    check_device(settings.run.device, launches=[(1, settings.teacher.batch, task.n_in, hidden, task.n_out)])
    out = check_writable(f"teacher-h{hidden}-s{seed}.npz" if out is None else out, "model")
    cfg = TeacherConfig(hidden=hidden, **vars(settings.teacher))
    cfg.validate()
    check_fits(training_bytes(task, cfg), f"a teacher of width {hidden} over {cfg.epochs} epochs")
    t0 = time.perf_counter()
    with report.progress(not quiet) as p:
        if settings.run.device == "cpu":
            model, hist = train_teacher(task, cfg, seed, report.tracker(p, f"teacher H={hidden}", cfg.epochs))
        else:  # the same bits, in one launch
            model, hist = train_teachers(task, cfg, [seed], device=settings.run.device)[0]
    seconds = time.perf_counter() - t0
    warn_if_worse(hist, f"the teacher H={hidden}")
    t0 = time.perf_counter()
    figures = {**trained_figures(model, hist, task), "seconds": seconds}
    naive, fc = model_forecasts({"teacher": model}, task, fs)
    figures.update(fc["teacher"], eval_seconds=time.perf_counter() - t0)
    model.meta["figures"] = figures
    try:
        model.save(out)
    except OSError as exc:
        raise InputError(f"cannot write model {out}: {exc.strerror or exc}") from None
    if as_json:
        report.print_json({"model": str(out), "config": model.meta["config"], "seed": seed,
                           "task": task.describe(), **figures, "naive": naive, "forecast_settings": fs.to_dict()})
    else:
        rows = {"train loss (last epoch)": figures["train_loss"], "train MSE (last epoch)": figures["train_mse"],
                "eval MSE (held-out phases)": figures["eval_mse"]}
        if "ref_mse" in figures:
            rows["eval MSE (phase 0, 100 steps; C protocol)"] = figures["ref_mse"]
        rows.update(report.forecast_rows(figures, naive, fs.to_dict()))
        rows["training time (s)"] = f"{seconds:.2f}"
        rows["evaluation time (s)"] = f"{figures['eval_seconds']:.2f}"
        rows["saved to"] = str(out)
        report.out.print(report.kv_table(f"Teacher H={hidden}, seed {seed}, {cfg.epochs} epochs", rows))
