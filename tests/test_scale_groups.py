"""Scale layouts (one scale per run of ``scale_group`` columns of each row, or two per row by the weight's sign
(``scale_sign``), instead of one per row) and ternary's zero threshold moved from s/2 (``zero_threshold``)."""

from dataclasses import replace

import numpy as np
import pytest
from oracle import quantize_groups, quantize_sign

import ternq
from ternq import multi
from ternq.deploy import Deployable
from ternq.kernels.ternary import n_scales, scale_cols
from ternq.model import Model, ModelFileError, init_teacher, student_from
from ternq.rng import stream
from ternq.settings import SettingsError
from ternq.train import StudentConfig

I, H, O = 2, 4, 3


@pytest.fixture(scope="module")
def sine_teacher():
    task = ternq.Sine()
    teacher, _ = ternq.train_teacher(task, ternq.TeacherConfig(hidden=6, epochs=60), seed=0)
    return task, teacher


def test_scales_are_counted_and_placed_row_by_row():
    # W's rows have I + H = 6 columns: groups [0, 3) and [3, 6); W_out's rows have H = 4: [0, 3) and [3, 4)
    assert n_scales(I, H, O, 3) == 2 * H * 2 + O * 2
    assert n_scales(I, H, O, 0) == n_scales(I, H, O, 6) == 2 * H + O
    assert [scale_cols(v, I, H, O, 3) for v in (0, 1, 2, 15)] == [(0, 0, 3), (0, 3, 6), (1, 0, 3), (7, 3, 6)]
    assert [scale_cols(v, I, H, O, 3) for v in (16, 17, 21)] == [(8, 0, 3), (8, 3, 4), (10, 3, 4)]
    assert scale_cols(9, I, H, O, 0) == (9, 0, H)


@pytest.mark.parametrize("group", [1, 3, 5])
def test_group_scales_run_as_the_oracle_and_the_file_keeps_them(group, tmp_path):
    teacher = init_teacher(H, stream(5, "t", H), I, O)
    student = student_from(teacher, scale_group=group)
    assert student.theta.size == student.n_cell + n_scales(I, H, O, group)
    rng = stream(5, "jitter")
    student.theta[: student.n_cell] += rng.normal(0, 0.3, student.n_cell).astype(np.float32)
    student.theta[student.n_cell:] *= rng.uniform(0.5, 1.5, student.n_scales).astype(np.float32)
    want = quantize_groups(student.theta.astype(np.float64), I, H, O, group).astype(np.float32)
    np.testing.assert_array_equal(student.params(), want)
    assert not np.array_equal(want, student_from(teacher).params())
    assert set(np.unique(student.levels())) <= {-1, 0, 1}
    student.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    assert back.scale_group == group and back.params().tobytes() == student.params().tobytes()


def test_a_group_starts_at_its_columns_mean_and_costs_four_bytes():
    teacher = init_teacher(H, stream(6, "t", H), I, O)
    student = student_from(teacher, scale_group=3)
    W = teacher.theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
    s = student.theta[student.n_cell:]
    np.testing.assert_allclose(s[0:16:2], np.abs(W[:, :3]).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s[1:16:2], np.abs(W[:, 3:]).mean(axis=1), rtol=1e-6)
    per_row = student_from(teacher)
    assert student.weight_bytes() - per_row.weight_bytes() == 4 * (n_scales(I, H, O, 3) - (2 * H + O))


def test_a_group_as_long_as_a_row_trains_the_bits_of_one_scale_per_row(sine_teacher):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, epochs=20, batch=4, shaped=True, progressive=0.5, finetune_epochs=6,
                        scale_mode="lsq", adam_restart=True)
    row, hist_row = ternq.train_student(teacher, task, cfg, seed=2)
    whole, hist_whole = ternq.train_student(teacher, task, replace(cfg, scale_group=7), seed=2)  # I + H = 7
    assert whole.theta.tobytes() == row.theta.tobytes()
    assert hist_whole.loss.tobytes() == hist_row.loss.tobytes()
    finer, _ = ternq.train_student(teacher, task, replace(cfg, scale_group=2), seed=2)
    assert finer.n_scales == 12 * 4 + 3 and finer.theta[: finer.n_cell].tobytes() != row.theta[: row.n_cell].tobytes()


GROUP_RECIPES = [{}, {"progressive": 0.5, "adam_restart": True}, {"scale_mode": "lsq"}, {"scale_mode": "twn"},
                 {"scale_mode": "absmean", "progressive": 1.0}, {"weight_format": "int4"},
                 {"weight_format_cand": "int8", "distill": True}, {"float_matrices": "out", "mask": "reference"}]


def _batched_as_alone(sine_teacher, base: StudentConfig, recipes: list[dict]) -> list:
    """Each recipe on ``base`` trained in one batch: the bits each gets alone, and no two alike."""
    task, teacher = sine_teacher
    cfgs = [replace(base, **r) for r in recipes]
    seeds = [k % 3 for k in range(len(cfgs))]
    got = multi.train_students(teacher, task, cfgs, seeds)
    for (model, hist), cfg, seed in zip(got, cfgs, seeds, strict=True):
        alone, hist1 = ternq.train_student(teacher, task, cfg, seed)
        assert model.theta.tobytes() == alone.theta.tobytes(), cfg
        assert hist.loss.tobytes() == hist1.loss.tobytes()
    assert len({m.theta.tobytes() for m, _ in got}) == len(got)
    return got


def test_group_students_trained_batched_give_the_bits_they_get_alone(sine_teacher):
    task, teacher = sine_teacher
    base = StudentConfig(hidden=6, epochs=12, batch=4, shaped=True, finetune_epochs=4, scale_group=3)
    got = _batched_as_alone(sine_teacher, base, GROUP_RECIPES)
    # baked: each quantized weight is its group's scale times its level
    model = got[0][0]
    W = model.params()[: 2 * 6 * 7].reshape(12, 7)
    s = model.theta[model.n_cell:][: 12 * 3].reshape(12, 3)
    np.testing.assert_array_equal(np.abs(W), (np.abs(W) > 0) * np.repeat(s, 3, axis=1)[:, :7])
    with pytest.raises(ValueError, match="scale layout"):
        multi.train_students(teacher, task, [base, replace(base, scale_group=0)], [0, 0])


def test_scale_groups_are_refused_where_one_scale_per_row_is_assumed(sine_teacher, tmp_path):
    task, teacher = sine_teacher
    with pytest.raises(SettingsError, match="scale_group"):
        StudentConfig(scale_group=4, float_matrices="input").validate()
    with pytest.raises(SettingsError, match="scale_group"):
        StudentConfig(scale_group=-1).validate()
    student = student_from(teacher, scale_group=4)
    with pytest.raises(ValueError, match="scale_group 4"):
        Deployable.from_model(student)
    student.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        theta, header = z["theta"], str(z["header"])
    np.savez(tmp_path / "bad.npz", theta=theta, header=np.array(header.replace('"scale_group": 4', '"scale_group": 3')))
    with pytest.raises(ModelFileError):
        Model.load(tmp_path / "bad.npz")


def test_sign_scales_run_as_the_oracle_start_at_each_signs_mean_and_keep_in_the_file(tmp_path):
    teacher = init_teacher(H, stream(7, "t", H), I, O)
    student = student_from(teacher, scale_sign=True)
    assert student.n_scales == 2 * (2 * H + O) and student.theta.size == student.n_cell + student.n_scales
    W = teacher.theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
    pairs = student.theta[student.n_cell:].reshape(-1, 2)
    np.testing.assert_allclose(pairs[: 2 * H, 0], [np.abs(w[w >= 0]).mean() for w in W], rtol=1e-6)
    np.testing.assert_allclose(pairs[: 2 * H, 1], [np.abs(w[w < 0]).mean() for w in W], rtol=1e-6)
    rng = stream(7, "jitter")
    student.theta[: student.n_cell] += rng.normal(0, 0.3, student.n_cell).astype(np.float32)
    student.theta[student.n_cell:] *= rng.uniform(0.5, 1.5, student.n_scales).astype(np.float32)
    want = quantize_sign(student.theta.astype(np.float64), I, H, O).astype(np.float32)
    np.testing.assert_array_equal(student.params(), want)
    assert set(np.unique(student.levels())) <= {-1, 0, 1} and np.count_nonzero(student.levels())
    assert student.weight_bytes() - student_from(teacher).weight_bytes() == 4 * (2 * H + O)
    student.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    assert back.scale_sign and back.params().tobytes() == student.params().tobytes()
    with pytest.raises(ValueError, match="scale_sign"):
        Deployable.from_model(student)
    with pytest.raises(SettingsError, match="^scale_sign:"):
        StudentConfig(scale_sign=True, scale_group=4).validate()


SIGN_RECIPES = [{}, {"progressive": 0.5, "adam_restart": True}, {"scale_mode": "lsq"}, {"scale_mode": "twn"},
                {"weight_format": "int4"}, {"float_matrices": "gate", "distill": True}]


def test_sign_students_trained_batched_give_the_bits_they_get_alone(sine_teacher):
    base = StudentConfig(hidden=6, epochs=12, batch=4, shaped=True, finetune_epochs=4, scale_sign=True)
    got = _batched_as_alone(sine_teacher, base, SIGN_RECIPES)
    # baked: each weight is its sign's scale times its trit, and the two scales of a row have moved apart
    model = got[0][0]
    W = model.params()[: 2 * 6 * 7].reshape(12, 7)
    pairs = model.theta[model.n_cell:].reshape(-1, 2)[:12]
    np.testing.assert_array_equal(W, np.where(W > 0, pairs[:, :1], np.where(W < 0, -pairs[:, 1:], 0)))
    assert not np.allclose(pairs[:, 0], pairs[:, 1])


def test_a_moved_zero_threshold_sets_how_many_trits_are_zero(sine_teacher):
    """zero_threshold t makes a trit 0 where |w| <= t s: a lower t keeps more weights, a higher one fewer; each
    model trains to the same bits batched and alone, bakes to s * trit, and is refused where it cannot run."""

    task, teacher = sine_teacher
    base = StudentConfig(hidden=6, epochs=30, batch=4, shaped=True, scale_mode="lsq")
    cfgs = [replace(base, zero_threshold=t) for t in (0.3, 0.5, 0.7)]
    got = multi.train_students(teacher, task, cfgs, [1, 1, 1])
    zeros = [m.zero_share() for m, _ in got]
    assert zeros[0] < zeros[1] < zeros[2], zeros
    low, _ = ternq.train_student(teacher, task, cfgs[0], 1)
    assert low.theta.tobytes() == got[0][0].theta.tobytes()
    W = low.params()[: 12 * 7].reshape(12, 7)
    s = low.theta[low.n_cell:][:12, None]
    np.testing.assert_array_equal(np.abs(W), (np.abs(W) > 0) * s)
    for bad in ({"weight_format": "int4"}, {"scale_mode": "twn"}, {"weight_format_out": "int8"}):
        with pytest.raises(SettingsError, match="^zero_threshold:"):
            replace(cfgs[0], **bad).validate()


def test_the_student_command_takes_the_scale_settings(tmp_path, capsys):
    from conftest import invoke

    out = tmp_path / "s.npz"
    code, _, err = invoke(["student", "--hidden", "4", "--epochs", "6", "--scale-group", "3", "--zero-threshold",
                           "0.4", "-q", "--out", str(out)], capsys)
    assert code == 0, err
    model = Model.load(out)
    assert model.scale_group == 3 and model.n_scales == n_scales(1, 4, 1, 3)
    assert model.meta["config"]["zero_threshold"] == 0.4
    code, _, err = invoke(["student", "--hidden", "4", "--epochs", "6", "--scale-group", "3", "--scale-sign", "-q",
                           "--out", str(tmp_path / "t.npz")], capsys)
    assert code == 2 and "scale_sign" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.npz").exists()
