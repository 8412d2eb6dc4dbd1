import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ternq.experiment.effects import Design
from ternq.stats import mean_ci, t975

SEEDS = Design(3)  # the notes' 2^3, config k+1 in row k
EFFECTS = ("A", "B", "C", "AB", "AC", "BC", "ABC")


def effects(y):
    return SEEDS.effects(y, max_order=3)


def signs():
    return SEEDS.matrix()


def textbook(y):
    """Yates' algorithm on the 8 responses in standard order (A fastest), divided by 4."""
    v = list(y)
    for _ in range(3):
        v = [v[i] + v[i + 1] for i in range(0, 8, 2)] + [v[i + 1] - v[i] for i in range(0, 8, 2)]
    # Yates output order: total, A, B, AB, C, AC, BC, ABC
    names = ["I", "A", "B", "AB", "C", "AC", "BC", "ABC"]
    return {n: c / 4 for n, c in zip(names, v, strict=True) if n != "I"}


def test_hand_made_table():
    # y = 10 + 0.5 A - 0.25 B C in coded units: effects are twice the coefficients
    y = [10 + 0.5 * a - 0.25 * b * c for c, b, a in itertools.product((-1, 1), repeat=3)]
    e = effects(y)
    assert e["A"] == pytest.approx(1.0)
    assert e["BC"] == pytest.approx(-0.5)
    for name in ("B", "C", "AB", "AC", "ABC"):
        assert e[name] == pytest.approx(0.0, abs=1e-12)


@given(st.lists(st.floats(-5, 5), min_size=8, max_size=8))
def test_effects_equal_yates(y):
    got, want = effects(y), textbook(y)
    for name in EFFECTS:
        assert got[name] == pytest.approx(want[name], abs=1e-9)


def test_sign_table_is_the_seeds_numbering():
    s = signs()
    # config 1: all low; config 2: shaped; config 3: distill; config 5: wide; config 8: all high
    assert s[0].tolist() == [-1, -1, -1] and s[1].tolist() == [1, -1, -1]
    assert s[2].tolist() == [-1, 1, -1] and s[4].tolist() == [-1, -1, 1] and s[7].tolist() == [1, 1, 1]


def test_mean_ci():
    ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert ci["mean"] == 2.5 and ci["lo"] == pytest.approx(2.5 - half) and ci["hi"] == pytest.approx(2.5 + half)
    assert np.isnan(mean_ci([1.0])["lo"])
    assert t975(1000) == pytest.approx(1.962, abs=1e-3) and t975(31) == pytest.approx(2.040, abs=2e-3)
