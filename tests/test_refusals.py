"""Hostile inputs through the CLI: inputs never overwritten, empty paths, files in the way, sizes, signals, clusters.

Each case ends in one line and exit 2 with nothing written, or in a correct result.
"""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUICK, one_line_exit_2
from conftest import invoke as cli

from ternq import config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TERNQ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny teacher and a student of it, through the CLI."""
    folder = tmp_path_factory.mktemp("trained")
    from ternq.cli import main

    for argv in (["teacher", "--hidden", "3", "--epochs", "3", "-q", "--out", str(folder / "t.npz")],
                 ["student", "--hidden", "3", "--epochs", "3", "-q", "--teacher", str(folder / "t.npz"), "--out",
                  str(folder / "s.npz")]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    return folder


# --- a command never overwrites the model it reads -------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["student", "--hidden", "3", "--epochs", "2", "--teacher", "{t}", "--out", "{t}"],
    ["cs", "--from", "{s}", "--out", "{s}"],
    ["cs", "--hidden", "3", "--teacher", "{t}", "--out", "{t}"],
])
def test_input_model_never_overwritten(argv, trained, capsys):
    paths = {"{t}": str(trained / "t.npz"), "{s}": str(trained / "s.npz")}
    argv = [paths.get(a, a) for a in argv] + ["-q"]
    before = {p: Path(p).read_bytes() for p in paths.values()}
    one_line_exit_2(argv, capsys, "refusing to overwrite the input")
    assert {p: Path(p).read_bytes() for p in paths.values()} == before


@pytest.mark.parametrize("argv", [["teacher", "--epochs", "2", "-q", "--out", ""],
                                  ["student", "--epochs", "2", "-q", "--out", ""], ["cs", "-q", "--out", ""],
                                  ["factorial", "--config", QUICK, "-q", "--out", ""],
                                  ["factorial", "--config", QUICK, "-q", "--plot", ""],
                                  ["export", "{s}", "--out", ""], ["export", "{s}", "--format", "c", "--out", ""],
                                  ["predict", "{s}", "--out", ""]])
def test_empty_out_refused_and_nothing_written(argv, trained, tmp_path, monkeypatch, capsys, cache):
    monkeypatch.chdir(tmp_path)
    one_line_exit_2([str(trained / "s.npz") if a == "{s}" else a for a in argv], capsys, "empty")
    assert list(tmp_path.iterdir()) == []  # nothing in the current folder


def test_cs_checks_out_before_training_its_teacher(tmp_path, capsys, cache):
    one_line_exit_2(["cs", "--hidden", "3", "-q", "--out", str(tmp_path / "no" / "c.npz")], capsys,
                    "does not exist")
    assert not cache.exists()  # no teacher trained and cached


# --- files in the way, manifests, settings ---------------------------------------------------------------------

def test_folder_or_dangling_link_at_the_lock_path(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".ternq.lock").mkdir()
    one_line_exit_2(["factorial", "--config", QUICK, "-q", "--out", str(out)], capsys, "lock file")
    (out / ".ternq.lock").rmdir()
    (out / ".ternq.lock").symlink_to(tmp_path / "gone" / "lock")
    one_line_exit_2(["factorial", "--config", QUICK, "-q", "--out", str(out)], capsys, "lock file")


def _with_info(raw: bytes, **info) -> bytes:
    (m,) = struct.unpack("<I", raw[8:12])
    man = json.loads(raw[12:12 + m])
    man["info"].update(info)
    text = json.dumps(man).encode()
    return raw[:8] + struct.pack("<I", len(text)) + text + raw[12 + m:]


@pytest.mark.parametrize("value", ["0.1", None, True, -1.0, [1]])
def test_deploy_file_with_a_recorded_mse_of_the_wrong_type(value, trained, tmp_path, capsys):
    tqd = tmp_path / "s.tqd"
    assert cli(["export", str(trained / "s.npz"), "--out", str(tqd)], capsys)[0] == 0
    bad = tmp_path / "bad.tqd"
    bad.write_bytes(_with_info(tqd.read_bytes(), eval_mse_at_training=value))
    if value is None:  # a missing figure is fine: the file predicts
        code, out, err = cli(["predict", str(bad)], capsys)
        assert code == 0 and "recorded at training" not in out, err
    else:
        one_line_exit_2(["predict", str(bad)], capsys, "eval_mse_at_training")


def test_predict_on_a_teacher_says_what_it_needs(trained, capsys):
    err = one_line_exit_2(["predict", str(trained / "t.npz")], capsys, "this is a teacher")
    assert "predict" in err


def test_settings_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + Path(QUICK).read_bytes())
    assert config.load(path) == config.load(QUICK)


@pytest.mark.parametrize("body", ["[cs]\nsteps = 100000000\n", "[cs]\nsequences = 100000\n",
                                  "[cs]\nsteps = 5000000\n"])
@pytest.mark.parametrize("cmd", ["cs", "factorial"])
def test_search_sets_too_large_refused(body, cmd, tmp_path, capsys, cache):
    path = tmp_path / "s.toml"
    path.write_text(body)
    one_line_exit_2([cmd, "--config", str(path), "-q", *(["--out", str(tmp_path / "c.npz")] if cmd == "cs" else [])],
                    capsys, "cs.")


@pytest.mark.parametrize("value", ["1", "inf", "nan", "-1"])
def test_lr_min_above_lr_refused_as_in_a_settings_file(value, tmp_path, capsys):
    one_line_exit_2(["teacher", "-q", "--lr", "0.01", "--lr-min", value, "--out", str(tmp_path / "t.npz")], capsys,
                    "lr")
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unusable_teacher_cache_is_warned_about(where, tmp_path, monkeypatch, capsys):
    if where == "file":
        (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("TERNQ_CACHE", str(tmp_path / "cache") if where == "file" else "/proc")
    code, _, err = cli(["student", "--hidden", "2", "--epochs", "2", "-q", "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 0 and "Traceback" not in err
    assert err.count("Warning:") == 1 and "cannot cache" in err, err


# --- bench ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [(["--hidden", "100000"], "--hidden"),
                                         (["--batched-hidden", "100000"], "--batched-hidden"),
                                         (["--budget", "inf"], "--budget"), (["--budget", "nan"], "--budget"),
                                         (["--budget", "1e9"], "--budget")])
def test_bench_sizes_refused(argv, needle, capsys):
    one_line_exit_2(["bench", "-q", "--no-factorial", "--no-compile", *argv], capsys, needle)


def test_bench_memory_checked_before_timing(monkeypatch, capsys):
    from ternq import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 20)
    one_line_exit_2(["bench", "-q", "--no-factorial", "--no-compile", "--hidden", "64"], capsys, "memory")


def test_bench_speaks_of_speed_targets(capsys):
    code, out, _ = cli(["bench", "--help"], capsys)
    assert code == 0 and "speed targets" in " ".join(out.split()) and "issue" not in out.lower()


# --- time shown, notes printed before long work ----------------------------------------------------------------

def test_teacher_shows_evaluation_time_apart(tmp_path, capsys):
    code, out, _ = cli(["teacher", "--hidden", "3", "--epochs", "2", "-q", "--out", str(tmp_path / "t.npz")], capsys)
    assert code == 0 and "training time (s)" in out and "evaluation time (s)" in out
    code, out, _ = cli(["teacher", "--hidden", "3", "--epochs", "2", "-q", "--json", "--out",
                        str(tmp_path / "t.npz")], capsys)
    doc = json.loads(out)
    assert doc["eval_seconds"] >= 0 and doc["seconds"] >= 0


def test_sweep_names_its_size_and_folder_before_any_work(tmp_path, monkeypatch, capsys):
    import ternq.sweep

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ternq.sweep, "run_sweep", stop)
    out = tmp_path / "sw"
    code, _, err = cli(["sweep", "--config", str(Path(QUICK).parent / "sweep-quick.toml"), "--out", str(out)], capsys)
    assert code == 130 and out.is_dir()
    assert "cells" in err.splitlines()[0] and str(out) in err.splitlines()[0]
    assert err.strip().splitlines()[-1].startswith("Interrupted: rerunning the same command resumes")


# --- signals --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["teacher", "--hidden", "3"], ["student", "--hidden", "3"],
                                 ["factorial", "--config", QUICK]])
def test_interrupt_says_resumes_only_where_something_resumes(cmd, tmp_path, monkeypatch, capsys, cache):
    import ternq.cli.core
    import ternq.cli.experiment

    def stop(*a, **k):
        raise KeyboardInterrupt

    for mod, name in ((ternq.cli.core, "train_teacher"), (ternq.cli.experiment, "train_student"),
                      (ternq.cli.experiment, "run"), (ternq.cli.experiment, "obtain")):
        monkeypatch.setattr(mod, name, stop)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli([*cmd, "-q"], capsys)
    assert code == 130 and err.strip() == "Interrupted", err


def test_gradient_check_child_ends_with_its_parent(tmp_path):
    """The child asks the kernel for SIGTERM when its parent dies; the parent here is killed with SIGKILL."""
    pid_file = tmp_path / "child.pid"
    child = ("import os, sys, time; from ternq.gradcheck import _die_with; _die_with(int(sys.argv[1])); "
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)")
    parent = (f"import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}, "
              "str(os.getpid())]); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break  # gone (reaped by init)
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().split(")")[1].split()[0] == "Z":
                break  # a zombie: ended, waiting for init to reap it
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


# --- full disks -----------------------------------------------------------------------------------------------

def _full_disk(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_on_c_export_leaves_no_folder(trained, tmp_path, monkeypatch, capsys):
    import ternq.device.export

    monkeypatch.setattr(ternq.device.export, "atomic_write_bytes", _full_disk)
    out = tmp_path / "c"
    one_line_exit_2(["export", str(trained / "s.npz"), "--format", "c", "--out", str(out)], capsys,
                    "No space left")
    assert not out.exists()


def test_full_disk_on_plots_leaves_no_folder(tmp_path, monkeypatch, capsys, cache):
    pytest.importorskip("matplotlib")
    import ternq.cli.experiment

    def half_then_full(doc, plan, results, folder):
        (Path(folder) / "effects.png").write_bytes(b"\x89PNG half")
        _full_disk()

    monkeypatch.setattr(ternq.cli.experiment, "save_plots", half_then_full)
    plots = tmp_path / "plots"
    one_line_exit_2(["factorial", "--config", QUICK, "-q", "--no-gradcheck", "--plot", str(plots)], capsys,
                    "No space left")
    assert not plots.exists()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX")
def test_lost_dask_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TERNQ_CACHE": str(tmp_path / "cache")}
    bin_dir = Path(sys.executable).parent
    sched = subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--port", str(port), "--no-dashboard"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = None
    try:
        time.sleep(3)
        worker = subprocess.Popen([str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                   "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        out = tmp_path / "o"
        run = subprocess.Popen([sys.executable, "-c", "from ternq.cli import main; main()", "factorial", "-q",
                                "--seeds", "30", "--config", QUICK, "--scheduler", f"tcp://127.0.0.1:{port}",
                                "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=env)
        deadline = time.monotonic() + 120
        while run.poll() is None and not list((out / "units").glob("*.npz")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sched.kill()
        err = run.communicate(timeout=120)[1]
    finally:
        for p in (sched, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert run.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and "lost the Dask cluster" in err, err


def test_sine_bars_and_predictions_only_on_sine(tmp_path, capsys, cache):
    code, out, err = cli(["factorial", "--config", QUICK, "-q", "--json", "--no-gradcheck", "--task", "lorenz"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    items = " ".join(c["item"] for c in doc["checklist"])
    assert "teacher eval MSE <" not in items and "best ternary eval MSE <" not in items and "reproducible" in items
    assert "predictions" not in doc


# --- output width ---------------------------------------------------------------------------------------------

def test_gradcheck_table_readable_in_80_columns():
    from rich.console import Console

    from ternq import report
    from ternq.gradcheck import BlockResult

    rows = [BlockResult("student H=5 B*T=3*5 out-distill", "TWN: STE = g_eff * mask(w/2delta)", 1056, 2.5e-7, 667),
            BlockResult("teacher H=32", "W_gate", 1056, 4.6e-8, 12)]
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(report.gradcheck_table(rows, 1e-3))
    text = console.export_text()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for cell in ("checked", "max rel. err", "worst at", "1056", "2.50e-07", "667"):
        assert cell in text


def test_piped_output_honours_columns():
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "ternq", "gradcheck", "--hidden", "3"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0 and max(len(line) for line in proc.stdout.splitlines()) <= 80, proc.stdout


def test_progress_labels_and_counts_never_cut(monkeypatch):
    import io

    from rich.console import Console

    from ternq import report

    console = Console(width=80, file=io.StringIO(), record=True)
    monkeypatch.setattr(report, "err", console)
    with report.progress(True) as p:
        p.add_task("student H=128 SD (cached for next time)", total=100000, completed=12345, loss="1.234e-03")
        console.print(p.make_tasks_table(p.tasks))
    text = console.export_text()
    assert "12345/100000" in text and "1.234e-03" in text and "-:--:--" in text  # figures whole
    assert " ".join(text.split()).count("H=128") == 1 and "…" not in text  # the label folds, never cut


def test_sweep_tables_readable_in_80_columns(tmp_path, capsys):
    import io

    from rich.console import Console

    from ternq.cli.sweep import sweep_tables

    body = Path(QUICK).read_text() + '\n[sweep]\nseeds = "0:2"\nwidths = [[4, 8], [8, 16]]\n'
    (tmp_path / "s.toml").write_text(body)
    code, _, err = cli(["sweep", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "-q",
                        "--no-gradcheck"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "o" / "sweep.json").read_text())
    console = Console(width=80, file=io.StringIO(), record=True)
    for table in sweep_tables(doc, 80):
        console.print(table)
    text = console.export_text()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for c in doc["cells"]:
        a = c["effects"]["A"]
        assert c["name"] in text and f"[{a['lo']:+.2f}, {a['hi']:+.2f}]" in text
