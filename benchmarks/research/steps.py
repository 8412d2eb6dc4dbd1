"""Per-step error along the held-out windows: does a ternary student's one-step error grow along the sequence
(its state drifting from the float's) or stay flat (a floor it pays at every step)?

For each task and seed: configs/best.toml's recipe at H=32 as ternary and as int8 (6000 epochs, progressive
quantization over half, a 3000-epoch levels-frozen fine-tune; each from a 2000-epoch float teacher), and the
equal-budget float (9000 epochs, cosine). At each step t after the warm-up, the one-step MSE over the held-out
windows and channels. The growth of a model is the ratio of its MSE over the last quarter of the scored steps to
that over the first quarter (1: flat; above 1: the error grows); its geometric mean and 95% interval over seeds.
Writes steps.csv (curves), steps.md (table) and steps.png beside this file.

    python benchmarks/research/steps.py [--seeds 0:5] [--tasks lorenz,sine] [--cache DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

import ternq
from ternq.forecast import default_warmup, step_mse
from ternq.report.files import write_csv
from ternq.report.plots import pyplot
from ternq.tasks import get_task

H = 32
RECIPE = {"epochs": 6000, "progressive": 0.5, "finetune_epochs": 3000, "finetune_lr": 0.01}
MODELS = ("ternary", "int8", "float")


def models(task, seed: int) -> dict:
    teacher, _ = ternq.train_teacher(task, ternq.TeacherConfig(hidden=H), seed=seed)
    out = {}
    for fmt in ("ternary", "int8"):
        out[fmt], _ = ternq.train_student(teacher, task, ternq.StudentConfig(hidden=H, weight_format=fmt, **RECIPE),
                                          seed=seed)
    budget = RECIPE["epochs"] + RECIPE["finetune_epochs"]
    out["float"], _ = ternq.train_teacher(task, ternq.TeacherConfig(hidden=H, epochs=budget), seed=seed)
    return out


def interval(logs: np.ndarray) -> tuple[float, float, float]:
    """Geometric mean and 95% t-interval over seeds of ratios given as log10."""
    m = float(np.mean(logs))
    if len(logs) < 2:
        return 10 ** m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(logs) - 1) * np.std(logs, ddof=1) / np.sqrt(len(logs)))
    return 10 ** m, 10 ** (m - h), 10 ** (m + h)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0:5")
    ap.add_argument("--tasks", default="lorenz,sine")
    ap.add_argument("--cache", default=str(Path(__file__).parent / "steps-curves"),
                    help="each task and seed's curves are kept here, and a rerun reads them back")
    a = ap.parse_args()
    lo, hi = (int(v) for v in a.seeds.split(":"))
    seeds = list(range(lo, hi))
    here = Path(__file__).parent
    curves: dict[tuple[str, str], list[np.ndarray]] = {}
    warm = {}
    for name in a.tasks.split(","):
        task = get_task(name)
        warm[name] = default_warmup(task)
        for seed in seeds:
            kept = Path(a.cache) / f"{name}-s{seed}.npz"
            if not kept.exists():
                kept.parent.mkdir(parents=True, exist_ok=True)
                np.savez(kept, **{who: step_mse(m, task) for who, m in models(task, seed).items()})
            got = np.load(kept)
            for who in MODELS:
                curves.setdefault((name, who), []).append(got[who][warm[name]:])
            print(f"{name} seed {seed} done", flush=True)
    rows, md = [], ["| task | model | scored MSE (geo mean) | first-quarter MSE | last-quarter MSE | "
                    "growth last/first [95% CI] | vs float per step: first quarter | last quarter |",
                    "|---|---|---|---|---|---|---|---|"]
    for (name, who), cs in curves.items():
        c = np.array(cs)  # seeds x scored steps
        q = max(1, c.shape[1] // 4)
        first, last = c[:, :q].mean(1), c[:, -q:].mean(1)
        g, glo, ghi = interval(np.log10(last / first))
        f = np.array(curves[name, "float"])
        rf = interval(np.log10(first / f[:, :q].mean(1)))
        rl = interval(np.log10(last / f[:, -q:].mean(1)))
        gm = lambda v: float(10 ** np.mean(np.log10(v)))  # noqa: E731
        md.append(f"| {name} | {who} | {gm(c.mean(1)):.2e} | {gm(first):.2e} | {gm(last):.2e} | "
                  f"{g:.2f}x [{glo:.2f}, {ghi:.2f}] | {rf[0]:.1f}x [{rf[1]:.1f}, {rf[2]:.1f}] | "
                  f"{rl[0]:.1f}x [{rl[1]:.1f}, {rl[2]:.1f}] |")
        for t, v in enumerate(np.exp(np.mean(np.log(c), 0))):
            rows.append({"task": name, "model": who, "step": t + warm[name], "mse_geo_mean_over_seeds": float(v)})
    head = (f"### One-step error along the held-out windows, H={H}, seeds {a.seeds}\n\n"
            "Steps after the warm-up; growth is the last quarter's MSE over the first quarter's (1: flat).\n\n")
    (here / "steps.md").write_text(head + "\n".join(md) + "\n")
    print(head + "\n".join(md))
    write_csv(here / "steps.csv", rows)
    try:
        plt = pyplot()
    except ImportError:
        return
    names = a.tasks.split(",")
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for who in MODELS:
            c = np.exp(np.mean(np.log(np.array(curves[name, who])), 0))
            ax.semilogy(np.arange(len(c)) + warm[name], c, label=who)
        ax.set_title(f"{name}, H={H}")
        ax.set_xlabel("step of the held-out window")
    axes[0, 0].set_ylabel("one-step MSE (geo mean over seeds)")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(here / "steps.png", dpi=120)


if __name__ == "__main__":
    main()
