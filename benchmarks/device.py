"""What a CfC costs on a microcontroller per weight format: sizes, instructions per step, accuracy, widths 8..64.

Run:  python benchmarks/device.py            (slow: it trains three students per width; needs cc and
                                              valgrind, plus gcc-arm-none-eabi, libnewlib-arm-none-eabi and
                                              qemu-system-arm for the boards)

For each task (sine, 3-channel lorenz), width (8, 16, 32, 64) and weight format (ternary, int4,
int8) it trains the best recipe (float teacher, then a student of the format with the shaped
gradient, no distillation, default settings, seed 0), exports it as C (float32) and C (integer),
checks both bit-identical to ``ternq predict`` / ``--int`` on the host and on the emulated boards
(float on the Cortex-M4F, integer on the Cortex-M3), and measures:

- the budget on each board (:func:`ternq.device.export.budget`): flash (.text + .rodata) and RAM
  (.data + .bss + the state) of the library, ``arm-none-eabi-size``; instructions per ``ternq_step``
  counted by the emulated board itself (qemu ``-singlestep -d exec,nochain``), over 16 steps of
  fixed inputs;
- instructions per step on the host (``valgrind --tool=callgrind``) for every layout (ternary: with
  zero-trit skipping, sparse, and without, dense);
- host CPU ns per step of the C and of ``ternq predict`` (Numba) -- noisy on a loaded machine;
- held-out eval MSE of the float32 and of the integer model.

Writes benchmarks/device.json and benchmarks/device.md.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ternq import StudentConfig, TeacherConfig, formats, train_student, train_teacher
from ternq.deploy import Deployable
from ternq.device import c99, toolchain
from ternq.device.export import budget, write_c
from ternq.device.fixed import IntModel
from ternq.tasks import get_task

HERE = Path(__file__).resolve().parent
TASKS = ("sine", "lorenz")
WIDTHS = (8, 16, 32, 64)
WEIGHT_FORMATS = ("ternary", "int4", "int8")
TARGET = {"c": "m4", "c-int": "m3"}


def predict_ns(dep: Deployable, X: np.ndarray, integer: bool) -> float:
    """Best-of-5 wall ns per step of the Numba inference over the held-out set (after a warm-up call)."""
    run = IntModel.from_deployable(dep).predict_q if integer else dep.predict
    arg = IntModel.from_deployable(dep).quantize_inputs(X) if integer else X
    run(arg)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        run(arg)
        best = min(best, time.perf_counter() - t0)
    return 1e9 * best / (X.shape[0] * X.shape[1])


def measure(task_name: str, H: int) -> list[dict]:
    """One row per weight format for a task and width (one teacher, a student of each format)."""
    task = get_task(task_name)
    t0 = time.perf_counter()
    teacher, _ = train_teacher(task, TeacherConfig(hidden=H), seed=0)
    teacher_s = time.perf_counter() - t0
    X, Y = task.eval_set()
    steps = X.shape[0] * X.shape[1]
    rows = []
    for name in WEIGHT_FORMATS:
        t0 = time.perf_counter()
        student, _ = train_student(teacher, task, StudentConfig(hidden=H, shaped=True, weight_format=name), seed=0)
        dep = Deployable.from_model(student)
        mse32, _ = dep.mse(X, Y)
        mse_int, _ = IntModel.from_deployable(dep).mse(X, Y)
        row = {"task": task_name, "hidden": H, "weight_format": name, "teacher_s": teacher_s,
               "student_s": time.perf_counter() - t0, "eval_mse_float32": mse32, "eval_mse_int": mse_int,
               "weight_bytes": formats.weight_bytes(dep.format, *dep.dims),
               "zero_share": float(np.mean(dep.levels() == 0))}
        with tempfile.TemporaryDirectory(prefix="ternq-dev-") as tmp:
            for fmt in c99.FORMATS:
                key = "float" if fmt == "c" else "int"
                _, Yg = c99.golden_outputs(dep, fmt, X)
                expected = c99.csv_lines(Yg)
                for layout in c99.layouts(dep):
                    out = Path(tmp) / f"{fmt}-{layout}"
                    write_c(dep, out, X, fmt, layout)
                    code, stdout = toolchain.run(toolchain.build_host(out, out / "m"))
                    assert code == 0 and stdout == expected, f"{task_name} H={H} {name} {fmt} {layout}: host mismatch"
                    row[f"{key}_{layout}_instr"] = toolchain.callgrind_per_step(out, steps)
                    row[f"{key}_{layout}_ns"] = toolchain.ns_per_step(out, integer=fmt == "c-int")
                    target = TARGET[fmt]
                    if toolchain.missing(target):
                        continue
                    row[f"{key}_{layout}_flash"] = toolchain.sizes(out, target, 4 * H)["flash"]
                    if layout == c99.layouts(dep)[0]:
                        code, stdout = toolchain.run_board(toolchain.build_board(out, target, out), target)
                        row[f"{key}_board_identical"] = code == 0 and stdout == expected
                        row[f"{key}_budget"] = budget(dep, target, fmt, layout)
                row[f"{key}_predict_ns"] = predict_ns(dep, X, fmt == "c-int")
        rows.append(row)
    return rows


def fmt_int(v) -> str:
    return "-" if v is None else f"{int(round(v)):,}"


def _b(r: dict, key: str, field: str):
    b = r.get(key)
    return None if b is None else b[field]


def write_md(rows: list[dict], env: dict) -> None:
    g = {(r["task"], r["hidden"], r["weight_format"]): r for r in rows}
    L = ["# ternq on a microcontroller: sizes, instructions per step, accuracy, per weight format", "",
         "Generated by `python benchmarks/device.py`. Best recipe (shaped gradient, no distillation, default "
         "settings), seed 0, a student of each weight format from the same teacher. "
         f"Toolchains: {env['cc']}; {env['arm']}; {env['qemu']}; {env['valgrind']}.", "",
         "## Budget table", "",
         "Library only (model constants + code), `-O2`; the float32 export on a Cortex-M4F (mps2-an386), the "
         "integer export on a Cortex-M3 (mps2-an385). RAM is the `ternq_state` (4 bytes per hidden unit; no other "
         "writable data); the stack column is `ternq_step`'s frame. Instructions per step: counted on the "
         "emulated board (`qemu-system-arm -singlestep -d exec,nochain`: one instruction per translation block, "
         "each logged as it runs), 16 steps of fixed inputs from a zero state, the harness's loop included "
         "(`ternq.device.export.budget`). Weight bytes: the packed levels plus a float32 scale per row "
         "(`ternq.formats.weight_bytes`). Ternary weights are added or subtracted with zero trits skipped; int4 "
         "(two per byte, unpacked in C) and int8 weights are multiplied.", "",
         "| task | H | weights | weight B | zero | M4F float: flash B | RAM B | stack B | instr/step | "
         "M3 integer: flash B | RAM B | instr/step | eval MSE float32 | integer |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (t, H, f), r in g.items():
        L.append(f"| {t} | {H} | {f} | {fmt_int(r['weight_bytes'])} | {100 * r['zero_share']:.0f}% | "
                 f"{fmt_int(_b(r, 'float_budget', 'flash'))} | {fmt_int(_b(r, 'float_budget', 'ram'))} | "
                 f"{fmt_int(_b(r, 'float_budget', 'stack'))} | "
                 f"{fmt_int(_b(r, 'float_budget', 'instructions_per_step'))} | "
                 f"{fmt_int(_b(r, 'int_budget', 'flash'))} | {fmt_int(_b(r, 'int_budget', 'ram'))} | "
                 f"{fmt_int(_b(r, 'int_budget', 'instructions_per_step'))} | {r['eval_mse_float32']:.2e} | "
                 f"{r['eval_mse_int']:.2e} |")
    L += ["", "## Cost per step on the host", "",
          "Instructions per `ternq_step` (callgrind, host build `cc -std=c99 -O2 -ffp-contract=off`) in the "
          "default layout (ternary: sparse, zero trits skipped; int4/int8: packed as in the .tqd file), and in "
          "the dense layout (one int8 per weight, every weight visited: the same code for every format). "
          "ns per step: host CPU time of the C, and of `ternq predict` (Numba, same "
          "inputs) -- **taken on a loaded shared 2-core machine**, indicative only.", "",
          "| task | H | weights | float instr | float dense instr | int instr | int dense instr | float C ns | "
          "predict ns | int C ns | predict --int ns |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (t, H, f), r in g.items():
        lay = "sparse" if "float_sparse_instr" in r else "packed"
        L.append(f"| {t} | {H} | {f} | {fmt_int(r[f'float_{lay}_instr'])} | {fmt_int(r['float_dense_instr'])} | "
                 f"{fmt_int(r[f'int_{lay}_instr'])} | {fmt_int(r['int_dense_instr'])} | "
                 f"{r[f'float_{lay}_ns']:.0f} | {r['float_predict_ns']:.0f} | {r[f'int_{lay}_ns']:.0f} | "
                 f"{r['int_predict_ns']:.0f} |")
    L += ["", "## Ternary: flash and instructions per layout", "",
          "sparse: per-row lists of non-zero columns (zero trits skipped; the default); dense: one int8 per trit; "
          "packed: five trits per byte as in the .tqd file, decoded in C (zero trits skipped). Flash on the "
          "board of the library (float: M4F, integer: M3); instructions on the host (callgrind).", "",
          "| task | H | float flash sparse / dense / packed | float instr sparse / dense / packed | "
          "int flash sparse / dense / packed | int instr sparse / dense / packed |",
          "|---|---|---|---|---|---|"]
    for (t, H, f), r in g.items():
        if f == "ternary":
            cells = [" / ".join(fmt_int(r.get(f"{k}_{lay}_{m}")) for lay in ("sparse", "dense", "packed"))
                     for k, m in (("float", "flash"), ("float", "instr"), ("int", "flash"), ("int", "instr"))]
            L.append(f"| {t} | {H} | " + " | ".join(cells) + " |")
    ok = [r.get("float_board_identical") for r in rows] + [r.get("int_board_identical") for r in rows]
    L += ["", f"Bit-identity: host C = `ternq predict` / `--int` for every row and layout (checked); "
              f"emulated boards (float on mps2-an386, integer on mps2-an385): "
              f"{sum(1 for v in ok if v)} of {len(ok)} exports identical"
              + ("" if all(v is not None for v in ok) else " (toolchain missing for some)") + ".", ""]
    (HERE / "device.md").write_text("\n".join(L))


def main() -> None:
    v = toolchain.version
    env = {"cc": v([toolchain.host_cc() or "cc", "--version"]),
           "arm": v([toolchain.ARM_GCC, "--version"]), "qemu": v([toolchain.QEMU, "--version"]),
           "valgrind": v(["valgrind", "--version"])}
    rows = []
    for t in TASKS:
        for H in WIDTHS:
            for r in measure(t, H):
                rows.append(r)
                print(f"{t:7s} H={H:3d} {r['weight_format']:7s}  float32 MSE {r['eval_mse_float32']:.2e}  "
                      f"int {r['eval_mse_int']:.2e}  instr/step m4 {_b(r, 'float_budget', 'instructions_per_step')} "
                      f"/ m3 {_b(r, 'int_budget', 'instructions_per_step')}  flash m4 {_b(r, 'float_budget', 'flash')} "
                      f"/ m3 {_b(r, 'int_budget', 'flash')}", flush=True)
    (HERE / "device.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    write_md(rows, env)


if __name__ == "__main__":
    main()
