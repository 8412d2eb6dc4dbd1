"""Experiment settings: defaults, TOML files in ``configs/``, and command-line overrides.

A settings file has the sections ``[experiment]``, ``[teacher]``, ``[student]``,
``[cs]`` and ``[design]``; every key is optional and defaults to the
reference-sized experiment. Each section is a dataclass defined, with its
``validate`` method, in the module it configures (:mod:`ternq.train`,
:mod:`ternq.search`, :mod:`ternq.experiment.plans`); this module only reads
TOML into them, by their fields. An unknown section or key, or a value of the
wrong type, is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from . import files
from .experiment.plans import MAX_SEED, MAX_SEEDS, SECTIONS, DesignSettings, ExperimentSettings
from .search import SearchSettings
from .train import SettingsError, StudentSettings, TeacherSettings

__all__ = ["ConfigError", "DesignSettings", "ExperimentSettings", "SearchSettings", "StudentSettings",
           "TeacherSettings", "from_dict", "load", "override", "parse_seeds"]


class ConfigError(ValueError):
    """A settings file or value that cannot be used."""


EXPERIMENT_KEYS = [f.name for f in fields(ExperimentSettings) if f.name not in SECTIONS]


def parse_seeds(value) -> tuple[int, ...]:
    """Seeds from an int (that many seeds from 0), a list, or a range string ``'A:B'`` (B excluded).

    >>> parse_seeds("0:3"), parse_seeds(2), parse_seeds([4, 7])
    ((0, 1, 2), (0, 1), (4, 7))
    """
    if isinstance(value, bool):
        raise ConfigError("seeds: expected a count, a list of integers or a range 'A:B'")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"seeds: a count must be positive, not {value}")
        if value > MAX_SEEDS:
            raise ConfigError(f"seeds: {value:,} seeds is more than the most allowed, {MAX_SEEDS:,}")
        return tuple(range(value))
    if isinstance(value, str):
        text = value.strip()
        if ":" in text:
            a, _, b = text.partition(":")
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise ConfigError(f"seeds: {value!r} is not a range 'A:B' of integers") from None
            if hi <= lo:
                raise ConfigError(f"seeds: range {value!r} is empty")
            if lo < 0 or hi - 1 > MAX_SEED:
                raise ConfigError(f"seeds: seeds are integers from 0 to {MAX_SEED}, not the range {value!r}")
            if hi - lo > MAX_SEEDS:
                raise ConfigError(f"seeds: {hi - lo:,} seeds is more than the most allowed, {MAX_SEEDS:,}")
            return tuple(range(lo, hi))
        try:
            count = int(text)
        except ValueError:
            raise ConfigError(f"seeds: {value!r} is not a count or a range 'A:B'") from None
        return parse_seeds(count)
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in value):
        if len(set(value)) != len(value):
            raise ConfigError("seeds: the list repeats a seed")
        bad = [x for x in value if not 0 <= x <= MAX_SEED]
        if bad:
            raise ConfigError(f"seeds: seeds are integers from 0 to {MAX_SEED}, not {bad[0]}")
        if len(value) > MAX_SEEDS:
            raise ConfigError(f"seeds: {len(value):,} seeds is more than the most allowed, {MAX_SEEDS:,}")
        return tuple(value)
    raise ConfigError("seeds: expected a count, a list of integers or a range 'A:B'")


def coerce(name: str, value, default):
    """``value`` in the type of ``default`` (bool, int, float, str, or a tuple of numbers); a
    :class:`ConfigError` naming ``name`` otherwise."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = (isinstance(value, (list, tuple)) and len(value) == len(default)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        value = tuple(float(v) for v in value) if ok else value
    else:  # pragma: no cover
        ok = True
    if not ok:
        want = type(default).__name__ if not isinstance(default, tuple) else f"a list of {len(default)} numbers"
        raise ConfigError(f"{name}: expected {want}, got {value!r}")
    return value


def _experiment(s: ExperimentSettings, body) -> ExperimentSettings:
    if not isinstance(body, dict):
        raise ConfigError("experiment: expected a table")
    for key, value in body.items():
        if key not in EXPERIMENT_KEYS:
            raise ConfigError(f"experiment.{key}: unknown key (known: {', '.join(sorted(EXPERIMENT_KEYS))})")
        if key == "seeds":
            s = replace(s, seeds=parse_seeds(value))
        elif key == "widths":
            if not (isinstance(value, (list, tuple)) and all(isinstance(w, int) and not isinstance(w, bool)
                                                             for w in value)):
                raise ConfigError(f"experiment.widths: expected a list of two integers, got {value!r}")
            if len(value) != 2:
                raise ConfigError(f"experiment.widths: expected a list of two integers, got {list(value)!r}")
            s = replace(s, widths=tuple(value))
        else:
            s = replace(s, **{key: coerce(f"experiment.{key}", value, getattr(s, key))})
    return s


def _section(s: ExperimentSettings, sec: str, body) -> ExperimentSettings:
    if not isinstance(body, dict):
        raise ConfigError(f"{sec}: expected a table")
    sub = getattr(s, sec)
    if sec == "design":
        try:
            return replace(s, design=DesignSettings.from_dict(body))
        except SettingsError as exc:
            raise ConfigError(f"design.{exc}") from None
    known = {f.name for f in fields(sub)}
    updates = {}
    for key, value in body.items():
        if key not in known:
            raise ConfigError(f"{sec}.{key}: unknown key (known: {', '.join(sorted(known))})")
        updates[key] = coerce(f"{sec}.{key}", value, getattr(sub, key))
    return replace(s, **{sec: replace(sub, **updates)})


def from_dict(data: dict, base: ExperimentSettings | None = None) -> ExperimentSettings:
    """Settings from a nested dict (as read from TOML), on top of ``base`` (defaults if None)."""
    s = base or ExperimentSettings()
    for sec, body in data.items():
        if sec == "experiment":
            s = _experiment(s, body)
        elif sec in SECTIONS:
            s = _section(s, sec, body)
        else:
            raise ConfigError(f"{sec}: unknown section (known: experiment, {', '.join(SECTIONS)})")
    _validate(s)
    return s


def _validate(s: ExperimentSettings) -> None:
    try:
        s.validate()
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict; :class:`ConfigError` (one line) when it is missing, unreadable, too big,
    too deeply nested or not TOML (the checks are :func:`ternq.files.read_toml`'s)."""
    try:
        return files.read_toml(path, what=what)
    except files.FileInputError as exc:
        raise ConfigError(str(exc)) from None


def load(path: str | Path | None) -> ExperimentSettings:
    """Settings from a TOML file (defaults when ``path`` is None)."""
    if path is None:
        s = ExperimentSettings()
        _validate(s)
        return s
    return from_dict(read_toml(path))


def override(s: ExperimentSettings, **changes) -> ExperimentSettings:
    """Apply command-line overrides given as ``section__key=value`` (None means not given)."""
    nested: dict = {}
    for name, value in changes.items():
        if value is None:
            continue
        sec, _, key = name.partition("__")
        nested.setdefault(sec, {})[key] = value
    return from_dict(nested, s)
