"""One training launch to profile under Nsight Compute, its machine code tied to the kernel's source lines.

    python benchmarks/cuda_profile.py SRC_OUT.py H:M:T:THREADS:EPOCHS ...

Writes the kernel's source (``ternq/kernels/cuda.py``, compiled with line information and without the disk
cache) to SRC_OUT.py and compiles that file, so a profiler's per-line figures name its lines (the same
numbers as the repository's file). Then, for each point, it trains M teachers of width H (B=10, T steps, one
input and output) for EPOCHS epochs in one launch (``ncu -k regex:_train`` profiles each; a kernel is compiled
before its first launch, so no launch includes the compile).
"""

import importlib.util
import sys
from pathlib import Path

import cuda_epochs
import numpy as np

from ternq import gpu

SOURCE = Path(gpu.__file__).parent / "kernels" / "cuda.py"


def load(out: Path):
    src = SOURCE.read_text()
    old = "cuda.jit(max_registers=registers, cache=True)(g)"
    if old not in src:
        raise SystemExit(f"{old!r} not in the kernel's source")
    out.write_text(src.replace(old, "cuda.jit(max_registers=registers, cache=False, lineinfo=True)(g)"))
    spec = importlib.util.spec_from_loader("ternq.kernels._profiled", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "ternq.kernels"
    exec(compile(out.read_text(), str(out.resolve()), "exec"), mod.__dict__)
    return mod


def main():
    out = Path(sys.argv[1])
    K = load(out)
    gpu._kernels = lambda: (__import__("numba").cuda, K)
    for spec in sys.argv[2:]:
        H, M, T, threads, E = (int(a) for a in spec.split(":"))
        X, Y, th = cuda_epochs._device_problem(M, H, E, np.random.default_rng(0))
        X, Y = np.ascontiguousarray(X[:, :, :, :T]), np.ascontiguousarray(Y[:, :, :, :T])
        cuda_epochs.teach(th, X, Y, H, threads)
        print("done", spec, flush=True)


if __name__ == "__main__":
    main()
