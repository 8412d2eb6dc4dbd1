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


def _seeds_rows(doc: dict) -> dict[tuple[int, bool, bool], dict]:
    """The seeds' design's configurations by (width, shaped, distill)."""
    out = {}
    for r in doc["runs"]:
        lv = r["levels"]
        out[r["width"], bool(lv.get("shaped gradient")), bool(lv.get("trajectory distillation"))] = r
    return out


def confirm(base: str, recipe: str) -> None:
    """ternary / float of every configuration of the seeds' design under today's defaults and a recipe."""
    a, b = _load(base), _load(recipe)
    ra, rb = _seeds_rows(a), _seeds_rows(b)
    print(f"task {b['task']}, seeds {len(b['seeds'])}\n")
    print("| H | shaped | distill | today: eval MSE | today: vs float | recipe: eval MSE | recipe: vs float |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(rb):
        x, y = ra.get(key), rb[key]
        left = f"{x['eval_mse']['geo_mean']:.2e} | {_ci(x['vs_float'])}" if x else " | "
        print(f"| {key[0]} | {key[1]} | {key[2]} | {left} | {y['eval_mse']['geo_mean']:.2e} | {_ci(y['vs_float'])} |")
    print("\nteachers:", {k: f"{v['geo_mean']:.2e}" for k, v in b["teachers"].items()})


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("screen", "confirm"):
        sys.exit(__doc__)
    if sys.argv[1] == "screen":
        screen(sys.argv[2:])
    else:
        confirm(sys.argv[2], sys.argv[3])
