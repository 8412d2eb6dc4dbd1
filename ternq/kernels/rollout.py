"""Free-running rollouts of the CfC cell: warm up on true inputs, then feed the predictions back.

One kernel source for float32 (evaluation) and float64 (checks), chosen by the dtype of its
arrays, like :mod:`ternq.kernels.cell`. It is the cell's own forward pass (``cell.forward_pass``
with ``free`` steps), so the teacher-forced part is the training forward bit for bit, and a free
step differs from a teacher-forced one only in where its input comes from.
"""

import numpy as np
from numba import njit

from .cell import forward_pass, work


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
    B, Tw = X.shape[0], X.shape[1]
    gs = np.empty((Tw + free, B, hidden), p.dtype)
    cs = np.empty((Tw + free, B, hidden), p.dtype)
    WT = np.empty((n_in + hidden, 2 * hidden), p.dtype)
    forward_pass(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, work(B, 0, n_in, hidden, n_out, p), free)
