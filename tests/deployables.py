"""Deployables of every weight format made directly from random levels and scales (seeded Generator streams),
and the training forward they must reproduce."""

import numpy as np

from ternq import formats
from ternq.deploy import Deployable
from ternq.kernels.cell import forward
from ternq.train import DT


def random_levels(rng: np.random.Generator, fmt: formats.Format, size) -> np.ndarray:
    """Levels drawn uniformly from the format's values (binary: +-1; otherwise -qmax..qmax)."""
    if fmt.qmax == formats.BINARY:
        return rng.choice(np.array([-1, 1], np.int8), size=size)
    return rng.integers(-fmt.qmax, fmt.qmax + 1, size=size).astype(np.int8)


def random_deployable(rng: np.random.Generator, weight_format: str, n_in: int, hidden: int, n_out: int,
                      task: dict | None = None) -> Deployable:
    """A deployable whose row scales keep pre-activations of order one (|level| up to qmax, I + H columns)."""
    fmt = formats.get(weight_format)
    top = max(1, fmt.qmax)
    n_rows = 2 * hidden + n_out
    width = np.r_[np.full(2 * hidden, n_in + hidden), np.full(n_out, hidden)]
    scales = (rng.uniform(0.5, 2.0, n_rows) / (top * np.sqrt(width)) * rng.choice([1, 1, 1, -1], n_rows))
    return Deployable(n_in, hidden, n_out, random_levels(rng, fmt, (2 * hidden, n_in + hidden)),
                      random_levels(rng, fmt, (n_out, hidden)), scales.astype(np.float32),
                      rng.normal(0, 0.3, 2 * hidden).astype(np.float32),
                      rng.uniform(0.3, 3.0, hidden).astype(np.float32), rng.normal(0, 0.1, n_out).astype(np.float32),
                      dict(task or {}), weight_format=weight_format)


def training_forward(p: np.ndarray, X: np.ndarray, dims) -> tuple[np.ndarray, np.ndarray]:
    """The training forward (:func:`ternq.kernels.cell.forward`) on effective parameters p: (ys (N,T,O),
    hs (N,T+1,H)), batch-major."""
    I, H, O = dims
    X = np.ascontiguousarray(X, np.float32)
    N, T = X.shape[:2]
    hs = np.empty((T + 1, N, H), np.float32)
    gs, cs = np.empty((T, N, H), np.float32), np.empty((T, N, H), np.float32)
    ys = np.empty((T, N, O), np.float32)
    forward(p, X, I, H, O, DT, hs, gs, cs, ys, np.empty((I + H, 2 * H), np.float32))
    return np.ascontiguousarray(ys.transpose(1, 0, 2)), np.ascontiguousarray(hs.transpose(1, 0, 2))
