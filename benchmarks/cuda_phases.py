"""Where the GPU training kernel's time goes: the kernel timed with one phase taken out at a time.

    python benchmarks/cuda_phases.py OUT.json [VARIANT | LABEL=PATH ...] [--points H:M:T:THREADS,...]

Each variant is the kernel's source with one phase removed (a text edit, compiled as a module of its own);
the numbers it trains are then wrong, so only the times mean anything. LABEL=PATH times another version of
the kernel's source (an older commit's, say) beside this one. Points: teachers (B=10, T=100,
one input and output) at H=32, one model (latency) and 4096 models (throughput), and the factorial's
teacher batch (10 models, T=50); the median of three calls after one that compiles.
--points replaces those: each H:M:T:THREADS is H units, M models, T steps (the third field is steps,
not epochs) and THREADS a block; a point runs 100 epochs below 1,000 models, else 10 (4 at H >= 64).
With PHASES_LOCK=FILE in the environment, several such processes may run at once: each compiles its kernels
(which launches nothing) and then times its points holding FILE's lock, so the timings do not overlap.
"""

import fcntl
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import cuda_epochs
import numpy as np

from ternq import gpu
from ternq.bench import B_DEFAULT

SOURCE = Path(gpu.__file__).parent / "kernels" / "cuda.py"
NO_FREEZE = ("if not abs(loss) <= _DBL_MAX:", "if False:")
VARIANTS = {
    "base": [],
    "regs64": [("MAX_REGISTERS = 32", "MAX_REGISTERS = 64")],
    "regs128": [("MAX_REGISTERS = 32", "MAX_REGISTERS = 128")],
    "regs40": [("MAX_REGISTERS = 32", "MAX_REGISTERS = 40")],
    "regs48": [("MAX_REGISTERS = 32", "MAX_REGISTERS = 48")],
    "mid64": [("MID_REGISTERS = 128", "MID_REGISTERS = 64")],  # blocks of 257..512 threads at 64 registers
    "no_weight_grads": [("for e in range(tid, nw + h2 + n_out * hidden + n_out + hidden, nt):",
                         "for e in range(tid, 0, nt):")],
    "no_bptt": [("    for t in range(T - 1, -1, -1):", "    for t in range(-1, -1, -1):")],
    "no_forward": [("    for t in range(Tx + free):", "    for t in range(0):")],
    "no_chain": [("            total = _chain(total, sd, 4, cn)", "            total = total")],
    "no_clip": [("            _clip(g, 0, n_theta, clip[m], sd, tid, nt)", "            pass")],
}
POINTS = ((32, 1, 100, 100, 1024), (32, 1, 100, 100, 256), (32, 10, 100, 50, 1024),
          (32, 4096, 10, 100, 256), (32, 4096, 10, 100, 192), (32, 4096, 10, 100, 128),
          (16, 4096, 10, 100, 256), (64, 4096, 4, 100, 256))


def load(path: Path, label: str, edits=()):
    """A version of the kernel's source as a module of its own (uncached), after the text edits (old, new)."""
    src = path.read_text().replace("cache=True", "cache=False")
    for old, new in edits:
        if old not in src:
            raise SystemExit(f"{label}: {old!r} not in the kernel's source")
        src = src.replace(old, new)
    spec = importlib.util.spec_from_loader(f"ternq.kernels._phase_{label}", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "ternq.kernels"
    exec(compile(src, f"<{label}>", "exec"), mod.__dict__)
    return mod


class _Older:
    """An older source's kernels (one per register cap, taking p_shared as an argument) behind today's
    ``train_kernel`` and launch arguments."""

    def __init__(self, K):
        self.K = K
        code = K._train_py.__code__
        self.at = code.co_varnames[:code.co_argcount].index("p_shared")

    def __getattr__(self, name):
        return getattr(self.K, name)

    def train_kernel(self, threads, p_shared):
        kernel = self.K._train_few if threads > self.K.THREADS else self.K._train
        at = self.at

        class Launch:
            def __getitem__(self, cfg):
                return lambda *args: kernel[cfg](*args[:at], p_shared, *args[at:])

            def __getattr__(self, name):
                return getattr(kernel, name)
        return Launch()


def variant(name: str):
    label, _, path = name.partition("=")
    K = load(Path(path or SOURCE), label, VARIANTS.get(label, []) + [NO_FREEZE])
    return K if hasattr(K, "train_kernel") else _Older(K)


def point(K, H, M, E, T, threads, rng) -> dict:
    """cuda_epochs.point with the kernels of module K, and the kernel's registers and local memory a thread."""
    gpu._kernels = lambda: (__import__("numba").cuda, K)
    r = cuda_epochs.point(H, M, E, rng, threads, T)
    kernel = K.train_kernel(threads, K.shared_bytes(B_DEFAULT, H, gpu.n_params(1, H, 1))[1])
    for name in ("get_regs_per_thread", "get_local_mem_per_thread"):
        try:
            v = getattr(kernel, name)()
            r[name[4:]] = sorted(v.values()) if isinstance(v, dict) else v  # a figure per compiled signature
        except Exception as e:  # the simulator has no such figures
            r[name[4:]] = repr(e)[:80]
    return r


def main():
    args = sys.argv[1:]
    points = POINTS
    if "--points" in args:
        at = args.index("--points")
        points = [tuple(int(x) for x in p.split(":")) for p in args[at + 1].split(",")]
        points = [(H, M, 100 if M < 1000 else (4 if H >= 64 else 10), T, nt) for H, M, T, nt in points]
        del args[at:at + 2]
    out = args[0]
    names = args[1:] or list(VARIANTS)
    rng = np.random.default_rng(0)
    rows = []
    lock = os.environ.get("PHASES_LOCK")  # several processes at once: each compiles, then times under the lock
    for name in names:
        t0 = time.perf_counter()
        K = variant(name)
        if lock:
            gpu._kernels = lambda K=K: (__import__("numba").cuda, K)
            for H, M, *_ in points:
                gpu._load(M, B_DEFAULT, 1, H, 1)  # compiles and loads the kernel of the point, launches nothing
            held = open(lock, "w")
            fcntl.flock(held, fcntl.LOCK_EX)
            print(f"# {name}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
        for H, M, E, T, nt in points:
            r = dict(variant=name.partition("=")[0], **point(K, H, M, E, T, nt, rng))
            print(json.dumps(r), flush=True)
            rows.append(r)
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        if lock:
            held.close()  # releases the lock
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
