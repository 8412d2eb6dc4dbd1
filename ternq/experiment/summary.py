"""The one place where figures are made: per-seed rows, means with intervals, effects, verdicts, the
checklist and the notes' predictions, from the units' results.

The *response* the effects are computed on is a parameter (today ``eval_mse``:
log10 of the held-out MSE); :data:`RESPONSES` maps a name to the figures it
reads, so other evaluations (multi-step rollouts, ...) can be added there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import forecast
from ..gradcheck import TOLERANCE
from ..stats import mean_ci
from .effects import LETTERS, name
from .forecasting import METRICS, Forecaster, ForecastSettings, response_horizon
from .plans import Plan
from .units import Result, TaskSpec

TEACHER_BAR = 0.005  # the notes: a float teacher must reach this eval MSE on sine
BEST_BAR = 0.05
MODEST = math.log10(2.0)  # "modest": less than halving the MSE
WITHIN_REACH = 0.01  # the notes' "within reach of the float teacher"


@dataclass(frozen=True)
class Response:
    """What the effects are computed on: a label and the values of a list of unit figures."""

    name: str
    label: str
    values: Callable[[list[dict]], np.ndarray]


RESPONSES = {
    "eval_mse": Response("eval_mse", "log10(eval MSE)", lambda figs: np.log10([f["eval_mse"] for f in figs])),
}


def response(name_: str) -> Response:
    """The response called ``name_``, or ``rollout:K`` (ValueError naming the known ones otherwise)."""
    if response_horizon(name_) is not None:
        return rollout_response(response_horizon(name_))
    try:
        return RESPONSES[name_]
    except KeyError:
        raise ValueError(f"unknown response {name_!r} (known: {', '.join(RESPONSES)}, rollout:K)") from None


def rollout_response(k: int) -> Response:
    """log10 of the free-running rollout MSE at horizon ``k`` (the units' ``rollout_mse`` figures)."""
    return Response(f"rollout:{k}", f"log10(rollout MSE at horizon {k})",
                    lambda figs: np.log10([f["rollout_mse"][k - 1] for f in figs]))


def vs_float(eval_mse: float, float_eval_mse: float) -> float:
    """A ternary model's eval MSE over a float model's (its equal-budget reference, or its teacher)."""
    return eval_mse / float_eval_mse


METRIC_KEYS = tuple(f"eval_mse_{m}" for m in METRICS)
GEO_KEYS = ("train_mse", "eval_mse", *METRIC_KEYS, "vs_float", *(f"vs_float_{m}" for m in METRICS),
            *(f"vs_teacher_{m}" for m in METRICS), "vs_baseline")


def _metric(unit_figures: dict, forecast_figures: dict, metric: str) -> dict:
    """A model's figures with both one-step metrics (``eval_mse_whole``: the unit's own figure, every step;
    ``eval_mse_scored``: after the warm-up) and ``eval_mse`` set to the one ``metric`` names."""
    out = {**unit_figures, **forecast_figures, "eval_mse_whole": unit_figures["eval_mse"]}
    out["eval_mse"] = out[f"eval_mse_{metric}"]
    return out


def metric_doc(forecaster: Forecaster) -> dict:
    """The metric as results.json states it: its name, the warm-up and the steps scored."""
    s, task = forecaster.settings, forecaster.task
    steps = forecast.scored_steps(task, s.warmup)
    return {"name": s.metric, "warmup": s.warmup, "scored_steps": [int(steps[0]), int(steps[-1])],
            "window_steps": forecast.window_steps(task),
            "scored": f"one-step MSE over steps {int(steps[0])}..{int(steps[-1])} of each held-out window "
                      f"(the forecasts made after {s.warmup} true rows)",
            "whole": "one-step MSE over every step from h_0 = 0 (the notes' figure)"}


def _reference_doc(plan: Plan, run, metric: str) -> dict:
    """What a run's "vs float" divides by, and the budgets."""
    student = run.student.total_epochs
    if plan.references:
        ref = next(u for (i, _), u in plan.references.items() if i == run.index).config
        return {"kind": "equal-budget float", "epochs": ref.epochs, "schedule": ref.schedule,
                "student_epochs": student, "teacher_epochs": run.teacher.epochs}
    return {"kind": "teacher", "epochs": run.teacher.epochs, "student_epochs": student,
            "teacher_epochs": run.teacher.epochs}


def verdict(ci: dict) -> str:
    """helps / hurts / not distinguishable from 0, from an effect's interval (negative = lower error)."""
    if ci["n"] < 2 or np.isnan(ci["lo"]):
        return "(needs several seeds)"
    return "helps" if ci["hi"] < 0 else "hurts" if ci["lo"] > 0 else "not distinguishable from 0"


def geo(values) -> dict:
    """Geometric mean over seeds with the 95% interval of the mean of log10. A figure a unit does not have (a
    plain PTQ student's training MSE) is NaN when fresh and None once read back from the store: both are NaN."""
    ci = mean_ci(np.log10(np.array([np.nan if v is None else v for v in values], np.float64)))
    return {"geo_mean": 10 ** ci["mean"], "lo": 10 ** ci["lo"], "hi": 10 ** ci["hi"], "sd_log10": ci["sd"],
            "n": ci["n"]}


def _levels(plan: Plan, run) -> dict:
    return {f.name: (f.high if lv > 0 else f.low) for f, lv in zip(plan.factors, run.levels, strict=True)}


def _effect_label(plan: Plan, effect: str) -> str:
    if effect in plan.words.labels:
        return plan.words.labels[effect]
    return " x ".join(plan.factors[LETTERS.index(ch)].name for ch in effect)


def design_doc(plan: Plan) -> dict:
    """The design as results.json states it: factors, matrix, generators, resolution, aliases."""
    d = plan.design
    return {"name": plan.words.name,
            "factors": [{"letter": LETTERS[i], "key": f.key, "label": f.name, "levels": [f.low, f.high]}
                        for i, f in enumerate(plan.factors)],
            "runs": d.runs, "k": d.k, "generators": list(d.generators), "resolution": d.resolution,
            "defining_relation": ["I"] + [name(w) for w in d.defining_relation()],
            "matrix": d.matrix().tolist(),
            "aliases": {name(m): [name(a) for a in al] for m, al in d.estimable(plan.words.order)}}


def forecaster_of(plan: Plan, forecast: ForecastSettings | None = None, response_name: str = "eval_mse") -> Forecaster:
    """The naive and linear baselines that a plan's results are scored against (they need no training: a run
    makes them beside its trainings)."""
    return Forecaster(TaskSpec.of(plan.settings).make(), (forecast or ForecastSettings()).for_response(response_name))


def summarize(plan: Plan, results: dict[str, Result], gradcheck_err: float | None = None,
              reproducible: bool | None = None, response_name: str = "eval_mse",
              forecast: ForecastSettings | None = None, forecaster: Forecaster | None = None,
              scored: dict[str, dict] | None = None) -> dict:
    """The results document of a plan's results (by digest).

    Rows, teachers and effects are named by the design's :class:`~ternq.experiment.plans.Words`:
    for the notes' design the matrix of the 8 configurations, the CS rows, the
    seven effects and the notes' predictions; for any other design the runs with
    their levels, and every main effect and two-factor interaction it can
    estimate with its aliases.

    Every model is also scored against the task's naive baselines (made once,
    :class:`ternq.experiment.forecasting.Forecaster`; with ``forecast.horizon``
    also on free-running rollouts): its rows get those figures, and the document
    ``naive`` (and ``horizon``) with their summaries over seeds. ``forecaster``: those baselines made
    already (:func:`forecaster_of` of the same plan, settings and response); ``scored``: units' figures
    against those baselines made already (``forecaster.figures`` of their models), by digest.
    """
    resp = response(response_name)
    forecaster = forecaster or forecaster_of(plan, forecast, response_name)
    metric = forecaster.settings.metric
    scored = scored or {}
    extra = {u.digest: scored[u.digest] if u.digest in scored else forecaster.figures(results[u.digest][1])
             for u in plan.units}
    figs = {d: _metric(results[d][0], fig, metric) for d, fig in extra.items()}  # this plan's units only
    seeds = list(plan.settings.seeds)
    lo = plan.settings.widths[0]
    words = plan.words
    per_seed = []
    for seed in seeds:
        teachers, references, rows = {}, {}, []
        for run in plan.runs:
            tu, su = plan.teachers[run.index, seed], plan.students[run.index, seed]
            t = {"key": tu.key, "kind": "teacher", "seed": seed, "hidden": tu.hidden, **figs[tu.digest]}
            teachers[words.teacher.format(hidden=tu.hidden, key=tu.key.split("/", 1)[1])] = t
            ref = t
            if (run.index, seed) in plan.references:
                ru = plan.references[run.index, seed]
                ref = {"key": ru.key, "kind": "float reference", "seed": seed, "hidden": ru.hidden,
                       "epochs": ru.config.epochs, "schedule": ru.config.schedule,
                       "same_as_teacher": ru.digest == tu.digest, **figs[ru.digest]}
                references[ru.key.split("/", 1)[1]] = ref
            row = {"key": su.key, "kind": "student", "seed": seed, "hidden": su.hidden, **figs[su.digest],
                   words.row: run.index, "shaped": su.config.shaped, "distill": su.config.distill,
                   "levels": _levels(plan, run)}
            row["width"] = su.hidden
            row["reference"] = ref["key"]
            for m in METRICS:
                row[f"vs_float_{m}"] = vs_float(row[f"eval_mse_{m}"], ref[f"eval_mse_{m}"])
                row[f"vs_teacher_{m}"] = vs_float(row[f"eval_mse_{m}"], t[f"eval_mse_{m}"])
            row["vs_float"] = row[f"vs_float_{metric}"]
            rows.append(row)
        base = rows[0]["eval_mse"]
        for r in rows:
            r["vs_baseline"] = r["eval_mse"] / base
        cs = []
        for source in ("teacher", "config1"):
            if (source, seed) in plan.cs:
                u = plan.cs[source, seed]
                f = {"key": u.key, "kind": "cs", "seed": seed, "hidden": u.hidden, "source": source,
                     **figs[u.digest]}
                first = plan.references.get((plan.runs[0].index, seed))  # config 1's: the narrow width
                ref = (references[first.key.split("/", 1)[1]] if first is not None
                       else next(iter(teachers.values())))  # run 1's teacher comes first
                for m in METRICS:
                    f[f"vs_float_{m}"] = vs_float(f[f"eval_mse_{m}"], ref[f"eval_mse_{m}"])
                f.update(vs_float=f[f"vs_float_{metric}"], vs_baseline=f["eval_mse"] / base, reference=ref["key"])
                cs.append(f)
        eff = plan.design.effects(resp.values(rows), words.order)
        per_seed.append({"seed": seed, "teachers": teachers, "references": references, words.rows: rows, "cs": cs,
                         "effects": eff})

    matrix = []
    for i, run in enumerate(plan.runs):
        rs = [s[words.rows][i] for s in per_seed]
        head = {words.row: run.index, "shaped": run.student.shaped, "distill": run.student.distill,
                "levels": _levels(plan, run)}
        matrix.append({**head, "width": run.student.hidden,
                       "reference": _reference_doc(plan, run, metric),
                       **{k: geo([r[k] for r in rs]) for k in GEO_KEYS}})
    cs_rows = []
    for j, source in enumerate(s["source"] for s in (per_seed[0]["cs"] if per_seed else [])):
        rs = [s["cs"][j] for s in per_seed]
        cs_rows.append({"source": source, "width": lo,
                        **{k: geo([r[k] for r in rs]) for k in GEO_KEYS if "teacher" not in k}})
    teacher_names = list(per_seed[0]["teachers"])
    teachers = {w: geo([s["teachers"][w]["eval_mse"] for s in per_seed]) for w in teacher_names}
    references = {k: {**{f: per_seed[0]["references"][k][f] for f in ("hidden", "epochs", "same_as_teacher")},
                      **{m: geo([s["references"][k][m] for s in per_seed]) for m in ("eval_mse", *METRIC_KEYS)}}
                  for k in (per_seed[0]["references"] if per_seed else {})}
    aliases = dict(plan.design.estimable(words.order))
    effects = {}
    for eff_name in per_seed[0]["effects"]:
        ci = mean_ci([s["effects"][eff_name] for s in per_seed])
        mask = sum(1 << LETTERS.index(ch) for ch in eff_name)
        effects[eff_name] = {**ci, "label": _effect_label(plan, eff_name), "verdict": verdict(ci),
                             "aliases": [name(a) for a in aliases[mask]]}

    best = min(matrix, key=lambda r: r["eval_mse"]["geo_mean"])
    worst_teacher = max(t["eval_mse"] for s in per_seed for t in s["teachers"].values())
    n_ran = sum(len(s[words.rows]) for s in per_seed)
    n_runs = len(plan.runs)
    sine = plan.settings.task == "sine" and not plan.settings.data  # the bars and predictions are the sine's
    teacher_bar = {"item": f"float teacher eval MSE < {TEACHER_BAR:g} (worst teacher)", "value": worst_teacher,
                   "ok": worst_teacher < TEACHER_BAR}
    best_bar = {"item": f"best ternary eval MSE < {BEST_BAR:g}", "value": best["eval_mse"]["geo_mean"],
                words.row: best[words.row], "ok": best["eval_mse"]["geo_mean"] < BEST_BAR}
    checklist = [
        {"item": f"gradient check passes (max rel. error < {TOLERANCE:g})", "value": gradcheck_err,
         "ok": None if gradcheck_err is None else gradcheck_err < TOLERANCE},
        *([teacher_bar] if sine else []),
        {"item": f"all {n_runs} {words.rows} ran", "value": f"{n_ran}/{n_runs * len(seeds)}",
         "ok": n_ran == n_runs * len(seeds)},
        *([best_bar] if sine else []),
        {"item": "main effects and interactions reported", "value": len(effects), "ok": True},
        {"item": "reproducible (a training rerun is bit-identical)", "value": reproducible, "ok": reproducible},
    ]
    if cs_rows:
        checklist.append({"item": "coordinate search baseline reported", "value": cs_rows[0]["eval_mse"]["geo_mean"],
                          "ok": True})
    doc = {"seeds": seeds, "widths": list(plan.settings.widths), "response": resp.label,
           "metric": metric_doc(forecaster), "float_reference": {
               "kind": "equal-budget float" if plan.references else "teacher",
               "what": ("a float of the student's width trained with the student's whole budget (main epochs and "
                        "fine-tune) and schedule kind; the teacher settings otherwise" if plan.references else
                        "the distillation teacher (the equal-budget float reference is off)"),
               "models": references},
           "design": design_doc(plan), "teachers": teachers, words.table: matrix, "cs": cs_rows,
           "effects": effects, "checklist": checklist}
    if words.predictions and sine:
        doc["predictions"] = predictions(per_seed, matrix)
    doc.update(forecast_summary(plan, per_seed, forecaster))
    doc["per_seed"] = per_seed
    return doc


def _judge(ci: dict, held: Callable[[dict], bool], not_held: Callable[[dict], bool]) -> str:
    if ci["n"] < 2 or np.isnan(ci["lo"]):
        return "undecided at this number of seeds"
    if held(ci):
        return "held"
    if not_held(ci):
        return "not held"
    return "undecided at this number of seeds"


def predictions(per_seed: list[dict], matrix: list[dict]) -> list[dict]:
    """The notes' five expected outcomes, each with the measured figure and a verdict.

    held / not held when the 95% interval over seeds settles it, else "undecided
    at this number of seeds" (always so with one seed). Effects are on
    log10(eval MSE): negative helps.
    """
    eff = {k: np.array([s["effects"][k] for s in per_seed]) for k in ("A", "B", "C")}
    absv = {k: np.abs(v) for k, v in eff.items()}
    out = []

    # 1. width the largest effect, and a helpful one
    margin = absv["C"] - np.maximum(absv["A"], absv["B"])
    c, m = mean_ci(eff["C"]), mean_ci(margin)
    both = {"n": m["n"], "lo": min(m["lo"], -c["hi"]), "hi": min(m["hi"], -c["lo"])}
    out.append({"prediction": "width (C) is the largest effect", "effect": c, "margin_over_next": m,
                "measured": f"C {c['mean']:+.3f} on log10; |C| - max(|A|, |B|) = {m['mean']:+.3f}",
                "verdict": _judge(both, lambda x: x["lo"] > 0, lambda x: x["hi"] < 0)})
    # 2. distillation the second largest, and a helpful one
    below = np.maximum(absv["A"], absv["C"]) - absv["B"]
    above = absv["B"] - np.minimum(absv["A"], absv["C"])
    b, m1, m2 = mean_ci(eff["B"]), mean_ci(above), mean_ci(below)
    both = {"n": b["n"], "lo": min(-b["hi"], m1["lo"], m2["lo"]), "hi": min(-b["lo"], m1["hi"], m2["hi"])}
    out.append({"prediction": "trajectory distillation (B) is the second largest effect", "effect": b,
                "measured": f"B {b['mean']:+.3f} on log10 ({'lowers' if b['mean'] < 0 else 'raises'} the error); "
                            f"|A| {np.abs(eff['A'].mean()):.3f}, |B| {np.abs(b['mean']):.3f}, "
                            f"|C| {np.abs(eff['C'].mean()):.3f}",
                "verdict": _judge(both, lambda x: x["lo"] > 0, lambda x: x["hi"] < 0)})
    # 3. shaping a modest improvement: helps, by less than halving the MSE
    a = mean_ci(eff["A"])
    out.append({"prediction": f"shaped gradient (A) is a modest improvement (helps, by under {MODEST:.2f} "
                              "on log10: less than halving the MSE)", "effect": a,
                "measured": f"A {a['mean']:+.3f} on log10 ({10 ** a['mean']:.2f}x MSE)",
                "verdict": _judge(a, lambda x: -MODEST < x["lo"] and x["hi"] < 0,
                                  lambda x: x["lo"] > 0 or x["hi"] < -MODEST)})
    # 4. the combination at the wide width within reach of the float teacher
    combo = next(r for r in matrix if r["config"] == 8)["eval_mse"]
    logc = {"n": combo["n"], "lo": combo["lo"], "hi": combo["hi"]}
    out.append({"prediction": f"shaped + distilled at the wide width (config 8) reaches eval MSE < {WITHIN_REACH:g}",
                "eval_mse": combo, "measured": f"config 8 eval MSE {combo['geo_mean']:.2e}",
                "verdict": _judge(logc, lambda x: x["hi"] < WITHIN_REACH, lambda x: x["lo"] > WITHIN_REACH)})
    # 5. coordinate search helps (refining config 1) but does not match distillation (config 3, same width)
    if per_seed and per_seed[0]["cs"]:
        cs1 = np.array([next(r for r in s["cs"] if r["source"] == "config1")["eval_mse"] for s in per_seed])
        c1 = np.array([s["configs"][0]["eval_mse"] for s in per_seed])
        c3 = np.array([s["configs"][2]["eval_mse"] for s in per_seed])
        helps, vs_distill = mean_ci(np.log10(cs1 / c1)), mean_ci(np.log10(cs1 / c3))
        both = {"n": helps["n"], "lo": min(-helps["hi"], vs_distill["lo"]),
                "hi": min(-helps["lo"], vs_distill["hi"])}
        out.append({"prediction": "coordinate search helps (1+CS below config 1) but does not match distillation "
                                  "(1+CS above config 3)", "cs_vs_config1": helps, "cs_vs_distill": vs_distill,
                    "measured": f"1+CS / config 1 = {10 ** helps['mean']:.2f}x, 1+CS / config 3 = "
                                f"{10 ** vs_distill['mean']:.2f}x",
                    "verdict": _judge(both, lambda x: x["lo"] > 0, lambda x: x["hi"] < 0)})
    return out


def _forecast_rows(plan: Plan, per_seed: list[dict]) -> list[tuple[str, str, int, list[dict]]]:
    """(name, kind, width, that model's rows over seeds) for every run, CS row and teacher."""
    words = plan.words
    out = []
    for i, run in enumerate(plan.runs):
        out.append((f"{words.row} {run.index}", "student", run.student.hidden, [s[words.rows][i] for s in per_seed]))
    labels = {"teacher": "PTQ+CS", "config1": "1+CS"}
    for j, first in enumerate(per_seed[0]["cs"] if per_seed else []):
        out.append((labels[first["source"]], "cs", first["hidden"], [s["cs"][j] for s in per_seed]))
    for w, first in (per_seed[0]["teachers"].items() if per_seed else ()):
        out.append((words.teacher_label.format(name=w), "teacher", first["hidden"],
                    [s["teachers"][w] for s in per_seed]))
    for k, first in (per_seed[0]["references"].items() if per_seed else ()):
        if not first["same_as_teacher"]:
            out.append((k, "float reference", first["hidden"], [s["references"][k] for s in per_seed]))
    return out


def passes_over_seeds(values: list[int | None], horizon: int) -> dict:
    """A pass horizon over seeds: median (a seed that never passes within K counts as beyond K;
    None when the median is beyond K), min, max (None if a seed never passes), and how many pass."""
    beyond = [horizon + 1 if v is None else v for v in values]
    med = float(np.median(beyond))
    passed = [v for v in values if v is not None]
    return {"median": None if med > horizon else med, "min": min(passed) if passed else None,
            "max": max(beyond) if len(passed) == len(values) else None, "passed": len(passed), "n": len(values)}


def forecast_summary(plan: Plan, per_seed: list[dict], forecaster: Forecaster) -> dict:
    """The ``forecast`` part of a results document: the settings, the naive and classical baselines and,
    per model over seeds, its one-step skill on the scored steps (geometric means of the scored eval
    MSE, the ratios "vs naive" and "vs best" and MASE, whether it beats persistence and the best
    baseline) and with a horizon its rollout figures (the MSE curve as the geometric mean over seeds
    per horizon, its mean over horizons against the best baseline's, pass horizons, valid
    prediction time). ``loses_to_best`` names every model that does not beat the best baseline,
    one step ahead; ``loses_to_best_over_horizon`` over horizons 1..K."""
    if not forecaster.available:
        return {"forecast": None}
    s = forecaster.settings
    models = []
    for label, kind, width, rows in _forecast_rows(plan, per_seed):
        m = {"name": label, "kind": kind, "width": width,
             **{k: geo([r[k] for r in rows]) for k in ("eval_mse_scored", "eval_mae", "mase", "vs_persistence",
                                                        "vs_naive", "vs_best")}}
        if "vs_seasonal" in rows[0]:
            m["vs_seasonal"] = geo([r["vs_seasonal"] for r in rows])
        m["seeds_beating_persistence"] = sum(bool(r["beats_persistence"]) for r in rows)
        m["beats_persistence"] = bool(m["vs_persistence"]["geo_mean"] < 1)
        m["best_baseline"] = rows[0]["best_baseline"]
        m["beats_best"] = bool(m["vs_best"]["geo_mean"] < 1)
        if s.horizon is not None:
            curves = np.log10([r["rollout_mse"] for r in rows])
            m["rollout_mse"] = [float(v) for v in 10 ** curves.mean(axis=0)]
            m["rollout_mse_at_horizon"] = geo([r["rollout_mse_at_horizon"] for r in rows])
            m["rollout_mse_mean"] = geo([r["rollout_mse_mean"] for r in rows])
            m["rollout_best_baseline"] = rows[0]["rollout_best_baseline"]
            m["rollout_beats_best"] = bool(m["rollout_mse_mean"]["geo_mean"] < forecaster.best_rollout_mean())
            for key in ("passes_persistence", "passes_seasonal", "passes_threshold"):
                if key in rows[0]:
                    m[key] = passes_over_seeds([r[key] for r in rows], s.horizon)
            if "vpt_lyapunov" in rows[0]:
                m["vpt_lyapunov"] = mean_ci([r["vpt_lyapunov"] for r in rows])
                m["vpt_censored"] = sum(r["vpt_censored"] for r in rows)
        models.append(m)
    out = {"settings": s.to_dict(), "baselines": forecaster.baselines_doc(), "models": models,
           "loses_to_persistence": [m["name"] for m in models if not m["beats_persistence"]],
           "loses_to_best": [m["name"] for m in models if not m["beats_best"]]}
    if s.horizon is not None:
        out["loses_to_best_over_horizon"] = [m["name"] for m in models if not m["rollout_beats_best"]]
    return {"forecast": out}
