"""Where a GPU launch of students spends its time: the factorial's student launch at one width, timed with
kernel versions side by side.

    python benchmarks/cuda_students.py OUT.json [VARIANT | LABEL=PATH ...] [--seeds N] [--hidden H] [--epochs E]

The launch is the one `ternq factorial --seeds 0:N` makes at width H (default 10 seeds, H=32): every cell's
student of every seed (shaped or not, distilled or not), from untrained teachers (the time does not depend on
what the teacher learned). Each version also trains the distilled half and the plain half alone, so the
distillation's own cost shows. VARIANT names cuda_phases.py's text edits, and these:

- no_teacher: the teacher's forward left out (the trajectory target is then whatever the buffer holds);
- no_traj: the trajectory term's ordered float64 sum left out (its gradient stays).

--epochs shortens every student (for the simulator). The median of three calls after one that compiles.
"""

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import cuda_phases
import numpy as np

from ternq import gpu, multi
from ternq.config import load
from ternq.experiment.plans import plan
from ternq.model import init_teacher
from ternq.rng import stream

cuda_phases.VARIANTS.update({
    "no_teacher": [("            _forward(p, X, base * n_in, T, 0, n_in, hidden, n_out, B, dt, ht, gs, cs, ys, sh, "
                    "tid, nt)", "            pass")],
    "no_traj": [("        straj = _traj_sum(hs, ht, BH, n * hidden, hidden, weights, sd, tid, nt)",
                 "        straj = 0.0")],
})
DEFAULT = Path(__file__).resolve().parent.parent / "configs" / "default.toml"


def students(seeds: int, hidden: int, epochs: int | None):
    """The factorial's student units at ``hidden`` for seeds 0..seeds-1, each with an untrained teacher."""
    s = replace(load(DEFAULT), seeds=tuple(range(seeds)))
    units = [u for u in plan(s).units if u.kind == "student" and u.config.hidden == hidden]
    if epochs is not None:
        units = [replace(u, config=replace(u.config, epochs=epochs, finetune_epochs=0)) for u in units]
    task = units[0].task.make()
    teachers = [init_teacher(hidden, stream(u.seed, "teacher-init", hidden), task.n_in, task.n_out) for u in units]
    return units, teachers, task


def timed(units, teachers, task) -> float:
    """Seconds of one launch of these students (data, copies and the figures' arrays included)."""
    t0 = time.perf_counter()
    multi.train_students(teachers, task, [u.config for u in units], [u.seed for u in units], errors="return",
                         device="cuda")
    return time.perf_counter() - t0


def main():
    args = sys.argv[1:]
    opts = {"--seeds": 10, "--hidden": 32, "--epochs": None}
    for k in list(opts):
        if k in args:
            at = args.index(k)
            opts[k] = int(args[at + 1])
            del args[at:at + 2]
    out, names = args[0], args[1:] or ["base"]
    units, teachers, task = students(opts["--seeds"], opts["--hidden"], opts["--epochs"])
    halves = {"all": range(len(units)),
              "distilled": [k for k, u in enumerate(units) if u.config.distill],
              "plain": [k for k, u in enumerate(units) if not u.config.distill]}
    rows = []
    for name in names:
        K = cuda_phases.variant(name)
        gpu._kernels = lambda K=K: (__import__("numba").cuda, K)
        t0 = time.perf_counter()
        timed(units, teachers, task)  # compiles
        print(f"# {name}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
        for half, ks in halves.items():
            if not ks:
                continue
            us, ts = [units[k] for k in ks], [teachers[k] for k in ks]
            s = statistics.median(timed(us, ts, task) for _ in range(3))
            epochs = us[0].config.total_epochs
            r = {"variant": name.partition("=")[0], "students": half, "models": len(us), "H": opts["--hidden"],
                 "epochs": epochs, "s": s, "ms_per_epoch": 1e3 * s / epochs}
            print(json.dumps(r), flush=True)
            rows.append(r)
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
