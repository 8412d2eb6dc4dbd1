"""Reading files a user hands us, without trusting them.

Every reader here refuses, with one line (a :class:`FileInputError`, a
``ValueError``), anything that is not a regular file, is larger than the caller
allows, or whose headers declare more data than the caller can need, and it does
so *before* reading or allocating the body. That closes the crafted-file faults:
``/dev/zero`` or a FIFO given as a data file, a small ``.npz`` that inflates to
GiBs, a ``.npy`` header claiming 1e12 rows, and a TOML file nested thousands of
levels deep.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

MiB = 1 << 20
TOML_MAX_BYTES = 4 * MiB  # settings files are a few kB
TOML_MAX_DEPTH = 64  # brackets and braces nested, and tables within tables
NPY_MAX_HEADER = 64 * 1024  # numpy's own default limit for a header it parses safely


class FileInputError(ValueError):
    """A file that cannot be accepted as input; the message is one line for the user."""


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return ``path`` if it is an existing regular file (not a folder, device, FIFO or socket).

    Parameters
    ----------
    path : str or os.PathLike
        The file named by the user.
    what : str
        How the message names the file (``"data file"``, ``"model file"``...).

    Raises
    ------
    FileInputError
        When the file is missing or not a regular file.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileInputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise FileInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise FileInputError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise FileInputError(f"{what} {path} is not a regular file (a device, FIFO or socket)")
    return path


def open_regular(path: str | os.PathLike, max_bytes: int, what: str = "file") -> tuple[IO[bytes], int]:
    """Open a regular file of at most ``max_bytes`` for binary reading; return (file, size).

    The file is opened without blocking (a FIFO swapped in after the check cannot
    hang us) and checked again on the open descriptor, so the answer is about the
    file actually read.
    """
    path = regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise FileInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileInputError(f"{what} {path} is not a regular file (a device, FIFO or socket)")
    if st.st_size > max_bytes:
        os.close(fd)
        raise FileInputError(f"{what} {path} is {_size(st.st_size)}, more than the {_size(max_bytes)} allowed")
    return os.fdopen(fd, "rb"), st.st_size


def read_bytes(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``: never more, even if it grows meanwhile."""
    fh, _ = open_regular(path, max_bytes, what)
    with fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileInputError(f"{what} {path} grew past the {_size(max_bytes)} allowed while being read")
    return data


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares: shape, dtype, order, and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def count(self) -> int:
        n = 1
        for k in self.shape:
            n *= k
        return n

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


def npy_header(fh: IO[bytes], what: str = "array") -> NpyHeader:
    """Read and sanity-check the header of the ``.npy`` stream ``fh`` (left just past the header).

    Refuses object (pickled) and structured dtypes: only plain numbers and strings
    are accepted, so nothing in the file can run code or hide a size.
    """
    start = fh.tell() if fh.seekable() else 0
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=NPY_MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=NPY_MAX_HEADER)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise FileInputError(f"{what} is not a readable .npy array ({_first_line(exc)})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufU":
        raise FileInputError(f"{what} holds {dtype} values; only plain numbers are accepted")
    if any(int(k) < 0 for k in shape):
        raise FileInputError(f"{what} declares a negative shape {shape}")
    offset = (fh.tell() - start) if fh.seekable() else 0
    return NpyHeader(tuple(int(k) for k in shape), dtype, bool(fortran), offset)


def npy_array(fh: IO[bytes], size: int, max_count: int, what: str = "array", kinds: str = "biuf",
              ndims: tuple[int, ...] | None = None) -> np.ndarray:
    """Read the ``.npy`` stream ``fh`` of ``size`` bytes, its header checked before any array is allocated.

    Parameters
    ----------
    fh : file
        A seekable binary stream at the start of the ``.npy`` data.
    size : int
        Bytes in the stream: the header's declared data must fill it exactly.
    max_count : int
        Most elements the caller can use.
    what : str
        How messages name the array (with its path).
    kinds : str
        Accepted dtype kinds (numpy's ``dtype.kind`` letters): integers and floats by default.
    ndims : tuple of int, optional
        Accepted numbers of dimensions; any by default.

    Returns
    -------
    np.ndarray
        The array, as stored.
    """
    start = fh.tell()
    head = npy_header(fh, what)
    if head.dtype.kind not in kinds:
        raise FileInputError(f"{what} holds {head.dtype} values, not numbers")
    if ndims is not None and len(head.shape) not in ndims:
        raise FileInputError(f"{what} holds an array of shape {head.shape}, not of {' or '.join(map(str, ndims))} "
                             "dimensions")
    if head.count > max_count:
        raise FileInputError(f"{what} declares shape {head.shape} ({head.count:.3g} values); "
                             f"at most {max_count:.3g} are accepted")
    if head.offset + head.nbytes != size:
        raise FileInputError(f"{what} is damaged: its header declares {_size(head.nbytes)} of data, "
                             f"the file holds {_size(size - head.offset)}")
    fh.seek(start)
    try:
        return np.lib.format.read_array(fh, allow_pickle=False, max_header_size=NPY_MAX_HEADER)
    except (ValueError, OSError, EOFError) as exc:
        raise FileInputError(f"cannot read {what} ({_first_line(exc)})") from None


def read_npy(path: str | os.PathLike, max_count: int, what: str = "array file",
             max_file_bytes: int | None = None, kinds: str = "biuf") -> np.ndarray:
    """Read a ``.npy`` file of numbers whose header declares at most ``max_count`` of them (see :func:`npy_array`).

    ``max_file_bytes`` caps the file size; by default what ``max_count`` float64
    numbers need plus headroom.
    """
    cap = max_file_bytes if max_file_bytes is not None else 8 * max_count + 1 * MiB
    fh, size = open_regular(path, cap, what)
    with fh:
        return npy_array(fh, size, max_count, f"{what} {path}", kinds)


def npz_members(zf: zipfile.ZipFile, limits: dict[str, int], what: str) -> dict[str, zipfile.ZipInfo]:
    """Check an ``.npz`` archive's directory: each named member present once, none inflating past its limit.

    ``limits`` maps member names (without ``.npy``) to the most uncompressed bytes
    each may declare. Python's zipfile never yields more than a member's declared
    size, so checking the declaration bounds what reading it can allocate.
    Members not named are ignored (never read).
    """
    found: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key not in limits:
            continue
        if key in found:
            raise FileInputError(f"{what} holds member {key!r} twice")
        if info.file_size > limits[key]:
            raise FileInputError(f"{what}: member {key!r} declares {_size(info.file_size)} uncompressed, "
                                 f"more than the {_size(limits[key])} it can need")
        found[key] = info
    return found


def read_npz_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple[int, ...] | None,
                    kinds: str, what: str, max_count: int | None = None) -> np.ndarray:
    """Read one ``.npy`` member after checking its header: dtype kind in ``kinds`` and exactly ``shape``.

    With ``shape`` None, any shape of at most ``max_count`` elements whose bytes fit
    the member's declared size is accepted.
    """
    name = f"{what}: member {info.filename[:-4]!r}"
    with zf.open(info) as fh:
        head = npy_header(fh, name)
        if head.dtype.kind not in kinds:
            raise FileInputError(f"{name} holds {head.dtype} values")
        if shape is not None and head.shape != tuple(shape):
            raise FileInputError(f"{name} has shape {head.shape}, expected {tuple(shape)}")
        if max_count is not None and head.count > max_count:
            raise FileInputError(f"{name} declares {head.count:.3g} values, at most {max_count:.3g} accepted")
        if head.nbytes > info.file_size:
            raise FileInputError(f"{name} declares more data than the archive holds")
    with zf.open(info) as fh:
        try:
            return np.lib.format.read_array(fh, allow_pickle=False, max_header_size=NPY_MAX_HEADER)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise FileInputError(f"{name} cannot be read ({_first_line(exc)})") from None


def toml_depth(text: str) -> int:
    """Deepest nesting of arrays and inline tables (``[`` ``{``) in TOML ``text``, outside strings and comments.

    A linear scan with no recursion, so that it can vet text before the recursive
    TOML parser sees it.
    """
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c in "\"'":
            quote3 = text.startswith(c * 3, i)
            delim = c * 3 if quote3 else c
            j = i + len(delim)
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(delim, j):
                    break
                if not quote3 and text[j] == "\n":
                    break  # an unterminated one-line string: the parser reports it
                j += 1
            if quote3:  # a closing run may hold up to two more quotes that belong to the string
                while text.startswith(delim, j + 1):
                    j += 1
            i = j + len(delim)
            continue
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def _value_depth(value) -> int:
    """Depth of nested dicts and lists in a parsed document, without recursion."""
    deepest = 0
    todo = [(value, 0)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return deepest


def read_toml(path: str | os.PathLike, max_bytes: int = TOML_MAX_BYTES, max_depth: int = TOML_MAX_DEPTH,
              what: str = "settings file") -> dict:
    """Parse a TOML file safely: a regular file, at most ``max_bytes``, nested at most ``max_depth`` deep.

    The size and bracket nesting are checked before :mod:`tomllib` runs (it
    recurses once per level), and the parsed document's depth after (dotted keys
    and table headers nest without brackets).

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file.
    max_bytes, max_depth : int
        Limits on the file size and on nesting.
    what : str
        How messages name the file.

    Returns
    -------
    dict
        The document.

    Raises
    ------
    FileInputError
        With a one-line message (line and column for syntax errors, as tomllib gives them).
    """
    raw = read_bytes(path, max_bytes, what)
    try:
        text = raw.decode("utf-8-sig")  # editors on Windows start UTF-8 files with a byte-order mark
    except UnicodeDecodeError:
        raise FileInputError(f"{what} {path} is not UTF-8 text") from None
    if toml_depth(text) > max_depth:
        raise FileInputError(f"{what} {path} nests arrays or tables more than {max_depth} levels deep")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileInputError(f"{what} {path} is not valid TOML: {_first_line(exc)}") from None
    except RecursionError:  # cannot happen after the scan; kept so that a scanner bug stays one line
        raise FileInputError(f"{what} {path} nests too deeply") from None
    if _value_depth(doc) > max_depth:
        raise FileInputError(f"{what} {path} nests tables more than {max_depth} levels deep")
    return doc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _size(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", MiB), ("kiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


__all__ = ["FileInputError", "NpyHeader", "npy_array", "npy_header", "npz_members", "open_regular", "read_bytes",
           "read_npy", "read_npz_member", "read_toml", "regular_file", "toml_depth"]

