"""A model of the user's own series in the user's units: the normalisation kept with the model, applied by
``ternq predict --input`` and by the C library's ``ternq_step_units`` in the same float32 operations, so the
exported library fed raw rows of the user's CSV prints what ``ternq predict`` saves, bit for bit (host and
emulated Cortex-M4F)."""

import json
import re

import numpy as np
import pytest
from conftest import invoke as run

from ternq import StudentConfig, TeacherConfig, train_student, train_teacher
from ternq.deploy import Deployable, Units
from ternq.device import toolchain
from ternq.tasks import from_file

HOST = pytest.mark.skipif(bool(toolchain.missing()), reason="no host C compiler (cc)")
M4 = toolchain.missing("m4")
BOARD = pytest.mark.skipif(bool(M4), reason=f"{', '.join(M4)} not installed (see .ci/run)")


def _csv(path, rows, t0=0):
    """A sensor log: a timestamp column (text) and two channels far from mean 0, sd 1."""
    t = np.arange(t0, t0 + rows) * 0.2
    temp = 20.0 + 5.0 * np.sin(t) + 0.3 * np.sin(3.1 * t)
    pressure = 1013.25 + 3.0 * np.cos(0.7 * t)
    lines = ["time,temp,pressure"] + [f"2024-03-01T{k // 60:02d}:{k % 60:02d}:00,{a:.4f},{b:.3f}"
                                      for k, a, b in zip(range(t0, t0 + rows), temp, pressure, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return np.stack([temp, pressure], 1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny student trained on the user's CSV (seconds), saved as .npz, and a CSV of later raw rows."""
    folder = tmp_path_factory.mktemp("units")
    _csv(folder / "log.csv", 300)
    _csv(folder / "later.csv", 40, t0=300)
    task = from_file(folder / "log.csv", columns=["temp", "pressure"], steps=20)
    teacher, _ = train_teacher(task, TeacherConfig(hidden=8, epochs=30), seed=0)
    student, _ = train_student(teacher, task, StudentConfig(hidden=8, epochs=30, shaped=True), seed=0)
    student.save(folder / "s.npz")
    return folder


def test_units_are_the_training_part_statistics_in_float32(model):
    dep = Deployable.from_file(model / "s.npz")
    u = dep.units
    mean, std = np.array(dep.task["mean"]), np.array(dep.task["std"])
    assert abs(mean[0] - 20) < 1 and abs(mean[1] - 1013.25) < 1  # the series' units, not 0 / 1
    assert u.mean_in.dtype == np.float32 and u.mean_in.tobytes() == mean.astype(np.float32).tobytes()
    assert u.inv_sd_in.tobytes() == (1.0 / std).astype(np.float32).tobytes()
    assert u.sd_out.tobytes() == std.astype(np.float32).tobytes()
    x = np.array([[[21.5, 1012.0]]])
    want = (np.float32(21.5) - np.float32(mean[0])) * np.float32(1 / std[0])
    assert u.to_normalised(x)[0, 0, 0].tobytes() == np.float32(want).tobytes()
    # a model of a built-in task has no normalisation: its own values go in and out unchanged
    assert Units.of_task({"name": "sine", "n_in": 1, "n_out": 1}, 1, 1) is None


@pytest.mark.parametrize("edit", [{"std": [1.0, -2.0]}, {"std": [1.0]}, {"mean": ["a", 1.0]},
                                  {"std": [1.0, 1e-300]}])
def test_a_manifest_with_broken_normalisation_is_refused_in_one_line(model, tmp_path, capsys, edit):
    import hashlib
    import struct

    assert run(["export", str(model / "s.npz"), "--out", str(tmp_path / "s.tqd")], capsys)[0] == 0
    raw = (tmp_path / "s.tqd").read_bytes()
    (m,) = struct.unpack("<I", raw[8:12])
    man = json.loads(raw[12 : 12 + m])
    man["task"].update(edit)
    payload = raw[12 + m:]
    assert man["sha256"] == hashlib.sha256(payload).hexdigest()
    head = json.dumps(man).encode()
    (tmp_path / "bad.tqd").write_bytes(raw[:8] + struct.pack("<I", len(head)) + head + payload)
    code, _, err = run(["predict", str(tmp_path / "bad.tqd"), "--input", str(model / "later.csv")], capsys)
    assert code == 2 and "inconsistent" in err and ("std" in err or "mean" in err)
    assert len(err.strip().splitlines()) == 1


def test_predict_input_reports_errors_in_the_users_units(model, tmp_path, capsys):
    raw = _csv(tmp_path / "x.csv", 40, t0=300)
    code, stdout, err = run(["predict", str(model / "s.npz"), "--input", str(model / "later.csv"), "--json",
                             "--out", str(tmp_path / "p.npy")], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    dep = Deployable.from_file(model / "s.npz")
    u = dep.units
    X = np.loadtxt(model / "later.csv", delimiter=",", skiprows=1, usecols=(1, 2))[None]
    yn = dep.predict(u.to_normalised(X))[0]
    ys = np.load(tmp_path / "p.npy")
    assert ys.tobytes() == (yn * u.sd_out + u.mean_out).astype(np.float32).tobytes()
    assert abs(float(ys[0, :, 1].mean()) - 1013) < 5  # predictions on the series' scale
    err_units = ys[0, :-1].astype(np.float64) - X[0, 1:].astype(np.float32)
    assert res["rmse"] == pytest.approx(np.sqrt(np.mean(err_units ** 2, axis=0)).tolist(), rel=1e-12)
    assert res["channels"] == ["temp", "pressure"] and res["rows"] == 40 and res["normalised"]
    assert np.max(np.abs(raw - X[0])) < 1e-3
    # the deployable file keeps the normalisation: the same bits from a .tqd
    assert run(["export", str(model / "s.npz"), "--out", str(tmp_path / "s.tqd")], capsys)[0] == 0
    code, _, err = run(["predict", str(tmp_path / "s.tqd"), "--input", str(model / "later.csv"),
                        "--out", str(tmp_path / "q.npy")], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "q.npy").tobytes() == ys.tobytes()
    # the rich table names the channels and the units
    code, stdout, err = run(["predict", str(model / "s.npz"), "--input", str(model / "later.csv")], capsys)
    assert code == 0, err
    assert "RMSE, temp (own units)" in stdout and "RMSE, pressure (own units)" in stdout
    assert "MSE (normalised)" in stdout


def test_predict_on_the_held_out_set_gives_rmse_per_channel_in_own_units(model, capsys):
    code, stdout, err = run(["predict", str(model / "s.npz"), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    task = from_file(model / "log.csv", columns=["temp", "pressure"], steps=20)
    X, Y = task.eval_set()
    ys = Deployable.from_file(model / "s.npz").predict(X)[0]
    e = ys.astype(np.float64) - Y
    want = np.sqrt(np.mean(e * e, axis=(0, 1))) * np.array(task.std)
    assert res["eval_rmse_units"] == pytest.approx(want.tolist(), rel=1e-12)
    code, stdout, err = run(["predict", str(model / "s.npz"), "--int"], capsys)
    assert code == 0 and "eval RMSE, pressure (own units)" in stdout and "(normalised)" in stdout


def test_refusals(model, tmp_path, capsys):
    s, later = str(model / "s.npz"), str(model / "later.csv")
    for args, needle in [
        (["predict", s, "--input", later, "--int"], "drop --int"),
        (["predict", s, "--input", later, "--task", "sine"], "cannot be combined"),
        (["predict", s, "--input", later, "--out", later], "refusing to overwrite"),
        (["export", s, "--format", "c-int", "--input", later, "--out", str(tmp_path / "d")], "--format c"),
        (["export", s, "--input", later], "--format c"),
        (["predict", s, "--input", str(tmp_path / "none.csv")], "not found"),
    ]:
        code, _, err = run(args, capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
    (tmp_path / "one.csv").write_text("temp\n20.5\n")
    code, _, err = run(["predict", s, "--input", str(tmp_path / "one.csv")], capsys)
    assert code == 2 and "pressure" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def _export_units(model, tmp_path, capsys):
    out = tmp_path / "c"
    code, stdout, err = run(["export", str(model / "s.npz"), "--format", "c", "--input", str(model / "later.csv"),
                             "--out", str(out), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["normalised"] and res["golden_units"] == "own" and res["golden"] == {"sequences": 1, "steps": 40}
    assert "input values in the series' own units" in (out / "golden.h").read_text()
    code, _, err = run(["predict", str(model / "s.npz"), "--input", str(model / "later.csv"),
                        "--out", str(tmp_path / "p.csv")], capsys)
    assert code == 0, err
    return out, (tmp_path / "p.csv").read_text()


def test_the_header_says_which_entry_point_wants_which_units(model, tmp_path, capsys):
    out, _ = _export_units(model, tmp_path, capsys)
    h = (out / "ternq_model.h").read_text()
    assert "ternq_step takes and returns NORMALISED values" in h and "void ternq_step_units(" in h
    assert "'temp', 'pressure'" in h
    dep = Deployable.from_file(model / "s.npz")
    lits = re.search(r"#define TERNQ_MEAN_IN \{(.*)\}", h).group(1).split(", ")
    assert [np.float32(float.fromhex(v[:-1])) for v in lits] == list(dep.units.mean_in)
    # the integer library stays normalised, says so, and still holds no floating point
    assert run(["export", str(model / "s.npz"), "--format", "c-int", "--out", str(tmp_path / "i")], capsys)[0] == 0
    hi = (tmp_path / "i" / "ternq_model.h").read_text()
    assert "NORMALISED" in hi and "ternq_step_units" not in hi and not re.search(r"\b(float|double)\b", hi)


@HOST
def test_c_fed_raw_rows_prints_what_predict_input_saves_on_the_host(model, tmp_path, capsys):
    out, expected = _export_units(model, tmp_path, capsys)
    code, stdout = toolchain.run(toolchain.build_host(out, tmp_path / "m"))
    assert code == 0 and stdout == expected
    assert abs(np.mean([float(v) for v in expected.split()[1::2]]) - 1013) < 5  # pressure, in hPa
    # the normalised export of the same model still matches 'ternq predict' on the held-out set
    n = tmp_path / "n"
    assert run(["export", str(model / "s.npz"), "--format", "c", "--out", str(n)], capsys)[0] == 0
    code, stdout = toolchain.run(toolchain.build_host(n, tmp_path / "mn"))
    assert code == 0
    assert run(["predict", str(model / "s.npz"), "--out", str(tmp_path / "q.csv")], capsys)[0] == 0
    assert stdout == (tmp_path / "q.csv").read_text()


@BOARD
def test_c_fed_raw_rows_prints_what_predict_input_saves_on_a_cortex_m4f(model, tmp_path, capsys):
    out, expected = _export_units(model, tmp_path, capsys)
    code, stdout = toolchain.run_board(toolchain.build_board(out, "m4", tmp_path), "m4")
    assert code == 0 and stdout == expected
