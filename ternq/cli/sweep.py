"""``ternq sweep``, and the Dask and resume plumbing it shares with ``ternq factorial``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from .. import config, report
from ..experiment.execute import CONNECT_TIMEOUT, WORKERS_TIMEOUT
from ..experiment.plans import plan
from ..experiment.run import GradientCheckError, memory_needed
from ..experiment.store import FolderLock, StoreLockedError
from ..memory import check_fits
from . import InputError, cli, resumable
from .options import POSITIVE_INT, check_writable, json_option, quiet_option

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


@contextmanager
def locked(folder: Path):
    """Hold the output folder for the whole run (two runs must not write the same unit files)."""
    try:
        with FolderLock(folder):
            yield
    except StoreLockedError as exc:
        raise InputError(str(exc)) from None


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


SETTINGS_MARK = ".ternq-settings.json"  # what an output folder was made with (results.json says it too, at the end)

force_option = click.option("--force", is_flag=True,
                            help="Write into an --out folder that holds results of other settings (they are replaced).")


def _difference(there, here, path="") -> str:
    """The first setting that differs, as 'key: A there, B here'."""
    if isinstance(there, dict) and isinstance(here, dict):
        for k in list(there) + [k for k in here if k not in there]:
            if there.get(k) != here.get(k):
                return _difference(there.get(k), here.get(k), f"{path}.{k}" if path else str(k))
    return f"{path or 'settings'}: {there!r} there, {here!r} here"


def claim_out_dir(folder: Path, settings, force: bool) -> None:
    """Refuse ``folder`` if an earlier run wrote it with other settings (unless ``force``); then mark it with these.

    Call with the folder locked. ``settings`` is JSON-ready (what results.json records).
    """
    import json

    from ..jsonsafe import clean
    from ..report.files import write_json

    here = json.loads(json.dumps(clean(settings)))
    mark, results = folder / SETTINGS_MARK, folder / "results.json"
    there = None
    try:
        if mark.is_file():
            there = json.loads(mark.read_text())
        elif results.is_file():
            there = json.loads(results.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        there = None  # unreadable: nothing to compare with
    if there is not None and there != here and not force:
        raise InputError(f"{folder} holds results of other settings ({_difference(there, here)}); "
                         "use another --out, or --force to replace them")
    try:
        write_json(mark, here)
    except OSError as exc:
        raise InputError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def resume_note(done: int, total: int, where) -> None:
    if done:
        report.err.print(f"resuming: {done} of {total} units already done in {where}")


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Sweep file: a settings file plus a [sweep] section (see configs/sweep-quick.toml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Results folder; rerunning into it resumes [default: the sweep file's name, in the current folder].")
@click.option("--seeds", default=None, help="Replace the file's seeds: a count N (0..N-1) or a range A:B.")
@scheduler_option
@click.option("--workers", type=POSITIVE_INT, default=2, show_default=True,
              help="Local trainings at once (threads), without --scheduler; results are identical for any value.")
@click.option("--no-gradcheck", is_flag=True, help="Skip the finite-difference check (not recommended).")
@force_option
@quiet_option
@json_option
def sweep(config_path, out_dir, seeds, scheduler, workers, no_gradcheck, force, quiet, as_json):
    """Run a grid of factorials (seeds x tasks x widths x configurations), resumable, locally or on Dask."""
    from ..sweep import load_sweep, run_sweep

    try:
        spec = load_sweep(config_path)
        if seeds is not None:
            spec = spec.with_seeds(config.parse_seeds(seeds))
        cells = spec.cells()
    except config.ConfigError as exc:
        raise InputError(str(exc)) from None
    out = make_out_dir(Path(config_path).stem if out_dir is None else out_dir, "sweep.json")
    plans = [plan(c.settings) for c in cells]
    total = len({u.digest for p in plans for u in p.units})
    if scheduler is None:
        check_fits(max(memory_needed(p, workers) for p in plans), "this sweep")
    with locked(out), cluster(scheduler) as client, report.progress(not quiet) as p:
        claim_out_dir(out, [{"cell": c.name, "settings": c.settings.to_dict()} for c in cells], force)
        resumable(out)
        if not quiet:  # the gradient checks of many cells take a while before any training starts
            report.err.print(f"sweep: {len(cells)} cells, {total} trainings, into {out}"
                             + ("; checking gradients first" if not no_gradcheck else ""), soft_wrap=True)
        bar = p.add_task(f"sweep: {len(cells)} cells", total=total, loss="-") if p else None

        finished, resumed = [], [0]

        def on_resume(done, total):
            resumed[0] = done
            if not quiet:
                resume_note(done, total, out)
            if p is not None:
                p.advance(bar, done)

        def on_done(unit):
            if p is not None:
                p.advance(bar)
                finished.append(unit.key)
                report.unit_line(resumed[0] + len(finished), total, unit.key, {})

        try:
            doc = run_sweep(spec, out, client=client, workers=workers, check_gradients=not no_gradcheck,
                            warn=warn, on_done=on_done, on_resume=on_resume)
        except GradientCheckError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if client is not None:
                raise
            raise InputError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    if as_json:
        from ..report.files import split_timing

        report.print_json(split_timing(doc)[0])
        return
    for table in sweep_tables(doc):
        report.out.print(table)
    t = doc["timing"]
    where = "on the Dask cluster" if client is not None else f"on {workers} local workers"
    report.out.print(f"wall time {t['total_s']:.2f} s (gradient check {t['gradcheck_s']:.2f} s, trainings "
                     f"{t['training_s']:.2f} s {where}); results in {out}")


def _effect_cell(e: dict) -> str:
    """An effect with its interval when there are several seeds: '+0.08 [-0.11, +0.26]'."""
    if e.get("n", 1) > 1 and e.get("lo") is not None and e.get("hi") is not None and not (
            e["lo"] != e["lo"] or e["hi"] != e["hi"]):  # NaN-safe
        return f"{e['mean']:+.2f} [{e['lo']:+.2f}, {e['hi']:+.2f}]"
    return f"{e['mean']:+.3f}"


def _checks_cell(c: dict) -> str:
    """What the seeds' checklist says for a cell: how many passed, and which failed (or stayed undecided)."""
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
        t.caption = "Each cell's folder holds its full factorial: results.json, results.csv, models/, units/."
    return t
