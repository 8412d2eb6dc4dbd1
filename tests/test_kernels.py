"""Kernels against the NumPy oracle, at float64 and float32."""

import numpy as np
import oracle
import pytest

from ternq.kernels.cell import forward, loss_grad, mse, n_params
from ternq.kernels.ternary import quantize
from ternq.model import init_teacher, student_from
from ternq.rng import stream

DIMS = [(1, 16, 1), (1, 32, 1), (3, 8, 2)]


def _data(rng, I, O, B=4, T=9, dtype=np.float64):
    return rng.normal(size=(B, T, I)).astype(dtype), rng.normal(size=(B, T, O)).astype(dtype)


def _teacher(I, H, O, seed=0):
    t = init_teacher(H, stream(seed, "k", H), I, O)
    t.theta[:] += stream(seed, "k2").normal(0, 0.2, size=t.theta.shape).astype(np.float32)
    return t


def _ws(B, T, I, H, O, dtype):
    return (np.empty((T + 1, B, H), dtype), np.empty((T, B, H), dtype), np.empty((T, B, H), dtype),
            np.empty((T, B, O), dtype), np.empty((I + H, 2 * H), dtype))


@pytest.mark.parametrize("I,H,O", DIMS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_forward_matches_oracle(I, H, O, dtype, tol):
    rng = np.random.default_rng(1)
    p = _teacher(I, H, O).theta.astype(dtype)
    X, Y = _data(rng, I, O, dtype=dtype)
    ws = _ws(*X.shape[:2], I, H, O, dtype)
    forward(p, X, I, H, O, 0.1, *ws)
    hs_ref, ys_ref = oracle.run(p.astype(np.float64), X.astype(np.float64), I, H, O)
    np.testing.assert_allclose(ws[0].transpose(1, 0, 2), hs_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(ws[3].transpose(1, 0, 2), ys_ref, rtol=tol, atol=tol)
    assert mse(p, X, Y, I, H, O, 0.1) == pytest.approx(np.mean((ys_ref - Y) ** 2), rel=tol * 10)


@pytest.mark.parametrize("I,H,O", DIMS)
@pytest.mark.parametrize("B", [1, 3, 6])
def test_forward_pairs_of_sequences_change_no_bit(I, H, O, B):
    # the forward takes two sequences per pass over W (the last one alone when B is odd): every
    # sequence must come out bit for bit as when it is run alone (always the one-sequence path)
    rng = np.random.default_rng(3)
    p = _teacher(I, H, O).theta
    X, _ = _data(rng, I, O, B=B, dtype=np.float32)
    ws = _ws(B, X.shape[1], I, H, O, np.float32)
    forward(p, X, I, H, O, 0.1, *ws)
    for bb in range(B):
        one = _ws(1, X.shape[1], I, H, O, np.float32)
        forward(p, X[bb : bb + 1], I, H, O, 0.1, *one)
        for full, alone in zip(ws[:4], one[:4], strict=True):
            assert full[:, bb].tobytes() == alone[:, 0].tobytes()


@pytest.mark.parametrize("I,H,O", DIMS)
@pytest.mark.parametrize("alpha", [0.0, 0.4])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_loss_matches_oracle(I, H, O, alpha, dtype, tol):
    rng = np.random.default_rng(2)
    p = _teacher(I, H, O).theta.astype(dtype)
    tp = _teacher(I, H, O, seed=5).theta.astype(dtype)
    X, Y = _data(rng, I, O, dtype=dtype)
    B, T = X.shape[:2]
    ht = np.zeros((T + 1, B, H), dtype)
    if alpha:
        forward(tp, X, I, H, O, 0.1, ht, *_ws(B, T, I, H, O, dtype)[1:])
    g = np.zeros_like(p)
    loss, _ = loss_grad(p, X, Y, I, H, O, 0.1, 1 - alpha, alpha, ht, g, *_ws(B, T, I, H, O, dtype))
    want = oracle.loss(p.astype(np.float64), X.astype(np.float64), Y.astype(np.float64), I, H, O,
                       alpha, tp.astype(np.float64))
    assert loss == pytest.approx(want, rel=tol * 10)


@pytest.mark.parametrize("I,H,O", DIMS)
def test_float32_gradient_tracks_float64(I, H, O):
    """Same kernel source at both precisions: the float32 gradient is the float64 one, rounded."""
    rng = np.random.default_rng(3)
    p = _teacher(I, H, O).theta.astype(np.float64)
    X, Y = _data(rng, I, O)
    grads = {}
    for dt in (np.float64, np.float32):
        B, T = X.shape[:2]
        g = np.zeros(n_params(I, H, O), dt)
        loss_grad(p.astype(dt), X.astype(dt), Y.astype(dt), I, H, O, 0.1, 1.0, 0.0,
                  np.zeros((T + 1, B, H), dt), g, *_ws(B, T, I, H, O, dt))
        grads[dt] = g
    scale = np.abs(grads[np.float64]).max()
    np.testing.assert_allclose(grads[np.float32], grads[np.float64], atol=1e-5 * scale)


@pytest.mark.parametrize("I,H,O", DIMS)
def test_quantize_matches_oracle(I, H, O):
    s = student_from(_teacher(I, H, O))
    theta = s.theta.astype(np.float64)
    theta[: s.n_cell] += np.random.default_rng(4).normal(0, 0.1, size=s.n_cell)
    p = np.empty(s.n_cell)
    quantize(theta, I, H, O, p)
    np.testing.assert_array_equal(p, oracle.quantize(theta, I, H, O))
    # every effective weight is -s, 0 or +s of its row
    levels = np.unique(np.round(np.abs(p[: 2 * H * (I + H)]).reshape(2 * H, -1) / theta[s.n_cell:][: 2 * H, None], 12))
    assert set(levels) <= {0.0, 1.0}


def test_student_forward_is_hard_ternary():
    """A student's forward equals the oracle's forward on the quantized weights."""
    I, H, O = 1, 16, 1
    s = student_from(_teacher(I, H, O))
    X, Y = _data(np.random.default_rng(6), I, O)
    p_ref = oracle.quantize(s.theta.astype(np.float64), I, H, O)
    _, ys_ref = oracle.run(p_ref, X, I, H, O)
    assert mse(s.params(np.float64), X, Y, I, H, O, 0.1) == pytest.approx(np.mean((ys_ref - Y) ** 2), rel=1e-12)
