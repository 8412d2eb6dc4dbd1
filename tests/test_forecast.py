"""Forecast evaluation: naive baselines, MASE, compiled rollouts against a NumPy oracle, horizon summaries."""

import inspect
import json

import numpy as np
import oracle
import pytest

from ternq import forecast as fc
from ternq.deploy import Deployable
from ternq.kernels.cell import forward
from ternq.kernels.rollout import rollout as rollout_kernel
from ternq.model import Model, init_teacher, student_from
from ternq.rng import stream
from ternq.tasks import LORENZ_LYAPUNOV, Lorenz, Series, get_task, lorenz_trajectory
from ternq.train import DT, evaluate, predict

try:
    import statsmodels  # noqa: F401
    HAVE_SM = True
except ImportError:  # pragma: no cover
    HAVE_SM = False


def _models(I, H, O, seed=0):
    """A float teacher and its hard-ternary student (random init: the rollout does not care how good they are)."""
    teacher = init_teacher(H, stream(seed, "test-forecast", H), I, O)
    rng = stream(seed, "test-forecast-b", H)
    teacher.theta[:] += rng.normal(0.0, 0.3, teacher.theta.shape).astype(np.float32)  # non-zero biases too
    return teacher, student_from(teacher)


def _tiny():
    """Training part [1, -1, 1, -1] (mean 0, std 1: normalising changes nothing), held out [2, 0, 3, 1].

    One held-out window: X = [2, 0, 3], Y = [0, 3, 1].
    """
    series = np.array([1.0, -1.0, 1.0, -1.0, 2.0, 0.0, 3.0, 1.0])
    return Series(series, "tiny", steps=2, train_frac=0.5, n_eval=4, eval_steps=10), series


# ---------------------------------------------------------------- the compiled rollout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_no_free_steps_is_the_training_forward_bit_for_bit(dtype, kind):
    I, H, O = 3, 8, 3
    model = dict(zip(("teacher", "student"), _models(I, H, O), strict=True))[kind]
    p = model.params(dtype)
    X = stream(1, "test-forecast-x").normal(size=(5, 17, I)).astype(dtype)
    hs0, ys0 = np.empty((18, 5, H), dtype), np.empty((17, 5, O), dtype)
    forward(p, X, I, H, O, DT, hs0, np.empty((17, 5, H), dtype), np.empty((17, 5, H), dtype), ys0,
            np.empty((I + H, 2 * H), dtype))
    hs, ys = np.full_like(hs0, np.nan), np.full_like(ys0, np.nan)
    rollout_kernel(p, X, I, H, O, DT, 0, hs, ys)
    assert ys.tobytes() == ys0.tobytes() and hs.tobytes() == hs0.tobytes()


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-4)])
@pytest.mark.parametrize("dims", [(1, 8, 1), (3, 16, 3)])
def test_rollout_matches_numpy_oracle(dtype, rtol, dims):
    I, H, O = dims
    X = stream(2, "test-forecast-x", I).normal(size=(4, 16, I))
    for model in _models(I, H, O):
        got = fc.rollout(model, X, warmup=7, horizon=9, dtype=dtype)
        want = oracle.rollout(model.params(np.float64), X, I, H, O, 7, 9)
        assert got.dtype == dtype and got.shape == (4, 7 + 9 - 1, O)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
        # the free part really feeds back: feeding the truth instead would give other numbers
        assert not np.allclose(want[:, 7:], oracle.run(model.params(np.float64), X[:, :15], I, H, O)[1][:, 7:])


def test_warmup_part_is_predict_and_batching_changes_no_bit():
    task = get_task("lorenz")
    X, _ = task.eval_set()
    _, student = _models(3, 8, 3)
    full = fc.rollout(student, X, warmup=30, horizon=20)
    ys, _ = predict(student, X[:, :30])
    assert full[:, :30].tobytes() == ys.tobytes()  # horizon 1 is the one-step forecast
    parts = np.concatenate([fc.rollout(student, X[i : i + 1], 30, 20) for i in range(X.shape[0])])
    assert parts.tobytes() == full.tobytes()


def test_deployable_rollout_is_bit_identical():
    task = get_task("lorenz")
    X, _ = task.eval_set()
    _, student = _models(3, 16, 3)
    dep = Deployable.from_bytes(Deployable.from_model(student).to_bytes())
    got = fc.rollout(dep, X, warmup=50, horizon=51)
    assert got.tobytes() == fc.rollout(student, X, warmup=50, horizon=51).tobytes()
    e_dep = fc.rollout_errors(dep, task, 51, 50)
    assert e_dep.tobytes() == fc.rollout_errors(student, task, 51, 50).tobytes()
    with pytest.raises(ValueError, match="float32"):
        fc.rollout(dep, X, 5, 5, dtype=np.float64)


def test_rollout_needs_as_many_outputs_as_inputs():
    model = init_teacher(4, stream(0, "test-forecast"), n_in=2, n_out=1)
    X = np.zeros((1, 5, 2), np.float32)
    assert fc.rollout(model, X, 5, 1).shape == (1, 5, 1)  # horizon 1: no feedback needed
    with pytest.raises(ValueError, match="2 inputs and 1 outputs"):
        fc.rollout(model, X, 3, 2)


# ---------------------------------------------------------------- baselines and MASE


def test_baselines_by_hand_on_a_tiny_series():
    task, _ = _tiny()
    X, Y = task.eval_set()
    assert X[0, :, 0].tolist() == [2, 0, 3] and Y[0, :, 0].tolist() == [0, 3, 1]
    assert task.naive_scale().tolist() == [2.0]  # |-2|, |2|, |-2| over the training part
    base = fc.baselines(task, period=2)
    # persistence: errors -2, 3, -2
    assert base["persistence"]["mse"] == pytest.approx(17 / 3) and base["persistence"]["mae"] == pytest.approx(7 / 3)
    assert base["persistence"]["mase"] == pytest.approx(7 / 6)
    # seasonal naive, m = 2: 0, 3, 1 forecast by -1 (the training part's last row), 2, 0: errors 1, 1, 1
    assert fc.seasonal_naive(task, 2)[0, :, 0].tolist() == [-1, 2, 0]
    assert base["seasonal"] == pytest.approx({"mse": 1.0, "mae": 1.0, "mase": 0.5})
    assert base["period"] == 2 and fc.baselines(task)["period"] is None and "seasonal" not in fc.baselines(task)


def test_naive_rollouts_by_hand_and_against_the_oracle():
    task, series = _tiny()
    # origin x_0 = 2 (row 4), targets 0, 3, 1; seasonal m = 2 forecasts -1, 2, -1
    err = fc.baseline_rollout_errors(task, horizon=3, warmup=1, period=2)
    assert err["persistence"][0].tolist() == [4, 1, 1] and err["seasonal"][0].tolist() == [1, 1, 4]
    lorenz = get_task("lorenz")
    X, Y = lorenz.eval_set()
    for m in (1, 7, 40):
        got = fc.baseline_rollout_errors(lorenz, horizon=45, warmup=20, period=m)
        n = 3
        s = lorenz.data[lorenz.eval_starts[n] - 60 : lorenz.eval_starts[n] + 101].astype(np.float64)
        origin = 60 + 19
        for name, per in (("persistence", None), ("seasonal", m)):
            f = oracle.naive_forecasts(s, origin, 45, per)
            want = np.mean((f - s[origin + 1 : origin + 46]) ** 2, axis=1)
            np.testing.assert_allclose(got[name][n], want, rtol=1e-12)
    # a period of one row is persistence
    one = fc.baseline_rollout_errors(lorenz, 10, period=1)
    assert one["seasonal"].tobytes() == one["persistence"].tobytes()
    assert fc.seasonal_naive(lorenz, 1).tobytes() == fc.persistence(lorenz).tobytes()


def test_sine_past_continues_the_signal():
    task = get_task("sine")
    X, Y = task.eval_set()
    rows = task.held_out_rows(5)
    assert rows[:, 5:-1].tobytes() == X.tobytes() and rows[:, -1].tobytes() == Y[:, -1].tobytes()
    phases = 2 * np.pi * (np.arange(task.n_eval) + 0.5) / task.n_eval
    np.testing.assert_allclose(rows[:, :5, 0], np.sin(phases[:, None] + np.arange(-5, 0) * task.dt), atol=1e-6)
    # seasonal naive with sine's own period (2 pi / dt rounded) is nearly exact, persistence is not
    b = fc.baselines(task)
    assert b["period"] == round(2 * np.pi / task.dt)
    assert b["persistence"]["mse"] == pytest.approx(2 * np.sin(task.dt / 2) ** 2, rel=1e-3)
    assert b["seasonal"]["mse"] < b["persistence"]["mse"] / 10


def test_mase_against_a_direct_computation():
    task = get_task("lorenz")
    teacher, _ = _models(3, 8, 3)
    s = fc.skill(teacher, task, warmup=1)  # every step scored
    X, Y = task.eval_set()
    ys, _ = predict(teacher, X)
    train = task.data[: task.n_train].astype(np.float64)
    scale = np.array([np.mean(np.abs(train[1:, c] - train[:-1, c])) for c in range(3)])
    mae = np.array([np.mean(np.abs(ys[..., c].astype(np.float64) - Y[..., c])) for c in range(3)])
    assert s["mase"] == pytest.approx(np.mean(mae / scale), rel=1e-12)
    pmae = np.array([np.mean(np.abs(X[..., c].astype(np.float64) - Y[..., c])) for c in range(3)])
    assert s["persistence_mase"] == pytest.approx(np.mean(pmae / scale), rel=1e-12)
    # over every step the model's MSE is evaluate()'s figure (there in float32), and the flags follow the ratios
    assert s["mse"] == pytest.approx(evaluate(teacher, task)["eval_mse"], rel=1e-5)
    assert s["vs_persistence"] == pytest.approx(s["mse"] / s["persistence_mse"])
    assert s["beats_persistence"] == (s["vs_persistence"] < 1) and "seasonal_mse" not in s
    assert s["vs_naive"] == s["vs_persistence"]


def test_skill_flags_a_model_that_loses_to_persistence_and_one_that_wins():
    task = get_task("sine")
    teacher, _ = _models(1, 8, 1)  # untrained: far worse than copying the input
    s = fc.skill(teacher, task)
    assert not s["beats_persistence"] and not s["beats_naive"] and s["vs_persistence"] > 1
    # a model that always says 0: its MSE is the target's mean square
    echo = Model("teacher", 1, 1, 1, np.zeros(9, np.float32))  # y = 0: MSE = mean square of the target
    se = fc.skill(echo, task, warmup=1)
    _, Y = task.eval_set()
    assert se["mse"] == pytest.approx(np.mean(Y.astype(np.float64) ** 2), rel=1e-6)
    assert se["vs_seasonal"] == pytest.approx(se["mse"] / se["seasonal_mse"])
    assert se["vs_naive"] == pytest.approx(se["mse"] / min(se["seasonal_mse"], se["persistence_mse"]))


# ---------------------------------------------------------------- arguments and limits


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "5"])
def test_horizon_and_period_must_be_positive_integers(bad):
    task = get_task("lorenz")
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        fc.check_horizon(task, bad)
    with pytest.raises(ValueError, match="period must be a positive integer"):
        fc.check_period(task, bad)
    with pytest.raises(ValueError, match="period must be a positive integer"):
        fc.baselines(task, period=bad)
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        fc.rollout_mse(init_teacher(4, stream(0, "t"), 3, 3), task, bad)


def test_limits_are_named():
    lorenz = get_task("lorenz")
    T = lorenz.eval_set()[0].shape[1]
    W = fc.default_warmup(lorenz)
    assert 1 <= W <= T // 2 and fc.check_horizon(lorenz, T + 1 - W) == (T + 1 - W, W)
    with pytest.raises(ValueError, match=f"horizon {T + 2 - W} .* at most {T + 1 - W} "):
        fc.check_horizon(lorenz, T + 2 - W)
    with pytest.raises(ValueError, match=f"at most {T - 9} "):
        fc.rollout_errors(init_teacher(4, stream(0, "t"), 3, 3), lorenz, T, warmup=10)
    with pytest.raises(ValueError, match=f"warm-up {T + 1} is longer .* at most {T}"):
        fc.check_horizon(lorenz, 1, warmup=T + 1)
    held = lorenz.length - lorenz.n_train
    assert fc.check_period(lorenz, held) == held
    with pytest.raises(ValueError, match=f"period {held + 1} is longer than the held-out part .* at most {held}"):
        fc.baselines(lorenz, period=held + 1)
    tiny, _ = _tiny()
    with pytest.raises(ValueError, match="horizon 4 .* at most 3 "):
        fc.baseline_rollout_errors(tiny, 4, warmup=1)
    with pytest.raises(ValueError, match="at most 4"):
        fc.seasonal_naive(tiny, 5)
    sine = get_task("sine")
    with pytest.raises(ValueError, match=f"at most {T + 1}"):
        fc.check_period(sine, T + 2)


# ---------------------------------------------------------------- periods


def test_detect_period_on_a_trending_seasonal_series():
    rng = stream(0, "test-forecast-season")
    t = np.arange(600)
    x = 0.01 * t + np.sin(2 * np.pi * t / 12) + 0.3 * rng.normal(size=t.size)
    assert fc.detect_period(x) == 12
    assert fc.detect_period(np.stack([x, -x], axis=1)) == 12
    assert fc.detect_period(0.5 * t) is None  # a trend alone has no season
    assert fc.detect_period(x[:8]) is None


@pytest.mark.skipif(not HAVE_SM, reason="needs statsmodels")
def test_recorded_series_periods_match_detection():
    for name in ("sunspots", "co2"):
        task = get_task(name)
        assert fc.detect_period(task.training_part()) == task.period


def test_resolve_period_order():
    lorenz = get_task("lorenz")
    assert fc.resolve_period(lorenz) is None
    assert fc.resolve_period(lorenz, 9) == 9
    detected = fc.resolve_period(lorenz, detect=True)
    assert detected == fc.detect_period(lorenz.training_part())
    assert fc.resolve_period(get_task("sine"), 10, detect=True) == 10


# ---------------------------------------------------------------- horizon summaries


def test_first_pass_and_valid_steps():
    assert fc.first_pass(np.array([0.1, 0.2, 0.5, 0.4]), 0.3) == 3
    assert fc.first_pass(np.array([0.1, 0.2]), np.array([0.05, 1.0])) == 1
    assert fc.first_pass(np.array([0.1, 0.2]), 1.0) is None
    err = np.array([[0.01, 0.2, 0.3], [0.3, 0.0, 0.0], [0.0, 0.0, 0.0]])  # sqrt > 0.4 from 0.2 up
    assert fc.valid_steps(err, 0.4).tolist() == [1, 0, 3]


def test_lorenz_lyapunov_conversion_follows_the_task():
    params = inspect.signature(lorenz_trajectory).parameters
    assert params["h"].default * params["every"].default == pytest.approx(0.1)  # a row is 0.1 time units
    assert isinstance(get_task("lorenz"), Lorenz)
    assert get_task("lorenz").lyapunov_per_step == pytest.approx(LORENZ_LYAPUNOV * 0.1)
    assert get_task("sine").lyapunov_per_step is None


def test_horizon_curves_put_models_and_baselines_on_the_same_windows():
    task = get_task("lorenz")
    teacher, student = _models(3, 8, 3)
    hz = fc.horizon_curves({"teacher": teacher, "student": student}, task, 20, warmup=30, threshold=0.5)
    assert set(hz.errors) == {"teacher", "student", "persistence", "ar", "var"}
    assert hz.errors["teacher"].shape == (32, 20)
    np.testing.assert_array_equal(hz.mse("student"), fc.rollout_mse(student, task, 20, 30))
    assert hz.mse_at("teacher", 20) == fc.rollout_mse(teacher, task, 20, 30)[-1]
    assert hz.mse_at("teacher", 1) == pytest.approx(
        np.mean((predict(teacher, task.eval_set()[0])[0][:, 29] - task.eval_set()[1][:, 29]) ** 2), rel=1e-6)
    summ = hz.summary("student")
    assert summ["passes_persistence"] == fc.first_pass(hz.mse("student"), hz.mse("persistence"))
    assert "passes_seasonal" not in summ and "vpt_lyapunov" not in fc.horizon_curves({}, get_task("sine"), 5).summary(
        "persistence")
    sine = fc.horizon_curves({"teacher": _models(1, 8, 1)[0]}, get_task("sine"), 30)
    assert sine.summary("teacher")["passes_seasonal"] == fc.first_pass(sine.mse("teacher"), sine.mse("seasonal"))
    steps = fc.valid_steps(hz.errors["student"], 0.5)
    assert summ["vpt_lyapunov"] == pytest.approx(steps.mean() * LORENZ_LYAPUNOV * 0.1)
    d = json.loads(json.dumps(hz.to_dict()))
    assert d["mse"]["persistence"] == pytest.approx(list(hz.mse("persistence"))) and d["period"] is None
    with pytest.raises(ValueError, match="clash"):
        fc.horizon_curves({"persistence": teacher}, task, 5)
    with pytest.raises(ValueError, match="1 .. 20"):
        hz.mse_at("teacher", 21)


def test_trace_is_the_rollout_of_one_window():
    task = get_task("sine")
    teacher, _ = _models(1, 8, 1)
    tr = fc.trace(teacher, task, 10, warmup=20, window=3)
    X, Y = task.eval_set()
    assert tr["prediction"].shape == (29, 1) and tr["target"].tobytes() == Y[3, :29].tobytes()
    assert tr["prediction"].tobytes() == fc.rollout(teacher, X, 20, 10)[3].tobytes()
    with pytest.raises(ValueError, match="window"):
        fc.trace(teacher, task, 10, window=64)
