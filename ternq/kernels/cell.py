"""The CfC cell: batched forward, loss and backward-through-time, as Numba kernels.

One kernel source serves every model. It runs on *effective* parameters ``p``:
the float weights for a teacher, the scaled trits for a student (see
:mod:`ternq.kernels.ternary`). It compiles for float32 (training) and float64
(gradient checks) from the dtype of its arrays.

Flat parameter layout (``unpack``), for input size I, hidden H, output O::

    W     (2H, I+H)   rows 0..H-1 gate, rows H..2H-1 candidate; columns [x ; h]
    b     (2H,)
    tau   (H,)
    Wout  (O, H)
    bout  (O,)

The cell, for one step::

    gate  = sigmoid(W[:H] z + b[:H]),  cand = tanh(W[H:] z + b[H:]),  z = [x ; h_prev]
    decay = exp(-dt / (|tau| + 1e-6))
    h     = (1 - gate) * h_prev * decay + gate * cand
    y     = Wout h + bout

Per-step loss, averaged over the B*T steps of a batch::

    w_y * 0.5 * mean_o(err_o^2) + alpha * 0.5 * mean_i((h_i - h_teacher_i)^2)
"""

import numpy as np
from numba import njit

TAU_EPS = 1e-6


@njit(cache=True, nogil=True)
def n_params(n_in: int, hidden: int, n_out: int) -> int:
    """Length of the flat effective-parameter vector."""
    return 2 * hidden * (n_in + hidden) + 3 * hidden + n_out * hidden + n_out


@njit(cache=True, nogil=True)
def unpack(p, n_in, hidden, n_out):
    """Views (W, b, tau, Wout, bout) into a flat parameter vector."""
    z = n_in + hidden
    h2 = 2 * hidden
    o = 0
    W = p[o : o + h2 * z].reshape((h2, z))
    o += h2 * z
    b = p[o : o + h2]
    o += h2
    tau = p[o : o + hidden]
    o += hidden
    Wout = p[o : o + n_out * hidden].reshape((n_out, hidden))
    o += n_out * hidden
    bout = p[o : o + n_out]
    return W, b, tau, Wout, bout


@njit(cache=True, nogil=True)
def _decay(tau, dt, out):
    eps = tau.dtype.type(TAU_EPS)
    for i in range(tau.shape[0]):
        out[i] = np.exp(-dt / (abs(tau[i]) + eps))


@njit(cache=True, nogil=True)
def forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT):
    """Run the cell over a batch from h_0 = 0, storing what backward needs.

    X (B, T, I) inputs. Outputs written in place, time-major: hs (T+1, B, H)
    hidden states (hs[0] = 0), gs and cs (T, B, H) gate and candidate,
    ys (T, B, O) predictions. WT (I+H, 2H) is workspace for W transposed, so
    the inner loop runs over the 2H contiguous outputs (it vectorizes).
    """
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    B, T = X.shape[0], X.shape[1]
    z, h2 = n_in + hidden, 2 * hidden
    one = p.dtype.type(1.0)
    for r in range(h2):
        for j in range(z):
            WT[j, r] = W[r, j]
    decay = np.empty(hidden, p.dtype)
    _decay(tau, p.dtype.type(dt), decay)
    pre = np.empty(h2, p.dtype)
    hs[0, :, :] = 0
    for t in range(T):
        for bb in range(B):
            for r in range(h2):
                pre[r] = b[r]
            for j in range(n_in):
                xj = X[bb, t, j]
                for r in range(h2):
                    pre[r] += xj * WT[j, r]
            for j in range(hidden):
                hj = hs[t, bb, j]
                for r in range(h2):
                    pre[r] += hj * WT[n_in + j, r]
            for i in range(hidden):
                gate = one / (one + np.exp(-pre[i]))
                cand = np.tanh(pre[hidden + i])
                gs[t, bb, i] = gate
                cs[t, bb, i] = cand
                hs[t + 1, bb, i] = (one - gate) * hs[t, bb, i] * decay[i] + gate * cand
            for o in range(n_out):
                y = bout[o]
                for i in range(hidden):
                    y += Wout[o, i] * hs[t + 1, bb, i]
                ys[t, bb, o] = y


@njit(cache=True, nogil=True)
def mse(p, X, Y, n_in, hidden, n_out, dt):
    """Mean squared error of the predictions over every step, sequence and output."""
    B, T = X.shape[0], X.shape[1]
    hs = np.empty((T + 1, B, hidden), p.dtype)
    gs = np.empty((T, B, hidden), p.dtype)
    cs = np.empty((T, B, hidden), p.dtype)
    ys = np.empty((T, B, n_out), p.dtype)
    WT = np.empty((n_in + hidden, 2 * hidden), p.dtype)
    forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT)
    sse = 0.0
    for t in range(T):
        for bb in range(B):
            for o in range(n_out):
                e = np.float64(ys[t, bb, o]) - np.float64(Y[bb, t, o])
                sse += e * e
    return sse / (B * T * n_out)


@njit(cache=True, nogil=True)
def loss_grad(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, g, hs, gs, cs, ys, WT):
    """Loss, output MSE and gradient of the loss with respect to ``p`` (BPTT).

    Parameters are as in :func:`forward`; Y (B, T, O) targets; ``w_y`` weights
    the output term and ``alpha`` the trajectory term against the teacher's
    hidden states ``ht`` (T+1, B, H; ignored when alpha == 0). The gradient is
    written into ``g`` (same layout as ``p``). Returns (loss, mse) as float64.
    """
    forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT)
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    gW, gb, gtau, gWout, gbout = unpack(g, n_in, hidden, n_out)
    B, T = X.shape[0], X.shape[1]
    h2 = 2 * hidden
    ty = p.dtype.type
    one = ty(1.0)
    dt_ = ty(dt)
    g[:] = 0
    decay = np.empty(hidden, p.dtype)
    _decay(tau, dt_, decay)
    # d decay / d tau, constant over the batch
    ddecay = np.empty(hidden, p.dtype)
    for i in range(hidden):
        a = abs(tau[i]) + ty(TAU_EPS)
        ddecay[i] = decay[i] * dt_ / (a * a) * np.sign(tau[i])
    n = B * T
    cy = ty(w_y) / ty(n * n_out)
    ch = ty(alpha) / ty(n * hidden)
    distill = alpha != 0.0
    dh = np.zeros((B, hidden), p.dtype)  # dL/dh_{t+1}, carried back in time
    dpre = np.empty(h2, p.dtype)
    sse = 0.0
    straj = 0.0
    for t in range(T - 1, -1, -1):
        for bb in range(B):
            dhb = dh[bb]
            for o in range(n_out):
                err = ys[t, bb, o] - Y[bb, t, o]
                sse += np.float64(err) * np.float64(err)
                dy = cy * err
                gbout[o] += dy
                for i in range(hidden):
                    gWout[o, i] += dy * hs[t + 1, bb, i]
                    dhb[i] += dy * Wout[o, i]
            if distill:
                for i in range(hidden):
                    d = hs[t + 1, bb, i] - ht[t + 1, bb, i]
                    straj += np.float64(d) * np.float64(d)
                    dhb[i] += ch * d
            for i in range(hidden):
                gate, cand, hp = gs[t, bb, i], cs[t, bb, i], hs[t, bb, i]
                dgate = dhb[i] * (cand - hp * decay[i])
                dcand = dhb[i] * gate
                gtau[i] += dhb[i] * (one - gate) * hp * ddecay[i]
                dpre[i] = dgate * gate * (one - gate)
                dpre[hidden + i] = dcand * (one - cand * cand)
                dhb[i] = dhb[i] * (one - gate) * decay[i]  # now dL/dh_t, direct path
            for r in range(h2):
                d = dpre[r]
                gb[r] += d
                for j in range(n_in):
                    gW[r, j] += d * X[bb, t, j]
                for j in range(hidden):
                    gW[r, n_in + j] += d * hs[t, bb, j]
                    dhb[j] += d * W[r, n_in + j]
    mse_ = sse / (n * n_out)
    loss = w_y * 0.5 * mse_ + alpha * 0.5 * straj / (n * hidden)
    return loss, mse_
