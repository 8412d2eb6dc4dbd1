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

from types import FunctionType

import numpy as np
from numba import config, cuda, types

from ..formats import BINARY
from .cell import EXP_C1, EXP_C2, EXP_LOG2E, EXP_POLY, TAU_EPS, n_params
from .ternary import (
    MASK_NONE,
    MASK_NOTES,
    ROW_FLOAT,
    ROW_FLOAT_INPUT,
    ROW_FLOAT_RECURRENT,
    SCALE_ABSMEAN,
    SCALE_BY_SIGN,
    SCALE_LEARNED,
    SCALE_LSQ,
    SCALE_MIN,
    SCALE_TWN,
    TWN_DELTA,
)

SIMULATED = bool(config.ENABLE_CUDASIM)
P_SHARED = False  # the parameters p in shared memory: fixed per compiled variant (:func:`variant`)

# threads per block: a multiple of the warp; B*H work items are strided over them. Few models
# (fewer blocks than the GPU has room for) get more threads each. A 1024-thread block fills a
# multiprocessor, and launches run side by side (up to four at once), so their blocks outnumber the
# multiprocessors (132 on an H100) long before one launch's do: measured there, the 100-seed factorial
# (four launches of 100 models at once) took 5% less wall with 256-thread blocks than with 1024-thread ones
THREADS = 256
FEW_MODELS = 64
# registers per thread: the kernel wants ~190, which would leave two blocks per multiprocessor; at 32
# more blocks fit and, measured on an H200 (H=32, 4096 models), training runs 1.6x faster
MAX_REGISTERS = 32
MID_REGISTERS = 128  # a block of 512 threads may use 128 registers a thread (the register file holds 64K)
FEW_REGISTERS = 64  # a block of 1024 threads, 64


def few_threads(hidden: int) -> int:
    """Threads a block for launches of fewer than FEW_MODELS models: 512 where the widest loop, the
    recurrent weight gradients' H * ceil(H/2) pairs, takes one pass of them, else 1024. Measured on an H100
    (teachers, B=10): at H=32, 512 threads with 128 registers ran an epoch 5% (one model, T=100) to 9% (10 and
    40 models, T=50) faster than 1024 with 64, which spill more; at H=64 10% slower (four passes, not two)."""
    return 512 if hidden * ((hidden + 1) // 2) <= 512 else 1024


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

    import threading as _threading

    _WARPS: dict = {}
    _WARPS_LOCK = _threading.Lock()

    def _syncwarp():
        # the simulator runs each thread as a Python thread and knows no warps: a barrier of the warp's 32
        t = _threading.current_thread()
        key = (tuple(t.blockIdx), t.thread_id // 32)
        with _WARPS_LOCK:
            b = _WARPS.get(key)
            if b is None or b.broken:  # a launch that failed may have left it broken
                b = _WARPS[key] = _threading.Barrier(32)
        b.wait()
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

    @cuda.jit(device=True, inline=True)
    def _syncwarp():
        cuda.syncwarp()


@cuda.jit(device=True, inline=True)
def _u(i):
    """Index i (never negative here) as unsigned: numba then leaves out the wraparound of negative indices, and a
    hot loop's addresses become pointer increments (the forward pass's inner loop takes a third of the
    instructions it takes with signed indices)."""
    return np.uint64(i)


@cuda.jit(device=True, inline=True)
def _split(q, tid, bb0, i0, n):
    """(q // n, q % n), taken from (bb0, i0) = divmod(tid, n) where q is tid: a thread's first item is the same
    every step, and the division (a few dozen instructions on the critical path) is then done once."""
    if q == tid:
        return bb0, i0
    return q // n, q % n


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


@cuda.jit(device=True, inline=True)
def _level(w, s, qmax):
    """ternary.level in float32: its values are small integers, exact in either type."""
    if qmax == 1:
        return _trit(w, s)
    if qmax == BINARY:
        return -_ONE if w < _ZERO else _ONE
    a = abs(_div(w, s))
    if a < _HALF:
        return _mul(w, _ZERO)
    f = _floor(a)
    if _sub(a, f) >= _HALF:  # exact: a's fraction
        f = _add(f, _ONE)
    q = _f32(qmax)
    if f > q:
        f = q
    return -f if w < _ZERO else f


@cuda.jit(device=True, inline=True)
def _level_thr(w, t, qmax):
    """ternary.level_thr in float32: ternary's sign beyond the threshold, other formats rounded at 2t."""
    if qmax == 1:
        if abs(w) > t:
            return _add(_sign(w), _mul(w, _ZERO))
        return _mul(w, _ZERO)
    return _level(w, _add(t, t), qmax)


@cuda.jit(device=True, inline=True)
def _level_mask(w, s, beta, kind, qmax):
    """ternary.level_mask, float64."""
    if qmax == 1:
        return _mask(w, s, beta, kind)
    a = abs(_ddiv(np.float64(w), np.float64(s)))
    if qmax == BINARY:
        if kind == MASK_NONE:
            return 1.0 if a <= 1.0 else 0.0
        if kind == MASK_NOTES:
            t = min(max(_dadd(_dmul(a, beta), 0.5), 0.0), 1.0)
            return _dmul(_dmul(_dmul(6.0, t), _dadd(1.0, -t)), beta)
        x = min(max(_dmul(beta, abs(_dadd(a, -1.0))), 0.0), 1.0)
        return _dadd(1.0, -_dmul(_dmul(x, x), _dadd(3.0, -_dmul(2.0, x))))
    if kind == MASK_NONE:
        return 1.0
    if kind == MASK_NOTES:
        b = min(max(_dadd(_dfloor(a), 0.5), 0.5), _dadd(np.float64(qmax), -0.5))
        t = min(max(_dadd(_dmul(_dadd(a, -b), beta), 0.5), 0.0), 1.0)
        return _dmul(_dmul(_dmul(6.0, t), _dadd(1.0, -t)), beta)
    c = min(_dfloor(_dadd(a, 0.5)), np.float64(qmax))
    x = min(max(_dmul(beta, abs(_dadd(a, -c))), 0.0), 1.0)
    return _dadd(1.0, -_dmul(_dmul(x, x), _dadd(3.0, -_dmul(2.0, x))))


@cuda.jit(device=True, inline=True)
def _quantized_cols(code, n_in, n_cols):
    """ternary.quantized_cols: the columns [qa, qb) of a row of ``n_cols`` that run quantized under ``code``."""
    if code == ROW_FLOAT_INPUT:
        return n_in, n_cols
    if code == ROW_FLOAT_RECURRENT:
        return 0, n_in
    return 0, n_cols


@cuda.jit(device=True, inline=True)
def _float_weight(code, j, n_in, n_cols):
    """Whether column ``j`` of a row of ``n_cols`` runs its float weight: the row is float, or the column is."""
    qa, qb = _quantized_cols(code, n_in, n_cols)
    return code == ROW_FLOAT or j < qa or j >= qb


@cuda.jit(device=True, inline=True)
def _weight(q, n_in, hidden):
    """The q-th quantized weight (W's rows, then W_out's) as (its row r, its index in theta, its column)."""
    z = n_in + hidden
    h2 = 2 * hidden
    if q < h2 * z:
        r = q // z
        return r, q, q - r * z
    c = q - h2 * z
    r = c // hidden
    return h2 + r, h2 * z + 3 * hidden + c, c - r * hidden


@cuda.jit(device=True, inline=True)
def _row(r, n_in, hidden):
    """Row r of W (then of W_out): the index in theta of its first weight, and its length."""
    z = n_in + hidden
    h2 = 2 * hidden
    if r < h2:
        return r * z, z
    return h2 * z + 3 * hidden + (r - h2) * hidden, hidden


@cuda.jit(device=True, inline=True)
def _scale_cols(v, n_in, hidden, group):
    """ternary.scale_cols: scale v's row r and the columns [ca, cb) of that row it scales."""
    h2 = 2 * hidden
    z = n_in + hidden
    if group == SCALE_BY_SIGN:
        v //= 2
    if group <= 0:
        return v, 0, (z if v < h2 else hidden)
    per_w = (z + group - 1) // group
    if v < h2 * per_w:
        ca = (v % per_w) * group
        return v // per_w, ca, min(ca + group, z)
    u = v - h2 * per_w
    per_o = (hidden + group - 1) // group
    ca = (u % per_o) * group
    return h2 + u // per_o, ca, min(ca + group, hidden)


@cuda.jit(device=True, inline=True)
def _scale_of(r, j, w, n_in, hidden, group):
    """The scale of the weight w in row r, column j (:func:`_scale_cols` the other way)."""
    if group == SCALE_BY_SIGN:
        return 2 * r + (1 if w < _ZERO else 0)
    if group <= 0:
        return r
    h2 = 2 * hidden
    per_w = (n_in + hidden + group - 1) // group
    if r < h2:
        return r * per_w + j // group
    return h2 * per_w + (r - h2) * ((hidden + group - 1) // group) + j // group


@cuda.jit(device=True, inline=True)
def _member(w, v, group):
    """ternary._member of ternary.scale_sign: whether the weight w is scale v's (by sign: w's sign is v's)."""
    if group != SCALE_BY_SIGN:
        return True
    return (w < _ZERO) == (v % 2 == 1)


# ---------------------------------------------------------------- shared memory of one block
#
# float64 words first: [0] loss, [1] mse, [2] clipping norm, then RED terms of an ordered sum.
# float32 words from F0: the decay and its derivative (H each), the tau gradient (H), a region that
# holds the forward's h_t (B*H) or the backward's row of DP (B*2H) and decay terms (B*H), the backward's
# dL/dh (B*H, each word one thread's: in registers it would be a local array, whose dynamic index spills
# it to memory), and last, where it fits, the effective parameters p. After BPTT the weight gradients reuse
# the region's 4*B*H words for their copies of DP's and h_prev's rows.

RED = 128  # float64 terms that one thread adds per chunk of an ordered sum
F0 = 2 * (RED + 4)
SHARED_BYTES = 48 * 1024  # a block's dynamic shared memory without opting in


def shared_words(B: int, hidden: int) -> int:
    """float32 words of the shared memory before the parameters."""
    return F0 + 3 * hidden + 4 * B * hidden


def shared_bytes(B: int, hidden: int, n_params: int) -> tuple[int, bool]:
    """(bytes of dynamic shared memory, whether the parameters are in it) for a block; ValueError where
    even the work before the parameters does not fit."""
    base = 4 * shared_words(B, hidden)
    if base > SHARED_BYTES:
        raise ValueError(f"width {hidden} with batch {B} needs {base:,} bytes of a block's shared memory, more than "
                         f"the GPU kernels' {SHARED_BYTES:,}: use a narrower width, a smaller batch or the cpu")
    if base + 4 * n_params <= SHARED_BYTES:
        return base + 4 * n_params, True
    return base, False


@cuda.jit(device=True, inline=True)
def _chain(total, sd, o, cn):
    """total + sd[o] + sd[o+1] + ... (cn terms, float64) in this order, four loads ahead."""
    k = 0
    while k + 4 <= cn:
        a0 = sd[_u(o + k)]
        a1 = sd[_u(o + k + 1)]
        a2 = sd[_u(o + k + 2)]
        a3 = sd[_u(o + k + 3)]
        total = _dadd(_dadd(_dadd(_dadd(total, a0), a1), a2), a3)
        k += 4
    while k < cn:
        total = _dadd(total, sd[_u(o + k)])
        k += 1
    return total


@cuda.jit(device=True, inline=True)
def _dot(s, a, ao, astep, b, bo, bstep, n):
    """s + a[ao] * b[bo] + a[ao + astep] * b[bo + bstep] + ... (n terms, float32) in this order."""
    k = 0
    while k + 4 <= n:
        a0 = a[_u(ao)]
        b0 = b[_u(bo)]
        a1 = a[_u(ao + astep)]
        b1 = b[_u(bo + bstep)]
        a2 = a[_u(ao + 2 * astep)]
        b2 = b[_u(bo + 2 * bstep)]
        a3 = a[_u(ao + 3 * astep)]
        b3 = b[_u(bo + 3 * bstep)]
        s = _add(_add(_add(_add(s, _mul(a0, b0)), _mul(a1, b1)), _mul(a2, b2)), _mul(a3, b3))
        ao += 4 * astep
        bo += 4 * bstep
        k += 4
    while k < n:
        s = _add(s, _mul(a[_u(ao)], b[_u(bo)]))
        ao += astep
        bo += bstep
        k += 1
    return s


@cuda.jit(device=True, inline=True)
def _dot2(s, u, a, ao, ao2, b, bo, bstep, n):
    """(s + a[ao] * b[bo] + a[ao + 1] * b[bo + bstep] + ..., u + the same with a[ao2:]): two rows of a against
    one strided column of b, each read once, in :func:`_dot`'s order; two terms ahead."""
    k = 0
    while k + 2 <= n:
        b0 = b[_u(bo)]
        b1 = b[_u(bo + bstep)]
        a0 = a[_u(ao + k)]
        a1 = a[_u(ao + k + 1)]
        c0 = a[_u(ao2 + k)]
        c1 = a[_u(ao2 + k + 1)]
        s = _add(_add(s, _mul(a0, b0)), _mul(a1, b1))
        u = _add(_add(u, _mul(c0, b0)), _mul(c1, b1))
        bo += 2 * bstep
        k += 2
    while k < n:
        bk = b[_u(bo)]
        s = _add(s, _mul(a[_u(ao + k)], bk))
        u = _add(u, _mul(a[_u(ao2 + k)], bk))
        bo += bstep
        k += 1
    return s, u


@cuda.jit(device=True, inline=True)
def _sum(s, a, ao, astep, n):
    """s + a[ao] + a[ao + astep] + ... (n terms, float32) in this order."""
    k = 0
    while k + 4 <= n:
        a0 = a[_u(ao)]
        a1 = a[_u(ao + astep)]
        a2 = a[_u(ao + 2 * astep)]
        a3 = a[_u(ao + 3 * astep)]
        s = _add(_add(_add(_add(s, a0), a1), a2), a3)
        ao += 4 * astep
        k += 4
    while k < n:
        s = _add(s, a[_u(ao)])
        ao += astep
        k += 1
    return s


@cuda.jit(device=True, inline=True)
def _outer4(sh, d, h, dc, n, hidden, s00, s01, s10, s11):
    """(s00, s01, s10, s11) plus, over n rows, the products of h_prev's columns (sh[h], sh[h + dc]) with DP's gate
    and candidate entries (sh[d], sh[d + H]); rows are H words apart in h_prev's copy and 2H in DP's. Each
    sum adds its terms in row order."""
    h2 = 2 * hidden
    k = 0
    while k < n:
        d0 = sh[_u(d)]
        d1 = sh[_u(d + hidden)]
        a0 = sh[_u(h)]
        a1 = sh[_u(h + dc)]
        s00 = _add(s00, _mul(a0, d0))
        s01 = _add(s01, _mul(a1, d0))
        s10 = _add(s10, _mul(a0, d1))
        s11 = _add(s11, _mul(a1, d1))
        d += h2
        h += hidden
        k += 1
    return s00, s01, s10, s11


@cuda.jit(device=True)
def _sq_sum(kind, a, ao, b, bo, n, B, C, T, sd, tid, nt):
    """The float64 sum of n squares in the CPU's order: the block computes the (exact) squares RED at
    a time into shared memory, one thread adds them. The result is in thread 0.

    kind 0: a[ao + k] (a gradient); 1: a[ao + k] - b[bo + k] in float32 (hidden states, same layout);
    2: predictions a[ao + (t*B + bb)*C + o] against targets b[bo + (bb*T + t)*C + o], the difference
    in float32; 3: the same in float64 (``cell._sse``). k runs over (t, bb, o) in this order."""
    total = 0.0
    for c0 in range(0, n, RED):
        cn = min(RED, n - c0)
        k = tid
        while k < cn:
            q = c0 + k
            if kind == 0:
                e = np.float64(a[ao + q])
            elif kind == 1:
                e = np.float64(_sub(a[ao + q], b[bo + q]))
            else:
                o = q % C
                r = q // C
                t = r // B
                bb = r % B
                if kind == 2:
                    e = np.float64(_sub(a[ao + q], b[bo + (bb * T + t) * C + o]))
                else:
                    e = _dadd(np.float64(a[ao + q]), -np.float64(b[bo + (bb * T + t) * C + o]))
            sd[4 + k] = _dmul(e, e)
            k += nt
        cuda.syncthreads()
        if tid == 0:
            total = _chain(total, sd, 4, cn)
        cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _traj_sum(hs, ht, o, n, hidden, weights, sd, tid, nt):
    """The trajectory term's float64 sum over k of (hs - ht)[o + k]^2 * weights[k % hidden], the difference
    in float32, in the CPU's order (as :func:`_sq_sum`). The result is in thread 0."""
    total = 0.0
    for c0 in range(0, n, RED):
        cn = min(RED, n - c0)
        k = tid
        while k < cn:
            q = c0 + k
            e = np.float64(_sub(hs[o + q], ht[o + q]))
            sd[4 + k] = _dmul(_dmul(e, e), np.float64(weights[q % hidden]))
            k += nt
        cuda.syncthreads()
        if tid == 0:
            total = _chain(total, sd, 4, cn)
        cuda.syncthreads()
    return total


@cuda.jit(device=True, inline=True)
def _traj_rows(total, hs, ht, o, n, hidden, weights, sd, lane):
    """total plus the trajectory terms of hs[o:o + n] against ht[o:o + n], in :func:`_traj_sum`'s order and
    rounding (n a multiple of hidden, o's row the first of a step), by one warp: its lanes compute 32 terms
    into shared memory and load the next 32 while lane 0 adds these (two buffers, sd[4:36] and sd[36:68]).
    The result is in lane 0."""
    a = b = _ZERO
    if lane < n:
        a = hs[_u(o + lane)]
        b = ht[_u(o + lane)]
    buf = 4
    j = 0
    while j < n:
        cn = min(32, n - j)
        e = np.float64(_sub(a, b))
        w = np.float64(weights[(j + lane) % hidden])
        k = j + 32 + lane
        if k < n:
            a = hs[_u(o + k)]
            b = ht[_u(o + k)]
        if lane < cn:
            sd[_u(buf + lane)] = _dmul(_dmul(e, e), w)
        _syncwarp()  # the terms are written; lane 0 adds them, the next chunk goes to the other buffer
        if lane == 0:
            total = _chain(total, sd, buf, cn)
        buf = 40 - buf
        j += 32
    return total


# ---------------------------------------------------------------- forward and backward of one model
#
# Per-model arrays are flat: X, Y (D*E*B*T*C) with the epoch's block at xo; hs (T+1)*B*H, gs and cs T*B*H,
# ys and DY T*B*O, DP T*B*2H, row (t*B + bb) of each.

@cuda.jit(device=True, inline=True)
def _unit_step(ag, ac, q, i, t, BH, cur, nxt, o_dec, gs, cs, hs, sh):
    """Unit q = bb*H + i of step t from its pre-activations: gate, candidate and h_{t+1} (cell._forward's)."""
    gate = _act(ag, 1)
    cand = _act(ac, 2)
    gs[_u(t * BH + q)] = gate
    cs[_u(t * BH + q)] = cand
    hn = _add(_mul(_mul(_sub(_ONE, gate), sh[_u(cur + q)]), sh[_u(o_dec + i)]), _mul(gate, cand))
    hs[_u((t + 1) * BH + q)] = hn
    sh[_u(nxt + q)] = hn


@cuda.jit(device=True, inline=True)
def _pair(B, hidden, nt):
    """The offset from a thread's first sequence to its second: B (none) where the block has a thread for every
    (sequence, unit), so that few models' steps have the shorter chains; else ceil(B/2), each weight then read once
    for two sequences, the fewer instructions where many models share the GPU."""
    return B if nt >= B * hidden else (B + 1) // 2


@cuda.jit(device=True)
def _forward(p, X, xo, Tx, free, n_in, hidden, n_out, B, dt, hs, gs, cs, ys, sh, tid, nt):
    """cell._forward for one model by one block: X[xo:] (B, Tx, I); ``free`` steps read the last
    prediction. h_t lives in shared memory as well, where every thread of the next step reads it. A thread
    takes unit i of sequence bb and, where the block has fewer threads than (sequence, unit) pairs, of
    bb + :func:`_pair`'s offset too, each weight read once for both; the predictions are made by threads
    that have no unit, where there are enough."""
    z = n_in + hidden
    ob = 2 * hidden * z
    otau = ob + 2 * hidden
    owo = otau + hidden
    obo = owo + n_out * hidden
    BH = B * hidden
    o_dec = F0
    o_h = F0 + 3 * hidden
    for i in range(tid, hidden, nt):
        sh[o_dec + i] = _exp(_div(-dt, _add(abs(p[otau + i]), _EPS)))
    for q in range(tid, BH, nt):
        hs[q] = _ZERO
        sh[o_h + q] = _ZERO
    bh = _pair(B, hidden, nt)
    nu = bh * hidden  # the threads with units
    yoff = nu if nt >= nu + B * n_out else 0
    qy = tid - yoff
    bb0, i0 = tid // hidden, tid % hidden
    by0, oy0 = (qy // n_out, qy % n_out) if qy >= 0 else (0, 0)
    cuda.syncthreads()
    for t in range(Tx + free):
        cur = o_h + (t % 2) * BH  # h_t; h_{t+1} goes to the other half
        nxt = o_h + ((t + 1) % 2) * BH
        q = tid
        while q < nu:  # not range(tid, nu, nt), whose trip count costs a 64-bit division every step
            bb, i = _split(q, tid, bb0, i0, hidden)
            b2 = bb + bh
            two = b2 < B
            rg = i * z
            rc = (hidden + i) * z
            ag = p[_u(ob + i)]
            ac = p[_u(ob + hidden + i)]
            ag2 = ag
            ac2 = ac
            for j in range(n_in):
                wg = p[_u(rg + j)]
                wc = p[_u(rc + j)]
                xj = X[_u(xo + (bb * Tx + t) * n_in + j)] if t < Tx else ys[_u(((t - 1) * B + bb) * n_out + j)]
                ag = _add(ag, _mul(xj, wg))
                ac = _add(ac, _mul(xj, wc))
                if two:
                    xk = X[_u(xo + (b2 * Tx + t) * n_in + j)] if t < Tx else ys[_u(((t - 1) * B + b2) * n_out + j)]
                    ag2 = _add(ag2, _mul(xk, wg))
                    ac2 = _add(ac2, _mul(xk, wc))
            hb = cur + bb * hidden
            hb2 = cur + b2 * hidden
            j = 0
            if two:
                while j < hidden:  # not range(): numba's range iterator keeps the addresses from being increments
                    wg = p[_u(rg + n_in + j)]
                    wc = p[_u(rc + n_in + j)]
                    hj = sh[_u(hb + j)]
                    hk = sh[_u(hb2 + j)]
                    ag = _add(ag, _mul(hj, wg))
                    ac = _add(ac, _mul(hj, wc))
                    ag2 = _add(ag2, _mul(hk, wg))
                    ac2 = _add(ac2, _mul(hk, wc))
                    j += 1
                _unit_step(ag2, ac2, b2 * hidden + i, i, t, BH, cur, nxt, o_dec, gs, cs, hs, sh)
            else:
                while j < hidden:
                    hj = sh[_u(hb + j)]
                    ag = _add(ag, _mul(hj, p[_u(rg + n_in + j)]))
                    ac = _add(ac, _mul(hj, p[_u(rc + n_in + j)]))
                    j += 1
            _unit_step(ag, ac, bb * hidden + i, i, t, BH, cur, nxt, o_dec, gs, cs, hs, sh)
            q += nt
        cuda.syncthreads()
        if qy >= 0:  # h_{t+1}'s half is not written again before the next step's barrier
            q = qy
            while q < B * n_out:
                bb, o = _split(q, qy, by0, oy0, n_out)
                y = p[_u(obo + o)]
                hb = nxt + bb * hidden
                wo = owo + o * hidden
                i = 0
                while i < hidden:
                    y = _add(y, _mul(p[_u(wo + i)], sh[_u(hb + i)]))
                    i += 1
                ys[_u(t * B * n_out + q)] = y
                q += nt
        if t + 1 >= Tx:  # the next step reads these predictions, or the caller does
            cuda.syncthreads()
    cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _unit_back(d, gate, cand, hpi, dec, ddec, i, q, row, bb, hidden, h2, o_dp, o_tt, o_dh, DP, sh):
    """BPTT for unit q = bb*H + i at row (t*B + bb) from dL/dh_t (d): DP's entries, the decay term, dL/dh_{t-1}'s
    start (cell._backward's)."""
    omg = _sub(_ONE, gate)
    dg = _mul(_mul(_mul(d, _sub(cand, _mul(hpi, dec))), gate), omg)
    dc = _mul(_mul(d, gate), _sub(_ONE, _mul(cand, cand)))
    DP[_u(row * h2 + i)] = dg
    DP[_u(row * h2 + hidden + i)] = dc
    sh[_u(o_dp + bb * h2 + i)] = dg
    sh[_u(o_dp + bb * h2 + hidden + i)] = dc
    sh[_u(o_tt + q)] = _mul(_mul(_mul(d, omg), hpi), ddec)
    sh[_u(o_dh + q)] = _mul(_mul(d, omg), dec)


@cuda.jit(device=True, inline=True)
def _loss(w_y, alpha, mse, straj, n):
    """The loss (float64): w_y/2 mse + alpha/2 the mean of the trajectory's n weighted squares (multi._loss_grad's)."""
    return _dadd(_dmul(_dmul(w_y, 0.5), mse), _ddiv(_dmul(_dmul(alpha, 0.5), straj), np.float64(n)))


@cuda.jit(device=True)
def _loss_grad(p, X, Y, base, T, n_in, hidden, n_out, B, dt, cy, ch, w_y, alpha, distill, ht, g,
               hs, gs, cs, ys, DP, DY, sh, sd, tid, nt, blend, weights):
    """multi._loss_grad for one model on rows base.. of X and Y: writes g (Pe,), sd[0] loss, sd[1] mse.

    blend: the output target is in DY already (the teacher's predictions blended in, DY's layout), else
    it is Y's rows; weights (H,): the trajectory term's per-unit weights (1 for every unit: the unweighted
    term's bits, a multiply by 1 being exact)."""
    z = n_in + hidden
    h2 = 2 * hidden
    ob = h2 * z
    otau = ob + h2
    owo = otau + hidden
    obo = owo + n_out * hidden
    BH = B * hidden
    n = B * T
    o_dec = F0
    o_ddec = F0 + hidden
    o_gtau = F0 + 2 * hidden
    o_dp = F0 + 3 * hidden
    o_tt = o_dp + B * h2
    o_dh = o_tt + BH
    xo = base * n_in
    yo = base * n_out
    _forward(p, X, xo, T, 0, n_in, hidden, n_out, B, dt, hs, gs, cs, ys, sh, tid, nt)
    for i in range(tid, hidden, nt):
        tau = p[otau + i]
        a = _add(abs(tau), _EPS)
        sh[o_ddec + i] = _mul(_div(_mul(sh[o_dec + i], dt), _mul(a, a)), _sign(tau))
        sh[o_gtau + i] = _ZERO
    # the squared errors before DY overwrites a blended target
    if blend:
        sse = _sq_sum(1, ys, 0, DY, 0, n * n_out, B, n_out, T, sd, tid, nt)
    else:
        sse = _sq_sum(2, ys, 0, Y, yo, n * n_out, B, n_out, T, sd, tid, nt)
    for q in range(tid, n * n_out, nt):  # q = (t*B + bb)*O + o
        o = q % n_out
        r = q // n_out
        target = DY[q] if blend else Y[yo + ((r % B) * T + r // B) * n_out + o]
        DY[q] = _mul(cy, _sub(ys[q], target))
    bh = _pair(B, hidden, nt)
    nu = bh * hidden
    # the tau gradient's sums go to threads that have no unit in BPTT, where there are enough: off the units' path
    g0 = nt - hidden if nt - hidden >= nu else 0
    # the trajectory term's sum (the loss's value alone: its gradient is the units') goes to a warp that has no unit
    # either, where there is one: a step's terms during each step of BPTT, the sum in order all the same
    wt = (nu + 31) // 32 * 32
    beside = distill and wt + 32 <= (g0 if g0 > 0 else nt)
    straj = 0.0
    if distill and not beside:
        straj = _traj_sum(hs, ht, BH, n * hidden, hidden, weights, sd, tid, nt)
    if tid == 0:
        mse = _ddiv(sse, np.float64(n * n_out))
        sd[1] = mse
        if not beside:
            sd[0] = _loss(w_y, alpha, mse, straj, n * hidden)
    cuda.syncthreads()
    # BPTT: a thread carries dL/dh of unit i of sequence bb and bb + _pair's offset (as the forward) in its words of
    # sh; this step's row of DP and the decay's gradient terms go to shared memory too, for dL/dh_{t-1} (each weight
    # read once for both sequences) and the tau gradient (summed over steps downwards and sequences upwards, the
    # CPU's order)
    nq = (nu + nt - 1) // nt
    lane = tid - wt
    traj_warp = beside and lane >= 0 and lane < 32
    for q in range(tid, BH, nt):
        sh[o_dh + q] = _ZERO
    bb0, i0 = tid // hidden, tid % hidden
    cuda.syncthreads()
    for t in range(T - 1, -1, -1):
        if traj_warp:  # step T - t's terms: the sum runs upwards in steps while BPTT runs down
            straj = _traj_rows(straj, hs, ht, (T - t) * BH, BH, hidden, weights, sd, lane)
        for k in range(nq):
            q0 = tid + k * nt
            if q0 >= nu:
                break
            bb, i = _split(q0, tid, bb0, i0, hidden)
            # both sequences' loads before either's stores, which the compiler may not move them past
            b2 = bb + bh
            two = b2 < B
            row = t * B + bb
            row2 = row + bh
            q = bb * hidden + i
            q2 = q + bh * hidden
            d = sh[_u(o_dh + q)]
            gate = gs[_u(row * hidden + i)]
            cand = cs[_u(row * hidden + i)]
            hpi = hs[_u(row * hidden + i)]
            d2 = gate2 = cand2 = hpi2 = _ZERO
            if two:
                d2 = sh[_u(o_dh + q2)]
                gate2 = gs[_u(row2 * hidden + i)]
                cand2 = cs[_u(row2 * hidden + i)]
                hpi2 = hs[_u(row2 * hidden + i)]
            for o in range(n_out):
                w = p[_u(owo + o * hidden + i)]
                d = _add(d, _mul(DY[_u(row * n_out + o)], w))
                if two:
                    d2 = _add(d2, _mul(DY[_u(row2 * n_out + o)], w))
            if distill:
                cw = _mul(ch, weights[i])
                d = _add(d, _mul(cw, _sub(hs[_u((row + B) * hidden + i)], ht[_u((row + B) * hidden + i)])))
                if two:
                    d2 = _add(d2, _mul(cw, _sub(hs[_u((row2 + B) * hidden + i)], ht[_u((row2 + B) * hidden + i)])))
            dec = sh[_u(o_dec + i)]
            ddec = sh[_u(o_ddec + i)]
            _unit_back(d, gate, cand, hpi, dec, ddec, i, q, row, bb, hidden, h2, o_dp, o_tt, o_dh, DP, sh)
            if two:
                _unit_back(d2, gate2, cand2, hpi2, dec, ddec, i, q2, row2, b2, hidden, h2, o_dp, o_tt, o_dh, DP, sh)
        cuda.syncthreads()
        i = tid - g0
        while i >= 0 and i < hidden:
            sh[o_gtau + i] = _sum(sh[o_gtau + i], sh, o_tt + i, hidden, B)
            i += nt
        for k in range(nq):
            q = tid + k * nt
            if q < nu:
                bb, i = _split(q, tid, bb0, i0, hidden)
                q1 = o_dh + bb * hidden + i
                if bb + bh < B:
                    q2 = q1 + bh * hidden
                    sh[_u(q1)], sh[_u(q2)] = _dot2(sh[_u(q1)], sh[_u(q2)], sh, o_dp + bb * h2, o_dp + (bb + bh) * h2,
                                                   p, n_in + i, z, h2)
                else:
                    sh[_u(q1)] = _dot(sh[_u(q1)], sh, o_dp + bb * h2, 1, p, n_in + i, z, h2)
        cuda.syncthreads()
    if traj_warp and lane == 0:  # read after the block's last barrier
        sd[0] = _loss(w_y, alpha, sd[1], straj, n * hidden)
    # weight gradients, each entry a sum over the B*T steps in the CPU's order, rows (t, bb) upwards, except
    # the input columns (sequences outermost). The recurrent columns: the block copies a few rows of DP and of
    # h_prev at a time into shared memory (BPTT's region, free now), and a thread takes the columns c and c + hc
    # of the gate's and the candidate's row of unit i: four sums from four shared loads a row, each sum adding
    # its terms in row order through the copies. Where (i, c) outnumber the threads, the block makes passes.
    hc = (hidden + 1) // 2
    nb = hidden * hc
    rows = max(1, (4 * BH) // (3 * hidden))  # rows of DP (2H words) and of h_prev (H) that the region holds
    o_th = o_dp + rows * h2
    p0 = 0
    while p0 < nb:
        e = p0 + tid
        i = e % hidden
        c = e // hidden
        dc = hc if c + hc < hidden else 0  # the middle column of an odd width has no partner
        s00 = s01 = s10 = s11 = _ZERO
        k0 = 0
        while k0 < n:
            rn = min(rows, n - k0)
            q = tid
            while q < rn * h2:
                sh[_u(o_dp + q)] = DP[_u(k0 * h2 + q)]
                q += nt
            q = tid
            while q < rn * hidden:
                sh[_u(o_th + q)] = hs[_u(k0 * hidden + q)]
                q += nt
            cuda.syncthreads()
            if e < nb:
                s00, s01, s10, s11 = _outer4(sh, o_dp + i, o_th + c, dc, rn, hidden, s00, s01, s10, s11)
            cuda.syncthreads()  # the copy's readers are done before the next copy
            k0 += rn
        if e < nb:
            if dc > 0:
                g[(hidden + i) * z + n_in + c + hc] = s11
                g[i * z + n_in + c + hc] = s01
            g[(hidden + i) * z + n_in + c] = s10
            g[i * z + n_in + c] = s00
        p0 += nt
    nw = nb + h2 * n_in
    for e in range(nb + tid, nw + h2 + n_out * hidden + n_out + hidden, nt):
        if e < nw:
            r = (e - nb) % h2
            j = (e - nb) // h2
            s = _ZERO
            for bb in range(B):
                s = _dot(s, X, xo + bb * T * n_in + j, n_in, DP, bb * h2 + r, B * h2, T)
            g[r * z + j] = s
        elif e < nw + h2:
            r = e - nw
            g[ob + r] = _sum(_ZERO, DP, r, h2, n)
        elif e < nw + h2 + n_out * hidden:
            q = e - nw - h2
            o = q // hidden
            i = q % hidden
            g[owo + q] = _dot(_ZERO, DY, o, n_out, hs, BH + i, hidden, n)
        elif e < nw + h2 + n_out * hidden + n_out:
            o = e - nw - h2 - n_out * hidden
            g[obo + o] = _sum(_ZERO, DY, o, n_out, n)
        else:
            i = e - nw - h2 - n_out * hidden - n_out
            g[otau + i] = sh[o_gtau + i]
    cuda.syncthreads()


@cuda.jit(device=True)
def _clip(g, k0, k1, clip, sd, tid, nt):
    """optim.clip_norm on g[k0:k1]: the float64 square sum in order, the scaling by all threads."""
    ss = _sq_sum(0, g, k0, g, 0, k1 - k0, 1, 1, 1, sd, tid, nt)
    if tid == 0:
        sd[2] = _dsqrt(ss)
    cuda.syncthreads()
    norm = sd[2]
    if norm > clip:
        c = np.float32(_ddiv(clip, norm))
        for k in range(k0 + tid, k1, nt):
            g[k] = _mul(g[k], c)
    cuda.syncthreads()


@cuda.jit(device=True)
def _recompute_scales(th, thr, m, kind, n_in, hidden, n_out, group, n_s, tid, nt):
    """ternary.recompute_scales: each scale (and TWN's threshold) by one thread, its float64 sums in its columns'
    order. The caller synchronizes before any thread reads a scale."""
    m_eff = n_params(n_in, hidden, n_out)
    for v in range(tid, n_s, nt):
        r, ca, cb = _scale_cols(v, n_in, hidden, group)
        o, _ = _row(r, n_in, hidden)
        mean_abs = 0.0
        c = 0
        for j in range(ca, cb):
            x = th[o + j]
            if _member(x, v, group):
                mean_abs = _dadd(mean_abs, abs(np.float64(x)))
                c += 1
        mean_abs = _ddiv(mean_abs, np.float64(max(c, 1)))
        s = mean_abs
        if kind == SCALE_TWN:
            delta = _dmul(TWN_DELTA, mean_abs)
            kept = 0.0
            n = 0
            for j in range(ca, cb):
                x = th[o + j]
                a = abs(np.float64(x))
                if a > delta and _member(x, v, group):
                    kept = _dadd(kept, a)
                    n += 1
            if n > 0:
                s = _ddiv(kept, np.float64(n))
            thr[m, v] = np.float32(delta)
        th[m_eff + v] = np.float32(SCALE_MIN if SCALE_MIN > s else s)  # max(s, SCALE_MIN) in float64, as Python's


def _train_py(theta, adam_m, adam_v, X, Y, data, E, e0, e1, n_in, hidden, n_out, B, T, dt, student, traj,
              mask_kind, qmax, live, rank, nq, n_main, thr, clip, adam_a, adam_as, adam_e, cy, ch, w_y, alpha, beta,
              teacher, losses, mses, bad, P, G, HS, GS, CS, YS, HT, DP, DY, restart, e_join, lr_s, c1, sq2,
              eps_s, share, distill_hidden, scale_mode, group, zt, moved):
    """multi.train_epochs for epochs e0..e1-1, model m = blockIdx.x; schedules (E, M) from the host;
    X, Y flat (D*E*B*T*C); traj (E, M) the trajectory term on; qmax (2H+O, M) each row's
    weight format, live (2H+O, M) each row's code (ternary.quantized_rows: float rows and columns);
    adam_as (E, 3, M) the scales' Adam step size for the rows of the gate, the candidate and the output matrix;
    restart (M,) Adam restarted at joins, from e_join (2H+O, M) each row's join, lr_s (E, 3, M) the scales'
    rates and c1, sq2, eps_s the bias corrections per step;
    share (E, M) the teacher's share in the output target; distill_hidden (M, H) the trajectory
    term's per-unit weights; scale_mode (M,) ternary.SCALE_*: learned, LSQ's gradient, or recomputed each
    epoch (absmean, TWN); group the scale layout (``ternary.scale_cols``: a scale per row, per run of group
    columns, or two per row by sign), the arrays per row above holding one entry per scale; zt (M,) the zero
    threshold's ratio to the scale where moved (M,) (``loop.zero_thresholds``)."""
    m = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    sh = cuda.shared.array(0, types.float32)
    sd = cuda.shared.array(0, types.float64)
    m_eff = n_params(n_in, hidden, n_out)
    o_p = F0 + 3 * hidden + 4 * B * hidden
    if P_SHARED:
        p = sh[o_p:o_p + m_eff]
    else:
        p = P[m]
    th, am, av, g = theta[m], adam_m[m], adam_v[m], G[m]
    hs, gs, cs, ys, ht, dp, dy = HS[m], GS[m], CS[m], YS[m], HT[m], DP[m], DY[m]
    n_theta = th.shape[0]
    n_s = n_theta - m_eff
    z = n_in + hidden
    h2 = 2 * hidden
    b1, b2 = np.float32(0.9), np.float32(0.999)
    u1, u2 = _sub(_ONE, b1), _sub(_ONE, b2)
    smode = scale_mode[m]
    recomputed = smode >= SCALE_ABSMEAN
    for e in range(e0, e1):
        if bad[m] >= 0:  # frozen: the CPU computes the epoch but changes nothing
            return
        base = (data[m] * E + e) * B * T  # the epoch's first row of X and Y
        fine = e >= n_main[m]  # the fine-tune: levels frozen at thresholds thr
        if student and e == n_main[m]:  # loop.begin_epoch: bake the levels into the shadow weights
            if recomputed:
                _recompute_scales(th, thr, m, smode, n_in, hidden, n_out, group, n_s, tid, nt)
                cuda.syncthreads()
            if moved[m]:
                for v in range(tid, n_s, nt):
                    thr[m, v] = _mul(zt[m], th[m_eff + v])
                cuda.syncthreads()
            for q in range(tid, h2 * z + n_out * hidden, nt):
                r, k, j = _weight(q, n_in, hidden)
                w = th[k]
                v = _scale_of(r, j, w, n_in, hidden, group)
                if not _float_weight(live[v, m], j, n_in, z):
                    s = th[m_eff + v]
                    if smode == SCALE_TWN or moved[m]:
                        th[k] = _mul(s, _level_thr(w, thr[m, v], qmax[v, m]))
                    else:
                        th[k] = _mul(s, _level(w, s, qmax[v, m]))
                am[k] = _ZERO
            cuda.syncthreads()  # the thresholds were read above
            for v in range(tid, n_s, nt):
                thr[m, v] = _mul(_HALF, th[m_eff + v])
            if restart[m]:  # loop.adam_joins: the fine-tune restarts every moment
                for k in range(tid, n_theta, nt):
                    am[k] = _ZERO
                    av[k] = _ZERO
            cuda.syncthreads()
        blend = share[e, m] > 0.0  # the output target blends in the teacher's predictions
        if traj[e, m] or blend:  # the teacher runs: the trajectory term is on (alpha != 0), or the blend
            tp = teacher[m]
            for k in range(tid, m_eff, nt):
                p[k] = tp[k]
            cuda.syncthreads()
            _forward(p, X, base * n_in, T, 0, n_in, hidden, n_out, B, dt, ht, gs, cs, ys, sh, tid, nt)
            if blend:  # loop.output_target, into dy (the student's forward overwrites ys)
                sa = np.float32(_dadd(1.0, -share[e, m]))
                sb = np.float32(share[e, m])
                yo = base * n_out
                for q in range(tid, T * B * n_out, nt):  # q = (t*B + bb)*O + o
                    o = q % n_out
                    r = q // n_out
                    dy[q] = _add(_mul(sa, Y[yo + ((r % B) * T + r // B) * n_out + o]), _mul(sb, ys[q]))
        use_thr = fine or smode == SCALE_TWN or moved[m]  # the levels by thresholds thr
        if student:
            if recomputed and not fine:
                _recompute_scales(th, thr, m, smode, n_in, hidden, n_out, group, n_s, tid, nt)
            if moved[m] and not fine:
                for v in range(tid, n_s, nt):
                    thr[m, v] = _mul(zt[m], th[m_eff + v])
            for k in range(tid, m_eff, nt):
                p[k] = th[k]
            cuda.syncthreads()  # the copy, the recomputed scales and the thresholds
            for q in range(tid, h2 * z + n_out * hidden, nt):
                r, k, j = _weight(q, n_in, hidden)
                w = th[k]
                v = _scale_of(r, j, w, n_in, hidden, group)
                if _float_weight(live[v, m], j, n_in, z) or (not fine and rank[v, m] >= nq[e, m]):  # float so far
                    p[k] = w
                elif use_thr:
                    p[k] = _mul(th[m_eff + v], _level_thr(w, thr[m, v], qmax[v, m]))
                else:
                    s = th[m_eff + v]
                    p[k] = _mul(s, _level(w, s, qmax[v, m]))
        else:
            for k in range(tid, m_eff, nt):
                p[k] = th[k]
        cuda.syncthreads()
        _loss_grad(p, X, Y, base, T, n_in, hidden, n_out, B, dt, cy[e, m], ch[e, m], w_y[e, m], alpha[e, m],
                   traj[e, m], ht, g, hs, gs, cs, ys, dp, dy, sh, sd, tid, nt, blend, distill_hidden[m])
        loss = sd[0]
        if not abs(loss) <= _DBL_MAX:
            if tid == 0:
                bad[m] = e
            return
        if tid == 0:
            losses[m, e] = loss
            mses[m, e] = sd[1]
        if student:
            # STE: each scale's gradient by one thread, in its columns' order
            for v in range(tid, n_s, nt):
                if live[v, m] == ROW_FLOAT or (not fine and rank[v, m] >= nq[e, m]):  # a float row: the identity
                    g[m_eff + v] = _ZERO
                    continue
                r, ca, cb = _scale_cols(v, n_in, hidden, group)
                o, w = _row(r, n_in, hidden)
                s = th[m_eff + v]
                t = thr[m, v]
                qr = qmax[v, m]
                lsq = smode == SCALE_LSQ and not fine
                sm = _mul(_f32(2.0), t) if use_thr else s  # with thresholds, the mask's boundary is the threshold
                cap = _f32(max(qr, 1))  # LSQ's clipping range
                qa, qb = _quantized_cols(live[v, m], n_in, w)  # the float columns keep the identity
                ds = 0.0
                n = 0  # the scale's weights (by sign: those of its sign)
                for j in range(max(qa, ca), min(qb, cb)):
                    x = th[o + j]
                    if not _member(x, v, group):
                        continue
                    n += 1
                    if fine:  # the shadow weights are frozen: only the scales learn
                        ds = _dadd(ds, _dmul(np.float64(g[o + j]), np.float64(_level_thr(x, t, qr))))
                        g[o + j] = _ZERO
                    else:
                        lv = np.float64(_level_thr(x, t, qr) if use_thr else _level(x, s, qr))
                        if lsq:  # Esser et al.: level - w/s inside the clipping range, in float64 as ste_ext
                            rr = _div(x, s)
                            if abs(rr) < cap:
                                lv = _dadd(lv, -np.float64(rr))
                        ds = _dadd(ds, _dmul(np.float64(g[o + j]), lv))
                        g[o + j] = _mul(g[o + j], np.float32(_level_mask(x, sm, beta[e, m], mask_kind[m], qr)))
                if fine or smode == SCALE_LEARNED:
                    g[m_eff + v] = np.float32(ds)
                elif lsq:  # times LSQ's gradient scale 1/sqrt(n qmax), rounded to float32 first as ste_ext
                    c = np.float32(_ddiv(1.0, _dsqrt(np.float64(max(n, 1) * max(qr, 1)))))
                    g[m_eff + v] = np.float32(_dmul(ds, np.float64(c)))
                else:  # absmean, TWN: recomputed, no gradient
                    g[m_eff + v] = _ZERO
            cuda.syncthreads()
            _clip(g, 0, m_eff, clip[m], sd, tid, nt)
            _clip(g, m_eff, n_theta, clip[m], sd, tid, nt)
        else:
            _clip(g, 0, n_theta, clip[m], sd, tid, nt)
        for k in range(tid, n_theta, nt):
            a = adam_a[e, m]
            ea = adam_e[e, m]
            if k >= m_eff:  # a scale, at its matrix's rate (gate, cand, out)
                v = k - m_eff
                r, _, _ = _scale_cols(v, n_in, hidden, group)
                i = 0 if r < hidden else (1 if r < h2 else 2)
                a = adam_as[e, i, m]
                if restart[m] and not fine:  # loop.adam_joins: each scale's moments and steps from its row's join
                    if e < e_join[v, m] or live[v, m] == ROW_FLOAT:
                        continue
                    if e == e_join[v, m]:
                        am[k] = _ZERO
                        av[k] = _ZERO
                    st = e - e_join[v, m]  # Adam's step st + 1
                    a = np.float32(_ddiv(_dmul(lr_s[e, i, m], sq2[st]), c1[st]))
                    ea = eps_s[st]
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


def _rollout_py(P, X, data, W, free, n_in, hidden, n_out, B, dt, Y, HS, GS, CS, YS, sse_out):
    """cell._forward with ``free`` steps for model m = blockIdx.x on data set data[m] (X flat, D*B*W*I);
    with free == 0 and Y given (its length > 0), sse_out[m] is cell._sse of the predictions."""
    m = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    sh = cuda.shared.array(0, types.float32)
    sd = cuda.shared.array(0, types.float64)
    m_eff = n_params(n_in, hidden, n_out)
    o_p = F0 + 3 * hidden + 4 * B * hidden
    if P_SHARED:
        p = sh[o_p:o_p + m_eff]
        pm = P[m]
        for k in range(tid, m_eff, nt):
            p[k] = pm[k]
        cuda.syncthreads()
    else:
        p = P[m]
    ys = YS[m]
    _forward(p, X, data[m] * B * W * n_in, W, free, n_in, hidden, n_out, B, dt, HS[m], GS[m], CS[m], ys, sh, tid,
             nt)
    if Y.shape[0] > 0:
        sse = _sq_sum(3, ys, 0, Y, data[m] * B * W * n_out, B * W * n_out, B, n_out, W, sd, tid, nt)
        if tid == 0:
            sse_out[m] = sse


def variant(f, registers: int, p_shared: bool):
    """A copy of the kernel function f with P_SHARED fixed: a constant to the compiler, so p's loads are shared
    memory's (32-bit addresses) rather than generic ones. The copy is named for its register cap and P_SHARED:
    numba-cuda's on-disk cache keys a kernel by its function's name and argument types, not by the cap, and
    would otherwise hand one variant's machine code (and occupancy) to another."""
    g = FunctionType(f.__code__, {**f.__globals__, "P_SHARED": bool(p_shared)},
                     f"{f.__name__}_r{registers}_{'shared' if p_shared else 'global'}", f.__defaults__, f.__closure__)
    g.__qualname__ = g.__name__
    return g


def _compile(f, registers, p_shared):
    g = variant(f, registers, p_shared)
    if SIMULATED:
        return cuda.jit(g)
    return cuda.jit(max_registers=registers, cache=True)(g)  # pragma: no cover - needs a GPU


# compiled at a kernel's first launch: (register cap, P_SHARED) -> kernel
_TRAIN = {(r, s): _compile(_train_py, r, s) for r in (MAX_REGISTERS, MID_REGISTERS, FEW_REGISTERS)
          for s in (False, True)}
_ROLLOUT = {(r, s): _compile(_rollout_py, r, s) for r in (MAX_REGISTERS, MID_REGISTERS, FEW_REGISTERS)
          for s in (False, True)}


def registers_for(threads: int) -> int:
    """The register cap of a block of ``threads``."""
    return FEW_REGISTERS if threads > 512 else MID_REGISTERS if threads > THREADS else MAX_REGISTERS


def train_kernel(threads: int, p_shared: bool):
    """The training kernel for blocks of ``threads`` with the parameters in shared memory or not."""
    return _TRAIN[(registers_for(threads), bool(p_shared))]


def rollout_kernel(threads: int, p_shared: bool):
    """The rollout kernel for blocks of ``threads`` with the parameters in shared memory or not."""
    return _ROLLOUT[(registers_for(threads), bool(p_shared))]
