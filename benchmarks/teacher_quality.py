"""How good does the teacher need to be? (the seeds' open question 1; issue 10, item 3)

For teachers trained 100 to 4000 epochs (H=32), on sine and lorenz, per seed: the teacher's held-out eval
MSE; the seeds' config 6 (shaped, no distillation) and config 8 (shaped, trajectory distillation) from that
teacher, with today's defaults; and the best recipe (configs/best.toml's student settings, shaped, no
trajectory term) from that teacher. Everything else is the reference size.

    python benchmarks/teacher_quality.py --out runs/tq --seeds 0:3 --plot docs/teacher-quality.png

Each finished (task, teacher epochs, seed) is written to OUT at once (atomically): rerunning resumes.
Prints, per task and teacher budget, geometric means with 95% t intervals over seeds, the distillation
effect (log10 config 8 / config 6) and the best recipe's ratio to its teacher.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

import ternq
import ternq.tasks
from ternq.config import load, parse_seeds
from ternq.stats import mean_ci
from ternq.train import StudentConfig, TeacherConfig

ROOT = Path(__file__).parent.parent
WIDTH = 32
ROWS = ("teacher", "config6", "config8", "best")
LABELS = {"teacher": "float teacher", "config6": "config 6 (shaped)", "config8": "config 8 (shaped + distill)",
          "best": "best recipe (configs/best.toml)"}


def one(task_name: str, epochs: int, seed: int, best: StudentConfig) -> dict:
    """Eval MSE of the teacher of ``epochs`` epochs and of its three students, for one seed."""
    task = ternq.get_task(task_name)
    teacher, _ = ternq.train_teacher(task, TeacherConfig(hidden=WIDTH, epochs=epochs), seed)
    out = {"teacher": ternq.evaluate(teacher, task)["eval_mse"]}
    for name, cfg in (("config6", StudentConfig(hidden=WIDTH, shaped=True)),
                      ("config8", StudentConfig(hidden=WIDTH, shaped=True, distill=True)),
                      ("best", replace(best, hidden=WIDTH, shaped=True, distill=False))):
        student, _ = ternq.train_student(teacher, task, cfg, seed)
        out[name] = ternq.evaluate(student, task)["eval_mse"]
    return out


def _write(path: Path, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def run(out: Path, tasks, budgets, seeds, workers: int) -> dict:
    best_s = load(ROOT / "configs" / "best.toml").student
    best = StudentConfig(**vars(best_s))
    out.mkdir(parents=True, exist_ok=True)
    todo = [(t, e, s) for t in tasks for e in budgets for s in seeds if not (out / f"{t}-{e}-{s}.json").exists()]

    def job(item):
        t, e, s = item
        _write(out / f"{t}-{e}-{s}.json", one(t, e, s, best))
        print(f"done {t} teacher {e} epochs seed {s}", flush=True)

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(job, todo))
    return {(t, e, s): json.loads((out / f"{t}-{e}-{s}.json").read_text())
            for t in tasks for e in budgets for s in seeds}


def summarise(res: dict, tasks, budgets, seeds) -> dict:
    """Per task and budget: geo mean [95% CI] of each row, the distillation effect and best / teacher."""
    table = {}
    for t in tasks:
        for e in budgets:
            logs = {r: np.log10([res[t, e, s][r] for s in seeds]) for r in ROWS}
            row = {r: mean_ci(logs[r]) for r in ROWS}
            row["distill"] = mean_ci(logs["config8"] - logs["config6"])
            row["best/teacher"] = mean_ci(logs["best"] - logs["teacher"])
            row["config6/teacher"] = mean_ci(logs["config6"] - logs["teacher"])
            table[t, e] = row
    return table


def _fmt(c: dict, ratio: bool = False) -> str:
    f = (lambda x: f"{10 ** x:.3g}x") if ratio else (lambda x: f"{10 ** x:.1e}")
    if math.isnan(c["lo"]):
        return f(c["mean"])
    return f"{f(c['mean'])} [{f(c['lo'])}, {f(c['hi'])}]"


def report(table: dict, tasks, budgets) -> None:
    print("| task | teacher epochs | teacher eval MSE | config 6 | config 8 | distillation (8 / 6) | "
          "best recipe | best / teacher | config 6 / teacher |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in tasks:
        for e in budgets:
            r = table[t, e]
            print(f"| {t} | {e} | {_fmt(r['teacher'])} | {_fmt(r['config6'])} | {_fmt(r['config8'])} | "
                  f"{_fmt(r['distill'], True)} | {_fmt(r['best'])} | {_fmt(r['best/teacher'], True)} | "
                  f"{_fmt(r['config6/teacher'], True)} |")


def plot(table: dict, tasks, budgets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    styles = {"teacher": ("k", "o"), "config6": ("tab:blue", "s"), "config8": ("tab:red", "v"),
              "best": ("tab:green", "D")}
    for ax, t in zip(axes[0], tasks, strict=True):
        for r in ROWS:
            m = np.array([table[t, e][r]["mean"] for e in budgets])
            lo = np.array([table[t, e][r]["lo"] for e in budgets])
            hi = np.array([table[t, e][r]["hi"] for e in budgets])
            c, mk = styles[r]
            ax.errorbar(budgets, 10 ** m, yerr=[10 ** m - 10 ** lo, 10 ** hi - 10 ** m], color=c, marker=mk,
                        capsize=3, label=LABELS[r])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("teacher epochs (H=32)")
        ax.set_ylabel("held-out eval MSE (geometric mean, 95% CI)")
        ax.set_title(t)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the plot is for everyone
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="0:3")
    ap.add_argument("--tasks", default="sine,lorenz")
    ap.add_argument("--epochs", default="100,250,500,1000,2000,4000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plot", type=Path)
    a = ap.parse_args()
    tasks = a.tasks.split(",")
    unknown = [t for t in tasks if t not in ternq.tasks.TASKS]
    try:
        budgets = [int(x) for x in a.epochs.split(",")]
        seeds = list(parse_seeds(a.seeds))
    except ValueError as exc:
        ap.error(str(exc))
    if unknown or min(budgets) <= 0 or a.workers <= 0:
        ap.error(f"unknown task {unknown[0]!r}" if unknown else "epochs and workers must be positive")
    res = run(a.out, tasks, budgets, seeds, a.workers)
    table = summarise(res, tasks, budgets, seeds)
    report(table, tasks, budgets)
    if a.plot:
        plot(table, tasks, budgets, a.plot)


if __name__ == "__main__":
    main()
