"""Integer-only inference of a deployed quantized CfC: the arithmetic of ``ternq export --format c-int``.

Every value is an int32 in a fixed-point format (see :mod:`ternq.device.fixed`
for the formats and how a model is converted); products are formed in int64
and brought back with a rounding right shift, ``(v + 2^(k-1)) >> k`` (an
arithmetic shift: floor). One step, for rows r of the gate (0..H-1) and
candidate (H..2H-1), levels q_rj and z = [clamp(x) ; h]::

    acc_r = sum_j q_rj z_j         (exact, int32; adds and subtracts only for ternary and binary)
    pre_r = clamp(b_r + rshr(acc_r * m_r, k_r), +-2^30)               (Q16)
    g_i   = sigmoid_q(pre_i),  c_i = tanh_q(pre_{H+i})                (Q16, table)
    h_i   = clamp(rshr(rshr((2^16 - g_i) * h_i, 16) * D_i, 30) + rshr(g_i * c_i, 16), +-2^16)
    y_o   = clamp(bo_o + rshr(acc_o * m_o, k_o), int32)               (acc_o over the new h)

The C emitted by :mod:`ternq.device.c99` performs these operations on the
same integers, so the two agree bit for bit (tests/test_device.py), and
tests/oracle_int.py re-derives them in plain Python integers.
"""

import numpy as np
from numba import njit

FRAC = 16  # Q15.16: inputs, hidden state, pre-activations, gate, candidate, biases, outputs
ONE = 1 << FRAC
DECAY_FRAC = 30  # decay factors in Q1.30
PRE_MAX = 1 << 30  # pre-activations are clamped to +-16384.0
TABLE_STEP = 11  # sigmoid table step 2^-5 = 2^(TABLE_STEP - FRAC)
TABLE_LEN = 513  # sigmoid(-x) for x = k / 32, k = 0..512 (x up to 16)
SIG_SAT = (TABLE_LEN - 1) << TABLE_STEP  # |pre| >= 16.0: sigmoid saturates
TANH_SAT = SIG_SAT >> 1  # |pre| >= 8.0: tanh saturates


@njit(cache=True, nogil=True)
def rshr(v, k):
    """Rounding arithmetic right shift of an int64 by k >= 1: floor((v + 2^(k-1)) / 2^k)."""
    return (v + (np.int64(1) << (k - 1))) >> k


@njit(cache=True, nogil=True)
def _lo(a, table):
    """2^16 sigmoid(-a / 2^16) for 0 <= a < SIG_SAT, by linear interpolation in the table."""
    k = a >> TABLE_STEP
    f = a & ((1 << TABLE_STEP) - 1)
    t0 = np.int64(table[k])
    t1 = np.int64(table[k + 1])
    return t0 + (((t1 - t0) * f + (1 << (TABLE_STEP - 1))) >> TABLE_STEP)


@njit(cache=True, nogil=True)
def sigmoid_q(p, table):
    """Q16 sigmoid of a Q16 pre-activation (|p| <= 2^30)."""
    a = -p if p < 0 else p
    lo = np.int64(0) if a >= SIG_SAT else _lo(a, table)
    return ONE - lo if p >= 0 else lo


@njit(cache=True, nogil=True)
def tanh_q(p, table):
    """Q16 tanh of a Q16 pre-activation, as 2 sigmoid(2p) - 1 from the same table."""
    a = -p if p < 0 else p
    lo = np.int64(0) if a >= TANH_SAT else _lo(a << 1, table)
    th = ONE - 2 * lo
    return th if p >= 0 else -th


@njit(cache=True, nogil=True)
def run(tW, mW, kW, bW, D, tO, mO, kO, bO, table, x_max, Xq, ys, hs):
    """Run the integer cell over sequences Xq (N, T, I) from h_0 = 0.

    Parameters
    ----------
    tW : int8 (2H, I+H)
        Levels of the gate and candidate rows; columns [x ; h].
    mW, kW : int64 (2H,)
        Row scale s_r = mW[r] * 2^-kW[r] (kW >= 1).
    bW : int64 (2H,)
        Biases, Q16.
    D : int64 (H,)
        Decay factors exp(-dt / (|tau| + 1e-6)), Q30.
    tO : int8 (O, H); mO, kO, bO : int64 (O,)
        Output levels, scales (as above) and biases (Q16).
    table : int64 (TABLE_LEN,)
        2^16 sigmoid(-k / 32), rounded.
    x_max : int
        Inputs are clamped to +-x_max (Q16) so that no sum can overflow int32 (see
        :func:`ternq.device.fixed.IntModel.from_deployable`).
    Xq : int32 (N, T, I)
        Inputs, Q16.
    ys : int32 (N, T, O), hs : int32 (N, T+1, H)
        Outputs: predictions (Q16) and hidden states (Q16; hs[:, 0] = 0).
    """
    N, T, I = Xq.shape[0], Xq.shape[1], Xq.shape[2]
    H = D.shape[0]
    O = bO.shape[0]
    z = np.empty(I + H, np.int64)
    hs[:, 0, :] = 0
    for n in range(N):
        for t in range(T):
            for j in range(I):
                v = np.int64(Xq[n, t, j])
                z[j] = x_max if v > x_max else (-x_max if v < -x_max else v)
            for j in range(H):
                z[I + j] = hs[n, t, j]
            for i in range(H):
                g = sigmoid_q(_pre(tW, mW, kW, bW, z, i), table)
                c = tanh_q(_pre(tW, mW, kW, bW, z, H + i), table)
                a = rshr(rshr((ONE - g) * z[I + i], FRAC) * D[i], DECAY_FRAC)
                h = a + rshr(g * c, FRAC)
                hs[n, t + 1, i] = ONE if h > ONE else (-ONE if h < -ONE else h)
            for o in range(O):
                acc = np.int64(0)
                for i in range(H):
                    q = tO[o, i]
                    if q != 0:
                        acc += np.int64(q) * hs[n, t + 1, i]
                y = bO[o] + rshr(acc * mO[o], kO[o])
                lim = np.int64(2147483647)
                ys[n, t, o] = lim if y > lim else (-lim - 1 if y < -lim - 1 else y)


@njit(cache=True, nogil=True)
def _pre(tW, mW, kW, bW, z, r):
    acc = np.int64(0)
    for j in range(z.shape[0]):
        q = tW[r, j]
        if q != 0:
            acc += np.int64(q) * z[j]
    p = bW[r] + rshr(acc * mW[r], kW[r])
    return PRE_MAX if p > PRE_MAX else (-PRE_MAX if p < -PRE_MAX else p)
