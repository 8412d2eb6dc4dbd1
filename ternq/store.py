"""Finished units on disk, one file each, so a killed run resumes where it stopped.

A unit file ``units/<key>.npz`` (the key's ``/`` written as ``-``) is a model
file that :meth:`ternq.model.Model.load` reads, plus a ``unit`` entry: JSON with
the unit's key, its figures and the *digest* of everything the unit's result
depends on (the settings it reads, its dependencies' digests, the task and the
versions of the packages the numbers depend on). Files are written through a
temporary name and a rename, so a kill leaves either the whole file or none.

On resume, a file that cannot be read, belongs to another unit or to no unit,
or carries another digest (written under different settings) is reported in
one line and its unit is run again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import ExperimentSettings
from .factorial import Unit, make_task
from .jsonsafe import dumps
from .model import FORMAT_VERSION, Model, ModelFileError, atomic_write_bytes

UNIT_FORMAT = "ternq-unit"
UNIT_VERSION = 1

REPORT_MAX = 3  # unusable files reported one by one; the rest in one line
Warn = Callable[[str], None]


def stderr_warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


@lru_cache(maxsize=1)
def _code_versions() -> dict[str, str]:
    from .factorial import versions

    return {k: v for k, v in versions().items() if k in ("ternq", "ternq code", "numpy", "numba", "llvmlite")}


@lru_cache(maxsize=65536)
def unit_digest(unit: Unit, settings: ExperimentSettings) -> str:
    """Hash of what ``unit``'s result depends on: equal digests, bit-identical results.

    Only the settings the unit reads enter (a teacher ignores the student
    settings, and no unit depends on the list of seeds), so a run with more
    seeds, or another sweep cell sharing a teacher, reuses the same files.
    """
    body: dict = {"format": UNIT_FORMAT, "version": UNIT_VERSION, "unit": asdict(unit), "key": unit.key,
                  "task": make_task(settings).describe(), "data": getattr(settings, "data", ""),
                  "code": _code_versions()}
    if unit.kind == "teacher":
        body["teacher"] = asdict(settings.teacher)
    elif unit.kind == "student":
        body["student"] = asdict(settings.student)
        body["wide"] = unit.hidden == settings.widths[1]  # enters the figures' config number
    else:
        body["cs"] = asdict(settings.cs)
    body["deps"] = [unit_digest(d, settings) for d in unit.deps()]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def encode(unit: Unit, digest: str, fig: dict, model: Model) -> bytes:
    """The bytes of a unit file."""
    header = {"format": "ternq-model", "version": FORMAT_VERSION, "kind": model.kind, "n_in": model.n_in,
              "hidden": model.hidden, "n_out": model.n_out, "meta": model.meta}
    record = {"format": UNIT_FORMAT, "version": UNIT_VERSION, "key": unit.key, "digest": digest, "figures": fig}
    buf = io.BytesIO()
    np.savez(buf, theta=np.ascontiguousarray(model.theta, np.float32),
             header=np.array(dumps(header)),
             unit=np.array(dumps(record)))
    return buf.getvalue()


class UnitFileError(ValueError):
    """A unit file that cannot be used; the message says why."""


class UnitStore:
    """The folder of unit files of one factorial (or one sweep cell).

    Parameters
    ----------
    root : path
        The folder (created on first save).
    warn : callable, optional
        Gets one line per unusable file found while resuming [default: stderr].
    """

    def __init__(self, root: str | os.PathLike, warn: Warn | None = None):
        self.root = Path(root)
        self.warn = warn or stderr_warn

    def path(self, key: str) -> Path:
        return self.root / (key.replace("/", "-") + ".npz")

    def save(self, unit: Unit, digest: str, fig: dict, model: Model) -> Path:
        """Write the unit's file atomically; return its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(unit.key)
        atomic_write_bytes(path, encode(unit, digest, fig, model))
        return path

    def read(self, unit: Unit, digest: str) -> tuple[dict, Model]:
        """The unit's (figures, model); :class:`UnitFileError` if the file is not usable for it."""
        path = self.path(unit.key)
        try:
            model = Model.load(path)
            with np.load(path, allow_pickle=False) as z:
                record = json.loads(str(z["unit"])) if "unit" in z.files else None
        except ModelFileError as exc:
            raise UnitFileError(f"unit file {path} is damaged or foreign ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - a damaged zip fails in many ways (BadZipFile, struct.error, ...)
            raise UnitFileError(f"unit file {path} is damaged or foreign ({exc.__class__.__name__})") from None
        if not isinstance(record, dict) or record.get("format") != UNIT_FORMAT:
            raise UnitFileError(f"unit file {path} is not a ternq unit file (a plain model file?)")
        if record.get("version") != UNIT_VERSION:
            raise UnitFileError(f"unit file {path} has format version {record.get('version')}, "
                                f"this ternq reads {UNIT_VERSION}")
        if record.get("key") != unit.key or not isinstance(record.get("figures"), dict):
            raise UnitFileError(f"unit file {path} holds unit {record.get('key')!r}, not {unit.key!r}")
        if record.get("digest") != digest:
            raise UnitFileError(f"unit file {path} was written under different settings (or package versions)")
        return record["figures"], model

    def scan(self, units: Iterable[Unit], settings: ExperimentSettings) -> dict[str, tuple[dict, Model]]:
        """Every unit of ``units`` whose file is present and valid; the others are reported if a file exists.

        Temporary files left by a killed write are removed.
        """
        done: dict[str, tuple[dict, Model]] = {}
        if not self.root.is_dir():
            return done
        for tmp in self.root.glob(".*.npz.*.tmp"):
            tmp.unlink(missing_ok=True)
        bad = []
        for unit in units:
            if not self.path(unit.key).exists():
                continue
            try:
                done[unit.key] = self.read(unit, unit_digest(unit, settings))
            except UnitFileError as exc:
                bad.append(str(exc))
        for message in bad[:REPORT_MAX]:
            self.warn(f"{message}; recomputing it")
        if len(bad) > REPORT_MAX:
            self.warn(f"{len(bad) - REPORT_MAX} more unit files in {self.root} cannot be used; recomputing them")
        return done


class StoreLockedError(RuntimeError):
    """Another run holds the output folder."""


class FolderLock:
    """An exclusive lock on an output folder (released by the OS even on kill -9)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / ".ternq.lock"
        self._fh = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")  # noqa: SIM115
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return self
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            self._fh = None
            raise StoreLockedError(f"another ternq run is writing to {self.path.parent}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def saver(store: UnitStore, settings: ExperimentSettings,
          then: Callable[[Unit, dict, Model], None] | None = None) -> Callable[[Unit, dict, Model], None]:
    """An ``on_done`` for :func:`ternq.factorial.execute`: write each finished unit at once, then call ``then``."""

    def on_done(unit: Unit, fig: dict, model: Model) -> None:
        store.save(unit, unit_digest(unit, settings), fig, model)
        if then is not None:
            then(unit, fig, model)

    return on_done
