"""The Python API a notebook user calls: arrays in, arrays out."""

import numpy as np
import oracle
import pytest

import ternq
from ternq.gradcheck import numerical_grad, rel_err


@pytest.fixture(scope="module")
def models():
    task = ternq.Sine(n_eval=3, eval_steps=20)
    teacher, _ = ternq.train_teacher(task, ternq.TeacherConfig(hidden=5, epochs=20), seed=0)
    student = ternq.student_from(teacher)
    return task, teacher, student


def test_loss_and_grad_teacher(models):
    task, teacher, _ = models
    X, Y = task.eval_set()
    loss, g = ternq.loss_and_grad(teacher, X, Y)
    p = teacher.theta.astype(np.float64)
    assert loss == pytest.approx(oracle.loss(p, X.astype(float), Y.astype(float), 1, 5, 1), rel=1e-12)
    idx = np.arange(0, p.size, 7)
    gn = numerical_grad(lambda v: oracle.loss(v, X.astype(float), Y.astype(float), 1, 5, 1), p.copy(), idx)
    assert rel_err(g[idx], gn).max() < 1e-6


def test_loss_and_grad_student_with_trajectory(models):
    task, teacher, student = models
    X, Y = task.eval_set()
    loss, g = ternq.loss_and_grad(student, X, Y, alpha=0.5, teacher=teacher, mask="seed", beta=3.0)
    p = oracle.quantize(student.theta.astype(np.float64), 1, 5, 1)
    want = oracle.loss(p, X.astype(float), Y.astype(float), 1, 5, 1, 0.5, teacher.theta.astype(np.float64))
    assert loss == pytest.approx(want, rel=1e-12)
    assert g.shape == student.theta.shape
    with pytest.raises(ValueError, match="teacher"):
        ternq.loss_and_grad(student, X, Y, alpha=0.5)


def test_predict_matches_evaluate(models):
    task, _, student = models
    X, Y = task.eval_set()
    ys, hs = ternq.predict(student, X)
    assert ys.shape == Y.shape and hs.shape == (X.shape[0], X.shape[1] + 1, 5)
    assert np.mean((ys.astype(np.float64) - Y) ** 2) == pytest.approx(ternq.evaluate(student, task)["eval_mse"],
                                                                      rel=1e-6)


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    from ternq.config import load
    from ternq.experiment.run import run_experiment
    from ternq.report.files import save_plots

    settings = load(None).__class__(seeds=(0, 1), widths=(3, 4), teacher=load(None).teacher.__class__(epochs=10),
                                    student=load(None).student.__class__(epochs=10))
    doc, plan, res = run_experiment(settings, check_gradients=False, check_reproducible=False)
    files = save_plots(doc, plan, res, tmp_path)
    assert {f.name for f in files} == {"predictions-h3.png", "predictions-h4.png", "curves-h3.png", "curves-h4.png",
                                       "effects.png", "effects-half-normal.png"}
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000
