"""Numba's on-disk cache, made safe for several processes, and asked what it holds.

Numba writes a function's cache index and then its data file without a lock: two
processes that compile different signatures of one function at the same moment can
both pick the data file ``<name>.1.nbc``, and the index of one then points at the
code of the other. ternq runs compiling processes side by side (the gradient check's
float64 kernels in a child on a first run, Dask workers on one machine, two commands
at once), so :func:`install_lock` wraps Numba's save (exclusive) and load (shared) of
a cache entry in an advisory ``flock`` on one lock file per cache folder. Where
``fcntl`` is missing (Windows) nothing changes and :func:`can_share` says so.

Numba also judges a cached function fresh by its own source file alone, but ternq's
compiled functions inline each other across files (the epoch loop in ``loop.py``
carries ``cell.py``'s BPTT; the gradient check's float64 forward too): after an
edit of ``cell.py`` the cache would hand back a loop built from the old cell.
:func:`install_stamp` makes the freshness stamp of every compiled function of ternq
cover its own file and every file of ``ternq/kernels``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = "ternq-numba-cache.lock"


@contextlib.contextmanager
def _locked(folder: str, exclusive: bool) -> Iterator[None]:
    try:
        # read-only (flock needs no write access, so other users of a shared cache can lock too; a planted
        # symlink is never followed, and nothing is ever written through it)
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError:  # a folder we cannot write to holds no entries of ours to race on
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def install_lock() -> None:
    """Make Numba's cache saves and loads atomic across processes (idempotent)."""
    if fcntl is None:
        return
    from numba.core import caching

    cls = getattr(caching, "IndexDataCacheFile", None)
    if cls is None or getattr(cls, "_ternq_locked", False):  # another Numba: leave it (can_share says no)
        return
    save, load = cls.save, cls.load

    def locked_save(self, key, data):
        with _locked(self._cache_path, True):
            return save(self, key, data)

    def locked_load(self, key):
        with _locked(self._cache_path, False):
            return load(self, key)

    cls.save, cls.load = locked_save, locked_load
    cls._ternq_locked = True


KERNELS = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(KERNELS)


@functools.cache
def _kernels_digest(stats: tuple) -> bytes:
    h = hashlib.sha256()
    for name, _, _ in stats:  # the stats are the memo key: an edit during the process is seen
        h.update(name.encode())
        with open(os.path.join(KERNELS, name), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.digest()


def kernels_digest() -> bytes:
    """One digest of the sources of every file of ``ternq/kernels``."""
    names = sorted(n for n in os.listdir(KERNELS) if n.endswith(".py"))
    stats = tuple((n, (st := os.stat(os.path.join(KERNELS, n))).st_mtime_ns, st.st_size) for n in names)
    return _kernels_digest(stats)


def install_stamp() -> None:
    """Make a cached function of ternq stale when its own file or any file of ``ternq/kernels`` changes."""
    from numba.core import caching

    cls = getattr(caching, "_SourceFileBackedLocatorMixin", None)
    if cls is None or getattr(cls, "_ternq_stamped", False):  # another Numba: its own stamps
        return
    stamp = cls.get_source_stamp

    def group_stamp(self):
        own = stamp(self)
        if os.path.abspath(getattr(self, "_py_file", "")).startswith(PACKAGE + os.sep):
            try:
                return own, kernels_digest()
            except OSError:  # the kernels' sources cannot be read (a stripped install): Numba's own stamp
                return own
        return own

    cls.get_source_stamp = group_stamp
    cls._ternq_stamped = True


def can_share() -> bool:
    """Whether processes can compile into one cache folder at once here (the lock is installed)."""
    from numba.core import caching

    return getattr(getattr(caching, "IndexDataCacheFile", None), "_ternq_locked", False)


def compiled(kernel, dtype) -> bool:
    """Whether ``kernel`` is compiled for a first argument of ``dtype``, in this process or in Numba's cache
    (loading it is cheap). False when that cannot be told."""
    from numba import from_dtype

    ty = from_dtype(dtype)
    if any(getattr(sig[0], "dtype", None) == ty for sig in getattr(kernel, "overloads", ())):
        return True
    try:  # the index is empty unless it matches today's source file
        index = kernel._cache._cache_file._load_index()
        return any(getattr(key[0][0], "dtype", None) == ty for key in index)
    except Exception:  # noqa: BLE001 - a private API; not knowing means "not compiled"
        return False
