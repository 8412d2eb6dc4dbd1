"""Summaries of the recipes study (issue 10): the screening designs' runs and effects, and the confirmation.

    python benchmarks/recipes.py screen DIR [DIR ...]     # runs best first, main effects, from results.json
    python benchmarks/recipes.py confirm BASE_DIR RECIPE_DIR  # ternary / float of the seeds' rows, side by side

Each DIR is an ``--out`` folder of ``ternq factorial`` (its results.json). Nothing is trained here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(d: str) -> dict:
    return json.loads((Path(d) / "results.json").read_text())


def _ci(x: dict, fmt: str = ".2f") -> str:
    return f"{x['geo_mean']:{fmt}} [{x['lo']:{fmt}}, {x['hi']:{fmt}}]"


def screen(dirs: list[str]) -> None:
    """Print each design's runs, best ternary / float first, and its main effects with intervals."""
    for d in dirs:
        doc = _load(d)
        print(f"## {d}: task {doc['task']}, seeds {len(doc['seeds'])}, {len(doc['runs'])} runs\n")
        names = list(doc["runs"][0]["levels"])
        print("| run | " + " | ".join(names) + " | eval MSE | vs float [95% CI] |")
        print("|---" * (len(names) + 3) + "|")
        for r in sorted(doc["runs"], key=lambda r: r["vs_float"]["geo_mean"])[:8]:
            lv = " | ".join(str(r["levels"][n]) for n in names)
            print(f"| {r['run']} | {lv} | {r['eval_mse']['geo_mean']:.2e} | {_ci(r['vs_float'])} |")
        print("\n| effect | estimate on log10 [95% CI] | x MSE | verdict |\n|---|---|---|---|")
        for k, e in doc["effects"].items():
            if len(k) == 1 or (e["verdict"] not in ("not distinguishable from 0", "") and len(k) == 2):
                alias = f" (= {', '.join(e['aliases'])})" if e.get("aliases") else ""
                print(f"| {k} {e['label']}{alias} | {e['mean']:+.2f} [{e['lo']:+.2f}, {e['hi']:+.2f}] | "
                      f"{10 ** e['mean']:.2f}x | {e['verdict']} |")
        print()


def _per_seed(doc: dict) -> dict[tuple[int, int], float]:
    """eval MSE of every student of the seeds' design by (config, seed)."""
    out = {}
    for ps in doc["per_seed"]:
        for i, c in enumerate(ps["configs"]):
            out[i + 1, ps["seed"]] = c["eval_mse"]
    return out


def confirm(base: str, recipe: str) -> None:
    """ternary / float of every configuration of the seeds' design under today's defaults and a recipe,
    and the recipe's paired ratio to today (same seeds, same teachers: geometric mean with a t interval)."""
    import numpy as np

    from ternq.stats import mean_ci

    a, b = _load(base), _load(recipe)
    pa, pb = _per_seed(a), _per_seed(b)
    print(f"task {b['task']['name']}, seeds {len(b['seeds'])}\n")
    print("| config | shaped | distill | H | today: vs float | recipe: eval MSE | recipe: vs float | recipe / today |")
    print("|---|---|---|---|---|---|---|---|")
    for x, y in zip(a["matrix"], b["matrix"], strict=True):
        k = y["config"]
        seeds = [s for s in b["seeds"] if (k, s) in pa and (k, s) in pb]
        paired = mean_ci([np.log10(pb[k, s] / pa[k, s]) for s in seeds])
        ratio = f"{10 ** paired['mean']:.2f} [{10 ** paired['lo']:.2f}, {10 ** paired['hi']:.2f}]"
        print(f"| {k} | {y['shaped']} | {y['distill']} | {y['width']} | {_ci(x['vs_float'])} | "
              f"{y['eval_mse']['geo_mean']:.2e} | {_ci(y['vs_float'])} | {ratio} |")
    for x, y in zip(a["cs"], b["cs"], strict=True):
        print(f"| CS from {y['source']} | | | {y['width']} | {_ci(x['vs_float'])} | {y['eval_mse']['geo_mean']:.2e} | "
              f"{_ci(y['vs_float'])} | |")
    print("\nteachers (eval MSE, H=16 / 32):", " / ".join(f"{v['geo_mean']:.2e}" for v in b["teachers"].values()))


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("screen", "confirm"):
        sys.exit(__doc__)
    if sys.argv[1] == "screen":
        screen(sys.argv[2:])
    else:
        confirm(sys.argv[2], sys.argv[3])
