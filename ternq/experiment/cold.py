"""A first run (empty Numba cache): compile on both cores.

Numba compiles under one lock per process, so an experiment's first run compiles
the float64 kernels of the gradient check and the float32 training kernels one
after the other, even on two threads. When the float64 kernels are not cached,
:func:`child_gradient_error` runs the gradient check in a child process instead:
it compiles them there (and fills the cache for the next run) while this process
compiles the training kernels. The check is the same code on the same inputs, so
the figure is the same number (passed back exactly, as a hex float).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_SNIPPET = """
import json, sys
from ternq.gradcheck import check_all
widths, seed, n_in, n_out = json.loads(sys.argv[1])
print(float(max(r.max_rel_err for r in check_all(tuple(widths), seed, n_in, n_out))).hex())
"""


def float64_cached() -> bool:
    """Whether Numba's cache holds a float64 build of the cell's gradient kernel (the gradient check's)."""
    from numba import types

    from ..kernels.cell import loss_grad

    if any(sig[0] == types.float64[::1] for sig in loss_grad.overloads):
        return True
    try:
        index = loss_grad._cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - a private API; not knowing means "cached" (compute here, as before)
        return True
    return any(getattr(key[0][0], "dtype", None) == types.float64 for key in index)


def child_gradient_error(widths, seed: int, n_in: int, n_out: int) -> float | None:
    """:func:`ternq.gradcheck.check_all`'s largest relative error computed in a child process, when the
    gradient check's kernels are not compiled yet; ``None`` when they are, or when the child fails
    (the caller then computes it in this process)."""
    if float64_cached():
        return None
    import ternq

    root = str(Path(ternq.__file__).resolve().parent.parent)  # the child imports this ternq
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    args = json.dumps([[int(w) for w in widths], int(seed), int(n_in), int(n_out)])
    try:
        r = subprocess.run([sys.executable, "-c", _SNIPPET, args], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        return float.fromhex(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    except (OSError, ValueError, IndexError):
        return None
