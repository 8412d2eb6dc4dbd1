"""Adam and global-norm gradient clipping on flat parameter vectors."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def clip_norm(g, max_norm):
    """Scale ``g`` in place so that its L2 norm is at most ``max_norm``; return the norm."""
    ss = 0.0
    for k in range(g.shape[0]):
        ss += np.float64(g[k]) * np.float64(g[k])
    norm = np.sqrt(ss)
    if norm > max_norm:
        c = g.dtype.type(max_norm / norm)
        for k in range(g.shape[0]):
            g[k] *= c
    return norm


@njit(cache=True, nogil=True, error_model="numpy")
def adam(theta, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam update of ``theta`` in place; ``step`` counts from 1."""
    ty = theta.dtype.type
    b1, b2 = ty(beta1), ty(beta2)
    c1 = 1.0 - beta1**step
    c2 = 1.0 - beta2**step
    # bias corrections folded into the step size, as in the Adam paper
    a = ty(lr * np.sqrt(c2) / c1)
    e = ty(eps * np.sqrt(c2))
    u1, u2 = ty(1.0) - b1, ty(1.0) - b2
    for k in range(theta.shape[0]):
        m[k] = b1 * m[k] + u1 * g[k]
        v[k] = b2 * v[k] + u2 * g[k] * g[k]
        theta[k] -= a * m[k] / (np.sqrt(v[k]) + e)
