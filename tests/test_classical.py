"""The classical forecasts against statsmodels' own predictions and against direct computations."""

import numpy as np
import pytest

from ternq import classical as cl

sm = pytest.importorskip("statsmodels.tsa.ar_model")
from statsmodels.tsa.api import VAR  # noqa: E402


def _series(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 2))
    A = np.array([[0.6, 0.2], [-0.1, 0.5]])
    for t in range(2, n):
        x[t] = 0.5 + A @ x[t - 1] - 0.2 * x[t - 2] + rng.normal(size=2) * 0.3
    return x


def test_ar_equals_statsmodels_one_step_and_free_running():
    x = _series(460)
    train = x[:400]
    fit = cl.fit_ar(train, 8)
    for c in range(2):
        sel = sm.ar_select_order(train[:, c], maxlag=8, ic="aic", trend="c")
        res = sel.model.fit()
        assert cl.ar_orders(fit)[c] == len(res.params) - 1
        full = res.apply(x[:, c], refit=False)
        one = full.predict(start=400, end=459, dynamic=False)
        np.testing.assert_allclose(fit.one_step(x[None], 400)[0, :, c], one, rtol=0, atol=1e-12)
        free = full.predict(start=400, end=419, dynamic=True)
        np.testing.assert_allclose(fit.run_free(x[None, :400], 20)[0, :, c], free, rtol=0, atol=1e-12)


def test_var_equals_statsmodels_forecast():
    train = _series(400, seed=1)
    fit = cl.fit_var(train, 8)
    res = VAR(train).fit(maxlags=8, ic="aic", trend="c")
    assert fit.order == res.k_ar
    np.testing.assert_allclose(fit.run_free(train[None], 15)[0], res.forecast(train[-res.k_ar:], 15),
                               rtol=0, atol=1e-12)


def test_ar2_forecasts_a_sine_exactly():
    # x_{t+1} = 2 cos(w) x_t - x_{t-1}: a pure sinusoid is an AR(2) without noise
    t = np.arange(600) * 0.1
    x = np.sin(t)[:, None]
    fit = cl.fit_ar(x[:500], 4)
    err = fit.one_step(x[None], 500)[0] - x[500:]
    assert np.max(np.abs(err)) < 1e-8


def test_one_step_needs_its_past():
    fit = cl.Linear(np.zeros(1), np.ones((3, 1, 1)) * 0.1, "ar")
    with pytest.raises(ValueError, match="3 rows of past"):
        fit.one_step(np.zeros((1, 10, 1)), 2)


def test_climatology_and_anomaly_persistence_by_hand():
    train = np.arange(12, dtype=float)[:, None]  # period 4: positions 0..3
    clim = cl.climatology(train, 4)
    np.testing.assert_array_equal(clim[:, 0], [4.0, 5.0, 6.0, 7.0])  # mean of (0, 4, 8), (1, 5, 9), ...
    np.testing.assert_array_equal(cl.climatology_forecast(clim, np.array([13, 14]))[:, 0], [5.0, 6.0])
    # at row 13 (value 20, climatology 5): anomaly 15 persists to row 15 (climatology 7)
    got = cl.anomaly_persistence(clim, np.array([[20.0]]), np.array([13]), np.array([15]))
    assert got[0, 0] == 22.0
    # an offset shifts the positions
    clim2 = cl.climatology(train, 4, offset=1)
    np.testing.assert_array_equal(clim2[:, 0], [7.0, 4.0, 5.0, 6.0])


def test_default_max_order():
    assert cl.default_max_order(1000) == 30
    assert cl.default_max_order(8) == 2
