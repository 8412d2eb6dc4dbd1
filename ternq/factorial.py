"""The 2x2x2 factorial: units of work, their execution, and the summary.

Every training is a :class:`Unit` (a teacher, one of the 8 student
configurations, or a coordinate search) that depends only on its seed, the
settings and the models of the units it needs (a student needs its teacher).
Units draw their randomness from named streams (:mod:`ternq.rng`), so the
results do not depend on the order they run in: serially, on two threads
(the kernels release the GIL), or on a Dask cluster (:mod:`ternq.sweep`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import stats
from .config import ExperimentSettings
from .jsonsafe import clean  # noqa: F401  (re-exported: callers use factorial.clean)
from .model import Model
from .rng import stream
from .search import coordinate_search, quantize_teacher
from .tasks import Task, from_file, get_task
from .train import StudentConfig, TeacherConfig, evaluate, train_student, train_teacher


class GradientCheckError(RuntimeError):
    """The analytical gradients disagree with finite differences: no result can be trusted."""


# the seeds' numbering: config = 1 + shaped + 2 distill + 4 wide
CONFIGS = [(k + 1, bool(k & 1), bool(k & 2), bool(k & 4)) for k in range(8)]


@dataclass(frozen=True)
class Unit:
    """One independent piece of work.

    kind is "teacher", "student" or "cs"; for "cs", ``source`` is "teacher"
    (post-training quantization of the teacher, then search) or "config1"
    (search starting from the trained config-1 student).
    """

    kind: str
    seed: int
    hidden: int
    shaped: bool = False
    distill: bool = False
    source: str = ""

    @property
    def key(self) -> str:
        if self.kind == "teacher":
            return f"s{self.seed}/teacher-h{self.hidden}"
        if self.kind == "student":
            return f"s{self.seed}/student-{'S' if self.shaped else 's'}{'D' if self.distill else 'd'}-h{self.hidden}"
        return f"s{self.seed}/cs-{self.source}-h{self.hidden}"

    def deps(self) -> list[Unit]:
        if self.kind == "teacher":
            return []
        if self.kind == "cs" and self.source == "config1":
            return [Unit("student", self.seed, self.hidden)]
        return [Unit("teacher", self.seed, self.hidden)]


def plan(settings: ExperimentSettings) -> list[Unit]:
    """Every unit of the experiment, dependencies before dependants."""
    lo, hi = settings.widths
    units = []
    for seed in settings.seeds:
        units += [Unit("teacher", seed, w) for w in (lo, hi)]
        units += [Unit("student", seed, hi if wide else lo, shaped, distill) for _, shaped, distill, wide in CONFIGS]
        units += [Unit("cs", seed, lo, source="teacher"), Unit("cs", seed, lo, source="config1")]
    return units


def make_task(settings: ExperimentSettings) -> Task:
    """The task of the settings: the series file ``data`` if set, else the named ``task``."""
    if settings.data:
        return from_file(settings.data)
    return get_task(settings.task)


def teacher_config(settings: ExperimentSettings, hidden: int) -> TeacherConfig:
    return TeacherConfig(hidden=hidden, **asdict(settings.teacher))


def student_config(settings: ExperimentSettings, hidden: int, shaped: bool, distill: bool) -> StudentConfig:
    return StudentConfig(hidden=hidden, shaped=shaped, distill=distill, **asdict(settings.student))


def search_set(task: Task, settings: ExperimentSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The coordinate search's objective: fixed training-distribution sequences (not the held-out set)."""
    n, steps = settings.cs.sequences, settings.cs.steps
    saved = task.steps
    try:
        task.steps = steps
        X, Y = task.batches(stream(seed, "cs-data"), 1, n)
    finally:
        task.steps = saved
    return X[0], Y[0]


def run_unit(unit: Unit, settings: ExperimentSettings, deps: dict[str, Model],
             progress: Callable[[int, int, float], None] | None = None) -> tuple[dict, Model]:
    """Run one unit; return its figures (JSON-able) and its model."""
    task = make_task(settings)
    t0 = time.perf_counter()
    fig: dict = {"key": unit.key, "kind": unit.kind, "seed": unit.seed, "hidden": unit.hidden}
    if unit.kind == "teacher":
        model, hist = train_teacher(task, teacher_config(settings, unit.hidden), unit.seed, progress)
        fig["train_mse"] = float(hist.mse[-1])
    elif unit.kind == "student":
        teacher = deps[Unit("teacher", unit.seed, unit.hidden).key]
        cfg = student_config(settings, unit.hidden, unit.shaped, unit.distill)
        model, hist = train_student(teacher, task, cfg, unit.seed, progress)
        fig.update(train_mse=float(hist.mse[-1]), shaped=unit.shaped, distill=unit.distill,
                   config=1 + unit.shaped + 2 * unit.distill + 4 * (unit.hidden == settings.widths[1]),
                   zero_share=model.zero_share())
    else:
        start = (quantize_teacher(deps[unit.deps()[0].key]) if unit.source == "teacher"
                 else deps[unit.deps()[0].key])
        X, Y = search_set(task, settings, unit.seed)
        fig["start_eval_mse"] = evaluate(start, task)["eval_mse"]
        model, res = coordinate_search(start, X, Y, settings.cs.sweeps)
        fig.update(source=unit.source, train_mse=res.mse_history[-1], search_mse=res.mse_history,
                   flips=res.flips, sweeps=res.sweeps, zero_share=model.zero_share())
        if progress is not None:
            progress(1, 1, res.mse_history[-1])
    if unit.kind != "cs":  # the learning curve, thinned to at most ~200 points, kept with the model
        step = max(1, len(hist.loss) // 200)
        model.meta["curve"] = {"epoch": list(range(0, len(hist.loss), step)), "loss": hist.loss[::step].tolist()}
    fig.update(evaluate(model, task))
    fig["seconds"] = time.perf_counter() - t0
    model.meta.update(unit=unit.key, figures=dict(fig))
    return fig, model


def execute(units: Iterable[Unit], settings: ExperimentSettings, workers: int = 1,
            done: dict[str, tuple[dict, Model]] | None = None,
            on_start: Callable[[Unit], Callable | None] | None = None,
            on_done: Callable[[Unit, dict, Model], None] | None = None) -> dict[str, tuple[dict, Model]]:
    """Run ``units`` on ``workers`` threads, each as soon as its dependencies are done.

    ``done`` holds results already available (they are not rerun). ``on_start``
    may return a progress callback for the unit; ``on_done`` sees each result.
    Results are the same whatever ``workers`` is: units share no state.
    """
    results: dict[str, tuple[dict, Model]] = dict(done or {})
    pending = [u for u in units if u.key not in results]
    if workers <= 1:
        for u in pending:
            _finish(u, _call(u, settings, results, on_start), results, on_done)
        return results
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running = {}
        while pending or running:
            ready = sorted((u for u in pending if all(d.key in results for d in u.deps())),
                           key=lambda u: -_cost(u, settings))  # longest first: a shorter tail
            for u in ready[: max(0, workers - len(running))]:
                pending.remove(u)
                running[pool.submit(_call, u, settings, results, on_start)] = u
            if not running:
                raise RuntimeError("unsatisfiable dependencies: " + ", ".join(u.key for u in pending))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                _finish(running.pop(fut), fut.result(), results, on_done)
    return results


def _cost(unit: Unit, settings: ExperimentSettings) -> float:
    """Rough relative cost of a unit, for scheduling only (epochs x H^2, distillation ~1.5x)."""
    if unit.kind == "teacher":
        return settings.teacher.epochs * unit.hidden**2
    if unit.kind == "student":
        return settings.student.epochs * unit.hidden**2 * (1.5 if unit.distill else 1.0)
    return 0.5 * settings.student.epochs * unit.hidden**2


def _call(unit, settings, results, on_start):
    deps = {d.key: results[d.key][1] for d in unit.deps()}
    return run_unit(unit, settings, deps, on_start(unit) if on_start else None)


def _finish(unit, out, results, on_done):
    results[unit.key] = out
    if on_done is not None:
        on_done(unit, *out)


# --- summary -----------------------------------------------------------------------------------

def summarize(figures: dict[str, dict], settings: ExperimentSettings, gradcheck_err: float | None = None,
              reproducible: bool | None = None) -> dict:
    """The results document: per-seed matrix, summaries with intervals, effects, checklist."""
    lo, hi = settings.widths
    seeds = list(settings.seeds)
    per_seed = []
    for seed in seeds:
        teachers = {w: figures[Unit("teacher", seed, w).key] for w in (lo, hi)}
        rows = []
        for config, shaped, distill, wide in CONFIGS:
            w = hi if wide else lo
            f = figures[Unit("student", seed, w, shaped, distill).key]
            rows.append({**f, "config": config, "width": w})
        base = rows[0]["eval_mse"]
        for r in rows:
            r["vs_float"] = r["eval_mse"] / teachers[r["width"]]["eval_mse"]
            r["vs_baseline"] = r["eval_mse"] / base
        cs = []
        for source in ("teacher", "config1"):
            f = dict(figures[Unit("cs", seed, lo, source=source).key])
            f.update(vs_float=f["eval_mse"] / teachers[lo]["eval_mse"], vs_baseline=f["eval_mse"] / base)
            cs.append(f)
        eff = stats.effects(np.log10([r["eval_mse"] for r in rows]))
        per_seed.append({"seed": seed, "teachers": {str(w): t for w, t in teachers.items()}, "configs": rows,
                         "cs": cs, "effects": eff})

    def geo(values):
        ci = stats.mean_ci(np.log10(values))
        return {"geo_mean": 10 ** ci["mean"], "lo": 10 ** ci["lo"], "hi": 10 ** ci["hi"],
                "sd_log10": ci["sd"], "n": ci["n"]}

    matrix = []
    for i, (config, shaped, distill, wide) in enumerate(CONFIGS):
        rs = [s["configs"][i] for s in per_seed]
        matrix.append({"config": config, "shaped": shaped, "distill": distill, "width": hi if wide else lo,
                       **{k: geo([r[k] for r in rs]) for k in ("train_mse", "eval_mse", "vs_float", "vs_baseline")}})
    cs_rows = []
    for j, source in enumerate(("teacher", "config1")):
        rs = [s["cs"][j] for s in per_seed]
        cs_rows.append({"source": source, "width": lo,
                        **{k: geo([r[k] for r in rs]) for k in ("train_mse", "eval_mse", "vs_float", "vs_baseline")}})
    teachers = {str(w): geo([s["teachers"][str(w)]["eval_mse"] for s in per_seed]) for w in (lo, hi)}
    effects = {name: {**stats.mean_ci([s["effects"][name] for s in per_seed]), "label": stats.EFFECT_NAMES[name]}
               for name in stats.EFFECTS}

    best = min(matrix, key=lambda r: r["eval_mse"]["geo_mean"])
    worst_teacher = max(t["eval_mse"] for s in per_seed for t in s["teachers"].values())
    n_ran = sum(len(s["configs"]) for s in per_seed)
    checklist = [
        {"item": "gradient check passes (max rel. error < 1e-3)", "value": gradcheck_err,
         "ok": None if gradcheck_err is None else gradcheck_err < 1e-3},
        {"item": "float teacher eval MSE < 0.005 (worst teacher)", "value": worst_teacher,
         "ok": worst_teacher < 0.005},
        {"item": "all 8 configurations ran", "value": f"{n_ran}/{8 * len(seeds)}", "ok": n_ran == 8 * len(seeds)},
        {"item": "best ternary eval MSE < 0.05", "value": best["eval_mse"]["geo_mean"],
         "config": best["config"], "ok": best["eval_mse"]["geo_mean"] < 0.05},
        {"item": "main effects and interactions reported", "value": len(effects), "ok": True},
        {"item": "reproducible (a training rerun is bit-identical)", "value": reproducible,
         "ok": reproducible},
        {"item": "coordinate search baseline reported", "value": cs_rows[0]["eval_mse"]["geo_mean"], "ok": True},
    ]
    return {"seeds": seeds, "widths": [lo, hi], "teachers": teachers, "matrix": matrix, "cs": cs_rows,
            "effects": effects, "checklist": checklist, "per_seed": per_seed}


# --- the whole run -----------------------------------------------------------------------------

COMPUTE = ("kernels/*.py", "config.py", "factorial.py", "model.py", "rng.py", "search.py", "stats.py",
           "tasks.py", "train.py")  # the modules a unit's numbers come from


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the sources of :data:`COMPUTE` as they were when first asked (once per process)."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted({f for pattern in COMPUTE for f in root.glob(pattern)}):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of ternq and the packages its numbers depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "ternq code": code_fingerprint()}
    for pkg in ("ternq", "numpy", "numba", "llvmlite", "click", "rich"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_factorial(settings: ExperimentSettings, workers: int = 2, check_gradients: bool = True,
                  check_reproducible: bool = True,
                  on_start: Callable[[Unit], Callable | None] | None = None,
                  on_done: Callable[[Unit, dict, Model], None] | None = None,
                  done: dict[str, tuple[dict, Model]] | None = None,
                  runner: Callable | None = None) -> tuple[dict, dict[str, tuple[dict, Model]]]:
    """Run the whole experiment; return the results document and every unit's (figures, model).

    Parameters
    ----------
    settings : ExperimentSettings
        Seeds, widths, task and the training settings (see :mod:`ternq.config`).
    workers : int
        Trainings run at once (threads; results do not depend on it).
    check_gradients : bool
        Run the finite-difference check at both widths first, as the seeds require.
    check_reproducible : bool
        Rerun config 1 of the first seed and compare its weights bit for bit.
    on_start, on_done, done
        Passed to :func:`execute` (progress display, saving, resuming).
    runner : callable, optional
        Replaces :func:`execute` (same signature), e.g. to run units on a Dask cluster.
    """
    t0 = time.perf_counter()
    timing = {}

    def checks():
        """The gradient check, then a rerun of one training: on a side thread, beside the trainings.

        No result is reported before the check has passed (it raises), so running
        it alongside costs the seeds' protocol nothing and keeps both cores busy.
        """
        grad_err = gradient_error(settings) if check_gradients else None
        timing["gradcheck_s"] = time.perf_counter() - t0
        rerun = run_unit(_rerun_unit(settings), settings, {})[1] if check_reproducible else None
        return grad_err, rerun

    with ThreadPoolExecutor(max_workers=1) as side:
        pending_checks = side.submit(checks)
        try:
            results = (runner or execute)(plan(settings), settings, workers=workers, done=done,
                                          on_start=on_start, on_done=on_done)
        finally:
            grad_err, rerun = pending_checks.result()  # a failed check wins over any training error
    t_train = time.perf_counter() - t0
    reproducible = None
    if rerun is not None:
        reproducible = rerun.theta.tobytes() == results[_rerun_unit(settings).key][1].theta.tobytes()
    doc = assemble(settings, results, grad_err, reproducible=reproducible)
    doc["timing"] = {"gradcheck_s": timing.get("gradcheck_s", 0.0), "training_s": t_train,
                     "total_s": time.perf_counter() - t0, "workers": workers}
    return doc, results


def _rerun_unit(settings: ExperimentSettings) -> Unit:
    """The training rerun for the reproducibility check: the first seed's narrow teacher."""
    return Unit("teacher", settings.seeds[0], settings.widths[0])


def gradient_error(settings: ExperimentSettings) -> float:
    """The finite-difference check at both widths; raise :class:`GradientCheckError` if it fails.

    On a first run (Numba's cache cold) it runs as ``ternq gradcheck`` in a
    child process, so that its float64 kernels compile on the other core while
    this process compiles the float32 training kernels; once compiled, it runs
    here (a child would only add its start-up to the run).
    """
    import json
    import subprocess
    import sys

    from . import gradcheck

    task = make_task(settings)
    if _is_cached(gradcheck._fd_cell):
        results = gradcheck.check_all(settings.widths, settings.seeds[0], task.n_in, task.n_out)
        return _passed(max(r.max_rel_err for r in results))
    cmd = [sys.executable, "-m", "ternq", "gradcheck", "--json", "--seed", str(settings.seeds[0])]
    for w in settings.widths:
        cmd += ["--hidden", str(w)]
    cmd += ["--data", settings.data] if settings.data else ["--task", settings.task]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        err = float(json.loads(proc.stdout)["max_rel_err"])
    except (ValueError, KeyError, TypeError):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GradientCheckError(f"gradient check could not run: {last}") from None
    return _passed(err)


def _passed(err: float) -> float:
    if not err < 1e-3:  # the seeds: abort before any training result
        raise GradientCheckError(f"gradient check failed: max relative error {err:.2e} > 1e-3; "
                                 "see 'ternq gradcheck'")
    return err


def _is_cached(kernel) -> bool:
    """Whether Numba's on-disk cache holds ``kernel`` (False when that cannot be told)."""
    import os

    try:
        return os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:
        return False


def assemble(settings: ExperimentSettings, results: dict[str, tuple[dict, Model]], grad_err: float | None = None,
             check_reproducible: bool = False, reproducible: bool | None = None) -> dict:
    """The results document (without timing) from every unit's (figures, model).

    With ``check_reproducible``, the first seed's narrow teacher is retrained
    here and compared bit for bit with the result it was given (wherever that
    ran); ``reproducible`` passes the outcome of such a check made elsewhere.
    """
    if check_reproducible:
        unit = _rerun_unit(settings)
        again = run_unit(unit, settings, {})[1]
        reproducible = again.theta.tobytes() == results[unit.key][1].theta.tobytes()
    doc = summarize({k: f for k, (f, _) in results.items()}, settings, grad_err, reproducible)
    return {"ternq": "factorial", "task": make_task(settings).describe(), "settings": settings.to_dict(),
            "versions": versions(), **doc}


CSV_COLUMNS = ["seed", "row", "config", "shaped", "distill", "width", "train_mse", "eval_mse", "ref_mse",
               "vs_float", "vs_baseline", "zero_share"]


def csv_rows(doc: dict) -> list[dict]:
    """One row per configuration (and teacher, and CS row) and seed."""
    rows = []
    for s in doc["per_seed"]:
        for w, t in s["teachers"].items():
            rows.append({**t, "row": "teacher", "width": int(w), "vs_float": 1.0})
        for r in s["configs"]:
            rows.append({**r, "row": f"config{r['config']}"})
        for r in s["cs"]:
            rows.append({**r, "row": f"cs-{r['source']}", "width": r["hidden"]})
    return [{k: r.get(k, "") for k in CSV_COLUMNS} | {"seed": r["seed"]} for r in rows]


def save_plots(doc: dict, results: dict[str, tuple[dict, Model]], settings: ExperimentSettings, plot_dir) -> list:
    """PNGs: predictions of the teacher and every student, learning curves, effects (first seed's models)."""
    from pathlib import Path

    from . import plots

    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = make_task(settings)
    seed = settings.seeds[0]
    written = []
    for w in settings.widths:
        models = {f"teacher H={w}": results[Unit("teacher", seed, w).key][1]}
        for config, shaped, distill, wide in CONFIGS:
            if (settings.widths[1] if wide else settings.widths[0]) == w:
                models[f"config {config}"] = results[Unit("student", seed, w, shaped, distill).key][1]
        if w == settings.widths[0]:
            models["PTQ+CS"] = results[Unit("cs", seed, w, source="teacher").key][1]
        written.append(plots.predictions(models, task, out / f"predictions-h{w}.png"))
        written.append(plots.curves({k: (m.meta["curve"]["epoch"], m.meta["curve"]["loss"])
                                     for k, m in models.items() if "curve" in m.meta}, out / f"curves-h{w}.png"))
    written.append(plots.effects(doc, out / "effects.png"))
    return written


def save_results(doc: dict, results: dict[str, tuple[dict, Model]], out_dir) -> None:
    """Write results.json, results.csv and every model under ``out_dir``, each file atomically."""
    import csv
    import io
    import json
    from pathlib import Path

    from .model import atomic_write_bytes

    out = Path(out_dir)
    (out / "models").mkdir(parents=True, exist_ok=True)
    for key, (_, model) in sorted(results.items()):
        model.save(out / "models" / (key.replace("/", "-") + ".npz"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(doc))
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    figures, timing = split_timing(doc)
    atomic_write_bytes(out / "results.json", (json.dumps(clean(figures), indent=2) + "\n").encode())
    atomic_write_bytes(out / "timing.json", (json.dumps(clean(timing), indent=2) + "\n").encode())


def split_timing(doc: dict) -> tuple[dict, dict]:
    """The deterministic figures (same seed, same bytes) apart from wall times."""
    timing = {"run": doc.get("timing", {}), "units": {}}

    def strip(x):
        if isinstance(x, dict):
            if "key" in x and "seconds" in x:
                timing["units"][x["key"]] = x["seconds"]
            return {k: strip(v) for k, v in x.items() if k not in ("seconds", "timing")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(doc), timing
