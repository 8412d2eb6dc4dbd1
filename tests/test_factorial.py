"""The factorial end to end on the quick settings."""

import json
import re
from pathlib import Path

import pytest
from conftest import invoke as cli

from ternq.cli import main
from ternq.config import load
from ternq.experiment.plans import plan
from ternq.experiment.run import run_experiment

QUICK = str(Path(__file__).parent.parent / "configs" / "quick.toml")




@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("f") / "run"
    with pytest.raises(SystemExit) as exc:
        main(["factorial", "--config", QUICK, "--seeds", "0:2", "--out", str(out), "--quiet"])
    assert exc.value.code == 0
    return out


def test_outputs_written(quick_run):
    doc = json.loads((quick_run / "results.json").read_text())
    assert [r["config"] for r in doc["matrix"]] == list(range(1, 9))
    assert len(doc["per_seed"]) == 2 and doc["seeds"] == [0, 1]
    assert set(doc["effects"]) == {"A", "B", "C", "AB", "AC", "BC", "ABC"}
    assert doc["settings"]["teacher"]["epochs"] == 60 and doc["versions"]["numba"]
    rows = (quick_run / "results.csv").read_text().splitlines()
    # header + per seed: 2 teachers, 2 equal-budget floats, 8 configs, 2 CS; + sine's 2 naive and its AR
    assert len(rows) == 1 + 2 * (2 + 2 + 8 + 2) + 3
    assert [r.split(",")[1] for r in rows[-3:]] == ["persistence", "seasonal", "ar"]
    assert len(list((quick_run / "models").glob("*.npz"))) == 2 * 14
    assert "units" in json.loads((quick_run / "timing.json").read_text())


def test_same_seed_identical_results_json(quick_run, tmp_path, capsys):
    code, _, _ = cli(["factorial", "--config", QUICK, "--seeds", "0:2", "--out", str(tmp_path), "--quiet",
                      "--workers", "1"], capsys)
    assert code == 0
    assert (tmp_path / "results.json").read_bytes() == (quick_run / "results.json").read_bytes()
    assert (tmp_path / "results.csv").read_bytes() == (quick_run / "results.csv").read_bytes()


def test_serial_and_parallel_bit_identical():
    settings = load(QUICK)
    _, _, serial = run_experiment(settings, workers=1, check_gradients=False, check_reproducible=False)
    _, _, parallel = run_experiment(settings, workers=2, check_gradients=False, check_reproducible=False)
    assert serial.keys() == parallel.keys() == {u.digest for u in plan(settings).units}
    for key in serial:
        assert serial[key][1].theta.tobytes() == parallel[key][1].theta.tobytes(), key
        assert serial[key][0]["eval_mse"] == parallel[key][0]["eval_mse"]


def test_table_and_json_agree(capsys):
    code, js, _ = cli(["factorial", "--config", QUICK, "--json", "--quiet"], capsys)
    assert code == 0
    doc = json.loads(js)
    code, table, _ = cli(["factorial", "--config", QUICK, "--quiet"], capsys)
    assert code == 0
    for r in doc["matrix"]:
        line = next(ln for ln in table.splitlines() if re.match(rf"^\W*{r['config']}\W", ln))
        assert f"{r['eval_mse']['geo_mean']:.2e}" in line and f"{r['train_mse']['geo_mean']:.2e}" in line
        assert f"{r['vs_float']['geo_mean']:.2f}x" in line
    for name, e in doc["effects"].items():
        assert re.search(rf"{name}\s.*{re.escape(format(e['mean'], '+.3f'))}", table)
    assert "gradient check passes" in table and "Success criteria" in table
    assert doc["checklist"][0]["ok"] and doc["checklist"][5]["value"] is True


@pytest.mark.parametrize("argv,needle", [
    (["--seed", "0", "--seeds", "3"], "not both"),
    (["--seeds", "5:2"], "seeds"),
    (["--config", "/nonexistent.toml"], "not found"),
    (["--teacher-epochs", "0"], "--teacher-epochs"),
])
def test_factorial_bad_input(argv, needle, capsys):
    code, _, err = cli(["factorial", *argv], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_student_and_cs_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TERNQ_CACHE", str(tmp_path / "cache"))
    s = tmp_path / "s.npz"
    code, js, _ = cli(["student", "--config", QUICK, "--hidden", "4", "--shaped", "--distill", "--quiet", "--json",
                       "--out", str(s)], capsys)
    assert code == 0
    res = json.loads(js)
    assert res["config"]["shaped"] and res["config"]["distill"] and 0 <= res["zero_share"] <= 1
    assert list((tmp_path / "cache" / "units").glob("s0-teacher-h4.*.npz"))  # the teacher was cached
    code, js, _ = cli(["cs", "--config", QUICK, "--from", str(s), "--quiet", "--json", "--out",
                       str(tmp_path / "c.npz")], capsys)
    assert code == 0
    res = json.loads(js)
    assert res["search_mse"][-1] <= res["search_mse"][0]
    code, _, err = cli(["cs", "--from", str(tmp_path / "missing.npz")], capsys)
    assert code == 2 and "not found" in err


def test_factorial_plot_option(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, _, _ = cli(["factorial", "--config", QUICK, "--task", "lorenz", "--quiet", "--plot", str(tmp_path)], capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves-h4.png", "curves-h8.png", "effects-half-normal.png",
                                                          "effects.png", "predictions-h4.png", "predictions-h8.png"]


def test_gradient_check_through_the_python_api():
    """The experiment's check is gradcheck.check_all's worst error at the experiment's widths."""
    from ternq.experiment.run import gradient_error
    from ternq.gradcheck import check_all

    settings = load(QUICK)
    err = gradient_error(settings)
    assert 0 < err < 1e-6
    assert err == max(r.max_rel_err for r in check_all(settings.widths, settings.seeds[0]))
