"""Inference of a deployed quantized CfC model: levels as int8, one float32 scale per row.

For row r with scale s_r and levels q_rj (ternary -1..1, binary +-1, intN -qmax..qmax)::

    pre[r] = b[r]
    for j over z = [x ; h_prev] in order:
        q_rj != 0:  pre[r] += z_j * (s_r * float32(q_rj))
        q_rj == 0:  nothing

Why this form and not ``s_r * sum_j q_rj z_j`` (one multiply per row, see
``factored=True``): the training forward (:func:`ternq.kernels.cell.forward`)
runs on the effective weights ``w_rj = s_r * float32(q_rj)`` (one float32
rounding) and accumulates ``pre[r] += z_j * w_rj`` in float32, in the order
j = 0 .. I+H-1 starting from b[r]; the form above forms the same w_rj and
performs *the same roundings in the same order*, so it is bit-identical to the
training forward. For ternary it is the add/subtract of ``z_j * s_r``: ``s * 1
== s``, ``s * -1 == -s`` and ``z * (-s) == -(z * s)`` exactly. Factoring the
scale out rounds differently (about 1e-7 relative), so it is offered only as
an option.

Skipping a zero level drops an addition of a signed zero, ``pre + (+-0.0)``,
which leaves ``pre`` unchanged unless ``pre`` is itself -0.0 (then ``-0.0 +
+0.0`` is +0.0). That needs b[r] == -0.0, which training never produces
(biases start at +0.0 and ``x - y`` is never -0.0 for x = +0.0); even then only
the sign of a zero could differ, never a value.

COUPLING: this kernel mirrors the accumulation order of
``ternq.kernels.cell.forward`` (inputs, then hidden units, ascending; output
``y = bout[o]`` then ``+= Wout[o, i] * h_i`` ascending) and its exact
expressions for the gate, candidate, decay and state update. If cell.forward
changes its summation order, change this kernel to match;
``tests/test_deploy.py`` checks bit-identity and will fail until you do.
"""

import numpy as np
from numba import njit

from .cell import exp, sigmoid, tanh

TAU_EPS = 1e-6  # as ternq.kernels.cell.TAU_EPS


@njit(cache=True, nogil=True)
def run(tW, sW, b, tau, tO, sO, bout, X, dt, factored, ys, hs):
    """Run the deployed cell over sequences X (N, T, I) from h_0 = 0.

    Parameters
    ----------
    tW : int8 (2H, I+H)
        Levels of the gate (rows 0..H-1) and candidate (rows H..2H-1) weights; columns [x ; h].
    sW : float32 (2H,)
        Row scales of tW.
    b, tau : float32 (2H,), (H,)
    tO : int8 (O, H), sO : float32 (O,), bout : float32 (O,)
        Output levels, their row scales and the output bias.
    X : float32 (N, T, I)
    dt : float
        The cell's time step (0.1 in ternq).
    factored : bool
        False (bit-identical to the training forward): ``pre += z_j * (s_r * q_rj)``.
        True: sum ``q_rj * z_j`` (adds and subtracts only for ternary and binary), multiply by ``s_r`` once.
    ys : float32 (N, T, O), hs : float32 (N, T+1, H)
        Outputs: predictions and hidden states (hs[:, 0] = 0).
    """
    _run(tW, sW, b, tau, tO, sO, bout, X, dt, factored, 0, ys, hs)


@njit(cache=True, nogil=True)
def rollout(tW, sW, b, tau, tO, sO, bout, X, dt, free, ys, hs):
    """Run the deployed cell on true inputs X (N, W, I), then ``free`` steps on its own predictions.

    The arrays are as in :func:`run` (not factored: the form that is bit-identical to training).
    Step t < W reads X[n, t]; step t >= W reads the prediction of step t - 1 (needs I == O).
    Outputs ys (N, W + free, O) and hs (N, W + free + 1, H), batch-major as :func:`run`;
    bit-identical to :func:`ternq.kernels.rollout.rollout` on the student's effective weights.
    """
    _run(tW, sW, b, tau, tO, sO, bout, X, dt, False, free, ys, hs)


@njit(cache=True, nogil=True)
def _run(tW, sW, b, tau, tO, sO, bout, X, dt, factored, free, ys, hs):
    """:func:`run` over X (N, T, I), then ``free`` steps on the last prediction (:func:`rollout`)."""
    N, T, I = X.shape[0], X.shape[1], X.shape[2]
    H = tau.shape[0]
    O = bout.shape[0]
    h2 = 2 * H
    ty = X.dtype.type
    one = ty(1.0)
    zero = ty(0.0)
    dt_ = ty(dt)
    eps = ty(TAU_EPS)
    decay = np.empty(H, X.dtype)
    for i in range(H):
        decay[i] = exp(-dt_ / (abs(tau[i]) + eps))
    z = np.empty(I + H, X.dtype)
    pre = np.empty(h2, X.dtype)
    hs[:, 0, :] = 0
    for n in range(N):
        for t in range(T + free):
            for j in range(I):
                z[j] = X[n, t, j] if t < T else ys[n, t - 1, j]  # free-running: the last prediction
            for j in range(H):
                z[I + j] = hs[n, t, j]
            for r in range(h2):
                s = sW[r]
                if factored:
                    acc = zero
                    for j in range(I + H):
                        q = tW[r, j]
                        if q != 0:
                            acc += z[j] * ty(q)
                    pre[r] = b[r] + acc * s
                else:
                    acc = b[r]
                    for j in range(I + H):
                        q = tW[r, j]
                        if q != 0:
                            acc += z[j] * (s * ty(q))
                    pre[r] = acc
            for i in range(H):
                gate = sigmoid(pre[i])
                cand = tanh(pre[H + i])
                hs[n, t + 1, i] = (one - gate) * hs[n, t, i] * decay[i] + gate * cand
            for o in range(O):
                s = sO[o]
                if factored:
                    acc = zero
                    for i in range(H):
                        q = tO[o, i]
                        if q != 0:
                            acc += hs[n, t + 1, i] * ty(q)
                    ys[n, t, o] = bout[o] + acc * s
                else:
                    y = bout[o]
                    for i in range(H):
                        q = tO[o, i]
                        if q != 0:
                            y += (s * ty(q)) * hs[n, t + 1, i]
                    ys[n, t, o] = y


@njit(cache=True, nogil=True)
def mse(ys, Y):
    """Mean squared error of ys (N, T, O) against Y, summed in float64 in the order of
    ``ternq.kernels.cell.mse`` (step, then sequence, then output) so the figure is identical."""
    N, T, O = ys.shape[0], ys.shape[1], ys.shape[2]
    sse = 0.0
    for t in range(T):
        for n in range(N):
            for o in range(O):
                e = np.float64(ys[n, t, o]) - np.float64(Y[n, t, o])
                sse += e * e
    return sse / (N * T * O)
