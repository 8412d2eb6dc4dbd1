"""Options and checks shared by several subcommands."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import click

from ..settings import SECTIONS, SettingsError, coerce, default_text, spec_of

POSITIVE_INT = click.IntRange(min=1)


def _bounds():
    from ..settings import MAX_HIDDEN, MAX_SEED

    return click.IntRange(0, MAX_SEED), click.IntRange(1, MAX_HIDDEN)


SEED_INT, HIDDEN_INT = _bounds()  # a seed (0 .. 2^32-1) and a width, in range


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (through links), or would once written."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_writable(path: str | os.PathLike, what: str = "output", reads: str | os.PathLike | None = None) -> Path:
    """Fail early (before any training) if ``path`` cannot be written, or is the input file ``reads``."""
    from . import InputError

    if not str(path).strip():
        raise InputError(f"the {what} path is empty")
    if reads is not None and same_file(path, reads):
        raise InputError(f"refusing to overwrite the input {reads} with the {what}; choose another --out")
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{what} path {path} is a directory")
    if not parent.is_dir():
        raise InputError(f"cannot write {what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {what} {path}: folder {parent} is not writable")
    return path


COLUMNS_KEY = "ternq.columns"


def given_columns():
    """The columns given with --columns on this command line (text, as typed), or None."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(COLUMNS_KEY)


def task_option(f, default: str | None = "sine"):
    """``--task NAME`` and ``--data FILE`` (passed as ``task_name`` and ``data_path``).

    Build the task with :func:`load_task`. ``default=None``: the command finds
    the task itself (a model's own), and --help says so.
    """
    import functools

    from ..tasks import TASK_HELP

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from . import InputError

        data_path = kwargs.get("data_path")
        columns = kwargs.pop("columns", None)
        ctx = click.get_current_context(silent=True)
        if data_path is not None and ctx is not None:
            src = ctx.get_parameter_source("task_name")
            if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP"):
                raise InputError("give --task or --data, not both")
        if columns is not None:
            if data_path is None:
                raise InputError("--columns selects the columns of a --data file: give --data too")
            ctx.meta[COLUMNS_KEY] = columns  # read by load_task and by the settings of the command
        return f(*args, **kwargs)

    wrapper = click.option("--columns", "columns", default=None, metavar="A,B,...",
                           help="The --data file's columns to use, by header name or index from 0 "
                                "(e.g. temp,hum or 1,2) [all].")(wrapper)
    wrapper = click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
                           help="Train and evaluate on a series from a CSV or .npy file (one column per "
                                "channel; predicts the next row). Replaces --task.")(wrapper)
    if default is None:
        return click.option("--task", "task_name", default=None,
                            help=f"Task: {TASK_HELP} [default: the one the model was trained on].")(wrapper)
    return click.option("--task", "task_name", default=default, show_default=True,
                        help=f"Task: {TASK_HELP}.")(wrapper)


def model_task_option(f):
    """:func:`task_option` for commands that read a model: without --task/--data, the model's own task."""
    return task_option(f, default=None)


def load_task(task_name: str | None = "sine", data_path: str | os.PathLike | None = None, **kwargs):
    """Build the task a command was asked for (the file, with ``data_path``); bad names or data end as an
    :class:`InputError` (one line, exit code 2)."""
    from ..tasks import from_file, get_task
    from . import InputError

    try:
        if data_path is not None:
            if given_columns() is not None and "columns" not in kwargs:
                from ..experiment.plans import ExperimentSettings

                field = ExperimentSettings.__dataclass_fields__["columns"]
                try:
                    kwargs["columns"] = list(coerce("columns", given_columns(), spec_of(field)))
                except SettingsError as exc:
                    raise ValueError(str(exc)) from None
            return from_file(data_path, **kwargs)
        return get_task("sine" if task_name is None else task_name, **kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def warn_if_worse(hist, what: str) -> None:
    """One warning line when a training ended far worse than it started (a learning rate too high)."""
    from ..train import worse_than_start

    if len(hist.loss) == 0:  # nothing trained (plain post-training quantization)
        return
    ratio = worse_than_start(float(hist.loss[0]), float(hist.loss[-1]))
    if ratio is not None:
        click.echo(f"Warning: {what} ended with a training loss {ratio:.1e} times its first epoch's: the learning "
                   "rate is probably too high (try a smaller --lr)", err=True)


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress display.")(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")(f)


def option(block: type, name: str, flag: str | None = None, dest: str | None = None):
    """A click option for setting ``name`` of section class ``block``: its flag (or ``flag``), help with the
    default, read through :func:`coerce`; ``None`` when not given (the settings file's value stands). The click
    parameter's ``setting`` attribute names the setting (``section.name``)."""
    f = next(f for f in fields(block) if f.name == name)
    spec = spec_of(f)
    section = next(sec for sec, cls in SECTIONS.items() if cls is block)
    flag = flag or spec.flag or "--" + name.replace("_", "-")
    dest = dest or name
    shown = default_text(f.default)
    help_ = spec.help + (f" [{shown}]" if shown and not spec.help.endswith("]") else "")

    class _Type(click.ParamType):
        name = "|".join(spec.choices) if spec.choices else spec.kind.upper()

        def convert(self, value, param, ctx):
            try:
                return coerce(name, value, spec)
            except SettingsError as exc:
                self.fail(str(exc).split(": ", 1)[1], param, ctx)

    if spec.kind == "bool":
        deco = click.option(flag if "/" in flag else f"{flag}/--no-{flag[2:]}", dest, default=None, help=help_)
    elif spec.kind == "pair":
        def pair(ctx, param, value):
            if value is None:
                return None
            try:
                return coerce(name, value, spec)
            except SettingsError as exc:
                raise click.BadParameter(str(exc).split(": ", 1)[1], ctx, param) from None
        deco = click.option(flag, dest, type=(float, float), default=None, callback=pair, help=help_)
    else:
        metavar = "[" + "|".join(spec.choices) + "]" if spec.choices else None
        deco = click.option(flag, dest, type=_Type(), default=None, metavar=metavar, help=help_)

    def apply(fn):
        fn = deco(fn)
        fn.__click_params__[-1].setting = f"{section}.{name}"
        return fn
    return apply
