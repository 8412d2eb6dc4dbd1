"""``ternq bench``: epoch times, achieved GFLOP/s, machine peak, compile times."""

from __future__ import annotations

import click
from rich.table import Table

from .. import bench as _bench
from .. import report
from . import InputError, cli
from .options import json_option, quiet_option


@cli.command()
@click.option("--hidden", "widths", type=int, multiple=True, default=_bench.WIDTHS, show_default=True,
              help="Width(s) to time; repeat the option for several.")
@click.option("--budget", type=float, default=0.25, show_default=True,
              help="Rough seconds of training per timed run (best of 3 runs).")
@click.option("--no-compile", "skip_compile", is_flag=True,
              help="Skip the compile-time measurement (two subprocesses, the cold one takes a while).")
@click.option("--factorial/--no-factorial", "with_factorial", default=True, show_default=True,
              help="Also time the reference factorial: serial, parallel, the command warm and cold.")
@quiet_option
@json_option
def bench(widths, budget, skip_compile, with_factorial, quiet, as_json):
    """Time the compiled training kernels (float32, one thread, batch 10 x 50 steps).

    Reports epochs per second and achieved GFLOP/s of a teacher, a ternary student
    and a distilled student at each width (flops counted analytically, see
    ternq/bench.py), the machine's single-thread float32 FMA peak, the resulting
    floor for a reference factorial, and compile times (cold and from cache).
    """
    if not widths or any(h <= 0 for h in widths):
        raise InputError("--hidden must be positive")
    if not budget > 0:
        raise InputError("--budget must be positive")
    status = report.err.status("benchmarking") if not (quiet or as_json) else None
    if status:
        status.start()
    try:
        doc = _bench.run(widths=widths, budget=budget, compile=not skip_compile, factorial=with_factorial,
                         progress=(lambda s: status.update(f"benchmarking: {s}")) if status else None)
    finally:
        if status:
            status.stop()
    if as_json:
        report.print_json(doc)
        return 0
    t = Table(title=f"Training epoch, batch {doc['batch']} x {doc['steps']} steps, float32, one thread")
    for col in ("H", "kind", "ms / epoch", "epochs / s", "MFLOP / epoch", "GFLOP/s", "% of peak"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for r in doc["rows"]:
        t.add_row(str(r["hidden"]), r["kind"], f"{r['ms_per_epoch']:.4f}", f"{r['epochs_per_s']:.0f}",
                  f"{r['mflop_per_epoch']:.2f}", f"{r['gflops']:.2f}",
                  f"{100 * r['gflops'] / doc['peak_gflops']:.1f}")
    report.out.print(t)
    rows = {"peak, float32 sgemm, one thread (GFLOP/s)": f"{doc['peak_gflops']:.1f}",
            "reference factorial training (GFLOP)": f"{doc['factorial_gflop']:.2f}",
            "floor: factorial flops / peak (s)": f"{doc['factorial_floor_s']:.3f}"}
    if "factorial_estimate_1core_s" in doc:
        rows["factorial training from these epoch times, one core (s)"] = f"{doc['factorial_estimate_1core_s']:.2f}"
    if "compile_s" in doc:
        rows["compile + first run, cold cache (s)"] = f"{doc['compile_s']['cold']:.2f}"
        rows["compile + first run, from cache (s)"] = f"{doc['compile_s']['cached']:.2f}"
    if "factorial" in doc:
        f = doc["factorial"]
        rows["reference factorial, 1 worker (s)"] = f"{f['serial_s']:.2f}"
        rows["reference factorial, 2 workers (s)"] = f"{f['parallel_s']:.2f}"
        rows["  serial and parallel bit-identical"] = "yes" if f["identical"] else "NO"
        rows["  speed-up over the C program's 60 s"] = f"{f['speedup_vs_c']:.1f}x"
        rows["'ternq factorial --seed 0' command, warm (s)"] = f"{f['process_s']:.2f}"
        if "cold_process_s" in f:
            rows["'ternq factorial --seed 0' first run, cold cache (s)"] = f"{f['cold_process_s']:.2f}"
    report.out.print(report.kv_table("Machine and totals", rows))
    return 0
