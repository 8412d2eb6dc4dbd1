"""The training loop over epochs, compiled: teachers and students, one model or many, share it.

Each epoch: quantize once (student), run the teacher alongside (distillation),
BPTT on the epoch's batch, STE mapping and mask (student), clip, Adam; the
epochs from ``n_main`` on are a fine-tune with the levels frozen. Everything
the loop reads besides the arrays it trains is one record, :class:`Loop`, with
one entry per model.

The single-model kernel here and the batched one (:mod:`ternq.kernels.multi`)
differ only in how they run the cell (forward, loss, backward). Every other step
of a model's epoch is one of this module's per-model functions
(:func:`begin_epoch`, :func:`loss_weights`, :func:`output_target`, :func:`end_epoch`),
so a model trained in a batch gets the bits it gets alone.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .cell import forward_pass, layout, loss_grad_pass, n_params, work
from .optim import adam, clip_norm
from .ternary import (
    SCALE_ABSMEAN,
    SCALE_MIN,
    SCALE_TWN,
    bake_rows,
    n_scales,
    quantize_ext,
    recompute_scales,
    ste_ext,
)

LR_CONSTANT = 0
LR_COSINE = 1
# alpha schedules: linear start -> end, constant start, falling max -> min, early: linear
# start -> end over the first ``alpha_until`` of training, then 0 (distillation only while the trits settle)
ALPHA_LINEAR = 0
ALPHA_CONSTANT = 1
ALPHA_FALLING = 2
ALPHA_EARLY = 3
# beta schedules: linear, geometric start * (end/start)^prog, cosine (slow at both ends)
BETA_LINEAR = 0
BETA_GEOMETRIC = 1
BETA_COSINE = 2
ROUND = 0.5  # the zero threshold of rounding w / s: a ternary level is 0 where |w / s| < 1/2
# the output term's weight under distillation
OUTPUT_1_MINUS_ALPHA = 0
OUTPUT_ONE = 1


class Loop(NamedTuple):
    """What the epoch loop reads besides the arrays it trains, for the M models of one call (M = 1 alone).

    The first fields are the call's; the rest hold one entry per model (model k reads
    index k). Settings keep their names from the settings down to here; a string
    setting becomes its integer code (``LR_*``, ``ALPHA_*``, ``BETA_*``, ``OUTPUT_*``,
    :mod:`ternq.kernels.ternary`'s ``MASK_*`` and ``SCALE_*``).
    """

    n_in: int
    hidden: int
    n_out: int
    dt: float
    student: bool  # theta holds shadow weights and row scales, run quantized (each model's qmax)
    n_epochs: int  # epochs in all, the fine-tune's included
    group: int  # columns per scale (0: one scale per row); the per-row arrays below hold one entry per scale
    n_main: np.ndarray  # (M,) int64: epochs before the fine-tune with levels frozen
    lr: np.ndarray  # (M,) float64
    lr_min: np.ndarray  # (M,) float64
    schedule: np.ndarray  # (M,) int64: LR_*
    finetune_lr: np.ndarray  # (M,) float64: the fine-tune's rate, scheduled down to lr_min
    clip: np.ndarray  # (M,) float64: the largest gradient norm (shadow weights and scales apart)
    mask: np.ndarray  # (M,) int64: MASK_*
    beta: np.ndarray  # (M, 2) float64: smoothstep sharpness, start and end
    beta_schedule: np.ndarray  # (M,) int64: BETA_*
    alpha: np.ndarray  # (M, 2) float64: trajectory weight, start and end ((0, 0): no trajectory term)
    alpha_schedule: np.ndarray  # (M,) int64: ALPHA_*
    alpha_until: np.ndarray  # (M,) float64: ALPHA_EARLY's share of the main epochs with distillation
    output_weight: np.ndarray  # (M,) int64: OUTPUT_*
    distill_output: np.ndarray  # (M,) float64: the teacher's share in the output target
    distill_hidden: np.ndarray  # (H, M) or (0, M): per-unit weights of the trajectory term ((0, M): all 1)
    scale_mode: np.ndarray  # (M,) int64: SCALE_*
    progressive: np.ndarray  # (M,) float64: share of the main epochs over which quantized rows grow to all
    row_rank: np.ndarray  # (S, M) int64: the order in which progressive quantization takes the rows (a scale's
    #                       its row's; S scales: ternary.n_scales)
    qmax: np.ndarray  # (S, M) int64: each scale's format code (ternq.formats: ternary 1, binary 0, intN 2^(N-1)-1)
    adam_restart: np.ndarray  # (M,) bool: fresh Adam moments and step count for the parameters that join
    quantized: np.ndarray  # (S, M) int8: each scale's row code (ternary.quantized_rows: float_matrices)
    zero_threshold: np.ndarray  # (M,) float64: a trit is 0 where |w| <= zero_threshold s (ROUND: the rounding's)

    @property
    def models(self) -> int:
        return len(self.lr)


def stack(loops: list[Loop]) -> Loop:
    """One record for the models of ``loops`` (records of one call's dims, dt, student switch and epochs)."""
    head = tuple(loops[0][:_SHARED])
    if any(tuple(s[:_SHARED]) != head for s in loops):
        raise ValueError("models of one call need the same dims, dt, student switch, epochs and scale group")
    H = max(s.distill_hidden.shape[0] for s in loops)
    weights = [s.distill_hidden if s.distill_hidden.shape[0] == H else np.ones((H, s.models)) for s in loops]
    cols = {f: np.concatenate([getattr(s, f) for s in loops], axis=-1 if f in _MODEL_LAST else 0)
            for f in Loop._fields[_SHARED:] if f != "distill_hidden"}
    cols["distill_hidden"] = np.concatenate(weights, axis=1)
    return Loop(*head, **cols)


def select(loop: Loop, models: np.ndarray) -> Loop:
    """The record of some of ``loop``'s models (indices, in their order; repeats allowed)."""
    return loop._replace(**{f: np.ascontiguousarray(getattr(loop, f)[..., models] if f in _MODEL_LAST
                                                    else getattr(loop, f)[models])
                            for f in Loop._fields[_SHARED:]})


_SHARED = Loop._fields.index("n_main")  # the fields before it are the call's, the rest one entry per model
_MODEL_LAST = ("distill_hidden", "row_rank", "qmax", "quantized")  # (., M); the other per-model fields (M,) or (M, 2)


@njit(cache=True, nogil=True, error_model="numpy")
def lr_at(lr, lr_min, kind, prog):
    """Learning rate at training progress ``prog`` in [0, 1)."""
    if kind == LR_COSINE:
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + np.cos(np.pi * prog))
    return lr


@njit(cache=True, nogil=True, error_model="numpy")
def alpha_at(kind, a0, a1, prog, until):
    """Trajectory weight at training progress ``prog`` in [0, 1) (see ALPHA_*)."""
    if kind == ALPHA_CONSTANT:
        return a0
    if kind == ALPHA_FALLING:
        hi, lo = max(a0, a1), min(a0, a1)
        return hi + (lo - hi) * prog
    if kind == ALPHA_EARLY:
        if prog >= until:
            return 0.0
        return a0 + (a1 - a0) * (prog / until)
    return a0 + (a1 - a0) * prog


@njit(cache=True, nogil=True, error_model="numpy")
def beta_at(kind, b0, b1, prog):
    """Smoothstep sharpness at training progress ``prog`` (see BETA_*)."""
    if kind == BETA_GEOMETRIC:
        return b0 * (b1 / b0) ** prog
    if kind == BETA_COSINE:
        return b0 + (b1 - b0) * 0.5 * (1.0 - np.cos(np.pi * prog))
    return b0 + (b1 - b0) * prog


@njit(cache=True, nogil=True, error_model="numpy")
def rows_quantized(n_rows, share, n_main, e):
    """How many rows (in ``row_rank``'s order) run quantized at epoch ``e`` of progressive quantization over
    ``share`` of the ``n_main`` main epochs."""
    return int(n_rows * (e + 1) / (share * n_main))


@njit(cache=True, nogil=True, error_model="numpy")
def join_epoch(loop, k, r):
    """The epoch at which model ``k``'s row of scale ``r`` starts to run quantized (0: from the start; ``n_main``:
    at the fine-tune)."""
    return join_epoch_of(loop.progressive[k], loop.n_main[k], loop.row_rank[r, k], 2 * loop.hidden + loop.n_out)


@njit(cache=True, nogil=True, error_model="numpy")
def join_epoch_of(share, n_main, rank, n_rows):
    """:func:`join_epoch` of the row of ``rank`` among ``n_rows``, found by bisection (the count of quantized rows
    never falls)."""
    if share <= 0.0:
        return 0
    lo, hi = 0, n_main  # the answer lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if rows_quantized(n_rows, share, n_main, mid) > rank:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True, error_model="numpy")
def adam_joins(loop, k, e, fine, theta, g, adam_m, adam_v, lr):
    """Adam with the moments and step count restarted for the parameters that join: at the fine-tune's first
    epoch every parameter (the shadow weights are frozen, so this restarts the scales, biases and tau), and
    during progressive quantization each row's scale at the epoch its row joins (its gradient was zero until
    then). The shadow weights of a joining row keep their moments: they have trained all along as float
    weights, and a fresh start would make their first steps ``lr`` each, larger rather than smaller. Each scale
    steps at its row's :func:`scale_rate`."""
    m_eff = n_params(loop.n_in, loop.hidden, loop.n_out)
    if fine:
        if e == loop.n_main[k]:
            adam_m[:] = 0
            adam_v[:] = 0
        step = e - loop.n_main[k] + 1
        adam(theta[:m_eff], g[:m_eff], adam_m[:m_eff], adam_v[:m_eff], lr, step)
        adam_scales(loop, k, theta, g, adam_m, adam_v, lr, step)
        return
    adam(theta[:m_eff], g[:m_eff], adam_m[:m_eff], adam_v[:m_eff], lr, e + 1)
    for r in range(theta.shape[0] - m_eff):
        j = m_eff + r
        e_join = join_epoch(loop, k, r)
        if e < e_join or loop.quantized[r, k] == 0:
            continue  # a float row's scale has no gradient: nothing to step
        if e == e_join:
            adam_m[j] = 0
            adam_v[j] = 0
        adam(theta[j : j + 1], g[j : j + 1], adam_m[j : j + 1], adam_v[j : j + 1], scale_rate(lr, loop.qmax[r, k]),
             e - e_join + 1)


@njit(cache=True, nogil=True, error_model="numpy")
def scale_rate(lr, qmax):
    """The scales' learning rate: ``lr / qmax`` for an integer format. Adam steps each parameter by about its
    rate whatever the gradient's size, and an intN scale starts at max|w| / qmax (int8: ~0.004), so at the
    weights' rate a step could more than double it; at ``lr / qmax`` the row's range ``s * qmax`` moves as a
    ternary scale does. Ternary and binary keep ``lr``."""
    return lr / qmax if qmax > 1 else lr


@njit(cache=True, nogil=True, error_model="numpy")
def adam_scales(loop, k, theta, g, adam_m, adam_v, lr, step):
    """Adam on model ``k``'s row scales (theta's tail), each at its row's :func:`scale_rate`: one call when the
    rows share a format, one per row when they do not (Adam is elementwise: the same steps either way)."""
    m_eff = n_params(loop.n_in, loop.hidden, loop.n_out)
    n_rows = theta.shape[0] - m_eff
    q0 = loop.qmax[0, k]
    same = True
    for r in range(n_rows):
        if loop.qmax[r, k] != q0:
            same = False
    if same:
        adam(theta[m_eff:], g[m_eff:], adam_m[m_eff:], adam_v[m_eff:], scale_rate(lr, q0), step)
        return
    for r in range(n_rows):
        j = m_eff + r
        adam(theta[j : j + 1], g[j : j + 1], adam_m[j : j + 1], adam_v[j : j + 1], scale_rate(lr, loop.qmax[r, k]),
             step)


@njit(cache=True, nogil=True, error_model="numpy")
def any_int(loop, k):
    """Whether some row of model ``k`` is of an integer format (its scales step at their own rate)."""
    for r in range(loop.qmax.shape[0]):
        if loop.qmax[r, k] > 1:
            return True
    return False


# ---------------------------------------------------------------- one model's epoch, outside the cell

@njit(cache=True, nogil=True, error_model="numpy")
def begin_epoch(loop, k, e, theta, adam_m, thresholds, live, p):
    """Model ``k``'s epoch ``e`` up to its forward pass; returns (prog, fine, use_thr).

    At the fine-tune's first epoch the levels freeze as they are (shadow weights baked to
    ``s * level``, thresholds half the scales, no momentum for the shadow
    weights). Writes the effective parameters into ``p``. ``thresholds`` (S,) is
    state kept between calls (TWN's, the frozen levels'); ``live`` (S,) int8 marks
    the rows that run quantized (progressive quantization).
    """
    n_in, hidden, n_out = loop.n_in, loop.hidden, loop.n_out
    at = layout(n_in, hidden, n_out)
    n_main = loop.n_main[k]
    scale_mode = loop.scale_mode[k]
    qmax = loop.qmax[:, k]
    group = loop.group
    n_s = n_scales(n_in, hidden, n_out, group)
    fine = e >= n_main
    if loop.student:
        for r in range(n_s):
            live[r] = loop.quantized[r, k]
    moved = loop.zero_threshold[k] != ROUND
    if fine and e == n_main and loop.student:
        if scale_mode >= SCALE_ABSMEAN:
            recompute_scales(theta, n_in, hidden, n_out, group, scale_mode, thresholds)
        if moved:
            zero_thresholds(theta, at.scales, loop.zero_threshold[k], thresholds)
        bake_rows(theta, n_in, hidden, n_out, group, scale_mode == SCALE_TWN or moved, thresholds, live, qmax)
        for r in range(n_s):
            thresholds[r] = theta.dtype.type(0.5) * theta[at.scales + r]
        adam_m[at.W : at.b] = 0
        adam_m[at.Wout : at.bout] = 0
    prog = e / n_main if not fine else (e - n_main) / (loop.n_epochs - n_main)
    use_thr = False
    if not loop.student:
        p[:] = theta
        return prog, fine, use_thr
    if fine:
        use_thr = True
    else:
        if scale_mode >= SCALE_ABSMEAN:
            recompute_scales(theta, n_in, hidden, n_out, group, scale_mode, thresholds)
        use_thr = scale_mode == SCALE_TWN
        if moved:
            zero_thresholds(theta, at.scales, loop.zero_threshold[k], thresholds)
            use_thr = True
        share = loop.progressive[k]
        if share > 0.0:
            n_q = rows_quantized(2 * hidden + n_out, share, n_main, e)
            for r in range(n_s):
                if loop.row_rank[r, k] >= n_q:
                    live[r] = 0
    quantize_ext(theta, n_in, hidden, n_out, group, use_thr, thresholds, live, qmax, p)
    return prog, fine, use_thr


@njit(cache=True, nogil=True, error_model="numpy")
def zero_thresholds(theta, at_scales, ratio, thresholds):
    """Each scale's absolute zero threshold ``ratio * s`` from its current scale (a moved threshold)."""
    ty = theta.dtype.type
    for r in range(thresholds.shape[0]):
        thresholds[r] = ty(ratio) * theta[at_scales + r]


@njit(cache=True, nogil=True, error_model="numpy")
def loss_weights(loop, k, prog, fine):
    """Model ``k``'s (alpha, w_y, distill_output) this epoch: the trajectory term's weight, the output term's,
    and the teacher's share in the output target (none of them during the fine-tune)."""
    if fine:
        return 0.0, 1.0, 0.0
    alpha = alpha_at(loop.alpha_schedule[k], loop.alpha[k, 0], loop.alpha[k, 1], prog, loop.alpha_until[k])
    w_y = 1.0 if loop.output_weight[k] == OUTPUT_ONE else 1.0 - alpha
    return alpha, w_y, loop.distill_output[k]


@njit(cache=True, nogil=True, error_model="numpy")
def output_target(target, y_teacher, share, out):
    """out[b, t, o] = (1 - share) target[b, t, o] + share y_teacher[t, b, o]: the output target with the
    teacher's predictions blended in (``out`` may be ``target``)."""
    ty = out.dtype.type
    a, b = ty(1.0 - share), ty(share)
    for bb in range(out.shape[0]):
        for t in range(out.shape[1]):
            for o in range(out.shape[2]):
                out[bb, t, o] = a * target[bb, t, o] + b * y_teacher[t, bb, o]


@njit(cache=True, nogil=True, error_model="numpy")
def end_epoch(loop, k, e, prog, fine, use_thr, theta, adam_m, adam_v, thresholds, live, g_eff, g):
    """Model ``k``'s epoch ``e`` after its backward pass: STE and mask (student), clipping, Adam, the scales' floor.

    ``g_eff`` is the effective parameters' gradient; ``g`` (theta's length) is scratch.
    """
    n_in, hidden, n_out = loop.n_in, loop.hidden, loop.n_out
    m_eff = n_params(n_in, hidden, n_out)
    clip = loop.clip[k]
    if loop.student:
        beta = beta_at(loop.beta_schedule[k], loop.beta[k, 0], loop.beta[k, 1], min(prog, 1.0) if not fine else 1.0)
        ste_ext(theta, n_in, hidden, n_out, loop.group, g_eff, beta, loop.mask[k], use_thr, thresholds, live,
                loop.scale_mode[k], fine, loop.qmax[:, k], g)
        clip_norm(g[:m_eff], clip)
        clip_norm(g[m_eff:], clip)
    else:
        g[:] = g_eff
        clip_norm(g, clip)
    rate = loop.finetune_lr[k] if fine else loop.lr[k]
    lr = lr_at(rate, loop.lr_min[k], loop.schedule[k], prog)
    if loop.student and loop.adam_restart[k]:
        adam_joins(loop, k, e, fine, theta, g, adam_m, adam_v, lr)
    elif loop.student and any_int(loop, k):
        adam(theta[:m_eff], g[:m_eff], adam_m[:m_eff], adam_v[:m_eff], lr, e + 1)
        adam_scales(loop, k, theta, g, adam_m, adam_v, lr, e + 1)
    else:
        adam(theta, g, adam_m, adam_v, lr, e + 1)
    if loop.student:
        smin = theta.dtype.type(SCALE_MIN)
        for j in range(m_eff, theta.shape[0]):
            if theta[j] < smin:
                theta[j] = smin


# ---------------------------------------------------------------- the single-model kernel

@njit(cache=True, nogil=True, error_model="numpy")
def _train_epochs(theta, adam_m, adam_v, X, Y, e0, e1, x0, loop, teacher, thresholds, losses, mses):
    B, T = X.shape[1], X.shape[2]
    n_in, hidden, n_out, dt = loop.n_in, loop.hidden, loop.n_out, loop.dt
    dtype = theta.dtype
    m_eff = n_params(n_in, hidden, n_out)
    p = np.empty(m_eff, dtype)
    g_eff = np.empty(m_eff, dtype)
    g = np.zeros(theta.shape[0], dtype)
    hs = np.empty((T + 1, B, hidden), dtype)
    gs = np.empty((T, B, hidden), dtype)
    cs = np.empty((T, B, hidden), dtype)
    ys = np.empty((T, B, n_out), dtype)
    WT = np.empty((n_in + hidden, 2 * hidden), dtype)
    ht = np.empty((T + 1, B, hidden), dtype)
    tgs = np.empty((T, B, hidden), dtype)
    tcs = np.empty((T, B, hidden), dtype)
    tys = np.empty((T, B, n_out), dtype)
    Yb = np.empty((B, T, n_out), dtype)  # the output target blended with the teacher's predictions
    no_weights = np.empty(0, dtype)
    weights = np.empty(loop.distill_hidden.shape[0], dtype)  # empty: every unit weighs 1
    weights[:] = loop.distill_hidden[:, 0]
    live = np.ones(n_scales(n_in, hidden, n_out, loop.group), np.int8)
    wk = work(B, T, n_in, hidden, n_out, theta)
    for e in range(e0, e1):
        prog, fine, use_thr = begin_epoch(loop, 0, e, theta, adam_m, thresholds, live, p)
        alpha, w_y, share = loss_weights(loop, 0, prog, fine)
        target = Y[e - x0]
        if teacher.shape[0] > 0 and (alpha != 0.0 or share > 0.0):
            forward_pass(teacher, X[e - x0], n_in, hidden, n_out, dt, ht, tgs, tcs, tys, WT, wk)
            if share > 0.0:
                output_target(target, tys, share, Yb)
                target = Yb
        loss, mse_ = loss_grad_pass(p, X[e - x0], target, n_in, hidden, n_out, dt, w_y, alpha,
                                ht, g_eff, hs, gs, cs, ys, WT, wk, weights if not fine else no_weights)
        if not np.isfinite(loss):
            return e
        losses[e] = loss
        mses[e] = mse_
        end_epoch(loop, 0, e, prog, fine, use_thr, theta, adam_m, adam_v, thresholds, live, g_eff, g)
    return -1


def train_epochs(theta: np.ndarray, adam_m: np.ndarray, adam_v: np.ndarray, X: np.ndarray, Y: np.ndarray,
                 e0: int, e1: int, loop: Loop, teacher: np.ndarray | None, thresholds: np.ndarray,
                 losses: np.ndarray, mses: np.ndarray, x0: int = 0) -> int:
    """Train one model's ``theta`` (with Adam moments ``adam_m``, ``adam_v``) in place for epochs ``e0 .. e1-1``.

    Parameters
    ----------
    theta, adam_m, adam_v : np.ndarray
        Parameters and Adam moments, one dtype, updated in place.
    X, Y : np.ndarray
        The batches of epochs ``x0 ..``, (E', B, T, n_in) and (E', B, T, n_out) (epoch e reads
        X[e - x0]), so the data can be made a chunk of epochs at a time.
    e0, e1 : int
        The epochs to run, of ``loop.n_epochs``.
    loop : Loop
        The settings, for one model.
    teacher : np.ndarray or None
        The float teacher's effective parameters (trajectory and output distillation); None: none.
    thresholds : np.ndarray
        (S,) zeros (one per scale: :func:`thresholds`) at the start of training, then kept by the caller between calls.
    losses, mses : np.ndarray
        Each epoch's loss and output MSE (before its update), written for the epochs run.
    x0 : int
        The epoch of ``X[0]``.

    Returns
    -------
    int
        -1, or the first epoch whose loss was not finite (training stops there, theta as it was before it).
    """
    if loop.models != 1:
        raise ValueError(f"the single-model loop takes one model's settings, not {loop.models}")
    if not (x0 <= e0 <= e1 <= x0 + len(X)):
        raise ValueError(f"epochs {e0}..{e1 - 1} are not in the batches given (epochs {x0}..{x0 + len(X) - 1})")
    if teacher is None:
        if loop.alpha.any() or loop.distill_output.any():
            raise ValueError("distillation (alpha, distill_output) needs a teacher")
        teacher = np.empty(0, theta.dtype)
    # a plain function: a compiled wrapper would make Numba optimise the whole loop twice on a first run
    return int(_train_epochs(theta, adam_m, adam_v, X, Y, e0, e1, x0, loop, teacher, thresholds, losses, mses))


def compiled(dtype=np.float32) -> bool:
    """Whether the loop is compiled for ``dtype``, here or in Numba's cache (else the first call compiles)."""
    from .cache import compiled as cached

    return cached(_train_epochs, dtype)


def thresholds(loop: Loop, dtype) -> np.ndarray:
    """The per-scale state the loop keeps between calls, as it starts: (M, S) zeros ((S,) for M = 1)."""
    n_rows = n_scales(loop.n_in, loop.hidden, loop.n_out, loop.group)
    return np.zeros(n_rows if loop.models == 1 else (loop.models, n_rows), dtype)

