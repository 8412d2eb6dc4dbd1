"""The ``ternq`` command line: a thin layer over the Python API.

Every failure a user can cause ends in one line on stderr and a non-zero exit
(2 for bad input), never a traceback. Subcommands live in sibling modules and
register themselves on :data:`cli`.
"""

from __future__ import annotations

import os
import sys

import click

from ..experiment.store import StoreWriteError
from ..memory import MemoryShortError
from ..model import ModelFileError
from ..train import DivergedError, SettingsError

_resumable: list[str] = []  # the output folder of a run that keeps its finished trainings, once it has one


def resumable(folder) -> None:
    """Mark this run as one that keeps every finished training in ``folder``: an interruption says it resumes."""
    _resumable.append(str(folder))


def _interrupted() -> str:
    if _resumable:
        return f"Interrupted: rerunning the same command resumes from the finished trainings in {_resumable[-1]}"
    return "Interrupted"


class InputError(click.ClickException):
    """Bad input from the user: one line, exit code 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ternq")
def cli() -> None:
    """Train ternary-weight CfC recurrent networks and run the factorial experiment."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning every expected failure into one line."""
    _resumable.clear()  # a fresh run (tests call main several times in one process)
    try:
        rv = cli.main(args=argv, prog_name="ternq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(_interrupted(), err=True)
        sys.exit(130)
    except click.UsageError as exc:  # includes BadParameter, NoSuchOption
        path = exc.ctx.command_path if exc.ctx else ""
        hint = f" (see '{path} --help')" if " " in path else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (ModelFileError, MemoryShortError, SettingsError, StoreWriteError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except DivergedError as exc:
        click.echo(f"Error: {exc}; try a smaller --lr", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(_interrupted(), err=True)
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("TERNQ_DEBUG"):
            raise
        click.echo(f"Internal error: {exc.__class__.__name__}: {exc} (set TERNQ_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


def console() -> None:
    """The ``ternq`` program: :func:`main`, then, in a process that used the GPU, an exit that skips the
    interpreter's teardown once the output is flushed. Tearing down numba-cuda's context and modules took
    0.46-0.67 s of a GPU command's wall on an H100, after every file was written and closed."""
    from .. import gpu

    try:
        main()
    except SystemExit as exc:
        if not gpu.used():
            raise
        code = exc.code
        for stream in (sys.stdout, sys.stderr):
            try:
                if isinstance(code, str) and stream is sys.stderr:
                    print(code, file=stream)
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
                pass
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)


from . import deploy  # noqa: E402,F401,I001  (ternq export, ternq predict)
from . import core, experiment, sweep  # noqa: E402,F401  (registers the subcommands)
from . import bench  # noqa: E402,F401,I001  (ternq bench)
from . import frontier  # noqa: E402,F401,I001  (ternq frontier)
