"""How much memory a training needs, and how much the machine has: so a run too big is refused up front."""

from __future__ import annotations

import os
from pathlib import Path

F32 = 4
F64 = 8
DATA_TEMP = 32  # bytes per sequence step of float64 temporaries while a task makes its sequences
DATA_PER_CHANNEL = 4  # bytes per sequence step and channel: float32 windows, then X and Y


def training_memory(epochs: int, batch: int, steps: int, hidden: int, n_in: int = 1, n_out: int = 1,
                    chunk: int | None = None, distill: bool = True) -> int:
    """Bytes one training of these sizes allocates at its peak: an upper estimate.

    Counts the task's draws for every epoch (one float64 each); the peak while the
    sequences of ``chunk`` epochs are made (all epochs when ``chunk`` is None, as
    :meth:`ternq.tasks.Task.batches` makes them), a bound that holds for every task
    and is within 4x of the measured peak (tests/test_tasks.py); the training loop's workspaces
    (forward states kept for backpropagation through time, the teacher's in lockstep
    when ``distill``), parameters with their gradient and Adam moments, and the
    per-epoch history.

    Parameters
    ----------
    epochs, batch, steps : int
        Epochs, sequences per epoch, steps per sequence.
    hidden, n_in, n_out : int
        The cell's width and its input and output channels.
    chunk : int, optional
        Epochs of sequences that exist at once (see :meth:`ternq.tasks.Task.batch_chunks`).
    distill : bool
        Whether a teacher runs beside the student (its states are kept too).

    Returns
    -------
    int
        Bytes.
    """
    for name, v in (("epochs", epochs), ("batch", batch), ("steps", steps), ("hidden", hidden), ("n_in", n_in),
                    ("n_out", n_out)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v}")
    E, B, T, H, I, O = (int(v) for v in (epochs, batch, steps, hidden, n_in, n_out))
    held = E if chunk is None else min(E, int(chunk))
    draws = E * B * F64
    # making a chunk's sequences: float64 temporaries (sines, window indices), then float32 windows, X and Y
    data = held * B * (T + 1) * (DATA_TEMP + DATA_PER_CHANNEL * (I + O))
    states = ((T + 1) * B * H + 2 * T * B * H + T * B * O) * F32  # hs, gs, cs, ys
    if distill:
        states *= 2
    n_theta = 2 * H * (I + H) + 3 * H + O * H + O + (2 * H + O)  # the cell, then the student's scales
    params = 6 * n_theta * F32 + (I + H) * 2 * H * F32  # theta, p, g_eff, g, Adam m and v; W transposed
    history = 2 * E * F64  # loss and MSE per epoch
    return int(draws + data + states + params + history)


def available_memory() -> int | None:
    """Bytes the machine can give a new allocation now: ``MemAvailable`` from /proc/meminfo.

    Falls back to free physical pages (``os.sysconf``) where /proc is missing, and
    returns None when neither is known (the caller should then not refuse).
    """
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                kib = line.split()[1]
                return int(kib) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


class MemoryShortError(ValueError):
    """A run would need more memory than the machine has."""


def check_fits(need: int, what: str = "this run", share: float = 0.8) -> None:
    """Raise :class:`MemoryShortError` (one line) when ``need`` bytes exceed ``share`` of the available memory."""
    have = available_memory()
    if have is not None and need > share * have:
        raise MemoryShortError(f"{what} needs about {need / 2**30:.2f} GiB of memory; this machine has "
                               f"{have / 2**30:.2f} GiB available: use fewer epochs, a smaller batch or width, "
                               "or fewer workers")
