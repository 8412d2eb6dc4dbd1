"""Sweeps: the file format, Dask gives the local bytes, and a killed run resumes to the same results."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import invoke as cli

from ternq.config import ConfigError
from ternq.sweep import load_sweep, parse_sweep, run_sweep

QUICK = str(Path(__file__).parent.parent / "configs" / "quick.toml")
SWEEP_QUICK = str(Path(__file__).parent.parent / "configs" / "sweep-quick.toml")

SMALL = """
[experiment]
widths = [4, 8]
[teacher]
epochs = {teacher}
[student]
epochs = {student}
[cs]
sweeps = 2
sequences = 2
steps = 20
[sweep]
seeds = "{seeds}"
{configs}
"""
TWO_MASKS = """
[sweep.configs.seed-mask]
student.mask = "seed"
[sweep.configs.reference-mask]
student.mask = "reference"
"""


def sweep_file(tmp_path, teacher=60, student=40, seeds="0:2", configs=TWO_MASKS, name="s.toml"):
    path = tmp_path / name
    path.write_text(SMALL.format(teacher=teacher, student=student, seeds=seeds, configs=configs))
    return path




def outputs(folder: Path) -> dict[str, bytes]:
    """Every deterministic output of a run (not timings, not unit files)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.name in ("sweep.json", "results.json", "results.csv")}


def test_example_sweep_files_load():
    s = load_sweep(SWEEP_QUICK)
    assert [c.name for c in s.cells()] == ["sine-w4x8-seed-mask", "sine-w4x8-reference-mask",
                                           "sine-w8x16-seed-mask", "sine-w8x16-reference-mask"]
    assert s.cells()[1].settings.student.mask == "reference" and s.cells()[0].settings.seeds == (0, 1, 2, 3)
    ref = load_sweep(Path(SWEEP_QUICK).with_name("sweep-reference.toml"))
    assert len(ref.cells()) == 4 and ref.seeds == tuple(range(32))
    assert [c.name for c in parse_sweep({"sweep": {}}).cells()] == ["sine-w16x32-base"]


@pytest.mark.parametrize("data,needle", [
    ({}, "missing section [sweep]"),
    ({"sweep": {"seed": 3}}, "sweep.seed: unknown key"),
    ({"sweep": {"seeds": "5:2"}}, "sweep.seeds"),
    ({"sweep": {"tasks": "sine"}}, "sweep.tasks: expected a non-empty list"),
    ({"sweep": {"tasks": ["nope"]}}, "sweep.tasks: unknown task 'nope'"),
    ({"sweep": {"widths": [4, 8]}}, "sweep.widths: expected a list of [narrow, wide]"),
    ({"sweep": {"widths": [[8, 8]]}}, "sweep.widths: [8, 8]"),
    ({"sweep": {"configs": {"a": {"student": {"bogus": 1}}}}}, "sweep.configs.a.student.bogus: unknown key"),
    ({"sweep": {"configs": {"a": {"student": {"epochs": "many"}}}}}, "sweep.configs.a.student.epochs: expected int"),
    ({"sweep": {"configs": {"a": {"experiment": {"seeds": 2}}}}}, "sweep.configs.a.experiment"),
    ({"sweep": {"configs": {"a/b": {}}}}, "sweep.configs.a/b: a configuration name"),
    ({"sweep": {}, "teacher": {"lr": "x"}}, "teacher.lr: expected float"),
])
def test_bad_sweep_files_name_the_key(data, needle):
    with pytest.raises(ConfigError) as exc:
        parse_sweep(data)
    assert needle in str(exc.value)


def test_cli_bad_sweep_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep]\nwidths = [[4, 8]]\n[sweep.configs.x]\nstudent.mask = 'nope'\n")
    code, _, err = cli(["sweep", "--config", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "sweep.configs.x.student.mask" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(["factorial", "--config", str(bad)], capsys)  # a sweep file is not a settings file
    assert code == 2 and "sweep: unknown section" in err


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    out = tmp / "out"
    doc = run_sweep(load_sweep(sweep_file(tmp)), out, workers=2)[0]
    return out, doc


def test_local_sweep_cells_equal_factorials(local_sweep, tmp_path, capsys):
    out, doc = local_sweep
    assert [c["name"] for c in doc["cells"]] == ["sine-w4x8-seed-mask", "sine-w4x8-reference-mask"]
    # one store: the second cell adds its 8 students and its 1+CS per seed (teachers, equal-budget floats and
    # PTQ+CS are shared)
    assert len(list((out / "units").glob("*.npz"))) == 2 * (14 + 9)
    # a cell is exactly the factorial with the same settings (and its units resume it)
    code, _, _ = cli(["factorial", "--config", QUICK, "--seeds", "0:2", "--out", str(tmp_path), "-q"], capsys)
    assert code == 0
    assert (tmp_path / "results.json").read_bytes() == (out / "sine-w4x8-seed-mask" / "results.json").read_bytes()


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            yield cluster, client


def test_dask_sweep_same_bytes_as_local(local_sweep, dask_cluster, tmp_path):
    out, _ = local_sweep
    cluster, client = dask_cluster
    run_sweep(load_sweep(sweep_file(tmp_path)), tmp_path / "out", client=client)
    want, got = outputs(out), outputs(tmp_path / "out")
    assert len(want) == 5 and got == want
    # the two cells share their teachers: each was trained once and stored once
    assert len(list((tmp_path / "out" / "units").glob("s0-teacher-h8.*.npz"))) == 1


def test_factorial_scheduler_same_results_json(dask_cluster, tmp_path, capsys):
    cluster, _ = dask_cluster
    base = ["factorial", "--config", QUICK, "--seeds", "0:2", "-q"]
    assert cli([*base, "--out", str(tmp_path / "local")], capsys)[0] == 0
    assert cli([*base, "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address], capsys)[0] == 0
    assert outputs(tmp_path / "local") == outputs(tmp_path / "dask")
    assert len(list((tmp_path / "dask" / "units").glob("*.npz"))) == 28


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    pytest.importorskip("distributed")
    code, _, err = cli(["factorial", "--config", QUICK, "-q", "--scheduler", "tcp://127.0.0.1:9"], capsys)
    assert code == 2 and "cannot connect to the Dask scheduler" in err and len(err.strip().splitlines()) == 1


def test_killed_sweep_resumes_to_the_same_results(tmp_path, capsys):
    """kill -9 midway, rerun the same command: what was done is kept, the rest runs, the results match."""
    spec = sweep_file(tmp_path, teacher=600, student=400, configs="")  # one cell, 24 units, ~0.1 s each
    ref = run_sweep(load_sweep(spec), tmp_path / "ref", workers=2, check_gradients=False)[0]
    assert ref["cells"][0]["name"] == "sine-w4x8-base"
    out = tmp_path / "out"
    units = out / "units"
    argv = ["sweep", "--config", str(spec), "--out", str(out), "--workers", "1", "--no-gradcheck", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", "from ternq.cli import main; main()", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list(units.glob("*.npz"))) >= 4:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list(units.glob("*.npz")))
    assert proc.returncode == -signal.SIGKILL and 4 <= kept < 24, proc.stderr.read().decode()
    assert not (out / "sweep.json").exists()
    code, _, err = cli(argv[:-1], capsys)  # the same command (with progress, to see the resume note)
    assert code == 0 and f"resuming: {kept} of 28 units already done" in err
    assert outputs(out) == outputs(tmp_path / "ref")


def test_a_one_cell_sweep_writes_the_factorials_results(tmp_path, capsys):
    """One runner: a sweep of one cell and the equivalent factorial write the same results.json, byte for byte."""
    spec = sweep_file(tmp_path, seeds="0:2", configs="[sweep.configs.base]\n[run]\nhorizon = 2\n")
    code, _, err = cli(["sweep", "--config", str(spec), "--out", str(tmp_path / "sweep"), "-q"], capsys)
    assert code == 0, err
    plain = tmp_path / "plain.toml"
    plain.write_text(SMALL.format(teacher=60, student=40, seeds="0:2", configs="").split("[sweep]")[0]
                     + "[run]\nhorizon = 2\n")
    code, _, err = cli(["factorial", "--config", str(plain), "--seeds", "0:2", "--out", str(tmp_path / "fact"), "-q"],
                       capsys)
    assert code == 0, err
    cell = (tmp_path / "sweep" / "sine-w4x8-base" / "results.json").read_bytes()
    assert cell == (tmp_path / "fact" / "results.json").read_bytes()
    assert b'"rollout_mse"' in cell  # the sweep's cell has the forecasts a factorial has


def test_progress_counts_a_training_shared_by_cells_once(monkeypatch):
    """The engine reports every unit of every cell; a training two cells share is one of the total's units."""
    from types import SimpleNamespace

    from ternq import report
    from ternq.cli.sweep import follow

    class Bars:
        def __init__(self):
            self.advanced = 0

        def add_task(self, *a, **k):
            return 0

        def advance(self, tid):
            self.advanced += 1

        def remove_task(self, tid):
            pass

    lines = []
    monkeypatch.setattr(report, "unit_line", lambda done, total, key, fig: lines.append((done, total, key)))
    bars = Bars()
    f = follow(bars, True, "t", "out")
    f["on_resume"](0, 2)
    a, a2, b = (SimpleNamespace(key=k, digest=d) for k, d in (("c1/t", "x"), ("c2/t", "x"), ("c1/s", "y")))
    for u in (a, a2, b):
        f["on_done"](u, {})
    assert bars.advanced == 2 and lines == [(1, 2, "c1/t"), (2, 2, "c1/s")]
