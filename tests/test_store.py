"""Unit files: written at once, read back bit for bit, and anything unusable reported and recomputed."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ternq.cli import main
from ternq.config import load
from ternq.experiment.execute import Threads, execute
from ternq.experiment.plans import plan as make_plan
from ternq.experiment.store import FolderLock, Store, StoreLockedError
from ternq.model import Model


def plan(settings):
    return make_plan(settings).units


def unit(settings, key):
    return next(u for u in plan(settings) if u.key == key)

QUICK = str(Path(__file__).parent.parent / "configs" / "quick.toml")


@pytest.fixture(scope="module")
def settings():
    return load(QUICK)


@pytest.fixture(scope="module")
def results(settings):
    return execute(plan(settings), Threads(2))


def test_roundtrip_is_exact_and_a_model_file(tmp_path, settings, results):
    store = Store(tmp_path)
    for u in plan(settings):
        store.save(u, *results[u.digest])
    got = store.scan(plan(settings))
    assert got.keys() == results.keys()
    for key, (fig, model) in results.items():
        assert json.dumps(got[key][0]) == json.dumps(fig)
        assert got[key][1].theta.tobytes() == model.theta.tobytes() and got[key][1].theta.flags.writeable
    assert Model.load(store.path(unit(settings, "s0/student-SD-h8"))).kind == "student"  # a unit file is a model file
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_student_keeps_its_weight_format(tmp_path, settings, results):
    """A unit file read back gives the student of the format it was saved as (an int4 student evaluated as a
    ternary one would be another model)."""
    from dataclasses import replace as copy_with

    store = Store(tmp_path)
    u = unit(settings, "s0/student-SD-h8")
    fig, model = results[u.digest]
    store.save(u, fig, copy_with(model, weight_format="int4"))
    assert store.scan([u])[u.digest][1].weight_format == "int4"


def test_digest_covers_what_the_unit_reads(settings):
    def digests(s):
        return {u.key: u.digest for u in plan(s)}

    base = digests(settings)
    more_seeds = digests(replace(settings, seeds=(0, 1, 2)))
    other_student = digests(replace(settings, student=replace(settings.student, mask="reference")))
    other_teacher = digests(replace(settings, teacher=replace(settings.teacher, epochs=61)))
    for key in ("s0/teacher-h4", "s0/student-sd-h4", "s0/cs-config1-h4"):
        assert base[key] == more_seeds[key]  # seeds do not enter: runs can grow
        assert base[key] != other_teacher[key]  # through the dependencies, too
    assert base["s0/teacher-h4"] == other_student["s0/teacher-h4"]
    assert base["s0/student-sd-h4"] != other_student["s0/student-sd-h4"]
    assert base["s0/cs-config1-h4"] != other_student["s0/cs-config1-h4"]
    # the same student in another width pair is the same unit (content-addressed, whatever its config number)
    assert base["s0/student-sd-h8"] == digests(replace(settings, widths=(8, 16)))["s0/student-sd-h8"]


def test_unusable_files_are_reported_and_skipped(tmp_path, settings, results):
    messages = []
    store = Store(tmp_path, messages.append)
    units = plan(settings)
    for u in units:
        store.save(u, *results[u.digest])
    teacher, student, cs = units[0], units[2], units[-1]
    store.path(teacher).write_bytes(store.path(teacher).read_bytes()[:300])  # torn
    results[student.digest][1].save(store.path(student))  # a plain model file, not a unit file
    other = replace(cs, config=replace(cs.config, sweeps=9))  # another unit's content under this name
    store.path(other).rename(store.path(cs)) if store.save(other, *results[cs.digest]) else None
    (tmp_path / f".{store.path(cs).name}.abc.tmp").write_bytes(b"half")  # left by a kill
    done = store.scan(units)
    assert set(results) - set(done) == {teacher.digest, student.digest, cs.digest}
    assert len(messages) == 3
    assert "damaged" in messages[0] and "not a ternq unit file" in messages[1]
    assert "does not match its digest" in messages[2] and all("recomputing" in m for m in messages)
    assert not list(tmp_path.glob(".*.tmp"))


def test_many_bad_files_one_line_for_the_rest(tmp_path, settings):
    messages = []
    store = Store(tmp_path, messages.append)
    tmp_path.mkdir(exist_ok=True)
    for u in plan(settings):
        store.path(u).write_bytes(b"junk")
    assert store.scan(plan(settings)) == {}
    assert len(messages) == 4 and "11 more unit files" in messages[-1]  # 14 units: 2 teachers, 2 floats, 8, 2 CS


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
    assert len(units) == 28  # per seed: 2 teachers, 2 equal-budget floats, 8 students, 2 CS
    bad = next((out / "units").glob("s1-student-Sd-h4.*.npz"))
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte inside the zip
    bad.write_bytes(bytes(raw))
    stamp = {p.name: p.stat().st_mtime_ns for p in units}
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and bad.name in lines[0] and "recomputing" in lines[0]
    assert (out / "results.json").read_bytes() == first
    rewritten = {p.name for p in units if p.stat().st_mtime_ns != stamp[p.name]}
    assert rewritten == {bad.name}  # only the bad unit ran again
    with np.load(bad) as z:
        assert json.loads(str(z["unit"]))["key"] == "s1/student-Sd-h4"
