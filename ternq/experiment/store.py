"""One content-addressed store of finished units: an experiment's ``OUT/units/`` and the teacher cache.

A unit's file is ``<key>.<digest[:16]>.npz`` (the key's ``/`` written as ``-``):
a model file that :meth:`ternq.model.Model.load` reads, plus a ``unit`` entry,
JSON with the unit's key, its full digest and its figures. Files are written
through a temporary name and a rename, so a kill leaves the whole file or none;
a run that stops resumes from the files that are there. A file that cannot be
read, or that holds another unit or another digest, is reported in one line and
its unit runs again. :class:`FolderLock` keeps two runs out of one folder.

``ternq student`` and ``ternq cs`` keep the teachers they train in the same kind
of store under ``$TERNQ_CACHE`` (default ``~/.cache/ternq``).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .. import formats
from ..jsonsafe import dumps
from ..model import FORMAT_VERSION, Model, ModelFileError, atomic_write_bytes
from .units import UNIT_FORMAT, UNIT_VERSION, Result, Unit

REPORT_MAX = 3  # unusable files reported one by one; the rest in one line
Warn = Callable[[str], None]


def stderr_warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where ``ternq student`` and ``ternq cs`` keep trained teachers: ``$TERNQ_CACHE`` or ``~/.cache/ternq``."""
    return Path(os.environ.get("TERNQ_CACHE", Path.home() / ".cache" / "ternq"))


def encode(unit: Unit, fig: dict, model: Model) -> bytes:
    """The bytes of a unit file."""
    header = {"format": "ternq-model", "version": FORMAT_VERSION, "kind": model.kind, "n_in": model.n_in,
              "hidden": model.hidden, "n_out": model.n_out, "meta": model.meta}
    if model.kind == "student":
        header["weight_format"] = model.weight_format  # read back by Model.load: a resumed int8 student stays int8
        if model.float_matrices != "none":
            header["float_matrices"] = model.float_matrices
        for m, f in zip(formats.MATRICES, model.matrix_formats, strict=True):
            if f.name != model.format.name:  # a mixed student stays mixed
                header[f"weight_format_{m}"] = f.name
    record = {"format": UNIT_FORMAT, "version": UNIT_VERSION, "key": unit.key, "digest": unit.digest,
              "figures": fig}
    buf = io.BytesIO()
    np.savez(buf, theta=np.ascontiguousarray(model.theta, np.float32), header=np.array(dumps(header)),
             unit=np.array(dumps(record)))
    return buf.getvalue()


class UnitFileError(ValueError):
    """A unit file that cannot be used; the message says why."""


class StoreWriteError(RuntimeError):
    """A unit file or the store's folder cannot be written (full disk, a file or folder in the way)."""


RESUME_HINT = "finished units are kept: rerun the same command to resume"


class Store:
    """A folder of unit files, addressed by each unit's key and digest.

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

    def path(self, unit: Unit) -> Path:
        return self.root / f"{unit.key.replace('/', '-')}.{unit.digest[:16]}.npz"

    def save(self, unit: Unit, fig: dict, model: Model) -> Path:
        """Write the unit's file atomically; return its path. :class:`StoreWriteError` (one line) if it cannot."""
        path = self.path(unit)
        data = encode(unit, fig, model)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        except OSError as exc:
            where = self.root if not self.root.is_dir() else path
            raise StoreWriteError(f"cannot write {where}: {exc.strerror or exc}; {RESUME_HINT}") from None
        return path

    def check(self, units: Iterable[Unit] = ()) -> None:
        """Raise :class:`StoreWriteError` when the folder, or a unit's file, cannot be written: a file where the
        folder belongs, a folder where a unit file belongs."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreWriteError(f"{self.root} is a file where the folder of unit files belongs; move it away")
        for unit in units:
            if self.path(unit).is_dir():
                raise StoreWriteError(f"{self.path(unit)} is a folder where a unit file belongs; move it away")

    def read(self, unit: Unit) -> Result:
        """The unit's (figures, model); :class:`UnitFileError` if its file is not usable for it."""
        path = self.path(unit)
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
        if record.get("digest") != unit.digest:
            raise UnitFileError(f"unit file {path} does not match its digest (written under different settings, "
                                "code or package versions)")
        return record["figures"], model

    def scan(self, units: Iterable[Unit]) -> dict[str, Result]:
        """Every unit of ``units`` whose file is present and valid, by digest; the others are reported if a
        file exists. Temporary files left by a killed write are removed."""
        done: dict[str, Result] = {}
        units = list(units)
        self.check(units)
        if not self.root.is_dir():
            return done
        for tmp in self.root.glob(".*.npz.*.tmp"):
            tmp.unlink(missing_ok=True)
        bad = []
        for unit in units:
            if unit.digest in done or not self.path(unit).exists():
                continue
            try:
                done[unit.digest] = self.read(unit)
            except UnitFileError as exc:
                bad.append(str(exc))
        for message in bad[:REPORT_MAX]:
            self.warn(f"{message}; recomputing it")
        if len(bad) > REPORT_MAX:
            self.warn(f"{len(bad) - REPORT_MAX} more unit files in {self.root} cannot be used; recomputing them")
        return done


class OtherSettingsError(StoreWriteError):
    """The output folder holds results of other settings."""


SETTINGS_MARK = ".ternq-settings.json"  # what an output folder was made with (results.json says it too, at the end)

def _difference(there, here, path="") -> str:
    """The first setting that differs, as 'key: A there, B here'."""
    if isinstance(there, dict) and isinstance(here, dict):
        for k in list(there) + [k for k in here if k not in there]:
            if there.get(k) != here.get(k):
                return _difference(there.get(k), here.get(k), f"{path}.{k}" if path else str(k))
    if (isinstance(there, list) and isinstance(here, list) and there and here
            and all(isinstance(x, dict) for x in there + here)):  # a list of cells: name the one that differs
        if len(there) != len(here):
            return f"{path or 'settings'}: {len(there)} entries there, {len(here)} here"
        for i, (a, b) in enumerate(zip(there, here, strict=True)):
            if a != b:
                return _difference(a, b, f"{path}[{i}]")
    text = f"{path or 'settings'}: {there!r} there, {here!r} here"
    return text if len(text) <= 200 else text[:197] + "..."


def claim_out_dir(folder: Path, settings, force: bool) -> None:
    """Refuse ``folder`` if an earlier run wrote it with other settings (unless ``force``); then mark it with these.

    Call with the folder locked. ``settings`` is JSON-ready (what results.json records).
    """
    from ..jsonsafe import clean
    from .results import write_json

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
        raise OtherSettingsError(f"{folder} holds results of other settings ({_difference(there, here)}); "
                         "use another --out, or --force to replace them")
    try:
        write_json(mark, here)
    except OSError as exc:
        raise StoreWriteError(f"cannot write to {folder}: {exc.strerror or exc}") from None


class StoreLockedError(StoreWriteError):
    """Another run holds the output folder."""


class FolderLock:
    """An exclusive lock on an output folder (released by the OS even on kill -9)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / ".ternq.lock"
        self._fh = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = open(self.path, "a+")  # noqa: SIM115
        except OSError as exc:  # a folder, a dangling link or a special file in the way
            raise StoreWriteError(f"cannot open the lock file {self.path} ({exc.strerror or exc}); "
                                  "move it away") from None
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
