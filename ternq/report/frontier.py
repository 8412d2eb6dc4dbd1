"""The frontier's table (rich, 80 columns), its Markdown twin and its two plots (error against weight bytes and
against instructions per step). Every figure comes from the frontier's document (:mod:`ternq.frontier`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from . import _baseline_label, _ci, _stacked, fits, fmt

FRONT_MARK = {(True, True): "both", (True, False): "bytes", (False, True): "instr", (True, None): "bytes",
              (False, False): "", (False, None): ""}


def _instr(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _rows(doc: dict) -> list[list[str]]:
    """Table rows: every model of the grid, then the floats (format "float", front column "ref.")."""
    out = []
    for p in doc["points"]:
        out.append([p["label"], str(p["hidden"]), f"{p['weight_bytes']:,}", _instr(p["instructions_per_step"]),
                    _ci(p["eval_mse_scored"]), FRONT_MARK[p["front_bytes"], p["front_instructions"]]])
    for r in doc["float_reference"]["models"]:
        out.append(["float", str(r["hidden"]), f"{r['weight_bytes']:,}", "-", _ci(r["eval_mse_scored"]), "ref."])
    return out


def caption(doc: dict) -> str:
    n = len(doc["seeds"])
    m = doc["metric"]
    refs = doc["float_reference"]["models"]
    lines = [f"eval MSE: one-step, steps {m['scored_steps'][0]}..{m['scored_steps'][1]} of each held-out window "
             f"(after a warm-up of {m['warmup']}); geometric mean over {n} seed{'s' if n > 1 else ''}"
             + (" [95% CI]" if n > 1 else "") + ".",
             "bytes: weight bytes; instr.: instructions per step, " + doc["instructions"]["note"] + ".",
             "front: lowest error at no more weight bytes (bytes) or instructions per step (instr)."]
    if any("+" in p["format"] for p in doc["points"]):
        lines.append("mixed formats (e.g. ternary+cand:int8: ternary, the candidate matrix int8; gate and cand are "
                     "W's first and next H rows, out W_out): not deployable yet, so no instructions are counted for "
                     "them (instr. -).")
    if refs:
        lines.append(f"float: the equal-budget float of each width ({refs[0]['epochs']} epochs, {refs[0]['schedule']}),"
                     " its weights as float32; the reference, not on the front.")
    best = doc.get("best_simple_forecast")
    if best:
        lines.append(f"best simple forecast: {_baseline_label(best['name'], best['period'], best['info'])} "
                     f"{fmt(best['eval_mse_scored'])}.")
    lines.append("weight bytes: " + doc["weight_bytes"] + ".")
    return "\n".join(lines)


def title(doc: dict) -> str:
    return f"Frontier on {doc['task']['name']}: error against weight bytes and instructions"


def frontier_table(doc: dict, width: int | None = None) -> Table:
    """The frontier in one table; the intervals under the estimates when it would not fit in ``width`` columns
    (the console's by default)."""
    wide = _table(doc, stacked=False)
    return wide if fits(wide, width) else _table(doc, stacked=True)


def _table(doc: dict, stacked: bool) -> Table:
    n = len(doc["seeds"])
    t = Table(title=title(doc), caption=caption(doc), caption_justify="left")
    for col in ("format", "H", "bytes", "instr.", "eval MSE" + (" [95% CI]" if n > 1 and not stacked else ""),
                "front"):
        t.add_column(col, justify="left" if col in ("format", "front") else "right", no_wrap=True)
    for row in _rows(doc):
        t.add_row(*row[:4], _stacked(row[4]) if stacked else row[4], row[5])
    return t


def markdown(doc: dict) -> str:
    """The frontier table as Markdown (for a benchmarks page), with the caption as its notes."""
    n = len(doc["seeds"])
    head = ["format", "H", "weight bytes", "instructions / step", "eval MSE" + (" [95% CI]" if n > 1 else ""),
            "front"]
    lines = [f"### {title(doc)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in _rows(doc):
        row = [f"**{c}**" if i == 4 and row[5] not in ("", "ref.") else c for i, c in enumerate(row)]
        lines.append("| " + " | ".join(row) + " |")
    lines += [""] + [f"- {line}" for line in caption(doc).splitlines()]
    return "\n".join(lines) + "\n"


# --- plots ---------------------------------------------------------------------------------------

AXES = {"bytes": ("weight_bytes", "weight bytes (levels packed + a float32 scale per row)", "error-vs-bytes.png",
                  "front_bytes"),
        "instructions": ("instructions_per_step", "instructions per step", "error-vs-instructions.png",
                         "front_instructions")}


METHOD_STYLE = {"qat": ("-", "o"), "ptq": (":", "v"), "ptq+ft": ("--", "s")}  # line and marker: one colour a format


def plot_files(out_dir: str | Path) -> list[Path]:
    return [Path(out_dir) / AXES[a][2] for a in AXES]


def save_plots(doc: dict, out_dir: str | Path) -> list[Path]:
    """Both plots into ``out_dir`` (matplotlib: the ``plot`` extra)."""
    return [plot(doc, axis, Path(out_dir) / AXES[axis][2]) for axis in AXES]


def plot(doc: dict, axis: str, path: str | Path) -> Path:
    """Error against ``axis`` ("bytes" or "instructions"), log-log: a line per format and method with each point's
    95% interval over seeds and its width, the Pareto front as a step line through ringed points, and the
    equal-budget float of each width as grey reference points (by bytes; no instructions are counted for floats)."""
    from .plots import _save, pyplot

    plt = pyplot()
    key, xlabel, _, front_key = AXES[axis]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {f: colours[i % len(colours)] for i, f in enumerate(dict.fromkeys(p["format"] for p in doc["points"]))}
    series: dict[str, list[dict]] = {}
    for p in doc["points"]:
        series.setdefault(p["label"], []).append(p)
    counted = any(p[key] is not None for p in doc["points"])
    if not counted:
        ax.text(0.5, 0.5, f"{xlabel}:\n{doc['instructions']['note']}", ha="center", va="center",
                transform=ax.transAxes, fontsize=11)
        ax.set_axis_off()
        ax.set_title(f"{doc['task']['name']}: eval MSE against {xlabel}")
        return _save(fig, Path(path))
    for label, ps in series.items():
        ps = sorted((p for p in ps if p[key] is not None), key=lambda p: p[key])
        x = np.array([p[key] for p in ps], float)
        y = np.array([p["eval_mse_scored"]["geo_mean"] for p in ps])
        lo = np.array([p["eval_mse_scored"]["lo"] for p in ps], float)
        hi = np.array([p["eval_mse_scored"]["hi"] for p in ps], float)
        if not ps:
            continue
        ls, marker = METHOD_STYLE[ps[0]["method"]]
        line = ax.plot(x, y, marker=marker, ls=ls, lw=1.3, color=colour[ps[0]["format"]], label=label)[0]
        if np.all(np.isfinite(lo)):
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=line.get_color(), capsize=3, lw=0.8)
        for p, xi, yi in zip(ps, x, y, strict=True):
            ax.annotate(f"H={p['hidden']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=line.get_color())
    front = sorted((p[key], p["eval_mse_scored"]["geo_mean"]) for p in doc["points"] if p[front_key])
    if front:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="black", lw=0.8, alpha=0.6)
        ax.plot(fx, fy, "o", ms=12, mfc="none", mec="black", mew=1.2, label="Pareto front")
    refs = doc["float_reference"]["models"]
    if refs and axis == "bytes":
        x = [r["weight_bytes"] for r in refs]
        y = [r["eval_mse_scored"]["geo_mean"] for r in refs]
        ax.plot(x, y, "x--", color="gray", lw=1, label=f"equal-budget float ({refs[0]['epochs']} epochs), float32")
        for r, xi, yi in zip(refs, x, y, strict=True):
            ax.annotate(f"H={r['hidden']}", (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7,
                        color="gray")
    elif refs:  # no instructions are counted for a float: a level per width
        for i, r in enumerate(refs):
            y = r["eval_mse_scored"]["geo_mean"]
            ax.axhline(y, color="gray", ls=":", lw=0.8,
                       label=f"equal-budget float ({refs[0]['epochs']} epochs) of each width" if i == 0 else None)
            ax.annotate(f"float H={r['hidden']}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(-4, 2),
                        textcoords="offset points", ha="right", fontsize=7, color="gray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel + (f" ({doc['instructions']['note']})" if axis == "instructions" else ""))
    m = doc["metric"]
    n = len(doc["seeds"])
    ax.set_ylabel(f"eval MSE, steps {m['scored_steps'][0]}..{m['scored_steps'][1]} (geo. mean, {n} seed"
                  + ("s)" if n > 1 else ")"))
    ax.set_title(f"{doc['task']['name']}: eval MSE against {xlabel.split(' (')[0]}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, Path(path))
