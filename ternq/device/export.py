"""Writing a C export to a folder, and what it costs on a board."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..deploy import Deployable
from ..model import atomic_write_bytes
from ..rng import stream
from . import c99, toolchain

BUDGET_STEPS = 16  # steps of the default inputs of budget()


class ExportError(ValueError):
    """The export cannot be written where it was asked to go (one line)."""


def check_out_dir(out: str | os.PathLike, force: bool = False, protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """The folder an export may be written to: absent, empty, or (with ``force``) holding anything but the files
    in ``protect`` under an export file's name. ExportError otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder (a C export is a folder)")
    if out.is_dir():
        if any(out.iterdir()) and not force:
            raise ExportError(f"folder {out} is not empty; pass --force to overwrite the export files in it")
        for name in c99.FILES:
            target = out / name
            if any(target.exists() and Path(p).exists() and os.path.samefile(target, p) for p in protect):
                raise ExportError(f"refusing to overwrite {target}: it is the model being exported")
        if not os.access(out, os.W_OK):
            raise ExportError(f"folder {out} is not writable")
    else:
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise ExportError(f"cannot create {out}: folder {parent} does not exist")
    return out


def write_c(dep: Deployable, out: str | os.PathLike, X: np.ndarray, fmt: str = "c", layout: str = "sparse",
            source: str = "a model", units: bool = False) -> dict[str, int]:
    """Write the C library, ``golden.h`` (inputs X (N, T, I), in the series' own units with ``units``) and
    ``main.c`` into ``out`` (created if needed), each file atomically; return {file name: bytes}. Check the
    folder with :func:`check_out_dir` first."""
    files = c99.sources(dep, X, fmt, layout, source, units)
    out = Path(out)
    made = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        for name, text in files.items():
            atomic_write_bytes(out / name, text.encode())
    except OSError:
        if made:  # a folder this call made holds only its own files: leave nothing half-written behind
            for name in files:
                (out / name).unlink(missing_ok=True)
            out.rmdir()
        raise
    return {name: len(text.encode()) for name, text in files.items()}


def board_sizes(out: str | os.PathLike, dep: Deployable, fmt: str, targets: tuple[str, ...] = ("m4",)) -> dict:
    """Flash / RAM / stack of the exported library per board target, for those whose toolchain is present
    (``{target: sizes}``; ``{target: None}`` when absent)."""
    state_bytes = 4 * dep.hidden  # float32 or int32 per hidden unit
    res = {}
    for target in targets:
        if toolchain.missing(target, emulator=False):
            res[target] = None
            continue
        res[target] = toolchain.sizes(out, target, state_bytes)
    return res


def budget(dep: Deployable, board: str = "m4", library: str | None = None, layout: str | None = None,
           X: np.ndarray | None = None) -> dict:
    """What the C library of ``dep`` costs on an emulated board: flash, RAM and instructions per step.

    board : ``m4`` (Cortex-M4F), ``m3`` (Cortex-M3, no FPU) or ``m0`` (Cortex-M0, no FPU, no divide)
    library : ``c`` (float32) or ``c-int`` (integer only); default the float library on the m4 and the integer
        one on the m3 and m0 (a float library there runs on software floating point)
    layout : the library's weight layout; default its first (:func:`ternq.device.c99.layouts`)
    X : inputs (N, T, I) the steps run on; default one sequence of :data:`BUDGET_STEPS` standard-normal
        inputs from the named stream ``budget-inputs`` (seed 0), so the figures are deterministic

    Flash and RAM are :func:`ternq.device.toolchain.sizes` of the library alone (RAM includes the caller's
    ``ternq_state``; ``stack`` is ``ternq_step``'s frame). ``instructions`` is
    :func:`ternq.device.toolchain.count_instructions`, counted by the emulated board itself (``counted_on`` says
    how), and ``instructions_per_step`` that over the ``steps``; ``muls_per_step`` the multiplies (MULS) per step
    and ``cycles_per_step`` the cycles per step a Cortex-M0 would take for those instructions, with its
    single-cycle (``mul1``) or 32-cycle (``mul32``) multiplier (:func:`ternq.device.toolchain.profile`; Arm's
    Cortex-M0 timings whatever the board, a Cortex-M0 figure only on ``m0``). Nothing is cached. ToolchainError when the
    board's tools are missing, ValueError for a library, layout or board this model has not.
    """
    if board not in toolchain.TARGETS:
        raise ValueError(f"board must be one of {', '.join(toolchain.TARGETS)}, not {board!r}")
    library = library or ("c" if board == "m4" else "c-int")
    layout = layout or c99.layouts(dep)[0]
    gone = toolchain.missing(board)
    if gone:
        raise toolchain.ToolchainError(f"{', '.join(gone)} not installed: cannot measure on {board}")
    if X is None:
        X = stream(0, "budget-inputs").standard_normal((1, BUDGET_STEPS, dep.n_in)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="ternq-budget-") as tmp:
        out = Path(tmp) / "c"
        write_c(dep, out, X, library, layout)
        sizes = toolchain.sizes(out, board, 4 * dep.hidden)
        prof = toolchain.count_profile(out, board, integer=library == "c-int")
    count = prof["instructions"]
    steps = int(X.shape[0] * X.shape[1])
    return {"board": board, "library": library, "layout": layout, "weight_format": dep.weight_format,
            "dims": list(dep.dims), "flash": sizes["flash"], "ram": sizes["ram"], "stack": sizes["stack"],
            "instructions_per_step": count / steps, "instructions": count, "steps": steps,
            "muls_per_step": prof["muls"] / steps,
            "cycles_per_step": {k: c / steps for k, c in prof["cycles"].items()},
            "counted_on": f"{toolchain.TARGETS[board].description}, {toolchain.COUNTED_ON}"}
