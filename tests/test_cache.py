"""Numba's cache shared by processes (ternq.kernels.cache) and the gradient check beside the training."""

import fcntl
import os
import threading

import numpy as np
import pytest
from numba import njit
from numba.core import caching

from ternq import gradcheck
from ternq.kernels import cache
from ternq.kernels.cell import loss_grad_pass


def test_lock_installed_on_import():
    assert cache.can_share()
    cache.install_lock()  # idempotent: wrapping twice would take the lock twice and deadlock a save
    assert caching.IndexDataCacheFile.save.__name__ == "locked_save"


def test_save_waits_for_the_lock(tmp_path):
    """A save into a cache folder blocks while another open file description holds the folder's lock."""
    f = caching.IndexDataCacheFile(str(tmp_path), "fn-1.py311", ("stamp", 1))
    fd = os.open(tmp_path / cache.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    saved = threading.Event()

    def save():
        f.save(("key",), b"payload")
        saved.set()

    t = threading.Thread(target=save)
    t.start()
    try:
        assert not saved.wait(0.5), "the save did not wait for the lock"
    finally:
        os.close(fd)  # releases the lock
    t.join(10)
    assert saved.is_set()
    assert f.load(("key",)) == b"payload"
    assert sorted(p.name for p in tmp_path.glob("*.nbc")) == ["fn-1.py311.1.nbc"]


def test_compiled_tells_dtypes_apart():
    @njit
    def twice(x):
        return x * 2

    assert not cache.compiled(twice, np.float32)
    twice(np.ones(3, np.float32))
    assert cache.compiled(twice, np.float32)
    assert not cache.compiled(twice, np.float64)
    assert not cache.compiled(loss_grad_pass, np.complex128)  # never compiled, here or on disk


def test_gradient_check_in_a_child_process_gives_the_same_rows(monkeypatch):
    """On a first run the check runs in a child interpreter (its float64 kernels compile there); same rows."""
    import subprocess

    here = gradcheck.check_all((4,), 3)
    monkeypatch.setattr(cache, "compiled", lambda kernel, dtype: False)
    started = []
    run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: started.append(cmd) or run(cmd, **kw))
    child = gradcheck.check_all_beside((4,), 3)
    assert len(started) == 1 and "ternq.gradcheck" in started[0][2]
    assert child == here  # float64 figures through JSON: exact
    assert all(r.ok for r in child)


def test_gradient_check_apart_runs_in_a_child_though_compiled(monkeypatch):
    """Asked to run apart (the caller's threads would hold it up), the check starts a child even with its kernels
    compiled; the same rows."""
    import subprocess

    here = gradcheck.check_all((4,), 3)
    monkeypatch.setattr(cache, "compiled", lambda kernel, dtype: True)
    started = []
    run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: started.append(cmd) or run(cmd, **kw))
    assert gradcheck.check_all_beside((4,), 3, apart=True) == here
    assert len(started) == 1


@pytest.mark.parametrize("ok", [True, False])
def test_gradient_check_runs_here_when_compiled_or_unshared(monkeypatch, ok):
    """Compiled (or no lock to share the cache with): the check runs in this process."""
    import subprocess

    if ok:
        monkeypatch.setattr(cache, "compiled", lambda kernel, dtype: True)
    else:
        monkeypatch.setattr(cache, "compiled", lambda kernel, dtype: False)
        monkeypatch.setattr(cache, "can_share", lambda: False)

    def no_child(*a, **k):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "run", no_child)
    assert gradcheck.check_all_beside((4,), 3) == gradcheck.check_all((4,), 3)


@pytest.mark.parametrize("failure", ["cannot start", "fails"])
def test_gradient_check_runs_here_when_the_child_cannot(monkeypatch, failure):
    import subprocess

    monkeypatch.setattr(cache, "compiled", lambda kernel, dtype: False)

    def child(cmd, **kw):
        if failure == "cannot start":
            raise OSError("no processes here")
        return subprocess.CompletedProcess(cmd, 1, "", "Traceback ...")

    monkeypatch.setattr(subprocess, "run", child)
    assert gradcheck.check_all_beside((4,), 3) == gradcheck.check_all((4,), 3)


def test_an_interrupted_child_interrupts(monkeypatch):
    import subprocess

    monkeypatch.setattr(cache, "compiled", lambda kernel, dtype: False)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, -2, "", ""))
    with pytest.raises(KeyboardInterrupt):
        gradcheck.check_all_beside((4,), 3)


def test_stamp_covers_every_kernel_file(tmp_path, monkeypatch):
    """A compiled function of ternq is stale when any file of ternq/kernels changes, not only its own."""
    from ternq.kernels.cell import forward_pass

    own = gradcheck._fd_cell._cache._cache_file._source_stamp
    assert own[1] == cache.kernels_digest()
    assert forward_pass._cache._cache_file._source_stamp[1] == cache.kernels_digest()
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not a source")
    monkeypatch.setattr(cache, "KERNELS", str(tmp_path))
    before = cache.kernels_digest()
    (tmp_path / "notes.txt").write_text("changed")
    assert cache.kernels_digest() == before
    (tmp_path / "b.py").write_text("x = 2\n")
    assert cache.kernels_digest() != before


def test_functions_outside_ternq_keep_numbas_stamp():
    @njit(cache=False)
    def f(x):
        return x

    from numba.core.caching import InTreeCacheLocator

    loc = InTreeCacheLocator.from_function(f.py_func, __file__)
    assert not isinstance(loc.get_source_stamp(), tuple)  # this test file is not in the ternq package


def test_a_planted_lock_symlink_is_not_followed(tmp_path):
    """A symlink planted where the lock file goes is not followed (following it with O_CREAT would create its
    target), and the save still happens."""
    target = tmp_path / "planted"
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / cache.LOCK_NAME).symlink_to(target)
    f = caching.IndexDataCacheFile(str(folder), "fn-1.py311", ("stamp", 1))
    f.save(("key",), b"payload")
    assert f.load(("key",)) == b"payload"
    assert not target.exists()
