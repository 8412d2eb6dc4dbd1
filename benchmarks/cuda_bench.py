"""Teacher training throughput on the GPU beside one CPU core: model-epochs/s and GFLOP/s.

    python -m ternq bench --device cuda --budget 0.1 --json > benchmarks/cuda_bench.json   # on a GPU machine
    python benchmarks/cuda_bench.py                                                        # its tables, markdown

The measurement is ``ternq bench --device cuda`` (:func:`ternq.bench.device_run`, the GPU and then one
CPU core's batched kernel in the same process): each point trains M teachers (reference size: B=10
sequences of T=100 steps, one input and output, cosine learning rate, clipping) for E epochs in one
call, E chosen so that the call takes about 2 x budget seconds; the time is the whole call (copies to
and from the GPU included), the median of three. The last row of each table is one teacher of 2000
epochs (on the CPU: four in one call, the time divided by four).
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent


def tables(doc: dict) -> str:
    lines = []
    for name, d in doc.items():
        lines += [f"### {'GPU' if name == 'cuda' else 'CPU: one core, the batched kernel'}", "",
                  "| H | models | epochs | s | model-epochs/s | GFLOP/s |", "|---|---|---|---|---|---|"]
        for p in [*d["points"], d["single"]]:
            lines.append(f"| {p['H']} | {p['models']} | {p['epochs']} | {p['seconds']:.3f} | "
                         f"{p['model_epochs_per_s']:,.0f} | {p['gflops']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "cuda_bench.json"
    print(tables(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
