"""The research settings: a part of the student kept in float, and Adam restarted for the parameters that join."""

from dataclasses import replace

import numpy as np
import pytest
from oracle import quantize_part_float

import ternq
from ternq import multi
from ternq.deploy import Deployable
from ternq.kernels.loop import join_epoch, lr_at, rows_quantized, train_epochs
from ternq.kernels.ternary import quantized_rows
from ternq.model import Model, init_teacher, student_from
from ternq.rng import stream
from ternq.settings import SettingsError
from ternq.train import Lane, StudentConfig, loop_of, thresholds

I, H, O = 2, 4, 3
ROWS = 2 * H + O


@pytest.fixture(scope="module")
def sine_teacher():
    task = ternq.Sine()
    teacher, _ = ternq.train_teacher(task, ternq.TeacherConfig(hidden=6, epochs=60), seed=0)
    return task, teacher


@pytest.mark.parametrize("part", ["gate", "cand", "out", "input", "recurrent"])
def test_a_part_kept_in_float_runs_its_shadow_weights_as_the_oracle(part, tmp_path):
    teacher = init_teacher(H, stream(5, "t", H), I, O)
    student = student_from(teacher, float_matrices=part)
    rng = stream(5, "jitter")
    student.theta[: student.n_cell] += rng.normal(0, 0.3, student.n_cell).astype(np.float32)
    want = quantize_part_float(student.theta.astype(np.float64), I, H, O, part).astype(np.float32)
    np.testing.assert_array_equal(student.params(), want)
    # the part differs from its quantized self, and the file keeps it
    assert not np.array_equal(want, student_from(teacher).params())
    student.save(tmp_path / "m.npz")
    assert Model.load(tmp_path / "m.npz").params().tobytes() == student.params().tobytes()


def test_quantized_rows_name_the_parts():
    assert quantized_rows(H, O).tolist() == [1] * ROWS
    assert quantized_rows(H, O, "gate").tolist() == [0] * H + [1] * (H + O)
    assert quantized_rows(H, O, "cand").tolist() == [1] * H + [0] * H + [1] * O
    assert quantized_rows(H, O, "out").tolist() == [1] * 2 * H + [0] * O
    assert quantized_rows(H, O, "input").tolist() == [2] * 2 * H + [1] * O
    assert quantized_rows(H, O, "recurrent").tolist() == [3] * 2 * H + [1] * O
    with pytest.raises(ValueError, match="float_matrices"):
        quantized_rows(H, O, "columns")


def test_a_float_part_trains_as_float_through_progressive_and_finetune(sine_teacher):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, epochs=30, progressive=0.5, finetune_epochs=10, float_matrices="gate")
    model, hist = ternq.train_student(teacher, task, cfg, seed=1)
    assert np.isfinite(hist.loss).all()
    h, z = 6, 1 + 6
    gate = model.theta[: h * z].reshape(h, z)
    # float rows: trained (not the teacher's any more), not on the levels of their untouched starting scale
    assert not np.array_equal(gate, teacher.theta[: h * z].reshape(h, z))
    scales = model.theta[model.n_cell:]
    start = student_from(teacher).theta[model.n_cell:]
    np.testing.assert_array_equal(scales[:h], start[:h])  # no gradient ever reaches a float row's scale
    ratio = np.abs(gate / scales[:h, None])
    assert np.any(np.abs(ratio - np.rint(ratio)) > 1e-3)
    np.testing.assert_array_equal(model.params()[: h * z], gate.ravel())
    # the other rows are baked to their levels: s * trit
    cand = model.params()[h * z : 2 * h * z].reshape(h, z)
    np.testing.assert_array_equal(np.abs(cand), (np.abs(cand) > 0) * scales[h : 2 * h, None])


@pytest.mark.parametrize("part", ["input", "recurrent"])
def test_float_columns_train_as_float_and_the_rest_of_the_row_on_its_levels(sine_teacher, part):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, epochs=30, progressive=0.5, finetune_epochs=10, float_matrices=part)
    model, hist = ternq.train_student(teacher, task, cfg, seed=1)
    assert np.isfinite(hist.loss).all()
    h, n_in = 6, 1
    z = n_in + h
    W = model.theta[: 2 * h * z].reshape(2 * h, z)
    pW = model.params()[: 2 * h * z].reshape(2 * h, z)
    scales = model.theta[model.n_cell : model.n_cell + 2 * h]
    fl = slice(0, n_in) if part == "input" else slice(n_in, z)
    qu = slice(n_in, z) if part == "input" else slice(0, n_in)
    np.testing.assert_array_equal(pW[:, fl], W[:, fl])  # the float columns run their shadow weights
    assert not np.array_equal(W[:, fl], teacher.theta[: 2 * h * z].reshape(2 * h, z)[:, fl])  # trained
    ratio = np.abs(W[:, fl] / scales[:, None])
    assert np.any(np.abs(ratio - np.rint(ratio)) > 1e-3)  # off the levels
    np.testing.assert_array_equal(np.abs(pW[:, qu]), (np.abs(pW[:, qu]) > 0) * scales[:, None])  # s * trit
    levels = model.levels()[: 2 * h * z].reshape(2 * h, z)
    assert not levels[:, fl].any() and levels[:, qu].any()
    with pytest.raises(ValueError, match="keeps weights in float"):
        Deployable.from_model(model)


def test_column_parts_take_scales_of_their_quantized_columns():
    teacher = init_teacher(H, stream(5, "t", H), I, O)
    W = teacher.theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
    n = teacher.n_cell
    inp = student_from(teacher, float_matrices="input").theta[n : n + 2 * H]
    rec = student_from(teacher, float_matrices="recurrent").theta[n : n + 2 * H]
    np.testing.assert_allclose(inp, np.abs(W[:, I:]).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(rec, np.abs(W[:, :I]).mean(axis=1), rtol=1e-6)
    with pytest.raises(SettingsError, match="recomputes scales"):
        StudentConfig(float_matrices="input", scale_mode="twn").validate()


def _loop(restart, progressive=0.5, n_main=40, finetune=10, lr=0.01, finetune_lr=0.005):
    teacher = init_teacher(H, stream(3, "t", H), I, O)
    theta = student_from(teacher).theta.copy()
    lane = Lane(lr=lr, lr_min=1e-4, schedule="cosine", clip=5.0, mask="seed", beta=(1.0, 20.0),
                progressive=progressive, row_rank=stream(3, "rank").permutation(ROWS), finetune_epochs=finetune,
                finetune_lr=finetune_lr, adam_restart=restart)
    E = n_main + finetune
    rng = stream(3, "x")
    X = rng.normal(size=(E, 3, 6, I)).astype(np.float32)
    Y = rng.normal(size=(E, 3, 6, O)).astype(np.float32)
    return theta, loop_of([lane], (I, H, O), E, True), X, Y


def _steps(restart, **kw):
    """theta before every epoch and after the last."""
    theta, loop, X, Y = _loop(restart, **kw)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    thr = thresholds(loop, theta.dtype)
    losses, mses = np.zeros(loop.n_epochs), np.zeros(loop.n_epochs)
    out = [theta.copy()]
    for e in range(loop.n_epochs):
        assert train_epochs(theta, m, v, X, Y, e, e + 1, loop, None, thr, losses, mses) == -1
        out.append(theta.copy())
    return np.array(out), loop


def test_join_epoch_is_the_first_epoch_a_row_runs_quantized():
    _, loop, _, _ = _loop(True)
    n_main = int(loop.n_main[0])
    for r in range(ROWS):
        live = [loop.row_rank[r, 0] < rows_quantized(ROWS, 0.5, n_main, e) for e in range(n_main)]
        assert join_epoch(loop, 0, r) == live.index(True)
    _, off, _, _ = _loop(True, progressive=0.0)
    assert all(join_epoch(off, 0, r) == 0 for r in range(ROWS))


def test_a_joining_scale_takes_a_fresh_adams_first_step():
    """Adam's first step is lr * g / (|g| + eps): lr in size whatever g's. Without the restart a scale that
    joins at epoch e (moments zero until then: no gradient) steps lr * sqrt(1 - b2^(e+1)) / (1 - b1^(e+1))
    * (1 - b1) / sqrt(1 - b2), about 3.2 lr for a late join."""
    n = ternq.model.n_params(I, H, O)
    checked = 0
    for restart in (True, False):
        thetas, loop = _steps(restart)
        for r in range(ROWS):
            e = join_epoch(loop, 0, r)
            before, after = thetas[e, n + r], thetas[e + 1, n + r]
            np.testing.assert_array_equal(thetas[: e + 1, n + r], thetas[0, n + r])  # still until it joins
            lr = lr_at(0.01, 1e-4, 1, e / 40)
            bias = 1.0 if restart else np.sqrt(1 - 0.999 ** (e + 1)) / (1 - 0.9 ** (e + 1)) * 0.1 / np.sqrt(0.001)
            assert abs(after - before) == pytest.approx(lr * bias, rel=1e-4), (restart, r, e)
            checked += 1
            if not restart and e > 20:
                assert abs(after - before) > 2 * lr  # the oversized step the restart removes
    assert checked == 2 * ROWS


def test_the_finetune_restarts_scales_biases_and_tau():
    n = ternq.model.n_params(I, H, O)
    Z = I + H
    bias_tau = slice(2 * H * Z, 2 * H * Z + 3 * H)
    for restart in (True, False):
        thetas, loop = _steps(restart)
        step = np.abs(thetas[41] - thetas[40])  # the fine-tune's first epoch, 40, at finetune_lr
        moved = np.concatenate([step[bias_tau], step[n:]])
        moved = moved[moved > 0]
        assert moved.size > 2 * H
        if restart:
            np.testing.assert_allclose(moved, 0.005, rtol=1e-3)  # |g| / (|g| + eps): a tiny g falls short
        else:
            assert moved.min() < 0.5 * 0.005
        np.testing.assert_array_equal(thetas[42, : 2 * H * Z], thetas[41, : 2 * H * Z])  # the levels are frozen


def test_restart_changes_nothing_when_nothing_joins(sine_teacher):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, epochs=20, shaped=True, scale_mode="lsq")
    a, _ = ternq.train_student(teacher, task, cfg, seed=0)
    b, _ = ternq.train_student(teacher, task, replace(cfg, adam_restart=True), seed=0)
    assert a.theta.tobytes() == b.theta.tobytes()
    c, _ = ternq.train_student(teacher, task, replace(cfg, adam_restart=True, progressive=0.5), seed=0)
    d, _ = ternq.train_student(teacher, task, replace(cfg, progressive=0.5), seed=0)
    assert c.theta.tobytes() != d.theta.tobytes()


def test_research_settings_batched_give_the_bits_they_get_alone(sine_teacher):
    task, teacher = sine_teacher
    base = StudentConfig(hidden=6, epochs=16, batch=4, shaped=True, progressive=0.5, finetune_epochs=6)
    cfgs = [replace(base, adam_restart=a, float_matrices=f) for a in (False, True)
            for f in ("none", "gate", "cand", "out")]
    seeds = [k % 2 for k in range(len(cfgs))]
    got = multi.train_students(teacher, task, cfgs, seeds)
    for (model, hist), cfg, seed in zip(got, cfgs, seeds, strict=True):
        alone, hist1 = ternq.train_student(teacher, task, cfg, seed)
        assert model.theta.tobytes() == alone.theta.tobytes(), cfg
        assert model.float_matrices == cfg.float_matrices == alone.float_matrices
        assert hist.loss.tobytes() == hist1.loss.tobytes()
    assert len({m.theta.tobytes() for m, _ in got}) == len(got)


@pytest.mark.parametrize("part", ["none", "gate", "cand", "out", "input", "recurrent"])
def test_a_float_parts_bytes_and_zero_share_count_its_weights_as_they_are_stored(part):
    """Quantized weights packed in their format, each float weight 4 bytes, a scale for each row with any
    quantized weight; the zero share is over the quantized weights only."""
    from ternq import formats

    student = student_from(init_teacher(H, stream(5, "t", H), I, O), float_matrices=part)
    z = I + H
    n_float = {"none": 0, "gate": H * z, "cand": H * z, "out": O * H, "input": 2 * H * I, "recurrent": 2 * H * H}[part]
    float_rows = {"gate": H, "cand": H, "out": O}.get(part, 0)
    n = 2 * H * z + O * H
    assert student.weight_bytes() == formats.get("ternary").packed_bytes(n - n_float) + 4 * n_float + 4 * (
        ROWS - float_rows)
    q = student.quantized_weights()
    assert q.size == n and int((~q).sum()) == n_float
    levels = student.levels()
    assert not levels[~q].any()
    assert student.zero_share() == pytest.approx(np.mean(levels[q] == 0))
