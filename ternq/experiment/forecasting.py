"""Forecast figures of an experiment's models, against naive baselines computed once per task.

A :class:`Forecaster` holds one task's naive baselines (persistence; seasonal naive with a
period): the one-step figures on the held-out steps every model is scored on, and, with a
horizon K, their errors per window and horizon after the same warm-up. Its
:meth:`~Forecaster.figures` gives one model's figures against them: one-step MAE, MASE, MSE
ratios ("vs naive") and whether it beats persistence; with a horizon, the rollout MSE per
horizon 1..K and the horizon summaries of :class:`ternq.forecast.Horizons`.

These figures are made after training, from the finished models (they depend on the horizon
and period asked for, which are no part of a unit), so a unit's stored result never changes
with them. The arithmetic is :mod:`ternq.forecast`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import forecast
from ..model import Model
from ..tasks import Task

ROLLOUT = "rollout:"  # the response "rollout:K": log10 of the rollout MSE at horizon K
METRICS = ("scored", "whole")  # the one-step eval MSE over the steps after the warm-up, or over every step


@dataclass(frozen=True)
class ForecastSettings:
    """What the forecast evaluation asks for beyond the one-step figures.

    Attributes
    ----------
    horizon : int, optional
        K: rollouts of K forecasts (None: one-step figures only).
    warmup : int, optional
        W true rows that warm the state before the first scored forecast, in every evaluation: the
        one-step MSE scores the forecasts made after W rows (:func:`ternq.forecast.scored_steps`),
        a rollout runs free after W rows [:func:`ternq.forecast.default_warmup`].
    period : int, optional
        Seasonal period in rows [the task's own, :func:`ternq.forecast.resolve_period`; a data
        file has none unless given: autocorrelation peaks are not a robust detector there].
    metric : str
        The eval MSE tables, effects and ratios use: "scored" (the forecasts after the warm-up) or
        "whole" (every step from h_0 = 0: the notes' and the C program's figure). Both are reported.
    """

    horizon: int | None = None
    warmup: int | None = None
    period: int | None = None
    metric: str = "scored"

    def checked(self, task: Task) -> ForecastSettings:
        """These settings validated against ``task`` (the warm-up resolved when there is a horizon).

        Raises
        ------
        ValueError
            One line naming the limit: a horizon, warm-up or period that is not a positive
            integer or does not fit the held-out windows, or a rollout on a task whose outputs
            are not its inputs.
        """
        period = None if self.period is None else forecast.check_period(task, self.period)
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if self.horizon is None:
            return ForecastSettings(None, forecast.check_warmup(task, self.warmup), period, self.metric)
        if task.n_in != task.n_out:
            raise ValueError(f"a rollout feeds the predictions back as inputs: task {task.name} has {task.n_in} "
                             f"inputs and {task.n_out} outputs, so it cannot run free")
        horizon, warmup = forecast.check_horizon(task, self.horizon, self.warmup)
        return ForecastSettings(horizon, warmup, period, self.metric)

    def for_response(self, response_name: str) -> ForecastSettings:
        """The settings a response needs: ``rollout:K`` needs a horizon of at least K (K if none is set)."""
        k = response_horizon(response_name)
        if k is None:
            return self
        if self.horizon is None:
            return replace(self, horizon=k)
        if self.horizon < k:
            raise ValueError(f"response {response_name} needs a horizon of at least {k}, not {self.horizon}")
        return self

    def to_dict(self) -> dict:
        return {"horizon": self.horizon, "warmup": self.warmup, "period": self.period, "metric": self.metric}


def response_horizon(response_name: str) -> int | None:
    """K of a ``rollout:K`` response (ValueError if K is not a positive integer); None for other responses."""
    if not response_name.startswith(ROLLOUT):
        return None
    text = response_name[len(ROLLOUT):]
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"response {response_name!r}: rollout:K needs a positive integer horizon K")
    return int(text)


class Forecaster:
    """One task's naive baselines (made once) and each model's forecast figures against them.

    Parameters
    ----------
    task : Task
    settings : ForecastSettings
        Validated here (:meth:`ForecastSettings.checked`).

    Attributes
    ----------
    available : bool
        False when the task's inputs are not its previous outputs (n_in != n_out): no naive
        forecast exists, and :meth:`figures` holds the scored MSE alone.
    """

    def __init__(self, task: Task, settings: ForecastSettings | None = None):
        self.task = task
        self.settings = (settings or ForecastSettings()).checked(task)
        self.available = task.n_in == task.n_out
        self.base: dict | None = None
        self.base_errors: dict[str, np.ndarray] = {}
        if not self.available:
            return
        s = self.settings
        fits = forecast.fit_classical(task, s.warmup, forecast.resolve_period(task, s.period))
        self.base = forecast.baselines(task, s.period, warmup=s.warmup, fits=fits)
        if s.horizon is not None:
            self.base_errors = forecast.baseline_rollout_errors(task, s.horizon, s.warmup, s.period, fits=fits)

    @property
    def period(self) -> int | None:
        return None if self.base is None else self.base["period"]

    def best_rollout_mean(self) -> float:
        """The lowest mean MSE over horizons 1..K of any baseline."""
        return min(float(e.mean()) for e in self.base_errors.values())

    def _horizons(self, errors: dict[str, np.ndarray]) -> forecast.Horizons:
        s = self.settings
        return forecast.Horizons(self.task.name, s.horizon, s.warmup, self.period, {**errors, **self.base_errors},
                                 forecast.VPT_THRESHOLD, self.task.lyapunov_per_step,
                                 tuple(self.base_errors))

    def figures(self, model: Model) -> dict:
        """One model's figures (JSON-able, flat).

        ``eval_mse_scored`` (the one-step MSE over the steps scored after the warm-up) on every
        task; where baselines exist also ``eval_mae``, ``mase``, ``vs_persistence`` (scored MSE /
        persistence MSE), with a period ``vs_seasonal``, ``vs_naive`` (to the better naive
        forecast), ``vs_best`` and ``best_baseline`` (classical forecasts included),
        ``beats_persistence``, ``beats_naive`` and ``beats_best``; with a horizon also
        ``rollout_mse`` (MSE at horizons 1..K, a list), ``rollout_mse_at_horizon`` (at K),
        ``rollout_mse_mean`` (over 1..K), ``rollout_best_baseline`` and ``rollout_beats_best``
        (against the baseline of lowest mean over 1..K), ``passes_persistence``,
        ``passes_threshold`` (first horizon past the bar, None if none within K), with a period
        ``passes_seasonal``, and on lorenz ``vpt_lyapunov`` and ``vpt_censored``.
        """
        if not self.available:
            return {"eval_mse_scored": forecast.scored_mse(model, self.task, self.settings.warmup)}
        sk = forecast.skill(model, self.task, base=self.base)
        fig = {"eval_mse_scored": sk["mse"], "eval_mae": sk["mae"], "mase": sk["mase"],
               "vs_persistence": sk["vs_persistence"]}
        if "vs_seasonal" in sk:
            fig["vs_seasonal"] = sk["vs_seasonal"]
        fig.update(vs_naive=sk["vs_naive"], beats_persistence=sk["beats_persistence"], beats_naive=sk["beats_naive"],
                   vs_best=sk["vs_best"], best_baseline=sk["best_baseline"], beats_best=sk["beats_best"])
        if self.settings.horizon is not None:
            fig.update(self.rollout_figures(model))
        return fig

    def rollout_figures(self, model) -> dict:
        """A model's (or a :class:`ternq.deploy.Deployable`'s) rollout figures: ``rollout_mse`` (1..K),
        ``rollout_mse_at_horizon`` and the summaries of :meth:`ternq.forecast.Horizons.summary`."""
        s = self.settings
        if s.horizon is None:
            raise ValueError("rollout figures need a horizon")
        hz = self._horizons({"model": forecast.rollout_errors(model, self.task, s.horizon, s.warmup)})
        curve = hz.mse("model")
        mean = {n: float(e.mean()) for n, e in self.base_errors.items()}
        top = min(mean, key=mean.get)
        return {"rollout_mse": [float(v) for v in curve], "rollout_mse_at_horizon": float(curve[-1]),
                "rollout_mse_mean": float(curve.mean()), "rollout_best_baseline": top,
                "rollout_beats_best": bool(curve.mean() < mean[top]), **hz.summary("model")}

    def baselines_doc(self) -> dict | None:
        """The baselines as results.json states them: period, MASE scale, one-step figures of each
        (``mse``, ``mae``, ``mase``, ``vs_persistence``, ``vs_naive``), and with a horizon their rollout figures
        (``horizon``: settings, ``mse`` curves and summaries, as :meth:`ternq.forecast.Horizons.to_dict`)."""
        if not self.available:
            return None
        b = self.base
        best = min(b[n]["mse"] for n in ("persistence", "seasonal") if n in b)
        out = {"period": b["period"], "warmup": b["warmup"], "scale": b["scale"], "classical": b["classical"]}
        for n in forecast.baseline_names(b):
            out[n] = {**b[n], "vs_persistence": forecast._ratio(b[n]["mse"], b["persistence"]["mse"]),
                      "vs_naive": forecast._ratio(b[n]["mse"], best)}
        if self.settings.horizon is not None:
            out["horizon"] = self._horizons({}).to_dict()
        return out


def model_forecasts(models: dict[str, Model], task: Task, settings: ForecastSettings | None = None
                    ) -> tuple[dict | None, dict[str, dict]]:
    """The baselines (once) and each model's figures, for commands that evaluate a few models:
    (:meth:`Forecaster.baselines_doc`, ``{name: Forecaster.figures(model)}``)."""
    f = Forecaster(task, settings)
    return f.baselines_doc(), {name: f.figures(m) for name, m in models.items()}
