"""``ternq gradcheck`` and ``ternq teacher``."""

from __future__ import annotations

import time

import click

from .. import report
from ..experiment.units import trained_figures
from ..gradcheck import TOLERANCE, check_all
from ..memory import check_fits
from ..train import SCHEDULES, TeacherConfig, train_teacher, training_bytes
from . import InputError, cli
from .options import (
    EPOCHS_INT,
    HIDDEN_INT,
    POSITIVE_FLOAT,
    SEED_INT,
    check_writable,
    json_option,
    load_task,
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

    Exits 1 when any relative error exceeds 1e-3, the seeds' bar.
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


def _forecast_options(f):
    from .experiment import forecast_options  # --horizon, --warmup, --period, shared with student, cs, factorial

    for o in reversed(forecast_options):
        f = o(f)
    return f


@cli.command()
@click.option("--hidden", type=HIDDEN_INT, default=16, show_default=True, help="Hidden units.")
@click.option("--seed", type=SEED_INT, default=0, show_default=True)
@click.option("--epochs", type=EPOCHS_INT, default=TeacherConfig.epochs, show_default=True)
@click.option("--lr", type=POSITIVE_FLOAT, default=TeacherConfig.lr, show_default=True, help="Peak learning rate.")
@click.option("--lr-min", type=float, default=TeacherConfig.lr_min, show_default=True,
              help="Final learning rate of the cosine schedule.")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default=TeacherConfig.schedule, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the model [default: teacher-h{H}-s{SEED}.npz].")
@task_option
@quiet_option
@json_option
@_forecast_options
def teacher(hidden, seed, epochs, lr, lr_min, schedule, out, task_name, data_path, quiet, as_json, horizon, warmup,
            period):
    """Train a float CfC teacher with Adam, clipping and a learning-rate schedule."""
    from ..experiment.forecasting import model_forecasts
    from .experiment import forecast_settings

    task = load_task(task_name, data_path)
    fs = forecast_settings(task, horizon, warmup, period)
    out = check_writable(f"teacher-h{hidden}-s{seed}.npz" if out is None else out, "model")
    if click.get_current_context().get_parameter_source("lr_min") is click.core.ParameterSource.DEFAULT:
        lr_min = min(lr_min, lr)  # the default floor follows a lower --lr; a given --lr-min is checked as given
    cfg = TeacherConfig(hidden=hidden, epochs=epochs, lr=lr, lr_min=lr_min, schedule=schedule)
    try:
        cfg.validate()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    check_fits(training_bytes(task, cfg), f"a teacher of width {hidden} over {epochs} epochs")
    t0 = time.perf_counter()
    with report.progress(not quiet) as p:
        model, hist = train_teacher(task, cfg, seed, report.tracker(p, f"teacher H={hidden}", epochs))
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
        report.out.print(report.kv_table(f"Teacher H={hidden}, seed {seed}, {epochs} epochs", rows))
