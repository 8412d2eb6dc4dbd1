"""The research tables from the factorials' results.json files (benchmarks/research/run.sh runs them).

    python benchmarks/research/summary.py [DIR]     (default: benchmarks/research)

Writes DIR/where.md, restart.md, width.md, optim.md and groups.md (the parts of each that have results) and prints them.
"""

import json
import math
import sys
from pathlib import Path

PARTS = ("gate", "cand", "out", "input", "recurrent")


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
    for task in ("lorenz", "sine", "ecg"):
        docs, first, base, gap = _designs(root, "where", task, PARTS)
        if not docs:
            continue
        out += [f"### {task}, H={base['width']}, {len(first['seeds'])} seeds: which part kept in float closes the gap",
                "", f"Equal-budget float ({base['reference']['epochs']} epochs): scored eval MSE "
                f"{_float_mse(first, base):.2e}. All quantized: {_g(base['eval_mse_scored'])}, "
                f"{_x(base['vs_float_scored'])} the float (log10 gap {gap:.2f}).", "",
                "| kept in float | weight bytes | scored eval MSE [95% CI] | vs equal-budget float | effect on log10 "
                "MSE [95% CI] | share of the log gap closed |", "|---|---|---|---|---|---|"]
        for p, doc in docs.items():
            run = doc["runs"][1]
            eff = doc["effects"]["A"]
            out.append(f"| {p} | {_bytes(root / f'where-{task}-{p}' / 'results.csv', run['run'])} | "
                       f"{_g(run['eval_mse_scored'])} | {_x(run['vs_float_scored'])} | {_e(eff)} | "
                       f"{-eff['mean'] / gap:.0%} |")
        out += ["", *_column_magnitudes(root / f"where-{task}-input" / "models")]
    return "\n".join(out)


def _designs(root: Path, name: str, task: str, levels) -> tuple[dict, dict, dict, float]:
    """The two-level designs ``name-task-level`` that have results: {level: results.json}, the first of them, its
    baseline run (the cell every design shares) and that run's log10 gap to the float (empties and nan: none)."""
    docs = {v: root / f"{name}-{task}-{v}" / "results.json" for v in levels}
    docs = {v: json.loads(f.read_text()) for v, f in docs.items() if f.exists()}
    if not docs:
        return {}, {}, {}, math.nan
    first = next(iter(docs.values()))
    base = first["runs"][0]
    return docs, first, base, math.log10(base["vs_float_scored"]["geo_mean"])


def _bytes(csv_path: Path, run: int) -> str:
    """The weight bytes of a design's run (the same for every seed), from its results.csv ("-" where absent)."""
    import csv

    if not csv_path.exists():
        return "-"
    with open(csv_path, newline="") as f:
        got = {r["weight_bytes"] for r in csv.DictReader(f) if r["row"] == f"run{run}" and r["weight_bytes"]}
    return f"{int(got.pop()):,}" if len(got) == 1 else "-"


def _column_magnitudes(models: Path) -> list[str]:
    """Mean |w| of W's input and recurrent columns in the equal-budget floats the factorial kept (its models
    folder, not in the repository: run.sh writes it), one line and a blank; nothing where there are none."""
    import numpy as np

    from ternq.model import Model

    ms = [Model.load(f) for f in sorted(models.glob("s*-float-*.npz"))] if models.is_dir() else []
    if not ms:
        return []
    i, h = ms[0].n_in, ms[0].hidden
    W = [m.theta[: 2 * h * (i + h)].reshape(2 * h, i + h) for m in ms]
    a = np.mean([np.abs(w[:, :i]).mean() for w in W])
    r = np.mean([np.abs(w[:, i:]).mean() for w in W])
    return [f"Mean |w| in the {len(ms)} equal-budget floats: W's input columns {a:.3f}, its recurrent columns "
            f"{r:.3f} ({a / r:.2f}x).", ""]


def _effects(doc: dict) -> list[str]:
    """A design's effects table, with a blank line after it."""
    out = ["", "| effect | estimate on log10(scored eval MSE) [95% CI] | x MSE | verdict |", "|---|---|---|---|"]
    for name, e in doc["effects"].items():
        out.append(f"| {name} ({e['label']}) | {_e(e)} | {10 ** e['mean']:.2f}x | {e['verdict']} |")
    return out + [""]


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
        out += _effects(doc)
    return "\n".join(out)


def width(root: Path) -> str:
    """Each ternary (and mostly ternary, mixed) point of the width frontiers against the best int4/int8 point at
    no more weight bytes."""
    out = []
    for task in ("lorenz", "sine", "ecg"):
        f = root / f"width-{task}" / "results.json"
        if not f.exists():
            continue
        doc = json.loads(f.read_text())
        pts = [p for p in doc["points"] if p["method"] == "qat"]
        floats = {m["hidden"]: m for m in doc["float_reference"]["models"]}
        out += [f"### {task}, {len(doc['seeds'])} seeds: wider ternary against int4/int8 at no more weight bytes", "",
                "| ternary | H | weight bytes | scored eval MSE [95% CI] | vs equal-budget float of its width | "
                "best int4/int8 at no more bytes | its bytes | its MSE [95% CI] | ternary / it |",
                "|---|---|---|---|---|---|---|---|---|"]
        for t in (p for p in pts if p["format"].startswith("ternary")):
            rivals = [p for p in pts if p["format"].startswith("int") and p["weight_bytes"] <= t["weight_bytes"]]
            fl = floats.get(t["hidden"])
            vs = _x(t["vs_float_scored"]) if "vs_float_scored" in t else "-"
            if fl is not None and "vs_float_scored" not in t:
                vs = f"{t['eval_mse_scored']['geo_mean'] / fl['eval_mse_scored']['geo_mean']:.1f}x"
            if not rivals:
                out.append(f"| {t['format']} | {t['hidden']} | {t['weight_bytes']:,} | "
                           f"{_g(t['eval_mse_scored'])} | {vs} | none | - | - | - |")
                continue
            r = min(rivals, key=lambda p: p["eval_mse_scored"]["geo_mean"])
            ratio = t["eval_mse_scored"]["geo_mean"] / r["eval_mse_scored"]["geo_mean"]
            out.append(f"| {t['format']} | {t['hidden']} | {t['weight_bytes']:,} | {_g(t['eval_mse_scored'])} | "
                       f"{vs} | {r['format']} H={r['hidden']} | {r['weight_bytes']:,} | {_g(r['eval_mse_scored'])} | "
                       f"{ratio:.1f}x |")
        out += ["", "| format | H | weight bytes | scored eval MSE [95% CI] | on the bytes front |",
                "|---|---|---|---|---|"]
        for p in sorted(pts, key=lambda p: p["weight_bytes"]):
            out.append(f"| {p['format']} | {p['hidden']} | {p['weight_bytes']:,} | {_g(p['eval_mse_scored'])} | "
                       f"{'yes' if p['front_bytes'] else ''} |")
        out.append("")
    return "\n".join(out)


GROUPS = (16, 8, 4, "sign", "thr0.35", "thr0.65")  # scale_group G, scale_sign, zero_threshold t


def groups(root: Path) -> str:
    """Each scale group (two scales per row by sign, a moved zero threshold) against one scale per row (the
    designs' effect), and against the best int4/int8 point of the width frontier (width-T: the same recipe,
    budget and seeds) at no more weight bytes."""
    out = []
    for task in ("lorenz", "sine", "ecg"):
        docs, first, base, gap = _designs(root, "groups", task, GROUPS)
        if not docs:
            continue
        f = root / f"width-{task}" / "results.json"
        ints = [p for p in json.loads(f.read_text())["points"] if p["method"] == "qat"
                and p["format"].startswith("int")] if f.exists() else []
        out += [f"### {task}, H={base['width']}, {len(first['seeds'])} seeds: one scale per G columns of a row, two "
                "per row by sign, or a moved zero threshold", "",
                f"Equal-budget float ({base['reference']['epochs']} epochs): scored eval MSE "
                f"{_float_mse(first, base):.2e}. One scale per row: "
                f"{_bytes(root / f'groups-{task}-{next(iter(docs))}' / 'results.csv', base['run'])} bytes, "
                f"{_g(base['eval_mse_scored'])}, {_x(base['vs_float_scored'])} the float (log10 gap {gap:.2f}).",
                "", "| scales | weight bytes | scored eval MSE [95% CI] | vs equal-budget float | effect on log10 MSE "
                "[95% CI] | share of the log gap closed | best int4/int8 at no more bytes (width frontier) | "
                "its MSE [95% CI] | ternary / it |", "|---|---|---|---|---|---|---|---|---|"]
        for g, doc in docs.items():
            run = doc["runs"][1]
            eff = doc["effects"]["A"]
            nbytes = _bytes(root / f"groups-{task}-{g}" / "results.csv", run["run"])
            limit = int(nbytes.replace(",", "")) if nbytes != "-" else 0
            rivals = [p for p in ints if p["weight_bytes"] <= limit]
            best = min(rivals, key=lambda p: p["eval_mse_scored"]["geo_mean"]) if rivals else None
            rival = "- | - | -"
            if best:
                ratio = run["eval_mse_scored"]["geo_mean"] / best["eval_mse_scored"]["geo_mean"]
                rival = (f"{best['format']} H={best['hidden']}, {best['weight_bytes']:,} B | "
                         f"{_g(best['eval_mse_scored'])} | {ratio:.1f}x")
            label = ("two per row, by sign" if g == "sign"
                     else f"one per row, zero at {g[3:]} s" if str(g).startswith("thr") else f"G={g}")
            out.append(f"| {label} | {nbytes} | {_g(run['eval_mse_scored'])} | {_x(run['vs_float_scored'])} | "
                       f"{_e(eff)} | {-eff['mean'] / gap:.0%} | {rival} |")
        out.append("")
    return "\n".join(out)


def optim(root: Path) -> str:
    """The fine-tune length x output distillation design."""
    out = []
    for task in ("lorenz", "sine"):
        f = root / f"optim-{task}" / "results.json"
        if not f.exists():
            continue
        doc = json.loads(f.read_text())
        names = list(doc["runs"][0]["levels"])
        out += [f"### {task}, H={doc['runs'][0]['width']}, {len(doc['seeds'])} seeds: fine-tune length and output "
                "distillation", "",
                "| run | " + " | ".join(names) + " | scored eval MSE [95% CI] | equal-budget float | "
                "vs float [95% CI] |",
                "|---|" + "---|" * len(names) + "---|---|---|"]
        for run in doc["runs"]:
            lv = run["levels"]
            out.append(f"| {run['run']} | " + " | ".join(str(lv[n]) for n in names) +
                       f" | {_g(run['eval_mse_scored'])} | {_float_mse(doc, run):.2e} ({run['reference']['epochs']} ep)"
                       f" | {_x(run['vs_float_scored'])} |")
        out += _effects(doc)
    return "\n".join(out)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/research")
    for name, make in (("where", where), ("restart", restart), ("width", width), ("optim", optim),
                       ("groups", groups)):
        text = make(root)
        if text:
            (root / f"{name}.md").write_text(text)
            print(text)


if __name__ == "__main__":
    main()
