"""``ternq student``, ``ternq cs`` and ``ternq factorial``."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import click

from .. import config, formats, report
from ..experiment.execute import obtain
from ..experiment.forecasting import model_forecasts
from ..experiment.plans import DesignSettings, parse_factor
from ..experiment.results import split_timing
from ..experiment.run import Cell, GradientCheckError, check_device, forecast_of, run
from ..experiment.store import Store, cache_dir
from ..experiment.summary import vs_float
from ..experiment.units import TaskSpec, Unit, search_figures, trained_figures
from ..memory import check_fits
from ..model import Model
from ..multi import train_students
from ..report.files import save_forecast_plots, save_plots
from ..search import quantize_teacher, search_from
from ..settings import RunSettings, SearchSettings, SettingsError, StudentSettings, TeacherSettings
from ..train import StudentConfig, TeacherConfig, evaluate, train_student, training_bytes
from . import InputError, cli, resumable
from .options import (
    HIDDEN_INT,
    POSITIVE_INT,
    SEED_INT,
    check_writable,
    given_columns,
    json_option,
    load_task,
    option,
    quiet_option,
    task_option,
    warn_if_worse,
)
from .sweep import cluster, follow, force_option, make_out_dir, scheduler_option, warn, warn_worse


def _task_flags(task_name, data_path) -> dict:
    """Task overrides from --task/--data, only when given (else the config file's task stands)."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("task_name") not in (None, click.core.ParameterSource.DEFAULT)
    out = {"experiment__task": task_name if given else None}
    if data_path is not None:
        out["experiment__data"] = str(Path(data_path).resolve())
        out["experiment__columns"] = given_columns()
    return out


def command_settings(config_path, task_name=None, data_path=None, **overrides) -> config.ExperimentSettings:
    """Settings file, then --task/--data, then the other flags (read and checked as the file's keys are)."""
    try:
        return config.override(config.load(config_path), **_task_flags(task_name, data_path), **overrides)
    except config.ConfigError as exc:
        raise InputError(str(exc)) from None


def command_task(settings: config.ExperimentSettings):
    """The settings' task, with its file columns when set (one line, exit 2, on a bad task or file)."""
    columns = {"columns": list(settings.columns)} if settings.columns else {}
    return load_task(settings.task, settings.data or None, **columns)


def forecast_settings(settings: config.ExperimentSettings, task):
    """The ``[run]`` forecast settings checked against the task's held-out windows (one line, exit 2)."""
    try:
        return forecast_of(settings, task)
    except SettingsError as exc:
        raise InputError(str(exc).split(": ", 1)[1]) from None


def _teacher(path, task, settings, hidden, seed, quiet):
    """A teacher from --teacher PATH, or trained on the fly (and cached) from the same seed."""
    if path is not None:
        model = Model.load(path)
        if model.kind != "teacher":
            raise InputError(f"{path} holds a {model.kind}, not a teacher")
        if model.dims != (task.n_in, hidden, task.n_out):
            raise InputError(f"teacher {path} has dims {model.dims}, need {(task.n_in, hidden, task.n_out)}")
        return model
    unit = Unit("teacher", f"s{seed}/teacher-h{hidden}", seed, TaskSpec.of(settings),
                TeacherConfig(hidden=hidden, **vars(settings.teacher)))
    unit.config.validate()
    check_fits(training_bytes(task, unit.config), f"a teacher of width {hidden}")
    with report.progress(not quiet) as p:
        bar = report.tracker(p, f"teacher H={hidden} (cached for next time)", settings.teacher.epochs)
        (_, model), hit = obtain(unit, Store(cache_dir() / "units", warn), bar)
    if not quiet:
        report.err.print(f"teacher H={hidden} seed {seed}: {'from cache' if hit else 'trained'} ({cache_dir()})")
    return model


forecast_options = [option(RunSettings, "horizon"), option(RunSettings, "warmup"), option(RunSettings, "period")]


def _save(model, out):
    try:
        model.save(out)
    except OSError as exc:
        raise InputError(f"cannot write model {out}: {exc.strerror or exc}") from None


common = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                 help="Settings file (TOML, see configs/); flags override it."),
    click.option("--seed", type=SEED_INT, default=0, show_default=True),
    task_option, quiet_option, json_option, *forecast_options,
]


def apply_options(opts):
    """A decorator applying click options in the order listed."""
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@cli.command()
@click.option("--teacher", "teacher_path", type=click.Path(dir_okay=False), default=None,
              help="Float teacher of the same width [default: train one from the same seed, cached].")
@option(StudentSettings, "shaped")
@option(StudentSettings, "distill")
@click.option("--hidden", type=HIDDEN_INT, default=16, show_default=True, help="Width (C).")
@option(StudentSettings, "mask")
@option(StudentSettings, "beta")
@option(StudentSettings, "alpha")
@option(StudentSettings, "epochs")
@option(StudentSettings, "lr")
@option(StudentSettings, "lr_min")
@option(StudentSettings, "schedule")
@option(StudentSettings, "weight_format")
@option(StudentSettings, "weight_format_gate")
@option(StudentSettings, "weight_format_cand")
@option(StudentSettings, "weight_format_out")
@option(StudentSettings, "scale_group")
@option(StudentSettings, "scale_sign")
@option(StudentSettings, "zero_threshold")
@option(StudentSettings, "ptq")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the student [default: student-h{H}-{flags}-s{SEED}.npz].")
@apply_options(common)
@option(RunSettings, "device")
def student(teacher_path, shaped, distill, hidden, mask, beta, alpha, epochs, lr, lr_min, schedule, weight_format,
            weight_format_gate, weight_format_cand, weight_format_out, scale_group, scale_sign, zero_threshold, ptq,
            out, config_path, seed, task_name,
            data_path, quiet, as_json, horizon, warmup, period, device):
    """Train a quantized student (ternary unless --weight-format) from a float teacher of the same width."""
    settings = command_settings(config_path, task_name, data_path, student__shaped=shaped,
                                student__distill=distill, student__mask=mask, student__beta=beta,
                                student__alpha=alpha, student__epochs=epochs, student__lr=lr, student__lr_min=lr_min,
                                student__schedule=schedule, student__weight_format=weight_format,
                                student__weight_format_gate=weight_format_gate,
                                student__weight_format_cand=weight_format_cand,
                                student__weight_format_out=weight_format_out, student__scale_group=scale_group,
                                student__scale_sign=scale_sign, student__zero_threshold=zero_threshold,
                                student__ptq=ptq,
                                run__horizon=horizon, run__warmup=warmup,
                                run__period=period, run__device=device)
    task = command_task(settings)
    fs = forecast_settings(settings, task)
    check_device(settings.run.device, launches=[(1, settings.student.batch, task.n_in, hidden, task.n_out)])
    cfg = StudentConfig(hidden=hidden, **vars(settings.student))
    tag = f"{'S' if cfg.shaped else 's'}{'D' if cfg.distill else 'd'}"
    fmt = formats.label(cfg.weight_format, cfg.weight_format_gate, cfg.weight_format_cand, cfg.weight_format_out)
    tag += ("" if fmt == "ternary" else f"-{formats.slug(fmt)}") + ("-ptq" if cfg.ptq else "")
    tag += (f"-g{cfg.scale_group}" if cfg.scale_group else "") + ("-sign" if cfg.scale_sign else "")
    tag += f"-z{cfg.zero_threshold:g}" if cfg.zero_threshold != StudentConfig.zero_threshold else ""
    out = check_writable(f"student-h{hidden}-{tag}-s{seed}.npz" if out is None else out, "model",
                         reads=teacher_path)
    teacher = _teacher(teacher_path, task, settings, hidden, seed, quiet)
    cfg.validate()
    check_fits(training_bytes(task, cfg), f"a student of width {hidden}")
    t0 = time.perf_counter()
    with report.progress(not quiet) as p:
        if settings.run.device == "cpu":
            model, hist = train_student(teacher, task, cfg, seed, report.tracker(p, f"student H={hidden} {tag}",
                                                                                  cfg.epochs))
        else:  # the same bits, in one launch
            model, hist = train_students(teacher, task, cfg, [seed], device=settings.run.device)[0]
    seconds = time.perf_counter() - t0
    warn_if_worse(hist, f"the student H={hidden} {tag}")
    t_eval = evaluate(teacher, task)
    figures = {**trained_figures(model, hist, task), "teacher_eval_mse": t_eval["eval_mse"], "seconds": seconds}
    figures["vs_float"] = vs_float(figures["eval_mse"], t_eval["eval_mse"])
    naive, fc = model_forecasts({"student": model, "teacher": teacher}, task, fs)
    figures.update(fc["student"])
    if "vs_naive" in fc["teacher"]:
        figures["teacher_vs_naive"] = fc["teacher"]["vs_naive"]
    model.meta["figures"] = figures
    _save(model, out)
    if as_json:
        report.print_json({"model": str(out), "config": asdict(cfg), "seed": seed, "task": task.describe(),
                           **figures, "naive": naive, "forecast_settings": fs.to_dict()})
        return
    rows = {"train MSE (last epoch)": figures["train_mse"], "eval MSE (held-out)": figures["eval_mse"]}
    if "ref_mse" in figures:
        rows["eval MSE (phase 0, 100 steps; C protocol)"] = figures["ref_mse"]
    rows.update({"teacher eval MSE": figures["teacher_eval_mse"], "vs float (ratio)": f"{figures['vs_float']:.2f}x",
                 "zero trits" if model.weight_format == "ternary" else "zero levels":
                     f"{100 * figures['zero_share']:.1f}%"})
    if model.format_label != "ternary":
        rows["weight format (weight bytes)"] = f"{model.format_label} ({figures['weight_bytes']:,})"
    rows.update(report.forecast_rows(figures, naive, fs.to_dict()))
    if "teacher_vs_naive" in figures:
        rows["teacher vs naive (MSE ratio)"] = f"{figures['teacher_vs_naive']:.2f}x"
    rows.update({"time (s)": f"{seconds:.2f}", "saved to": str(out)})
    title = (f"Student H={hidden}, shaped {'on' if cfg.shaped else 'off'} ({cfg.mask} mask), "
             f"distill {'on' if cfg.distill else 'off'}, seed {seed}")
    report.out.print(report.kv_table(title, rows))


@cli.command()
@click.option("--from", "source", default="teacher", show_default=True,
              help="'teacher' (quantize the teacher with absmean scales, then search) or a student .npz to refine.")
@click.option("--teacher", "teacher_path", type=click.Path(dir_okay=False), default=None,
              help="With --from teacher: the teacher [default: train one from the seed, cached].")
@click.option("--hidden", type=HIDDEN_INT, default=16, show_default=True)
@option(SearchSettings, "sweeps")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the result [default: cs-h{H}-s{SEED}.npz].")
@apply_options(common)
def cs(source, teacher_path, hidden, sweeps, out, config_path, seed, task_name, data_path, quiet, as_json,
       horizon, warmup, period):
    """Coordinate search over trits (the C program's baseline)."""
    settings = command_settings(config_path, task_name, data_path, cs__sweeps=sweeps, run__horizon=horizon,
                                run__warmup=warmup, run__period=period)
    task = command_task(settings)
    fs = forecast_settings(settings, task)
    if source != "teacher":
        ctx = click.get_current_context()
        if teacher_path is not None:
            raise InputError("--teacher is for --from teacher; a student file to refine needs no teacher")
        start = Model.load(source)
        if start.kind != "student":
            raise InputError(f"{source} holds a {start.kind}; --from takes 'teacher' or a student file")
        if start.weight_format != "ternary":
            raise InputError(f"{source} is a {start.weight_format} student; coordinate search refines ternary "
                             "students only")
        if (start.n_in, start.n_out) != (task.n_in, task.n_out):
            raise InputError(f"{source} has {start.n_in} inputs / {start.n_out} outputs; the task has "
                             f"{task.n_in} / {task.n_out}")
        if ctx.get_parameter_source("hidden") is not click.core.ParameterSource.DEFAULT and hidden != start.hidden:
            raise InputError(f"--hidden {hidden}: {source} has width {start.hidden} (leave --hidden out with a "
                             "student file)")
        hidden = start.hidden
    out = check_writable(f"cs-h{hidden}-s{seed}.npz" if out is None else out, "model",
                         reads=teacher_path if source == "teacher" else source)
    if source == "teacher":
        start = quantize_teacher(_teacher(teacher_path, task, settings, hidden, seed, quiet))
    t0 = time.perf_counter()
    model, res = search_from(start, task, settings.cs, seed)
    seconds = time.perf_counter() - t0
    figures = {"source": source, "hidden": hidden, **search_figures(start, model, res, task), "seconds": seconds}
    naive, fc = model_forecasts({"cs": model}, task, fs)
    figures.update(fc["cs"])
    model.meta.update(figures=figures, seed=seed, task=task.describe())
    _save(model, out)
    if as_json:
        report.print_json({"model": str(out), **figures, "naive": naive, "forecast_settings": fs.to_dict()})
        return
    rows = {"search MSE per sweep": " -> ".join(report.fmt(x) for x in res.mse_history),
            "flips kept": res.flips, "sweeps run": res.sweeps,
            "eval MSE before": figures["start_eval_mse"], "eval MSE after": figures["eval_mse"]}
    if figures.get("ref_mse") is not None:
        rows["eval MSE after (phase 0; C protocol)"] = figures["ref_mse"]
    rows["zero trits"] = f"{100 * figures['zero_share']:.1f}%"
    rows.update(report.forecast_rows(figures, naive, fs.to_dict()))
    rows.update({"time (s)": f"{seconds:.2f}", "saved to": str(out)})
    report.out.print(report.kv_table(f"Coordinate search from {source}, H={hidden}, seed {seed}", rows))


@cli.command()
@click.option("--seed", type=SEED_INT, default=None, help="Run one seed [0].")
@click.option("--seeds", default=None, help="Several seeds: a count N (0..N-1) or a range A:B.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Settings file (TOML; configs/default.toml is the reference size, configs/quick.toml a smoke run).")
@click.option("--factor", "factors", multiple=True, metavar="KEY=LOW,HIGH",
              help="A two-level factor (repeatable): any settings key, e.g. student.lr=0.003,0.01, hidden=16,32, "
                   "student.mask=reference,seed. Without any: the notes' shaped x distill x width.")
@click.option("--runs", type=POSITIVE_INT, default=None,
              help="Runs of the design (a power of two) [full 2^k up to 5 factors, else the smallest resolution-IV "
                   "fraction].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write results.json, results.csv, timing.json and the models here; each finished training is "
                   "kept in OUT/units at once, and rerunning the same command resumes from them.")
@option(RunSettings, "workers")
@option(RunSettings, "device")
@scheduler_option
@option(StudentSettings, "mask")
@option(TeacherSettings, "epochs", "--teacher-epochs", "teacher_epochs")
@option(StudentSettings, "epochs", "--student-epochs", "student_epochs")
@click.option("--no-gradcheck", is_flag=True, help="Skip the finite-difference check (not recommended).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNGs here: effects (bars and half-normal); for the notes' design also predictions and "
                   "learning curves (needs matplotlib: ternq[plot]).")
@apply_options(forecast_options)
@option(RunSettings, "response")
@option(RunSettings, "metric")
@option(RunSettings, "float_reference")
@force_option
@task_option
@quiet_option
@json_option
def factorial(seed, seeds, config_path, factors, runs, out_dir, workers, device, scheduler, mask, teacher_epochs,
              student_epochs, no_gradcheck, plot_dir, force, task_name, data_path, quiet, as_json, response,
              horizon, warmup, period, metric, float_reference):
    """Run a two-level design of training recipes and report its effects.

    Without --factor: the notes' 2x2x2 (shaped x distill x width) plus coordinate search.
    """
    if seed is not None and seeds is not None:
        raise InputError("give --seed or --seeds, not both")
    chosen = [seed] if seed is not None else seeds
    settings = command_settings(config_path, task_name, data_path, experiment__seeds=chosen, student__mask=mask,
                                teacher__epochs=teacher_epochs, student__epochs=student_epochs, run__workers=workers,
                                run__device=device,
                                run__response=response, run__horizon=horizon, run__warmup=warmup, run__period=period,
                                run__metric=metric, run__float_reference=float_reference)
    if factors or runs is not None:
        try:
            given = tuple(parse_factor(f) for f in factors) if factors else settings.design.factors
            design = DesignSettings(given, runs, () if factors else settings.design.generators)
            settings = replace(settings, design=design)
            design.validate(settings)
        except SettingsError as exc:
            raise InputError(f"design: {exc}") from None
    forecast_settings(settings, command_task(settings))  # a bad task, file or horizon: one line, before anything
    check_device(settings.run.device, [settings])
    if plot_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install 'ternq[plot]'") from None
        plot_made = not Path(plot_dir).exists()
        make_out_dir(plot_dir, "effects.png")
    out = make_out_dir(out_dir, "results.json") if out_dir is not None else None
    if out is not None:
        resumable(out)  # an interruption from here on leaves finished trainings to resume from
    with cluster(scheduler) as client, report.progress(not quiet) as p:
        try:
            outcome = run([Cell("", settings)], out, client=client, check_gradients=not no_gradcheck, force=force,
                          warn=warn, **follow(p, quiet, "factorial", out / "units" if out else ""))
        except GradientCheckError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if client is not None or out is None:
                raise
            raise InputError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    warn_worse(outcome.worse, outcome.units)
    doc, plan, results = outcome.cells[0].doc, outcome.cells[0].plan, outcome.cells[0].results
    if plot_dir is not None:
        try:
            written = save_plots(doc, plan, results, plot_dir)
            written += save_forecast_plots(doc, plan, results, plot_dir)
        except OSError as exc:
            if plot_made:  # only this run's plots are in it: leave no half-written folder
                shutil.rmtree(plot_dir, ignore_errors=True)
            raise InputError(f"cannot write plots to {plot_dir}: {exc.strerror or exc}") from None
        if not quiet:
            report.err.print(f"plots: {', '.join(str(w) for w in written)}")
    if as_json:
        report.print_json(split_timing(doc)[0])
        return
    for table in report.factorial_tables(doc) if plan.words.predictions else report.design_tables(doc):
        if table is not None:
            report.out.print(table)
    for table in report.forecast_tables(doc):
        report.out.print(table)
    t = doc["timing"]
    report.out.print(f"wall time {t['total_s']:.2f} s (gradient check {t['gradcheck_s']:.2f} s, trainings "
                     f"{t['training_s']:.2f} s on {t['workers']} workers"
                     + (", GPU" if t.get("device") == "cuda" else "") + ")" + (f"; results in {out}" if out else ""))
