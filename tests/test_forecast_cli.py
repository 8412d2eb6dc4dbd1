"""Forecast evaluation through the engine and the command line: naive baselines in every table and file,
--horizon, --period, --response rollout:K, predict --horizon, the plots."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke as run

from ternq import forecast as fc
from ternq.model import Model
from ternq.tasks import get_task

QUICK = str(Path(__file__).parent.parent / "configs" / "quick.toml")
K = 12  # horizon of the quick runs
FACTORIAL = ["factorial", "--config", QUICK, "--task", "lorenz", "--no-gradcheck", "--quiet", "--horizon", str(K),
             "--seeds"]


@pytest.fixture(scope="module")
def lorenz_run(tmp_path_factory):
    """The quick factorial on lorenz with --horizon: its stdout, results.json and folders (plots: None
    without matplotlib, which only the plot test needs)."""
    import importlib.util
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("fc")  # a module fixture cannot use capsys: run the command in a subprocess
    out = root / "out"
    plots = root / "plots" if importlib.util.find_spec("matplotlib") else None
    plot = [] if plots is None else ["--plot", str(plots)]
    proc = subprocess.run([sys.executable, "-m", "ternq", *FACTORIAL, "0:2", "--out", str(out), *plot],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    return {"stdout": proc.stdout, "doc": json.loads((out / "results.json").read_text()), "out": out, "plots": plots,
            "root": root}


def _env():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _rows(doc):
    """Every model row of every seed: teachers, configurations and CS rows."""
    for s in doc["per_seed"]:
        yield from s["teachers"].values()
        yield from s["configs"]
        yield from s["cs"]


def test_factorial_horizon_prints_and_writes_horizon_results(lorenz_run):
    doc, stdout = lorenz_run["doc"], lorenz_run["stdout"]
    assert "Against naive and classical forecasts on lorenz" in stdout and "Free-running forecasts on lorenz" in stdout
    assert "persistence" in stdout and "VPT (Lyapunov)" in stdout
    hz = doc["forecast"]["baselines"]["horizon"]
    assert hz["horizon"] == K and hz["warmup"] == fc.default_warmup(get_task("lorenz"))
    assert len(hz["mse"]["persistence"]) == K
    for r in _rows(doc):
        assert len(r["rollout_mse"]) == K and r["rollout_mse_at_horizon"] == r["rollout_mse"][-1]
        assert "vpt_lyapunov" in r and "passes_persistence" in r
    names = [m["name"] for m in doc["forecast"]["models"]]
    assert names == [f"config {i}" for i in range(1, 9)] + ["PTQ+CS", "1+CS", "teacher H=4", "teacher H=8",
                                                          "float-h4-e40-cosine", "float-h8-e40-cosine"]
    for name in names:  # every model is a row of the free-running table
        assert any(line.lstrip("│ ").startswith(name) for line in stdout.splitlines() if "e+" in line or "e-" in line)


def test_factorial_horizon_plots(lorenz_run):
    if lorenz_run["plots"] is None:
        pytest.skip("needs matplotlib")
    written = {p.name for p in lorenz_run["plots"].iterdir()}
    assert {"horizon-h4.png", "horizon-h8.png", "trace-h4.png", "trace-h8.png"} <= written


def test_rollout_figures_are_the_models_own(lorenz_run):
    """A unit's rollout curve is the rollout of its saved model, and the baseline curve persistence's."""
    doc, out = lorenz_run["doc"], lorenz_run["out"]
    task = get_task("lorenz")
    row = doc["per_seed"][1]["configs"][5]
    model = Model.load(out / "models" / (row["key"].replace("/", "-") + ".npz"))
    assert row["rollout_mse"] == fc.rollout_mse(model, task, K).tolist()
    X, Y = task.eval_set()
    W = doc["forecast"]["baselines"]["horizon"]["warmup"]
    origin = X[:, W - 1 : W].astype(np.float64)
    want = np.mean((Y[:, W - 1 : W - 1 + K] - origin) ** 2, axis=(0, 2))
    np.testing.assert_allclose(doc["forecast"]["baselines"]["horizon"]["mse"]["persistence"], want, rtol=1e-12)


def test_vs_naive_is_model_mse_over_persistence_mse(lorenz_run):
    doc = lorenz_run["doc"]
    base = doc["forecast"]["baselines"]
    X, Y = get_task("lorenz").eval_set()
    W = base["warmup"]  # the forecasts made after W true rows are scored: steps W - 1 .. T - 1
    assert base["persistence"]["mse"] == pytest.approx(np.mean((X[:, W - 1:].astype(np.float64) - Y[:, W - 1:]) ** 2),
                                                       rel=1e-12)
    assert "seasonal" not in base and base["period"] is None  # lorenz has no season
    for r in _rows(doc):
        assert r["vs_persistence"] == pytest.approx(r["eval_mse"] / base["persistence"]["mse"], rel=1e-12)
        assert r["vs_naive"] == r["vs_persistence"]
        assert r["beats_persistence"] == (r["eval_mse"] < base["persistence"]["mse"])
    flagged = doc["forecast"]["loses_to_persistence"]
    for m in doc["forecast"]["models"]:
        assert (m["name"] in flagged) == (m["vs_persistence"]["geo_mean"] >= 1)
    if flagged:
        assert "no better than persistence" in lorenz_run["stdout"]
    with open(lorenz_run["out"] / "results.csv") as f:
        rows = list(csv.DictReader(f))
    persistence = [r for r in rows if r["row"] == "persistence"]
    assert len(persistence) == 1 and float(persistence[0]["eval_mse"]) == base["persistence"]["mse"]
    first = next(r for r in rows if r["row"] == "config1" and r["seed"] == "0")
    assert float(first["vs_naive"]) == doc["per_seed"][0]["configs"][0]["vs_naive"]


def test_rollout_response_changes_the_effects_as_computed_by_hand(lorenz_run, capsys):
    k = 5
    argv = [*FACTORIAL, "0:2", "--out", str(lorenz_run["out"]), "--response", f"rollout:{k}", "--json"]
    code, stdout, err = run(argv, capsys)  # resumes: the same units, another response
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["response"] == f"log10(rollout MSE at horizon {k})"
    by_hand = {e: [] for e in ("A", "B", "C", "AB", "AC", "BC", "ABC")}
    for s in doc["per_seed"]:
        y = np.log10([r["rollout_mse"][k - 1] for r in s["configs"]])
        sign = {"A": np.array([1 if r["shaped"] else -1 for r in s["configs"]]),
                "B": np.array([1 if r["distill"] else -1 for r in s["configs"]]),
                "C": np.array([1 if r["hidden"] == 8 else -1 for r in s["configs"]])}
        for e in by_hand:
            col = np.prod([sign[ch] for ch in e], axis=0)
            by_hand[e].append(y[col > 0].mean() - y[col < 0].mean())
    for e, v in by_hand.items():
        assert doc["effects"][e]["mean"] == pytest.approx(np.mean(v), abs=1e-12)
    one_step = lorenz_run["doc"]["effects"]
    assert any(abs(doc["effects"][e]["mean"] - one_step[e]["mean"]) > 1e-6 for e in by_hand)


@pytest.mark.parametrize("argv,needle", [
    (["factorial", "--horizon", "0"], "horizon must be a positive integer, not 0"),
    (["factorial", "--horizon", "77"], "at most 76"),
    (["factorial", "--task", "sunspots", "--horizon", "27"], "at most 26"),
    (["factorial", "--horizon", "10", "--warmup", "101"], "at most 100"),
    (["factorial", "--period", "-2"], "period must be a positive integer"),
    (["factorial", "--period", "102"], "at most 101"),
    (["factorial", "--response", "rollout:0"], "positive integer horizon"),
    (["factorial", "--response", "rollout:90"], "at most 76"),
    (["factorial", "--horizon", "5", "--response", "rollout:9"], "at least 9"),
    (["factorial", "--response", "loss"], "unknown response"),
    (["teacher", "--horizon", "80"], "at most 76"),
    (["student", "--period", "0"], "period must be a positive integer"),
    (["cs", "--task", "co2", "--horizon", "200"], "at most 76"),
])
def test_bad_horizon_and_period_one_line_exit_2(argv, needle, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_predict_horizon_bit_identical_to_training_rollout(tmp_path, capsys):
    student = tmp_path / "s.npz"
    code, stdout, err = run(["student", "--config", QUICK, "--task", "lorenz", "--hidden", "4", "--quiet", "--json",
                             "--horizon", str(K), "--out", str(student)], capsys)
    assert code == 0, err
    trained = json.loads(stdout)
    assert code == 0 and run(["export", str(student), "--out", str(tmp_path / "s.tqd")], capsys)[0] == 0
    code, stdout, err = run(["predict", str(tmp_path / "s.tqd"), "--horizon", str(K), "--json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    want = fc.rollout_mse(Model.load(student), get_task("lorenz"), K).tolist()
    assert res["rollout_mse"] == want == trained["rollout_mse"]
    assert res["vpt_lyapunov"] == trained["vpt_lyapunov"]
    # the student's one-step figures against the baselines
    assert trained["vs_persistence"] == pytest.approx(trained["eval_mse_scored"] /
                                                      trained["naive"]["persistence"]["mse"])
    for argv, needle in ((["--horizon", "3", "--factored"], "--factored"), (["--horizon", "90"], "at most 76"),
                         (["--warmup", "3"], "--warmup needs --horizon")):
        code, _, err = run(["predict", str(tmp_path / "s.tqd"), *argv], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_period_option_adds_seasonal_naive_everywhere(tmp_path, capsys):
    code, stdout, err = run(["teacher", "--hidden", "4", "--epochs", "30", "--task", "lorenz", "--period", "7",
                             "--quiet", "--json", "--out", str(tmp_path / "t.npz")], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    base = fc.baselines(get_task("lorenz"), period=7)
    assert res["naive"]["seasonal"]["mse"] == base["seasonal"]["mse"] and res["naive"]["period"] == 7
    assert res["vs_seasonal"] == pytest.approx(res["eval_mse_scored"] / base["seasonal"]["mse"])
    assert res["vs_naive"] == pytest.approx(res["eval_mse_scored"] / min(base["seasonal"]["mse"],
                                                                         base["persistence"]["mse"]))


def test_serial_and_threads_identical_with_horizon(tmp_path, capsys):
    docs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        code, _, err = run([*FACTORIAL, "0:1", "--workers", workers, "--out", str(out)], capsys)
        assert code == 0, err
        docs.append((out / "results.json").read_bytes())
    assert docs[0] == docs[1] and b"rollout_mse" in docs[0]
