"""The task's own account of its held-out part (rows, past, span, training part, naive scale), checked
against slow, obvious versions written from the definitions; and the forecast evaluation on a task that
offers only the protocol's defaults."""

import math

import numpy as np
import pytest

from ternq import forecast as fc
from ternq.tasks import Series, Sine, Task, from_file, get_task

GENERATED = ["sine", "multisine"]
SERIES = ["lorenz", "ecg"]


def _file_task(tmp_path):
    t = np.arange(300) * 0.1
    np.save(tmp_path / "s.npy", np.stack([np.sin(t), np.cos(1.3 * t) + 0.01 * t], 1))
    return from_file(tmp_path / "s.npy", steps=20, eval_steps=40)


def _task(name, tmp_path):
    return _file_task(tmp_path) if name == "file" else get_task(name)


def _slow_series_rows(task, before):
    X, _ = task.eval_set()
    T = X.shape[1]
    out = np.empty((len(task.eval_starts), before + T + 1, task.n_out), np.float32)
    for n, s in enumerate(task.eval_starts):
        for j in range(before + T + 1):
            out[n, j] = task.data[s - before + j]
    return out


def _slow_signal(task, origin, k):
    """The generated signal k steps after ``origin`` (a phase for sine, a time for multisine), in float64."""
    if isinstance(task, Sine):
        return math.sin(origin + k * task.dt)
    t = origin + k * task.dt
    return sum(math.sin(f * t) for f in task.FREQS) / task.NORM


@pytest.mark.parametrize("name", SERIES + ["file"])
@pytest.mark.parametrize("before", [0, 1, 7, 30])
def test_series_held_out_rows_are_the_series_rows(name, before, tmp_path):
    task = _task(name, tmp_path)
    assert task.held_out_rows(before).tobytes() == _slow_series_rows(task, before).tobytes()


@pytest.mark.parametrize("name", GENERATED)
@pytest.mark.parametrize("before", [0, 1, 7, 63])
def test_generated_held_out_rows_continue_the_signal_backwards(name, before):
    task = get_task(name)
    rows = task.held_out_rows(before)
    X, Y = task.eval_set()
    T = X.shape[1]
    assert rows.shape == (X.shape[0], before + T + 1, 1) and rows.dtype == np.float32
    assert rows[:, before:-1].tobytes() == X.tobytes() and rows[:, -1].tobytes() == Y[:, -1].tobytes()
    origins = task.eval_phases() if isinstance(task, Sine) else task.eval_starts()
    want = np.array([[_slow_signal(task, o, j - before) for j in range(before + T + 1)] for o in origins])
    np.testing.assert_allclose(rows[..., 0], want, atol=2e-6)


@pytest.mark.parametrize("name", SERIES + ["file"])
def test_series_past_span_and_training_part(name, tmp_path):
    task = _task(name, tmp_path)
    assert isinstance(task, Series)
    assert task.past_rows() == min(task.eval_starts) and task.held_out_span() == task.length - task.n_train
    part = task.training_part()
    assert part.dtype == np.float64 and part.shape == (task.n_train, task.n_out)
    assert part.tobytes() == task.data[: task.n_train].astype(np.float64).tobytes()
    task.held_out_rows(task.past_rows())  # reaching back to row 0 is allowed, one more is not
    with pytest.raises(ValueError, match="rows before the first held-out window are needed"):
        task.held_out_rows(task.past_rows() + 1)


@pytest.mark.parametrize("name", GENERATED)
def test_generated_past_is_endless_and_span_is_one_window(name):
    task = get_task(name)
    assert task.past_rows() is None and task.training_part() is None
    assert task.held_out_span() == task.eval_set()[0].shape[1] + 1
    assert fc.period_limit(task) == task.held_out_span()


@pytest.mark.parametrize("name", SERIES + ["file"])
def test_period_limit_of_a_series(name, tmp_path):
    task = _task(name, tmp_path)
    assert fc.period_limit(task) == min(task.length - task.n_train, min(task.eval_starts) + 1)


@pytest.mark.parametrize("name", SERIES + ["file"])
def test_series_naive_scale_is_the_mean_one_step_change_of_the_training_part(name, tmp_path):
    task = _task(name, tmp_path)
    want = [np.mean([abs(float(task.data[t, c]) - float(task.data[t - 1, c])) for t in range(1, task.n_train)])
            for c in range(task.n_out)]
    np.testing.assert_allclose(task.naive_scale(), want, rtol=1e-12)


def test_sine_naive_scale_is_the_expectation_over_the_phase():
    task = get_task("sine")
    phi = (np.arange(200_000) + 0.5) * 2 * np.pi / 200_000  # a fine grid over one period
    np.testing.assert_allclose(task.naive_scale(), [np.mean(np.abs(np.sin(phi + task.dt) - np.sin(phi)))], rtol=1e-8)


def test_multisine_naive_scale_samples_the_training_span():
    task = get_task("multisine")
    n = int(task.train_span / task.dt) + task.steps + 1
    x = [_slow_signal(task, 0.0, k) for k in range(n)]
    want = sum(abs(x[k] - x[k - 1]) for k in range(1, n)) / (n - 1)
    np.testing.assert_allclose(task.naive_scale(), [want], rtol=1e-9)


class Plain(Sine):
    """A task that keeps the protocol's defaults for everything the forecast evaluation asks."""

    name = "plain"
    held_out_past = Task.held_out_past
    naive_scale = Task.naive_scale
    period = None


def test_forecasts_on_a_task_with_only_the_defaults():
    task = Plain(n_eval=4, eval_steps=30)
    base = fc.baselines(task)  # persistence needs no past
    assert base["period"] is None and "seasonal" not in base and np.isfinite(base["persistence"]["mase"])
    # the default scale samples training sequences from a fixed stream: the same for any instance
    assert task.naive_scale().shape == (1,) and task.naive_scale().tobytes() == Plain().naive_scale().tobytes()
    with pytest.raises(ValueError, match="does not expose its past"):
        fc.baselines(task, period=5)
    assert task.lyapunov_per_step is None and task.channels == ["channel 0"]
