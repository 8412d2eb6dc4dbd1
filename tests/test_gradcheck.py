import numpy as np
import oracle
import pytest

from ternq.gradcheck import TOLERANCE, check, numerical_grad, rel_err
from ternq.kernels.ternary import MASK_SEED, mask


def test_every_gradient_passes_well_below_the_bar():
    results = check(hidden=16, seed=3)
    assert {r.block for r in results} >= {"W_gate", "W_cand", "b_gate", "b_cand", "tau", "W_out", "b_out",
                                          "scales", "W_eff (trits frozen)"}
    assert any("traj" in r.model for r in results)
    # every parameter, not a sample
    teacher_rows = [r for r in results if r.model.startswith("teacher")]
    assert sum(r.checked for r in teacher_rows) == 2 * 16 * 17 + 3 * 16 + 16 + 1
    assert max(r.max_rel_err for r in results) < 1e-6 < TOLERANCE


def test_check_catches_a_wrong_gradient():
    """The finite differences disagree with a deliberately wrong gradient."""
    x = np.array([0.3, -1.2])

    def f(v):
        return float(np.sum(np.sin(v) * v))

    gn = numerical_grad(f, x.copy(), np.arange(2))
    right = np.sin(x) + x * np.cos(x)
    assert rel_err(right, gn).max() < 1e-9
    assert rel_err(right * 1.01, gn).max() > 5e-3


def test_mask_matches_the_seeds_formula():
    w = np.linspace(-2, 2, 101)
    got = np.array([mask(v, 0.8, 5.0, MASK_SEED) for v in w])
    np.testing.assert_allclose(got, oracle.seed_mask(w, 0.8, 5.0), rtol=1e-14)
    # peak at the zero/non-zero boundary |w/s| = 0.5, nothing at w = 0 for sharp beta
    assert mask(0.4, 0.8, 5.0, MASK_SEED) == pytest.approx(6 * 0.25 * 5.0) == pytest.approx(got.max())
    assert mask(0.0, 0.8, 5.0, MASK_SEED) == 0.0
