"""The recipes: settings, each recipe batched against alone, each technique's own
property, the design files."""

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

import ternq
from ternq.config import load
from ternq.experiment.plans import plan
from ternq.kernels.loop import (
    ALPHA_CONSTANT,
    ALPHA_EARLY,
    ALPHA_FALLING,
    ALPHA_LINEAR,
    BETA_COSINE,
    BETA_GEOMETRIC,
    BETA_LINEAR,
    alpha_at,
    beta_at,
)
from ternq.kernels.ternary import SCALE_ABSMEAN, SCALE_TWN, bake, quantize, quantize_ext, recompute_scales
from ternq.model import init_teacher, student_from
from ternq.rng import stream
from ternq.train import (
    RECIPE_KEYS,
    SettingsError,
    StudentConfig,
    StudentSettings,
    TeacherConfig,
    hidden_variance,
    predict,
    uses_recipe,
)

ROOT = Path(__file__).parent.parent
CHANGED = {"distill_hidden": "normalised", "distill_output": 0.5, "alpha_schedule": "early", "alpha_until": 0.3,
           "output_weight": "1", "scale_mode": "lsq", "beta_schedule": "geometric", "progressive": 0.5,
           "finetune_epochs": 10, "finetune_lr": 3e-3, "weight_format": "int4", "adam_restart": True,
           "float_matrices": "cand", "weight_format_gate": "int4", "weight_format_cand": "int8",
           "weight_format_out": "int8", "scale_group": 8, "scale_sign": True,
           "zero_threshold": 0.4}


@pytest.fixture(scope="module")
def sine_teacher():
    task = ternq.Sine()
    teacher, _ = ternq.train_teacher(task, TeacherConfig(hidden=6, epochs=60), seed=0)
    return task, teacher


def test_recipe_settings_default_to_the_notes_and_each_marks_a_recipe():
    assert set(RECIPE_KEYS) == set(CHANGED) <= {f.name for f in fields(StudentSettings)}
    assert not uses_recipe(StudentConfig()) and not uses_recipe(StudentConfig(shaped=True, distill=True))
    for key, value in CHANGED.items():
        cfg = replace(StudentConfig(), **{key: value})
        cfg.validate()
        assert uses_recipe(cfg), key
    assert uses_recipe(StudentConfig(mask="none")) and uses_recipe(StudentConfig(ptq=True))


@pytest.mark.parametrize("key,value", [("distill_hidden", "none"), ("distill_output", 1.5), ("alpha_schedule", "up"),
                                       ("alpha_until", 0.0), ("output_weight", "2"), ("scale_mode", "bwn"),
                                       ("beta_schedule", "exp"), ("progressive", -0.1), ("finetune_epochs", -1),
                                       ("finetune_lr", 0.0), ("progressive", float("nan")),
                                       ("float_matrices", "columns"), ("weight_format_cand", "int9"),
                                       ("scale_group", -1), ("zero_threshold", 0.0), ("zero_threshold", 1.5)])
def test_bad_recipe_settings_name_their_key(key, value):
    with pytest.raises(SettingsError, match=f"^{key}:"):
        replace(StudentConfig(), **{key: value}).validate()


def test_schedules():
    assert alpha_at(ALPHA_LINEAR, 0.3, 0.8, 0.0, 0.5) == 0.3
    assert alpha_at(ALPHA_LINEAR, 0.3, 0.8, 0.5, 0.5) == pytest.approx(0.55)
    assert alpha_at(ALPHA_CONSTANT, 0.3, 0.8, 0.9, 0.5) == 0.3
    assert alpha_at(ALPHA_FALLING, 0.3, 0.8, 0.0, 0.5) == 0.8
    assert alpha_at(ALPHA_FALLING, 0.3, 0.8, 1.0, 0.5) == pytest.approx(0.3)
    assert alpha_at(ALPHA_EARLY, 0.3, 0.8, 0.25, 0.5) == pytest.approx(0.55)
    assert alpha_at(ALPHA_EARLY, 0.3, 0.8, 0.5, 0.5) == 0.0
    for kind in (BETA_LINEAR, BETA_GEOMETRIC, BETA_COSINE):
        assert beta_at(kind, 1.0, 20.0, 0.0) == pytest.approx(1.0)
        assert beta_at(kind, 1.0, 20.0, 1.0) == pytest.approx(20.0)
    assert beta_at(BETA_GEOMETRIC, 1.0, 20.0, 0.5) == pytest.approx(np.sqrt(20.0))
    assert beta_at(BETA_COSINE, 1.0, 20.0, 0.5) == pytest.approx(10.5)


def _loop_inputs(dtype, H=5, E=24, seed=1):
    I, O = 1, 1
    teacher = init_teacher(H, stream(seed, "t", H), I, O)
    student = student_from(teacher)
    rng = stream(seed, "x")
    X = rng.normal(size=(E, 3, 7, I)).astype(dtype)
    Y = rng.normal(size=(E, 3, 7, O)).astype(dtype)
    return teacher.params(dtype), student.theta.astype(dtype), X, Y, (I, H, O)


# a batch shares its fine-tune and scale layout (tests/test_scale_groups.py batches those); float_matrices
# cand leaves the candidate matrix no format, and zero_threshold is ternary's
LAYOUT = ("finetune_epochs", "scale_group", "scale_sign")
RECIPES = [{k: v} for k, v in CHANGED.items() if k not in LAYOUT] + [
    {k: v for k, v in CHANGED.items() if k not in (*LAYOUT, "weight_format_cand", "zero_threshold")},
    {"weight_format_cand": "int8", "weight_format_out": "int4", "progressive": 0.5, "adam_restart": True},
    {"scale_mode": "twn", "progressive": 1.0}, {"scale_mode": "absmean", "output_weight": "1"},
    {"distill": False, "distill_output": 0.7}, {"mask": "none"}, {"mask": "reference", "alpha_schedule": "falling"},
    {"beta_schedule": "cosine", "alpha_schedule": "constant"}, {},
    {"adam_restart": True, "progressive": 0.5}, {"float_matrices": "out", "progressive": 0.5},
    {"float_matrices": "input", "progressive": 0.5, "scale_mode": "lsq"},
    {"float_matrices": "recurrent", "weight_format": "int4", "adam_restart": True},
    {"zero_threshold": 0.35, "progressive": 0.5, "scale_mode": "lsq", "adam_restart": True}]


@pytest.mark.parametrize("finetune_epochs", [0, 4])
def test_every_recipe_trained_batched_gives_the_bits_it_gets_alone(sine_teacher, finetune_epochs):
    """The batched kernel runs the single loop's per-model steps: each recipe in a batch of mixed recipes
    (padded, each model its own schedules, scales, thresholds, fine-tune) is bit for bit the student
    trained alone, baked shadow weights and history included."""
    from ternq import multi

    task, teacher = sine_teacher
    base = StudentConfig(hidden=6, epochs=12, batch=4, shaped=True, distill=True, finetune_epochs=finetune_epochs)
    cfgs = [replace(base, **r) for r in RECIPES]
    seeds = [k % 4 for k in range(len(cfgs))]  # alpha_until alone is the plain recipe: other seeds tell them apart
    got = multi.train_students(teacher, task, cfgs, seeds)
    for (model, hist), cfg, seed in zip(got, cfgs, seeds, strict=True):
        alone, hist1 = ternq.train_student(teacher, task, cfg, seed)
        assert model.theta.tobytes() == alone.theta.tobytes(), cfg
        assert hist.loss.tobytes() == hist1.loss.tobytes() and hist.mse.tobytes() == hist1.mse.tobytes()
        assert model.meta == alone.meta
    assert len({m.theta.tobytes() for m, _ in got}) == len(got)  # the recipes differ


def test_twn_and_absmean_scales_follow_their_papers():
    rng = np.random.default_rng(3)
    _, theta, _, _, (I, H, O) = _loop_inputs(np.float64)
    theta[: 2 * H * (I + H)] = rng.normal(size=2 * H * (I + H))
    n_rows = 2 * H + O
    thr = np.zeros(n_rows)
    recompute_scales(theta, I, H, O, 0, SCALE_TWN, thr)
    W = theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
    scales = theta[-n_rows:]
    for r in range(2 * H):
        a = np.abs(W[r])
        delta = 0.7 * a.mean()
        assert thr[r] == pytest.approx(delta, rel=1e-12)
        assert scales[r] == pytest.approx(a[a > delta].mean(), rel=1e-12)
    # the effective weights: s * sign(w) where |w| > delta, else 0; baked, the notes' rounding gives the same
    p = np.empty(len(theta) - n_rows)
    quantize_ext(theta, I, H, O, 0, True, thr, np.ones(n_rows, np.int8), np.ones(n_rows, np.int64), p)
    pW = p[: W.size].reshape(W.shape)
    np.testing.assert_array_equal(pW, scales[:2 * H, None] * np.where(np.abs(W) > thr[:2 * H, None], np.sign(W), 0))
    baked = theta.copy()
    bake(baked, I, H, O, 0, True, thr, np.ones(n_rows, np.int64))
    q = np.empty_like(p)
    quantize(baked, I, H, O, q)
    np.testing.assert_array_equal(q, p)
    recompute_scales(theta, I, H, O, 0, SCALE_ABSMEAN, thr)
    np.testing.assert_allclose(scales[:2 * H], np.abs(W).mean(axis=1), rtol=1e-12)


def test_finetune_keeps_the_trits_and_moves_the_scales(sine_teacher):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, shaped=True, epochs=40)
    plain, _ = ternq.train_student(teacher, task, cfg, seed=2)
    tuned, hist = ternq.train_student(teacher, task, replace(cfg, finetune_epochs=30), seed=2)
    assert len(hist.loss) == 70 and np.isfinite(hist.loss).all()
    # the main epochs are the plain training's (same data, same schedule); the fine-tune changes no trit
    np.testing.assert_array_equal(tuned.trits(), plain.trits())
    n = tuned.n_cell
    assert not np.array_equal(tuned.theta[n:], plain.theta[n:])  # but the scales moved


def test_progressive_starts_from_the_float_teacher(sine_teacher):
    task, teacher = sine_teacher
    E = 50
    cfg = StudentConfig(hidden=6, shaped=True, epochs=E, progressive=1.0)
    _, hist = ternq.train_student(teacher, task, cfg, seed=3)
    X, Y = task.batches(stream(3, "student-data"), E, cfg.batch)
    ys, _ = predict(teacher, X[0])
    # epoch 0 quantizes no row: the student runs its float shadow weights, the teacher's
    assert hist.mse[0] == pytest.approx(np.mean((ys - Y[0]) ** 2), rel=1e-5)
    _, seeds = ternq.train_student(teacher, task, replace(cfg, progressive=0.0), seed=3)
    assert hist.mse[0] != seeds.mse[0]
    again, hist2 = ternq.train_student(teacher, task, cfg, seed=3)
    assert hist2.loss.tobytes() == hist.loss.tobytes()  # the row order comes from the seed's own stream


def test_output_distillation_targets_the_teachers_predictions(sine_teacher):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, shaped=True, epochs=20, distill_output=1.0)
    _, hist = ternq.train_student(teacher, task, cfg, seed=4)
    X, _ = task.batches(stream(4, "student-data"), 20, cfg.batch)
    yt, _ = predict(teacher, X[0])
    ys, _ = predict(student_from(teacher), X[0])
    assert hist.mse[0] == pytest.approx(np.mean((ys - yt) ** 2), rel=1e-4)
    assert hist.loss[0] == pytest.approx(0.5 * hist.mse[0], rel=1e-12)  # no trajectory term without distill


def test_normalised_matching_weights_each_unit_by_the_teachers_variance(sine_teacher):
    task, teacher = sine_teacher
    X, _ = task.batches(stream(0, "v"), 1, 4)
    _, hs = predict(teacher, X[0])
    np.testing.assert_allclose(hidden_variance(teacher, X[0]), hs[:, 1:].reshape(-1, 6).var(axis=0), rtol=1e-6)
    cfg = StudentConfig(hidden=6, shaped=True, distill=True, epochs=20)
    raw, h_raw = ternq.train_student(teacher, task, cfg, seed=5)
    norm, h_norm = ternq.train_student(teacher, task, replace(cfg, distill_hidden="normalised"), seed=5)
    # same data and first prediction, a different trajectory term
    assert h_norm.mse[0] == h_raw.mse[0] and h_norm.loss[0] != h_raw.loss[0]


@pytest.mark.parametrize("mode", ["lsq", "absmean", "twn"])
def test_scale_modes_train_and_run_as_trained(sine_teacher, mode):
    task, teacher = sine_teacher
    cfg = StudentConfig(hidden=6, shaped=True, epochs=30, scale_mode=mode)
    model, hist = ternq.train_student(teacher, task, cfg, seed=6)
    assert np.isfinite(hist.loss).all() and np.isfinite(ternq.evaluate(model, task)["eval_mse"])
    assert set(np.unique(model.trits())) <= {-1, 0, 1}


@pytest.mark.parametrize("name", ["recipes-distill", "recipes-quant", "recipes-scales", "recipes-finetune",
                                  "recipes-budget", "best", "best-same-budget"])
def test_design_files_plan(name):
    s = load(ROOT / "configs" / f"{name}.toml")
    p = plan(s)
    assert p.runs and all(u.kind in ("teacher", "student", "cs") for u in p.units)
    assert any(uses_recipe(r.student) for r in p.runs)  # every design file uses a recipe somewhere


def test_search_alternated_with_scale_finetuning(sine_teacher):
    from ternq.search import SearchSettings, search_from

    task, teacher = sine_teacher
    start, _ = ternq.train_student(teacher, task, StudentConfig(hidden=6, shaped=True, epochs=30), seed=7)
    plain, r1 = search_from(start, task, SearchSettings(sequences=10, sweeps=2), 7)
    tuned, r2 = search_from(start, task, SearchSettings(sequences=10, sweeps=2, rounds=2, finetune_epochs=40), 7)
    assert r2.mse_history[: len(r1.mse_history)] == r1.mse_history  # the first round's search is the plain one
    assert len(r2.mse_history) > len(r1.mse_history) and r2.flips >= r1.flips
    n = tuned.n_cell
    assert not np.array_equal(tuned.theta[n:], plain.theta[n:])  # the scales were tuned
    with pytest.raises(SettingsError, match="^rounds:"):
        SearchSettings(rounds=0).validate()


def test_finetune_scales_alone_keeps_every_trit(sine_teacher):
    from ternq.train import finetune_scales

    task, teacher = sine_teacher
    start, _ = ternq.train_student(teacher, task, StudentConfig(hidden=6, shaped=True, epochs=30), seed=8)
    tuned, hist = finetune_scales(start, task, 50, 1e-3, seed=8)
    np.testing.assert_array_equal(tuned.trits(), start.trits())
    assert len(hist.loss) == 50 and hist.mse[-1] < hist.mse[0]
