"""Per-step held-out error along the windows: how long the start from h_0 = 0 weighs on the score.

For each task: the seed-0 float teacher and shaped ternary student of width 32 (default settings),
the MSE at each step t of the held-out windows (mean over windows and channels), and the first step
after which every later step stays within 2x of the median of the window's second half. Writes
warmup.csv and warmup.png beside this file.

    python benchmarks/warmup.py [--seed 0] [--hidden 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import ternq
from ternq.forecast import default_warmup, step_mse
from ternq.report.files import write_csv
from ternq.report.plots import pyplot
from ternq.tasks import get_task

TASKS = ("sine", "multisine", "lorenz", "ecg", "sunspots", "co2")


def settled(curve: np.ndarray, factor: float = 2.0) -> int:
    """First step t such that every step from t on is within ``factor`` x the second half's median."""
    ref = np.median(curve[len(curve) // 2:])
    above = np.nonzero(curve > factor * ref)[0]
    return 0 if not len(above) else int(above[-1] + 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=32)
    a = ap.parse_args()
    here = Path(__file__).parent
    rows, curves = [], {}
    for name in TASKS:
        task = get_task(name)
        teacher, _ = ternq.train_teacher(task, ternq.TeacherConfig(hidden=a.hidden), seed=a.seed)
        student, _ = ternq.train_student(teacher, task, ternq.StudentConfig(hidden=a.hidden, shaped=True),
                                         seed=a.seed)
        for who, m in (("teacher", teacher), ("student", student)):
            c = step_mse(m, task)
            curves[name, who] = c
            share5 = float(c[:5].sum() / c.sum())
            rows.append({"task": name, "model": who, "steps": len(c), "settled_at": settled(c),
                         "share_of_error_in_steps_0_4": round(share5, 4), "mse_all": float(c.mean()),
                         "mse_from_10": float(c[10:].mean()), "mse_scored": float(c[default_warmup(task) - 1:].mean()),
                         "share_of_error_in_steps_10_23": round(float(c[10:24].sum() / c.sum()), 4)})
            print(rows[-1], flush=True)
    write_csv(here / "warmup.csv", rows)
    try:
        plt = pyplot()
    except ImportError:
        return
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, name in zip(axes.flat, TASKS, strict=True):
        for who in ("teacher", "student"):
            ax.semilogy(curves[name, who], label=who)
        ax.set_title(name)
        ax.set_xlabel("step of the held-out window")
        ax.axvline(default_warmup(task) - 1, color="grey", lw=0.8, ls="--")
    axes[0, 0].set_ylabel("MSE at the step")
    axes[0, 0].legend()
    fig.suptitle(f"Held-out error by step from h_0 = 0 (H={a.hidden}, seed {a.seed}); dashed: the first scored step")
    fig.tight_layout()
    fig.savefig(here / "warmup.png", dpi=90)


if __name__ == "__main__":
    main()
