"""Honest figures: the warm-up's scored steps, the equal-budget float reference, the classical baselines in
every evaluation, and the whole-sequence metric against the stored reference."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ternq import forecast as fc
from ternq.config import load
from ternq.experiment.forecasting import ForecastSettings
from ternq.experiment.plans import plan, reference_config
from ternq.experiment.run import run_experiment
from ternq.model import init_teacher
from ternq.rng import stream
from ternq.tasks import Series, get_task
from ternq.train import evaluate, predict, train_teacher

ROOT = Path(__file__).parent.parent
REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_factorial.json").read_text())


def _quick(**run):
    s = load(ROOT / "configs" / "quick.toml")
    return replace(s, run=replace(s.run, **run)) if run else s


# ---------------------------------------------------------------- the warm-up


def test_scored_steps_equal_a_hand_computation():
    task = get_task("sine")
    model = init_teacher(4, stream(0, "test-honest"), 1, 1)
    X, Y = task.eval_set()
    ys, _ = predict(model, X)
    W = 25
    # the forecast at step t is made after t + 1 true rows: W = 25 scores steps 24 .. 99
    assert fc.default_warmup(task) == W and fc.scored_steps(task, W).tolist() == list(range(24, 100))
    sq = [(float(ys[n, t, 0]) - float(Y[n, t, 0])) ** 2 for n in range(len(X)) for t in range(24, 100)]
    assert fc.scored_mse(model, task, W) == pytest.approx(sum(sq) / len(sq), rel=1e-12)
    # the error at each step, by hand: the mean over windows of the squared error
    per_step = fc.step_mse(model, task)
    assert per_step.shape == (100,)
    for t in (0, 24, 99):
        want = sum((float(ys[n, t, 0]) - float(Y[n, t, 0])) ** 2 for n in range(len(X))) / len(X)
        assert per_step[t] == pytest.approx(want, rel=1e-12)
    assert per_step[24:].mean() == pytest.approx(sum(sq) / len(sq), rel=1e-12)
    # persistence (and every baseline) is scored on the same steps
    pq = [(float(X[n, t, 0]) - float(Y[n, t, 0])) ** 2 for n in range(len(X)) for t in range(24, 100)]
    assert fc.baselines(task, warmup=W)["persistence"]["mse"] == pytest.approx(sum(pq) / len(pq), rel=1e-12)
    # the first scored forecast is a rollout's horizon-1 forecast after the same warm-up
    one = fc.rollout_errors(model, task, 1, W)[:, 0]
    np.testing.assert_array_equal(one, np.mean((ys[:, W - 1].astype(np.float64) - Y[:, W - 1]) ** 2, axis=1))
    # W = 1 scores every step: the whole-sequence figure (evaluate() sums in float32)
    assert fc.scored_steps(task, 1).tolist() == list(range(100))
    assert fc.scored_mse(model, task, 1) == pytest.approx(evaluate(model, task)["eval_mse"], rel=1e-5)


def test_warmup_limits_are_one_line_errors():
    task = get_task("sunspots")  # held-out windows of 50 steps: the default is half of one
    assert fc.default_warmup(task) == 25
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="warm-up must be a positive integer"):
            fc.check_warmup(task, bad)
    with pytest.raises(ValueError, match="at most 50"):
        fc.check_warmup(task, 51)
    with pytest.raises(ValueError, match="metric must be one of scored, whole"):
        ForecastSettings(metric="all").checked(task)


# ---------------------------------------------------------------- classical baselines


def _ar_series(n=700, seed=3):
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 0.6 * x[t - 1] - 0.3 * x[t - 2] + rng.normal()
    return x[:, None]


def test_ar_baseline_equals_statsmodels_own_forecast():
    sm = pytest.importorskip("statsmodels.tsa.ar_model")
    task = Series(_ar_series(), "ar2", steps=20, n_eval=4, eval_steps=40)
    W = 10
    forecasts, doc = fc.classical_one_step(task, W, None)
    assert doc == {"fitted": ["ar"]}
    train = task.data[: task.n_train, 0].astype(np.float64)
    top = min(10, int(10 * np.log10(len(train))))
    sel = sm.ar_select_order(train, maxlag=top, ic="aic", trend="c")
    res = sel.model.fit()
    full = res.apply(task.data[:, 0].astype(np.float64), refit=False)
    F, info = forecasts["ar"]
    assert info == {"orders": [len(res.params) - 1]}
    T = fc.window_steps(task)
    for n, start in enumerate(task.eval_starts):
        # scored steps W-1 .. T-1 forecast rows start+W .. start+T from the true rows before them
        want = full.predict(start=int(start) + W, end=int(start) + T, dynamic=False)
        np.testing.assert_allclose(F[n, :, 0], want, rtol=0, atol=1e-10)
    # the score in the baselines document is that forecast's MSE on the same steps
    _, Y = task.eval_set()
    base = fc.baselines(task, warmup=W)
    assert base["ar"]["mse"] == pytest.approx(np.mean((F - Y[:, W - 1:].astype(np.float64)) ** 2), rel=1e-12)


def test_every_evaluation_carries_the_classical_baselines_and_red_lines():
    doc, _, _ = run_experiment(replace(_quick(horizon=6), task="co2"), workers=1, check_gradients=False,
                               check_reproducible=False)
    f = doc["forecast"]
    base = f["baselines"]
    assert {"persistence", "seasonal", "ar", "climatology", "anomaly"} <= set(base)
    assert base["ar"]["orders"] and base["warmup"] == doc["metric"]["warmup"] == 25
    assert {"ar", "climatology", "anomaly"} <= set(base["horizon"]["mse"])
    best = min(base[n]["mse"] for n in fc.baseline_names(base))
    for m in f["models"]:
        assert (m["name"] in f["loses_to_best"]) == (m["vs_best"]["geo_mean"] >= 1)
        assert base[m["best_baseline"]]["mse"] == best
    for r in doc["per_seed"][0]["configs"]:
        assert r["vs_best"] == pytest.approx(r["eval_mse_scored"] / best, rel=1e-12)


# ---------------------------------------------------------------- the equal-budget float reference


def test_equal_budget_reference_is_trained_with_the_students_epochs():
    s = _quick()
    s = replace(s, student=replace(s.student, finetune_epochs=30))  # 40 + 30: more than the teachers' 60
    p = plan(s)
    task = get_task("sine")
    for (i, seed), ref in p.references.items():
        run = p.runs[i - 1]
        assert ref.kind == "teacher" and ref.config.hidden == run.student.hidden
        assert ref.config.epochs == run.student.epochs + run.student.finetune_epochs == 70
        assert ref.config.schedule == run.student.schedule and ref.digest != p.teachers[i, seed].digest
    ref = p.references[1, 0]
    _, hist = train_teacher(task, ref.config, ref.seed)
    assert len(hist.loss) == 70 and np.isfinite(hist.loss).all()
    # where the budgets and schedules agree, the reference is the teacher itself: one unit
    same = replace(s, student=replace(s.student, finetune_epochs=20))
    q = plan(same)
    assert all(q.references[k].digest == q.teachers[k].digest for k in q.references)
    assert reference_config(q.runs[0].teacher, q.runs[0].student) == q.runs[0].teacher


def test_vs_float_divides_by_the_reference_and_says_so():
    doc, p, results = run_experiment(_quick(), workers=1, check_gradients=False, check_reproducible=False)
    assert doc["float_reference"]["kind"] == "equal-budget float"
    for r in doc["per_seed"][0]["configs"]:
        ref = next(x for x in doc["per_seed"][0]["references"].values() if x["key"] == r["reference"])
        assert ref["epochs"] == 40 and ref["hidden"] == r["hidden"]
        for m in ("scored", "whole"):
            assert r[f"vs_float_{m}"] == r[f"eval_mse_{m}"] / ref[f"eval_mse_{m}"]
        assert r["vs_float"] == r["vs_float_scored"]
    for row in doc["matrix"]:
        assert row["reference"] == {"kind": "equal-budget float", "epochs": 40, "schedule": "cosine",
                                    "student_epochs": 40, "teacher_epochs": 60}
    off, _, _ = run_experiment(_quick(float_reference=False), workers=1, check_gradients=False,
                               check_reproducible=False)
    assert off["float_reference"]["kind"] == "teacher" and not off["float_reference"]["models"]
    for r in off["per_seed"][0]["configs"]:
        t = off["per_seed"][0]["teachers"][str(r["hidden"])]
        assert r["reference"] == t["key"] and r["vs_float"] == r["eval_mse"] / t["eval_mse"]
    assert off["matrix"][0]["reference"]["kind"] == "teacher"


# ---------------------------------------------------------------- the notes' metric


def test_whole_sequence_metric_reproduces_the_stored_reference():
    ref = REFERENCE["quick"]
    a, b = ref["seeds"].split(":")
    s = replace(_quick(float_reference=False, metric="whole"), seeds=tuple(range(int(a), int(b))))
    doc, _, _ = run_experiment(s, workers=1, check_gradients=False, check_reproducible=False)
    assert doc["metric"]["name"] == "whole"
    got = {}
    for ps in doc["per_seed"]:
        for r in [*ps["teachers"].values(), *ps["configs"], *ps["cs"]]:
            got[r["key"]] = {k: r[k] for k in ("eval_mse", "ref_mse", "train_mse")}
            assert r["eval_mse"] == r["eval_mse_whole"] and r["eval_mse_scored"] != r["eval_mse_whole"]
        # effects pass through numpy's log10, whose last bit depends on the machine's SIMD paths
        assert ps["effects"] == pytest.approx(ref["per_seed_effects"][str(ps["seed"])], rel=1e-13, abs=1e-15)
    assert got == ref["units"]
