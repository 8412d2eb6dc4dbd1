"""Experiment settings: defaults, TOML files in ``configs/``, and command-line overrides.

A settings file has the sections ``[experiment]``, ``[teacher]``, ``[student]``
and ``[cs]``; every key is optional and defaults to the reference-sized
experiment. An unknown section or key, or a value of the wrong type, is a
:class:`ConfigError` naming it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


from .train import StudentSettings, TeacherSettings


class ConfigError(ValueError):
    """A settings file or value that cannot be used."""


@dataclass(frozen=True)
class SearchSettings:
    sweeps: int = 5
    sequences: int = 4  # search set: fixed training-distribution sequences
    steps: int = 50


@dataclass(frozen=True)
class ExperimentSettings:
    seeds: tuple[int, ...] = (0,)
    widths: tuple[int, int] = (16, 32)
    task: str = "sine"
    data: str = ""  # a CSV or .npy series (replaces task when set)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    student: StudentSettings = field(default_factory=StudentSettings)
    cs: SearchSettings = field(default_factory=SearchSettings)

    def to_dict(self) -> dict:
        d = asdict(self)
        for sec in ("student",):
            for k in ("beta", "alpha"):
                d[sec][k] = list(d[sec][k])
        d["seeds"] = list(self.seeds)
        d["widths"] = list(self.widths)
        return d


SECTIONS = {"teacher": TeacherSettings, "student": StudentSettings, "cs": SearchSettings}
EXPERIMENT_KEYS = {"seeds", "widths", "task", "data"}


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
            return tuple(range(lo, hi))
        try:
            return parse_seeds(int(text))
        except ValueError:
            raise ConfigError(f"seeds: {value!r} is not a count or a range 'A:B'") from None
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in value):
        if len(set(value)) != len(value):
            raise ConfigError("seeds: the list repeats a seed")
        return tuple(value)
    raise ConfigError("seeds: expected a count, a list of integers or a range 'A:B'")


def _coerce(section: str, key: str, value, default):
    """Check ``value`` against the type of ``default``; return it in that type."""
    name = f"{section}.{key}"
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


def _check(s: ExperimentSettings) -> ExperimentSettings:
    for sec in ("teacher", "student"):
        c = getattr(s, sec)
        for k in ("epochs", "batch"):
            if getattr(c, k) <= 0:
                raise ConfigError(f"{sec}.{k}: must be positive, not {getattr(c, k)}")
        if not (math.isfinite(c.lr) and c.lr > 0):
            raise ConfigError(f"{sec}.lr: must be a finite positive number, not {c.lr}")
        if not (math.isfinite(c.lr_min) and 0 <= c.lr_min <= c.lr):
            raise ConfigError(f"{sec}.lr_min: must lie in [0, lr], not {c.lr_min}")
        if c.schedule not in ("constant", "cosine"):
            raise ConfigError(f"{sec}.schedule: 'constant' or 'cosine', not {c.schedule!r}")
        if not (math.isfinite(c.clip) and c.clip > 0):
            raise ConfigError(f"{sec}.clip: must be a finite positive number, not {c.clip}")
    st = s.student
    if st.mask not in ("seed", "reference"):
        raise ConfigError(f"student.mask: 'seed' or 'reference', not {st.mask!r}")
    if not all(0.0 <= a < 1.0 for a in st.alpha):
        raise ConfigError(f"student.alpha: values must lie in [0, 1), not {list(st.alpha)}")
    if not all(math.isfinite(b) and b > 0 for b in st.beta):
        raise ConfigError(f"student.beta: values must be finite and positive, not {list(st.beta)}")
    for k in ("sweeps", "sequences", "steps"):
        if getattr(s.cs, k) <= 0:
            raise ConfigError(f"cs.{k}: must be positive, not {getattr(s.cs, k)}")
    if len(s.widths) != 2 or s.widths[0] == s.widths[1] or min(s.widths) <= 0:
        raise ConfigError(f"experiment.widths: two different positive widths, not {list(s.widths)}")
    return s


def from_dict(data: dict, base: ExperimentSettings | None = None) -> ExperimentSettings:
    """Settings from a nested dict (as read from TOML), on top of ``base`` (defaults if None)."""
    s = base or ExperimentSettings()
    for sec, body in data.items():
        if sec == "experiment":
            if not isinstance(body, dict):
                raise ConfigError("experiment: expected a table")
            for key, value in body.items():
                if key not in EXPERIMENT_KEYS:
                    raise ConfigError(f"experiment.{key}: unknown key (known: {', '.join(sorted(EXPERIMENT_KEYS))})")
                if key == "seeds":
                    s = replace(s, seeds=parse_seeds(value))
                elif key == "widths":
                    if not (isinstance(value, list) and all(isinstance(w, int) and not isinstance(w, bool)
                                                            for w in value)):
                        raise ConfigError(f"experiment.widths: expected a list of two integers, got {value!r}")
                    s = replace(s, widths=tuple(value))
                else:
                    s = replace(s, **{key: _coerce("experiment", key, value, getattr(s, key))})
        elif sec in SECTIONS:
            if not isinstance(body, dict):
                raise ConfigError(f"{sec}: expected a table")
            sub = getattr(s, sec)
            known = {f.name for f in fields(sub)}
            updates = {}
            for key, value in body.items():
                if key not in known:
                    raise ConfigError(f"{sec}.{key}: unknown key (known: {', '.join(sorted(known))})")
                updates[key] = _coerce(sec, key, value, getattr(sub, key))
            s = replace(s, **{sec: replace(sub, **updates)})
        else:
            raise ConfigError(f"{sec}: unknown section (known: experiment, {', '.join(SECTIONS)})")
    return _check(s)


def load(path: str | Path | None) -> ExperimentSettings:
    """Settings from a TOML file (defaults when ``path`` is None)."""
    if path is None:
        return _check(ExperimentSettings())
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return from_dict(data)


def override(s: ExperimentSettings, **changes) -> ExperimentSettings:
    """Apply command-line overrides given as ``section__key=value`` (None means not given)."""
    nested: dict = {}
    for name, value in changes.items():
        if value is None:
            continue
        sec, _, key = name.partition("__")
        nested.setdefault(sec, {})[key] = value
    return from_dict(nested, s)
