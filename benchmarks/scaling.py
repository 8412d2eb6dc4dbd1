"""How a training epoch's time grows with hidden width and sequence length.

Run:  python benchmarks/scaling.py            (about a minute on 2 cores)

Writes benchmarks/scaling.csv, benchmarks/scaling.md and, if matplotlib is
installed, benchmarks/scaling.png. Float32, one thread, batch 10, compiled
kernels (the first call compiles or loads them from the cache).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ternq.bench import epoch_time, flops_epoch

HERE = Path(__file__).resolve().parent
WIDTHS = (8, 16, 32, 64, 128)
STEPS = (25, 50, 100, 200)
KINDS = ("teacher", "distill")


def machine() -> str:
    """The CPU model, core count and the versions the figures depend on."""
    import os
    import platform

    import numba
    import numpy

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, numba {numba.__version__}, "
            f"numpy {numpy.__version__}")


def main() -> None:
    rows = []
    for kind in KINDS:
        for T in STEPS:
            for H in WIDTHS:
                n = max(10, int(0.15 / (1e-7 * T * (H * H / 4 + 60))))
                s = epoch_time(H, kind, epochs=min(n, 1000), repeat=3, T=T)
                f = flops_epoch(H, kind, T=T)
                rows.append({"kind": kind, "hidden": H, "steps": T, "ms_per_epoch": s * 1e3,
                             "gflops": f / s / 1e9})
                print(f"{kind:8s} H={H:4d} T={T:4d}  {s * 1e3:8.4f} ms/epoch  {f / s / 1e9:6.2f} GFLOP/s",
                      flush=True)
    with open(HERE / "scaling.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})
    lines = ["# Epoch time (ms), batch 10, float32, one thread", "", f"Machine: {machine()}.", ""]
    for kind in KINDS:
        lines += [f"## {kind}", "", "| T \\ H | " + " | ".join(map(str, WIDTHS)) + " |",
                  "|---|" + "---|" * len(WIDTHS)]
        for T in STEPS:
            cells = [f"{r['ms_per_epoch']:.3f} ({r['gflops']:.1f} GF/s)" for r in rows
                     if r["kind"] == kind and r["steps"] == T]
            lines.append(f"| {T} | " + " | ".join(cells) + " |")
        lines.append("")
    (HERE / "scaling.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, style in zip(KINDS, ("-o", "--s"), strict=True):
        for T in STEPS:
            xs = [r["hidden"] for r in rows if r["kind"] == kind and r["steps"] == T]
            ys = [r["ms_per_epoch"] for r in rows if r["kind"] == kind and r["steps"] == T]
            gs = [r["gflops"] for r in rows if r["kind"] == kind and r["steps"] == T]
            axes[0].loglog(xs, ys, style, label=f"{kind} T={T}", base=2)
            axes[1].semilogx(xs, gs, style, label=f"{kind} T={T}", base=2)
    axes[0].set(xlabel="hidden width H", ylabel="ms per epoch", title="Epoch time (batch 10)")
    axes[1].set(xlabel="hidden width H", ylabel="GFLOP/s", title="Achieved throughput")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "scaling.png", dpi=110)
    print(f"wrote {HERE / 'scaling.png'}")


if __name__ == "__main__":
    main()
