"""Forecast skill of the float teacher and the shaped ternary student against naive baselines.

Run:  python benchmarks/forecast.py [--seeds N] [--tasks sine,lorenz,sunspots,co2]

For every task and seed it trains, with today's defaults, the float teacher (H=32) and the
shaped, undistilled H=32 student (factorial configuration 6), then prints

- one-step figures on the held-out steps: MSE, persistence and seasonal naive MSE, the ratio
  "vs naive" (model MSE over persistence MSE), MASE, and whether the model beats persistence;
- free-running rollouts after a warm-up of 25 true steps (``ternq.forecast.default_warmup``):
  MSE at horizons 1, 10, 25, 50 (those the windows allow), the first horizon at which the
  model's MSE passes persistence's (and seasonal naive's), the first at which sqrt(MSE) passes
  0.5, and for lorenz the valid prediction time in Lyapunov times ("-": not within the horizon;
  "censored": windows still valid at the last horizon, counted at it).

Figures are per seed, then the median over seeds. sunspots and co2 need statsmodels.
"""

from __future__ import annotations

import argparse

import numpy as np

from ternq import forecast as fc
from ternq.tasks import get_task
from ternq.train import StudentConfig, TeacherConfig, train_student, train_teacher

H = 32


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{v:.3g}"


def run_task(name: str, seeds: list[int]) -> None:
    task = get_task(name)
    base = fc.baselines(task)
    K, W = fc.check_horizon(task, fc.window_steps(task) + 1 - fc.default_warmup(task))
    marks = [k for k in (1, 10, 25, 50) if k <= K]
    print(f"\n## {name}: {task.eval_set()[0].shape[0]} held-out windows of {fc.window_steps(task)} steps, "
          f"period {base['period']}, naive scale {[round(s, 4) for s in base['scale']]}; "
          f"rollouts: warm-up {W}, horizons 1 .. {K}")
    print(f"persistence MSE {_fmt(base['persistence']['mse'])} (MASE {_fmt(base['persistence']['mase'])})"
          + (f", seasonal naive MSE {_fmt(base['seasonal']['mse'])} (MASE {_fmt(base['seasonal']['mase'])})"
             if "seasonal" in base else ""))
    head = ["seed", "model", "MSE", "vs persistence", "vs seasonal", "MASE", "beats persistence"]
    passes = ["passes_persistence"] + (["passes_seasonal"] if "seasonal" in base else []) + ["passes_threshold"]
    head += [f"MSE@{k}" for k in marks] + [{"passes_persistence": "passes persistence at",
                                            "passes_seasonal": "passes seasonal at",
                                            "passes_threshold": "sqrt(MSE) > 0.5 at"}[p] for p in passes]
    if task.lyapunov_per_step is not None:
        head += ["VPT (Lyapunov times)"]
    rows = []
    curves = {}
    for seed in seeds:
        teacher, _ = train_teacher(task, TeacherConfig(hidden=H), seed)
        student, _ = train_student(teacher, task, StudentConfig(hidden=H, shaped=True), seed)
        models = {f"teacher H={H}": teacher, f"student H={H} shaped": student}
        hz = fc.horizon_curves(models, task, K, W)
        if seed == seeds[0]:
            for b in hz.baselines:
                s = hz.summary(b)
                row = ["", b, "", "", "", "", ""] + [_fmt(hz.mse_at(b, k)) for k in marks]
                row += [_fmt(s[p]) if p == "passes_threshold" else "" for p in passes]
                if "vpt_lyapunov" in s:
                    row += [_fmt(s["vpt_lyapunov"])]
                rows.append(row)
        for label, m in models.items():
            sk = fc.skill(m, task, base=base)
            s = hz.summary(label)
            row = [str(seed), label, _fmt(sk["mse"]), _fmt(sk["vs_persistence"]), _fmt(sk.get("vs_seasonal")),
                   _fmt(sk["mase"]), _fmt(sk["beats_persistence"])]
            row += [_fmt(hz.mse_at(label, k)) for k in marks]
            row += [_fmt(s[p]) for p in passes]
            if "vpt_lyapunov" in s:
                row += [f"{s['vpt_lyapunov']:.2f}" + (f" ({s['vpt_censored']} censored)" if s["vpt_censored"] else "")]
            rows.append(row)
            curves.setdefault(label, []).append((sk, hz.mse(label), s))
    if len(seeds) > 1:
        for label, items in curves.items():
            med = lambda xs: float(np.median(xs))  # noqa: E731
            row = ["median", label, _fmt(med([i[0]["mse"] for i in items])),
                   _fmt(med([i[0]["vs_persistence"] for i in items])),
                   _fmt(med([i[0].get("vs_seasonal", np.nan) for i in items])) if "seasonal" in base else "-",
                   _fmt(med([i[0]["mase"] for i in items])),
                   f"{sum(i[0]['beats_persistence'] for i in items)}/{len(items)}"]
            row += [_fmt(med([i[1][k - 1] for i in items])) for k in marks]
            for key in passes:
                vals = [i[2][key] for i in items]
                m = med([K + 1 if v is None else v for v in vals])  # "not within K" ranks above K
                row.append(f"> {K}" if m > K else _fmt(m))
            if task.lyapunov_per_step is not None:
                row.append(f"{med([i[2]['vpt_lyapunov'] for i in items]):.2f}")
            rows.append(row)
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    ap.add_argument("--tasks", default="sine,lorenz,sunspots,co2")
    args = ap.parse_args()
    for name in args.tasks.split(","):
        run_task(name.strip(), list(range(args.seeds)))


if __name__ == "__main__":
    main()
