"""Teacher training throughput on the GPU and on one CPU core: model-epochs/s and GFLOP/s.

    python benchmarks/cuda_bench.py --device cuda --out benchmarks/cuda_gpu.json   # on a GPU machine
    python benchmarks/cuda_bench.py --device cpu --out benchmarks/cuda_cpu.json    # one core, batched kernel
    python benchmarks/cuda_bench.py --report                                       # benchmarks/cuda.md from both

The measurement is ``ternq bench --device`` (:func:`ternq.bench.device_run`): each point trains M teachers
(reference size: B=10 sequences of T=100 steps, one input and output, cosine learning rate, clipping) for
E epochs in one call, E chosen so that the call takes about half a second; the time is the whole call
(copies to and from the GPU included), the median of three. ``single`` is one teacher of 2000 epochs.
"""

import argparse
import json
import platform
from pathlib import Path

from ternq.bench import device_run

HERE = Path(__file__).parent


def measure(device):
    """``ternq bench --device``'s figures (:func:`ternq.bench.device_run`), with the machine's names."""
    doc = device_run(device, progress=lambda s: print(s, flush=True))
    doc["machine"] = platform.node()
    if device == "cuda":
        from numba import cuda

        name = cuda.get_current_device().name
        doc["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
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
