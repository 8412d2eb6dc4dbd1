"""Fixed-point (integer-only) form of a deployed quantized CfC: the Q formats and the conversion.

Formats (int32 storage, int64 products, rounding right shifts)::

    x, h, pre-activations, gate, candidate, biases, y   Q15.16   (1.0 = 65536)
    decay factors exp(-dt / (|tau| + 1e-6))             Q1.30    (1.0 = 2^30)
    row scales s_r = m_r * 2^-k_r                       |m_r| in [2^30, 2^31): the float32 scale exactly
    sigmoid table  2^16 sigmoid(-k / 32), k = 0..512    uint16 (1,026 bytes), linear interpolation

Why these: the state and the activations live in [-1, 1], so Q16 keeps 16 bits
below the point (a step of 1.5e-5, far below the ternary students' errors) and
leaves 15 bits of headroom for inputs and sums; a float32 scale has a 24-bit
mantissa, so the 31-bit multiplier with a per-row shift holds it exactly;
the decay factors sit just below 1, where Q30 keeps their float32 precision.
tanh(x) is 2 sigmoid(2x) - 1 from the same table. Pre-activations are clamped
to +-16384, hidden states to +-1 and inputs to +-``x_max``, chosen per model from
its levels so that every row's sum fits int32: ``X_r x_max + H_r 2^16 <= 2^31 - 1``
with X_r and H_r the sums of |level| over the row's input and hidden columns (an
output row needs ``H_r 2^16 <= 2^31 - 1``). No sum or product can overflow; a model
whose hidden columns alone could (an int8 row of 258 levels of 127) is refused.

The arithmetic itself is :mod:`ternq.kernels.infer_int` (Numba), emitted as C
by :mod:`ternq.device.c99`; :func:`IntModel.from_deployable` is deterministic
(exact conversions, a table computed in decimal arithmetic), so the integers
are the same on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, getcontext

import numpy as np

from ..deploy import Deployable
from ..kernels import infer_int
from ..kernels.infer_int import DECAY_FRAC, FRAC, ONE, PRE_MAX, TABLE_LEN, TABLE_STEP

INT32_MAX = 2**31 - 1


def sigmoid_table() -> np.ndarray:
    """round(2^16 sigmoid(-k / 32)) for k = 0..512 (int64), computed in 40-digit decimal arithmetic."""
    getcontext().prec = 40
    step = Decimal(1) / Decimal(1 << (FRAC - TABLE_STEP))
    out = [int((Decimal(ONE) / (1 + (step * k).exp())).to_integral_value()) for k in range(TABLE_LEN)]
    return np.array(out, np.int64)


_TABLE = sigmoid_table()


def scale_parts(s: float) -> tuple[int, int]:
    """(m, k) with s == m * 2^-k exactly for a float32 s: |m| in [2^30, 2^31), 1 <= k <= 62; (0, 1) for 0
    or for |s| < 2^-32 (below what the format holds). ValueError if |s| >= 2^30 or not finite."""
    s = float(np.float32(s))
    if not math.isfinite(s):
        raise ValueError(f"scale {s} is not finite")
    if s == 0.0:
        return 0, 1
    f, e = math.frexp(s)  # s = f 2^e, 0.5 <= |f| < 1
    m, k = int(f * 2**31), 31 - e  # exact: f has 24 significant bits
    if k > 62:
        return 0, 1
    if k < 1:
        raise ValueError(f"scale {s} is too large for the integer format")
    return m, k


def to_q(v: np.ndarray, frac: int, limit: int) -> np.ndarray:
    """round(v * 2^frac) (ties to even), clamped to +-limit, as int64."""
    q = np.rint(np.asarray(v, np.float64) * float(1 << frac))
    return np.clip(q, -limit, limit).astype(np.int64)


def input_bound(levels_W: np.ndarray, levels_out: np.ndarray, n_in: int) -> int:
    """The largest input magnitude x_max (Q16, at most PRE_MAX) for which no row sum can leave int32 (see the
    module docstring); 0 or less when even zero inputs could overflow."""
    a = np.abs(levels_W.astype(np.int64))
    lx, lh = a[:, :n_in].sum(axis=1), a[:, n_in:].sum(axis=1)
    if np.abs(levels_out.astype(np.int64)).sum(axis=1).max(initial=0) * ONE > INT32_MAX:
        return 0
    room = INT32_MAX - lh * ONE
    if room.min(initial=INT32_MAX) < 0:
        return 0
    per_row = np.where(lx > 0, room // np.maximum(lx, 1), PRE_MAX)
    return int(min(PRE_MAX, per_row.min(initial=PRE_MAX)))


@dataclass
class IntModel:
    """The integer constants of a deployed model (see the module docstring for the formats)."""

    n_in: int
    hidden: int
    n_out: int
    levels_W: np.ndarray  # int8 (2H, I+H)
    levels_out: np.ndarray  # int8 (O, H)
    mW: np.ndarray  # int64 (2H,)
    kW: np.ndarray
    bW: np.ndarray  # Q16
    decay: np.ndarray  # Q30 (H,)
    mO: np.ndarray
    kO: np.ndarray
    bO: np.ndarray  # Q16
    x_max: int  # inputs clamped to +-x_max (Q16)
    table: np.ndarray
    weight_format: str = "ternary"

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.n_in, self.hidden, self.n_out

    @classmethod
    def from_deployable(cls, dep: Deployable) -> IntModel:
        """Convert a deployed float model; ValueError when a value does not fit the formats."""
        I, H, O = dep.dims
        parts = [scale_parts(s) for s in dep.scales]
        m = np.array([p[0] for p in parts], np.int64)
        k = np.array([p[1] for p in parts], np.int64)
        x_max = input_bound(dep.levels_W, dep.levels_out, I)
        if x_max <= 0:
            raise ValueError(f"the {dep.weight_format} levels of hidden size {H} can overflow the integer format's "
                             "int32 sums")
        for name, v in (("biases", dep.b), ("output biases", dep.b_out)):
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{name} are not finite")
        return cls(I, H, O, dep.levels_W.astype(np.int8), dep.levels_out.astype(np.int8), m[: 2 * H].copy(),
                   k[: 2 * H].copy(), to_q(dep.b, FRAC, PRE_MAX), to_q(dep.decay(), DECAY_FRAC,
                                                                      1 << DECAY_FRAC),
                   m[2 * H:].copy(), k[2 * H:].copy(), to_q(dep.b_out, FRAC, PRE_MAX), int(x_max), _TABLE.copy(),
                   dep.weight_format)

    def quantize_inputs(self, X: np.ndarray) -> np.ndarray:
        """Float inputs (N, T, I) as Q16 int32, rounded to nearest (ties to even) and clamped to +-x_max."""
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[2] != self.n_in:
            raise ValueError(f"inputs must have shape (N, T, {self.n_in}), not {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("inputs must be finite")
        return to_q(X.astype(np.float32), FRAC, self.x_max).astype(np.int32)

    def predict_q(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer predictions (N, T, O) and hidden states (N, T+1, H), Q16 int32, on Q16 inputs Xq (N, T, I).

        Inputs beyond +-x_max are clamped (as the C does).
        """
        Xq = np.asarray(Xq)
        if Xq.ndim != 3 or Xq.shape[2] != self.n_in:
            raise ValueError(f"inputs must have shape (N, T, {self.n_in}), not {Xq.shape}")
        if not np.issubdtype(Xq.dtype, np.integer) or (Xq.size and (Xq.min() < -2**31 or Xq.max() > INT32_MAX)):
            raise ValueError("integer inputs must be int32 values")
        Xq = np.ascontiguousarray(Xq, np.int32)
        N, T = Xq.shape[:2]
        ys = np.empty((N, T, self.n_out), np.int32)
        hs = np.empty((N, T + 1, self.hidden), np.int32)
        infer_int.run(self.levels_W, self.mW, self.kW, self.bW, self.decay, self.levels_out, self.mO, self.kO,
                      self.bO, self.table, np.int64(self.x_max), Xq, ys, hs)
        return ys, hs

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Float predictions (N, T, O) of the integer model on float inputs: quantize, run, divide by 2^16."""
        ys, _ = self.predict_q(self.quantize_inputs(X))
        return ys.astype(np.float64) / ONE

    def mse(self, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        """(MSE, integer predictions Q16) on X against Y."""
        ys, _ = self.predict_q(self.quantize_inputs(X))
        err = ys.astype(np.float64) / ONE - np.asarray(Y, np.float64)
        return float(np.mean(err * err)), ys
