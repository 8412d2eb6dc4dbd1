"""Deployment of every weight format: level packing against a slow version written from the file's
specification, hostile files, float inference bit-identical to the training forward, integer inference
against the plain-Python oracle, and the CLI on files of each format."""

import hashlib
import json
import struct

import numpy as np
import oracle_int
import pytest
from conftest import invoke as run
from conftest import one_line_exit_2
from deployables import random_deployable, random_levels, training_forward
from hypothesis import given, settings
from hypothesis import strategies as st

from ternq import formats
from ternq.deploy import MAGIC, Deployable, DeployFileError, encoding, pack_levels, unpack_levels
from ternq.device.fixed import IntModel
from ternq.tasks import get_task

ALL = list(formats.FORMATS)


def slow_pack(levels, fmt: formats.Format) -> bytes:
    """The packing as the module docstring states it, one weight at a time in plain Python."""
    out = []
    if fmt.name == "ternary":
        digits = [int(q) + 1 for q in levels]
        digits += [1] * (-len(digits) % 5)
        for i in range(0, len(digits), 5):
            out.append(sum(d * 3**k for k, d in enumerate(digits[i : i + 5])))
        return bytes(out)
    k = fmt.per_byte
    bits = 8 // k
    if fmt.qmax == formats.BINARY:
        codes = [1 if q > 0 else 0 for q in levels]
    else:
        codes = [int(q) % (1 << bits) for q in levels]  # two's complement in `bits` bits
    codes += [0] * (-len(codes) % k)
    for i in range(0, len(codes), k):
        out.append(sum(c << (bits * f) for f, c in enumerate(codes[i : i + k])))
    return bytes(out)


@given(name=st.sampled_from(ALL), n=st.integers(0, 70), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_every_format_packs_as_specified_and_round_trips(name, n, seed):
    fmt = formats.get(name)
    q = random_levels(np.random.default_rng(seed), fmt, n)
    data = pack_levels(q, fmt)
    assert data == slow_pack(q.tolist(), fmt)
    assert len(data) == fmt.packed_bytes(n)
    back = unpack_levels(data, n, fmt)
    assert back.dtype == np.int8 and np.array_equal(back, q)


def test_named_encodings_and_nibble_order():
    assert [encoding(formats.get(n)) for n in ("ternary", "binary", "int2", "int3", "int4", "int8")] == [
        "trit5", "sign8", "int2x4", "int3x2", "int4x2", "int8x1"]
    int4, int8, binary = formats.get("int4"), formats.get("int8"), formats.get("binary")
    assert pack_levels(np.array([1, -2, 7], np.int8), int4) == bytes([0xE1, 0x07])  # first weight: low nibble
    assert pack_levels(np.array([-127, 127, 0], np.int8), int8) == bytes([0x81, 0x7F, 0x00])
    assert pack_levels(np.array([1, -1, -1, 1, 1, -1, -1, -1, 1], np.int8), binary) == bytes([0b00011001, 1])


@pytest.mark.parametrize("name,data,n,needle", [
    ("int4", bytes([0x08]), 2, "out of range"),  # -8 is not an int4 level (symmetric: +-7)
    ("int4", bytes([0x81]), 2, "out of range"),
    ("int4", bytes([0x01, 0x10]), 3, "padding"),  # the fourth nibble pads the last byte
    ("int4", bytes([0x01]), 3, "cannot hold"),
    ("int8", bytes([0x80]), 1, "out of range"),
    ("int3", bytes([0x04]), 1, "out of range"),
    ("int2", bytes([0x02]), 1, "out of range"),
    ("int2", bytes([0x04]), 1, "padding"),
    ("binary", bytes([0x03]), 1, "padding"),
    ("binary", bytes([0x01, 0x00]), 1, "cannot hold"),
    ("ternary", bytes([243]), 5, "out of range"),
])
def test_hostile_packed_levels_are_refused(name, data, n, needle):
    with pytest.raises(ValueError, match=needle):
        unpack_levels(data, n, formats.get(name))


@pytest.mark.parametrize("name", ALL)
def test_out_of_range_levels_are_refused_on_the_way_in(name):
    fmt = formats.get(name)
    bad = np.array([0 if fmt.qmax == formats.BINARY else -fmt.qmax - 1], np.int8)  # int8: -128
    with pytest.raises(ValueError, match="(levels|trits) must"):
        pack_levels(bad, fmt)
    rng = np.random.default_rng(0)
    dep = random_deployable(rng, name, 1, 2, 1)
    with pytest.raises(ValueError, match="levels must"):
        Deployable(1, 2, 1, np.full_like(dep.levels_W, bad[0]), dep.levels_out, dep.scales, dep.b, dep.tau,
                   dep.b_out, weight_format=name)


@pytest.mark.parametrize("name", ALL)
def test_file_round_trip_of_every_format(name):
    rng = np.random.default_rng(ALL.index(name))
    dep = random_deployable(rng, name, 2, 5, 2)
    raw = dep.to_bytes()
    (m,) = struct.unpack("<I", raw[8:12])
    man = json.loads(raw[12 : 12 + m])
    fmt = formats.get(name)
    sec = man["sections"][0]
    assert sec["dtype"] == encoding(fmt) and sec["shape"] == [dep.n_weights]
    assert sec["bytes"] == fmt.packed_bytes(dep.n_weights)
    if name == "ternary":  # the file older ternq writes and reads: no format key, a trits section
        assert "weight_format" not in man and sec["name"] == "trits" and man["counts"]["trits"] == dep.n_weights
    else:
        assert man["weight_format"] == name and sec["name"] == "levels"
    back = Deployable.from_bytes(raw)
    assert back.weight_format == name and np.array_equal(back.levels(), dep.levels())
    assert back.params().tobytes() == dep.params().tobytes()
    assert back.sizes()["level_bytes"] == sec["bytes"]


def _edited(raw: bytes, edit=None, payload_edit=None) -> bytes:
    (m,) = struct.unpack("<I", raw[8:12])
    man = json.loads(raw[12 : 12 + m])
    payload = bytearray(raw[12 + m:])
    if payload_edit is not None:
        payload_edit(man, payload)
        man["sha256"] = hashlib.sha256(bytes(payload)).hexdigest()
    if edit is not None:
        edit(man)
    head = json.dumps(man).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + bytes(payload)


def _levels_byte(value):
    def edit(man, payload):
        payload[man["sections"][0]["offset"]] = value
    return edit


def _last_levels_byte(value):
    def edit(man, payload):
        sec = man["sections"][0]
        payload[sec["offset"] + sec["bytes"] - 1] = value
    return edit


@pytest.mark.parametrize("name,edit,payload_edit", [
    ("int4", None, _levels_byte(0x88)),  # -8 in both nibbles
    ("int8", None, _levels_byte(0x80)),  # -128
    ("int4", None, _last_levels_byte(0xF1)),  # 2 * 5 * 7 + 5 = 75 levels: the last byte holds padding
    ("int2", None, _last_levels_byte(0xFF)),
    ("binary", None, _last_levels_byte(0xFF)),
    ("int4", lambda man: man.__setitem__("weight_format", "int5"), None),
    ("int4", lambda man: man.__setitem__("weight_format", "ternary"), None),
    ("int4", lambda man: man.__setitem__("weight_format", "int9"), None),
    ("int4", lambda man: man.__setitem__("weight_format", 4), None),
    ("int4", lambda man: man.pop("weight_format"), None),
    ("int8", lambda man: man["sections"][0].__setitem__("dtype", "int4x2"), None),
    ("int8", lambda man: man["sections"][0].__setitem__("name", "trits"), None),
    ("int8", lambda man: man["counts"].__setitem__("zero", -1), None),
    ("int8", lambda man: man["packing"].__setitem__("order", "msb"), None),
    ("ternary", lambda man: man.__setitem__("weight_format", "ternary"), None),
])
def test_hostile_files_of_every_format_are_one_line_errors(name, edit, payload_edit, tmp_path, capsys):
    rng = np.random.default_rng(7)
    dep = random_deployable(rng, name, 2, 5, 1)
    bad = _edited(dep.to_bytes(), edit, payload_edit)
    with pytest.raises(DeployFileError):
        Deployable.from_bytes(bad)
    path = tmp_path / "bad.tqd"
    path.write_bytes(bad)
    one_line_exit_2(["predict", str(path), "--task", "sine"], capsys, "bad.tqd")


@pytest.mark.parametrize("name", ALL)
def test_float_inference_is_bit_identical_to_the_training_forward(name):
    rng = np.random.default_rng(11)
    dep = Deployable.from_bytes(random_deployable(rng, name, 3, 7, 2).to_bytes())
    X = rng.normal(0, 1, (5, 20, 3)).astype(np.float32)
    X[1, :4] = 0.0
    ys, hs = dep.predict(X)
    ys0, hs0 = training_forward(dep.params(), X, dep.dims)
    assert ys.tobytes() == ys0.tobytes() and hs.tobytes() == hs0.tobytes()
    assert np.isfinite(ys).all() and np.abs(hs[:, 1:]).max() > 0.05  # the state moves: a real test
    yf, _ = dep.predict(X, factored=True)  # one multiply per row: close, not identical
    assert np.allclose(yf, ys0, rtol=1e-4, atol=1e-5)


@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(ALL), I=st.integers(1, 3), H=st.integers(1, 6),
       O=st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_integer_inference_equals_the_python_oracle_for_every_format(seed, name, I, H, O):
    rng = np.random.default_rng(seed)
    im = IntModel.from_deployable(random_deployable(rng, name, I, H, O))
    Xq = rng.integers(-4 * 65536, 4 * 65536, size=(2, 6, I)).astype(np.int32)
    Xq[0, 0, 0] = 2**31 - 1  # clamped to x_max
    ys, hs = im.predict_q(Xq)
    ys0, hs0 = oracle_int.forward(im, Xq)
    assert ys.tolist() == ys0 and hs.tolist() == hs0


@pytest.mark.parametrize("name", ["binary", "int4", "int8"])
def test_integer_inference_tracks_the_float_model(name):
    rng = np.random.default_rng(13)
    dep = random_deployable(rng, name, 2, 12, 2)
    X = rng.normal(0, 1, (4, 30, 2)).astype(np.float32)
    ys, _ = dep.predict(X)
    yq = IntModel.from_deployable(dep).predict(X)
    assert np.abs(yq - ys).max() < 2e-3 and np.abs(ys).max() > 0.05  # a few Q16 steps per operation


def test_integer_input_bound_keeps_sums_in_int32():
    """x_max leaves room in every row for its |levels| times the largest input and state, and no more room than
    that (up to PRE_MAX): the sum of a row that meets the bound, computed in Python integers, fits int32."""
    rng = np.random.default_rng(17)
    for name, H in (("int8", 200), ("int8", 260), ("int4", 300), ("ternary", 300), ("binary", 40)):
        dep = random_deployable(rng, name, 3, H, 1)
        im = IntModel.from_deployable(dep)
        a = np.abs(dep.levels_W.astype(np.int64))
        worst = a[:, :3].sum(axis=1) * im.x_max + a[:, 3:].sum(axis=1) * 65536
        assert worst.max() <= 2**31 - 1
        assert im.x_max == 2**30 or (a[:, :3].sum(axis=1) * (im.x_max + 1) + a[:, 3:].sum(axis=1) * 65536).max() \
            > 2**31 - 1  # the largest such bound
        assert oracle_int.forward(im, np.full((1, 2, 3), im.x_max, np.int64))[0]  # the oracle runs at the bound
    dep = random_deployable(rng, "int8", 1, 259, 1)
    dep.levels_W[0, 1:] = 127  # 259 hidden levels of 127: 259 * 127 * 2^16 > 2^31 - 1 (258 of them fit)
    with pytest.raises(ValueError, match="overflow"):
        IntModel.from_deployable(dep)
    dep = random_deployable(rng, "int8", 1, 259, 1)
    dep.levels_out[0] = -127
    with pytest.raises(ValueError, match="overflow"):
        IntModel.from_deployable(dep)


@pytest.mark.parametrize("name", ["int4", "int8", "binary"])
def test_cli_predict_runs_a_file_of_each_format(name, tmp_path, capsys):
    rng = np.random.default_rng(19)
    dep = random_deployable(rng, name, 3, 8, 3)
    path = tmp_path / f"{name}.tqd"
    dep.save(path)
    code, stdout, err = run(["predict", str(path), "--task", "lorenz", "--json", "--out", str(tmp_path / "p.npy")],
                            capsys)
    assert code == 0, err
    X, Y = get_task("lorenz").eval_set()
    ys0, _ = training_forward(dep.params(), X, dep.dims)
    assert np.load(tmp_path / "p.npy").tobytes() == ys0.tobytes()
    assert json.loads(stdout)["eval_mse"] == dep.mse(X, Y)[0]
    code, stdout, err = run(["predict", str(path), "--task", "lorenz", "--int", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["eval_mse"] == IntModel.from_deployable(dep).mse(X, Y)[0]
    code, stdout, err = run(["export", str(path), "--out", str(tmp_path / "again.tqd"), "--json"], capsys)
    assert code == 0, err
    assert (tmp_path / "again.tqd").read_bytes() == path.read_bytes()
    assert json.loads(stdout)["weight_format"] == name


# ---- trained students of each format


@pytest.fixture(scope="module")
def trained():
    """Tiny trained sine students of each format from one teacher (few epochs: bit-identity is the point)."""
    from ternq import StudentConfig, TeacherConfig, evaluate, train_student, train_teacher

    task = get_task("sine")
    teacher, _ = train_teacher(task, TeacherConfig(hidden=8, epochs=40), seed=0)
    out = {}
    for name in ("binary", "int4", "int8"):
        s, _ = train_student(teacher, task, StudentConfig(hidden=8, epochs=40, weight_format=name), seed=0)
        s.meta["figures"] = evaluate(s, task)
        out[name] = s
    return out


@pytest.mark.parametrize("name", ["binary", "int4", "int8"])
def test_a_trained_student_of_each_format_deploys_bit_identically(trained, name, tmp_path, capsys):
    from ternq import evaluate, predict

    s = trained[name]
    dep = Deployable.from_bytes(Deployable.from_model(s).to_bytes())
    assert dep.weight_format == name and np.array_equal(dep.levels(), s.levels())
    assert np.array_equal(dep.params(), s.params())
    X, Y = get_task("sine").eval_set()
    ys, hs = dep.predict(X)
    ys0, hs0 = predict(s, X)
    assert ys.tobytes() == np.ascontiguousarray(ys0).tobytes()
    path = tmp_path / "s.npz"
    s.save(path)
    code, stdout, err = run(["predict", str(path), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["eval_mse"] == evaluate(s, get_task("sine"))["eval_mse"] == res["eval_mse_at_training"]
    assert res["weight_format"] == name
    code, stdout, err = run(["predict", str(path), "--int", "--json"], capsys)
    assert code == 0, err
    im = IntModel.from_deployable(dep)
    assert json.loads(stdout)["eval_mse"] == im.mse(X, Y)[0] <= 1.1 * res["eval_mse"]
    Xq = im.quantize_inputs(X[:3, :30])
    assert im.predict_q(Xq)[0].tolist() == oracle_int.forward(im, Xq)[0]
