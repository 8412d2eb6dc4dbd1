"""Settings files: TOML in ``configs/`` and command-line overrides, read into :mod:`ternq.settings`' sections.

A settings file has the sections ``[experiment]``, ``[teacher]``, ``[student]``,
``[cs]``, ``[run]`` and ``[design]``; every key is optional and defaults to the
reference-sized experiment. Every key is a field of its section's dataclass and
is read by :func:`ternq.settings.coerce`, as flags and ``--factor`` levels are.
An unknown section or key, or a value of the wrong type or out of range, is a
:class:`ConfigError` naming it.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from . import files, settings
from .experiment.plans import SECTIONS, DesignSettings, ExperimentSettings
from .settings import (
    RunSettings,
    SearchSettings,
    SettingsError,
    StudentSettings,
    TeacherSettings,
    coerce,
    spec_of,
)

__all__ = ["ConfigError", "DesignSettings", "ExperimentSettings", "RunSettings", "SearchSettings",
           "StudentSettings", "TeacherSettings", "from_dict", "load", "override", "parse_seeds", "read_toml"]


class ConfigError(ValueError):
    """A settings file or value that cannot be used."""


def parse_seeds(value) -> tuple[int, ...]:
    """:func:`ternq.settings.parse_seeds`, a :class:`ConfigError` on a mistake."""
    try:
        return settings.parse_seeds(value)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def _read(sec: str, block, body: dict):
    """``block`` with the keys of ``body`` (one TOML table) read through their settings."""
    if not isinstance(body, dict):
        raise ConfigError(f"{sec}: expected a table")
    known = {f.name: spec_of(f) for f in fields(block) if spec_of(f) is not None}
    updates = {}
    for key, value in body.items():
        if key not in known:
            raise ConfigError(f"{sec}.{key}: unknown key (known: {', '.join(sorted(known))})")
        try:
            updates[key] = coerce(f"{sec}.{key}", value, known[key])
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
    return replace(block, **updates)


def from_dict(data: dict, base: ExperimentSettings | None = None) -> ExperimentSettings:
    """Settings from a nested dict (as read from TOML), on top of ``base`` (defaults if None)."""
    s = base or ExperimentSettings()
    for sec, body in data.items():
        if sec == "experiment":
            s = _read(sec, s, body)
        elif sec == "design":
            if not isinstance(body, dict):
                raise ConfigError("design: expected a table")
            try:
                s = replace(s, design=DesignSettings.from_dict(body))
            except SettingsError as exc:
                raise ConfigError(f"design.{exc}") from None
        elif sec in SECTIONS:
            s = replace(s, **{sec: _read(sec, getattr(s, sec), body)})
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
