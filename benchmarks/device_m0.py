"""Ternary against int4 and int8 on a Cortex-M0 at equal error: instructions, multiplies and cycles per step.

Run:  nice -n 5 python benchmarks/device_m0.py      (needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and
                                                     qemu-system-arm; a few minutes)

A Cortex-M0 has no divide instruction and either a single-cycle multiplier or the small one of 32 cycles a
MULS. A ternary weight is added or subtracted, an int4 or int8 weight multiplied, so ternary should win there
if anywhere -- but only at equal error, since it needs more units for the same error.

For each task (sine, 3-channel lorenz), width and weight format (ternary, int4, int8) and seeds 0, 1, 2 it
trains the best recipe of benchmarks/device.py (a float teacher of that width and seed, then a student of
the format with the shaped gradient, default settings), and measures the integer C library (``c-int``, the
default layout: ternary sparse, int4/int8 packed) with :func:`ternq.device.export.budget` on the ``m0``
board (Cortex-M0, ``qemu-system-arm -M microbit``): instructions, MULS and cycles per step under the
Cortex-M0 timings with each multiplier, flash and RAM; beside it, the instructions per step of seed 0's
model on the Cortex-M3 (``m3``), and the packed ternary layout's on the m0. The error is the held-out eval
MSE of the integer model (what the library computes, bit for bit).

Equal error: for every error level (each int8 width's geometric-mean MSE over the seeds), the cheapest
width of each format whose geometric-mean MSE is at or below it, and its cycles.

Writes benchmarks/device_m0.json and benchmarks/device_m0.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ternq import StudentConfig, TeacherConfig, formats, train_student, train_teacher
from ternq.deploy import Deployable
from ternq.device import toolchain
from ternq.device.export import budget
from ternq.device.fixed import IntModel
from ternq.tasks import get_task

HERE = Path(__file__).resolve().parent
TASKS = ("sine", "lorenz")
WIDTHS = (8, 16, 24, 32, 48, 64)
WEIGHT_FORMATS = ("ternary", "int4", "int8")
SEEDS = (0, 1, 2)


def measure(task_name: str, H: int, seed: int) -> list[dict]:
    task = get_task(task_name)
    teacher, _ = train_teacher(task, TeacherConfig(hidden=H), seed=seed)
    X, Y = task.eval_set()
    rows = []
    for name in WEIGHT_FORMATS:
        student, _ = train_student(teacher, task, StudentConfig(hidden=H, shaped=True, weight_format=name),
                                   seed=seed)
        dep = Deployable.from_model(student)
        b = budget(dep, "m0")
        row = {"task": task_name, "hidden": H, "seed": seed, "weight_format": name,
               "eval_mse_int": IntModel.from_deployable(dep).mse(X, Y)[0],
               "weight_bytes": formats.weight_bytes(dep.format, *dep.dims),
               "zero_share": float(np.mean(dep.levels() == 0)), "m0": b}
        if seed == 0:
            row["m3_instructions_per_step"] = budget(dep, "m3")["instructions_per_step"]
            if name == "ternary":
                row["m0_packed"] = budget(dep, "m0", layout="packed")
        rows.append(row)
        print(f"{task_name:7s} H={H:3d} seed {seed} {name:7s} int MSE {row['eval_mse_int']:.2e} "
              f"m0 instr {b['instructions_per_step']:.0f} muls {b['muls_per_step']:.0f} "
              f"cycles {b['cycles_per_step']['mul1']:.0f} / {b['cycles_per_step']['mul32']:.0f}", flush=True)
    return rows


def geo(vals) -> float:
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def summary(rows: list[dict]) -> dict:
    """{(task, format, H): mean figures over the seeds, geometric-mean MSE and its range}."""
    out = {}
    for r in rows:
        out.setdefault((r["task"], r["weight_format"], r["hidden"]), []).append(r)
    res = {}
    for k, rs in out.items():
        mse = [r["eval_mse_int"] for r in rs]
        m0 = [r["m0"] for r in rs]
        s0 = next(r for r in rs if r["seed"] == 0)
        res[k] = {"mse": geo(mse), "mse_lo": min(mse), "mse_hi": max(mse), "n": len(rs),
                  "instr": np.mean([b["instructions_per_step"] for b in m0]),
                  "muls": np.mean([b["muls_per_step"] for b in m0]),
                  "mul1": np.mean([b["cycles_per_step"]["mul1"] for b in m0]),
                  "mul32": np.mean([b["cycles_per_step"]["mul32"] for b in m0]),
                  "flash": np.mean([b["flash"] for b in m0]), "ram": m0[0]["ram"],
                  "zero": np.mean([r["zero_share"] for r in rs]),
                  "m3_instr": s0.get("m3_instructions_per_step"),
                  "packed_instr": s0.get("m0_packed", {}).get("instructions_per_step"),
                  "packed_mul1": s0.get("m0_packed", {}).get("cycles_per_step", {}).get("mul1")}
    return res


def cheapest(S: dict, task: str, fmt: str, level: float, key: str):
    """The width of ``fmt`` with the fewest ``key`` whose geometric-mean MSE is at most ``level`` (or None)."""
    ok = [(S[task, fmt, H][key], H) for H in WIDTHS if (task, fmt, H) in S and S[task, fmt, H]["mse"] <= level]
    return min(ok) if ok else None


def n(v) -> str:
    return "-" if v is None else f"{int(round(v)):,}"


def write_md(rows: list[dict], env: dict) -> None:
    S = summary(rows)
    L = ["# Ternary, int4 and int8 on a Cortex-M0 at equal error: instructions, multiplies, cycles per step", "",
         "Generated by `python benchmarks/device_m0.py`. Best recipe of benchmarks/device.py (shaped gradient, "
         f"default settings), seeds {', '.join(map(str, SEEDS))}, a student of each weight format from the "
         f"same teacher per width and seed. Toolchains: {env['arm']}; {env['qemu']}.", "",
         "The integer C library (`c-int`; ternary: sparse, zero trits skipped, each non-zero weight added or "
         "subtracted; int4/int8: packed, each weight multiplied) on the `m0` board: a Cortex-M0 "
         "(`-mcpu=cortex-m0 -mthumb -mfloat-abi=soft`) on `qemu-system-arm -M microbit` (nRF51). Every executed "
         "instruction is counted on the emulated board (`-singlestep -d exec,nochain`), 16 steps of fixed "
         "inputs, and mapped through the ELF's disassembly to its class; cycles per step follow the Cortex-M0 "
         "Technical Reference Manual's table 3-1 (ALU 1, load/store 2, LDM/STM/PUSH/POP 1+N, POP with PC 4+N, "
         "taken branch 3, not taken 1, BL 4, BX/BLX 3) with MULS of 1 cycle (`mul1`, the fast multiplier) or "
         "32 (`mul32`, the small multiplier). No wait states, no bus stalls: a lower bound on a real part "
         "whose flash has wait states. Figures are means over the seeds (the ternary ones vary with the "
         "zero trits); MSE is the held-out eval MSE of the integer model, geometric mean over the seeds "
         "[min, max].", "",
         "## Per width", "",
         "| task | weights | H | int MSE [min, max] | zero | instr/step | MULS/step | cycles mul1 | cycles mul32 | "
         "flash B | RAM B | M3 instr/step (seed 0) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in TASKS:
        for f in WEIGHT_FORMATS:
            for H in WIDTHS:
                s = S.get((t, f, H))
                if s is None:
                    continue
                L.append(f"| {t} | {f} | {H} | {s['mse']:.2e} [{s['mse_lo']:.1e}, {s['mse_hi']:.1e}] | "
                         f"{100 * s['zero']:.0f}% | {n(s['instr'])} | {n(s['muls'])} | {n(s['mul1'])} | "
                         f"{n(s['mul32'])} | {n(s['flash'])} | {n(s['ram'])} | {n(s['m3_instr'])} |")
    L += ["", "## At equal error: the cheapest width of each format", "",
          "Error levels: each int8 width's geometric-mean MSE. For each level and format, the width with the "
          "fewest cycles per step among those whose geometric-mean MSE is at or below the level (`-`: no width "
          "reaches it); the winner is the format with the fewest cycles, and the ratio is the winner's cycles "
          "over int8's at that level.", ""]
    for key, what in (("mul1", "single-cycle multiplier"), ("mul32", "32-cycle multiplier"),
                      ("instr", "instructions per step")):
        L += [f"### {what} (`{key}`)", "",
              "| task | error level | ternary H: cost | int4 H: cost | int8 H: cost | cheapest | vs int8 |",
              "|---|---|---|---|---|---|---|"]
        for t in TASKS:
            levels = sorted({S[t, "int8", H]["mse"] for H in WIDTHS if (t, "int8", H) in S}, reverse=True)
            for lv in levels:
                best = {f: cheapest(S, t, f, lv, key) for f in WEIGHT_FORMATS}
                cells = [("-" if best[f] is None else f"{best[f][1]}: {n(best[f][0])}") for f in WEIGHT_FORMATS]
                have = {f: b for f, b in best.items() if b is not None}
                win = min(have, key=lambda f: have[f][0])
                ratio = have[win][0] / have["int8"][0] if "int8" in have else float("nan")
                L.append(f"| {t} | {lv:.2e} | " + " | ".join(cells) + f" | {win} | {ratio:.2f} |")
        L.append("")
    L += ["## Packed ternary on the m0", "",
          "Five trits a byte as in the .tqd file, decoded in C; the Cortex-M0 has no divide instruction. Seed 0.",
          "", "| task | H | sparse instr/step | packed instr/step | sparse cycles mul1 | packed cycles mul1 |",
          "|---|---|---|---|---|---|"]
    for t in TASKS:
        for H in WIDTHS:
            r = next((r for r in rows if (r["task"], r["hidden"], r["seed"], r["weight_format"]) ==
                      (t, H, 0, "ternary")), None)
            if r and "m0_packed" in r:
                L.append(f"| {t} | {H} | {n(r['m0']['instructions_per_step'])} | "
                         f"{n(r['m0_packed']['instructions_per_step'])} | {n(r['m0']['cycles_per_step']['mul1'])} | "
                         f"{n(r['m0_packed']['cycles_per_step']['mul1'])} |")
    L.append("")
    (HERE / "device_m0.md").write_text("\n".join(L))


def main() -> None:
    v = toolchain.version
    gone = toolchain.missing("m0") + toolchain.missing("m3")
    if gone:
        raise SystemExit(f"{', '.join(sorted(set(gone)))} not installed")
    env = {"arm": v([toolchain.ARM_GCC, "--version"]), "qemu": v([toolchain.QEMU, "--version"])}
    rows = []
    for t in TASKS:
        for H in WIDTHS:
            for seed in SEEDS:
                rows.extend(measure(t, H, seed))
        (HERE / "device_m0.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    write_md(rows, env)


if __name__ == "__main__":
    main()
