"""Unit files: written at once, read back bit for bit, and anything unusable reported and recomputed."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ternq.cli import main
from ternq.config import load
from ternq.factorial import Unit, execute, plan
from ternq.model import Model
from ternq.store import FolderLock, StoreLockedError, UnitStore, unit_digest

QUICK = str(Path(__file__).parent.parent / "configs" / "quick.toml")


@pytest.fixture(scope="module")
def settings():
    return load(QUICK)


@pytest.fixture(scope="module")
def results(settings):
    return execute(plan(settings), settings, workers=2)


def test_roundtrip_is_exact_and_a_model_file(tmp_path, settings, results):
    store = UnitStore(tmp_path)
    for u in plan(settings):
        store.save(u, unit_digest(u, settings), *results[u.key])
    got = store.scan(plan(settings), settings)
    assert got.keys() == results.keys()
    for key, (fig, model) in results.items():
        assert json.dumps(got[key][0]) == json.dumps(fig)
        assert got[key][1].theta.tobytes() == model.theta.tobytes() and got[key][1].theta.flags.writeable
    assert Model.load(store.path("s0/student-SD-h8")).kind == "student"  # a unit file is a model file
    assert not list(tmp_path.glob(".*.tmp"))


def test_digest_covers_what_the_unit_reads(settings):
    teacher, student, cs = Unit("teacher", 0, 4), Unit("student", 0, 4), Unit("cs", 0, 4, source="config1")
    more_seeds = replace(settings, seeds=(0, 1, 2))
    other_student = replace(settings, student=replace(settings.student, mask="reference"))
    other_teacher = replace(settings, teacher=replace(settings.teacher, epochs=61))
    for u in (teacher, student, cs):
        assert unit_digest(u, settings) == unit_digest(u, more_seeds)  # seeds do not enter: runs can grow
        assert unit_digest(u, settings) != unit_digest(u, other_teacher)  # through the dependencies, too
    assert unit_digest(teacher, settings) == unit_digest(teacher, other_student)
    assert unit_digest(student, settings) != unit_digest(student, other_student)
    assert unit_digest(cs, settings) != unit_digest(cs, other_student)
    # the same student is config 1 of one width pair and config 5 of another
    assert unit_digest(Unit("student", 0, 8), settings) != unit_digest(
        Unit("student", 0, 8), replace(settings, widths=(8, 16)))


def test_unusable_files_are_reported_and_skipped(tmp_path, settings, results):
    messages = []
    store = UnitStore(tmp_path, messages.append)
    units = plan(settings)
    for u in units:
        store.save(u, unit_digest(u, settings), *results[u.key])
    teacher, student, cs = units[0], units[2], units[-1]
    store.path(teacher.key).write_bytes(store.path(teacher.key).read_bytes()[:300])  # torn
    results[student.key][1].save(store.path(student.key))  # a plain model file, not a unit file
    store.save(cs, "0" * 64, *results[cs.key])  # written under other settings
    (tmp_path / f".{store.path(cs.key).name}.abc.tmp").write_bytes(b"half")  # left by a kill
    done = store.scan(units, settings)
    assert set(results) - set(done) == {teacher.key, student.key, cs.key}
    assert len(messages) == 3
    assert "damaged" in messages[0] and "not a ternq unit file" in messages[1]
    assert "different settings" in messages[2] and all("recomputing" in m for m in messages)
    assert not list(tmp_path.glob(".*.tmp"))


def test_many_bad_files_one_line_for_the_rest(tmp_path, settings):
    messages = []
    store = UnitStore(tmp_path, messages.append)
    for u in plan(settings):
        store.path(u.key).write_bytes(b"junk")
    assert store.scan(plan(settings), settings) == {}
    assert len(messages) == 4 and "9 more unit files" in messages[-1]


def test_folder_lock(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(StoreLockedError, match="another ternq run"):
            with FolderLock(tmp_path):
                pass
    with FolderLock(tmp_path):  # released
        pass


def test_cli_recomputes_a_corrupt_unit(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["factorial", "--config", QUICK, "--seeds", "0:2", "--out", str(out), "--quiet", "--no-gradcheck"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    capsys.readouterr()
    first = (out / "results.json").read_bytes()
    units = sorted((out / "units").glob("*.npz"))
    assert len(units) == 24
    bad = out / "units" / "s1-student-Sd-h4.npz"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte inside the zip
    bad.write_bytes(bytes(raw))
    stamp = {p.name: p.stat().st_mtime_ns for p in units}
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "s1-student-Sd-h4.npz" in lines[0] and "recomputing" in lines[0]
    assert (out / "results.json").read_bytes() == first
    rewritten = {p.name for p in units if p.stat().st_mtime_ns != stamp[p.name]}
    assert rewritten == {bad.name}  # only the bad unit ran again
    with np.load(bad) as z:
        assert json.loads(str(z["unit"]))["key"] == "s1/student-Sd-h4"
