"""The experiment layer under hostile input: every hostile input ends in one line and exit 2, or a correct result."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK, one_line_exit_2
from conftest import invoke as cli

from ternq import memory, train
from ternq.config import ConfigError, from_dict, parse_seeds
from ternq.memory import MemoryShortError, check_fits
from ternq.model import Model
from ternq.rng import stream
from ternq.tasks import get_task
from ternq.train import TeacherConfig, train_teacher, training_bytes

# --- 1. --scheduler -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address,needle", [("bogus", "not a scheduler address"), ("", "not a scheduler address"),
                                            ("tcp://host:99999", "not a scheduler address"),
                                            ("tcp://127.0.0.1:1", "cannot connect")])
def test_bad_scheduler_fails_at_once_in_one_line(address, needle, capsys):
    pytest.importorskip("distributed")
    one_line_exit_2(["factorial", "--config", QUICK, "-q", "--scheduler", address], capsys, needle)


def test_bad_scheduler_leaves_no_finaliser_traceback():
    """Dask's Client.__del__ used to wait 60 s and print a TimeoutError at exit."""
    pytest.importorskip("distributed")
    proc = subprocess.run([sys.executable, "-c", "from ternq.cli import main; main()", "factorial", "--config",
                           QUICK, "-q", "--scheduler", "bogus"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_scheduler_help_says_when_it_gives_up(capsys):
    code, out, _ = cli(["factorial", "--help"], capsys)
    assert code == 0 and "does not answer within" in " ".join(out.split())


# --- 2. negative seeds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["teacher", "--seed", "-1"], ["student", "--seed", "-1"],
                                  ["gradcheck", "--seed", "-1"], ["factorial", "--seed", "-1"],
                                  ["factorial", "--seeds", "-3:0"], ["cs", "--seed", "-2"]])
def test_negative_seeds_refused(argv, capsys):
    one_line_exit_2([*argv, "-q"] if argv[0] != "gradcheck" else argv, capsys)


@pytest.mark.parametrize("value", [[-1], "-3:0", [0, 2**32], "4294967295:4294967297"])
def test_seeds_outside_32_bits_refused_in_settings(value):
    with pytest.raises(ConfigError, match="seeds"):
        from_dict({"experiment": {"seeds": value}})


# --- 3. upper bounds and memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["teacher", "--hidden", "99999999999999999999"], ["teacher", "--hidden", "100000"],
                                  ["teacher", "--epochs", "1000000000"], ["student", "--hidden", "100000"],
                                  ["factorial", "--student-epochs", "1000000000"],
                                  ["factorial", "--factor", "hidden=4,1000000"]])
def test_huge_flags_refused(argv, capsys):
    one_line_exit_2([*argv, "-q"], capsys)


@pytest.mark.parametrize("body,key", [
    ("[teacher]\nbatch = 100000000\n", "teacher.batch"),
    ("[teacher]\nbatch = 1e8\n", "teacher.batch"),
    ("[student]\nepochs = 1000000000\n", "student.epochs"),
    ("[experiment]\nwidths = [4, 1000000]\n", "experiment.widths"),
    ("[experiment]\nseeds = 1000000000\n", "seeds"),
    ("[experiment]\nseeds = \"0:1000000000\"\n", "seeds"),
    ("[experiment]\nseeds = [-1]\n", "seeds"),
])
def test_huge_settings_refused(tmp_path, capsys, body, key):
    path = tmp_path / "c.toml"
    path.write_text(body)
    one_line_exit_2(["factorial", "--config", str(path), "-q"], capsys, key)


def test_parse_seeds_does_not_build_a_billion_seeds():
    with pytest.raises(ConfigError, match="most allowed"):
        parse_seeds(10**9)
    assert parse_seeds("5:7") == (5, 6)


def test_run_that_does_not_fit_in_memory_refused_before_training(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[teacher]\nbatch = 100000\nepochs = 10000000\n")
    one_line_exit_2(["factorial", "--config", str(path), "-q", "--out", str(tmp_path / "out")], capsys, "memory")
    assert not (tmp_path / "out" / "units").exists()


def test_memory_check_against_what_the_machine_has(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 30)
    check_fits(1 << 29)
    with pytest.raises(MemoryShortError, match="GiB"):
        check_fits(1 << 31)


def test_training_bytes_grow_with_epochs_batch_and_width():
    task = get_task("sine")
    base = training_bytes(task, TeacherConfig())
    assert training_bytes(task, TeacherConfig(epochs=10**6)) > base + 8 * 10**6 * 10
    assert training_bytes(task, TeacherConfig(batch=1000)) > base
    assert training_bytes(task, TeacherConfig(hidden=1024)) > base


def _tasks(tmp_path):
    csv = tmp_path / "d.csv"
    t = np.arange(400) * 0.1
    np.savetxt(csv, np.c_[np.sin(t), np.cos(0.7 * t)], delimiter=",")
    from ternq.tasks import from_file

    return [get_task("sine"), get_task("multisine"), get_task("lorenz"), from_file(csv)]


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_batch_chunks_bit_identical_to_one_call(tmp_path, chunk):
    for task in _tasks(tmp_path):
        X, Y = task.batches(stream(3, "d"), 23, 5)
        parts = list(task.batch_chunks(stream(3, "d"), 23, 5, chunk))
        assert [e0 for e0, _, _ in parts] == list(range(0, 23, chunk))
        assert np.concatenate([p[1] for p in parts]).tobytes() == X.tobytes(), task.name
        assert np.concatenate([p[2] for p in parts]).tobytes() == Y.tobytes(), task.name
        assert max(len(p[1]) for p in parts) == min(chunk, 23)  # never all epochs at once (unless asked)


def test_training_in_small_chunks_gives_the_same_bits(monkeypatch):
    task = get_task("lorenz")
    cfg = TeacherConfig(hidden=4, epochs=37, batch=3)
    whole, hist = train_teacher(task, cfg, seed=1)
    monkeypatch.setattr(train, "CHUNK_BYTES", 2 * 3 * task.steps * 6 * 4 + 1)  # two epochs a chunk
    assert train.chunk_epochs(task, 3, 37) == 2
    seen = []
    chunked, hist2 = train_teacher(task, cfg, seed=1, progress=lambda d, t, loss: seen.append(d))
    assert chunked.theta.tobytes() == whole.theta.tobytes()
    assert hist2.loss.tobytes() == hist.loss.tobytes()
    assert seen[-1] == 37 and seen == sorted(seen)


# --- 4. output folders ----------------------------------------------------------------------------------------

FACTORIAL = ["factorial", "--config", QUICK, "-q", "--no-gradcheck"]


def results_of(folder):
    import json

    return json.loads((folder / "results.json").read_text())


def test_file_named_units_in_out(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "units").write_text("not a folder")
    one_line_exit_2([*FACTORIAL, "--out", str(tmp_path / "o")], capsys, "units is a file")


def test_folder_where_a_unit_file_belongs(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli([*FACTORIAL, "--out", str(out)], capsys)[0] == 0
    victim = sorted((out / "units").glob("*.npz"))[0]
    victim.unlink()
    victim.mkdir()
    one_line_exit_2([*FACTORIAL, "--out", str(out)], capsys, "is a folder where a unit file belongs")
    victim.rmdir()
    assert cli([*FACTORIAL, "--out", str(out)], capsys)[0] == 0


def test_full_disk_during_factorial_then_resume(tmp_path, capsys, monkeypatch):
    import errno

    from ternq.experiment import store

    real, writes = store.atomic_write_bytes, []

    def filling(path, data):
        if len(writes) >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes.append(path)
        real(path, data)

    assert cli([*FACTORIAL, "--out", str(tmp_path / "clean")], capsys)[0] == 0
    monkeypatch.setattr(store, "atomic_write_bytes", filling)
    out = tmp_path / "o"
    one_line_exit_2([*FACTORIAL, "--out", str(out)], capsys, "No space left on device")
    assert len(list((out / "units").glob("*.npz"))) == 4 and not list((out / "units").glob(".*tmp"))
    monkeypatch.setattr(store, "atomic_write_bytes", real)
    code, _, err = cli([*FACTORIAL, "--out", str(out)], capsys)
    assert code == 0 and not err.strip()
    assert results_of(out) == results_of(tmp_path / "clean")


def test_other_settings_into_the_same_out_refused_unless_force(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli([*FACTORIAL, "--out", str(out)], capsys)[0] == 0
    first = results_of(out)
    one_line_exit_2([*FACTORIAL, "--out", str(out), "--seed", "1"], capsys, "seeds: [0] there, [1] here")
    one_line_exit_2([*FACTORIAL, "--out", str(out), "--student-epochs", "30"], capsys, "student.epochs")
    assert results_of(out) == first  # untouched
    assert cli([*FACTORIAL, "--out", str(out)], capsys)[0] == 0  # the same settings resume as before
    assert cli([*FACTORIAL, "--out", str(out), "--seed", "1", "--force"], capsys)[0] == 0
    assert results_of(out)["seeds"] == [1]


def test_other_settings_refused_for_a_folder_from_before_the_mark(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli([*FACTORIAL, "--out", str(out)], capsys)[0] == 0
    (out / ".ternq-settings.json").unlink()  # written by an older ternq: results.json alone tells
    one_line_exit_2([*FACTORIAL, "--out", str(out), "--seed", "1"], capsys, "other settings")


def test_sweep_into_a_folder_of_another_sweep_refused(tmp_path, capsys):
    body = Path(QUICK).read_text() + '\n[sweep]\nseeds = "0:1"\n'
    (tmp_path / "a.toml").write_text(body)
    (tmp_path / "b.toml").write_text(body.replace("epochs = 40", "epochs = 30"))
    out = str(tmp_path / "o")
    assert cli(["sweep", "--config", str(tmp_path / "a.toml"), "--out", out, "-q", "--no-gradcheck"], capsys)[0] == 0
    one_line_exit_2(["sweep", "--config", str(tmp_path / "b.toml"), "--out", out, "-q", "--no-gradcheck"], capsys,
                    "other settings")


# --- 5. accepted without a word -------------------------------------------------------------------------------

def test_exploding_learning_rate_warns(tmp_path, capsys):
    code, _, err = cli(["teacher", "--hidden", "4", "--epochs", "60", "--lr", "1e10", "-q",
                        "--out", str(tmp_path / "t.npz")], capsys)
    assert code == 0 and "learning rate is probably too high" in err
    code, _, err = cli(["teacher", "--hidden", "4", "--epochs", "60", "-q", "--out", str(tmp_path / "u.npz")],
                       capsys)
    assert code == 0 and "Warning" not in err


def test_exploding_learning_rate_warns_once_in_a_factorial(capsys):
    code, _, err = cli([*FACTORIAL, "--factor", "student.lr=0.01,1e10"], capsys)
    assert code == 0 and err.count("learning rate is probably too high") == 1 and "1 of 4 trainings" in err


def test_worse_than_start():
    assert train.worse_than_start(1.0, 20.0) == 20.0
    assert train.worse_than_start(1.0, 2.0) is None
    assert train.worse_than_start(float("nan"), 2.0) is None


def test_a_progressive_student_is_compared_from_its_first_fully_quantized_epoch():
    """Before every row runs quantized the loss is partly a float model's: the rise after it is no warning."""
    from dataclasses import replace

    from ternq.kernels.loop import rows_quantized

    cfg = replace(train.StudentConfig(), epochs=6000, progressive=0.5)
    e = train.quantized_from(cfg)
    assert rows_quantized(67, 0.5, 6000, e) >= 67 > rows_quantized(67, 0.5, 6000, e - 1)
    for n_main, share in ((7, 0.3), (1500, 1.0), (10, 0.05)):
        e = train.quantized_from(replace(cfg, epochs=n_main, progressive=share))
        assert rows_quantized(5, share, n_main, e) >= 5 and (e == 0 or rows_quantized(5, share, n_main, e - 1) < 5)
    assert train.quantized_from(train.StudentConfig()) == 0 and train.quantized_from(train.TeacherConfig()) == 0


@pytest.mark.parametrize("argv", [["teacher", "--task", ""], ["student", "--task", ""], ["factorial", "--task", ""],
                                  ["cs", "--task", ""]])
def test_empty_task_name_refused(argv, capsys):
    one_line_exit_2([*argv, "-q"], capsys, "unknown task ''")


def test_empty_task_in_settings_refused(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[experiment]\ntask = ""\n')
    one_line_exit_2(["factorial", "--config", str(tmp_path / "c.toml"), "-q"], capsys, "experiment.task")


def test_wide_width_first_refused(tmp_path, capsys):
    """[32, 16] used to flip the sign of the width effect without a word."""
    (tmp_path / "c.toml").write_text("[experiment]\nwidths = [32, 16]\n")
    one_line_exit_2(["factorial", "--config", str(tmp_path / "c.toml"), "-q"], capsys, "narrow width first")


def test_cs_from_a_student_refuses_flags_it_cannot_honour(tmp_path, capsys):
    teacher, student = tmp_path / "t.npz", tmp_path / "s.npz"
    assert cli(["teacher", "--hidden", "4", "--epochs", "30", "-q", "--out", str(teacher)], capsys)[0] == 0
    assert cli(["student", "--hidden", "4", "--epochs", "20", "-q", "--teacher", str(teacher), "--out",
                str(student)], capsys)[0] == 0
    one_line_exit_2(["cs", "--from", str(student), "--hidden", "8", "-q"], capsys, "has width 4")
    one_line_exit_2(["cs", "--from", str(student), "--teacher", str(teacher), "-q"], capsys, "--teacher")
    code, _, _ = cli(["cs", "--from", str(student), "--hidden", "4", "--sweeps", "1", "-q", "--out",
                      str(tmp_path / "c.npz")], capsys)
    assert code == 0 and Model.load(tmp_path / "c.npz").hidden == 4


# --- 6. newcomer papercuts ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def doc_two_seeds():
    from ternq.config import load
    from ternq.experiment.run import run_experiment

    settings = load(QUICK)
    from dataclasses import replace

    return run_experiment(replace(settings, seeds=(0, 1)), workers=1, check_gradients=False)[0]


def rendered(tables, width):
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    for t in tables:
        if t is not None:
            console.print(t)
    return console.export_text()


def test_matrix_readable_in_80_columns(doc_two_seeds):
    from ternq import report

    text = rendered(report.factorial_tables(doc_two_seeds, width=80), 80)
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    for r in doc_two_seeds["matrix"]:  # every configuration's figure and interval is there, whole
        assert report.fmt(r["eval_mse"]["geo_mean"], 2) in text and report.fmt(r["eval_mse"]["lo"], 2) in text
    for e in doc_two_seeds["effects"].values():
        assert f"{e['lo']:+.3f}, {e['hi']:+.3f}" in text
    wide = rendered(report.factorial_tables(doc_two_seeds, width=200), 200)
    assert "Train MSE" in wide and "Train MSE" not in text


def test_a_line_per_finished_unit_when_not_a_terminal(capsys):
    code, _, err = cli(["factorial", "--config", QUICK, "--no-gradcheck"], capsys)
    lines = [x for x in err.splitlines() if x.startswith("[")]
    assert code == 0 and len(lines) == 14 and lines[-1].startswith("[14/14]") and "eval MSE" in lines[0]
    code, _, err = cli(["factorial", "--config", QUICK, "--no-gradcheck", "-q"], capsys)
    assert code == 0 and not err.strip()


def test_first_run_says_it_compiles(capsys, monkeypatch):
    from ternq import report

    train_teacher(get_task("sine"), TeacherConfig(hidden=4, epochs=2), seed=0)
    assert report.kernels_compiled()  # the cache of the loop just used is found
    with report.progress(True):
        pass
    assert "compiling" not in capsys.readouterr().err
    monkeypatch.setattr(report, "kernels_compiled", lambda: False)
    with report.progress(True):
        pass
    assert "compiling kernels (first run only" in capsys.readouterr().err


def test_progress_shows_an_eta():
    from rich.progress import TimeRemainingColumn

    from ternq import report

    with report.progress(True) as p:
        assert any(isinstance(c, TimeRemainingColumn) for c in p.columns)


def test_ctrl_c_says_rerun_resumes_and_it_does(tmp_path, capsys):
    import signal
    import time

    out = tmp_path / "o"
    argv = ["factorial", "--config", QUICK, "--teacher-epochs", "3000", "--student-epochs", "3000", "--out", str(out),
            "--no-gradcheck", "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-c", "from ternq.cli import main; main()", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not list((out / "units").glob("*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("Interrupted: rerunning the same")
    kept = len(list((out / "units").glob("*.npz")))
    code, _, err = cli(argv, capsys)
    assert code == 0 and (f"resuming: {kept} of 12" in err or kept == 12)


def test_predictions_plot_has_an_error_panel_a_free_legend_and_the_seed(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from ternq.report import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    task = get_task("lorenz")  # three channels
    teacher, _ = train_teacher(task, TeacherConfig(hidden=4, epochs=5), seed=7)
    plots.predictions({"teacher": teacher}, task, tmp_path / "p.png")
    fig = figs[0]
    assert len(fig.axes) == 2 * task.n_out
    assert "seed 7" in fig.axes[0].get_title()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # beside, not over, the curves
    err_line = fig.axes[1].get_lines()[-1].get_ydata()
    X, Y = task.eval_set()
    ys = train.predict(teacher, X[:1])[0]
    assert np.allclose(err_line, ys[0, :, 0] - Y[0, :, 0])


def test_curves_plot_smoothed_over_faint_raw_and_says_the_seed(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from ternq.report import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    rng = np.random.default_rng(0)
    loss = np.exp(-np.linspace(0, 3, 200)) * np.exp(rng.normal(0, 0.5, 200))
    plots.curves({"a": (np.arange(200), loss)}, tmp_path / "c.png", seed=3)
    ax = figs[0].axes[0]
    raw, trend = ax.get_lines()
    assert raw.get_alpha() < 0.5 and trend.get_alpha() in (None, 1.0) and "seed 3" in ax.get_title()
    assert np.std(np.diff(np.log(trend.get_ydata()))) < 0.5 * np.std(np.diff(np.log(loss)))


def test_smooth_keeps_length_and_a_constant():
    from ternq.report.plots import smooth

    out = smooth(np.full(50, 2.0), 7)
    assert out.shape == (50,) and np.allclose(out, 2.0)
    assert smooth(np.array([1.0, 100.0, 1.0]), 3)[1] == pytest.approx(100.0 ** (1 / 3))


def test_sweep_table_says_which_checks_failed_and_gives_intervals(tmp_path, capsys):
    body = Path(QUICK).read_text() + '\n[sweep]\nseeds = "0:2"\n'
    (tmp_path / "s.toml").write_text(body)
    code, _, _ = cli(["sweep", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "-q",
                      "--no-gradcheck"], capsys)
    assert code == 0
    import json

    from ternq.cli.sweep import sweep_table

    doc = json.loads((tmp_path / "o" / "sweep.json").read_text())
    cell = doc["cells"][0]
    text = " ".join(rendered([sweep_table(doc)], 250).split())
    checks = cell["checks"]
    assert f"{checks['passed']}/{checks['of']} passed" in text and "see results.json" not in text
    assert checks["failed"] and all(item in text for item in checks["failed"])
    a = cell["effects"]["A"]
    assert f"{a['mean']:+.2f} [{a['lo']:+.2f}, {a['hi']:+.2f}]" in text


def test_write_csv_writes_a_header_and_the_rows_in_one_step(tmp_path):
    import csv

    from ternq.report.files import write_csv

    path = tmp_path / "t.csv"
    path.write_text("old")
    rows = [{"task": "sine", "step": 24, "mse": 1.5e-07}, {"task": "lorenz", "step": 25, "mse": 2.0}]
    assert write_csv(path, rows) == path
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert back == [{k: str(v) for k, v in r.items()} for r in rows]
    assert path.read_text().splitlines()[0] == "task,step,mse"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left behind
