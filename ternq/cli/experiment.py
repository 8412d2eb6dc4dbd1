"""``ternq student``, ``ternq cs`` and ``ternq factorial``."""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import click

from .. import config, report
from ..experiment.execute import obtain
from ..experiment.forecasting import ForecastSettings, model_forecasts
from ..experiment.plans import DesignSettings, parse_factor
from ..experiment.run import GradientCheckError, memory_needed, run_experiment
from ..experiment.store import Store, cache_dir
from ..experiment.summary import response as summary_response
from ..experiment.summary import vs_float
from ..experiment.units import TaskSpec, Unit, search_figures, trained_figures
from ..memory import check_fits
from ..model import Model
from ..report.files import models_of, save_forecast_plots, save_plots, save_results, split_timing
from ..search import quantize_teacher, search_from
from ..train import (
    MASKS,
    SCHEDULES,
    SettingsError,
    StudentConfig,
    TeacherConfig,
    evaluate,
    train_student,
    training_bytes,
    worse_than_start,
)
from . import InputError, cli, resumable
from .options import (
    EPOCHS_INT,
    HIDDEN_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED_INT,
    check_writable,
    json_option,
    load_task,
    quiet_option,
    task_option,
    warn_if_worse,
)
from .sweep import claim_out_dir, cluster, force_option, locked, make_out_dir, resume_note, scheduler_option, warn

_D = config.StudentSettings()  # the defaults shown in --help


def _task_flags(task_name, data_path) -> dict:
    """Task overrides from --task/--data, only when given (else the config file's task stands)."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("task_name") not in (None, click.core.ParameterSource.DEFAULT)
    out = {"experiment__task": task_name if given else None}
    if data_path is not None:
        out["experiment__data"] = str(Path(data_path).resolve())
    return out


def _settings(config_path, **overrides) -> config.ExperimentSettings:
    """Settings file, then flags; a lower --lr also lowers the schedule's floor to match."""
    try:
        base = config.load(config_path)
        for sec in ("teacher", "student"):
            lr = overrides.get(f"{sec}__lr")
            if lr is not None and overrides.get(f"{sec}__lr_min") is None:
                overrides[f"{sec}__lr_min"] = min(lr, getattr(base, sec).lr_min)
        return config.override(base, **overrides)
    except config.ConfigError as exc:
        raise InputError(str(exc)) from None


def _teacher(path, task, settings, hidden, seed, quiet):
    """A teacher from --teacher PATH, or trained on the fly (and cached) from the same seed."""
    if path is not None:
        model = Model.load(path)
        if model.kind != "teacher":
            raise InputError(f"{path} holds a {model.kind}, not a teacher")
        if model.dims != (task.n_in, hidden, task.n_out):
            raise InputError(f"teacher {path} has dims {model.dims}, need {(task.n_in, hidden, task.n_out)}")
        return model
    unit = Unit("teacher", f"s{seed}/teacher-h{hidden}", seed, TaskSpec(settings.task, settings.data),
                TeacherConfig(hidden=hidden, **vars(settings.teacher)))
    unit.config.validate()
    check_fits(training_bytes(task, unit.config), f"a teacher of width {hidden}")
    with report.progress(not quiet) as p:
        bar = report.tracker(p, f"teacher H={hidden} (cached for next time)", settings.teacher.epochs)
        (_, model), hit = obtain(unit, Store(cache_dir() / "units", warn), bar)
    if not quiet:
        report.err.print(f"teacher H={hidden} seed {seed}: {'from cache' if hit else 'trained'} ({cache_dir()})")
    return model


forecast_options = [
    click.option("--horizon", type=int, default=None, metavar="K",
                 help="Also let each model run free on its own predictions for K steps after a warm-up; report the "
                      "MSE per horizon 1..K against the naive forecasts."),
    click.option("--warmup", type=int, default=None, metavar="W",
                 help="True steps before a rollout runs free [25, or half a held-out window if shorter]."),
    click.option("--period", type=int, default=None, metavar="N",
                 help="Seasonal period in rows for the seasonal naive baseline [the task's: sine 63, ecg 64, "
                      "sunspots 11, co2 52; none for lorenz, multisine and --data files]."),
]


def forecast_settings(task, horizon, warmup, period, response: str | None = None) -> ForecastSettings:
    """The forecast options checked against the task's held-out windows (one line, exit 2, naming the limit)."""
    try:
        fs = ForecastSettings(horizon, warmup, period).checked(task)
        return fs if response is None else fs.for_response(response).checked(task)
    except ValueError as exc:
        raise InputError(str(exc)) from None


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


def _apply(opts):  # the options the student and cs commands share
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@cli.command()
@click.option("--teacher", "teacher_path", type=click.Path(dir_okay=False), default=None,
              help="Float teacher of the same width [default: train one from the same seed, cached].")
@click.option("--shaped/--no-shaped", default=False, show_default=True, help="Smoothstep-shaped gradient (A).")
@click.option("--distill/--no-distill", default=False, show_default=True, help="Trajectory distillation (B).")
@click.option("--hidden", type=HIDDEN_INT, default=16, show_default=True, help="Width (C).")
@click.option("--mask", type=click.Choice(list(MASKS)), default=None,
              help="seed: the seeds' bump at |w/s| = 0.5 [default]; reference: the C program's.")
@click.option("--beta", type=(float, float), default=None,
              help=f"Smoothstep sharpness, start end [{_D.beta[0]:g} {_D.beta[1]:g}].")
@click.option("--alpha", type=(float, float), default=None,
              help=f"Trajectory weight, start end [{_D.alpha[0]:g} {_D.alpha[1]:g}].")
@click.option("--epochs", type=EPOCHS_INT, default=None, help=f"[{_D.epochs}]")
@click.option("--lr", type=POSITIVE_FLOAT, default=None, help=f"Peak learning rate [{_D.lr:g}].")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default=None, help=f"[{_D.schedule}]")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the student [default: student-h{H}-{flags}-s{SEED}.npz].")
@_apply(common)
def student(teacher_path, shaped, distill, hidden, mask, beta, alpha, epochs, lr, schedule, out, config_path, seed,
            task_name, data_path, quiet, as_json, horizon, warmup, period):
    """Train a hard-ternary student from a float teacher of the same width."""
    settings = _settings(config_path, **_task_flags(task_name, data_path), student__mask=mask, student__beta=beta,
                         student__alpha=alpha, student__epochs=epochs, student__lr=lr, student__schedule=schedule)
    task = load_task(settings.task, settings.data or None)
    fs = forecast_settings(task, horizon, warmup, period)
    tag = f"{'S' if shaped else 's'}{'D' if distill else 'd'}"
    out = check_writable(f"student-h{hidden}-{tag}-s{seed}.npz" if out is None else out, "model",
                         reads=teacher_path)
    teacher = _teacher(teacher_path, task, settings, hidden, seed, quiet)
    cfg = StudentConfig(hidden=hidden, shaped=shaped, distill=distill, **vars(settings.student))
    cfg.validate()
    check_fits(training_bytes(task, cfg), f"a student of width {hidden}")
    t0 = time.perf_counter()
    with report.progress(not quiet) as p:
        model, hist = train_student(teacher, task, cfg, seed, report.tracker(p, f"student H={hidden} {tag}",
                                                                              cfg.epochs))
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
                 "zero trits": f"{100 * figures['zero_share']:.1f}%"})
    rows.update(report.forecast_rows(figures, naive, fs.to_dict()))
    if "teacher_vs_naive" in figures:
        rows["teacher vs naive (MSE ratio)"] = f"{figures['teacher_vs_naive']:.2f}x"
    rows.update({"time (s)": f"{seconds:.2f}", "saved to": str(out)})
    title = (f"Student H={hidden}, shaped {'on' if shaped else 'off'} ({cfg.mask} mask), "
             f"distill {'on' if distill else 'off'}, seed {seed}")
    report.out.print(report.kv_table(title, rows))


@cli.command()
@click.option("--from", "source", default="teacher", show_default=True,
              help="'teacher' (quantize the teacher with absmean scales, then search) or a student .npz to refine.")
@click.option("--teacher", "teacher_path", type=click.Path(dir_okay=False), default=None,
              help="With --from teacher: the teacher [default: train one from the seed, cached].")
@click.option("--hidden", type=HIDDEN_INT, default=16, show_default=True)
@click.option("--sweeps", type=POSITIVE_INT, default=None,
              help=f"Most sweeps; stops early when nothing improves [{config.SearchSettings.sweeps}].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to save the result [default: cs-h{H}-s{SEED}.npz].")
@_apply(common)
def cs(source, teacher_path, hidden, sweeps, out, config_path, seed, task_name, data_path, quiet, as_json,
       horizon, warmup, period):
    """Coordinate search over trits (the C program's baseline)."""
    settings = _settings(config_path, **_task_flags(task_name, data_path), cs__sweeps=sweeps)
    task = load_task(settings.task, settings.data or None)
    fs = forecast_settings(task, horizon, warmup, period)
    if source != "teacher":
        ctx = click.get_current_context()
        if teacher_path is not None:
            raise InputError("--teacher is for --from teacher; a student file to refine needs no teacher")
        start = Model.load(source)
        if start.kind != "student":
            raise InputError(f"{source} holds a {start.kind}; --from takes 'teacher' or a student file")
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
                   "student.mask=reference,seed. Without any: the seeds' shaped x distill x width.")
@click.option("--runs", type=POSITIVE_INT, default=None,
              help="Runs of the design (a power of two) [full 2^k up to 5 factors, else the smallest resolution-IV "
                   "fraction].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write results.json, results.csv, timing.json and the models here; each finished training is "
                   "kept in OUT/units at once, and rerunning the same command resumes from them.")
@click.option("--workers", type=POSITIVE_INT, default=2, show_default=True,
              help="Trainings at once (threads); results are identical for any value.")
@scheduler_option
@click.option("--mask", type=click.Choice(list(MASKS)), default=None, help="Shaped-gradient mask [seed].")
@click.option("--teacher-epochs", type=EPOCHS_INT, default=None)
@click.option("--student-epochs", type=EPOCHS_INT, default=None)
@click.option("--no-gradcheck", is_flag=True, help="Skip the finite-difference check (not recommended).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNGs here: effects (bars and half-normal); for the seeds' design also predictions and "
                   "learning curves (needs matplotlib: ternq[plot]).")
@click.option("--response", default="eval_mse", show_default=True, metavar="eval_mse|rollout:K",
              help="What the effects are computed on: log10 of the one-step eval MSE, or of the free-running "
                   "rollout MSE at horizon K (K at most --horizon; sets it when not given).")
@_apply(forecast_options)
@force_option
@task_option
@quiet_option
@json_option
def factorial(seed, seeds, config_path, factors, runs, out_dir, workers, scheduler, mask, teacher_epochs,
              student_epochs, no_gradcheck, plot_dir, force, task_name, data_path, quiet, as_json, response,
              horizon, warmup, period):
    """Run a two-level design of training recipes and report its effects.

    Without --factor: the seeds' 2x2x2 (shaped x distill x width) plus coordinate search.
    """
    if seed is not None and seeds is not None:
        raise InputError("give --seed or --seeds, not both")
    chosen = [seed] if seed is not None else seeds
    settings = _settings(config_path, experiment__seeds=chosen, **_task_flags(task_name, data_path),
                         student__mask=mask, teacher__epochs=teacher_epochs, student__epochs=student_epochs)
    if factors or runs is not None:
        try:
            given = tuple(parse_factor(f) for f in factors) if factors else settings.design.factors
            design = DesignSettings(given, runs, () if factors else settings.design.generators)
            settings = replace(settings, design=design)
            design.validate(settings)
        except SettingsError as exc:
            raise InputError(f"design: {exc}") from None
    task = load_task(settings.task, settings.data or None)  # fail early on a bad task or file
    try:
        summary_response(response)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    fs = forecast_settings(task, horizon, warmup, period, response)
    if plot_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install 'ternq[plot]'") from None
        plot_made = not Path(plot_dir).exists()
        make_out_dir(plot_dir, "effects.png")
    from ..experiment.plans import plan as make_plan

    the_plan = make_plan(settings)
    units = the_plan.units
    if scheduler is None:
        check_fits(memory_needed(the_plan, workers), "this experiment")
    store = None
    if out_dir is not None:
        out_path = make_out_dir(out_dir, "results.json")
        store = Store(out_path / "units", warn)
    with (locked(out_path) if store else nullcontext()), cluster(scheduler) as client, \
            report.progress(not quiet) as p:
        if store is not None:
            claim_out_dir(out_path, settings.to_dict(), force)
            resumable(out_path)
        done = store.scan(units) if store else {}
        if not quiet:
            resume_note(len(done), len(units), store.root if store else "")
        overall = p.add_task("factorial", total=len(units), completed=len(done), loss="-") if p else None
        bars = {}
        worse = []  # trainings that ended far worse than they started
        finished = []

        def on_start(unit: Unit):
            if p is None:
                return None
            total = unit.config.epochs if unit.kind != "cs" else 1
            bars[unit.key] = p.add_task(unit.key, total=total, loss="-")
            tid = bars[unit.key]
            return lambda done, total, loss: p.update(tid, completed=done, total=total, loss=f"{loss:.3e}")

        def on_done(unit, fig, model):
            curve = model.meta.get("curve", {}).get("loss")
            if curve and "train_loss" in fig:
                ratio = worse_than_start(curve[0], fig["train_loss"])
                if ratio is not None:
                    worse.append((unit.key, ratio))
            if store is not None:
                store.save(unit, fig, model)
            if p is not None:
                if unit.key in bars:
                    p.remove_task(bars.pop(unit.key))
                p.advance(overall)
                finished.append(unit.key)
                report.unit_line(len(done) + len(finished), len(units), unit.key, fig)

        try:
            doc, plan, results = run_experiment(settings, workers=workers, client=client,
                                                check_gradients=not no_gradcheck, on_start=on_start,
                                                on_done=on_done, done=done, response=response, forecast=fs)
        except GradientCheckError as exc:
            raise click.ClickException(str(exc)) from None
    if worse:
        key, ratio = max(worse, key=lambda kr: kr[1])
        warn(f"{len(worse)} of {len(units)} trainings ended with a training loss far above their first epoch's "
             f"(worst {key}: {ratio:.1e} times): the learning rate is probably too high")
    if out_dir is not None:
        try:
            save_results(doc, models_of(plan, results), out_dir)
        except OSError as exc:
            raise InputError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None
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
    else:
        tables = report.factorial_tables(doc) if plan.seeds_design else report.design_tables(doc)
        for table in tables:
            if table is not None:
                report.out.print(table)
        for table in report.forecast_tables(doc):
            report.out.print(table)
        t = doc["timing"]
        report.out.print(f"wall time {t['total_s']:.2f} s (gradient check {t['gradcheck_s']:.2f} s, trainings "
                         f"{t['training_s']:.2f} s on {t['workers']} workers)"
                         + (f"; results in {out_dir}" if out_dir else ""))
