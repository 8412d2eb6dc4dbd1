"""Free-running rollouts of the CfC cell: warm up on true inputs, then feed the predictions back.

One kernel source for float32 (evaluation) and float64 (checks), chosen by the dtype of its
arrays, like :mod:`ternq.kernels.cell`. It is built from the cell's own pieces (``unpack``,
``work``, ``_decay``, ``_matvec_rows``, ``_squash``) in the order of ``cell._forward``, so the
teacher-forced part is the training forward bit for bit, and a free step differs from a
teacher-forced one only in where its input comes from.

COUPLING: :func:`rollout` repeats the step of ``ternq.kernels.cell._forward`` (bias, then
inputs, then hidden units through ``_matvec_rows``; ``_squash``; the state update; the output
sum). If that step changes, change this one; ``tests/test_forecast.py`` checks bit-identity with
the training forward and fails until you do.
"""

import numpy as np
from numba import njit

from .cell import _decay, _matvec_rows, _squash, unpack, work


@njit(cache=True, nogil=True, error_model="numpy")
def rollout(p, X, n_in, hidden, n_out, dt, free, hs, ys):
    """Run the cell on true inputs X, then ``free`` more steps on its own predictions.

    Parameters
    ----------
    p : float32 or float64 (n_params,)
        Effective parameters (the float weights, or a student's scaled trits).
    X : (B, W, n_in), the dtype of p
        Warm-up inputs: step t < W reads X[:, t].
    n_in, hidden, n_out : int
        Sizes; a free step feeds the n_out predicted channels back as the n_in inputs, so
        ``free > 0`` needs n_in == n_out.
    dt : float
        The cell's time step.
    free : int
        Free-running steps after the warm-up: step t >= W reads the prediction of step t - 1.
    hs : (W + free + 1, B, hidden), ys : (W + free, B, n_out)
        Outputs, time-major as :func:`ternq.kernels.cell.forward`: hidden states (hs[0] = 0)
        and predictions. With ``free == 0`` they equal ``forward``'s bit for bit.
    """
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    decay, _, A, R, s2, _, _, _, _ = work(X.shape[0], 0, n_in, hidden, n_out, p)
    B, Tw = X.shape[0], X.shape[1]
    z, h2 = n_in + hidden, 2 * hidden
    one = p.dtype.type(1.0)
    WT = np.empty((z, h2), p.dtype)
    for r in range(h2):
        for j in range(z):
            WT[j, r] = W[r, j]
    _decay(tau, p.dtype.type(dt), decay)
    hs[0, :, :] = 0
    Af = A.reshape(B * h2)
    Rf = R.reshape(B * h2)
    for t in range(Tw + free):
        for bb in range(B):
            a = A[bb]
            for r in range(h2):
                a[r] = b[r]
            if t < Tw:
                _matvec_rows(a, WT, X[bb, t], 0, n_in)
            else:
                _matvec_rows(a, WT, ys[t - 1, bb], 0, n_in)  # the previous prediction as this input
            _matvec_rows(a, WT, hs[t, bb], n_in, hidden)
        _squash(Af, s2, Rf)
        for bb in range(B):
            hp = hs[t, bb]
            hn = hs[t + 1, bb]
            rr = R[bb]
            for i in range(hidden):
                gate = rr[i]
                cand = rr[hidden + i]
                hn[i] = (one - gate) * hp[i] * decay[i] + gate * cand
            for o in range(n_out):
                wo = Wout[o]
                y = bout[o]
                for i in range(hidden):
                    y += wo[i] * hn[i]
                ys[t, bb, o] = y

