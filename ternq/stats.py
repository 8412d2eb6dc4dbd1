"""Means over seeds with Student t intervals, and the seeds' 2^3 effects (a :class:`ternq.experiment.effects.Design`).

The 2^3 design has factors A = shaped gradient, B = trajectory distillation,
C = width, each at a low (-1) and high (+1) level. Configurations are numbered
as in the seeds: config 1 + a + 2 b + 4 c for levels a, b, c in {0, 1}.
Each effect is the textbook contrast over the 8 cells divided by 4
(the mean response at +1 minus the mean at -1, for main effects).
"""

from __future__ import annotations

import math

import numpy as np

from .experiment.effects import Design

SEEDS_DESIGN = Design(3)
FACTORS = ("A", "B", "C")
EFFECTS = ("A", "B", "C", "AB", "AC", "BC", "ABC")
EFFECT_NAMES = {"A": "shaped gradient", "B": "trajectory distillation", "C": "width",
                "AB": "shaped x distill", "AC": "shaped x width", "BC": "distill x width",
                "ABC": "shaped x distill x width"}

# two-sided 95% Student t quantiles, df = 1..30
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t (table to 30 degrees of freedom, Cornish-Fisher beyond)."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def signs() -> np.ndarray:
    """Sign table (8 configurations x 3 factors), row k is config k+1."""
    return SEEDS_DESIGN.matrix()


def effects(y: np.ndarray) -> dict[str, float]:
    """Main effects and interactions of the 8 responses ``y`` (config order 1..8)."""
    y = np.asarray(y, float)
    if y.shape != (8,):
        raise ValueError("need the 8 responses of a 2^3 design")
    return SEEDS_DESIGN.effects(y, max_order=3)


def mean_ci(values) -> dict[str, float]:
    """Mean and 95% t-interval of ``values`` (interval is nan with fewer than 2 values)."""
    v = np.asarray(values, float)
    n = len(v)
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": n}
    sd = float(v.std(ddof=1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n}
