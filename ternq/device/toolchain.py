"""Compilers, an emulated board and measuring tools for the C export.

Host: ``cc -std=c99 -O2 -ffp-contract=off -Wall -Wextra -Werror`` (``$CC`` overrides ``cc``).
Boards (Debian packages ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi``, ``qemu-system-arm``):

``m4``  Cortex-M4F, ``-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16``, ``qemu-system-arm -M mps2-an386``
``m3``  Cortex-M3 (no FPU), ``-mcpu=cortex-m3 -mthumb -mfloat-abi=soft``, ``qemu-system-arm -M mps2-an385``
``m0``  Cortex-M0 (no FPU, no divide instruction), ``-mcpu=cortex-m0 -mthumb -mfloat-abi=soft``,
        ``qemu-system-arm -M microbit`` (an nRF51: 256 KB of flash at 0, 16 KB of RAM at 0x20000000)

The board image: a vector table at address 0 (initial stack pointer, a reset
handler that enables the FPU through CPACR before any float instruction and
then calls newlib's start-up ``_start``), code at 0x00000000 and data at
0x20000000 (:data:`LINKER_SCRIPT`, sized to the board's memories), newlib's semihosting (``--specs=rdimon.specs``)
for printf and the exit status.

Instructions per step are counted on the emulated board itself (:func:`count_instructions`):
QEMU 7.2 as Debian ships it has no instruction-counting plugin (no ``libinsn.so``), so the
board runs with ``-singlestep`` (one guest instruction per translation block) and
``-d exec,nochain`` (a log line for every block it executes, none skipped by block
chaining); the lines between two marker calls of a harness are the instructions it ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOST_FLAGS = ("-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror")
ARM_GCC, ARM_SIZE, ARM_NM, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm"


class ToolchainError(RuntimeError):
    """A tool is missing or a compile/run failed (the message is one line)."""


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    flags: tuple[str, ...]
    machine: str
    flash_kb: int = 4096
    ram_kb: int = 4096


TARGETS = {
    "m4": Target("m4", "Cortex-M4F (mps2-an386)",
                 ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"), "mps2-an386"),
    "m3": Target("m3", "Cortex-M3, no FPU (mps2-an385)", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
                 "mps2-an385"),
    "m0": Target("m0", "Cortex-M0, no FPU (microbit, nRF51)", ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
                 "microbit", 256, 16),
}

STARTUP_C = """/* Minimal start-up for the MPS2 boards under QEMU: vector table, FPU on, newlib's _start. */
#include <stdint.h>
extern void _start(void);
extern uint32_t __stack_top;
void ternq_reset_handler(void);
static void ternq_fault(void) { for (;;) { } }
__attribute__((section(".vectors"), used))
const void *const ternq_vectors[16] = {
    &__stack_top, (const void *)ternq_reset_handler,
    (const void *)ternq_fault, (const void *)ternq_fault, (const void *)ternq_fault,
    (const void *)ternq_fault, (const void *)ternq_fault, 0, 0, 0, 0,
    (const void *)ternq_fault, (const void *)ternq_fault, 0,
    (const void *)ternq_fault, (const void *)ternq_fault,
};
void ternq_reset_handler(void)
{
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10, CP11 */
    __asm__ volatile("dsb\\n\\tisb" ::: "memory");
#endif
    _start();
    for (;;) { }
}
"""

LINKER_SCRIPT = """MEMORY {
  FLASH (rx) : ORIGIN = 0x00000000, LENGTH = %(flash_kb)dK
  RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = %(ram_kb)dK
}
ENTRY(ternq_reset_handler)
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) KEEP(*(.init)) KEEP(*(.fini))
            . = ALIGN(4); __preinit_array_start = .; KEEP(*(.preinit_array)) __preinit_array_end = .;
            __init_array_start = .; KEEP(*(SORT(.init_array.*))) KEEP(*(.init_array)) __init_array_end = .;
            __fini_array_start = .; KEEP(*(.fini_array)) __fini_array_end = .; } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .data : { __data_start__ = .; *(.data*) . = ALIGN(4); __data_end__ = .; } > RAM
  .bss (NOLOAD) : { __bss_start__ = .; __bss_start = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end__ = .;
                    _end = .; end = .; __end__ = .; } > RAM
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
  __stack = __stack_top;
}
"""


def host_cc() -> str | None:
    """The host C compiler (``$CC`` or ``cc``), or None."""
    return shutil.which(os.environ.get("CC", "cc"))


def missing(target: str | None = None, emulator: bool = True) -> list[str]:
    """The tools that are absent: for the host (``target=None``) or for a board (without ``emulator``: only
    the compiler and binutils, enough for sizes)."""
    if target is None:
        return [] if host_cc() else [os.environ.get("CC", "cc")]
    tools = (ARM_GCC, ARM_SIZE, ARM_NM) + ((QEMU,) if emulator else ())
    return [t for t in tools if shutil.which(t) is None]


def version(cmd: list[str]) -> str:
    """The first line a tool prints for ``cmd`` (its version), or "<tool> absent"."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return f"{cmd[0]} absent"


def _run(cmd: list[str], timeout: float = 300, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise ToolchainError(f"{cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{Path(cmd[0]).name} did not finish within {timeout:g} s") from None


def _check(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[0]
        raise ToolchainError(f"{what} failed: {first}")
    return proc


def _sources(src: Path, harness: bool = True, main: str = "main.c") -> list[str]:
    names = ["ternq_model.c"] + ([main] if harness else [])
    return [str(Path(src) / n) for n in names]


def build_host(src: str | Path, exe: str | Path, extra: tuple[str, ...] = ()) -> Path:
    """Compile an export folder (library + main.c) for the host with :data:`HOST_FLAGS`."""
    cc = host_cc()
    if cc is None:
        raise ToolchainError("no host C compiler (cc) found")
    _check(_run([cc, *HOST_FLAGS, *extra, *_sources(Path(src)), "-o", str(exe)]), "host compile")
    return Path(exe)


def run(exe: str | Path, timeout: float = 300) -> tuple[int, str]:
    """Run a host executable: (exit status, stdout)."""
    proc = _run([str(exe)], timeout)
    return proc.returncode, proc.stdout


def build_board(src: str | Path, target: str, out_dir: str | Path, main: str = "main.c") -> Path:
    """Cross-compile an export folder with its harness (``main``, a file of the folder) for a board; return the
    ELF path."""
    elf = Path(out_dir) / f"ternq-{target}-{Path(main).stem}.elf"
    return link_board(_sources(Path(src), main=main), target, out_dir, elf)


def link_board(sources: list[str], target: str, out_dir: str | Path, elf: str | Path) -> Path:
    """Cross-compile and link C or assembly ``sources`` with the board's start-up and linker script into ``elf``."""
    tg = TARGETS[target]
    out = Path(out_dir)
    (out / "startup.c").write_text(STARTUP_C)
    (out / "board.ld").write_text(LINKER_SCRIPT % {"flash_kb": tg.flash_kb, "ram_kb": tg.ram_kb})
    cmd = [ARM_GCC, *tg.flags, "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
           "--specs=rdimon.specs", "-T", str(out / "board.ld"), str(out / "startup.c"), *sources, "-o", str(elf)]
    _check(_run(cmd), f"{target} cross-compile")
    return Path(elf)


def _qemu(elf: str | Path, target: str) -> list[str]:
    return [QEMU, "-M", TARGETS[target].machine, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


def run_board(elf: str | Path, target: str, timeout: float = 300) -> tuple[int, str]:
    """Run an ELF on the emulated board with semihosting: (exit status, stdout)."""
    proc = _run(_qemu(elf, target), timeout)
    return proc.returncode, proc.stdout


COUNT_C = """/* count.c: golden.h's inputs through ternq_step between two marker calls, whose instructions the emulated
 * board counts (ternq.device.toolchain.count_instructions). Generated by ternq. */
#include "ternq_model.h"
#include "golden.h"

__attribute__((noinline)) void ternq_mark_begin(void) { __asm__ volatile(""); }
__attribute__((noinline)) void ternq_mark_end(void) { __asm__ volatile(""); }
static volatile %(ty)s ternq_sink;
/* read at run time, so that the loops compile the same whatever the counts (no unrolling of a known count) */
static volatile long ternq_count_n = TERNQ_GOLDEN_N, ternq_count_t = TERNQ_GOLDEN_T;

int main(void)
{
    ternq_state s;
    %(ty)s y[TERNQ_N_OUT];
    const long N = ternq_count_n, T = ternq_count_t;
    long n, t;
    ternq_mark_begin();
    for (n = 0; n < N; ++n) {
        ternq_reset(&s);
        for (t = 0; t < T; ++t)
            ternq_step(&s, &ternq_golden_x[(n * T + t) * TERNQ_N_IN], y);
    }
    ternq_mark_end();
    ternq_sink = y[0];
    return 0;
}
"""

COUNTED_ON = "qemu-system-arm -singlestep -d exec,nochain (one instruction per translation block)"


def count_instructions(src: str | Path, target: str, integer: bool, timeout: float = 600) -> int:
    """Instructions the emulated board executes from the start of ``ternq_mark_begin`` to the start of
    ``ternq_mark_end`` in a harness that runs golden.h's inputs through the export in ``src`` (:data:`COUNT_C`):
    every ``ternq_reset`` and ``ternq_step`` with the harness's loop around them (a few instructions per step).

    Counted by QEMU itself (see the module docstring): deterministic, the same on every run."""
    return count_profile(src, target, integer, timeout)["instructions"]


def count_profile(src: str | Path, target: str, integer: bool, timeout: float = 600) -> dict:
    """:func:`profile` of the counting harness (:data:`COUNT_C`) over the export in ``src``."""
    with tempfile.TemporaryDirectory(prefix="ternq-count-") as tmp:
        out = Path(tmp)
        for name in ("ternq_model.h", "ternq_model.c", "golden.h"):
            shutil.copy(Path(src) / name, out / name)
        (out / "count.c").write_text(COUNT_C % {"ty": "int32_t" if integer else "float"})
        elf = build_board(out, target, out, main="count.c")
        return profile(elf, target, timeout)


# Cycles of the Cortex-M0 per instruction: Arm, "Cortex-M0 Technical Reference Manual" (DDI 0432C), section 3.3,
# table 3-1 "Cortex-M0 instruction summary" (zero-wait-state memory). N is the number of registers in the list.
M0_CYCLES = {
    "alu": 1,           # moves, adds, subtracts, compares, logic, shifts, extends, reverses, ADR
    "load_store": 2,    # LDR*/STR* of any size and addressing
    "multiple": 1,      # LDM/STM/PUSH/POP: 1 + N; POP with PC: 4 + N
    "pop_pc": 4,
    "branch_taken": 3,  # B, B<cond> taken
    "branch_not_taken": 1,
    "bl": 4,
    "bx": 3,            # BX, BLX (register)
    "pc_write": 3,      # MOV/ADD with PC as the destination
    "barrier": 4,       # DMB, DSB, ISB; MRS, MSR also 4 (3 for MRS, counted 4: none in a step)
}
M0_MULTIPLIER_CYCLES = {"mul1": 1, "mul32": 32}  # MULS: the fast single-cycle or the small iterative multiplier

_OBJDUMP_LINE = re.compile(r"^\s*([0-9a-f]+):\t((?:[0-9a-f]{4} ?)+)\s*\t(\S+)\s*([^@;]*)")
_CONDITIONS = ("eq", "ne", "cs", "cc", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le")


def _register_count(operands: str) -> int:
    body = operands[operands.index("{") + 1:operands.index("}")]
    n = 0
    for part in body.split(","):
        part = part.strip()
        if "-" in part:
            a, b = (int(r.strip().lstrip("r")) for r in part.split("-"))
            n += b - a + 1
        elif part:
            n += 1
    return n


def _disassembly(elf: Path) -> dict[int, tuple[int, str, str]]:
    """{address: (bytes, mnemonic without width suffix, operands)} of every Thumb instruction of ``elf``."""
    proc = _check(_run(["arm-none-eabi-objdump", "-d", str(elf)]), "arm-none-eabi-objdump")
    table = {}
    for line in proc.stdout.splitlines():
        m = _OBJDUMP_LINE.match(line)
        if m and not m.group(3).startswith("."):
            size = 2 * len(m.group(2).split())
            table[int(m.group(1), 16)] = (size, m.group(3).split(".")[0], m.group(4).strip())
    return table


def instruction_class(mnemonic: str, operands: str) -> str:
    """The :data:`M0_CYCLES` class of a Thumb instruction (``mul`` for MULS)."""
    if mnemonic in ("mul", "muls"):
        return "mul"
    if mnemonic == "bl":
        return "bl"
    if mnemonic in ("bx", "blx"):
        return "bx"
    if mnemonic == "b" or (mnemonic.startswith("b") and mnemonic[1:] in _CONDITIONS):
        return "branch"
    if mnemonic in ("push", "pop", "ldm", "ldmia", "stm", "stmia"):
        return "pop_pc" if mnemonic == "pop" and "pc" in operands else "multiple"
    if mnemonic.startswith(("ldr", "str")):
        return "load_store"
    if mnemonic in ("dmb", "dsb", "isb", "mrs", "msr"):
        return "barrier"
    if mnemonic.startswith(("mov", "add")) and operands.split(",")[0].strip() == "pc":
        return "pc_write"
    return "alu"


def profile(elf: str | Path, target: str, timeout: float = 600) -> dict:
    """What the emulated board executes from the start of ``ternq_mark_begin`` to the start of ``ternq_mark_end``
    in ``elf``: ``instructions``, ``muls`` and ``by_class`` (instructions per :func:`instruction_class`, branches
    split into taken and not taken by the next address executed), and ``cycles`` under :data:`M0_CYCLES` with
    each multiplier of :data:`M0_MULTIPLIER_CYCLES` (a Cortex-M0's timings, whatever ``target`` ran it).

    Each logged translation block is one instruction (``-singlestep``); its address comes from the log line and
    its instruction from the ELF's disassembly (``arm-none-eabi-objdump -d``)."""
    code = _disassembly(Path(elf))
    begin, end = b" ternq_mark_begin\n", b" ternq_mark_end\n"
    cmd = [*_qemu(elf, target), "-singlestep", "-d", "exec,nochain", "-D", "/dev/stdout"]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ToolchainError(f"{QEMU} not found") from None
    visits: dict[int, int] = {}
    taken: dict[int, int] = {}
    counting, done, prev = False, False, None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # "Trace 0: <host> [<cs_base>/<pc>/<flags>/<cflags>] <symbol>"
            if not counting and (done or not line.endswith(begin)):
                continue
            if counting and line.endswith(end):
                counting, done = False, True
                pc = int(line.split(b"/", 2)[1], 16)
            else:
                counting = True
                pc = int(line.split(b"/", 2)[1], 16)
                visits[pc] = visits.get(pc, 0) + 1
            if prev is not None and pc != prev + code.get(prev, (0,))[0]:
                taken[prev] = taken.get(prev, 0) + 1
            prev = pc
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise ToolchainError(f"{QEMU} did not finish within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0 or not done:
        raise ToolchainError(f"the counting harness on {target} {'exited with ' + str(rc) if rc else 'ran no step'}")
    by_class: dict[str, int] = {}
    base = 0  # cycles of everything but MULS
    for pc, n in visits.items():
        if pc not in code:
            raise ToolchainError(f"address {pc:#x} executed on {target} is not in the disassembly")
        _, mnemonic, operands = code[pc]
        cls = instruction_class(mnemonic, operands)
        if cls == "branch":
            t = taken.get(pc, 0)
            by_class["branch_taken"] = by_class.get("branch_taken", 0) + t
            by_class["branch_not_taken"] = by_class.get("branch_not_taken", 0) + n - t
            base += t * M0_CYCLES["branch_taken"] + (n - t) * M0_CYCLES["branch_not_taken"]
            continue
        by_class[cls] = by_class.get(cls, 0) + n
        if cls in ("multiple", "pop_pc"):
            base += n * (M0_CYCLES[cls] + _register_count(operands))
        elif cls != "mul":
            base += n * M0_CYCLES[cls]
    muls = by_class.get("mul", 0)
    return {"instructions": sum(visits.values()), "muls": muls, "by_class": by_class,
            "cycles": {k: base + muls * c for k, c in M0_MULTIPLIER_CYCLES.items()}}


def _object(src: Path, target: str, out: Path, extra: tuple[str, ...] = ()) -> Path:
    obj = out / f"ternq_model-{target}.o"
    src = Path(src).resolve()
    cmd = [ARM_GCC, *TARGETS[target].flags, "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra",
           "-Werror", *extra, "-c", str(src / "ternq_model.c"), "-o", str(obj)]
    _check(_run(cmd, cwd=out), f"{target} compile")
    return obj


def sizes(src: str | Path, target: str = "m4", state_bytes: int = 0) -> dict:
    """Flash and RAM of the model and its code on a board (``arm-none-eabi-size -A`` of ternq_model.o).

    flash = .text + .rodata; ram = .data + .bss + ``state_bytes`` (the caller's ternq_state);
    ``stack`` is ternq_step's own frame (``-fstack-usage``; its static helpers are inlined at -O2).
    """
    src = Path(src)
    with tempfile.TemporaryDirectory(prefix="ternq-size-") as tmp:
        out = Path(tmp)
        obj = _object(src, target, out, ("-fstack-usage",))
        proc = _check(_run([ARM_SIZE, "-A", str(obj)]), "arm-none-eabi-size")
        sec: dict[str, int] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
                sec[parts[0]] = sec.get(parts[0], 0) + int(parts[1])
        su = out / (obj.stem + ".su")
        stack = None
        if su.is_file():
            for line in su.read_text().splitlines():
                if ":ternq_step\t" in line:
                    stack = int(line.split("\t")[1])
    text = sum(v for k, v in sec.items() if k.startswith(".text"))
    rodata = sum(v for k, v in sec.items() if k.startswith(".rodata"))
    data = sum(v for k, v in sec.items() if k.startswith(".data"))
    bss = sum(v for k, v in sec.items() if k.startswith(".bss"))
    return {"target": target, "text": text, "rodata": rodata, "data": data, "bss": bss, "state": state_bytes,
            "flash": text + rodata, "ram": data + bss + state_bytes, "stack": stack}


_FLOAT_SYMBOL = re.compile(r"^(__aeabi_(f|d|[iul]+2[fd]|[fd]2)|__\w+[sd]f\d?$|__\w+(sf|df)\w*$)")


def float_symbols(src: str | Path, target: str = "m3") -> list[str]:
    """Floating-point helper routines (``__aeabi_f*``, ``__aeabi_d*``, ``__*sf*``, ``__*df*``) the model's object
    needs when compiled with ``-mfloat-abi=soft``: empty for an integer-only model."""
    with tempfile.TemporaryDirectory(prefix="ternq-nm-") as tmp:
        obj = _object(Path(src), target, Path(tmp))
        proc = _check(_run([ARM_NM, "-u", str(obj)]), "arm-none-eabi-nm")
    names = [line.split()[-1] for line in proc.stdout.splitlines() if line.strip()]
    return [n for n in names if _FLOAT_SYMBOL.match(n)]


def callgrind_per_step(src: str | Path, steps: int, timeout: float = 600) -> float:
    """Instructions per call of ``ternq_step`` (valgrind --tool=callgrind, host build of the harness).

    ``steps`` is the number of calls the harness makes (golden sequences x steps).
    """
    if shutil.which("valgrind") is None:
        raise ToolchainError("valgrind not found")
    with tempfile.TemporaryDirectory(prefix="ternq-cg-") as tmp:
        exe = build_host(src, Path(tmp) / "m")
        out = Path(tmp) / "callgrind.out"
        proc = _run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--toggle-collect=ternq_step",
                     str(exe)], timeout)
        if proc.returncode != 0:
            raise ToolchainError(f"the harness under callgrind exited with {proc.returncode}")
        m = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
    if not m:
        raise ToolchainError("no instruction count in the callgrind output")
    return int(m.group(1)) / steps


BENCH_C = """/* time ternq_step over the golden inputs, repeated; print ns per step (CPU time) */
#include <stdio.h>
#include <time.h>
#include "ternq_model.h"
#include "golden.h"
int main(void)
{
    ternq_state s;
    %(ty)s y[TERNQ_N_OUT];
    long n, t, rep, reps = 1;
    double sec = 0.0;
    while (sec < 0.2) {
        clock_t c0 = clock();
        for (rep = 0; rep < reps; ++rep)
            for (n = 0; n < TERNQ_GOLDEN_N; ++n) {
                ternq_reset(&s);
                for (t = 0; t < TERNQ_GOLDEN_T; ++t)
                    ternq_step(&s, &ternq_golden_x[(n * TERNQ_GOLDEN_T + t) * TERNQ_N_IN], y);
            }
        sec = (double)(clock() - c0) / CLOCKS_PER_SEC;
        if (sec < 0.2) reps *= 4;
    }
    printf("%%.6g\\n", 1e9 * sec / ((double)reps * TERNQ_GOLDEN_N * TERNQ_GOLDEN_T));
    return (int)(y[0] != y[0]);
}
"""


def ns_per_step(src: str | Path, integer: bool = False) -> float:
    """Host CPU nanoseconds per ``ternq_step`` (a timing harness over golden.h; noisy on a loaded machine)."""
    src = Path(src)
    with tempfile.TemporaryDirectory(prefix="ternq-ns-") as tmp:
        bench = Path(tmp) / "bench.c"
        bench.write_text(BENCH_C % {"ty": "int32_t" if integer else "float"})
        for name in ("ternq_model.h", "ternq_model.c", "golden.h"):
            shutil.copy(src / name, Path(tmp) / name)
        cc = host_cc()
        if cc is None:
            raise ToolchainError("no host C compiler (cc) found")
        exe = Path(tmp) / "bench"
        _check(_run([cc, *HOST_FLAGS, str(Path(tmp) / "ternq_model.c"), str(bench), "-o", str(exe)]),
               "host compile")
        rc, out = run(exe)
    if rc != 0:
        raise ToolchainError("the timing harness failed")
    return float(out.strip())
