"""The training kernel's machine code for an H100/H200 (sm_90), without a GPU: registers, spills, and the
instruction mix of every innermost loop.

    python benchmarks/cuda_sass.py [SOURCE.py ...] [--regs N] [--threads N]

SOURCE: versions of ``ternq/kernels/cuda.py`` to compare (``git show REV:ternq/kernels/cuda.py > FILE``)
[this checkout's]. Needs numba-cuda with NVIDIA's compiler libraries (``pip install 'numba-cuda[cu12]'``
brings NVVM and ptxas) and ``nvdisasm`` (``pip install nvidia-cuda-nvdisasm``). The kernel is compiled for
the argument types of a teacher launch (H=32, B=10, T=100), as ``gpu.train_epochs`` makes them.

A loop's row: its SASS instructions (n), the float32 (F) and float64 (D) arithmetic among them, and its
loads and stores: LDS/STS shared, LDG/STG global, LD generic (shared or global), LDL/STL local (spills and
local arrays). The dot products' loops are the ones whose F is a multiple of 8 with LDS; n/F is the
overhead per flop.
"""

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import types as pytypes
from pathlib import Path

import cuda_epochs
import numba
import numba.cuda.api as cuda_api
import numba.cuda.dispatcher as cuda_dispatcher
import numpy as np
from cuda_phases import load
from numba import cuda

from ternq import gpu

SOURCE = Path(gpu.__file__).parent / "kernels" / "cuda.py"
SM90 = pytypes.SimpleNamespace(compute_capability=(9, 0))
OPS = ("LDS", "STS", "LDG", "STG", "LD", "ST", "LDL", "STL")


def tool(name: str) -> str:
    """An NVIDIA tool from the pip packages beside numba-cuda, else the PATH's."""
    for p in Path(sys.prefix).glob(f"lib/python3*/site-packages/nvidia/**/bin/{name}"):
        return str(p)
    return name


def launch_types(K, threads: int) -> tuple:
    """numba types of the arguments gpu.train_epochs passes to the kernel for a teacher launch."""
    seen = {}

    class Launch:
        def __getitem__(self, cfg):
            def call(*args):
                seen["args"] = args
                raise StopIteration
            return call

    fake_cuda = pytypes.SimpleNamespace(stream=lambda: None, to_device=lambda a, stream=None: a,
                                        device_array=lambda shape, dtype, stream=None: np.zeros(shape, dtype),
                                        defer_cleanup=contextlib.nullcontext)
    fake = pytypes.SimpleNamespace(**{k: getattr(K, k) for k in dir(K) if not k.startswith("__")})
    fake.train_kernel = lambda threads, p_shared: Launch()
    fake._train = fake._train_few = Launch()  # an older source's kernels
    kernels, gpu._kernels = gpu._kernels, lambda: (fake_cuda, fake)
    try:
        M, H, E = 4, 32, 2
        X, Y, th = cuda_epochs._device_problem(M, H, E, np.random.default_rng(0))
        cuda_epochs.teach(th, X, Y, H, threads)
    except StopIteration:
        pass
    finally:
        gpu._kernels = kernels
    return tuple(numba.typeof(a) for a in seen["args"])


def sass(path: Path, regs: int, threads: int, work: Path) -> tuple[str, str]:
    """(ptxas' report, the SASS listing) of the training kernel in ``path``."""
    cuda_dispatcher.get_current_device = cuda_api.get_current_device = lambda: SM90  # no GPU needed
    K = load(path, f"sass_{abs(hash(str(path)))}")
    f = K.variant(K._train_py, regs, True) if hasattr(K, "variant") else K._train_py  # parameters in shared memory
    ptx, _ = cuda.compile_ptx(f, launch_types(K, threads), cc=(9, 0))
    (work / "k.ptx").write_text(ptx)
    r = subprocess.run([tool("ptxas"), "-arch=sm_90", "-v", f"--maxrregcount={regs}", "-o", str(work / "k.cubin"),
                        str(work / "k.ptx")], capture_output=True, text=True, check=True)
    report = " ".join(line.split(":", 1)[-1].strip() for line in (r.stdout + r.stderr).splitlines()
                      if "registers" in line or "spill" in line)
    d = subprocess.run([tool("nvdisasm"), "-c", str(work / "k.cubin")], capture_output=True, text=True, check=True)
    return report, d.stdout


def loops(listing: str) -> list[dict]:
    """The innermost loops (a backward branch's span that holds no other) and their instruction mix."""
    labels, ins = {}, []
    for line in listing.splitlines():
        m = re.match(r"\s*(\.L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(ins)
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if m:
            ins.append(re.sub(r"^@!?U?P\w+\s+", "", m.group(1).strip()))
    spans = set()
    for i, text in enumerate(ins):
        m = re.search(r"\bBRA\b.*?(\.L_x_\d+)", text)
        if m and labels.get(m.group(1), len(ins)) <= i:
            spans.add((labels[m.group(1)], i))
    inner = sorted(s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans))
    rows = []
    for a, b in inner:
        ops = [t.split()[0].split(".")[0] for t in ins[a:b + 1]]
        row = {"start": a, "n": len(ops), "F": sum(o in ("FADD", "FMUL", "FFMA") for o in ops),
               "D": sum(o in ("DADD", "DMUL", "DFMA") for o in ops)}
        row.update({k: ops.count(k) for k in OPS})
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="*", type=Path, default=[SOURCE])
    ap.add_argument("--regs", type=int, default=64, help="register cap (the kernel's: 32 at 256 threads, "
                                                         "64 at 1024)")
    ap.add_argument("--threads", type=int, default=1024)
    ap.add_argument("--min-flops", type=int, default=8, help="list loops with at least this many F + D")
    a = ap.parse_args()
    for path in a.sources:
        with tempfile.TemporaryDirectory() as tmp:
            report, listing = sass(path, a.regs, a.threads, Path(tmp))
        rows = loops(listing)
        total = len(re.findall(r"/\*[0-9a-f]{4,}\*/\s+", listing))
        print(f"# {path}: {total} instructions; {report}")
        print("start     n    F    D  " + "  ".join(f"{k:>3}" for k in OPS) + "   n/(F+D)")
        for r in rows:
            if r["F"] + r["D"] >= a.min_flops:
                print(f"{r['start']:5d} {r['n']:5d} {r['F']:4d} {r['D']:4d}  " + "  ".join(f"{r[k]:3d}" for k in OPS)
                      + f"   {r['n'] / (r['F'] + r['D']):.1f}")


if __name__ == "__main__":
    main()
