"""Deployable files: trit packing, bit-identity with the training forward, the file and the CLI."""

import json
import struct

import numpy as np
import pytest
from conftest import invoke as run
from hypothesis import given, settings
from hypothesis import strategies as st

from ternq.deploy import MAGIC, Deployable, DeployFileError, pack_trits, unpack_trits
from ternq.kernels.cell import forward, mse
from ternq.model import Model, init_teacher, student_from
from ternq.tasks import get_task
from ternq.train import DT, StudentConfig, TeacherConfig, evaluate, train_student, train_teacher


@given(st.lists(st.sampled_from([-1, 0, 1]), max_size=300))
@settings(max_examples=200, deadline=None)
def test_pack_unpack_round_trip(trits):
    t = np.array(trits, np.int8)
    data = pack_trits(t)
    assert len(data) == -(-len(t) // 5)
    assert np.array_equal(unpack_trits(data, len(t)), t)


def test_pack_is_base3_five_per_byte():
    assert pack_trits(np.array([-1, 0, 1, -1, 1], np.int8)) == bytes([0 + 3 * 1 + 9 * 2 + 27 * 0 + 81 * 2])
    assert pack_trits(np.ones(5, np.int8)) == bytes([242])
    with pytest.raises(ValueError):
        unpack_trits(bytes([243]), 5)
    with pytest.raises(ValueError):
        unpack_trits(bytes([0]), 2)  # padding digits must be trit 0
    with pytest.raises(ValueError):
        pack_trits(np.array([2]))


def _forward(model, X):
    """The training forward on the student's effective parameters: (ys (N,T,O), hs (N,T+1,H))."""
    I, H, O = model.dims
    X = np.ascontiguousarray(X, np.float32)
    N, T = X.shape[:2]
    hs = np.empty((T + 1, N, H), np.float32)
    gs, cs = np.empty((T, N, H), np.float32), np.empty((T, N, H), np.float32)
    ys = np.empty((T, N, O), np.float32)
    forward(model.params(), X, I, H, O, DT, hs, gs, cs, ys, np.empty((I + H, 2 * H), np.float32))
    return ys.transpose(1, 0, 2), hs.transpose(1, 0, 2)


def _assert_bit_identical(model, X, Y):
    dep = Deployable.from_bytes(Deployable.from_model(model).to_bytes())
    ys, hs = dep.predict(X)
    ys0, hs0 = _forward(model, X)
    assert ys.tobytes() == np.ascontiguousarray(ys0).tobytes()
    assert hs.tobytes() == np.ascontiguousarray(hs0).tobytes()
    got, _ = dep.mse(X, Y)
    assert got == mse(model.params(), np.ascontiguousarray(X, np.float32), np.ascontiguousarray(Y, np.float32),
                      *model.dims, DT)
    # the factored variant (one multiply per row) is close but not required to be identical
    yf, _ = dep.predict(X, factored=True)
    assert np.allclose(yf, ys0, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def sine_student():
    task = get_task("sine")
    teacher, _ = train_teacher(task, TeacherConfig(hidden=8, epochs=60), seed=0)
    student, _ = train_student(teacher, task, StudentConfig(hidden=8, epochs=60), seed=0)
    student.meta["figures"] = evaluate(student, task)
    return student


def test_bit_identical_on_sine(sine_student):
    task = get_task("sine")
    _assert_bit_identical(sine_student, *task.eval_set())
    _assert_bit_identical(sine_student, *task.reference_set())  # x_0 = 0 exactly, h_0 = 0


def test_bit_identical_on_lorenz_three_channels():
    task = get_task("lorenz")
    rng = np.random.default_rng(3)
    student = student_from(init_teacher(6, rng, 3, 3))
    # give the biases non-trivial values, as training would
    student.theta[2 * 6 * 9 : 2 * 6 * 9 + 12] = rng.normal(0, 0.3, 12).astype(np.float32)
    _assert_bit_identical(student, *task.eval_set())


def test_bit_identical_with_zero_biases_signed_zero_weights_and_zero_inputs():
    """Zero biases, many zero trits whose effective weight is -0.0 (negative shadow), inputs exactly 0."""
    rng = np.random.default_rng(5)
    s = student_from(init_teacher(5, rng, 2, 2))
    n = s.n_cell
    s.theta[:n] *= rng.choice([0.05, 1.0], size=n).astype(np.float32)  # many weights well below half a scale
    s.theta[n:] = np.abs(s.theta[n:]) + np.float32(0.01)
    p = s.params()
    assert np.any((p == 0) & np.signbit(p))  # some effective weights are -0.0
    X = rng.normal(size=(4, 12, 2)).astype(np.float32)
    X[:, :3] = 0.0
    X[1] = -0.0
    Y = rng.normal(size=(4, 12, 2)).astype(np.float32)
    _assert_bit_identical(s, X, Y)


def test_file_round_trip_and_manifest(sine_student, tmp_path):
    dep = Deployable.from_model(sine_student)
    path = tmp_path / "m.tqd"
    size = dep.save(path)
    raw = path.read_bytes()
    assert size == len(raw) and raw[:8] == MAGIC
    (m,) = struct.unpack("<I", raw[8:12])
    man = json.loads(raw[12 : 12 + m])
    assert man["format"] == "ternq-deploy" and man["version"] == 1
    assert man["dims"] == {"n_in": 1, "hidden": 8, "n_out": 1}
    assert man["counts"]["trits"] == 2 * 8 * 9 + 8 == sum(man["counts"][k] for k in ("plus", "minus", "zero"))
    assert man["task"]["name"] == "sine" and man["packing"]["trits_per_byte"] == 5
    back = Deployable.load(path)
    assert back.params().tobytes() == dep.params().tobytes()
    # equal values; only the sign of zero weights is not kept (it never changes a prediction, see infer.py)
    assert np.array_equal(back.params(), sine_student.params())
    assert np.array_equal(np.concatenate([back.levels_W.ravel(), back.levels_out.ravel()]), sine_student.trits())


def test_teacher_cannot_be_exported():
    with pytest.raises(ValueError, match="only a quantized student"):
        Deployable.from_model(init_teacher(4, np.random.default_rng(0)))


# ---- CLI


@pytest.fixture(scope="module")
def student_file(sine_student, tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "student.npz"
    sine_student.save(path)
    return path


def test_cli_export_predict_round_trip(student_file, sine_student, tmp_path, capsys):
    out = tmp_path / "m.tqd"
    code, stdout, err = run(["export", str(student_file), "--out", str(out), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["file_bytes"] == out.stat().st_size and res["payload_bytes"] < res["float32_bytes"]
    assert res["float32_bytes"] == 4 * sine_student.n_cell
    preds = tmp_path / "p.npy"
    code, stdout, err = run(["predict", str(out), "--json", "--out", str(preds)], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    task = get_task("sine")
    assert res["eval_mse"] == evaluate(sine_student, task)["eval_mse"] == res["eval_mse_at_training"]
    ys0, _ = _forward(sine_student, task.eval_set()[0])
    assert np.load(preds).tobytes() == np.ascontiguousarray(ys0).tobytes()
    # a student .npz runs directly, with the same result as its deployable file
    code, stdout, err = run(["predict", str(student_file), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["eval_mse"] == res["eval_mse"], err
    with pytest.raises(DeployFileError, match="run 'ternq export'"):
        Deployable.load(student_file)
    code, stdout, _ = run(["predict", str(out), "--task", "multisine"], capsys)
    assert code == 0 and "eval MSE" in stdout
    code, stdout, _ = run(["export", str(student_file), "--out", str(out)], capsys)
    assert code == 0 and "float32" in stdout


def _bad_file(kind, tmp_path, student_file):
    path = tmp_path / "bad.tqd"
    good = Deployable.from_model(Model.load(student_file)).to_bytes()
    (m,) = struct.unpack("<I", good[8:12])
    if kind == "missing":
        return tmp_path / "nope.tqd"
    if kind == "foreign":
        path.write_bytes(b"hello, world; not a model at all")
    elif kind == "npz":
        return student_file
    elif kind == "corrupt":
        raw = bytearray(good)
        raw[-3] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif kind == "truncated":
        path.write_bytes(good[:-10])
    elif kind == "manifest":
        path.write_bytes(good[:12] + b"{" * m + good[12 + m:])
    elif kind == "version":
        man = json.loads(good[12 : 12 + m])
        man["version"] = 99
        head = json.dumps(man).encode()
        path.write_bytes(MAGIC + struct.pack("<I", len(head)) + head + good[12 + m:])
    return path


@pytest.mark.parametrize("kind,needle", [
    ("missing", "not found"), ("foreign", "not a ternq deployable"),
    ("corrupt", "checksum"), ("truncated", "checksum"), ("manifest", "corrupt"), ("version", "version 99"),
])
def test_cli_predict_bad_files_one_line_exit_2(kind, needle, tmp_path, student_file, capsys):
    path = _bad_file(kind, tmp_path, student_file)
    with pytest.raises(DeployFileError):
        Deployable.load(path)
    code, _, err = run(["predict", str(path)], capsys)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_export_and_predict_refusals(tmp_path, student_file, capsys):
    t = init_teacher(4, np.random.default_rng(0))
    t.save(tmp_path / "t.npz")
    code, _, err = run(["export", str(tmp_path / "t.npz")], capsys)
    assert code == 2 and "only a quantized student" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["export", str(tmp_path / "missing.npz")], capsys)
    assert code == 2 and "not found" in err
    out = tmp_path / "m.tqd"
    assert run(["export", str(student_file), "--out", str(out)], capsys)[0] == 0
    code, _, err = run(["predict", str(out), "--task", "lorenz"], capsys)
    assert code == 2 and "inputs" in err and len(err.strip().splitlines()) == 1


def test_cli_predict_finds_the_data_file_it_was_trained_on(tmp_path, capsys):
    from ternq.tasks import from_file

    t = np.arange(300) * 0.1
    data = tmp_path / "two.npy"
    np.save(data, np.stack([np.sin(t), np.cos(1.3 * t)], 1))
    task = from_file(data)
    s = student_from(init_teacher(4, np.random.default_rng(0), 2, 2))
    s.meta["task"] = task.describe()
    s.save(tmp_path / "s.npz")
    out = tmp_path / "s.tqd"
    assert run(["export", str(tmp_path / "s.npz"), "--out", str(out)], capsys)[0] == 0
    code, stdout, err = run(["predict", str(out), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["task"]["name"] == "data" and res["eval_mse"] == evaluate(s, task)["eval_mse"]
    data.rename(tmp_path / "moved.npy")
    code, _, err = run(["predict", str(out)], capsys)
    assert code == 2 and "pass --data FILE" in err
    code, stdout, _ = run(["predict", str(out), "--data", str(tmp_path / "moved.npy"), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["eval_mse"] == res["eval_mse"]


def _with_manifest(good: bytes, edit, payload_edit=None) -> bytes:
    """A deployable file whose manifest (and optionally payload) were changed, with a valid checksum."""
    import hashlib

    (m,) = struct.unpack("<I", good[8:12])
    man = json.loads(good[12 : 12 + m])
    payload = bytearray(good[12 + m:])
    if payload_edit is not None:
        payload_edit(man, payload)
        man["sha256"] = hashlib.sha256(bytes(payload)).hexdigest()
    edit(man)
    head = json.dumps(man).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + bytes(payload)


def _set(path, value):
    def edit(man):
        node = man
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


def _float_at(section, value):
    def edit(man, payload):
        sec = next(s for s in man["sections"] if s["name"] == section)
        payload[sec["offset"] : sec["offset"] + 4] = np.float32(value).tobytes()
    return edit


@pytest.mark.parametrize("edit,payload_edit", [
    (_set(["dims"], [1, 8, 1]), None), (_set(["task"], "sine"), None), (_set(["info"], [1]), None),
    (_set(["counts"], 7), None), (_set(["packing"], None), None), (_set(["sections"], {"a": 1}), None),
    (_set(["sections", 0], "trits"), None), (_set(["sections", 1, "offset"], "0"), None),
    (_set(["sections", 1, "offset"], -4), None), (_set(["sections", 1, "bytes"], 10**9), None),
    (_set(["sections", 2, "name"], "scales"), None), (_set(["sections", 1, "shape"], [3]), None),
    (_set(["dims", "hidden"], True), None), (_set(["dims", "hidden"], 10**9), None),
    (_set(["dims", "n_in"], 0), None), (_set(["dims", "hidden"], 9), None), (_set(["counts", "zero"], 0), None),
    (_set(["dt"], 0.2), None), (_set(["cell"], "LSTM"), None), (_set(["version"], "1"), None),
    (_set(["version"], True), None),
    (lambda man: None, _float_at("scales", np.nan)), (lambda man: None, _float_at("scales", np.inf)),
    (lambda man: None, _float_at("tau", -np.inf)), (lambda man: None, _float_at("b", np.nan)),
    (lambda man: None, _float_at("b_out", np.nan)),
])
def test_every_malformed_field_is_one_line_exit_2(edit, payload_edit, sine_student, tmp_path, capsys):
    good = Deployable.from_model(sine_student).to_bytes()
    path = tmp_path / "bad.tqd"
    path.write_bytes(_with_manifest(good, edit, payload_edit))
    with pytest.raises(DeployFileError):
        Deployable.load(path)
    for argv in (["predict", str(path)], ["predict", str(path), "--int"],
                 ["export", str(path), "--format", "c", "--out", str(tmp_path / "c")]):
        code, _, err = run(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert "Internal error" not in err


def test_unchanged_manifest_still_loads(sine_student):
    good = Deployable.from_model(sine_student).to_bytes()
    back = Deployable.from_bytes(_with_manifest(good, lambda man: None))
    assert back.params().tobytes() == Deployable.from_model(sine_student).params().tobytes()


def test_sizes_account_for_every_byte(sine_student, student_file, tmp_path, capsys):
    dep = Deployable.from_model(sine_student)
    s = dep.sizes()
    assert s["file_bytes"] == len(dep.to_bytes()) == 12 + s["manifest_bytes"] + s["payload_bytes"]
    assert s["payload_bytes"] == s["level_bytes"] + s["float_bytes"] and s["weight_format"] == "ternary"
    assert s["level_bytes"] == -(-dep.n_weights // 5) and s["float_bytes"] == 4 * (5 * 8 + 2)
    code, stdout, _ = run(["export", str(student_file), "--out", str(tmp_path / "m.tqd"), "--json"], capsys)
    res = json.loads(stdout)
    assert code == 0 and {k: res[k] for k in s} == s


def test_predict_csv_is_the_percent_9g_of_each_prediction(student_file, sine_student, tmp_path, capsys):
    code, _, err = run(["predict", str(student_file), "--out", str(tmp_path / "p.csv")], capsys)
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    ys0, _ = _forward(sine_student, get_task("sine").eval_set()[0])
    flat = np.ascontiguousarray(ys0).ravel()
    assert len(lines) == flat.size and lines == ["%.9g" % float(v) for v in flat]  # noqa: UP031 (C's printf)
    assert np.array_equal(np.array(lines, np.float32), flat)  # 9 digits: every float32 comes back exactly


def test_predict_and_export_help_name_the_models_own_task(capsys):
    for command in ("predict", "export"):
        code, out, _ = run([command, "--help"], capsys)
        assert code == 0
        text = " ".join(out.split())
        assert "the one the model was trained on" in text and "[default: sine]" not in text


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_fifo_or_a_device_is_refused_without_blocking(command, tmp_path, capsys):
    import os

    fifo = tmp_path / "model.tqd"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    for path in (fifo, "/dev/zero"):
        code, _, err = run([command, str(path)] + (["--out", str(tmp_path / "x.tqd")] if command == "export" else []),
                           capsys)
        assert code == 2 and "not a regular file" in err and len(err.strip().splitlines()) == 1
