"""When each unit of a whole command starts and ends, and (with --calls) each GPU call and data build inside it.

    python benchmarks/factorial_timeline.py OUT.json [--few-models N] [--calls] -- factorial --device cuda ...

Runs the ternq command line in this process with the engine's ``run`` wrapped: OUT.json gets the seconds since
the process started of the imports, the run's start and end, every unit's start and end (a GPU launch's units
start and end together), the run's timing, and with --calls every call of ``ternq.gpu.train_batch``,
``train_epochs`` and ``rollout``, ``ternq.multi._data`` and ``_results`` and ``ternq.experiment.units.run_batch``
as (name, thread, models, start, end). --few-models sets ``ternq.kernels.cuda.FEW_MODELS`` (launches of fewer
models get ``few_threads(H)``-thread blocks, 512 or 1024, rather than 256) for this process only.
"""

import json
import sys
import threading
import time

T0 = time.perf_counter()

import ternq.cli.experiment as cli_experiment  # noqa: E402
from ternq import cli  # noqa: E402
from ternq.experiment import run as engine  # noqa: E402


def main() -> None:
    at = sys.argv.index("--")
    out, opts, args = sys.argv[1], sys.argv[2:at], sys.argv[at + 1:]
    rec: dict = {"imports": time.perf_counter() - T0, "units": {}, "calls": []}
    if "--few-models" in opts:
        from ternq.kernels import cuda as K
        K.FEW_MODELS = int(opts[opts.index("--few-models") + 1])
    if "--calls" in opts:
        import ternq.experiment.units as units
        import ternq.gpu as gpu
        import ternq.multi as multi

        def wrap(mod, name):
            f = getattr(mod, name)

            def timed(*a, **k):
                t = time.perf_counter() - T0
                try:
                    return f(*a, **k)
                finally:
                    m = len(a[0]) if name == "run_batch" else next(
                        (x.shape[0] for x in a if getattr(x, "ndim", 0) >= 1), None)
                    rec["calls"].append((name, threading.get_ident() % 100000, m, round(t, 3),
                                         round(time.perf_counter() - T0, 3)))
            setattr(mod, name, timed)
        for mod, name in ((gpu, "train_batch"), (gpu, "train_epochs"), (gpu, "rollout"), (multi, "_data"),
                          (multi, "_results"), (units, "run_batch")):
            wrap(mod, name)
    run = engine.run

    def timed_run(*a, on_start=None, on_done=None, **k):
        rec["run_start"] = time.perf_counter() - T0

        def start(unit, *x, **y):
            rec["units"].setdefault(unit.key, {})["start"] = time.perf_counter() - T0
            return on_start(unit, *x, **y) if on_start else None

        def done(unit, fig):
            rec["units"].setdefault(unit.key, {})["end"] = time.perf_counter() - T0
            if on_done:
                on_done(unit, fig)
        outcome = run(*a, on_start=start, on_done=done, **k)
        rec["run_end"] = time.perf_counter() - T0
        rec["timing"] = outcome.timing
        return outcome
    engine.run = cli_experiment.run = timed_run
    try:
        cli.main(args)
    finally:
        rec["exit"] = time.perf_counter() - T0
        with open(out, "w") as f:
            json.dump(rec, f, indent=1, default=str)


if __name__ == "__main__":
    main()
