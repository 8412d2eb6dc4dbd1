"""Evaluation as forecasters measure it: naive baselines, MASE, free-running rollouts, horizon curves.

One-step skill (:func:`baselines`, :func:`skill`)
    On exactly the held-out steps :func:`ternq.train.evaluate` scores (``task.eval_set()``: the
    model reads the true row x_t and predicts x_{t+1}), the naive forecasts are

    - *persistence*: x_{t+1} is predicted by x_t (the input row itself);
    - *seasonal naive*, with a period of m rows: x_{t+1} by x_{t+1-m}, reaching back before the
      window where needed (the task's own past: earlier rows of the series, or the generated signal).

    MASE (Hyndman and Koehler 2006) divides each channel's mean absolute error by the in-sample
    one-step naive MAE of that channel on the training part (:meth:`ternq.tasks.Task.naive_scale`), then averages
    over channels; below 1 beats the naive forecast's in-sample error.

Multi-step rollouts (:func:`rollout`, :func:`rollout_errors`, :func:`horizon_curves`)
    On every held-out window the model reads the first W true rows x_0 .. x_{W-1} (the warm-up),
    whose last output is the horizon-1 forecast of x_W; it then runs free, each output fed back as
    the next input (n_in == n_out needed), and its output after k - 1 fed-back steps is the
    horizon-k forecast of x_{W-1+k}. The baselines forecast from the same origin x_{W-1}:
    persistence repeats it, seasonal naive takes x_{W-1+k-m*ceil(k/m)}. A window of T steps
    allows horizons up to T + 1 - W. The rollout is compiled (:mod:`ternq.kernels.rollout`;
    :func:`ternq.kernels.infer.rollout` for deployable files, bit-identical for students).

Horizon summaries (:class:`Horizons`)
    MSE per horizon (mean over windows and channels), the first horizon at which a model's MSE
    passes the persistence MSE or a threshold on its root (channels are normalised to unit
    training variance, so sqrt(MSE) is the normalised RMSE), and for lorenz the valid prediction
    time in Lyapunov times: per window, the lead time before the normalised RMSE first exceeds
    the threshold (0.5, as in Vlachas et al. 2020), times the largest Lyapunov exponent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .kernels import infer
from .kernels.rollout import rollout as _rollout_kernel
from .model import Model
from .tasks import MultiSine, Series, Sine, Task
from .train import DT, predict

DEFAULT_WARMUP = 25  # true rows before the first scored forecast, in every evaluation (default_warmup)
VPT_THRESHOLD = 0.5  # normalised-RMSE bar of the valid prediction time (Vlachas et al. 2020)


# ---------------------------------------------------------------- arguments and limits

def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def window_steps(task: Task) -> int:
    """Steps T of each held-out window (``task.eval_set()`` has shape (N, T, C))."""
    return int(task.eval_set()[0].shape[1])


def default_warmup(task: Task) -> int:
    """W = 25 true steps, or half a held-out window if that is shorter (T // 2).

    Why 25: the forecasts barely depend on it. On lorenz (H=32 teacher and shaped student,
    seed 0) warm-ups of 10, 20, 25, 30 and 50 steps gave the same horizon-1 MSE and valid
    prediction times within 10%: the cell forgets its zero initial state within about 10
    steps. One step ahead (benchmarks/warmup.py) the per-step error settles within 2x of
    its later level by step 9-14 on sine and multisine, and steps 10-23 hold under 1% of
    their teachers' error. A short warm-up leaves the rest of the window to the horizon
    (up to 76 steps on windows of 100; 26 on sunspots' windows of 50).
    """
    return max(1, min(DEFAULT_WARMUP, window_steps(task) // 2))


def check_horizon(task: Task, horizon, warmup=None) -> tuple[int, int]:
    """Validate a horizon K and warm-up W against the held-out windows; return (K, W).

    Raises
    ------
    ValueError
        K or W not a positive integer, W longer than a window, or K longer than the window
        allows after the warm-up (K <= T + 1 - W); the message names the limit.
    """
    T = window_steps(task)
    warmup = check_warmup(task, warmup)
    horizon = _positive_int(horizon, "horizon")
    if horizon > T + 1 - warmup:
        raise ValueError(f"horizon {horizon} is longer than the held-out windows of {task.name} allow: at most "
                         f"{T + 1 - warmup} (windows of {T} steps, after a warm-up of {warmup})")
    return horizon, warmup


def check_warmup(task: Task, warmup=None) -> int:
    """The warm-up W (default :func:`default_warmup`), validated against the held-out windows: 1 <= W <= T."""
    T = window_steps(task)
    warmup = default_warmup(task) if warmup is None else _positive_int(warmup, "warm-up")
    if warmup > T:
        raise ValueError(f"warm-up {warmup} is longer than the held-out windows of {task.name} allow: at most {T}")
    return warmup


def scored_steps(task: Task, warmup=None) -> np.ndarray:
    """The steps t of a held-out window whose one-step forecasts are scored: W - 1 .. T - 1.

    The forecast at step t is made after reading t + 1 true rows, so these are the forecasts made
    after at least W rows: the first one is the horizon-1 forecast of a rollout with the same
    warm-up. W = 1 scores every step (the whole-sequence metric).
    """
    return np.arange(check_warmup(task, warmup) - 1, window_steps(task))


def step_errors(F: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Squared error per window and step, mean over channels: (N, T) float64."""
    return _sq_errors(F, Y)


def step_mse(model, task: Task) -> np.ndarray:
    """One-step held-out MSE at each step of the window, mean over windows and channels: (T,) float64."""
    X, Y = task.eval_set()
    ys, _ = predict(model, X)
    return step_errors(ys, Y).mean(axis=0)


def scored_mse(model, task: Task, warmup=None) -> float:
    """One-step held-out MSE over the scored steps (:func:`scored_steps`), in float64."""
    X, Y = task.eval_set()
    ys, _ = predict(model, X)
    return float(step_errors(ys, Y)[:, scored_steps(task, warmup)].mean())


def period_limit(task: Task) -> int:
    """Longest period a seasonal naive forecast can use on this task's held-out part.

    The rows held out (:meth:`Task.held_out_span`; one window's T + 1 for a generated signal), and no
    more than the rows before the first held-out window plus one, where the past is finite (the
    first target's value one period earlier must exist).
    """
    past = task.past_rows()
    span = task.held_out_span()
    return int(span if past is None else min(span, past + 1))


def check_period(task: Task, period) -> int:
    """Validate a seasonal period (rows); ValueError naming the limit if it is not usable."""
    period = _positive_int(period, "period")
    limit = period_limit(task)
    if period > limit:
        raise ValueError(f"period {period} is longer than the held-out part of {task.name} allows: at most {limit}")
    return period


def detect_period(values: np.ndarray, max_lag: int | None = None) -> int | None:
    """Seasonal period of a series from its autocorrelation, or None if it shows none.

    Each channel's linear trend is removed; the autocorrelation (mean over channels) is read
    at lags 1 .. ``max_lag`` (default a third of the length). Candidates are its local maxima
    after it first turns negative that stand above the white-noise band 1.96 / sqrt(L); the
    answer is the shortest candidate within 80% of the highest (so a multiple of the period
    does not win on a smooth series).
    """
    x = np.asarray(values, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    L = x.shape[0]
    max_lag = L // 3 if max_lag is None else min(int(max_lag), L - 1)
    if max_lag < 3:
        return None
    s = np.arange(L, dtype=np.float64)
    A = np.stack([s - s.mean(), np.ones(L)], axis=1)
    v = x - A @ np.linalg.lstsq(A, x, rcond=None)[0]
    den = np.sum(v * v, axis=0)
    live = den > 1e-12 * np.sum((x - x.mean(axis=0)) ** 2, axis=0)  # a channel that is all trend has no season
    if not live.any():
        return None
    v, den = v[:, live], den[live]
    acf = np.array([np.mean(np.sum(v[k:] * v[: L - k], axis=0) / den) for k in range(max_lag + 1)])
    negative = np.flatnonzero(acf < 0)
    if negative.size == 0:
        return None
    band = 1.96 / math.sqrt(L)
    peaks = [k for k in range(max(int(negative[0]), 2), max_lag)
             if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1] and acf[k] > band]
    if not peaks:
        return None
    top = max(acf[k] for k in peaks)
    return next(k for k in peaks if acf[k] >= 0.8 * top)


def resolve_period(task: Task, period=None, detect: bool = False) -> int | None:
    """The seasonal period to use: ``period`` if given, else the task's own, else (``detect``) one
    detected on the training part (:func:`detect_period`), else None. Always validated."""
    if period is None:
        period = getattr(task, "period", None)
    if period is None and detect:
        part = task.training_part()
        period = None if part is None else detect_period(part)
        if period is not None and period > period_limit(task):
            period = None
    return None if period is None else check_period(task, period)


# ---------------------------------------------------------------- one-step baselines and skill

def persistence(task: Task) -> np.ndarray:
    """Persistence forecasts of the held-out targets Y: x_{t+1} predicted by x_t, (N, T, C)."""
    X, Y = task.eval_set()
    _need_same_channels(X.shape[2], Y.shape[2], "persistence")
    return X.copy()


def seasonal_naive(task: Task, period: int) -> np.ndarray:
    """Seasonal naive forecasts of the held-out targets: x_{t+1} by x_{t+1-m}, (N, T, C)."""
    m = check_period(task, period)
    X, Y = task.eval_set()
    _need_same_channels(X.shape[2], Y.shape[2], "seasonal naive")
    T = X.shape[1]
    rows = task.held_out_rows(m - 1)  # row (m - 1) + j is x_j
    return np.ascontiguousarray(rows[:, :T])  # x_{t+1-m} sits at row (m - 1) + t + 1 - m = t


def _need_same_channels(n_in: int, n_out: int, what: str) -> None:
    if n_in != n_out:
        raise ValueError(f"{what} needs the inputs to be the previous targets: this task has {n_in} input and "
                         f"{n_out} output channels")


def scores(F: np.ndarray, Y: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MSE, MAE and MASE of forecasts F against targets Y (..., C), in float64."""
    e = np.asarray(F, np.float64) - np.asarray(Y, np.float64)
    mae = np.mean(np.abs(e).reshape(-1, e.shape[-1]), axis=0)
    return {"mse": float(np.mean(e * e)), "mae": float(np.mean(mae)), "mase": float(np.mean(mae / scale))}


def baselines(task: Task, period=None, detect: bool = False, warmup=None, fits: Classical | None = None) -> dict:
    """The naive and classical baselines on the held-out steps the models are scored on.

    Parameters
    ----------
    task : Task
    period : int, optional
        Seasonal period in rows; default the task's own (:func:`resolve_period`).
    detect : bool
        Detect a period on the training part when neither is given (``--data``).
    warmup : int, optional
        W: only the forecasts made after W true rows are scored (:func:`scored_steps`).
    fits : Classical, optional
        The classical forecasts already fitted (:func:`fit_classical`).

    Returns
    -------
    dict
        ``period`` (int or None), ``warmup``, ``scale`` (in-sample naive MAE per channel),
        ``persistence``, with a period ``seasonal``, and the classical forecasts of
        :func:`classical_one_step` (``ar`` with ``orders``, ``var`` with ``order``, ``climatology``,
        ``anomaly``): each ``{"mse", "mae", "mase"}``; ``classical`` says which ran or why none did.
    """
    m = resolve_period(task, period, detect)
    W = check_warmup(task, warmup)
    steps = scored_steps(task, W)
    _, Y = task.eval_set()
    Y = Y[:, steps]
    scale = task.naive_scale()
    out = {"period": m, "warmup": W, "scale": [float(s) for s in scale],
           "persistence": scores(persistence(task)[:, steps], Y, scale)}
    if m is not None:
        out["seasonal"] = scores(seasonal_naive(task, m)[:, steps], Y, scale)
    forecasts, out["classical"] = classical_one_step(task, W, m, fits)
    for name, (F, info) in forecasts.items():
        out[name] = {**scores(F, Y, scale), **info}
    return out


BASELINES = ("persistence", "seasonal", "ar", "var", "climatology", "anomaly")  # in the order tables show them


def baseline_names(base: dict) -> list[str]:
    """The baselines present in a :func:`baselines` document, in :data:`BASELINES` order."""
    return [n for n in BASELINES if n in base]


def skill(model: Model, task: Task, period=None, base: dict | None = None, detect: bool = False,
          warmup=None) -> dict:
    """A model's one-step figures on the scored steps, next to the baselines.

    Parameters
    ----------
    model : Model
        Teacher or student.
    task : Task
    period, detect, warmup
        As in :func:`baselines` (ignored when ``base`` is given: its warm-up is used).
    base : dict, optional
        :func:`baselines` of this task, to compute them once for many models.

    Returns
    -------
    dict
        ``mse`` (:func:`scored_mse`), ``mae``, ``mase``, ``persistence_mse``, ``persistence_mase``,
        ``vs_persistence`` (MSE ratio, < 1 is better), with a period also ``seasonal_mse``,
        ``seasonal_mase``, ``vs_seasonal``; ``vs_naive`` (ratio to the better naive forecast),
        ``vs_best`` and ``best_baseline`` (the baseline of lowest MSE, classical ones included),
        ``period``, and the flags ``beats_persistence``, ``beats_naive`` and ``beats_best``.
    """
    base = baselines(task, period, detect, warmup) if base is None else base
    X, Y = task.eval_set()
    steps = scored_steps(task, base["warmup"])
    ys, _ = predict(model, X)
    own = scores(ys[:, steps], Y[:, steps], np.asarray(base["scale"]))
    out = {**own, "period": base["period"], "persistence_mse": base["persistence"]["mse"],
           "persistence_mase": base["persistence"]["mase"],
           "vs_persistence": _ratio(own["mse"], base["persistence"]["mse"])}
    best = base["persistence"]["mse"]
    if "seasonal" in base:
        out.update(seasonal_mse=base["seasonal"]["mse"], seasonal_mase=base["seasonal"]["mase"],
                   vs_seasonal=_ratio(own["mse"], base["seasonal"]["mse"]))
        best = min(best, base["seasonal"]["mse"])
    out["vs_naive"] = _ratio(own["mse"], best)
    out["beats_persistence"] = bool(own["mse"] < base["persistence"]["mse"])
    out["beats_naive"] = bool(own["mse"] < best)
    top = min(baseline_names(base), key=lambda n: base[n]["mse"])
    out.update(best_baseline=top, vs_best=_ratio(own["mse"], base[top]["mse"]),
               beats_best=bool(own["mse"] < base[top]["mse"]))
    return out


# ---------------------------------------------------------------- classical baselines

CLASSICAL_ROWS = 2000  # rows of a generated task's training signal the autoregressions are fitted on


def training_series(task: Task) -> np.ndarray | None:
    """One contiguous training series (rows, channels) float64 to fit the classical forecasts on:
    a series' training part; for sine and multisine the signal from the start of their training
    span; None for a task that has no such series."""
    part = task.training_part()
    if part is not None:
        return part
    if isinstance(task, Sine):
        X, _ = task.signal(np.zeros(1), CLASSICAL_ROWS)
    elif isinstance(task, MultiSine):
        X, _ = task.signal(np.zeros(1), max(CLASSICAL_ROWS, int(task.train_span / task.dt)))
    else:
        return None
    return X[0].astype(np.float64)


@dataclass(frozen=True)
class Classical:
    """The classical forecasts of one task, fitted once: per-channel AR, VAR (several channels),
    climatology (a series with a known period); ``why`` says what could not be fitted."""

    ar: object = None
    var: object = None
    clim: np.ndarray | None = None
    why: str = ""

    def doc(self) -> dict:
        out = {"fitted": [n for n in ("ar", "var", "climatology") if getattr(self, "clim" if n == "climatology"
                                                                              else n) is not None]}
        if self.why:
            out["not_fitted"] = self.why
        return out


def fit_classical(task: Task, warmup: int, period: int | None) -> Classical:
    """Fit the classical forecasts on ``task``'s training series. The AR order is chosen by AIC up to
    min(10 log10(n), W): an autoregression reads no more past than the warm-up gives every forecaster."""
    from . import classical

    if task.n_in != task.n_out:
        return Classical(why="the task's inputs are not its previous outputs")
    train = training_series(task)
    if train is None:
        return Classical(why=f"task {task.name} has no training series to fit on")
    clim = classical.climatology(train, period) if period is not None and isinstance(task, Series) else None
    try:
        top = min(classical.default_max_order(len(train)), warmup)
        ar = classical.fit_ar(train, top)
        var = classical.fit_var(train, top) if train.shape[1] > 1 else None
    except classical.NeedsStatsmodels as exc:
        return Classical(clim=clim, why=str(exc))
    return Classical(ar, var, clim)


def _linear_info(name: str, fit) -> dict:
    from . import classical

    return {"orders": classical.ar_orders(fit)} if name == "ar" else {"order": fit.order}


def classical_one_step(task: Task, warmup: int, period: int | None, fits: Classical | None = None
                       ) -> tuple[dict[str, tuple[np.ndarray, dict]], dict]:
    """One-step forecasts of the scored steps' targets by each classical forecast: ``{name: (F, info)}``
    (F: (N, scored steps, C); info: the AR orders, the VAR order) and the fits' :meth:`Classical.doc`."""
    from . import classical

    fits = fit_classical(task, warmup, period) if fits is None else fits
    rows = task.held_out_rows().astype(np.float64)
    steps = scored_steps(task, warmup)
    out = {}
    for name in ("ar", "var"):
        fit = getattr(fits, name)
        if fit is not None:
            out[name] = (fit.one_step(rows, int(steps[0]) + 1), _linear_info(name, fit))
    if fits.clim is not None:
        origin = task.eval_starts[:, None] + steps  # absolute row index of x_t
        out["climatology"] = (classical.climatology_forecast(fits.clim, origin + 1), {"period": period})
        out["anomaly"] = (classical.anomaly_persistence(fits.clim, rows[:, steps], origin, origin + 1),
                          {"period": period})
    return out, fits.doc()


def classical_rollout_errors(task: Task, horizon: int, warmup: int, period: int | None,
                             fits: Classical | None = None) -> dict[str, np.ndarray]:
    """Squared errors (N, K) of the classical forecasts from the rollouts' origins x_{W-1}."""
    from . import classical

    fits = fit_classical(task, warmup, period) if fits is None else fits
    X, target = _targets(task, horizon, warmup)
    rows = task.held_out_rows().astype(np.float64)
    out = {}
    for name in ("ar", "var"):
        fit = getattr(fits, name)
        if fit is not None:
            out[name] = _sq_errors(fit.run_free(rows[:, :warmup], horizon), target)
    if fits.clim is not None:
        origin = task.eval_starts[:, None] + warmup - 1
        index = origin + np.arange(1, horizon + 1)
        out["climatology"] = _sq_errors(classical.climatology_forecast(fits.clim, index), target)
        out["anomaly"] = _sq_errors(classical.anomaly_persistence(fits.clim, rows[:, warmup - 1:warmup, :], origin,
                                                                  index), target)
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (math.inf if a > 0 else 1.0)


# ---------------------------------------------------------------- rollouts

def rollout(model, X: np.ndarray, warmup: int, horizon: int, dtype=np.float32) -> np.ndarray:
    """Warm up on X[:, :warmup], then run free: predictions (N, warmup + horizon - 1, C).

    Step t < W reads the true row X[:, t]; step t >= W reads the prediction of step t - 1. The
    horizon-k forecast (of x_{W-1+k}) is ``out[:, W - 2 + k]``; ``out[:, :W]`` are the
    teacher-forced predictions, equal to :func:`ternq.train.predict` bit for bit.

    Parameters
    ----------
    model : Model or Deployable
        A teacher or student (effective parameters, compiled cell rollout), or a deployable
        student (:func:`ternq.kernels.infer.rollout`, float32 only, bit-identical to the student).
    X : np.ndarray (N, T, C)
        Sequences whose first ``warmup`` rows are the warm-up; T >= warmup.
    warmup, horizon : int
        W >= 1 true steps; K >= 1 forecasts (K - 1 free steps).
    dtype : float32 or float64
        The cell's working precision (float64 for checks against an oracle).
    """
    warmup = _positive_int(warmup, "warm-up")
    horizon = _positive_int(horizon, "horizon")
    I, H, O = model.dims
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[2] != I:
        raise ValueError(f"inputs must have shape (N, T, {I}), not {X.shape}")
    if warmup > X.shape[1]:
        raise ValueError(f"warm-up {warmup} is longer than the sequences: at most {X.shape[1]}")
    if horizon > 1 and I != O:
        raise ValueError(f"a rollout feeds the predictions back as inputs: this model has {I} inputs and {O} "
                         "outputs, so it cannot run free")
    free = horizon - 1
    N, steps = X.shape[0], warmup + free
    if isinstance(model, Model):
        p = model.params(dtype)
        Xw = np.ascontiguousarray(X[:, :warmup], p.dtype)
        hs = np.empty((steps + 1, N, H), p.dtype)
        ys = np.empty((steps, N, O), p.dtype)
        _rollout_kernel(p, Xw, I, H, O, DT, free, hs, ys)
        return ys.transpose(1, 0, 2).copy()
    if np.dtype(dtype) != np.float32:
        raise ValueError("a deployable model runs in float32 only")
    Xw = np.ascontiguousarray(X[:, :warmup], np.float32)
    ys = np.empty((N, steps, O), np.float32)
    hs = np.empty((N, steps + 1, H), np.float32)
    h2 = 2 * H
    infer.rollout(model.levels_W, model.scales[:h2], model.b, model.tau, model.levels_out, model.scales[h2:],
                  model.b_out, Xw, DT, free, ys, hs)
    return ys


def _targets(task: Task, horizon: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    X, Y = task.eval_set()
    return X, Y[:, warmup - 1 : warmup - 1 + horizon]


def rollout_errors(model, task: Task, horizon, warmup=None, dtype=np.float32) -> np.ndarray:
    """Squared error per held-out window and horizon, mean over channels: (N, K) float64.

    ``rollout_errors(...).mean(axis=0)`` is the MSE curve over horizons 1 .. K.
    """
    horizon, warmup = check_horizon(task, horizon, warmup)
    X, target = _targets(task, horizon, warmup)
    F = rollout(model, X, warmup, horizon, dtype)[:, warmup - 1 :]
    return _sq_errors(F, target)


def rollout_mse(model, task: Task, horizon, warmup=None) -> np.ndarray:
    """Held-out MSE at horizons 1 .. K after a warm-up (default :func:`default_warmup`): (K,).

    ``rollout_mse(model, task, K)[-1]`` is the ``rollout:K`` response of the factorial.
    """
    return rollout_errors(model, task, horizon, warmup).mean(axis=0)


def baseline_rollout_errors(task: Task, horizon, warmup=None, period=None, detect: bool = False,
                            fits: Classical | None = None) -> dict[str, np.ndarray]:
    """Squared errors (N, K) of the baselines from the same origins as :func:`rollout_errors`.

    ``persistence`` repeats x_{W-1}; ``seasonal`` (with a period m) forecasts x_{W-1+k} by
    x_{W-1+k-m*ceil(k/m)}, the last observed value in the same phase of the season; then the
    classical forecasts (:func:`classical_rollout_errors`; ``fits`` to reuse fitted ones).
    """
    horizon, warmup = check_horizon(task, horizon, warmup)
    X, target = _targets(task, horizon, warmup)
    _need_same_channels(X.shape[2], target.shape[2], "a naive rollout")
    out = {"persistence": _sq_errors(np.repeat(X[:, warmup - 1 : warmup], horizon, axis=1), target)}
    m = resolve_period(task, period, detect)
    if m is not None:
        rows = task.held_out_rows(m - 1)  # row (m - 1) + j is x_j
        k = np.arange(1, horizon + 1)
        j = warmup - 1 + k - m * ((k + m - 1) // m)
        out["seasonal"] = _sq_errors(rows[:, m - 1 + j], target)
    out.update(classical_rollout_errors(task, horizon, warmup, m, fits))
    return out


def _sq_errors(F: np.ndarray, Y: np.ndarray) -> np.ndarray:
    e = np.asarray(F, np.float64) - np.asarray(Y, np.float64)
    return np.mean(e * e, axis=2)


def trace(model, task: Task, horizon, warmup=None, window: int = 0) -> dict:
    """One held-out window's free-running trace, for a plot.

    Returns
    -------
    dict
        ``step`` (W + K - 1,) step indices, ``target`` and ``prediction`` (W + K - 1, C); steps
        before ``warmup`` (also returned) are teacher-forced, the rest free-running.
    """
    horizon, warmup = check_horizon(task, horizon, warmup)
    X, Y = task.eval_set()
    if not 0 <= window < X.shape[0]:
        raise ValueError(f"window must lie in 0 .. {X.shape[0] - 1}, not {window}")
    ys = rollout(model, X[window : window + 1], warmup, horizon)[0]
    n = warmup + horizon - 1
    return {"step": np.arange(n), "target": Y[window, :n].copy(), "prediction": ys, "warmup": warmup}


# ---------------------------------------------------------------- horizon summaries

def first_pass(curve: np.ndarray, bar) -> int | None:
    """First horizon k (1-based) at which ``curve[k - 1]`` exceeds ``bar`` (a number or a curve), or None."""
    above = np.flatnonzero(np.asarray(curve) > np.asarray(bar))
    return int(above[0]) + 1 if above.size else None


def valid_steps(errors: np.ndarray, threshold: float = VPT_THRESHOLD) -> np.ndarray:
    """Per window, how many leading horizons keep sqrt(squared error) <= threshold: (N,) int.

    ``errors`` (N, K) as :func:`rollout_errors`; a window that never passes counts K (censored).
    """
    errors = np.asarray(errors)
    bad = np.sqrt(errors) > threshold
    return np.where(bad.any(axis=1), bad.argmax(axis=1), errors.shape[1])


@dataclass
class Horizons:
    """Per-window squared errors of several forecasters on the same held-out windows and origins.

    ``errors[name]`` is (N, K) float64 (:func:`rollout_errors`), for every model and baseline.
    """

    task: str
    horizon: int
    warmup: int
    period: int | None
    errors: dict[str, np.ndarray]
    threshold: float = VPT_THRESHOLD
    lyapunov_per_step: float | None = None
    baselines: tuple[str, ...] = ("persistence", "seasonal")

    def mse(self, name: str) -> np.ndarray:
        """MSE at horizons 1 .. K: (K,)."""
        return self.errors[name].mean(axis=0)

    def mse_at(self, name: str, k: int) -> float:
        """MSE at horizon k (1-based): the ``rollout:k`` response."""
        if not 1 <= k <= self.horizon:
            raise ValueError(f"horizon must lie in 1 .. {self.horizon}, not {k}")
        return float(self.mse(name)[k - 1])

    def summary(self, name: str) -> dict:
        """``passes_persistence`` (first horizon whose MSE exceeds persistence's, None if none up to K),
        with a period ``passes_seasonal`` (the same against seasonal naive), ``passes_threshold``
        (first horizon with sqrt(MSE) > threshold), and with a Lyapunov exponent ``vpt_lyapunov``
        (mean valid prediction time over windows, in Lyapunov times) with ``vpt_censored``
        (windows still valid at K: their time is a lower bound)."""
        curve = self.mse(name)
        out = {"passes_persistence": None if name == "persistence" else first_pass(curve, self.mse("persistence"))}
        if "seasonal" in self.errors:
            out["passes_seasonal"] = None if name == "seasonal" else first_pass(curve, self.mse("seasonal"))
        out["passes_threshold"] = first_pass(np.sqrt(curve), self.threshold)
        if self.lyapunov_per_step is not None:
            steps = valid_steps(self.errors[name], self.threshold)
            out["vpt_lyapunov"] = float(np.mean(steps) * self.lyapunov_per_step)
            out["vpt_censored"] = int(np.sum(steps == self.horizon))
        return out

    def to_dict(self) -> dict:
        """JSON-safe: settings, the MSE curve of every forecaster and its summary."""
        return {"task": self.task, "horizon": self.horizon, "warmup": self.warmup, "period": self.period,
                "windows": int(next(iter(self.errors.values())).shape[0]), "threshold": self.threshold,
                "lyapunov_per_step": self.lyapunov_per_step,
                "mse": {n: [float(v) for v in self.mse(n)] for n in self.errors},
                "summary": {n: self.summary(n) for n in self.errors}}


def horizon_curves(models: Mapping[str, object], task: Task, horizon, warmup=None, period=None,
                   threshold: float = VPT_THRESHOLD, detect: bool = False) -> Horizons:
    """Rollout errors of every model and of the naive baselines on the same windows and origins.

    Parameters
    ----------
    models : mapping of name to Model or Deployable
        E.g. ``{"teacher": teacher, "config 6": student}``; names must not be a baseline's.
    task : Task
    horizon, warmup : int
        K forecasts after W true steps (:func:`check_horizon`; default :func:`default_warmup`).
    period : int, optional
        Seasonal period (default the task's; :func:`resolve_period`).
    threshold : float
        The normalised-RMSE bar of ``passes_threshold`` and the valid prediction time.
    """
    horizon, warmup = check_horizon(task, horizon, warmup)
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, not {threshold}")
    base = baseline_rollout_errors(task, horizon, warmup, period, detect)
    clash = set(models) & set(base)
    if clash:
        raise ValueError(f"model names clash with the baselines: {', '.join(sorted(clash))}")
    errors = {name: rollout_errors(m, task, horizon, warmup) for name, m in models.items()}
    errors.update(base)
    return Horizons(task.name, horizon, warmup, resolve_period(task, period, detect), errors, float(threshold),
                    task.lyapunov_per_step, tuple(base))
