import numpy as np
import pytest

from ternq.search import coordinate_search, quantize_teacher
from ternq.tasks import Sine
from ternq.train import TeacherConfig, evaluate, predict_mse, train_teacher

TASK = Sine(n_eval=4, eval_steps=30)


@pytest.fixture(scope="module")
def ptq():
    teacher, _ = train_teacher(TASK, TeacherConfig(hidden=6, epochs=150), seed=2)
    return quantize_teacher(teacher)


def test_search_on_the_eval_set_never_raises_it_and_stops(ptq):
    X, Y = TASK.eval_set()
    before = evaluate(ptq, TASK)["eval_mse"]
    out, res = coordinate_search(ptq, X, Y, max_sweeps=50)
    hist = res.mse_history
    assert hist[0] == pytest.approx(before, rel=1e-12)
    assert all(b <= a for a, b in zip(hist, hist[1:], strict=False))
    assert res.sweeps < 50 and hist[-1] == hist[-2]  # stopped after a sweep with no change
    assert res.flips > 0
    after = evaluate(out, TASK)["eval_mse"]
    assert after == pytest.approx(hist[-1], rel=1e-12) and after <= before
    again, res2 = coordinate_search(out, X, Y, max_sweeps=5)
    assert res2.flips == 0 and res2.sweeps == 1
    assert again.theta.tobytes() == out.theta.tobytes()


def test_search_keeps_scales_and_float_parts(ptq):
    X, Y = TASK.batches(np.random.default_rng(0), 1, 3)
    out, _ = coordinate_search(ptq, X[0], Y[0], max_sweeps=2)
    n = ptq.n_cell
    np.testing.assert_array_equal(out.theta[n:], ptq.theta[n:])
    for name in ("b_gate", "b_cand", "tau", "b_out"):
        np.testing.assert_array_equal(out.weights()[name], ptq.weights()[name])
    assert set(np.unique(out.trits())) <= {-1, 0, 1}
    assert ptq.theta is not out.theta


def test_search_objective_is_exact(ptq):
    """The searched model's MSE on the search set is what the search reported."""
    X, Y = TASK.batches(np.random.default_rng(1), 1, 3)
    out, res = coordinate_search(ptq, X[0], Y[0], max_sweeps=3)
    assert predict_mse(out, X[0], Y[0]) == pytest.approx(res.mse_history[-1], rel=1e-9)


def test_search_refuses_a_teacher():
    teacher, _ = train_teacher(TASK, TeacherConfig(hidden=3, epochs=2), seed=0)
    with pytest.raises(ValueError, match="student"):
        coordinate_search(teacher, *TASK.eval_set())


@pytest.mark.parametrize("n_seq", [1, 3, 40])  # 40 x 30 steps: numpy's pairwise sum recurses
def test_compiled_search_is_the_python_loop_bit_for_bit(ptq, n_seq):
    """The compiled search against the plain loop it replaces: the same flips, sweeps, objective history
    and parameters, every candidate scored by the cell's forward and numpy's np.sum."""
    from oracle import coordinate_search as loop

    from ternq.kernels.cell import forward_pass, work
    from ternq.train import DT

    X, Y = TASK.batches(np.random.default_rng(n_seq), 1, n_seq)
    X, Y = X[0], Y[0]
    I, H, O = ptq.dims
    out, res = coordinate_search(ptq, X, Y, max_sweeps=3)
    p = ptq.params()
    B, T = X.shape[:2]
    bufs = (np.empty((T + 1, B, H), p.dtype), np.empty((T, B, H), p.dtype), np.empty((T, B, H), p.dtype),
            np.empty((T, B, O), p.dtype), np.empty((I + H, 2 * H), p.dtype))
    wk = work(B, 0, I, H, O, p)

    def predict(q):
        forward_pass(q, np.ascontiguousarray(X, np.float32), I, H, O, DT, *bufs[:4], bufs[4], wk)
        return bufs[3]

    flips, sweeps, history = loop(p, np.ascontiguousarray(ptq.theta[ptq.n_cell:]), Y, I, H, O, 3, predict)
    assert (res.flips, res.sweeps) == (flips, sweeps) and flips > 0
    assert res.mse_history == [h / (B * T * O) for h in history]
    assert out.params().tobytes() == p.tobytes()
