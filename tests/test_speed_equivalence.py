"""The optimized cell kernels against the plain loops they replaced, and their determinism.

``ref_forward`` / ``ref_loss_grad`` below are the original straightforward kernels
(one sequence and one output at a time, libm exp and tanh, weight gradients
accumulated per step). The optimized kernels must give the same numbers: to
float64 roundoff in float64, and to float32 roundoff in float32 (where the
optimized sigmoid/tanh use their own vectorizable exp).
"""

import numpy as np
import pytest
from numba import njit

from ternq.kernels.cell import forward, loss_grad, n_params, sigmoid, tanh, unpack
from ternq.kernels.loop import thresholds, train_epochs
from ternq.model import init_teacher, student_from
from ternq.rng import stream
from ternq.train import Lane, loop_of

TAU_EPS = 1e-6


@njit(nogil=True)
def _ref_decay(tau, dt, out):
    eps = tau.dtype.type(TAU_EPS)
    for i in range(tau.shape[0]):
        out[i] = np.exp(-dt / (abs(tau[i]) + eps))


@njit(nogil=True)
def ref_forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT):
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    B, T = X.shape[0], X.shape[1]
    z, h2 = n_in + hidden, 2 * hidden
    one = p.dtype.type(1.0)
    for r in range(h2):
        for j in range(z):
            WT[j, r] = W[r, j]
    decay = np.empty(hidden, p.dtype)
    _ref_decay(tau, p.dtype.type(dt), decay)
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


@njit(nogil=True)
def ref_loss_grad(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, g, hs, gs, cs, ys, WT):
    ref_forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT)
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    gW, gb, gtau, gWout, gbout = unpack(g, n_in, hidden, n_out)
    B, T = X.shape[0], X.shape[1]
    h2 = 2 * hidden
    ty = p.dtype.type
    one = ty(1.0)
    dt_ = ty(dt)
    g[:] = 0
    decay = np.empty(hidden, p.dtype)
    _ref_decay(tau, dt_, decay)
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


def _ws(B, T, I, H, O, dtype):
    return (np.empty((T + 1, B, H), dtype), np.empty((T, B, H), dtype), np.empty((T, B, H), dtype),
            np.empty((T, B, O), dtype), np.empty((I + H, 2 * H), dtype))


def _problem(I, H, O, dtype, B=5, T=11, seed=0):
    rng = np.random.default_rng(seed)
    t = init_teacher(H, stream(seed, "eq", H), I, O)
    p = (t.theta + rng.normal(0, 0.3, size=t.theta.shape)).astype(dtype)
    tp = (t.theta + rng.normal(0, 0.3, size=t.theta.shape)).astype(dtype)
    X = rng.normal(size=(B, T, I)).astype(dtype)
    Y = rng.normal(size=(B, T, O)).astype(dtype)
    return p, tp, X, Y


@pytest.mark.parametrize("I,H,O", [(1, 16, 1), (2, 3, 2), (1, 33, 1), (3, 8, 2)])
@pytest.mark.parametrize("alpha", [0.0, 0.4])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_loss_grad_equals_the_plain_kernel(I, H, O, alpha, dtype, tol):
    p, tp, X, Y = _problem(I, H, O, dtype)
    B, T = X.shape[:2]
    out = {}
    for name, fwd, lg in (("new", forward, loss_grad), ("ref", ref_forward, ref_loss_grad)):
        ht = np.zeros((T + 1, B, H), dtype)
        if alpha:
            fwd(tp, X, I, H, O, 0.1, ht, *_ws(B, T, I, H, O, dtype)[1:])
        g = np.zeros(n_params(I, H, O), dtype)
        ws = _ws(B, T, I, H, O, dtype)
        loss, mse_ = lg(p, X, Y, I, H, O, 0.1, 1.0 - alpha, alpha, ht, g, *ws)
        out[name] = (loss, mse_, g.astype(np.float64), ws[0].astype(np.float64), ws[3].astype(np.float64))
    new, ref = out["new"], out["ref"]
    assert new[0] == pytest.approx(ref[0], rel=tol)
    assert new[1] == pytest.approx(ref[1], rel=tol)
    scale = np.abs(ref[2]).max()
    np.testing.assert_allclose(new[2], ref[2], rtol=0, atol=tol * scale)
    np.testing.assert_allclose(new[3], ref[3], rtol=0, atol=tol)
    np.testing.assert_allclose(new[4], ref[4], rtol=0, atol=tol)


def test_float64_forward_is_bit_identical_to_the_plain_kernel():
    """In float64 the nonlinearities are libm's and each sum runs in the same order."""
    I, H, O = 2, 13, 2
    p, _, X, _ = _problem(I, H, O, np.float64)
    B, T = X.shape[:2]
    a, b = _ws(B, T, I, H, O, np.float64), _ws(B, T, I, H, O, np.float64)
    forward(p, X, I, H, O, 0.1, *a)
    ref_forward(p, X, I, H, O, 0.1, *b)
    assert a[0].tobytes() == b[0].tobytes() and a[3].tobytes() == b[3].tobytes()


def test_float32_nonlinearities_within_a_few_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 4, 4000), rng.normal(0, 1e-3, 1000), np.linspace(-90, 90, 2001)])
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    for f, exact in ((sigmoid, 1 / (1 + np.exp(-x64))), (tanh, np.tanh(x64))):
        got = np.array([f(v) for v in x], np.float32)
        assert got.dtype == np.float32
        ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
        err = np.abs(got - exact) / ulp
        # sigmoid far in the negative tail is capped at exp(-80) instead of underflowing further
        err[(f is sigmoid) & (x64 < -80)] = 0
        assert err.max() <= 4
    f32 = np.float32
    assert np.isnan(sigmoid(f32(np.nan))) and np.isnan(tanh(f32(np.nan)))
    assert sigmoid(f32(np.inf)) == 1 and sigmoid(f32(-np.inf)) < 1e-30
    assert tanh(f32(np.inf)) == 1 and tanh(f32(-np.inf)) == -1 and tanh(f32(0)) == 0
    # float64 stays libm (gradient checks)
    assert sigmoid(0.3) == 1 / (1 + np.exp(-0.3)) and tanh(0.3) == np.tanh(0.3)


def _train(kind, H=8, E=30):
    t = init_teacher(H, stream(1, "det", H), 1, 1)
    rng = stream(1, "det-data")
    X = rng.normal(size=(E, 4, 12, 1)).astype(np.float32)
    Y = np.roll(X, -1, axis=2)
    if kind == "teacher":
        theta, student, tp = t.theta.copy(), False, np.empty(0, np.float32)
    else:
        theta, student, tp = student_from(t).theta.copy(), True, t.params()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    losses, mses = np.full(E, np.nan), np.full(E, np.nan)
    lane = Lane(lr=1e-2, lr_min=1e-4, schedule="cosine", clip=5.0, mask="seed" if student else None,
                beta=(1.0, 20.0), alpha=(0.3, 0.8), distill=student)
    loop = loop_of([lane], (1, H, 1), E, student)
    train_epochs(theta, m, v, X, Y, 0, E, loop, tp if student else None, thresholds(loop, theta.dtype), losses, mses)
    return theta, losses


@pytest.mark.parametrize("kind", ["teacher", "distill"])
def test_training_is_bit_for_bit_repeatable(kind):
    a, la = _train(kind)
    b, lb = _train(kind)
    assert a.tobytes() == b.tobytes() and la.tobytes() == lb.tobytes()
    assert np.all(np.isfinite(la))
