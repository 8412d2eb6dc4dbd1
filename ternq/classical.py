"""The forecasts a statistician tries first: linear autoregression, climatology, anomaly persistence.

Every function works on plain arrays of rows (time along axis 0 of a series, axis 1 of a batch of
windows), so the same forecasts serve the one-step scores and the horizon curves of any task.

- **AR(p)** per channel, fitted by least squares (conditional maximum likelihood, with a constant)
  on the training part, the order chosen by AIC from 1 to ``max_order`` (default 10 log10(n), the
  rule of R's ``ar``). Fitted by statsmodels (``ar_select_order``); the forecasts apply its
  coefficients to the true past rows (one step) or recursively to their own output (k steps), as
  statsmodels' ``predict`` does, vectorised over windows.
- **VAR(p)** for a series of several channels: one regression of every channel on the last p rows of
  all channels, order by AIC (statsmodels ``VAR``).
- **Climatology**: the training part's mean at each position of a known season (period m rows),
  aligned to the series' absolute row index.
- **Anomaly persistence**: the deviation from climatology persists,
  x_{t+k} = clim(t+k) + (x_t - clim(t)).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


class NeedsStatsmodels(ImportError):
    """statsmodels (the optional extra ``data``) is needed for the autoregressions."""


def _statsmodels():
    try:
        from statsmodels.tsa.api import VAR
        from statsmodels.tsa.ar_model import ar_select_order
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise NeedsStatsmodels("the AR and VAR baselines need statsmodels: pip install 'ternq[data]'") from None
    return ar_select_order, VAR


def default_max_order(n: int) -> int:
    """10 log10(n), at least 1 and at most n // 4 (R's ``ar`` default)."""
    return max(1, min(int(10 * math.log10(max(n, 2))), n // 4))


@dataclass(frozen=True)
class Linear:
    """A fitted linear autoregression: x_t = const + sum_i coef[i] @ x_{t-1-i}.

    const : (C,)        intercept per channel
    coef  : (p, C, C)   coef[i][c, d]: weight of channel d, i + 1 rows back, in channel c's forecast
    """

    const: np.ndarray
    coef: np.ndarray
    kind: str  # "ar" (one per channel: coef diagonal) or "var"

    @property
    def order(self) -> int:
        return int(self.coef.shape[0])

    def one_step(self, rows: np.ndarray, first: int) -> np.ndarray:
        """Forecasts of rows[:, t] from the true rows before it, for t = first .. L-1: (N, L - first, C)."""
        rows = np.asarray(rows, np.float64)
        p = self.order
        if first < p:
            raise ValueError(f"an AR({p}) forecast needs {p} rows of past, the first target has {first}")
        L = rows.shape[1]
        out = np.broadcast_to(self.const, (rows.shape[0], L - first, rows.shape[2])).copy()
        for i in range(p):
            past = rows[:, first - 1 - i:L - 1 - i]  # x_{t-1-i} for every target t
            out += past @ self.coef[i].T
        return out

    def run_free(self, past: np.ndarray, horizon: int) -> np.ndarray:
        """Forecasts 1..horizon steps after the last row of ``past`` (N, >= p, C), each fed back: (N, K, C)."""
        past = np.asarray(past, np.float64)
        p = self.order
        if past.shape[1] < p:
            raise ValueError(f"an AR({p}) forecast needs {p} rows of past, got {past.shape[1]}")
        hist = list(np.moveaxis(past[:, past.shape[1] - p:], 1, 0))  # x_{o-p+1} .. x_o, each (N, C)
        out = np.empty((past.shape[0], horizon, past.shape[2]))
        for k in range(horizon):
            y = np.broadcast_to(self.const, out[:, k].shape).copy()
            for i in range(p):
                y += hist[len(hist) - 1 - i] @ self.coef[i].T
            out[:, k] = y
            hist.append(y)
        return out


def fit_ar(train: np.ndarray, max_order: int | None = None) -> Linear:
    """One AR(p) per channel of ``train`` (n, C), each order by AIC; as a :class:`Linear` of the largest p."""
    ar_select_order, _ = _statsmodels()
    train = np.asarray(train, np.float64)
    n, C = train.shape
    top = default_max_order(n) if max_order is None else int(max_order)
    fits = []
    for c in range(C):
        with warnings.catch_warnings():  # a noiseless generated signal makes the longer lags collinear
            warnings.simplefilter("ignore")
            sel = ar_select_order(train[:, c], maxlag=top, ic="aic", trend="c")
            res = sel.model.fit()
        fits.append((float(res.params[0]), np.asarray(res.params[1:], np.float64)))
    p = max(len(phi) for _, phi in fits)
    coef = np.zeros((p, C, C))
    for c, (_, phi) in enumerate(fits):
        coef[:len(phi), c, c] = phi
    return Linear(np.array([k for k, _ in fits]), coef, "ar")


def ar_orders(fit: Linear) -> list[int]:
    """The order chosen for each channel of a per-channel AR (trailing zero lags dropped)."""
    nz = np.abs(np.diagonal(fit.coef, axis1=1, axis2=2)) > 0  # (p, C)
    return [int(np.max(np.nonzero(nz[:, c])[0]) + 1) if nz[:, c].any() else 0 for c in range(nz.shape[1])]


def fit_var(train: np.ndarray, max_order: int | None = None) -> Linear:
    """A VAR(p) of ``train`` (n, C >= 2), the order by AIC (statsmodels ``VAR.fit(ic='aic')``)."""
    _, VAR = _statsmodels()
    train = np.asarray(train, np.float64)
    n, C = train.shape
    top = default_max_order(n) if max_order is None else int(max_order)
    top = max(1, min(top, (n - 1) // (C + 1) - 1))  # enough rows for every regression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = VAR(train).fit(maxlags=top, ic="aic", trend="c")
    coef = np.asarray(res.coefs, np.float64) if res.k_ar else np.zeros((0, C, C))
    return Linear(np.asarray(res.intercept, np.float64), coef, "var")


def climatology(train: np.ndarray, period: int, offset: int = 0) -> np.ndarray:
    """Mean of the training rows at each position of the season: (period, C), row j = positions j mod m.

    ``offset`` is the absolute index of train[0] (0 for a series' training part).
    """
    train = np.asarray(train, np.float64)
    pos = (offset + np.arange(train.shape[0])) % period
    clim = np.zeros((period, train.shape[1]))
    for j in range(period):
        at = train[pos == j]
        if not len(at):
            raise ValueError(f"climatology: the training part has no row at position {j} of a period of {period}")
        clim[j] = at.mean(axis=0)
    return clim


def climatology_forecast(clim: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Climatology at absolute row indices ``index`` (any shape): (*index.shape, C)."""
    return clim[np.asarray(index) % clim.shape[0]]


def anomaly_persistence(clim: np.ndarray, origin_rows: np.ndarray, origin_index: np.ndarray,
                        target_index: np.ndarray) -> np.ndarray:
    """clim(target) + (x_origin - clim(origin)); ``origin_rows`` (..., C), indices broadcast with them."""
    return climatology_forecast(clim, target_index) + (np.asarray(origin_rows, np.float64)
                                                       - climatology_forecast(clim, origin_index))
