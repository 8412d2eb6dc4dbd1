"""Options and checks shared by several subcommands."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click


class PositiveFloat(click.ParamType):
    """A finite number > 0 (rejects nan, inf, 0 and negatives with a clear message)."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x) or x <= 0:
            self.fail(f"{value!r} must be a finite number greater than 0", param, ctx)
        return x


POSITIVE_FLOAT = PositiveFloat()
POSITIVE_INT = click.IntRange(min=1)


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early (before any training) if ``path`` cannot be written."""
    from . import InputError

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{what} path {path} is a directory")
    if not parent.is_dir():
        raise InputError(f"cannot write {what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {what} {path}: folder {parent} is not writable")
    return path


def task_option(f):
    """``--task NAME`` (passed as ``task_name``); tasks are built with :func:`load_task`."""
    return click.option("--task", "task_name", default="sine", show_default=True,
                        help="Task: sine.")(f)


def load_task(task_name: str, **kwargs):
    """Build the task a command was asked for; bad names or data end as an InputError."""
    from ..tasks import get_task
    from . import InputError

    try:
        return get_task(task_name, **kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress display.")(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")(f)
