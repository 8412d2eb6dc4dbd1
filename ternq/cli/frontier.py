"""``ternq frontier``: held-out error against weight bytes and instructions per step, for every weight format."""

from __future__ import annotations

from pathlib import Path

import click

from .. import config, report
from ..experiment.run import check_device
from ..model import atomic_write_bytes
from ..settings import RunSettings
from . import InputError, cli, resumable
from .options import json_option, option, quiet_option, task_option
from .sweep import force_option, make_out_dir, run_engine, scheduler_option


def _grid_help() -> str:
    from ..frontier import DEFAULT_WIDTHS

    return "; ".join(f"{k} {','.join(map(str, v))}" for k, v in DEFAULT_WIDTHS.items())


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Frontier file: a settings file plus a [frontier] section (see configs/frontier-lorenz.toml) "
                   "[the best recipe (configs/best.toml's student) and the default grid].")
@click.option("--widths", "grid", multiple=True, metavar="FORMAT=W1,W2,...",
              help=f"A format and its widths (repeatable; replaces the file's grid) [{_grid_help()}: each format "
                   "has a width near 270, 480 and 750 weight bytes on lorenz and their ranges overlap].")
@click.option("--seeds", default=None, help="Seeds: a count N (0..N-1) or a range A:B [0:3].")
@click.option("--ptq/--no-ptq", default=None,
              help="Also post-training quantization of each width's equal-budget float into every format, with and "
                   "without the levels-frozen fine-tune [the file's; off].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Results folder: results.json, results.csv, frontier.md, the two plots, and every training in "
                   "OUT/units (rerunning the same command resumes) [frontier-TASK, or the file's name].")
@option(RunSettings, "workers")
@option(RunSettings, "device")
@scheduler_option
@click.option("--no-gradcheck", is_flag=True, help="Skip the finite-difference check (not recommended).")
@force_option
@task_option
@quiet_option
@json_option
def frontier(config_path, grid, seeds, ptq, out_dir, workers, device, scheduler, no_gradcheck, force, task_name,
             data_path, quiet, as_json):
    """Train a grid of weight formats x widths x seeds with one recipe and budget; print and plot the held-out
    error against weight bytes and instructions per step, with the Pareto front and the equal-budget float."""
    from dataclasses import replace

    from ..frontier import load_frontier, parse_grid, run_frontier, save
    from ..report.frontier import frontier_table, markdown, plot_files, save_plots
    from .experiment import _task_flags, command_task, forecast_settings

    try:
        spec = load_frontier(config_path)
        base = config.override(spec.base, **_task_flags(task_name, data_path), run__workers=workers,
                               run__device=device)
        spec = replace(spec, base=base)
        if grid:
            spec = replace(spec, widths=parse_grid(list(grid)))
        if seeds is not None:
            spec = replace(spec, seeds=config.parse_seeds(seeds))
        if ptq is not None:
            spec = replace(spec, ptq=ptq)
        spec.validate()
    except config.ConfigError as exc:
        raise InputError(str(exc)) from None
    forecast_settings(spec.base, command_task(spec.base))  # a bad task or file: one line, before anything
    check_device(spec.base.run.device, [fc.cell.settings for fc in spec.cells()])
    if out_dir is None:
        out_dir = (Path(config_path).stem if config_path is not None
                   else f"frontier-{Path(spec.base.data).stem if spec.base.data else spec.base.task}")
    out = make_out_dir(out_dir, "results.json")
    resumable(out)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:
        plots = False
    n_models = sum(len(w) for w in spec.widths.values()) * (3 if spec.ptq else 1)
    if not quiet:
        report.err.print(f"frontier: {n_models} models x {len(spec.seeds)} seeds and the equal-budget floats into "
                         f"{out}" + ("; checking gradients first" if not no_gradcheck else ""), soft_wrap=True)
    doc, outcome = run_engine(lambda **kw: run_frontier(spec, out, check_gradients=not no_gradcheck, force=force,
                                                         **kw), scheduler, quiet, "frontier", out)
    written = save(doc, out)
    atomic_write_bytes(out / "frontier.md", markdown(doc).encode())
    if plots:
        written += save_plots(doc, out)
    elif not quiet:
        report.err.print(f"plots skipped ({', '.join(str(f) for f in plot_files(out))}): they need matplotlib "
                         "(pip install 'ternq[plot]')", soft_wrap=True)
    if as_json:
        from ..experiment.results import split_timing

        report.print_json(split_timing(doc)[0])
        return
    report.out.print(frontier_table(doc, 80))
    t = doc["timing"]
    where = "on the Dask cluster" if scheduler else f"on {t['workers']} local workers"
    report.out.print(f"trainings {t['training_s']:.2f} s {where} ({outcome.resumed} of {outcome.units} found done), "
                     f"instructions counted in {t['counting_s']:.2f} s; results in {out}", soft_wrap=True)
