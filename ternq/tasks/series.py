"""Recorded series: loading (CSV and ``.npy`` files, statsmodels' data sets), the time split and normalisation."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np

from .. import files
from .base import Task


class Series(Task):
    """Windows of one multichannel series (L rows, C channels): predict the next row from the current row.

    The first ``floor(train_frac * L)`` rows are the training part, the rest is
    held out; each channel is normalised by the training part's mean and
    standard deviation (see :func:`normalise`, which refuses series that cannot be
    normalised faithfully). Training windows of ``steps``
    steps (``steps + 1`` rows) start at a uniform random row such that the whole
    window lies in the training part. Held-out windows of ``min(eval_steps,
    rows held out - 1)`` steps start on a fixed, evenly spaced grid of at most
    ``n_eval`` distinct rows of the held-out part (they may overlap).
    ``channels`` names the columns (default "channel 0", "channel 1", ...).
    """

    def __init__(self, series: np.ndarray, name: str, steps: int = 50, train_frac: float = 0.75,
                 n_eval: int = 32, eval_steps: int = 100, info: dict | None = None, what: str | None = None,
                 channels: list[str] | None = None):
        series = np.asarray(series, np.float64)
        if series.ndim == 1:
            series = series[:, None]
        what = what or f"the {name} series"
        if series.ndim != 2 or series.shape[1] == 0:
            raise ValueError(f"{what} must be a table of rows and channels, got shape {series.shape}")
        if not 0.0 < train_frac < 1.0:
            raise ValueError(f"train_frac must lie in (0, 1), not {train_frac}")
        if int(steps) != steps or steps <= 0 or int(eval_steps) != eval_steps or eval_steps <= 0 or n_eval <= 0:
            raise ValueError("steps, eval_steps and n_eval must be positive integers")
        L, C = series.shape
        if channels is not None and len(channels) != C:
            raise ValueError(f"{what}: {len(channels)} channel names for {C} channels")
        bad = np.argwhere(~np.isfinite(series))
        if bad.size:
            r, c = bad[0]
            raise ValueError(f"{what} has a non-finite value ({series[r, c]}) at row {r + 1}, "
                             f"{channel_label(c, channels)} ({len(bad)} in all)")
        self._channels = None if channels is None else [str(c) for c in channels]
        need = min_length(steps, train_frac)
        if L < need:
            raise ValueError(f"{what} has {L} rows; sequences of {steps} steps need at least {need} "
                             f"({steps + 1} in the first {train_frac:.0%} for training, 2 held out)")
        self.name, self.steps, self.train_frac = name, int(steps), float(train_frac)
        self.n_in = self.n_out = C
        self.length = L
        self.n_train = int(math.floor(train_frac * L))
        self.mean, self.std, self.data = normalise(series, self.n_train, what, self._channels)
        held = L - self.n_train
        self.eval_steps = int(min(eval_steps, held - 1))
        last = held - 1 - self.eval_steps
        self.eval_starts = self.n_train + np.unique(np.round(np.linspace(0, last, int(n_eval))).astype(np.int64))
        self.n_eval = len(self.eval_starts)
        self.info = dict(info or {})

    @property
    def channels(self) -> list[str]:
        return super().channels if self._channels is None else list(self._channels)

    def _windows(self, starts: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.data[starts[..., None] + np.arange(steps + 1)]
        return np.ascontiguousarray(w[..., :-1, :]), np.ascontiguousarray(w[..., 1:, :])

    def draw(self, rng, epochs, batch):
        room = self.n_train - self.steps  # number of distinct windows in the training part
        if room < 1:
            raise ValueError(f"{self.name}: the training part has {self.n_train} rows, too few for windows of "
                             f"{self.steps} steps")
        return rng.integers(0, room, size=(epochs, batch))

    def sequences(self, draws):
        return self._windows(np.asarray(draws, np.int64), self.steps)

    def eval_set(self):
        return self._windows(self.eval_starts, self.eval_steps)

    def held_out_past(self, before):
        starts = self.eval_starts - before
        if starts.min() < 0:
            raise ValueError(f"{self.name}: {before} rows before the first held-out window are needed, "
                             f"{int(self.eval_starts.min())} exist")
        return self.data[starts[:, None] + np.arange(before)]

    def past_rows(self):
        return int(self.eval_starts.min())

    def held_out_span(self):
        return self.length - self.n_train

    def training_part(self):
        return self.data[: self.n_train].astype(np.float64)

    def naive_scale(self):
        return np.mean(np.abs(np.diff(self.training_part(), axis=0)), axis=0)

    def describe(self):
        return {**super().describe(), **self.info, "rows": self.length, "train_rows": self.n_train,
                "train_frac": self.train_frac, "n_eval": self.n_eval, "eval_steps": self.eval_steps,
                "mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}


MAX_SIGMAS = 1e6  # a held-out value further than this from the training mean is not on the series' scale
MAX_ONE_ROW_SHARE = 0.9  # most of a channel's training variance that a single row may carry


def normalise(series: np.ndarray, n_train: int, what: str = "the series", channels: list[str] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise each channel by its training part's mean and standard deviation, or refuse.

    The statistics are taken in float64 on the channel divided by its largest
    magnitude first, so values near 1e-300 or 1e300 neither underflow nor overflow
    (no RuntimeWarning, no silent zeros). The result must be a faithful float32
    series; a channel is refused (``ValueError``, one line) when

    - it is constant over the training rows (nothing to learn, nothing to scale by);
    - its spread is below float64 resolution relative to its magnitude;
    - any value lies more than ``MAX_SIGMAS`` training standard deviations from the
      training mean (a series not on one scale, e.g. one 1e300 outlier);
    - one training row carries more than ``MAX_ONE_ROW_SHARE`` of its variance, or
      normalising merged its distinct values into fewer than three (an outlier
      that swamps the rest).

    Parameters
    ----------
    series : np.ndarray
        Finite float64 (L, C).
    n_train : int
        Rows of the training part (the first ones).
    what : str
        How messages name the series.
    channels : list of str, optional
        How messages name each column, besides its 0-based index.

    Returns
    -------
    mean, std : np.ndarray
        Float64 (C,): the training part's statistics in the data's own units.
    data : np.ndarray
        Float32 (L, C), C-contiguous: the normalised series.
    """
    C = series.shape[1]
    scale = np.max(np.abs(series[:n_train]), axis=0)  # > 0 unless the training part is all zeros
    mean = np.zeros(C)
    std = np.zeros(C)
    data = np.empty(series.shape, np.float32)
    for c in range(C):
        x, train = series[:, c], series[:n_train, c]
        name = f"{what}, {channel_label(c, channels)},"
        if np.all(train == train[0]):
            raise ValueError(f"{name} is constant ({train[0]:.6g}) over the {n_train} training rows: "
                             "nothing to learn or normalise by; drop that column")
        with np.errstate(over="ignore", under="ignore"):  # held-out values may overflow: refused below
            s = x / scale[c]  # |s| <= 1 over the training rows: their sums cannot overflow
            mu = s[:n_train].mean()
            sd = s[:n_train].std()
            if not sd > 1e-12:
                raise ValueError(f"{name} varies by less than 1e-12 of its size over the training rows "
                                 f"({train.min():.17g} to {train.max():.17g}): too little to normalise")
            z = (s - mu) / sd
        far = int(np.argmax(np.abs(z)))
        if not abs(z[far]) <= MAX_SIGMAS:
            raise ValueError(f"{name} row {far + 1} holds {x[far]:.6g}, {abs(z[far]):.3g} training standard "
                             "deviations from the training mean: the series is not on one scale (an outlier?)")
        zt = z[:n_train]
        top = int(np.argmax(zt * zt))
        if zt[top] ** 2 > MAX_ONE_ROW_SHARE * n_train:
            raise ValueError(f"{name} row {top + 1} ({x[top]:.6g}) alone carries "
                             f"{zt[top] ** 2 / n_train:.0%} of the training variance: an outlier?")
        data[:, c] = z
        if len(np.unique(data[:n_train, c])) < min(3, len(np.unique(train))):
            raise ValueError(f"{name} loses its distinct values when normalised (row {top + 1}, {x[top]:.6g}, "
                             "swamps the rest): an outlier?")
        mean[c], std[c] = mu * scale[c], sd * scale[c]
    return mean, std, data


def channel_label(c: int, channels: list[str] | None = None) -> str:
    """How messages name channel c: its 0-based index, and its name where it has one."""
    return f"channel {c}" if channels is None else f"channel {c} ({channels[c]!r})"


def min_length(steps: int, train_frac: float) -> int:
    """Fewest rows a series needs: ``steps + 1`` rows in the training part and 2 held out."""
    L = steps + 3
    while math.floor(train_frac * L) < steps + 1 or L - math.floor(train_frac * L) < 2:
        L += 1
    return L



@functools.lru_cache(maxsize=4)
def statsmodels_series(name: str) -> np.ndarray:
    """A recorded series from ``statsmodels.datasets`` (sunspots or co2) as float64 (L,)."""
    try:
        from statsmodels import datasets
    except ImportError:
        raise ValueError(f"the {name} task needs statsmodels, an optional extra: pip install ternq[data]") from None
    if name == "sunspots":
        df = datasets.sunspots.load_pandas().data
        values = df["SUNACTIVITY"].to_numpy(np.float64)
    elif name == "co2":
        df = datasets.co2.load_pandas().data
        values = df["co2"].interpolate(method="linear", limit_direction="both").to_numpy(np.float64)
    else:
        raise ValueError(f"no recorded series {name!r}")
    values.setflags(write=False)
    return values


class Sunspots(Series):
    """Yearly mean sunspot numbers 1700-2008 (309 rows); trains on 1700-1930, held out 1931-2008."""

    period = 11  # the solar cycle, in yearly rows

    def __init__(self, steps: int = 50, train_frac: float = 0.75, n_eval: int = 32, eval_steps: int = 50):
        info = {"source": "statsmodels.datasets.sunspots (yearly, 1700-2008)"}
        super().__init__(statsmodels_series("sunspots"), "sunspots", steps, train_frac, n_eval, eval_steps, info)


class CO2(Series):
    """Weekly Mauna Loa CO2 1958-2001 (2284 rows, 59 missing weeks interpolated linearly)."""

    period = 52  # a year, in weekly rows

    def __init__(self, steps: int = 50, train_frac: float = 0.75, n_eval: int = 32, eval_steps: int = 100):
        info = {"source": "statsmodels.datasets.co2 (weekly, 1958-2001, gaps interpolated)"}
        super().__init__(statsmodels_series("co2"), "co2", steps, train_frac, n_eval, eval_steps, info)


MAX_NPY_VALUES = 1 << 25  # 33.5 million numbers (268 MB as float64): far more than a training can use
MAX_NPY_BYTES = 8 * MAX_NPY_VALUES + files.MiB
MAX_CSV_BYTES = 64 * files.MiB


def read_table(path: str | Path, data: bytes | None = None, columns: list[str | int] | None = None
               ) -> tuple[np.ndarray, list[str] | None]:
    """Read a CSV or ``.npy`` file into a float64 (rows, channels) array and its column names, with one-line errors.

    Only a regular file is read (not a device or FIFO), and at most ``MAX_CSV_BYTES``
    of CSV or ``MAX_NPY_BYTES`` of ``.npy``; a ``.npy`` header is checked (numbers
    only, at most ``MAX_NPY_VALUES``, consistent with the file's size) before its
    array is allocated (:func:`ternq.files.npy_array`). A CSV may start with one
    header row (a row with no number in it), which names the columns; every
    selected cell must be a number. NaN and inf are refused by the task, which
    knows the row and column.

    Parameters
    ----------
    path : str or Path
        The file; its suffix picks the format.
    data : bytes, optional
        The file's bytes, when the caller has read them already (see :func:`from_file`).
    columns : list of str or int, optional
        The columns to keep, in this order: header names or 0-based indices. Default all.

    Returns
    -------
    values : np.ndarray
        Float64 (rows, channels).
    names : list of str or None
        The selected columns' header names ("channel k" for a blank one); None when the file has no header.
    """
    path = Path(path)
    npy = path.suffix.lower() == ".npy"
    if data is None:
        data = files.read_bytes(path, MAX_NPY_BYTES if npy else MAX_CSV_BYTES, "data file")
    if npy:
        arr = files.npy_array(io.BytesIO(data), len(data), MAX_NPY_VALUES, f"data file {path}", ndims=(1, 2))
        if arr.ndim == 1:
            arr = arr[:, None]
        pick = _pick_columns(columns, arr.shape[1], None, path)
        return arr[:, pick].astype(np.float64), None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text CSV file (use .npy for binary arrays)") from None
    if "\0" in text:
        raise ValueError(f"{path} is not a text CSV file (it holds NUL bytes; use .npy for binary arrays)")
    try:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text, newline="")))
                if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    header = None
    if rows and not any(_is_number(c) for c in rows[0][1]):
        (head_line, header), rows = rows[0], rows[1:]
        header = [c.strip() for c in header]
    if not rows:
        raise ValueError(f"{path} holds no data rows")
    width = len(rows[0][1])
    if header is not None and len(header) != width:
        raise ValueError(f"{path}: its header (line {head_line}) names {len(header)} columns, the first data row "
                         f"has {width}")
    pick = _pick_columns(columns, width, header, path)
    out = np.empty((len(rows), len(pick)))
    for k, (line, cells) in enumerate(rows):
        if len(cells) != width:
            raise ValueError(f"{path} line {line} has {len(cells)} columns, the first data row has {width}")
        for j, c in enumerate(pick):
            try:
                out[k, j] = float(cells[c])
            except ValueError:
                raise ValueError(_not_a_number(path, rows, header, c, line)) from None
    return out, None if header is None else [header[c] or f"channel {j}" for j, c in enumerate(pick)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column(c: int, header: list[str] | None) -> str:
    return f"column {c}" if header is None else f"column {c} ({header[c]!r})"


def _not_a_number(path: Path, rows: list, header: list[str] | None, c: int, line: int) -> str:
    """The message for a cell of column c that is not a number: a stray cell, or a column of text."""
    cells = [r[c] for _, r in rows if len(r) > c]
    cell = dict(rows)[line][c].strip()
    if sum(map(_is_number, cells)) * 2 >= len(cells):  # a mostly numeric column: one bad cell
        return f"{path} line {line}, column {c + 1}: {cell!r} is not a number"
    first = rows[0][1]
    numeric = [k for k in range(len(first)) if all(_is_number(r[k]) for _, r in rows[:100] if len(r) > k)]
    what = f"{path}: {_column(c, header)} holds text such as {cell!r} (line {line}), not numbers"
    if not numeric:
        return f"{what}, and no column holds only numbers"
    example = ", ".join(json.dumps(header[k], ensure_ascii=False) if header else str(k) for k in numeric[:8])
    more = ", ..." if len(numeric) > 8 else ""
    flag = ",".join(header[k] if header else str(k) for k in numeric[:8])
    return (f"{what}; choose the numeric columns, e.g. --columns {flag}{more} "
            f"(columns = [{example}{more}] in a settings file)")


def _pick_columns(columns: list[str | int] | None, width: int, header: list[str] | None, path: Path) -> list[int]:
    """0-based indices of the selected columns, in the order given; all by default."""
    if columns is None:
        return list(range(width))
    if isinstance(columns, (str, bytes)) or not isinstance(columns, (list, tuple)):
        raise ValueError(f"columns must be a list of column names or 0-based indices, not {columns!r}")
    if not columns:
        raise ValueError("columns is empty: select at least one column")
    pick = []
    for c in columns:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer, str)):
            raise ValueError(f"columns holds {c!r}: a column is a header name or a 0-based index")
        if isinstance(c, str):
            if header is None:
                raise ValueError(f"{path} does not name its columns (no header row): select them by 0-based index "
                                 f"(0 .. {width - 1}), not {c!r}")
            found = [k for k, name in enumerate(header) if name == c.strip()]
            if not found:
                names = ", ".join(repr(n) for n in header[:20]) + (", ..." if len(header) > 20 else "")
                raise ValueError(f"{path} has no column {c!r}; its header names {names}")
            if len(found) > 1:
                raise ValueError(f"{path} names {len(found)} columns {c!r} (columns {found}); select one by index")
            k = found[0]
        else:
            k = int(c)
            if not 0 <= k < width:
                raise ValueError(f"column index {k} is out of range: {path} has {width} columns, 0 .. {width - 1}")
        if k in pick:
            raise ValueError(f"{_column(k, header)} of {path} is selected twice")
        pick.append(k)
    return pick


def from_file(path: str | Path, columns: list[str | int] | None = None, **kwargs) -> Series:
    """The ``--data FILE`` task: a recorded series from a CSV or ``.npy`` file (see :func:`read_table`).

    ``columns`` selects and orders the channels (header names or 0-based indices);
    the selection is part of the task's description. Other keyword arguments go to
    :class:`Series`.
    """
    path = Path(path)
    npy = path.suffix.lower() == ".npy"
    data = files.read_bytes(path, MAX_NPY_BYTES if npy else MAX_CSV_BYTES, "data file")
    table, names = read_table(path, data, columns)
    digest = hashlib.sha256(data).hexdigest()  # of the very bytes parsed
    info = {"path": str(path), "sha256": digest}
    if columns is not None:
        info["columns"] = [c if isinstance(c, str) else int(c) for c in columns]
    return Series(table, "data", what=f"data file {path}", info=info, channels=names, **kwargs)
