"""Many models of one shape trained in one compiled call: the model index is the innermost axis.

Every hot array carries the model index ``m`` last, so each elementwise pass and
each row of a matrix-vector product is one contiguous run over the M models: one
SIMD lane per model, and no sum is ever reordered (the vectors run across
models, never along a sum).
Each model's arithmetic in the cell (forward, loss, BPTT) is, operation for
operation, the float32 sequence of the single-model cell (:mod:`ternq.kernels.cell`):
the same association of every sum, the same float64 accumulators for the loss, the
same casts, the same activation polynomial. Everything else of a model's epoch
(quantization, schedules, STE, clipping, Adam, the fine-tune) is the single loop's
own per-model code (:mod:`ternq.kernels.loop`), run on that model's row. So each
model's result is bit-identical to training it alone. The products and the
nonlinearities are explicit vector instructions (LLVM IR through Numba
intrinsics) in blocks of 16, 8 and 4 lanes.

Layouts, for M models, flat effective-parameter length Pe (:class:`ternq.kernels.cell.Layout`)
and theta length P (Pe, plus 2H + O scales for a student)::

    theta, adam_m, adam_v   (M, P)       one model's row each, as the single path's vector
    thresholds              (M, 2H + O)  per-row state kept between calls (zeros at the start)
    teacher                 (Pe, M)      teachers' effective parameters (distillation), or (0, M)
    X, Y                    (D, E, B, T, I / O)  D distinct data sets
    data                    (M,)         which data set each model trains on
    loop                    Loop         the settings, one entry per model
    losses, mses            (E, M)       per epoch, before its update
    bad                     (M,)         -1, or the first epoch whose loss was not finite

A model whose loss is not finite is frozen there (theta, moments as before that
epoch; later epochs keep NaN in ``losses``), exactly where the single path stops;
the other models go on undisturbed.
"""

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cell import EXP_C1, EXP_C2, EXP_LOG2E, EXP_POLY, TAU_EPS, _exp, n_params, unpack
from .loop import begin_epoch, end_epoch, loss_weights, output_target
from .ternary import n_scales

# Vector widths of the hand-written products below: blocks of 16 float32 lanes (one
# AVX-512 register, two AVX2 ones), then one block of 8 and one of 4 for the rest.
# The model count M of a compiled call is a multiple of LANES (the API pads the batch).
BLOCKS = (16, 8, 4)
LANES = BLOCKS[-1]


def _lane_blocks(builder, M, body):
    """Call ``body(i, vector_type)`` for lanes i.. of M in blocks of 16, then 8, then 4."""
    start = M.type(0)
    for w in BLOCKS:
        wv = M.type(w)
        stop = builder.add(start, builder.mul(builder.udiv(builder.sub(M, start), wv), wv))
        with cgutils.for_range_slice(builder, start, stop, wv) as (i, _):
            body(i, llvm_ir.VectorType(llvm_ir.FloatType(), w))
        start = stop


def _madd_rows_codegen(n_terms):
    """IR of acc[r, :] = acc[r, :] + v0 * W0[r, :] + ... + v_{n-1} * W_{n-1}[r, :], for every row r.

    acc and W_q are C-contiguous (R, M), v_q (M,); M a multiple of LANES. Written as
    explicit vector loads, fmul and fadd (no fast-math flags, so no contraction and
    no reassociation): per lane, exactly the scalar sequence, left to right.
    LLVM's own vectorizer would add runtime alias checks to every row of M lanes and
    reload the v_q for every row; here the v_q of a block of lanes stay in registers
    while the rows stream past.
    """

    def codegen(context, builder, sig, args):
        arrs = [context.make_array(ty)(context, builder, v) for ty, v in zip(sig.args, args, strict=True)]
        acc = arrs[0]
        R, M = cgutils.unpack_tuple(builder, acc.shape, 2)

        def block(i, vt):
            def ptr(a, k):
                return builder.bitcast(builder.gep(a.data, [k]), vt.as_pointer())

            vs = [builder.load(ptr(arrs[1 + 2 * q], i), align=4) for q in range(n_terms)]
            with cgutils.for_range(builder, R) as row:
                k = builder.add(builder.mul(row.index, M), i)
                s = builder.load(ptr(acc, k), align=4)
                for q in range(n_terms):
                    s = builder.fadd(s, builder.fmul(vs[q], builder.load(ptr(arrs[2 + 2 * q], k), align=4)))
                builder.store(s, ptr(acc, k), align=4)

        _lane_blocks(builder, M, block)
        return context.get_dummy_value()

    return codegen


def _check_rows(acc, pairs):
    f32 = types.float32
    ok = isinstance(acc, types.Array) and acc.dtype == f32 and acc.ndim == 2 and acc.layout == "C"
    for v, W in pairs:
        ok = ok and isinstance(v, types.Array) and v.dtype == f32 and v.ndim == 1 and v.layout == "C"
        ok = ok and isinstance(W, types.Array) and W.dtype == f32 and W.ndim == 2 and W.layout == "C"
    return ok


@intrinsic
def _madd1(typingctx, acc, v0, W0):
    """acc[r, :] += v0 * W0[r, :] (see :func:`_madd_rows_codegen`)."""
    if not _check_rows(acc, [(v0, W0)]):
        return None
    return types.void(acc, v0, W0), _madd_rows_codegen(1)


@intrinsic
def _madd4(typingctx, acc, v0, W0, v1, W1, v2, W2, v3, W3):
    """acc[r, :] = acc[r, :] + v0 * W0[r, :] + v1 * W1[r, :] + v2 * W2[r, :] + v3 * W3[r, :]."""
    if not _check_rows(acc, [(v0, W0), (v1, W1), (v2, W2), (v3, W3)]):
        return None
    return types.void(acc, v0, W0, v1, W1, v2, W2, v3, W3), _madd_rows_codegen(4)


@intrinsic
def _dot_rows(typingctx, y, U, V):
    """y[:] = y + U[0] * V[0] + U[1] * V[1] + ..., rows in ascending order (per lane, left to right).

    y (M,), U and V C-contiguous (R, M), float32, M a multiple of LANES.
    """
    f32 = types.float32
    for a, nd in ((y, 1), (U, 2), (V, 2)):
        if not (isinstance(a, types.Array) and a.dtype == f32 and a.ndim == nd and a.layout == "C"):
            return None

    def codegen(context, builder, sig, args):
        ya, ua, va = [context.make_array(ty)(context, builder, v) for ty, v in zip(sig.args, args, strict=True)]
        R, M = cgutils.unpack_tuple(builder, ua.shape, 2)

        def block(i, vt):
            def ptr(a, k):
                return builder.bitcast(builder.gep(a.data, [k]), vt.as_pointer())

            slot = cgutils.alloca_once(builder, vt)
            builder.store(builder.load(ptr(ya, i), align=4), slot)
            with cgutils.for_range(builder, R) as row:
                k = builder.add(builder.mul(row.index, M), i)
                prod = builder.fmul(builder.load(ptr(ua, k), align=4), builder.load(ptr(va, k), align=4))
                builder.store(builder.fadd(builder.load(slot), prod), slot)
            builder.store(builder.load(slot), ptr(ya, i), align=4)

        _lane_blocks(builder, M, block)
        return context.get_dummy_value()

    return types.void(y, U, V), codegen


def _act_codegen(s):
    """IR of out[k] = sigmoid(a[k]) (s = 1) or tanh(a[k]) (s = 2) for k < len(a), len a multiple of LANES.

    The operations of ``cell._act`` (float32 branch) one for one, as vector
    instructions in blocks of 16, 8 and 4 lanes: LLVM's vectorizer picks 8-lane
    vectors for that loop on this kind of CPU; this doubles the width. Only the
    output that ``s`` selects is computed (the other one is discarded there too).
    """

    def codegen(context, builder, sig, args):
        out, a = [context.make_array(ty)(context, builder, v) for ty, v in zip(sig.args, args, strict=True)]
        n = a.nitems
        f32 = llvm_ir.FloatType()
        i32 = llvm_ir.IntType(32)

        def block(i, vt):
            w = vt.count
            it = llvm_ir.VectorType(i32, w)

            def c(x):
                return llvm_ir.Constant(vt, [llvm_ir.Constant(f32, float(np.float32(x)))] * w)

            def call(name, *xs):
                fn = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(vt, [vt] * len(xs)),
                                                    f"llvm.{name}.v{w}f32")
                return builder.call(fn, xs)

            def ptr(arr):
                return builder.bitcast(builder.gep(arr.data, [i]), vt.as_pointer())

            x = builder.load(ptr(a), align=4)
            ax = builder.fmul(call("fabs", x), c(s))
            ax = builder.select(builder.fcmp_ordered(">", ax, c(80.0)), c(80.0), ax)
            y = builder.fsub(c(-0.0), ax)  # -ax
            fk = call("floor", builder.fadd(builder.fmul(y, c(EXP_LOG2E)), c(0.5)))
            r = builder.fsub(builder.fsub(y, builder.fmul(fk, c(EXP_C1))), builder.fmul(fk, c(EXP_C2)))
            m = c(EXP_POLY[0])
            for p in EXP_POLY[1:]:
                m = builder.fadd(builder.fmul(m, r), c(p))
            m = builder.fadd(builder.fmul(m, builder.fmul(r, r)), r)
            kc = builder.select(builder.fcmp_ordered(">=", fk, c(-126.0)), fk, c(-126.0))
            bits = builder.shl(builder.add(builder.fptosi(kc, it), llvm_ir.Constant(it, [127] * w)),
                               llvm_ir.Constant(it, [23] * w))
            sc = builder.bitcast(bits, vt)
            one = c(1.0)
            scm = builder.fmul(sc, m)
            e = builder.fadd(scm, sc)
            q = builder.fdiv(one, builder.fadd(one, e))
            pos = builder.fcmp_ordered(">=", x, c(0.0))
            if s == 1:
                res = builder.select(pos, q, builder.fmul(e, q))
            else:
                t = builder.fmul(builder.fsub(c(-0.0), builder.fadd(scm, builder.fsub(sc, one))), q)
                res = builder.select(pos, t, builder.fsub(c(-0.0), t))
            builder.store(res, ptr(out), align=4)

        _lane_blocks(builder, n, block)
        return context.get_dummy_value()

    return codegen


def _check_flat(out, a):
    return all(isinstance(v, types.Array) and v.dtype == types.float32 and v.ndim == 1 and v.layout == "C"
               for v in (out, a))


@intrinsic
def _sigmoid_v(typingctx, out, a):
    """out[:] = sigmoid(a), bit for bit as ``cell.sigmoid`` (float32); len(a) a multiple of LANES."""
    if not _check_flat(out, a):
        return None
    return types.void(out, a), _act_codegen(1)


@intrinsic
def _tanh_v(typingctx, out, a):
    """out[:] = tanh(a), bit for bit as ``cell.tanh`` (float32); len(a) a multiple of LANES."""
    if not _check_flat(out, a):
        return None
    return types.void(out, a), _act_codegen(2)


@njit(cache=True, nogil=True, error_model="numpy")
def _mv(acc, Mat, v, j0, n):
    """acc[r, m] += sum_{j < n} v[j, m] * Mat[j0 + j][r, m], ascending j, four j per pass.

    ``a + v0 w0 + v1 w1 + v2 w2 + v3 w3`` associates left to right: the same
    sequence of additions as one j at a time, and as the single path's rows.
    """
    j = 0
    while j + 4 <= n:
        _madd4(acc, v[j], Mat[j0 + j], v[j + 1], Mat[j0 + j + 1], v[j + 2], Mat[j0 + j + 2],
               v[j + 3], Mat[j0 + j + 3])
        j += 4
    while j < n:
        _madd1(acc, v[j], Mat[j0 + j])
        j += 1


@njit(cache=True, nogil=True, error_model="numpy")
def forward(p, Xe, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, decay, A, R):
    """The cell over a batch for M models; Xe (B, T, I, M); as ``cell.forward_pass`` per model."""
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    B, T = Xe.shape[0], Xe.shape[1]
    M = p.shape[1]
    z, h2 = n_in + hidden, 2 * hidden
    HM = hidden * M
    one = np.float32(1.0)
    eps = np.float32(TAU_EPS)
    dt_ = np.float32(dt)
    for r in range(h2):
        for j in range(z):
            for m in range(M):
                WT[j, r, m] = W[r, j, m]
    for i in range(hidden):
        for m in range(M):
            decay[i, m] = _exp(-dt_ / (abs(tau[i, m]) + eps))
    # flat arrays reshaped once (a reshape costs a helper call); inside the loops, slices of
    # them indexed from 0 (an index o + k could be negative for LLVM: wraparound code, no SIMD)
    df = decay.reshape(HM)
    hs[0] = 0
    Af = A.reshape(A.size)
    Rf = R.reshape(R.size)
    bf = b.reshape(h2 * M)
    gsf = gs.reshape(gs.size)
    csf = cs.reshape(cs.size)
    hsf = hs.reshape(hs.size)
    for t in range(T):
        for bb in range(B):
            a = A[bb]
            af = Af[bb * h2 * M : (bb + 1) * h2 * M]
            for k in range(h2 * M):
                af[k] = bf[k]
            _mv(a, WT, Xe[bb, t], 0, n_in)
            _mv(a, WT, hs[t, bb], n_in, hidden)
        for bb in range(B):
            og = bb * h2 * M
            _sigmoid_v(Rf[og : og + HM], Af[og : og + HM])
            _tanh_v(Rf[og + HM : og + 2 * HM], Af[og + HM : og + 2 * HM])
        for bb in range(B):
            # (H, M) blocks as flat runs of H*M: one loop, one set of alias checks
            o = (t * B + bb) * HM
            on = o + B * HM
            og = bb * h2 * M
            rg, rc = Rf[og : og + HM], Rf[og + HM : og + 2 * HM]
            g, c = gsf[o : o + HM], csf[o : o + HM]
            hp, hn = hsf[o : o + HM], hsf[on : on + HM]
            for k in range(HM):
                gate = rg[k]
                cand = rc[k]
                g[k] = gate
                c[k] = cand
                hn[k] = (one - gate) * hp[k] * df[k] + gate * cand
            hn2 = hs[t + 1, bb]
            for o in range(n_out):
                y = ys[t, bb, o]
                for m in range(M):
                    y[m] = bout[o, m]
                _dot_rows(y, Wout[o], hn2)  # y += Wout[o, i] * h[i], ascending i


@njit(cache=True, nogil=True, error_model="numpy")
def _loss_grad(p, Xe, Ye, n_in, hidden, n_out, dt, w_y, alpha, distill, weights, ht, g,
               hs, gs, cs, ys, WT, decay, A, R, ddecay, dh, DP, DY, gWT, loss, mse_):
    """Loss, output MSE and dL/dp for M models (as ``cell.loss_grad_pass`` per model).

    ``w_y``, ``alpha`` (M,) float64; ``distill`` (M,) bool: the trajectory term on; ``weights`` (H, M):
    its per-unit weights (1 for every unit: the unweighted term's bits, a multiply by 1 being exact);
    writes g (Pe, M), loss and mse_ (M,).
    """
    forward(p, Xe, n_in, hidden, n_out, dt, hs, gs, cs, ys, WT, decay, A, R)
    W, b, tau, Wout, bout = unpack(p, n_in, hidden, n_out)
    gW, gb, gtau, gWout, gbout = unpack(g, n_in, hidden, n_out)
    B, T = Xe.shape[0], Xe.shape[1]
    M = p.shape[1]
    h2 = 2 * hidden
    HM = hidden * M
    ty = np.float32
    one = ty(1.0)
    dt_ = ty(dt)
    g[:] = 0
    for i in range(hidden):
        for m in range(M):
            a = abs(tau[i, m]) + ty(TAU_EPS)
            ddecay[i, m] = decay[i, m] * dt_ / (a * a) * np.sign(tau[i, m])
    df = decay.reshape(HM)
    ddf = ddecay.reshape(HM)
    gtf = gtau.reshape(HM)
    gsf = gs.reshape(gs.size)
    csf = cs.reshape(cs.size)
    hsf = hs.reshape(hs.size)
    DPflat = DP.reshape(DP.size)
    dhf = dh.reshape(dh.size)
    n = B * T
    cy = np.empty(M, ty)
    ch = np.empty(M, ty)
    any_distill = False
    for m in range(M):
        cy[m] = ty(w_y[m]) / ty(n * n_out)
        ch[m] = ty(alpha[m]) / ty(n * hidden)
        any_distill = any_distill or distill[m]
    sse = np.zeros(M)
    for t in range(T):
        for bb in range(B):
            for o in range(n_out):
                for m in range(M):
                    err = ys[t, bb, o, m] - Ye[bb, t, o, m]
                    sse[m] += np.float64(err) * np.float64(err)
                    DY[t, bb, o, m] = cy[m] * err
    straj = np.zeros(M)
    if any_distill:
        for t in range(1, T + 1):
            for bb in range(B):
                for i in range(hidden):
                    for m in range(M):
                        d = np.float64(hs[t, bb, i, m] - ht[t, bb, i, m])
                        straj[m] += d * d * np.float64(weights[i, m])
    dh[:] = 0  # dL/dh_{t+1}, carried back in time
    for t in range(T - 1, -1, -1):
        for bb in range(B):
            dhb = dh[bb]
            for o in range(n_out):
                _madd1(dhb, DY[t, bb, o], Wout[o])  # dh += dy * Wout[o]
            if any_distill:
                hn = hs[t + 1, bb]
                htn = ht[t + 1, bb]
                for i in range(hidden):
                    for m in range(M):
                        x = dhb[i, m]
                        y = x + ch[m] * weights[i, m] * (hn[i, m] - htn[i, m])
                        dhb[i, m] = y if distill[m] else x
            o = (t * B + bb) * HM
            og = (t * B + bb) * h2 * M
            gg, cc, hp = gsf[o : o + HM], csf[o : o + HM], hsf[o : o + HM]
            dpg, dpc = DPflat[og : og + HM], DPflat[og + HM : og + 2 * HM]
            dhk = dhf[bb * HM : (bb + 1) * HM]
            for k in range(HM):
                gate, cand, hpi, d = gg[k], cc[k], hp[k], dhk[k]
                omg = one - gate
                dpg[k] = d * (cand - hpi * df[k]) * gate * omg
                dpc[k] = d * gate * (one - cand * cand)
                gtf[k] += d * omg * hpi * ddf[k]
                dhk[k] = d * omg * df[k]  # now dL/dh_t, direct path
            # dL/dh_t += W_h^T dpre, ascending rows of W, four per pass
            dp = DP[t, bb]
            r = 0
            while r + 4 <= h2:
                _madd4(dhb, dp[r], W[r, n_in:], dp[r + 1], W[r + 1, n_in:],
                       dp[r + 2], W[r + 2, n_in:], dp[r + 3], W[r + 3, n_in:])
                r += 4
            while r < h2:
                _madd1(dhb, dp[r], W[r, n_in:])
                r += 1
    # weight gradients: batched over all B*T steps, in the single path's orders
    DPf = DP.reshape((n, h2, M))
    gbf = gb.reshape(h2 * M)
    for k in range(n):
        dk = DPflat[k * h2 * M : (k + 1) * h2 * M]
        for q in range(h2 * M):
            gbf[q] += dk[q]
    gWT[:] = 0
    U = hs[:T].reshape((n, hidden, M))
    G = gWT[n_in:]
    k = 0
    while k + 4 <= n:
        for j in range(hidden):
            _madd4(G[j], U[k, j], DPf[k], U[k + 1, j], DPf[k + 1], U[k + 2, j], DPf[k + 2],
                   U[k + 3, j], DPf[k + 3])
        k += 4
    while k < n:
        for j in range(hidden):
            _madd1(G[j], U[k, j], DPf[k])
        k += 1
    for bb in range(B):
        for t in range(T):
            dp = DP[t, bb]
            for j in range(n_in):
                _madd1(gWT[j], Xe[bb, t, j], dp)
    for r in range(h2):
        for j in range(n_in + hidden):
            for m in range(M):
                gW[r, j, m] = gWT[j, r, m]
    DYf = DY.reshape((n, n_out, M))
    for k in range(n):
        for o in range(n_out):
            for m in range(M):
                gbout[o, m] += DYf[k, o, m]
    H1 = hs[1:].reshape((n, hidden, M))
    for o in range(n_out):
        go = gWout[o]
        k = 0
        while k + 4 <= n:
            _madd4(go, DYf[k, o], H1[k], DYf[k + 1, o], H1[k + 1], DYf[k + 2, o], H1[k + 2],
                   DYf[k + 3, o], H1[k + 3])
            k += 4
        while k < n:
            _madd1(go, DYf[k, o], H1[k])
            k += 1
    for m in range(M):
        mse_[m] = sse[m] / (n * n_out)
        loss[m] = w_y[m] * 0.5 * mse_[m] + alpha[m] * 0.5 * straj[m] / (n * hidden)


@njit(cache=True, nogil=True, error_model="numpy")
def train_epochs(theta, adam_m, adam_v, X, Y, data, e0, e1, loop, teacher, thresholds, losses, mses, bad):
    """Train M models in place for epochs ``e0 .. e1-1`` of ``loop.n_epochs`` (see the module docstring).

    Per model, the same computation as :func:`ternq.kernels.loop.train_epochs`.
    ``bad[m] >= 0`` marks a frozen model; it stays frozen across calls.
    """
    B, T = X.shape[2], X.shape[3]
    M = theta.shape[0]
    if M % LANES != 0:
        raise ValueError("the number of models must be a multiple of LANES")
    n_in, hidden, n_out, dt = loop.n_in, loop.hidden, loop.n_out, loop.dt
    dtype = theta.dtype
    h2 = 2 * hidden
    z = n_in + hidden
    m_eff = n_params(n_in, hidden, n_out)
    p = np.empty((m_eff, M), dtype)
    g_eff = np.empty((m_eff, M), dtype)
    # p and g_eff model-major, for the per-model steps: transposed in one pass per epoch (each model's
    # column on its own would touch a cache line per element)
    p_rows = np.empty((M, m_eff), dtype)
    g_rows = np.empty((M, m_eff), dtype)
    g = np.zeros(theta.shape[1], dtype)
    hs = np.empty((T + 1, B, hidden, M), dtype)
    gs = np.empty((T, B, hidden, M), dtype)
    cs = np.empty((T, B, hidden, M), dtype)
    ys = np.empty((T, B, n_out, M), dtype)
    ht = np.zeros((T + 1, B, hidden, M), dtype)
    tgs = np.empty((T, B, hidden, M), dtype)
    tcs = np.empty((T, B, hidden, M), dtype)
    tys = np.empty((T, B, n_out, M), dtype)
    WT = np.empty((z, h2, M), dtype)
    decay = np.empty((hidden, M), dtype)
    ddecay = np.empty((hidden, M), dtype)
    A = np.empty((B, h2, M), dtype)
    R = np.empty((B, h2, M), dtype)
    dh = np.empty((B, hidden, M), dtype)
    DP = np.empty((T, B, h2, M), dtype)
    DY = np.empty((T, B, n_out, M), dtype)
    gWT = np.empty((z, h2, M), dtype)
    Xe = np.empty((B, T, n_in, M), dtype)
    Ye = np.empty((B, T, n_out, M), dtype)
    weights = np.ones((hidden, M), dtype)
    if loop.distill_hidden.shape[0] > 0:
        weights[:] = loop.distill_hidden
    loss = np.empty(M)
    mse_ = np.empty(M)
    alpha = np.empty(M)
    w_y = np.empty(M)
    share = np.empty(M)
    prog = np.empty(M)
    fine = np.empty(M, np.bool_)
    use_thr = np.empty(M, np.bool_)
    running = np.empty(M, np.bool_)
    traj = np.empty(M, np.bool_)
    live = np.ones((M, n_scales(n_in, hidden, n_out, loop.group)), np.int8)
    for e in range(e0, e1):
        for m in range(M):
            running[m] = bad[m] < 0
        # this epoch's sequences, model index innermost
        for m in range(M):
            xs = X[data[m], e]
            ysrc = Y[data[m], e]
            for bb in range(B):
                for t in range(T):
                    for j in range(n_in):
                        Xe[bb, t, j, m] = xs[bb, t, j]
                    for o in range(n_out):
                        Ye[bb, t, o, m] = ysrc[bb, t, o]
        needs_teacher = False
        for m in range(M):
            if running[m]:
                prog[m], fine[m], use_thr[m] = begin_epoch(loop, m, e, theta[m], adam_m[m], thresholds[m], live[m],
                                                           p_rows[m])
            alpha[m], w_y[m], share[m] = loss_weights(loop, m, prog[m], fine[m])
            traj[m] = running[m] and alpha[m] != 0.0
            needs_teacher = needs_teacher or (running[m] and (traj[m] or share[m] > 0.0))
        for j in range(m_eff):
            for m in range(M):
                p[j, m] = p_rows[m, j]
        if needs_teacher and teacher.shape[0] > 0:
            forward(teacher, Xe, n_in, hidden, n_out, dt, ht, tgs, tcs, tys, WT, decay, A, R)
            for m in range(M):
                if running[m] and share[m] > 0.0:
                    output_target(Ye[:, :, :, m], tys[:, :, :, m], share[m], Ye[:, :, :, m])
        _loss_grad(p, Xe, Ye, n_in, hidden, n_out, dt, w_y, alpha, traj, weights, ht, g_eff,
                   hs, gs, cs, ys, WT, decay, A, R, ddecay, dh, DP, DY, gWT, loss, mse_)
        for j in range(m_eff):
            for m in range(M):
                g_rows[m, j] = g_eff[j, m]
        for m in range(M):
            if not running[m]:
                continue
            if not np.isfinite(loss[m]):
                bad[m] = e
                continue
            losses[e, m] = loss[m]
            mses[e, m] = mse_[m]
            end_epoch(loop, m, e, prog[m], fine[m], use_thr[m], theta[m], adam_m[m], adam_v[m], thresholds[m],
                      live[m], g_rows[m], g)
