"""The CfC cell's training, evaluation and rollouts as CUDA kernels (numba-cuda): one thread block per model.

Each model's arithmetic is, operation for operation, the float32 sequence of the CPU kernels
(:mod:`ternq.kernels.cell`, :mod:`ternq.kernels.multi`), so every result is bit-identical to theirs:

- Every multiply, add, divide and square root goes through one small helper (``_mul``, ``_add``, ...)
  that calls libdevice's correctly rounded ``*_rn`` functions. Left to itself NVVM contracts
  ``a * b + c`` into one fused multiply-add, which rounds once instead of twice.
- Parallel work never reorders a sum: a thread owns an output (a unit of one sequence, a row of a
  gradient) and adds its terms in the CPU's order. Sums whose CPU order runs across threads (the
  float64 losses, the clipping norm, the decay's gradient over sequences) are added by one thread.
- The schedules (learning rate, Adam's bias corrections, alpha, beta) are float64 functions of the
  epoch; the host computes them with the CPU's own code and passes them in (:mod:`ternq.gpu`).

Under numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``) libdevice is stubs; the helpers are then
plain operators on numpy float32/float64 scalars, which round as the CPU does.

Layouts, model index first (one block reads one contiguous slice): theta, adam_m, adam_v (M, P);
effective parameters (M, Pe) in the cell's flat layout; per-model work arrays (M, T+1, B, H) etc.
"""

import numpy as np
from numba import config, cuda

from .cell import EXP_C1, EXP_C2, EXP_LOG2E, EXP_POLY, TAU_EPS, n_params
from .ternary import MASK_NONE, MASK_NOTES, SCALE_MIN

SIMULATED = bool(config.ENABLE_CUDASIM)

# threads per block: a multiple of the warp; B*H work items are strided over them. Few models
# (fewer blocks than the GPU has room for) get more threads each.
THREADS = 256
THREADS_FEW = 1024
FEW_MODELS = 128
# registers per thread: the kernel wants ~190, which would leave two blocks per multiprocessor; at 32
# more blocks fit and, measured on an H200 (H=32, 4096 models), training runs 1.6x faster
MAX_REGISTERS = 32
# the most (sequence, unit) pairs one thread carries through BPTT: B*H <= UNITS_PER_THREAD * threads
UNITS_PER_THREAD = 16

_f32 = np.float32
_LOG2E32, _C132, _C232 = _f32(EXP_LOG2E), _f32(EXP_C1), _f32(EXP_C2)
_P0, _P1, _P2, _P3, _P4, _P5 = (_f32(c) for c in EXP_POLY)
_ONE, _HALF, _ZERO = _f32(1.0), _f32(0.5), _f32(0.0)
_BIG, _KMIN = _f32(80.0), _f32(-126.0)
_EPS = _f32(TAU_EPS)
_SMIN = _f32(SCALE_MIN)
_DBL_MAX = 1.7976931348623157e308

if SIMULATED:
    def _kernel(f):
        return cuda.jit(f)

    def _mul(a, b):
        return a * b

    def _add(a, b):
        return a + b

    def _sub(a, b):
        return a - b

    def _div(a, b):
        return a / b

    def _sqrt(a):
        return np.sqrt(a)

    def _floor(a):
        return np.floor(a)

    def _pow2(k):
        return np.int32((int(k) + 127) << 23).view(np.float32)

    def _dfloor(a):
        return np.floor(a)

    _dmul, _dadd, _ddiv, _dsqrt = _mul, _add, _div, _sqrt
else:  # pragma: no cover - needs a GPU
    from numba.cuda import libdevice as _ld

    def _kernel(f):
        return cuda.jit(max_registers=MAX_REGISTERS)(f)

    @cuda.jit(device=True, inline=True)
    def _mul(a, b):
        return _ld.fmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _add(a, b):
        return _ld.fadd_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _sub(a, b):
        return _ld.fsub_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _div(a, b):
        return _ld.fdiv_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _sqrt(a):
        return _ld.fsqrt_rn(a)

    @cuda.jit(device=True, inline=True)
    def _floor(a):
        return _ld.floorf(a)

    @cuda.jit(device=True, inline=True)
    def _pow2(k):
        return _ld.int_as_float(np.int32((int(k) + 127) << 23))

    @cuda.jit(device=True, inline=True)
    def _dfloor(a):
        return _ld.floor(a)

    @cuda.jit(device=True, inline=True)
    def _dmul(a, b):
        return _ld.dmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _dadd(a, b):
        return _ld.dadd_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _ddiv(a, b):
        return _ld.ddiv_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _dsqrt(a):
        return _ld.dsqrt_rn(a)


# ---------------------------------------------------------------- scalar pieces (cell.py's, rounded alike)

@cuda.jit(device=True, inline=True)
def _exp(x):
    """cell._exp (float32)."""
    if x < -_BIG:
        x = -_BIG
    if x > _BIG:
        x = _BIG
    fk = _floor(_add(_mul(x, _LOG2E32), _HALF))
    r = _sub(_sub(x, _mul(fk, _C132)), _mul(fk, _C232))
    m = _add(_mul(_P0, r), _P1)
    m = _add(_mul(m, r), _P2)
    m = _add(_mul(m, r), _P3)
    m = _add(_mul(m, r), _P4)
    m = _add(_mul(m, r), _P5)
    m = _add(_mul(m, _mul(r, r)), r)
    kc = fk if fk >= _KMIN else _KMIN
    sc = _pow2(kc)
    return _add(_mul(sc, m), sc)


@cuda.jit(device=True, inline=True)
def _act(x, s):
    """cell._act (float32): sigmoid for s == 1, tanh for s == 2."""
    sf = _f32(s)
    ax = _mul(abs(x), sf)
    if ax > _BIG:
        ax = _BIG
    y = -ax
    fk = _floor(_add(_mul(y, _LOG2E32), _HALF))
    r = _sub(_sub(y, _mul(fk, _C132)), _mul(fk, _C232))
    m = _add(_mul(_P0, r), _P1)
    m = _add(_mul(m, r), _P2)
    m = _add(_mul(m, r), _P3)
    m = _add(_mul(m, r), _P4)
    m = _add(_mul(m, r), _P5)
    m = _add(_mul(m, _mul(r, r)), r)
    kc = fk if fk >= _KMIN else _KMIN
    sc = _pow2(kc)
    scm = _mul(sc, m)
    e = _add(scm, sc)
    q = _div(_ONE, _add(_ONE, e))
    if s == 1:
        return q if x >= _ZERO else _mul(e, q)
    t = _mul(-_add(scm, _sub(sc, _ONE)), q)
    return t if x >= _ZERO else -t


@cuda.jit(device=True, inline=True)
def _sign(x):
    if x > _ZERO:
        return _ONE
    if x < _ZERO:
        return -_ONE
    return x  # 0 or NaN, as np.sign


@cuda.jit(device=True, inline=True)
def _trit(w, s):
    """ternary.trit, in float32 (its values are exact either way)."""
    a = abs(_div(w, s))
    if a < _HALF:
        return _mul(w, _ZERO)
    return _add(_sign(w), _mul(w, _ZERO))


@cuda.jit(device=True, inline=True)
def _mask(w, s, beta, kind):
    """ternary.mask, float64."""
    if kind == MASK_NONE:
        return 1.0
    a = abs(_ddiv(np.float64(w), np.float64(s)))
    if kind == MASK_NOTES:
        t = min(max(_dadd(_dmul(_dadd(a, -0.5), beta), 0.5), 0.0), 1.0)
        return _dmul(_dmul(_dmul(6.0, t), _dadd(1.0, -t)), beta)
    x = min(max(_dmul(beta, abs(_dadd(a, -_dfloor(_dadd(a, 0.5))))), 0.0), 1.0)
    return _dadd(1.0, -_dmul(_dmul(x, x), _dadd(3.0, -_dmul(2.0, x))))


# ---------------------------------------------------------------- forward and backward of one model

@cuda.jit(device=True)
def _forward(p, X, Tx, free, n_in, hidden, n_out, dt, hs, gs, cs, ys, decay, tid, nt):
    """cell._forward for one model by one block: X (B, Tx, I); ``free`` steps read the last prediction."""
    B = hs.shape[1]
    z = n_in + hidden
    ob = 2 * hidden * z
    otau = ob + 2 * hidden
    owo = otau + hidden
    obo = owo + n_out * hidden
    for i in range(tid, hidden, nt):
        decay[i] = _exp(_div(-dt, _add(abs(p[otau + i]), _EPS)))
    for q in range(tid, B * hidden, nt):
        hs[0, q // hidden, q % hidden] = _ZERO
    cuda.syncthreads()
    for t in range(Tx + free):
        for q in range(tid, B * hidden, nt):
            bb = q // hidden
            i = q % hidden
            rg = i * z
            rc = (hidden + i) * z
            ag = p[ob + i]
            ac = p[ob + hidden + i]
            for j in range(n_in):
                xj = X[bb, t, j] if t < Tx else ys[t - 1, bb, j]
                ag = _add(ag, _mul(xj, p[rg + j]))
                ac = _add(ac, _mul(xj, p[rc + j]))
            for j in range(hidden):
                hj = hs[t, bb, j]
                ag = _add(ag, _mul(hj, p[rg + n_in + j]))
                ac = _add(ac, _mul(hj, p[rc + n_in + j]))
            gate = _act(ag, 1)
            cand = _act(ac, 2)
            gs[t, bb, i] = gate
            cs[t, bb, i] = cand
            hs[t + 1, bb, i] = _add(_mul(_mul(_sub(_ONE, gate), hs[t, bb, i]), decay[i]), _mul(gate, cand))
        cuda.syncthreads()
        for q in range(tid, B * n_out, nt):
            bb = q // n_out
            o = q % n_out
            y = p[obo + o]
            for i in range(hidden):
                y = _add(y, _mul(p[owo + o * hidden + i], hs[t + 1, bb, i]))
            ys[t, bb, o] = y
        if t + 1 >= Tx:  # the next step reads these predictions
            cuda.syncthreads()


@cuda.jit(device=True)
def _loss_grad(p, X, Y, n_in, hidden, n_out, dt, cy, ch, w_y, alpha, distill, ht, g,
               hs, gs, cs, ys, DP, DY, decay, ddecay, acc, tid, nt):
    """cell._loss_grad (unweighted trajectory term) for one model: writes g (Pe,), acc[0] loss, acc[1] mse."""
    B, T = X.shape[0], X.shape[1]
    z = n_in + hidden
    h2 = 2 * hidden
    ob = h2 * z
    otau = ob + h2
    owo = otau + hidden
    obo = owo + n_out * hidden
    n = B * T
    dt_ = dt
    _forward(p, X, T, 0, n_in, hidden, n_out, dt, hs, gs, cs, ys, decay, tid, nt)
    for i in range(tid, hidden, nt):
        tau = p[otau + i]
        a = _add(abs(tau), _EPS)
        ddecay[i] = _mul(_div(_mul(decay[i], dt_), _mul(a, a)), _sign(tau))
    for q in range(tid, T * B * n_out, nt):
        t = q // (B * n_out)
        bb = (q // n_out) % B
        o = q % n_out
        DY[t, bb, o] = _mul(cy, _sub(ys[t, bb, o], Y[bb, t, o]))
    if tid == 0:
        sse = 0.0
        for t in range(T):
            for bb in range(B):
                for o in range(n_out):
                    err = np.float64(_sub(ys[t, bb, o], Y[bb, t, o]))
                    sse = _dadd(sse, _dmul(err, err))
        straj = 0.0
        if distill:
            for t in range(1, T + 1):
                for bb in range(B):
                    for i in range(hidden):
                        d = np.float64(_sub(hs[t, bb, i], ht[t, bb, i]))
                        straj = _dadd(straj, _dmul(d, d))
        mse = _ddiv(sse, np.float64(n * n_out))
        acc[1] = mse
        acc[0] = _dadd(_dmul(_dmul(w_y, 0.5), mse), _ddiv(_dmul(_dmul(alpha, 0.5), straj), np.float64(n * hidden)))
    cuda.syncthreads()
    # BPTT: thread (bb, i) carries dL/dh of its units in registers; gs[t] is overwritten by the decay's
    # gradient term, summed over steps and sequences afterwards in the CPU's order
    nq = (B * hidden + nt - 1) // nt
    dh0 = cuda.local.array(UNITS_PER_THREAD, np.float32)
    for k in range(nq):
        dh0[k] = _ZERO
    for t in range(T - 1, -1, -1):
        for k in range(nq):
            q = tid + k * nt
            if q < B * hidden:
                bb = q // hidden
                i = q % hidden
                d = dh0[k]
                for o in range(n_out):
                    d = _add(d, _mul(DY[t, bb, o], p[owo + o * hidden + i]))
                if distill:
                    d = _add(d, _mul(ch, _sub(hs[t + 1, bb, i], ht[t + 1, bb, i])))
                gate = gs[t, bb, i]
                cand = cs[t, bb, i]
                hpi = hs[t, bb, i]
                omg = _sub(_ONE, gate)
                DP[t, bb, i] = _mul(_mul(_mul(d, _sub(cand, _mul(hpi, decay[i]))), gate), omg)
                DP[t, bb, hidden + i] = _mul(_mul(d, gate), _sub(_ONE, _mul(cand, cand)))
                gs[t, bb, i] = _mul(_mul(_mul(d, omg), hpi), ddecay[i])
                dh0[k] = _mul(_mul(d, omg), decay[i])
        cuda.syncthreads()
        for k in range(nq):
            q = tid + k * nt
            if q < B * hidden:
                bb = q // hidden
                i = q % hidden
                d = dh0[k]
                for r in range(h2):
                    d = _add(d, _mul(DP[t, bb, r], p[r * z + n_in + i]))
                dh0[k] = d
    cuda.syncthreads()
    # weight gradients, each entry a sum over the B*T steps in the CPU's order
    for i in range(tid, hidden, nt):
        s = _ZERO
        for t in range(T - 1, -1, -1):
            for bb in range(B):
                s = _add(s, gs[t, bb, i])
        g[otau + i] = s
    for r in range(tid, h2, nt):
        s = _ZERO
        for t in range(T):
            for bb in range(B):
                s = _add(s, DP[t, bb, r])
        g[ob + r] = s
    for q in range(tid, h2 * z, nt):
        r = q % h2
        j = q // h2
        s = _ZERO
        if j < n_in:
            for bb in range(B):
                for t in range(T):
                    s = _add(s, _mul(X[bb, t, j], DP[t, bb, r]))
        else:
            for t in range(T):
                for bb in range(B):
                    s = _add(s, _mul(hs[t, bb, j - n_in], DP[t, bb, r]))
        g[r * z + j] = s
    for o in range(tid, n_out, nt):
        s = _ZERO
        for t in range(T):
            for bb in range(B):
                s = _add(s, DY[t, bb, o])
        g[obo + o] = s
    for q in range(tid, n_out * hidden, nt):
        o = q // hidden
        i = q % hidden
        s = _ZERO
        for t in range(T):
            for bb in range(B):
                s = _add(s, _mul(DY[t, bb, o], hs[t + 1, bb, i]))
        g[owo + q] = s
    cuda.syncthreads()


@cuda.jit(device=True)
def _clip(g, k0, k1, clip, acc, tid, nt):
    """optim.clip_norm on g[k0:k1]: the float64 square sum by one thread, the scaling by all."""
    if tid == 0:
        ss = 0.0
        for k in range(k0, k1):
            gk = np.float64(g[k])
            ss = _dadd(ss, _dmul(gk, gk))
        acc[2] = _dsqrt(ss)
    cuda.syncthreads()
    norm = acc[2]
    if norm > clip:
        c = np.float32(_ddiv(clip, norm))
        for k in range(k0 + tid, k1, nt):
            g[k] = _mul(g[k], c)
    cuda.syncthreads()


@_kernel
def _train(theta, adam_m, adam_v, X, Y, data, e0, e1, n_in, hidden, n_out, dt, student, distill, mask_kind,
           clip, adam_a, adam_e, cy, ch, w_y, alpha, beta, teacher, losses, mses, bad,
           P, G, HS, GS, CS, YS, HT, DP, DY, DEC, DDEC, ACC):
    """multi.train_epochs for epochs e0..e1-1, model m = blockIdx.x; schedules (E, M) from the host."""
    m = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    th, am, av, p, g = theta[m], adam_m[m], adam_v[m], P[m], G[m]
    hs, gs, cs, ys, ht, dp, dy = HS[m], GS[m], CS[m], YS[m], HT[m], DP[m], DY[m]
    decay, ddecay, acc = DEC[m], DDEC[m], ACC[m]
    m_eff = n_params(n_in, hidden, n_out)
    n_theta = th.shape[0]
    z = n_in + hidden
    h2 = 2 * hidden
    b1, b2 = np.float32(0.9), np.float32(0.999)
    u1, u2 = _sub(_ONE, b1), _sub(_ONE, b2)
    for e in range(e0, e1):
        if bad[m] >= 0:  # frozen: the CPU computes the epoch but changes nothing
            return
        Xe = X[data[m], e]
        Ye = Y[data[m], e]
        if student:
            for k in range(tid, m_eff, nt):
                p[k] = th[k]
            cuda.syncthreads()
            for q in range(tid, h2 * z + n_out * hidden, nt):
                if q < h2 * z:
                    r = q // z
                    k = q
                else:
                    r = h2 + (q - h2 * z) // hidden
                    k = h2 * z + 3 * hidden + (q - h2 * z)
                s = th[m_eff + r]
                p[k] = _mul(s, _trit(th[k], s))
        else:
            for k in range(tid, m_eff, nt):
                p[k] = th[k]
        cuda.syncthreads()
        if distill[m]:
            _forward(teacher[m], Xe, Xe.shape[1], 0, n_in, hidden, n_out, dt, ht, gs, cs, ys, decay, tid, nt)
            cuda.syncthreads()
        _loss_grad(p, Xe, Ye, n_in, hidden, n_out, dt, cy[e, m], ch[e, m], w_y[e, m], alpha[e, m], distill[m],
                   ht, g, hs, gs, cs, ys, dp, dy, decay, ddecay, acc, tid, nt)
        loss = acc[0]
        if not abs(loss) <= _DBL_MAX:
            if tid == 0:
                bad[m] = e
            return
        if tid == 0:
            losses[m, e] = loss
            mses[m, e] = acc[1]
        if student:
            # STE: each row's scale gradient by one thread, in the row's order
            for r in range(tid, h2 + n_out, nt):
                if r < h2:
                    o = r * z
                    w = z
                else:
                    o = h2 * z + 3 * hidden + (r - h2) * hidden
                    w = hidden
                s = th[m_eff + r]
                ds = 0.0
                for j in range(w):
                    x = th[o + j]
                    ds = _dadd(ds, _dmul(np.float64(g[o + j]), np.float64(_trit(x, s))))
                    g[o + j] = _mul(g[o + j], np.float32(_mask(x, s, beta[e, m], mask_kind[m])))
                g[m_eff + r] = np.float32(ds)
            cuda.syncthreads()
            _clip(g, 0, m_eff, clip[m], acc, tid, nt)
            _clip(g, m_eff, n_theta, clip[m], acc, tid, nt)
        else:
            _clip(g, 0, n_theta, clip[m], acc, tid, nt)
        a = adam_a[e, m]
        ea = adam_e[e]
        for k in range(tid, n_theta, nt):
            gk = g[k]
            mk = _add(_mul(b1, am[k]), _mul(u1, gk))
            vk = _add(_mul(b2, av[k]), _mul(_mul(u2, gk), gk))
            am[k] = mk
            av[k] = vk
            t = _sub(th[k], _div(_mul(a, mk), _add(_sqrt(vk), ea)))
            if student and k >= m_eff and t < _SMIN:
                t = _SMIN
            th[k] = t
        cuda.syncthreads()


@_kernel
def _rollout(p, X, data, free, n_in, hidden, n_out, dt, Y, HS, GS, CS, YS, DEC, sse_out):
    """cell._forward with ``free`` steps for model m = blockIdx.x on data set data[m]; with free == 0 and
    Y given (its length > 0), sse_out[m] is cell._sse of the predictions."""
    m = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    Xm = X[data[m]]
    ys = YS[m]
    _forward(p[m], Xm, Xm.shape[1], free, n_in, hidden, n_out, dt, HS[m], GS[m], CS[m], ys, DEC[m], tid, nt)
    cuda.syncthreads()
    if tid == 0 and Y.shape[0] > 0:
        Ym = Y[data[m]]
        sse = 0.0
        for t in range(ys.shape[0]):
            for bb in range(ys.shape[1]):
                for o in range(ys.shape[2]):
                    err = _dadd(np.float64(ys[t, bb, o]), -np.float64(Ym[bb, t, o]))
                    sse = _dadd(sse, _dmul(err, err))
        sse_out[m] = sse
