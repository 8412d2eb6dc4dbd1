"""Teacher training throughput on the GPU and on one CPU core: model-epochs/s and GFLOP/s.

    python benchmarks/cuda_bench.py --device cuda --out benchmarks/cuda_gpu.json   # on a GPU machine
    python benchmarks/cuda_bench.py --device cpu --out benchmarks/cuda_cpu.json    # one core, batched kernel
    python benchmarks/cuda_bench.py --report                                       # benchmarks/cuda.md from both

Each point trains M teachers (reference size: B=10 sequences of T=100 steps, one input and output,
cosine learning rate, clipping) for E epochs in one call, E chosen so that the call takes about half a
second; the time is the whole call (copies to and from the GPU included), the median of three.
Flops per model-epoch are ``ternq.bench.flops_epoch``. ``single`` is one teacher of 2000 epochs.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from ternq.bench import flops_epoch
from ternq.kernels.cell import n_params

HERE = Path(__file__).parent
HIDDEN = (16, 32, 64)
GPU_MODELS = (1, 16, 256, 1024, 4096, 16384)
CPU_MODELS = (4, 16, 64)
B, T, DT = 10, 100, 0.1
TARGET_S = 0.5


def _problem(M, H, E, rng):
    t = np.arange(T + 1) * DT
    ph = rng.uniform(0, 2 * np.pi, (1, E, B, 1))
    s = np.sin(t + ph)
    X = np.ascontiguousarray(s[..., :-1, None], np.float32)
    Y = np.ascontiguousarray(s[..., 1:, None], np.float32)
    th = rng.normal(0, 0.3, (M, n_params(1, H, 1))).astype(np.float32)
    otau = 2 * H * (1 + H) + 2 * H
    th[:, otau:otau + H] = 1.0
    return X, Y, th


def _run_gpu(M, H, E, rng):
    from ternq import gpu

    X, Y, th = _problem(M, H, E, rng)
    z = np.zeros_like(th)
    t0 = time.perf_counter()
    gpu.train_epochs(th, z, z.copy(), X, Y, np.zeros(M, np.int64), 0, E, E, 1, H, 1, DT, False, lr=0.01,
                     lr_min=0.0, lr_kind=1, clip=1.0, losses=np.zeros((M, E)), mses=np.zeros((M, E)),
                     bad=np.full(M, -1, np.int64))
    return time.perf_counter() - t0


def _run_cpu(M, H, E, rng):
    from ternq.kernels import multi as KM

    X, Y, th = _problem(M, H, E, rng)
    th = np.ascontiguousarray(th.T)
    fset = np.zeros((KM.N_FSET, M))
    iset = np.zeros((KM.N_ISET, M), np.int64)
    fset[KM.F_LR], fset[KM.F_CLIP], iset[KM.I_LR_KIND] = 0.01, 1.0, 1
    t0 = time.perf_counter()
    KM.train_epochs(th, np.zeros_like(th), np.zeros_like(th), X, Y, np.zeros(M, np.int64), 0, E, E, 1, H, 1, DT,
                    False, fset, iset, np.zeros((1, M), np.float32), np.zeros((E, M)), np.zeros((E, M)),
                    np.full(M, -1, np.int64))
    return time.perf_counter() - t0


def _point(run, M, H, rng, epochs=None):
    if epochs is None:
        per = run(M, H, 2, rng) / 2
        epochs = int(min(400, max(2, TARGET_S / per)))
    times = [run(M, H, epochs, rng) for _ in range(3)]
    s = statistics.median(times)
    return {"H": H, "models": M, "epochs": epochs, "seconds": s, "model_epochs_per_s": M * epochs / s,
            "gflops": flops_epoch(H) * M * epochs / s / 1e9}


def measure(device):
    rng = np.random.default_rng(0)
    run = _run_gpu if device == "cuda" else _run_cpu
    run(4, 16, 2, rng)  # compile
    points = []
    for H in HIDDEN:
        for M in GPU_MODELS if device == "cuda" else CPU_MODELS:
            points.append(_point(run, M, H, rng))
            print(json.dumps(points[-1]), flush=True)
    single = _point(run, 1 if device == "cuda" else 4, 32, rng, epochs=2000)
    if device != "cuda":  # the batched CPU kernel runs a multiple of 4 models: the time of one of them
        single = dict(single, models=1, seconds=single["seconds"] / 4, note="4 models in one call, time / 4")
    print(json.dumps(single), flush=True)
    doc = {"device": device, "machine": platform.node(), "points": points, "single": single}
    if device == "cuda":
        from numba import cuda

        doc["gpu"] = cuda.get_current_device().name.decode() if isinstance(
            cuda.get_current_device().name, bytes) else str(cuda.get_current_device().name)
    return doc


def report():
    docs = {d: json.loads((HERE / f"cuda_{d}.json").read_text()) for d in ("gpu", "cpu")
            if (HERE / f"cuda_{d}.json").exists()}
    lines = ["# Teacher training throughput: GPU against one CPU core", "",
             "`python benchmarks/cuda_bench.py --device cuda|cpu --out benchmarks/cuda_gpu.json|cuda_cpu.json`, then "
             "`--report`. Reference size (B=10, T=100, I=O=1); medians of 3 calls; a call's time includes the "
             "copies to and from the GPU.", ""]
    for name, doc in docs.items():
        title = f"GPU: {doc['gpu']}" if name == "gpu" else "CPU: one core of the same machine, the batched kernel"
        lines += [f"## {title}", "",
                  "| H | models | epochs | s | model-epochs/s | GFLOP/s |", "|---|---|---|---|---|---|"]
        for p in [*doc["points"], doc["single"]]:
            lines.append(f"| {p['H']} | {p['models']} | {p['epochs']} | {p['seconds']:.3f} | "
                         f"{p['model_epochs_per_s']:,.0f} | {p['gflops']:.1f} |")
        lines += ["", f"Last row: one teacher of 2000 epochs ({doc['single'].get('note', 'one model')}).", ""]
    if len(docs) == 2:
        g = {(p["H"], p["models"]): p for p in docs["gpu"]["points"]}
        c = {(p["H"], p["models"]): p for p in docs["cpu"]["points"]}
        best_cpu = max(p["model_epochs_per_s"] for p in docs["cpu"]["points"] if p["H"] == 32)
        lines += ["## Against the targets", "",
                  f"- H=32, 4096 models: {g[32, 4096]['model_epochs_per_s']:,.0f} model-epochs/s (target 250,000): "
                  f"{g[32, 4096]['model_epochs_per_s'] / best_cpu:.0f}x one core's best batched figure "
                  f"({best_cpu:,.0f}, {max((k for k in c if k[0] == 32), key=lambda k: c[k]['model_epochs_per_s'])[1]}"
                  " models).",
                  f"- One teacher of 2000 epochs: {docs['gpu']['single']['seconds']:.2f} s on the GPU against "
                  f"{docs['cpu']['single']['seconds']:.2f} s on one core (target: no slower).", ""]
    (HERE / "cuda.md").write_text("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"))
    ap.add_argument("--out")
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if a.report:
        report()
        return
    doc = measure(a.device)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
