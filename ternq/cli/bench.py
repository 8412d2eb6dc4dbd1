"""``ternq bench``: epoch times single and batched, GFLOP/s, machine peak, whole commands, the C program."""

from __future__ import annotations

import os
from contextlib import contextmanager

import click
from rich.table import Table

from .. import bench as _bench
from .. import report
from ..memory import check_fits
from . import InputError, cli
from .options import HIDDEN_INT, json_option, quiet_option

MAX_BUDGET = 60.0  # seconds per timed run: beyond it a benchmark takes hours


def _spread(s: dict, unit: str = "", digits: int = 2) -> str:
    """'median [min, max]' of a :func:`ternq.bench.spread`."""
    if not s:
        return "-"
    return f"{s['median']:.{digits}f}{unit} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def _check_c_ref(path: str | None) -> str | None:
    if path is None:
        return None
    if not os.path.isfile(path):
        raise InputError(f"--c-ref {path}: no such file (a built copy of the C program)")
    if not os.access(path, os.X_OK):
        raise InputError(f"--c-ref {path}: not executable")
    return os.path.abspath(path)


@cli.command()
@click.option("--hidden", "widths", type=HIDDEN_INT, multiple=True, default=_bench.WIDTHS, show_default=True,
              help="Width(s) to time on the single-model path; repeat the option for several.")
@click.option("--batched-hidden", "batched_widths", type=HIDDEN_INT, multiple=True, default=(16, 32, 64),
              show_default=True, help=f"Width(s) to time {_bench.BATCH_M} models batched; repeat for several.")
@click.option("--budget", type=float, default=0.25, show_default=True,
              help=f"Rough seconds of training per timed run (best of 3 runs; at most {MAX_BUDGET:g}).")
@click.option("--no-compile", "skip_compile", is_flag=True,
              help="Skip the compile-time measurements and the first runs with an empty cache.")
@click.option("--factorial/--no-factorial", "with_factorial", default=True, show_default=True,
              help="Also time whole 'ternq factorial' commands: --seed 0 warm and cold, --seeds 0:10 warm.")
@click.option("--seeds10/--no-seeds10", "with_seeds10", default=True, show_default=True,
              help="With --factorial: also time the 10-seed factorial.")
@click.option("--runs", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Timed runs of each whole command (medians with min and max).")
@click.option("--c-ref", "c_ref", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="A built copy of the C program (no arguments; ternq ships none of its code): timed the same "
                   "way, its runs interleaved with 'ternq factorial --seed 0'.")
@click.option("--c-runs", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Runs of the C program (about a minute each).")
@click.option("--device", type=click.Choice(("cpu", "cuda")), default=None,
              help="Instead: teacher training throughput (model-epochs/s, GFLOP/s) at H = 16, 32, 64 for many "
                   "models per call on this device, beside one CPU core's batched kernel (cuda needs numba-cuda "
                   "and an NVIDIA GPU).")
@click.option("--models", type=click.IntRange(1), multiple=True, default=(), metavar="M",
              help="With --device: models per call to time on it; repeat for several [cuda: 1 to 16384, cpu: 4 to "
                   "64].")
@click.option("--factorial-seeds", "factorial_seeds", type=click.IntRange(1, 100000), multiple=True, default=(),
              metavar="N", help="With --device: also time 'ternq factorial --seeds 0:N' on the device and on every "
                                "CPU core (--runs timed runs after one that fills the caches); repeat for several.")
@quiet_option
@json_option
def bench(widths, batched_widths, budget, skip_compile, with_factorial, with_seeds10, runs, c_ref, c_runs, device,
          models, factorial_seeds, quiet, as_json):
    """Time the compiled training kernels and whole commands, and set them against the speed targets.

    Reports epochs per second and achieved GFLOP/s per core of a teacher, a ternary
    student and a distilled student at each width, on the single-model path and 16
    models batched (flops counted analytically, see ternq/bench.py), the machine's
    single-thread float32 peak, the ceiling of the kernels' own multiply-add loop
    and the floors they give, compile times, and whole
    'ternq factorial' commands (wall and CPU time, median [min, max]): one seed warm
    and with an empty Numba cache, ten seeds warm, and with --c-ref the C program.
    """
    if not widths or any(h <= 0 for h in widths) or any(h <= 0 for h in batched_widths):
        raise InputError("--hidden and --batched-hidden must be positive")
    if not 0 < budget <= MAX_BUDGET:  # false for nan too
        raise InputError(f"--budget {budget:g}: a number of seconds above 0 and at most {MAX_BUDGET:g}")
    if factorial_seeds and device is None:
        raise InputError("--factorial-seeds times the factorial on a device: give --device too")
    if device is not None:
        return _device(device, models, budget, factorial_seeds, runs, quiet, as_json)
    check_fits(_bench.memory_needed(widths, batched_widths, budget), "this benchmark")
    c_ref = _check_c_ref(c_ref)
    if c_ref and not with_factorial:
        raise InputError("--c-ref is compared with the factorial: leave out --no-factorial")
    with _progress(quiet or as_json) as step:
        doc = _bench.run(widths=widths, budget=budget, compile=not skip_compile, factorial=with_factorial,
                         progress=step, batched_widths=batched_widths, runs=runs, c_ref=c_ref, c_runs=c_runs,
                         seeds10=with_seeds10)
    if as_json:
        report.print_json(doc)
        return 0
    for table in tables(doc):
        report.out.print(table)
    return 0


@contextmanager
def _progress(silent: bool):
    """A status line on stderr (none when ``silent``) and the ``progress(text)`` that updates it; a timed
    command that failed (RuntimeError) becomes one line and exit 1."""
    status = None if silent else report.err.status("benchmarking")
    if status:
        status.start()
    try:
        yield (lambda s: status.update(f"benchmarking: {s}")) if status else None
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if status:
            status.stop()


def _device(device: str, models: tuple[int, ...], budget: float, factorial_seeds: tuple[int, ...], runs: int,
            quiet: bool, as_json: bool) -> int:
    """``ternq bench --device``: the device's throughput and, for cuda, one CPU core's beside it; with
    ``factorial_seeds``, whole factorials on the device and on the CPU."""
    from ..gpu import available

    if device == "cuda" and not available():
        raise InputError("--device cuda needs numba-cuda (pip install 'ternq[cuda]') and an NVIDIA GPU; none is "
                         "usable here")
    with _progress(quiet or as_json) as step:
        doc = {device: _bench.device_run(device, models=models or None, seconds=2 * budget, progress=step)}
        if device == "cuda":
            doc["cpu"] = _bench.device_run("cpu", seconds=2 * budget, progress=step)
        if factorial_seeds:
            devices = (device, "cpu") if device == "cuda" else (device,)
            doc["factorials"] = _bench.device_factorials(factorial_seeds, devices, runs=runs, progress=step)
    if as_json:
        report.print_json(doc)
        return 0
    report.out.print(device_table(doc))
    if "factorials" in doc:
        report.out.print(factorial_table(doc["factorials"]))
    return 0


def device_table(doc: dict) -> Table:
    """Throughput per device (the ``--device`` document), with each point against one CPU core's best."""
    devices = {k: v for k, v in doc.items() if k in ("cpu", "cuda")}
    first = next(iter(devices.values()))
    t = Table(title=f"Teacher training, batch {first['batch']} x {first['steps']} steps, float32: many models per "
                    "call (the CPU: one core, batched kernel)")
    for col in ("device", "H", "models", "epochs", "model-epochs / s", "GFLOP/s", "vs CPU core"):
        t.add_column(col, justify="left" if col == "device" else "right")
    cpu = doc.get("cpu")
    best = {}
    for p in cpu["points"] if cpu else []:
        best[p["H"]] = max(best.get(p["H"], 0.0), p["model_epochs_per_s"])
    for name, d in devices.items():
        for p in d["points"]:
            vs = f"{p['model_epochs_per_s'] / best[p['H']]:.1f}x" if name != "cpu" and p["H"] in best else ""
            t.add_row(name, str(p["H"]), str(p["models"]), str(p["epochs"]), f"{p['model_epochs_per_s']:,.0f}",
                      f"{p['gflops']:.1f}", vs)
        for s, what in ((d["single"], "1, one teacher"), (d.get("alone"), "1, one teacher alone")):
            if s is not None:
                t.add_row(name, str(s["H"]), what, str(s["epochs"]), f"{s['model_epochs_per_s']:,.0f}",
                          f"{s['gflops']:.1f}", f"{s['seconds']:.2f} s")
    return t


def factorial_table(rows: list[dict]) -> Table:
    """Whole factorials per device (the ``--factorial-seeds`` rows): wall and CPU seconds, median [min, max]."""
    t = Table(title="ternq factorial --seeds 0:N, whole command (warm caches)")
    for col in ("seeds", "device", "workers", "wall s", "CPU s", "runs"):
        t.add_column(col, justify="left" if col == "device" else "right")
    for r in rows:
        w, c = r["wall_s"], r["cpu_s"]
        t.add_row(str(r["seeds"]), r["device"], str(r["workers"] or "default"),
                  f"{w['median']:.2f} [{w['min']:.2f}, {w['max']:.2f}]",
                  f"{c['median']:.1f} [{c['min']:.1f}, {c['max']:.1f}]", str(w["n"]))
    return t


def _share(row: dict, doc: dict, key: str) -> str:
    """A row's GFLOP/s as a percentage of the document's ``key`` figure ("" when the document has none)."""
    return f"{100 * row['gflops'] / doc[key]:.1f}" if doc.get(key) else ""


def tables(doc: dict) -> list[Table]:
    """The tables of a :func:`ternq.bench.run` document."""
    out = []
    t = Table(title=f"Training epoch, batch {doc['batch']} x {doc['steps']} steps, float32, one core")
    for col in ("H", "kind", "path", "model-epochs / s", "GFLOP/s", "% of peak", "% of ceiling", "vs single"):
        t.add_column(col, justify="left" if col in ("kind", "path") else "right")
    single = {(r["hidden"], r["kind"]): r for r in doc["rows"]}
    batched = {(r["hidden"], r["kind"]): r for r in doc.get("batched_rows", [])}
    for key in sorted(set(single) | set(batched)):
        if key in single:
            r = single[key]
            t.add_row(str(key[0]), key[1], "single", f"{r['epochs_per_s']:.0f}", f"{r['gflops']:.2f}",
                      _share(r, doc, "peak_gflops"), _share(r, doc, "ceiling_gflops"), "")
        if key in batched:
            r = batched[key]
            t.add_row(str(key[0]), key[1], f"{r['models']} batched", f"{r['model_epochs_per_s']:.0f}",
                      f"{r['gflops']:.2f}", _share(r, doc, "peak_gflops"), _share(r, doc, "ceiling_gflops"),
                      f"{r['vs_single']:.2f}x" if r.get("vs_single") else "")
    out.append(t)
    rows = {"peak, float32 sgemm, one thread (GFLOP/s)": f"{doc['peak_gflops']:.1f}",
            "reference factorial training (GFLOP)": f"{doc['factorial_gflop']:.2f}",
            "floor: factorial flops / peak, one core (s)": f"{doc['factorial_floor_s']:.3f}",
            "floor: 10 factorials' flops / peak, two cores (s)": f"{doc['seeds10_floor_2cores_s']:.3f}"}
    if "ceiling_gflops" in doc:
        samples = doc.get("ceiling_samples") or [doc["ceiling_gflops"]]
        rows["ceiling: the forward's multiply-add loop, long rows in L1, one thread (GFLOP/s)"] = \
            f"{doc['ceiling_gflops']:.1f} (samples {min(samples):.1f}-{max(samples):.1f})"
        rows["floor: factorial flops / ceiling, one core (s)"] = f"{doc['factorial_floor_ceiling_s']:.3f}"
        rows["floor: 10 factorials' flops / ceiling, two cores (s)"] = f"{doc['seeds10_floor_ceiling_2cores_s']:.3f}"
    if "factorial_estimate_1core_s" in doc:
        rows["factorial training from the single epoch times, one core (s)"] = \
            f"{doc['factorial_estimate_1core_s']:.2f}"
    if "compile_s" in doc:
        c = doc["compile_s"]
        rows["compile + first run, single path, cold / cached (s)"] = f"{c['cold']:.2f} / {c['cached']:.2f}"
        rows["compile + first run, batched path, cold / cached (s)"] = \
            f"{c['cold_batched']:.2f} / {c['cached_batched']:.2f}"
    if "load_average" in doc:
        la = doc["load_average"]
        rows["load average (1 min) at start / end, cores"] = f"{la['start']:.2f} / {la['end']:.2f}, {la['cores']}"
    out.append(report.kv_table("Machine, floors, compile times", rows))
    cmd = doc.get("commands")
    if cmd:
        t = Table(title=f"Whole commands, {cmd['runs']} runs each: median [min, max]")
        for col in ("command", "wall (s)", "CPU (s)"):
            t.add_column(col, justify="left" if col == "command" else "right")
        t.add_row("ternq factorial --seed 0, warm", _spread(cmd["seed0"]["wall_s"]), _spread(cmd["seed0"]["cpu_s"]))
        if "cold" in cmd:
            t.add_row("ternq factorial --seed 0, empty Numba cache", _spread(cmd["cold"]["wall_s"]),
                      _spread(cmd["cold"]["cpu_s"]))
        if "seeds10" in cmd:
            t.add_row("ternq factorial --seeds 0:10, warm", _spread(cmd["seeds10"]["wall_s"]),
                      _spread(cmd["seeds10"]["cpu_s"]))
        if "c_ref" in cmd:
            c = cmd["c_ref"]
            t.add_row(f"C program ({os.path.basename(c['path'])}, {c['wall_s']['n']} runs, interleaved)",
                      _spread(c["wall_s"], digits=1), _spread(c["cpu_s"], digits=1))
            t.add_row("C / ternq --seed 0, pair by pair", _spread(cmd["vs_c"]["wall_s"], "x", 1),
                      _spread(cmd["vs_c"]["cpu_s"], "x", 1))
        out.append(t)
    if doc.get("targets"):
        t = Table(title="Speed targets (same machine, same run): median [min, max]")
        for col in ("target", "measured", "goal", ""):
            t.add_column(col, justify="left" if col == "target" else "right")
        for g in doc["targets"]:
            t.add_row(g["label"], _spread(g), f"{'>=' if g['at_least'] else '<='} {g['target']:g}",
                      "met" if g["met"] else "not met")
        out.append(t)
    return out
