"""The CfC cell: batched forward, loss and backward-through-time, as Numba kernels.

One kernel source serves every model. It runs on *effective* parameters ``p``:
the float weights for a teacher, the scaled trits for a student (see
:mod:`ternq.kernels.ternary`). It compiles for float32 (training) and float64
(gradient checks) from the dtype of its arrays.

The flat parameter vector holds W, b, tau, Wout and bout one after the other
(:class:`Layout` gives each block's start and shape; :func:`unpack` the views).

The cell, for one step::

    gate  = sigmoid(W[:H] z + b[:H]),  cand = tanh(W[H:] z + b[H:]),  z = [x ; h_prev]
    decay = exp(-dt / (|tau| + 1e-6))
    h     = (1 - gate) * h_prev * decay + gate * cand
    y     = Wout h + bout

Per-step loss, averaged over the B*T steps of a batch::

    w_y * 0.5 * mean_o(err_o^2) + alpha * 0.5 * mean_i(c_i (h_i - h_teacher_i)^2)

with c_i = 1 (the notes' trajectory term) or per-unit weights ``distill_hidden`` (hidden-state
matching normalised by the teacher's variance of each unit, :func:`loss_grad_w`).

How it is made fast (all single-threaded and deterministic, no fastmath):

- Time-major work arrays with the batch inside, so every elementwise pass of a
  step is one contiguous loop over B*H or B*2H values that LLVM vectorizes.
- Gate and candidate of a whole step go through one vectorizable pass
  (:func:`_squash`). In float32 it evaluates ``exp(-s|x|)`` (s = 1 for the
  gate, 2 for the candidate) with a Cephes-style polynomial and an exponent
  built from integer bits, then sigmoid and tanh from it: no libm calls, so
  the loop vectorizes; accuracy is about one float32 ulp. In float64 (gradient
  checks) it calls the exact libm ``exp`` and ``tanh``.
- Matrix-vector products accumulate four rows (or four steps) per pass, so
  each load/store of the accumulator row carries four multiply-adds; the
  forward takes two sequences per pass, so each load of a row of W serves two.
- Weight gradients are not accumulated per step: BPTT stores dL/dpre of every
  step, and the gradients of W, b and Wout are batched outer products over all
  B*T steps after the time loop.
- Workspace is allocated once by the caller (:func:`work` / the training loop);
  :func:`forward`, :func:`loss_grad` and :func:`mse` keep their signatures and
  allocate their own when called directly.
- The public entry points (:func:`forward`, :func:`mse`, :func:`loss_grad`) are
  plain functions over the compiled ``forward_pass`` / ``loss_grad_pass``: Numba
  re-optimises everything a compiled caller links in, so thin compiled wrappers
  only lengthen a first run's compilation.
"""

from typing import NamedTuple

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.extending import intrinsic, overload

TAU_EPS = 1e-6


class Layout(NamedTuple):
    """Where each block of the flat parameter vector starts, for input size I, hidden H, output O."""

    W: int  # (2H, I+H)  rows 0..H-1 gate, rows H..2H-1 candidate; columns [x ; h]
    b: int  # (2H,)
    tau: int  # (H,)
    Wout: int  # (O, H)
    bout: int  # (O,)
    scales: int  # (2H + O,)  a student's row scales, after the effective parameters
    end: int  # a student's theta length


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def layout(n_in, hidden, n_out):
    """The :class:`Layout` of a model of these dims."""
    h2 = 2 * hidden
    b = h2 * (n_in + hidden)
    tau = b + h2
    Wout = tau + hidden
    bout = Wout + n_out * hidden
    scales = bout + n_out
    return Layout(0, b, tau, Wout, bout, scales, scales + h2 + n_out)


@njit(cache=True, nogil=True, error_model="numpy")
def n_params(n_in: int, hidden: int, n_out: int) -> int:
    """Length of the flat effective-parameter vector."""
    return layout(n_in, hidden, n_out).scales


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def unpack(p, n_in, hidden, n_out):
    """Views (W, b, tau, Wout, bout) into a flat parameter vector (the last axis may be the model's)."""
    at = layout(n_in, hidden, n_out)
    return (p[at.W : at.b].reshape((2 * hidden, n_in + hidden) + p.shape[1:]), p[at.b : at.tau],
            p[at.tau : at.Wout], p[at.Wout : at.bout].reshape((n_out, hidden) + p.shape[1:]), p[at.bout : at.scales])


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def tau_decay(tau, dt, out):
    """out = exp(-dt / (|tau| + TAU_EPS)), each unit's decay per step."""
    eps = tau.dtype.type(TAU_EPS)
    for i in range(tau.shape[0]):
        out[i] = _exp(-dt / (abs(tau[i]) + eps))


# ---------------------------------------------------------------- workspace

class Work(NamedTuple):
    """Scratch arrays of the cell for a batch of B sequences of T steps."""

    decay: np.ndarray  # (H,)
    ddecay: np.ndarray  # (H,)  d decay / d tau
    A: np.ndarray  # (B, 2H)  pre-activations of one step
    R: np.ndarray  # (B, 2H)  squashed: gates then candidates
    s2: np.ndarray  # (B * 2H,)  1 for gate entries, 2 for candidate entries
    dh: np.ndarray  # (B, H)  dL/dh, carried back in time
    DP: np.ndarray  # (T, B, 2H)  dL/dpre of every step
    DY: np.ndarray  # (T, B, O)  dL/dy of every step
    gWT: np.ndarray  # (I+H, 2H)  dL/dW, transposed
    Wh: np.ndarray  # (2H, H)  W's recurrent columns as rows of their own (aligned, no slicing in BPTT)


@njit(cache=True, nogil=True, error_model="numpy")
def work(B, T, n_in, hidden, n_out, dtype_like):
    """The cell's :class:`Work` for a batch (B, T); ``dtype_like`` is any array of the working dtype.

    Allocate once, reuse every epoch.
    """
    dt = dtype_like.dtype
    h2 = 2 * hidden
    s2 = np.empty(B * h2, dt)
    for bb in range(B):
        for r in range(h2):
            s2[bb * h2 + r] = 1 if r < hidden else 2
    return Work(np.empty(hidden, dt), np.empty(hidden, dt), np.empty((B, h2), dt), np.empty((B, h2), dt), s2,
                np.empty((B, hidden), dt), np.empty((T, B, h2), dt), np.empty((T, B, n_out), dt),
                np.empty((n_in + hidden, h2), dt), np.empty((h2, hidden), dt))


# ---------------------------------------------------------------- gate and candidate

@intrinsic
def _bits_as_float32(typingctx, bits):
    """Reinterpret an int32 as a float32 (an LLVM bitcast; vectorizes)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.FloatType())

    return sig, codegen


# Cephes expf on |r| <= ln2/2: exp(r) - 1 = r + r^2 P(r)
EXP_LOG2E = 1.44269504088896341
EXP_C1 = 0.693359375
EXP_C2 = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


def _exp(x):  # pragma: no cover - replaced by the overload below
    """exp(x), for the decay: in float32 multiplies, adds and an exponent from integer bits."""
    raise NotImplementedError


@overload(_exp, jit_options={"nogil": True, "error_model": "numpy"}, inline="always")
def _exp_impl(x):
    if x == types.float32:
        f = np.float32
        log2e, c1, c2, half = f(EXP_LOG2E), f(EXP_C1), f(EXP_C2), f(0.5)
        p0, p1, p2, p3, p4, p5 = (f(c) for c in EXP_POLY)
        lo, hi, kmin = f(-80.0), f(80.0), f(-126.0)

        def impl(x):
            # Cephes expf, x clamped to [-80, 80] so that 2^k stays a normal float32; no libm,
            # so any device that rounds each multiply and add computes the same bits. NaN gives NaN.
            if x < lo:
                x = lo
            if x > hi:
                x = hi
            fk = np.floor(x * log2e + half)
            r = x - fk * c1 - fk * c2
            m = (((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5) * (r * r) + r
            kc = fk if fk >= kmin else kmin  # NaN: any finite exponent (m is NaN already)
            sc = _bits_as_float32((np.int32(kc) + np.int32(127)) << np.int32(23))
            return sc * m + sc
        return impl

    def impl(x):
        return np.exp(x)
    return impl


@njit(cache=True, nogil=True, error_model="numpy")
def exp(x):
    """The decay's exp, exactly as the kernels compute it (float32: Cephes, about 1 ulp; float64: libm)."""
    return _exp(x)


def _act(x, s):  # pragma: no cover - replaced by the overload below
    """sigmoid(x) for s == 1, tanh(x) for s == 2 (scalar, in the dtype of x)."""
    raise NotImplementedError


@overload(_act, jit_options={"nogil": True, "error_model": "numpy"}, inline="always")
def _act_impl(x, s):
    if x == types.float32:
        f = np.float32
        log2e, c1, c2 = f(EXP_LOG2E), f(EXP_C1), f(EXP_C2)
        p0, p1, p2, p3, p4, p5 = (f(c) for c in EXP_POLY)
        one, half, zero, big, kmin = f(1.0), f(0.5), f(0.0), f(80.0), f(-126.0)

        def impl(x, s):
            # e = exp(-s|x|) = 2^k (1 + m), |s x| capped at 80: e in [1.8e-35, 1], never
            # overflows, exponent always normal; a NaN x gives NaN
            sf = f(s)
            ax = abs(x) * sf
            if ax > big:
                ax = big
            y = -ax
            fk = np.floor(y * log2e + half)
            r = y - fk * c1 - fk * c2
            m = (((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5) * (r * r) + r
            kc = fk if fk >= kmin else kmin
            sc = _bits_as_float32((np.int32(kc) + np.int32(127)) << np.int32(23))
            e = sc * m + sc
            q = one / (one + e)
            gate = q if x >= zero else e * q  # sigmoid(x)
            t = -(sc * m + (sc - one)) * q  # (1 - e) / (1 + e), accurate near 0
            cand = t if x >= zero else -t  # tanh(x)
            return gate if sf == one else cand
        return impl

    def impl(x, s):
        if s == 1:
            return 1.0 / (1.0 + np.exp(-x))
        return np.tanh(x)
    return impl


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid(x):
    """The cell's gate nonlinearity, exactly as the training kernels compute it.

    float32: a vectorizable exp (Cephes polynomial, about 2 ulp); float64: libm.
    """
    return _act(x, 1)


@njit(cache=True, nogil=True, error_model="numpy")
def tanh(x):
    """The cell's candidate nonlinearity, exactly as the training kernels compute it."""
    return _act(x, 2)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _squash(a, s2, out):
    """out = sigmoid(a) where s2 == 1, tanh(a) where s2 == 2 (flat arrays; vectorizes)."""
    for k in range(a.shape[0]):
        out[k] = _act(a[k], s2[k])


# ---------------------------------------------------------------- forward

@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def matvec_rows(acc, M, v, j0, n):
    """acc += sum_{j < n} v[j] * M[j0 + j, :], four rows per pass over acc.

    The additions run in ascending j (as a plain loop would), four per load/store of acc.
    """
    m = acc.shape[0]
    j = 0
    while j + 4 <= n:
        v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
        r0, r1, r2, r3 = M[j0 + j], M[j0 + j + 1], M[j0 + j + 2], M[j0 + j + 3]
        for r in range(m):
            acc[r] = acc[r] + v0 * r0[r] + v1 * r1[r] + v2 * r2[r] + v3 * r3[r]  # ascending j
        j += 4
    while j < n:
        vj = v[j]
        rj = M[j0 + j]
        for r in range(m):
            acc[r] += vj * rj[r]
        j += 1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def matvec_rows2(acc, bcc, M, v, w, j0, n):
    """:func:`matvec_rows` for two vectors at once: acc += sum_j v[j] M[j0 + j, :], bcc likewise with w.

    Each row of M is loaded once for both; every element of acc and bcc gets the same
    additions in the same order as from :func:`matvec_rows` (same bits).
    """
    m = acc.shape[0]
    j = 0
    while j + 4 <= n:
        v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
        w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
        r0, r1, r2, r3 = M[j0 + j], M[j0 + j + 1], M[j0 + j + 2], M[j0 + j + 3]
        for r in range(m):
            m0, m1, m2, m3 = r0[r], r1[r], r2[r], r3[r]
            acc[r] = acc[r] + v0 * m0 + v1 * m1 + v2 * m2 + v3 * m3
            bcc[r] = bcc[r] + w0 * m0 + w1 * m1 + w2 * m2 + w3 * m3
        j += 4
    while j < n:
        vj, wj = v[j], w[j]
        rj = M[j0 + j]
        for r in range(m):
            acc[r] += vj * rj[r]
            bcc[r] += wj * rj[r]
        j += 1


@njit(cache=True, nogil=True, error_model="numpy")
def forward_pass(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, wk, free=0):
    """The forward pass over X (B, T, I), then ``free`` steps that read the previous prediction as
    their input (a free-running rollout, :mod:`ternq.kernels.rollout`; needs n_in == n_out).
    hs, gs, cs, ys have room for T + free steps."""
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    decay, A, R, s2 = wk.decay, wk.A, wk.R, wk.s2
    B, T = X.shape[0], X.shape[1] + free
    z, h2 = n_in + hidden, 2 * hidden
    one = p.dtype.type(1.0)
    for r in range(h2):
        for j in range(z):
            WT[j, r] = W[r, j]
    tau_decay(tau, p.dtype.type(dt), decay)
    hs[0, :, :] = 0
    Af = A.reshape(B * h2)
    Rf = R.reshape(B * h2)
    Tx = X.shape[1]
    for t in range(T):
        # pre-activations, two sequences per pass over W (each row loaded once for both)
        for bb in range(0, B - 1, 2):
            a, c = A[bb], A[bb + 1]
            for r in range(h2):
                a[r] = b[r]
                c[r] = b[r]
            if t < Tx:
                matvec_rows2(a, c, WT, X[bb, t], X[bb + 1, t], 0, n_in)
            else:  # free-running: the last predictions
                matvec_rows2(a, c, WT, ys[t - 1, bb], ys[t - 1, bb + 1], 0, n_in)
            matvec_rows2(a, c, WT, hs[t, bb], hs[t, bb + 1], n_in, hidden)
        if B % 2 == 1:
            bb = B - 1
            a = A[bb]
            for r in range(h2):
                a[r] = b[r]
            if t < Tx:
                matvec_rows(a, WT, X[bb, t], 0, n_in)
            else:
                matvec_rows(a, WT, ys[t - 1, bb], 0, n_in)
            matvec_rows(a, WT, hs[t, bb], n_in, hidden)
        _squash(Af, s2, Rf)
        for bb in range(B):
            g = gs[t, bb]
            c = cs[t, bb]
            hp = hs[t, bb]
            hn = hs[t + 1, bb]
            rr = R[bb]
            for i in range(hidden):
                gate = rr[i]
                cand = rr[hidden + i]
                g[i] = gate
                c[i] = cand
                hn[i] = (one - gate) * hp[i] * decay[i] + gate * cand
            for o in range(n_out):
                wo = Wout[o]
                y = bout[o]
                for i in range(hidden):
                    y += wo[i] * hn[i]
                ys[t, bb, o] = y


def forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, wk=None):
    """Run the cell over a batch from h_0 = 0, storing what backward needs.

    X (B, T, I) inputs. Outputs written in place, time-major: hs (T+1, B, H)
    hidden states (hs[0] = 0), gs and cs (T, B, H) gate and candidate,
    ys (T, B, O) predictions. WT (I+H, 2H) is workspace for W transposed;
    ``wk`` the cell's scratch (:func:`work`), made here when not given.

    A plain function over the compiled :func:`forward_pass`: a compiled wrapper would
    only make Numba optimise the whole forward a second time on a first run.
    """
    if wk is None:
        wk = work(X.shape[0], 0, n_in, hidden, n_out, p)
    forward_pass(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, wk)


@njit(cache=True, nogil=True, error_model="numpy")
def _sse(ys, Y):
    """Sum of squared errors in float64, ascending step, sequence, output (ys time-major, Y batch-major)."""
    sse = 0.0
    for t in range(ys.shape[0]):
        for bb in range(ys.shape[1]):
            for o in range(ys.shape[2]):
                e = np.float64(ys[t, bb, o]) - np.float64(Y[bb, t, o])
                sse += e * e
    return sse


def mse(p, X, Y, n_in, hidden, n_out, dt):
    """Mean squared error of the predictions over every step, sequence and output."""
    B, T = X.shape[0], X.shape[1]
    dtype = p.dtype
    hs = np.empty((T + 1, B, hidden), dtype)
    gs = np.empty((T, B, hidden), dtype)
    cs = np.empty((T, B, hidden), dtype)
    ys = np.empty((T, B, n_out), dtype)
    WT = np.empty((n_in + hidden, 2 * hidden), dtype)
    forward(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT)
    return _sse(ys, Y) / (B * T * n_out)


# ---------------------------------------------------------------- backward

@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _outer_acc(G, U, V, n):
    """G[j, :] += sum_{k < n} U[k, j] * V[k, :], four k per pass over each row of G."""
    nj = G.shape[0]
    m = G.shape[1]
    k = 0
    while k + 4 <= n:
        v0, v1, v2, v3 = V[k], V[k + 1], V[k + 2], V[k + 3]
        for j in range(nj):
            u0, u1, u2, u3 = U[k, j], U[k + 1, j], U[k + 2, j], U[k + 3, j]
            gj = G[j]
            for r in range(m):
                gj[r] = gj[r] + u0 * v0[r] + u1 * v1[r] + u2 * v2[r] + u3 * v3[r]
        k += 4
    while k < n:
        vk = V[k]
        for j in range(nj):
            uj = U[k, j]
            gj = G[j]
            for r in range(m):
                gj[r] += uj * vk[r]
        k += 1


@njit(cache=True, nogil=True, error_model="numpy")
def loss_grad_pass(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, g, hs, gs, cs, ys, WT, wk, distill_hidden):
    """The loss and gradient; ``distill_hidden`` (H,) weights the trajectory term per unit (empty: weight 1, the
    notes' term, whose arithmetic is kept apart: it skips a multiply by 1 per element)."""
    forward_pass(p, X, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, wk)
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    gW, gb, gtau, gWout, gbout = unpack(g, n_in, hidden, n_out)
    decay, ddecay, dh, DP, DY, gWT, Wh = wk.decay, wk.ddecay, wk.dh, wk.DP, wk.DY, wk.gWT, wk.Wh
    B, T = X.shape[0], X.shape[1]
    h2 = 2 * hidden
    ty = p.dtype.type
    one = ty(1.0)
    dt_ = ty(dt)
    g[:] = 0
    # d decay / d tau, constant over the batch (decay itself was set by the forward)
    for i in range(hidden):
        a = abs(tau[i]) + ty(TAU_EPS)
        ddecay[i] = decay[i] * dt_ / (a * a) * np.sign(tau[i])
    n = B * T
    cy = ty(w_y) / ty(n * n_out)
    ch = ty(alpha) / ty(n * hidden)
    distill = alpha != 0.0
    weighted = distill_hidden.shape[0] > 0
    sse = 0.0
    for t in range(T):
        for bb in range(B):
            for o in range(n_out):
                err = ys[t, bb, o] - Y[bb, t, o]
                sse += np.float64(err) * np.float64(err)
                DY[t, bb, o] = cy * err
    straj = 0.0
    if distill and weighted:
        for t in range(1, T + 1):
            for bb in range(B):
                for i in range(hidden):
                    d = np.float64(hs[t, bb, i] - ht[t, bb, i])
                    straj += d * d * np.float64(distill_hidden[i])
    elif distill:
        for t in range(1, T + 1):
            for bb in range(B):
                for i in range(hidden):
                    d = np.float64(hs[t, bb, i] - ht[t, bb, i])
                    straj += d * d
    for r in range(h2):
        for j in range(hidden):
            Wh[r, j] = W[r, n_in + j]
    dh[:, :] = 0  # dL/dh_{t+1}, carried back in time
    for t in range(T - 1, -1, -1):
        for bb in range(B):
            dhb = dh[bb]
            for o in range(n_out):
                dy = DY[t, bb, o]
                wo = Wout[o]
                for i in range(hidden):
                    dhb[i] += dy * wo[i]
            if distill and weighted:
                hn = hs[t + 1, bb]
                htn = ht[t + 1, bb]
                for i in range(hidden):
                    dhb[i] += ch * distill_hidden[i] * (hn[i] - htn[i])
            elif distill:
                hn = hs[t + 1, bb]
                htn = ht[t + 1, bb]
                for i in range(hidden):
                    dhb[i] += ch * (hn[i] - htn[i])
            gg, cc, hp, dp = gs[t, bb], cs[t, bb], hs[t, bb], DP[t, bb]
            for i in range(hidden):
                gate, cand, hpi, d = gg[i], cc[i], hp[i], dhb[i]
                omg = one - gate
                dp[i] = d * (cand - hpi * decay[i]) * gate * omg
                dp[hidden + i] = d * gate * (one - cand * cand)
                gtau[i] += d * omg * hpi * ddecay[i]
                dhb[i] = d * omg * decay[i]  # now dL/dh_t, direct path
            # dL/dh_t += W_h^T dpre, four rows of W_h per pass (pairing sequences here, as the forward does,
            # measured no faster: the derivative loops between the products dominate)
            matvec_rows(dhb, Wh, dp, 0, h2)
    # weight gradients: batched over all B*T steps
    DPf = DP.reshape((n, h2))
    for k in range(n):
        dk = DPf[k]
        for r in range(h2):
            gb[r] += dk[r]
    gWT[:, :] = 0
    _outer_acc(gWT[n_in:], hs[:T].reshape((n, hidden)), DPf, n)
    for bb in range(B):
        for t in range(T):
            dp = DP[t, bb]
            for j in range(n_in):
                xj = X[bb, t, j]
                gj = gWT[j]
                for r in range(h2):
                    gj[r] += xj * dp[r]
    for r in range(h2):
        for j in range(n_in + hidden):
            gW[r, j] = gWT[j, r]
    DYf = DY.reshape((n, n_out))
    for k in range(n):
        for o in range(n_out):
            gbout[o] += DYf[k, o]
    H1 = hs[1:].reshape((n, hidden))
    for o in range(n_out):
        go = gWout[o]
        k = 0
        while k + 4 <= n:
            y0, y1, y2, y3 = DYf[k, o], DYf[k + 1, o], DYf[k + 2, o], DYf[k + 3, o]
            h0, h1, h2_, h3 = H1[k], H1[k + 1], H1[k + 2], H1[k + 3]
            for i in range(hidden):
                go[i] = go[i] + y0 * h0[i] + y1 * h1[i] + y2 * h2_[i] + y3 * h3[i]
            k += 4
        while k < n:
            yk = DYf[k, o]
            hk = H1[k]
            for i in range(hidden):
                go[i] += yk * hk[i]
            k += 1
    mse_ = sse / (n * n_out)
    loss = w_y * 0.5 * mse_ + alpha * 0.5 * straj / (n * hidden)
    return loss, mse_


def loss_grad(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, g, hs, gs, cs, ys, WT):
    """Loss, output MSE and gradient of the loss with respect to ``p`` (BPTT).

    Parameters are as in :func:`forward`; Y (B, T, O) targets; ``w_y`` weights
    the output term and ``alpha`` the trajectory term against the teacher's
    hidden states ``ht`` (T+1, B, H; ignored when alpha == 0). The gradient is
    written into ``g`` (same layout as ``p``). Returns (loss, mse) as float64.
    """
    return loss_grad_w(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, np.empty(0, p.dtype), g, hs, gs, cs, ys, WT)


def loss_grad_w(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, distill_hidden, g, hs, gs, cs, ys, WT):
    """:func:`loss_grad` with the trajectory term weighted per unit by ``distill_hidden`` (H,).

    The normalised hidden-state matching passes ``hw_i = 1 / var_i``, the teacher's
    variance of unit i; an empty ``distill_hidden`` is :func:`loss_grad` exactly.
    """
    wk = work(X.shape[0], X.shape[1], n_in, hidden, n_out, p)
    return loss_grad_pass(p, X, Y, n_in, hidden, n_out, dt, w_y, alpha, ht, g, hs, gs, cs, ys, WT, wk,
                          distill_hidden)
