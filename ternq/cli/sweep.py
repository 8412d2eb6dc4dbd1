"""``ternq sweep``, and the Dask and progress plumbing it shares with ``ternq factorial``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from .. import config, report, settings
from ..experiment.execute import CONNECT_TIMEOUT, WORKERS_TIMEOUT
from ..experiment.run import GradientCheckError, check_device
from . import InputError, cli, resumable
from .options import check_writable, json_option, option, quiet_option

scheduler_option = click.option(
    "--scheduler", default=None, metavar="ADDRESS",
    help=f"Run the trainings on the Dask cluster at ADDRESS (tcp://host:8786) [default: local threads]. Gives up "
         f"if the scheduler does not answer within {CONNECT_TIMEOUT:g} s or no worker joins within "
         f"{WORKERS_TIMEOUT:g} s.")


def warn(message: str) -> None:
    """One line on stderr (a unit file that cannot be used, and such)."""
    click.echo(f"Warning: {message}", err=True)


def _silence_dask() -> None:
    """Mute Dask's loggers: a lost cluster is told in one line by :func:`cluster`, not in pages of tracebacks."""
    import logging

    try:
        import distributed  # noqa: F401 - its import sets its loggers' levels; override them afterwards
    except ImportError:
        return
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


@contextmanager
def cluster(address: str | None):
    """A Dask client on ``address`` (None: no cluster), closed on the way out; failures end as one line."""
    if address is None:
        yield None
        return
    from ..experiment.execute import ClusterError, connect

    _silence_dask()
    try:
        client = connect(address)
    except ClusterError as exc:
        raise InputError(str(exc)) from None
    try:
        yield client
    except Exception as exc:
        if type(exc).__name__ == "KilledWorker":  # distributed.KilledWorker: the unit kills its workers
            raise click.ClickException(f"Dask workers died repeatedly running {' '.join(str(exc).split())}; "
                                       "finished units are saved: rerun the same command to resume") from None
        if type(exc).__name__ in ("CommClosedError", "FutureCancelledError") or isinstance(exc, OSError):
            why = " ".join(str(exc).split())  # Dask's messages run over several lines
            raise click.ClickException(f"lost the Dask cluster ({exc.__class__.__name__}: {why}); finished units "
                                       "are saved: rerun the same command to resume") from None
        raise
    finally:
        client.close()


def make_out_dir(out_dir: str, what: str) -> Path:
    if not str(out_dir).strip():
        raise InputError("the output folder's name is empty")
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    check_writable(path / what, "results")
    return path


force_option = click.option("--force", is_flag=True,
                            help="Write into an --out folder that holds results of other settings (they are replaced).")


def follow(p, quiet: bool, title: str, where) -> dict:
    """Progress callbacks for :func:`ternq.experiment.run.run`: an overall bar, a bar per running training and,
    off a terminal, a line per finished unit."""
    state = {"overall": None, "resumed": 0, "total": 0, "finished": 0}
    bars = {}

    def on_resume(done: int, total: int) -> None:
        state.update(resumed=done, total=total)
        if done and not quiet:
            report.err.print(f"resuming: {done} of {total} units already done in {where}")
        if p is not None:
            state["overall"] = p.add_task(title, total=total, completed=done, loss="-")

    def on_start(unit):
        if p is None:
            return None
        tid = bars[unit.key] = p.add_task(unit.key, total=unit.config.epochs if unit.kind != "cs" else 1, loss="-")
        return lambda done, total, loss: p.update(tid, completed=done, total=total, loss=f"{loss:.3e}")

    seen = set()

    def on_done(unit, fig: dict) -> None:
        if p is None:
            return
        if unit.key in bars:
            p.remove_task(bars.pop(unit.key))
        if unit.digest in seen:  # the same training listed by several cells: counted once, as the total counts it
            return
        seen.add(unit.digest)
        p.advance(state["overall"])
        state["finished"] += 1
        report.unit_line(state["resumed"] + state["finished"], state["total"], unit.key, fig)

    return {"on_resume": on_resume, "on_start": on_start, "on_done": on_done}


def run_engine(call, scheduler: str | None, quiet: bool, title: str, out: Path):
    """``call(client=..., warn=..., **progress)`` on the Dask cluster or locally, with the progress display;
    the engine's failures as one line; then the warning about trainings that ended worse than they began."""
    with cluster(scheduler) as client, report.progress(not quiet) as p:
        try:
            doc, outcome = call(client=client, warn=warn, **follow(p, quiet, title, out / "units"))
        except GradientCheckError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if client is not None:
                raise
            raise InputError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    warn_worse(outcome.worse, outcome.units)
    return doc, outcome


def warn_worse(worse: list, total: int) -> None:
    """One warning line for the trainings that ended far worse than they started."""
    if worse:
        key, ratio = max(worse, key=lambda kr: kr[1])
        warn(f"{len(worse)} of {total} trainings ended with a training loss far above their first epoch's "
             f"(worst {key}: {ratio:.1e} times): the learning rate is probably too high")


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Sweep file: a settings file plus a [sweep] section (see configs/sweep-quick.toml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Results folder; rerunning into it resumes [default: the sweep file's name, in the current folder].")
@click.option("--seeds", default=None, help="Replace the file's seeds: a count N (0..N-1) or a range A:B.")
@scheduler_option
@option(settings.RunSettings, "workers")
@option(settings.RunSettings, "device")
@click.option("--no-gradcheck", is_flag=True, help="Skip the finite-difference check (not recommended).")
@force_option
@quiet_option
@json_option
def sweep(config_path, out_dir, seeds, scheduler, workers, device, no_gradcheck, force, quiet, as_json):
    """Run a grid of factorials (seeds x tasks x widths x configurations), resumable, locally or on Dask."""
    from ..sweep import load_sweep, run_sweep

    try:
        spec = load_sweep(config_path)
        if seeds is not None:
            spec = spec.with_seeds(config.parse_seeds(seeds))
        cells = spec.cells()
    except config.ConfigError as exc:
        raise InputError(str(exc)) from None
    check_device(device or spec.base.run.device, [c.settings for c in cells])
    out = make_out_dir(Path(config_path).stem if out_dir is None else out_dir, "sweep.json")
    resumable(out)
    if not quiet:  # the gradient checks of many cells take a while before any training starts
        report.err.print(f"sweep: {len(cells)} cells into {out}" + ("; checking gradients first" if not no_gradcheck
                                                                    else ""), soft_wrap=True)
    doc, outcome = run_engine(lambda **kw: run_sweep(spec, out, workers=workers, device=device,
                                                      check_gradients=not no_gradcheck, force=force, **kw),
                              scheduler, quiet, "sweep", out)
    if as_json:
        from ..experiment.results import split_timing

        report.print_json(split_timing(doc)[0])
        return
    for table in sweep_tables(doc):
        report.out.print(table)
    t = doc["timing"]
    where = "on the Dask cluster" if scheduler else f"on {t['workers']} local workers"
    report.out.print(f"wall time {t['total_s']:.2f} s (gradient check {t['gradcheck_s']:.2f} s, trainings "
                     f"{t['training_s']:.2f} s {where}); results in {out}")


def _effect_cell(e: dict) -> str:
    """An effect with its interval when there are several seeds: '+0.08 [-0.11, +0.26]'."""
    if e.get("n", 1) > 1 and e.get("lo") is not None and e.get("hi") is not None and not (
            e["lo"] != e["lo"] or e["hi"] != e["hi"]):  # NaN-safe
        return f"{e['mean']:+.2f} [{e['lo']:+.2f}, {e['hi']:+.2f}]"
    return f"{e['mean']:+.3f}"


def _checks_cell(c: dict) -> str:
    """What the notes' checklist says for a cell: how many passed, and which failed (or stayed undecided)."""
    checks = c.get("checks")
    if checks is None:  # a sweep.json from before the checks were kept
        return "[green]ok[/]" if c["checklist_ok"] else "[red]failed: see results.json[/]"
    head = f"{checks['passed']}/{checks['of']} passed"
    if checks["failed"]:
        return f"[red]{head}; failed: {'; '.join(checks['failed'])}[/]"
    if checks["undecided"]:
        return f"[yellow]{head}; undecided: {'; '.join(checks['undecided'])}[/]"
    return f"[green]{head}[/]"


def sweep_table(doc: dict):
    """The whole sweep in one table (a wide terminal or a pipe)."""
    return _sweep_table(doc, ("mse", "effects"))


def sweep_tables(doc: dict, width: int | None = None) -> list:
    """:func:`sweep_table` when it fits in ``width`` columns (the console's by default), else its errors and its
    effects in two tables."""
    wide = sweep_table(doc)
    if report.fits(wide, width):
        return [wide]
    return [_sweep_table(doc, ("mse",)), _sweep_table(doc, ("effects",))]


def _sweep_table(doc: dict, parts: tuple[str, ...]):
    from rich.table import Table

    n = len(doc["seeds"])
    what = {"mse": "eval MSE (geometric mean over seeds)",
            "effects": "effects on log10(eval MSE)" + (" [95% CI]" if n > 1 else "")}
    t = Table(title=f"Sweep: {len(doc['cells'])} cells x {n} seeds; " + " and ".join(what[k] for k in parts))
    cols = ["Cell"]
    if "mse" in parts:
        cols += ["Config 1", "Best config", "Best eval MSE", "PTQ+CS"] if "effects" in parts else [
            "Config 1", "Best", "Best MSE", "PTQ+CS"]
    if "effects" in parts:
        cols += ["A shaped", "B distill", "C width"]
    cols += ["Checks"] if "mse" in parts else []
    for col in cols:
        t.add_column(col, justify="left" if col in ("Cell", "Checks") else "right", no_wrap=col != "Checks",
                     min_width=16 if col == "Checks" and len(parts) > 1 else None)
    for c in doc["cells"]:
        best = min(c["eval_mse"], key=lambda k: c["eval_mse"][k]["geo_mean"])
        row = [c["name"]]
        if "mse" in parts:
            row += [report.fmt(c["eval_mse"]["1"]["geo_mean"]), best, report.fmt(c["eval_mse"][best]["geo_mean"]),
                    report.fmt(c["cs_eval_mse"]["teacher"]["geo_mean"])]
        if "effects" in parts:
            cells = [_effect_cell(c["effects"][k]) for k in ("A", "B", "C")]
            row += cells if "mse" in parts else [x.replace(" [", "\n[") for x in cells]  # alone: interval below
        t.add_row(*row, *([_checks_cell(c)] if "mse" in parts else []))
    if "mse" in parts:
        t.caption = ("Each cell's folder holds its full factorial: results.json, results.csv, models/ (every unit: "
                     "units/).")
    return t
