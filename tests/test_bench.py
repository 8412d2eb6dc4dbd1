"""ternq bench: its bookkeeping (pairing, spreads, targets) and its command line; no timings are asserted."""

import sys

import numpy as np
import pytest
from conftest import invoke as cli

from ternq import bench


def test_spread():
    assert bench.spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert bench.spread([]) == {}


def test_commands_interleave_c_runs_and_pair_the_ratios(monkeypatch):
    calls = []
    walls = iter([99.0,  # the untimed warm-up
                  1.0, 40.0, 2.0, 44.0, 4.0,  # seed 0 and C interleaved, the third seed-0 run unpaired
                  99.0, 5.0, 6.0, 7.0,  # 10 seeds: warm-up, 3 runs
                  10.0, 11.0, 12.0])  # cold

    def fake(cmd, env=None):
        calls.append(("C" if cmd == ["/c/prog"] else " ".join(cmd[3:]), env is not None and "NUMBA_CACHE_DIR" in env))
        w = next(walls)
        return {"wall_s": w, "cpu_s": w / 2}

    monkeypatch.setattr(bench, "time_process", fake)
    out = bench.bench_commands(runs=3, c_ref="/c/prog", c_runs=2)
    names = [c[0] for c in calls]
    assert names[:6] == ["factorial --seed 0 -q", "factorial --seed 0 -q", "C", "factorial --seed 0 -q", "C",
                         "factorial --seed 0 -q"]
    assert names[6:10] == ["factorial --seeds 0:10 -q"] * 4
    assert [c[1] for c in calls[10:]] == [True] * 3 and not any(c[1] for c in calls[:10])  # cold: own cache
    assert out["seed0"]["wall_s"]["median"] == 2.0  # the warm-up is not counted
    assert out["c_ref"]["wall_s"] == {"median": 42.0, "min": 40.0, "max": 44.0, "n": 2}
    assert out["vs_c"]["wall_s"] == {"median": 31.0, "min": 22.0, "max": 40.0, "n": 2}  # 40/1, 44/2
    assert out["seeds10"]["wall_s"]["median"] == 6.0
    assert out["seeds10"]["vs_c_wall"]["median"] == 7.0  # C's median over each 10-seed run
    assert out["cold"]["cpu_s"]["median"] == 5.5


def test_targets_met_and_not():
    doc = {"commands": {"vs_c": {"wall_s": bench.spread([30, 20, 26]), "cpu_s": bench.spread([10, 12, 14])},
                        "seeds10": {"wall_s": bench.spread([7.0, 9.0, 7.5])},
                        "cold": {"wall_s": bench.spread([16.0])}},
           "batched_rows": [{"hidden": 16, "gflops": g} for g in (41.0, 45.0, 39.0)] + [{"hidden": 32, "gflops": 1}]}
    got = {t["key"]: t for t in bench.targets(doc)}
    assert got["seed0_vs_c_wall"]["met"] and got["seed0_vs_c_wall"]["median"] == 26
    assert not got["seed0_vs_c_cpu"]["met"]
    assert got["seeds10_wall"]["met"] and got["seeds10_wall"]["median"] == 7.5
    assert got["batched_h16_gflops"]["met"] and got["batched_h16_gflops"]["min"] == 39.0
    assert not got["cold_wall"]["met"]
    assert "seeds10_vs_c_wall" not in got  # no C program, no ratio
    assert bench.targets({}) == []


def test_time_process_and_a_failing_command():
    r = bench.time_process([sys.executable, "-c", "sum(range(10**6))"])
    assert r["wall_s"] > 0 and r["cpu_s"] > 0
    with pytest.raises(RuntimeError, match="exited with 3: boom"):
        bench.time_process([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])


def test_batched_rows_are_per_model():
    s = bench.batched_epoch_time(4, "distill", epochs=2, repeat=1, M=4, B=2, T=5)
    assert np.isfinite(s) and s > 0
    assert bench.flops_epoch(16, "distill") > bench.flops_epoch(16, "student") > bench.flops_epoch(16, "teacher")


@pytest.mark.parametrize("argv, needle", [
    (["--c-ref", "/nonexistent/prog"], "no such file"),
    (["--runs", "0"], "--runs"),
    (["--c-runs", "0"], "--c-runs"),
    (["--budget", "0"], "--budget"),
    (["--hidden", "0"], "--hidden"),
])
def test_bad_input_one_line(argv, needle, capsys):
    code, out, err = cli(["bench", *argv], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_c_ref_must_be_executable(tmp_path, capsys):
    f = tmp_path / "prog"
    f.write_text("not a program")
    code, _, err = cli(["bench", "--c-ref", str(f)], capsys)
    assert code == 2 and "not executable" in err
    f.chmod(0o755)
    code, _, err = cli(["bench", "--c-ref", str(f), "--no-factorial"], capsys)
    assert code == 2 and "--no-factorial" in err


def test_ceiling_loop_does_the_work_it_is_timed_for():
    # the timed loop must really compute acc += M^T v each pass (a loop the compiler dropped would time nothing)
    rng = np.random.default_rng(1)
    M = rng.random((bench.CEILING_ROWS, 40), dtype=np.float32)
    v, w = rng.random((2, bench.CEILING_ROWS), dtype=np.float32)
    acc, bcc = np.zeros((2, 40), np.float32)
    bench._ceiling(acc, bcc, M, v, w, 3)
    np.testing.assert_allclose(acc, 3 * (M.astype(np.float64).T @ v), rtol=1e-5)
    np.testing.assert_allclose(bcc, 3 * (M.astype(np.float64).T @ w), rtol=1e-5)
    assert bench.ceiling_gflops(repeat=1) > 0


def test_tables_show_the_ceiling_and_its_floors():
    from rich.console import Console

    from ternq.cli.bench import tables

    doc = {"batch": 10, "steps": 50, "peak_gflops": 100.0, "ceiling_gflops": 40.0, "ceiling_samples": [31.0, 40.0],
           "factorial_gflop": 80.0,
           "factorial_floor_s": 0.8, "seeds10_floor_2cores_s": 4.0, "factorial_floor_ceiling_s": 2.0,
           "seeds10_floor_ceiling_2cores_s": 10.0,
           "rows": [{"hidden": 16, "kind": "teacher", "epochs_per_s": 900.0, "gflops": 10.0}],
           "batched_rows": [{"hidden": 16, "kind": "teacher", "models": 16, "model_epochs_per_s": 2000.0,
                             "gflops": 20.0, "vs_single": 2.2}]}
    console = Console(width=200, record=True)
    for t in tables(doc):
        console.print(t)
    text = console.export_text()
    single = next(line for line in text.splitlines() if "teacher" in line and "single" in line)
    assert "10.0" in single and "25.0" in single  # 10 GFLOP/s: 10% of the peak, 25% of the ceiling
    assert "50.0" in next(line for line in text.splitlines() if "teacher" in line and "batched" in line)  # 20 of 40
    assert "flops / ceiling, one core (s)" in text and "10.000" in text and "samples 31.0-40.0" in text
    del doc["ceiling_gflops"]  # a document from before the ceiling was measured still renders
    console = Console(width=200, record=True)
    for t in tables(doc):
        console.print(t)
    assert "ceiling, one core" not in console.export_text()


def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(capsys, monkeypatch):
    from ternq import gpu

    monkeypatch.setattr(gpu, "available", lambda: False)
    code, out, err = cli(["bench", "--device", "cuda"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "GPU" in err


def test_device_points_time_the_batched_calls(monkeypatch):
    """Each point's throughput is models x epochs over the median call; the table sets the GPU against the
    CPU core's best at the same width."""
    calls = iter([0.0, 0.02, 1.0, 3.0, 2.0, 1.0, 3.0, 2.0])  # compile, calibration, 3 timed; the single teacher
    monkeypatch.setattr(bench, "_device_call", lambda device, M, H, E, rng: next(calls))
    doc = {"cuda": bench.device_run("cuda", widths=(16,), models=(8,), seconds=0.5)}
    p = doc["cuda"]["points"][0]
    assert p["epochs"] == 50 and p["seconds"] == 2.0  # 0.5 s over 0.01 s per epoch; the median of 1, 3, 2
    assert p["model_epochs_per_s"] == 8 * 50 / 2.0
    assert p["gflops"] == pytest.approx(bench.flops_epoch(16, T=bench.DEVICE_T) * 200 / 1e9)
    doc["cpu"] = {**doc["cuda"], "points": [dict(p, model_epochs_per_s=100.0)]}
    from rich.console import Console

    from ternq.cli.bench import device_table

    con = Console(width=200, record=True)
    con.print(device_table(doc))
    assert "2.0x" in con.export_text()  # 200 against the core's 100


def test_the_cpu_times_one_teacher_batched_and_alone(monkeypatch):
    """One CPU core's reference for one teacher both ways: a quarter of the batched kernel's call of 4 models,
    and one model on the single-model path (median of 3 after a compiling call), each in the table."""
    monkeypatch.setattr(bench, "_device_call", lambda device, M, H, E, rng: 8.0)
    alone = iter([0.1, 3.0, 1.0, 2.0])
    monkeypatch.setattr(bench, "_single_path", lambda H, E, rng: next(alone))
    cpu = bench.device_run("cpu", widths=(16,), models=(4,), seconds=0.5)
    assert cpu["single"]["seconds"] == 2.0 and cpu["alone"]["seconds"] == 2.0
    assert cpu["alone"]["model_epochs_per_s"] == cpu["alone"]["epochs"] / 2.0 and cpu["alone"]["models"] == 1
    from rich.console import Console

    from ternq.cli.bench import device_table

    con = Console(width=200, record=True)
    con.print(device_table({"cpu": cpu}))
    assert "one teacher alone" in con.export_text()


def test_the_single_path_times_one_real_teacher():
    assert 0 < bench._single_path(4, 3, np.random.default_rng(0)) < 60


def test_device_factorials_time_each_device_side_by_side(monkeypatch):
    """Each seed count runs on each device: one untimed run, then the timed ones; the CPU on every core."""
    cmds = []
    walls = iter([9.0, 3.0, 5.0, 9.0, 7.0, 6.0])
    monkeypatch.setattr(bench, "time_process", lambda cmd: cmds.append(cmd) or {"wall_s": next(walls), "cpu_s": 1.0})
    rows = bench.device_factorials((10,), ("cuda", "cpu"), runs=2, workers=16)
    assert [r["device"] for r in rows] == ["cuda", "cpu"] and [r["workers"] for r in rows] == [None, 16]
    assert rows[0]["wall_s"] == {"median": 4.0, "min": 3.0, "max": 5.0, "n": 2}  # the warm-up (9 s) not counted
    assert rows[1]["wall_s"]["median"] == 6.5
    assert cmds[0][-4:] == ["0:10", "--device", "cuda", "-q"] and "--workers" not in cmds[0]
    assert cmds[3][cmds[3].index("--workers") + 1] == "16" and "cpu" in cmds[3]
    from rich.console import Console

    from ternq.cli.bench import factorial_table

    con = Console(width=200, record=True)
    con.print(factorial_table(rows))
    assert "4.00 [3.00, 5.00]" in con.export_text()


def test_factorial_seeds_needs_a_device(capsys):
    code, out, err = cli(["bench", "--factorial-seeds", "10"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--device" in err


@pytest.mark.parametrize("argv,where", [(["bench", "--device", "cpu", "--quiet"], "device_run"),
                                        (["bench", "--no-factorial", "--no-compile", "--hidden", "4"], "run")])
def test_a_timed_command_that_fails_is_one_line(argv, where, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("ternq factorial exited with 3: boom")

    monkeypatch.setattr(bench, where, fail)
    code, out, err = cli(argv, capsys)
    assert code == 1 and out == "" and err.strip().splitlines() == ["Error: ternq factorial exited with 3: boom"]
