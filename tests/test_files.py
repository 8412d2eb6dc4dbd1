"""Crafted and hostile files: each refused with one line before anything big is read or allocated."""

import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
import tomllib
from conftest import invoke as run
from hypothesis import given, settings
from hypothesis import strategies as st

from ternq import files, model
from ternq.files import FileInputError, read_toml, toml_depth
from ternq.model import Model, ModelFileError, init_teacher, student_from
from ternq.rng import stream


def npy_bytes_claiming(shape, dtype="<f8", data=b""):
    """A .npy file whose header declares ``shape`` but which holds only ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


def one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err and "Internal error" not in err and "Warning" not in err
    return lines[0]


# ---- regular files and bounded reads

def test_only_regular_files(tmp_path, fifo):
    with pytest.raises(FileInputError, match="not found"):
        files.regular_file(tmp_path / "nope")
    with pytest.raises(FileInputError, match="directory"):
        files.regular_file(tmp_path)
    for path in ("/dev/zero", fifo):
        with pytest.raises(FileInputError, match="not a regular file"):
            files.read_bytes(path, 100)
    (tmp_path / "ok").write_bytes(b"12345")
    assert files.read_bytes(tmp_path / "ok", 5) == b"12345"
    with pytest.raises(FileInputError, match="more than"):
        files.read_bytes(tmp_path / "ok", 4)


def test_npy_header_claiming_1e12_rows_is_refused_before_allocating(tmp_path):
    path = tmp_path / "big.npy"
    path.write_bytes(npy_bytes_claiming((10**12, 1)))
    tracemalloc.start()
    with pytest.raises(FileInputError, match="declares shape"):
        files.read_npy(path, max_count=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10**6
    # a header that is honest about its count but not about its bytes
    path.write_bytes(npy_bytes_claiming((100,), data=b"\0" * 80))
    with pytest.raises(FileInputError, match="damaged"):
        files.read_npy(path, max_count=1000)
    good = np.arange(6.0).reshape(3, 2)
    np.save(path, good)
    assert np.array_equal(files.read_npy(path, max_count=6), good)


@pytest.mark.parametrize("dtype", ["|O", "<c16", "[('a', '<f8')]"])
def test_npy_refuses_objects_and_odd_dtypes(tmp_path, dtype):
    path = tmp_path / "x.npy"
    descr = [("a", "<f8")] if dtype.startswith("[") else dtype
    path.write_bytes(npy_bytes_claiming((2,), descr, b"\0" * 16))
    with pytest.raises(FileInputError):
        files.read_npy(path, max_count=10)


# ---- TOML

def test_read_toml_matches_tomllib_and_ignores_brackets_in_strings(tmp_path):
    text = ('# a comment with [[[[ and {{{{\n'
            'title = "x[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]"\n'
            "lit = '{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'\n"
            'multi = """\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"""\n'
            'esc = "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["\n'
            '[student]\nwidths = [[1, 2], [3, {a = [4]}]]\n')
    path = tmp_path / "ok.toml"
    path.write_text(text)
    assert toml_depth(text) == 4
    assert read_toml(path) == tomllib.loads(text)


@pytest.mark.parametrize("kind", ["array", "inline", "tables"])
def test_deep_toml_is_refused_before_parsing(tmp_path, kind):
    n = 5000
    text = {"array": "x = " + "[" * n + "]" * n + "\n",
            "inline": "x = " + "{a = " * n + "1" + "}" * n + "\n",
            "tables": "[" + ".".join(["a"] * n) + "]\nx = 1\n"}[kind]
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(FileInputError, match="levels deep") as exc:
        read_toml(path)
    assert "\n" not in str(exc.value)
    shallow = tmp_path / "shallow.toml"
    shallow.write_text("x = " + "[" * 60 + "]" * 60 + "\n")
    assert read_toml(shallow) == tomllib.loads(shallow.read_text())


def test_toml_bad_files(tmp_path, fifo):
    for path in (fifo, "/dev/zero", tmp_path):
        with pytest.raises(FileInputError):
            read_toml(path)
    big = tmp_path / "big.toml"
    big.write_text("x = 1\n" * 100)
    with pytest.raises(FileInputError, match="allowed"):
        read_toml(big, max_bytes=50)
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [1,\n")
    with pytest.raises(FileInputError, match="not valid TOML") as exc:
        read_toml(bad)
    assert "\n" not in str(exc.value)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FileInputError, match="UTF-8"):
        read_toml(binary)


NESTED = st.recursive(st.integers(-5, 5) | st.text(alphabet="[]{}#'\"ab\\", max_size=6),
                      lambda inner: st.lists(inner, max_size=3), max_leaves=12)


def list_depth(v):
    return 1 + max((list_depth(x) for x in v), default=0) if isinstance(v, list) else 0


@settings(max_examples=150, deadline=None, derandomize=True)
@given(value=NESTED)
def test_toml_depth_is_the_nesting_of_arrays(value, tmp_path_factory):
    """JSON arrays of ints and strings are TOML arrays: the scan must see exactly their nesting."""
    text = f"x = {json.dumps(value)}\n"
    assert toml_depth(text) == list_depth(value)
    path = tmp_path_factory.mktemp("toml") / "v.toml"
    path.write_text(text)
    assert read_toml(path) == {"x": value}


# ---- model files

def a_student():
    return student_from(init_teacher(5, stream(0, "t"), 2, 1))


def test_model_round_trip(tmp_path):
    for m in (init_teacher(5, stream(0, "t"), 2, 1), a_student()):
        path = tmp_path / f"{m.kind}.npz"
        m.save(path)
        back = Model.load(path)
        assert back.kind == m.kind and back.dims == m.dims and back.theta.tobytes() == m.theta.tobytes()


def write_npz(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def header(**over):
    h = {"format": "ternq-model", "version": 1, "kind": "teacher", "n_in": 1, "hidden": 4, "n_out": 1, "meta": {}}
    h.update(over)
    return npy(np.array(json.dumps(h)))


def test_small_npz_that_inflates_is_refused_from_its_directory(tmp_path):
    path = tmp_path / "bomb.npz"
    inflated = model.MAX_HEADER_BYTES + (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("header.npy", "w") as fh:
            block = b"\0" * (1 << 20)
            for _ in range(inflated >> 20):
                fh.write(block)
        zf.writestr("theta.npy", npy(np.zeros(4, np.float32)))
    assert path.stat().st_size < inflated / 100
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="uncompressed"):
        Model.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < inflated / 10


def test_theta_member_must_declare_what_the_header_needs(tmp_path):
    path = tmp_path / "m.npz"
    need = init_teacher(4, stream(0, "t")).theta.size
    write_npz(path, {"header": header(), "theta": npy_bytes_claiming((10**12,), "<f4")})
    with pytest.raises(ModelFileError, match="expected"):
        Model.load(path)
    write_npz(path, {"header": header(), "theta": npy(np.zeros((need, 1), np.float32))})
    with pytest.raises(ModelFileError, match="expected"):
        Model.load(path)
    write_npz(path, {"header": header(), "theta": npy(np.zeros(need, np.int32))})
    with pytest.raises(ModelFileError, match="int32"):
        Model.load(path)
    write_npz(path, {"header": header(), "theta": npy(np.full(need, np.nan, np.float32))})
    with pytest.raises(ModelFileError, match="non-finite"):
        Model.load(path)
    write_npz(path, {"header": header(), "theta": npy(np.zeros(need, np.float32))})
    assert Model.load(path).hidden == 4


@pytest.mark.parametrize("over, words", [
    ({"hidden": 10**12}, "damaged"), ({"hidden": 2**25}, "beyond"), ({"hidden": 4.5}, "damaged"),
    ({"hidden": True}, "damaged"), ({"n_in": -1}, "damaged"), ({"kind": ["x"]}, "kind"),
    ({"meta": [1]}, "meta"), ({"version": 99}, "version"), ({"format": "other"}, "not a ternq"),
])
def test_header_fields_are_validated(tmp_path, over, words):
    path = tmp_path / "m.npz"
    write_npz(path, {"header": header(**over), "theta": npy(np.zeros(10, np.float32))})
    with pytest.raises(ModelFileError, match=words):
        Model.load(path)


def test_deeply_nested_json_header_and_pickles_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    write_npz(path, {"header": npy(np.array("[" * 100000 + "]" * 100000)), "theta": npy(np.zeros(3, np.float32))})
    with pytest.raises(ModelFileError):
        Model.load(path)
    write_npz(path, {"header": npy(np.array([{"a": 1}], dtype=object)), "theta": npy(np.zeros(3, np.float32))})
    with pytest.raises(ModelFileError, match="object"):
        Model.load(path)


def test_student_scales_must_be_positive(tmp_path):
    s = a_student()
    path = tmp_path / "s.npz"
    s.save(path)
    assert Model.load(path).kind == "student"
    head = {"format": "ternq-model", "version": 1, "kind": "student", "n_in": 2, "hidden": 5, "n_out": 1}
    for bad in (0.0, -1.0):
        s.theta[-1] = bad
        np.savez(path, theta=s.theta, header=np.array(json.dumps(head)))
        with pytest.raises(ModelFileError, match="scale"):
            Model.load(path)


def test_model_file_faults_through_the_cli(tmp_path, capsys, fifo):
    bomb = tmp_path / "bomb.npz"
    write_npz(bomb, {"header": header(), "theta": npy_bytes_claiming((10**12,), "<f4")})
    for path in (bomb, fifo, "/dev/zero", tmp_path / "missing.npz"):
        code, _, err = run(["student", "--teacher", str(path), "--epochs", "2", "--quiet",
                            "--out", str(tmp_path / "s.npz")], capsys)
        one_line_error(code, err)


# ---- data files through the CLI

@pytest.mark.parametrize("make", ["dev_zero", "fifo", "npy_1e12", "npy_object", "binary_csv", "huge_csv"])
def test_crafted_data_files_through_the_cli(tmp_path, capsys, fifo, make, monkeypatch):
    from ternq.tasks import series
    if make == "dev_zero":
        path = "/dev/zero"
    elif make == "fifo":
        path = fifo
    elif make == "npy_1e12":
        path = tmp_path / "x.npy"
        path.write_bytes(npy_bytes_claiming((10**12, 1)))
    elif make == "npy_object":
        path = tmp_path / "x.npy"
        path.write_bytes(npy_bytes_claiming((3,), "|O", b"\0" * 24))
    elif make == "binary_csv":
        path = tmp_path / "x.csv"
        path.write_bytes(b"\0" * 1000)
    else:
        monkeypatch.setattr(series, "MAX_CSV_BYTES", 1000)
        path = tmp_path / "x.csv"
        path.write_text("1.0\n" * 1000)
    code, _, err = run(["teacher", "--data", str(path), "--epochs", "2", "--hidden", "2", "--quiet",
                        "--out", str(tmp_path / "t.npz")], capsys)
    one_line_error(code, err)
