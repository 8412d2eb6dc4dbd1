"""Weight formats in training: the quantizers against the oracle, scales, the model file, PTQ, the batched
kernel's bits, the settings and the CLI."""

import io
import json
from dataclasses import replace

import numpy as np
import oracle
import pytest
from conftest import QUICK, one_line_exit_2

from ternq import formats, multi
from ternq.experiment.plans import parse_factor
from ternq.kernels.cell import unpack
from ternq.kernels.ternary import init_scales, level, quantize, trit
from ternq.model import Model, ModelFileError, init_teacher, student_from
from ternq.rng import stream
from ternq.search import coordinate_search
from ternq.settings import SettingsError, StudentSettings
from ternq.tasks import Sine
from ternq.train import StudentConfig, TeacherConfig, train_student, train_teacher

I, H, O = 2, 5, 3
TASK = Sine(steps=12)


def random_student(qmax, dtype, seed=0):
    """Shadow weights whose ratios w / s span every level of the format and beyond, with exact halves and the
    floats on either side of them."""
    rng = np.random.default_rng(seed)
    t = init_teacher(H, rng, I, O)
    theta = np.concatenate([t.theta, np.ones(2 * H + O, np.float32)]).astype(dtype)
    n = t.theta.size
    scales = rng.uniform(0.05, 0.5, 2 * H + O).astype(dtype)
    theta[n:] = scales
    top = max(qmax, 1) + 2
    W = theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
    W[:] = rng.uniform(-top, top, W.shape) * scales[: 2 * H, None]
    halves = (np.arange(W.shape[1]) % (2 * top) - top + 0.5).astype(dtype)  # k + 1/2 for k in -top..top-1
    W[0] = halves * scales[0]
    W[1] = np.nextafter(halves, dtype(np.inf)) * scales[1]
    W[2] = np.nextafter(halves, dtype(-np.inf)) * scales[2]
    return theta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_every_quantizer_against_the_oracle(name, dtype):
    qmax = formats.get(name).qmax
    for seed in range(3):
        theta = random_student(qmax, dtype, seed)
        p = np.empty(theta.size - (2 * H + O), dtype)
        quantize(theta, I, H, O, p, qmax)
        want = oracle.quantize_format(theta, I, H, O, qmax)
        assert p.tobytes() == want.tobytes()


def test_levels_of_every_format_stay_in_their_range_and_reach_its_ends():
    for name, fmt in formats.FORMATS.items():
        s = Model("student", I, H, O, random_student(fmt.qmax, np.float32), weight_format=name).levels()
        top = max(fmt.qmax, 1)
        want = {-1, 1} if fmt.qmax == formats.BINARY else set(range(-top, top + 1))
        got = set(np.unique(s).tolist())
        assert got <= want and {-top, top} <= got, name
        assert s.dtype == np.int8


def test_ternary_level_is_trit_bit_for_bit():
    rng = np.random.default_rng(1)
    s = np.float32(0.37)
    r = np.concatenate([rng.uniform(-3, 3, 2000), [0.5, -0.5, 0.0, 1.5, -1.5]]).astype(np.float32)
    w = r * s
    w = np.concatenate([w, np.nextafter(w, np.float32(np.inf)), np.nextafter(w, np.float32(-np.inf))])
    for x in w:
        assert np.float32(level(x, s, 1)) == trit(x, s)
    # binary: the sign, +1 at zero
    assert [level(x, 1.0, formats.BINARY) for x in (-0.0, 0.0, -1e-30, 3.0)] == [1.0, 1.0, -1.0, 1.0]


def test_starting_scales_per_format():
    t = init_teacher(H, stream(0, "t"), I, O)
    tern, binary, int8 = (student_from(t, f) for f in ("ternary", "binary", "int8"))
    n = t.theta.size
    W = t.theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
    np.testing.assert_allclose(tern.theta[n: n + 2 * H], np.abs(W).mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(binary.theta[n:], tern.theta[n:])  # XNOR-net's mean|w|
    np.testing.assert_allclose(int8.theta[n: n + 2 * H], np.abs(W).max(axis=1) / 127, rtol=1e-6)
    lv = int8.levels()[: W.size].reshape(W.shape)
    assert (np.abs(lv).max(axis=1) == 127).all()  # every row reaches its largest level, none clips beyond
    theta = t.theta.astype(np.float64)
    theta = np.concatenate([theta, np.zeros(2 * H + O)])
    init_scales(theta, I, H, O, 0, np.full(2 * H + O, 7, np.int64), np.ones(2 * H + O, np.int8))
    np.testing.assert_allclose(theta[n: n + 2 * H], np.abs(W).max(axis=1) / 7, rtol=1e-6)


def test_model_file_keeps_the_weight_format(tmp_path):
    s = student_from(init_teacher(H, stream(0, "t"), I, O), "int4")
    s.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    assert back.weight_format == "int4" and back.theta.tobytes() == s.theta.tobytes()
    np.testing.assert_array_equal(back.levels(), s.levels())
    with np.load(tmp_path / "m.npz") as z:
        assert "levels" in z.files and "trits" not in z.files
        header = json.loads(str(z["header"]))
        assert header["weight_format"] == "int4"
    with pytest.raises(ValueError, match="levels, not trits"):
        s.trits()
    assert s.weight_bytes() == formats.weight_bytes(formats.get("int4"), I, H, O)
    assert s.copy().weight_format == "int4"

    def rewrite(header_change, path):
        new = {k: v for k, v in header.items() if k != "weight_format"}
        if header_change is not None:
            new.update(header_change)
        buf = io.BytesIO()
        np.savez(buf, theta=s.theta, header=np.array(json.dumps(new)))
        path.write_bytes(buf.getvalue())
        return path

    old = Model.load(rewrite(None, tmp_path / "old.npz"))  # written before there were formats: ternary
    assert old.weight_format == "ternary"
    for bad in ("int9", 4, None):
        with pytest.raises(ModelFileError, match="unknown weight format"):
            Model.load(rewrite({"weight_format": bad}, tmp_path / "bad.npz"))


@pytest.fixture(scope="module")
def teacher():
    t, _ = train_teacher(TASK, TeacherConfig(hidden=H, epochs=30, batch=4), seed=0)
    return t


def test_plain_ptq_is_the_teacher_quantized(teacher):
    for name in ("int8", "binary", "ternary"):
        cfg = StudentConfig(hidden=H, epochs=20, batch=4, weight_format=name, ptq=True)
        model, hist = train_student(teacher, TASK, cfg, seed=0)
        assert len(hist.loss) == 0 and cfg.total_epochs == 0
        want = student_from(teacher, name)
        np.testing.assert_array_equal(model.params(), want.params())
        np.testing.assert_array_equal(model.levels(), want.levels())


def test_ptq_finetune_keeps_the_levels_and_moves_the_scales(teacher):
    cfg = StudentConfig(hidden=H, epochs=20, batch=4, weight_format="int4", ptq=True, finetune_epochs=15)
    model, hist = train_student(teacher, TASK, cfg, seed=0)
    assert len(hist.loss) == 15 and np.isfinite(hist.loss).all()
    start = student_from(teacher, "int4")
    np.testing.assert_array_equal(model.levels(), start.levels())
    assert not np.array_equal(model.theta[model.n_cell:], start.theta[model.n_cell:])


@pytest.mark.parametrize("name", ["int8", "int4", "ternary"])
def test_scales_step_at_the_rate_over_qmax(teacher, name):
    """Adam's first step moves each parameter by about its rate: the weights' rate for biases and tau, that rate
    over qmax for an integer format's scales (whose size is max|w| / qmax), the rate itself for ternary's."""
    lr = 0.01
    cfg = StudentConfig(hidden=H, epochs=20, batch=4, weight_format=name, ptq=True, finetune_epochs=1,
                        finetune_lr=lr)
    model, _ = train_student(teacher, TASK, cfg, seed=0)
    start = student_from(teacher, name)
    n = model.n_cell
    ds = np.abs(model.theta[n:].astype(np.float64) - start.theta[n:])
    b_after, b_before = (unpack(m.theta[:n].astype(np.float64), *m.dims)[1] for m in (model, start))
    db = np.abs(b_after - b_before)
    qmax = formats.get(name).qmax
    want = lr / qmax if qmax > 1 else lr
    moved = ds > 0
    assert moved.sum() >= ds.size // 2
    np.testing.assert_allclose(ds[moved], want, rtol=2e-3)
    assert np.median(db[db > 0]) == pytest.approx(lr, rel=2e-3)


def cfg_of(fmt, k, **kw):
    base = dict(hidden=H, epochs=8, batch=4, weight_format=fmt, shaped=k % 2 == 0, mask=("seed", "reference")[k % 2],
                lr=1e-2 / (1 + k % 3))
    return StudentConfig(**{**base, **kw})


def test_every_format_batched_gives_the_single_path_bits(teacher):
    """Formats, masks, LSQ, progressive quantization and the levels-frozen fine-tune mixed in one batch."""
    names = list(formats.FORMATS)
    cfgs = [cfg_of(n, k, finetune_epochs=4) for k, n in enumerate(names)]
    cfgs += [cfg_of("int4", 0, scale_mode="lsq", progressive=0.5, finetune_epochs=4),
             cfg_of("int8", 1, scale_mode="lsq", finetune_epochs=4),
             cfg_of("binary", 2, shaped=False, finetune_epochs=4), cfg_of("ternary", 3, finetune_epochs=4)]
    seeds = [k % 2 for k in range(len(cfgs))]
    got = multi.train_students(teacher, TASK, cfgs, seeds)
    for (model, hist), cfg, seed in zip(got, cfgs, seeds, strict=True):
        single, hist1 = train_student(teacher, TASK, cfg, seed)
        assert model.weight_format == cfg.weight_format == single.weight_format
        assert model.theta.tobytes() == single.theta.tobytes()
        assert hist.loss.tobytes() == hist1.loss.tobytes()
    # and the formats train differently: the same settings, other levels
    assert got[names.index("int4")][0].theta.tobytes() != got[names.index("int8")][0].theta.tobytes()
    ptq = [cfg_of(n, 0, ptq=True, finetune_epochs=5) for n in ("int4", "int8")]
    for (model, _), cfg in zip(multi.train_students(teacher, TASK, ptq, [0, 1]), ptq, strict=True):
        assert model.theta.tobytes() == train_student(teacher, TASK, cfg, ptq.index(cfg))[0].theta.tobytes()


@pytest.mark.parametrize("kw,key", [
    ({"weight_format": "int9"}, "weight_format"),
    ({"weight_format": "int8", "scale_mode": "absmean"}, "scale_mode"),
    ({"weight_format": "binary", "scale_mode": "twn"}, "scale_mode"),
    ({"weight_format": "binary", "scale_mode": "lsq"}, "scale_mode"),
    ({"ptq": True, "distill": True}, "ptq"),
    ({"ptq": True, "progressive": 0.5}, "ptq"),
    ({"weight_format_cand": "int8", "scale_mode": "absmean"}, "scale_mode"),
    ({"weight_format_out": "binary", "scale_mode": "lsq"}, "scale_mode"),
    ({"weight_format_gate": "int4", "float_matrices": "gate"}, "weight_format_gate"),
])
def test_settings_refuse_what_makes_no_sense(kw, key):
    with pytest.raises(SettingsError) as exc:
        replace(StudentSettings(), **kw).validate()
    assert exc.value.key == key
    replace(StudentSettings(), weight_format="int2", scale_mode="twn").validate()  # int2's levels are ternary's


def test_weight_format_is_a_factor(tmp_path, capsys):
    f = parse_factor("student.weight_format=ternary,int4")
    assert (f.low, f.high) == ("ternary", "int4")
    one_line_exit_2(["factorial", "--config", QUICK, "-q", "--factor", "student.weight_format=ternary,int9"], capsys,
                    "weight_format")
    from conftest import invoke

    out = tmp_path / "run"
    code, _, err = invoke(["factorial", "--config", QUICK, "-q", "--factor", "student.weight_format=ternary,int8",
                           "--factor", "student.ptq=false,true", "--no-gradcheck", "--out", str(out)], capsys)
    assert code == 0, err
    doc = json.loads((out / "results.json").read_text())
    rows = doc["per_seed"][0]["runs"]
    assert {(r["weight_format"], r["levels"]["student.ptq"]) for r in rows} == {
        (f, p) for f in ("ternary", "int8") for p in (False, True)}
    for r in rows:
        assert r["weight_bytes"] == formats.weight_bytes(formats.get(r["weight_format"]), 1, r["hidden"], 1)
    assert "weight_bytes" in (out / "results.csv").read_text().splitlines()[0]


def test_the_notes_design_and_coordinate_search_stay_ternary(tmp_path, capsys):
    cfg = tmp_path / "int4.toml"
    cfg.write_text(open(QUICK).read().replace("[student]\n", '[student]\nweight_format = "int4"\n'))
    one_line_exit_2(["factorial", "--config", str(cfg), "-q", "--no-gradcheck"], capsys, "coordinate-search")
    s = student_from(init_teacher(H, stream(0, "t"), I, O), "int8")
    with pytest.raises(ValueError, match="ternary students"):
        coordinate_search(s, np.zeros((1, 3, I), np.float32), np.zeros((1, 3, O), np.float32))
    s.save(tmp_path / "int8.npz")
    one_line_exit_2(["cs", "--from", str(tmp_path / "int8.npz"), "--task", "sine", "-q",
                     "--out", str(tmp_path / "o.npz")], capsys, "ternary")


def test_student_command_trains_a_format_and_ptq(tmp_path, capsys):
    from conftest import invoke

    out = tmp_path / "s.npz"
    code, js, err = invoke(["student", "--hidden", "4", "--epochs", "20", "--task", "sine", "--weight-format",
                            "int8", "--ptq", "--out", str(out), "-q", "--json"], capsys)
    assert code == 0, err
    fig = json.loads(js)
    assert fig["weight_format"] == "int8" and fig["config"]["ptq"] and np.isnan(fig["train_mse"] or np.nan)
    model = Model.load(out)
    assert model.weight_format == "int8" and np.abs(model.levels()).max() == 127
    one_line_exit_2(["student", "--hidden", "4", "--epochs", "20", "--task", "sine", "--weight-format", "int8",
                     "--ptq", "--distill", "-q", "--out", str(out)], capsys, "ptq")


# ---------------------------------------------------------------- mixed formats: a format per matrix

def test_student_command_trains_a_mixed_student(tmp_path, capsys, monkeypatch):
    from conftest import invoke

    monkeypatch.chdir(tmp_path)
    code, js, err = invoke(["student", "--hidden", "4", "--epochs", "20", "--task", "sine", "--weight-format-cand",
                            "int8", "-q", "--json"], capsys)
    assert code == 0, err
    fig = json.loads(js)
    model = Model.load(fig["model"])
    assert fig["model"].endswith("-ternary-cand-int8-s0.npz") and model.format_label == "ternary+cand:int8"
    H, z = 4, 1 + 4  # W is (2H, n_in + H), flat first in levels()
    lv = np.abs(model.levels()[:2 * H * z]).reshape(2 * H, z)
    assert lv[H:].max() > 1 >= lv[:H].max()  # the candidate rows int8, the gate rows ternary
    one_line_exit_2(["student", "--hidden", "4", "--weight-format-cand", "int9", "-q"], capsys, "int9")


def test_mixed_label_reads_back_and_refuses_nonsense():
    assert formats.label("ternary", cand="int8") == "ternary+cand:int8"
    assert formats.label("ternary", gate="ternary") == "ternary"  # a matrix of the model's own format: not mixed
    d = formats.parse_label("ternary+gate:int4+out:int8")
    assert d == {"weight_format": "ternary", "weight_format_gate": "int4", "weight_format_out": "int8"}
    for bad, needle in (("ternary+w:int8", "matrix one of"), ("ternary+cand:int9", "unknown weight format"),
                        ("ternary+cand:int8+cand:int4", "given twice"), ("ternary+cand", "matrix one of")):
        with pytest.raises(ValueError, match=needle):
            formats.parse_label(bad)


def test_mixed_weight_bytes_pack_each_matrix_in_its_format():
    """Counted by hand: lorenz-sized (3 in, 3 out), H = 16: each of W's halves is 16 x 19 = 304 weights, W_out
    48; 35 float32 scales."""
    t, i8, i4 = formats.get("ternary"), formats.get("int8"), formats.get("int4")
    assert formats.weight_bytes_mixed((t, i8, t), 3, 16, 3) == -(-(304 + 48) // 5) + 304 + 4 * 35
    assert formats.weight_bytes_mixed((i4, t, i8), 3, 16, 3) == 152 + -(-304 // 5) + 48 + 4 * 35
    for f in formats.FORMATS.values():  # one format for all is the one-stream count
        assert formats.weight_bytes_mixed((f, f, f), 3, 16, 3) == formats.weight_bytes(f, 3, 16, 3)


def test_mixed_student_quantizes_each_matrix_in_its_format(tmp_path):
    """A mixed student's effective weights are, matrix by matrix, the oracle's quantizer of that matrix's format
    (the kernel reads each row's qmax), and its model file keeps the formats; an old file (no per-matrix keys)
    reads as one format."""
    for dtype in (np.float32, np.float64):
        theta = random_student(127, dtype, 4)
        qmax = np.repeat(np.array([1, 127, 7], np.int64), [H, H, O])
        p = np.empty(theta.size - (2 * H + O), dtype)
        quantize(theta, I, H, O, p, qmax)
        nW = 2 * H * (I + H)
        for rows, q in ((slice(0, H), 1), (slice(H, 2 * H), 127)):
            want = oracle.quantize_format(theta, I, H, O, q)
            np.testing.assert_array_equal(p[:nW].reshape(2 * H, -1)[rows], want[:nW].reshape(2 * H, -1)[rows])
        o = nW + 3 * H
        np.testing.assert_array_equal(p[o: o + O * H], oracle.quantize_format(theta, I, H, O, 7)[o: o + O * H])
    s = student_from(init_teacher(H, stream(0, "t"), I, O), "ternary", weight_format_cand="int8",
                     weight_format_out="int4")
    lv = s.levels()
    nW = 2 * H * (I + H)
    assert np.abs(lv[: H * (I + H)]).max() == 1 and np.abs(lv[H * (I + H): nW]).max() == 127
    assert np.abs(lv[nW:]).max() == 7
    assert s.mixed and s.format_label == "ternary+cand:int8+out:int4"
    s.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    assert back.format_label == s.format_label and np.array_equal(back.params(), s.params())
    plain = student_from(init_teacher(H, stream(0, "t"), I, O), "int4")
    plain.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        assert not any(k.startswith("weight_format_") for k in json.loads(str(z["header"])))
    assert not Model.load(tmp_path / "p.npz").mixed
    with pytest.raises(ValueError, match="mixed formats are not deployable yet"):
        from ternq.deploy import Deployable
        Deployable.from_model(s)


def test_mixed_student_trains_and_its_int_rows_keep_their_levels(teacher):
    cfg = StudentConfig(hidden=teacher.hidden, epochs=6, batch=4, finetune_epochs=3, weight_format_cand="int8")
    model, _ = train_student(teacher, TASK, cfg, 0)
    assert model.format_label == "ternary+cand:int8"
    lv = model.levels()
    h, n = teacher.hidden, teacher.hidden + teacher.n_in
    assert set(np.unique(lv[: h * n])) <= {-1, 0, 1} and np.abs(lv[h * n: 2 * h * n]).max() > 1


def test_mixed_format_is_a_factor():
    f = parse_factor("student.weight_format_cand=ternary,int8")
    assert (f.low, f.high) == ("ternary", "int8")
