"""The research tables from the factorials' results.json files (benchmarks/research/run.sh runs them).

    python benchmarks/research/summary.py [DIR]     (default: benchmarks/research)

Writes DIR/where.md and DIR/restart.md (the parts of each that have results) and prints them.
"""

import json
import math
import sys
from pathlib import Path

PARTS = ("gate", "cand", "out")


def _g(s: dict) -> str:
    return f"{s['geo_mean']:.2e} [{s['lo']:.1e}, {s['hi']:.1e}]"


def _x(s: dict) -> str:
    return f"{s['geo_mean']:.1f}x [{s['lo']:.1f}, {s['hi']:.1f}]"


def _e(e: dict) -> str:
    return f"{e['mean']:+.2f} [{e['lo']:+.2f}, {e['hi']:+.2f}]"


def _float_mse(doc: dict, run: dict) -> float:
    ref = run["reference"]
    for m in doc["float_reference"]["models"].values():
        if m["hidden"] == run["width"] and m["epochs"] == ref["epochs"]:
            return m["eval_mse_scored"]["geo_mean"]
    return math.nan


def where(root: Path) -> str:
    out = []
    for task in ("lorenz", "sine"):
        docs = {p: root / f"where-{task}-{p}" / "results.json" for p in PARTS}
        docs = {p: json.loads(f.read_text()) for p, f in docs.items() if f.exists()}
        if not docs:
            continue
        first = next(iter(docs.values()))
        base = first["runs"][0]
        gap = math.log10(base["vs_float_scored"]["geo_mean"])
        out += [f"### {task}, H={base['width']}, {len(first['seeds'])} seeds: which part kept in float closes the gap",
                "", f"Equal-budget float ({base['reference']['epochs']} epochs): scored eval MSE "
                f"{_float_mse(first, base):.2e}. All quantized: {_g(base['eval_mse_scored'])}, "
                f"{_x(base['vs_float_scored'])} the float (log10 gap {gap:.2f}).", "",
                "| kept in float | scored eval MSE [95% CI] | vs equal-budget float | effect on log10 MSE [95% CI] "
                "| share of the log gap closed |", "|---|---|---|---|---|"]
        for p, doc in docs.items():
            run = doc["runs"][1]
            eff = doc["effects"]["A"]
            out.append(f"| {p} | {_g(run['eval_mse_scored'])} | {_x(run['vs_float_scored'])} | {_e(eff)} | "
                       f"{-eff['mean'] / gap:.0%} |")
        out.append("")
    return "\n".join(out)


def restart(root: Path) -> str:
    out = []
    for task in ("lorenz", "sine"):
        f = root / f"restart-{task}" / "results.json"
        if not f.exists():
            continue
        doc = json.loads(f.read_text())
        out += [f"### {task}, H={doc['runs'][0]['width']}, {len(doc['seeds'])} seeds: Adam restarted at joins", "",
                "| run | adam_restart | fine-tune epochs | scored eval MSE [95% CI] | equal-budget float | "
                "vs float [95% CI] |", "|---|---|---|---|---|---|"]
        for run in doc["runs"]:
            lv = run["levels"]
            out.append(f"| {run['run']} | {lv['restart']} | {lv['finetune']} | {_g(run['eval_mse_scored'])} | "
                       f"{_float_mse(doc, run):.2e} ({run['reference']['epochs']} ep) | {_x(run['vs_float_scored'])} |")
        out += ["", "| effect | estimate on log10(scored eval MSE) [95% CI] | x MSE | verdict |", "|---|---|---|---|"]
        for name, e in doc["effects"].items():
            out.append(f"| {name} ({e['label']}) | {_e(e)} | {10 ** e['mean']:.2f}x | {e['verdict']} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/research")
    for name, make in (("where", where), ("restart", restart)):
        text = make(root)
        if text:
            (root / f"{name}.md").write_text(text)
            print(text)


if __name__ == "__main__":
    main()
