"""A whole experiment: settings -> plan -> executor (+ the seeds' checks beside it) -> summary.

The gradient check (:func:`ternq.gradcheck.check_all`, the seeds' precondition)
and a rerun of one training (bit-identity) run on a side thread beside the
trainings; no result is reported unless the check passes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ..gradcheck import check_all_beside
from .execute import Cancelled, OnDone, OnStart, backend_for, cancellable, execute
from .plans import Plan, plan
from .summary import CHECK_TOLERANCE, summarize
from .units import Result, Unit, run_unit, versions


class GradientCheckError(RuntimeError):
    """The analytical gradients disagree with finite differences: no result can be trusted."""


def gradient_error(settings, widths=None) -> float:
    """The finite-difference check at the experiment's widths; raise :class:`GradientCheckError` if it fails."""
    task = settings_task(settings)
    widths = sorted(set(widths or settings.widths))
    err = max(r.max_rel_err for r in check_all_beside(tuple(widths), settings.seeds[0], task.n_in, task.n_out))
    if not err < CHECK_TOLERANCE:  # the seeds: abort before any training result
        raise GradientCheckError(f"gradient check failed: max relative error {err:.2e} > {CHECK_TOLERANCE:g}; "
                                 "see 'ternq gradcheck'")
    return err


def settings_task(settings):
    from .units import TaskSpec

    return TaskSpec(settings.task, settings.data).make()


def memory_needed(p: Plan, workers: int = 1) -> int:
    """Bytes the plan's trainings need at once on this machine: the ``workers`` largest side by side, and the
    reproducibility rerun beside them."""
    from ..train import training_bytes

    task = settings_task(p.settings)
    counts = Counter(u.config for u in p.units if u.kind != "cs")
    sizes = sorted((training_bytes(task, c) for c, n in counts.items() for _ in range(min(n, workers))),
                   reverse=True)
    return sum(sizes[:max(1, workers)]) + training_bytes(task, rerun_unit(p).config)


def rerun_unit(p: Plan) -> Unit:
    """The training rerun for the reproducibility check: the first seed's first teacher."""
    return p.teachers[p.runs[0].index, p.settings.seeds[0]]


def plan_widths(p: Plan) -> list[int]:
    return sorted({r.student.hidden for r in p.runs})


def document(p: Plan, results: dict[str, Result], grad_err: float | None = None,
             reproducible: bool | None = None, response: str = "eval_mse", forecast=None) -> dict:
    """The results document (without timing): what was run, on what, with which code, and the summary."""
    doc = summarize(p, results, grad_err, reproducible, response, forecast)
    return {"ternq": "factorial", "task": settings_task(p.settings).describe(), "settings": p.settings.to_dict(),
            "versions": versions(), **doc}


def run_experiment(settings, workers: int = 2, client=None, check_gradients: bool = True,
                   check_reproducible: bool = True, on_start: OnStart | None = None,
                   on_done: OnDone | None = None, done: dict[str, Result] | None = None,
                   response: str = "eval_mse", forecast=None) -> tuple[dict, Plan, dict[str, Result]]:
    """Run the experiment of ``settings``; return its results document, its plan and every result by digest.

    Parameters
    ----------
    settings : ExperimentSettings
        Seeds, widths, task, the training settings and the design (see :mod:`ternq.config`).
    workers : int
        Local trainings at once (threads; results do not depend on it).
    client : distributed.Client, optional
        Run the units on this Dask cluster instead.
    check_gradients : bool
        Run the finite-difference check at every width first, as the seeds require.
    check_reproducible : bool
        Rerun the first seed's first teacher and compare its weights bit for bit.
    on_start, on_done, done
        Passed to :func:`ternq.experiment.execute.execute` (progress display, saving, resuming).
    response : str
        What the effects are computed on (:data:`ternq.experiment.summary.RESPONSES`, or ``rollout:K``).
    forecast : ForecastSettings, optional
        Horizon, warm-up and period of the forecast figures (:mod:`ternq.experiment.forecasting`).
    """
    t0 = time.perf_counter()
    p = plan(settings)
    timing = {}

    stop = threading.Event()

    def checks():
        grad_err = gradient_error(settings, plan_widths(p)) if check_gradients else None
        timing["gradcheck_s"] = time.perf_counter() - t0
        rerun = run_unit(rerun_unit(p), {}, cancellable(stop))[1] if check_reproducible and not stop.is_set() else None
        return grad_err, rerun

    backend = backend_for(workers, client)
    try:
        with ThreadPoolExecutor(max_workers=1) as side:
            pending_checks = side.submit(checks)
            try:
                results = execute(p.units, backend, done=done, on_start=on_start, on_done=on_done)
            except BaseException:
                stop.set()  # the rerun ends at its next progress report
                raise
            finally:
                try:
                    grad_err, rerun = pending_checks.result()  # a failed check wins over any training error
                except Cancelled:
                    pass
    finally:
        backend.close()
    t_train = time.perf_counter() - t0
    reproducible = None
    if rerun is not None:
        reproducible = rerun.theta.tobytes() == results[rerun_unit(p).digest][1].theta.tobytes()
    doc = document(p, results, grad_err, reproducible, response, forecast)
    doc["timing"] = {"gradcheck_s": timing.get("gradcheck_s", 0.0), "training_s": t_train,
                     "total_s": time.perf_counter() - t0,
                     "workers": f"{backend.workers} Dask" if client is not None else workers}
    return doc, p, results
