import numpy as np
import oracle
import pytest

from ternq.gradcheck import (
    TOLERANCE,
    _blocks,
    _compare,
    _Problem,
    _random_teacher,
    check,
    check_all,
    numerical_grad,
    odd_shape,
    protocol_mask,
    rel_err,
    ste_rows,
)
from ternq.kernels.ternary import MASK_NONE, MASK_NOTES, MASK_REFERENCE, mask, ste_backward
from ternq.model import student_from
from ternq.rng import stream


def test_every_gradient_passes_well_below_the_bar():
    results = check(hidden=16, seed=3)
    assert {r.block for r in results} >= {"W_gate", "W_cand", "b_gate", "b_cand", "tau", "W_out", "b_out",
                                          "scales", "W_eff (trits frozen)"}
    assert any("traj" in r.model for r in results)
    # every parameter, not a sample
    teacher_rows = [r for r in results if r.model.startswith("teacher")]
    assert sum(r.checked for r in teacher_rows) == 2 * 16 * 17 + 3 * 16 + 16 + 1
    assert max(r.max_rel_err for r in results) < 1e-6 < TOLERANCE


def test_check_catches_a_wrong_gradient():
    """The finite differences disagree with a deliberately wrong gradient."""
    x = np.array([0.3, -1.2])

    def f(v):
        return float(np.sum(np.sin(v) * v))

    gn = numerical_grad(f, x.copy(), np.arange(2))
    right = np.sin(x) + x * np.cos(x)
    assert rel_err(right, gn).max() < 1e-9
    assert rel_err(right * 1.01, gn).max() > 5e-3


def test_mask_matches_the_seeds_formula():
    w = np.linspace(-2, 2, 101)
    got = np.array([mask(v, 0.8, 5.0, MASK_NOTES) for v in w])
    np.testing.assert_allclose(got, oracle.seed_mask(w, 0.8, 5.0), rtol=1e-14)
    # peak at the zero/non-zero boundary |w/s| = 0.5, nothing at w = 0 for sharp beta
    assert mask(0.4, 0.8, 5.0, MASK_NOTES) == pytest.approx(6 * 0.25 * 5.0) == pytest.approx(got.max())
    assert mask(0.0, 0.8, 5.0, MASK_NOTES) == 0.0


# ---- coverage of the kernels' remainder loops


def test_check_all_runs_an_odd_width_on_an_odd_batch():
    results = check_all((4,), seed=1)
    H, B, T = odd_shape(1)
    assert H % 2 == 1 and (1 + H) % 4 and (B * T) % 4
    odd = [r for r in results if f"H={H} B*T={B}*{T}" in r.model]
    assert {r.block for r in odd} >= {"W_gate", "W_cand", "W_out", "scales", "W_eff (trits frozen)",
                                      "STE = g_eff * notes' mask", "STE = g_eff * C program's mask"}
    assert any(r.model.startswith("teacher") for r in odd) and any("traj" in r.model for r in odd)
    assert max(r.max_rel_err for r in results) < 1e-6
    for n_in in (1, 2, 3, 4, 7):
        h, b, t = odd_shape(n_in)
        assert h % 2 == 1 and (n_in + h) % 4 and (b * t) % 4


def _odd_problem(seed=2):
    I, O = 1, 1
    H, B, T = odd_shape(I)
    rng = stream(seed, "test-odd")
    prob = _Problem(rng, I, H, O, B, T, 0.0, None)
    p = _random_teacher(seed, H, I, O).theta.astype(np.float64)
    return prob, p, (I, H, O, B, T)


def test_kernel_gradient_matches_the_numpy_oracle_at_the_odd_shape():
    prob, p, (I, H, O, B, T) = _odd_problem()
    loss, ga = prob.loss_grad(p)
    assert loss == pytest.approx(oracle.loss(p, prob.X, prob.Y, I, H, O), rel=1e-12)
    gn = numerical_grad(lambda q: oracle.loss(q, prob.X, prob.Y, I, H, O), p.copy(), np.arange(p.size))
    assert rel_err(ga, gn).max() < 1e-6


def test_a_one_percent_error_in_a_remainder_loop_fails_the_odd_shape():
    """What a 1% slip in the W_out remainder loop (the last B*T % 4 steps) or in the odd column would do."""
    prob, p, (I, H, O, B, T) = _odd_problem()
    blocks = _blocks(I, H, O)
    ga = prob.loss_grad(p)[1]
    hs, ys = oracle.run(p, prob.X, I, H, O)
    n = B * T
    # flat step k = t * B + b, as the kernel lays its states out; the remainder loop takes the last n % 4
    rem_steps = [(k // B, k % B) for k in range(n - n % 4, n)]
    rem = sum(np.outer(ys[b, t] - prob.Y[b, t], hs[b, t + 1]) for t, b in rem_steps) / (n * O)
    idx = blocks["W_out"]
    gn = prob.numerical(p, idx)
    assert _compare("t", "W_out", ga[idx], gn).max_rel_err < 1e-9
    planted = ga[idx] + 0.01 * rem.ravel()
    assert _compare("t", "W_out", planted, gn).max_rel_err > TOLERANCE
    # the odd width's last column (a remainder column of the row products) is checked entry by entry
    last_col = blocks["W_gate"].reshape(H, I + H)[:, -1]
    bad = ga.copy()
    bad[last_col] *= 1.01
    gnw = prob.numerical(p, blocks["W_gate"])
    assert _compare("t", "W_gate", bad[blocks["W_gate"]], gnw).max_rel_err > TOLERANCE


# ---- the STE rows compare against masks written from the protocol


@pytest.mark.parametrize("beta", [1.0, 7.0, 20.0])
def test_protocol_mask_matches_the_formulas(beta):
    w = np.linspace(-2.3, 2.3, 207)
    s = 0.8
    np.testing.assert_allclose(protocol_mask(w, s, beta, MASK_NOTES), oracle.seed_mask(w, s, beta), rtol=1e-14)
    np.testing.assert_allclose(protocol_mask(w, s, beta, MASK_REFERENCE), oracle.c_program_mask(w, s, beta),
                               rtol=1e-14, atol=1e-15)
    assert np.all(protocol_mask(w, s, beta, MASK_NONE) == 1.0)
    # and the kernel's own mask agrees with both
    for kind in (MASK_NOTES, MASK_REFERENCE):
        got = np.array([mask(v, s, beta, kind) for v in w])
        np.testing.assert_allclose(got, protocol_mask(w, s, beta, kind), rtol=1e-13, atol=1e-15)


def _ste_setup():
    I, H, O = 1, 5, 1
    blocks = _blocks(I, H, O)
    student = student_from(_random_teacher(4, H, I, O))
    rng = stream(4, "test-ste")
    theta = student.theta.astype(np.float64)
    theta[: student.n_cell] += rng.normal(0, 0.05, size=student.n_cell)
    g_eff = rng.normal(size=student.n_cell)
    w_idx = np.concatenate([blocks["W_gate"], blocks["W_cand"], blocks["W_out"]])
    rows = np.concatenate([np.repeat(np.arange(2 * H), I + H), 2 * H + np.repeat(np.arange(O), H)])
    return theta, (I, H, O), g_eff, rows, w_idx


def _numpy_ste(mask_fn):
    """A NumPy STE backward using ``mask_fn(w, s, beta, kind)`` for the shadow weights."""
    def backward(theta, I, H, O, g_eff, beta, kind, g):
        ste_backward(theta, I, H, O, g_eff, beta, MASK_NONE, g)  # scales and the unmasked copy
        n = g_eff.size
        W = theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
        s = theta[n:]
        gW = g[: 2 * H * (I + H)].reshape(2 * H, I + H)
        gW *= mask_fn(W, s[: 2 * H, None], beta, kind)
        o = 2 * H * (I + H) + 3 * H
        gO = g[o : o + O * H].reshape(O, H)
        gO *= mask_fn(theta[o : o + O * H].reshape(O, H), s[2 * H :, None], beta, kind)
    return backward


def test_ste_rows_catch_a_wrong_mask_formula():
    theta, (I, H, O), g_eff, rows, w_idx = _ste_setup()
    kernel = ste_rows(theta, I, H, O, g_eff, rows, w_idx, "s")
    assert all(r.max_rel_err < 1e-12 for r in kernel)

    def seeds_formula(w, s, beta, kind):
        if kind == MASK_NOTES:
            return oracle.seed_mask(w, s, beta)
        if kind == MASK_REFERENCE:
            return oracle.c_program_mask(w, s, beta)
        return np.ones_like(w)

    assert all(r.ok for r in ste_rows(theta, I, H, O, g_eff, rows, w_idx, "s", _numpy_ste(seeds_formula)))

    def off_centre(w, s, beta, kind):  # the bump at |w/s| = 0.45 instead of 0.5
        if kind == MASK_NOTES:
            t = np.clip((np.abs(w / s) - 0.45) * beta + 0.5, 0, 1)
            return 6 * t * (1 - t) * beta
        return seeds_formula(w, s, beta, kind)

    def swapped(w, s, beta, kind):  # the two masks exchanged, as the C program's inversion would be
        other = {MASK_NOTES: MASK_REFERENCE, MASK_REFERENCE: MASK_NOTES}.get(kind, kind)
        return seeds_formula(w, s, beta, other)

    for wrong in (off_centre, swapped):
        bad = {r.block: r.ok for r in ste_rows(theta, I, H, O, g_eff, rows, w_idx, "s", _numpy_ste(wrong))}
        assert not bad["STE = g_eff * notes' mask"] and bad["STE = g_eff (vanilla)"]


# ---- the recipes' rows


def test_recipe_rows_are_in_the_check_and_pass():
    results = check(hidden=8, seed=5)
    blocks = {(r.model, r.block) for r in results}
    for form in ("traj-norm", "out-distill"):
        for block in ("scales", "tau", "W_eff (trits frozen)"):
            assert (f"student H=8 {form}", block) in blocks
    assert {b for _, b in blocks} >= {"LSQ dL/ds (Esser et al.)", "TWN: STE = g_eff * mask(w/2delta)",
                                      "fine-tune: W frozen, dL/ds", "progressive: float rows = g_eff",
                                      "fine-tune: float rows = g_eff, the rest frozen"}
    assert max(r.max_rel_err for r in results) < 1e-6


def test_normalised_matching_rows_see_a_missing_weight():
    """The finite differences of the weighted loss disagree with the unweighted gradient."""
    I, H, O, B, T = 1, 6, 1, 2, 7
    rng = stream(7, "test-hw")
    other = _random_teacher(8, H, I, O).theta.astype(np.float64)
    p = _random_teacher(7, H, I, O).theta.astype(np.float64)
    hw = rng.uniform(0.5, 4.0, size=H)
    weighted = _Problem(stream(9, "d"), I, H, O, B, T, 0.5, other, hw)
    plain = _Problem(stream(9, "d"), I, H, O, B, T, 0.5, other)
    idx = _blocks(I, H, O)["b_cand"]
    gn = weighted.numerical(p, idx)
    assert rel_err(weighted.loss_grad(p)[1][idx], gn).max() < 1e-6
    assert rel_err(plain.loss_grad(p)[1][idx], gn).max() > TOLERANCE


def test_recipe_rows_catch_a_wrong_backward():
    from ternq.gradcheck import recipe_rows
    from ternq.kernels.ternary import SCALE_LSQ, ste_ext

    theta, (I, H, O), g_eff, rows, w_idx = _ste_setup()
    good = recipe_rows(theta, I, H, O, g_eff, rows, w_idx, "s", stream(1, "r"))
    assert all(r.max_rel_err < 1e-12 for r in good)

    def no_gradient_scale(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        if scale_kind == SCALE_LSQ:  # LSQ's gradient without its 1/sqrt(n)
            g[g_eff.size:] *= np.sqrt(I + H)

    def mask_at_threshold(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr * 0.5 if use_thr else thr, live, scale_kind,
                freeze, qmax, g)  # the mask's boundary at w / thr instead of w / (2 thr)

    bad = {r.block: r.ok for r in recipe_rows(theta, I, H, O, g_eff, rows, w_idx, "s", stream(1, "r"),
                                              no_gradient_scale)}
    assert not bad["LSQ dL/ds (Esser et al.)"] and bad["fine-tune: W frozen, dL/ds"]
    bad = {r.block: r.ok for r in recipe_rows(theta, I, H, O, g_eff, rows, w_idx, "s", stream(1, "r"),
                                              mask_at_threshold)}
    assert not bad["TWN: STE = g_eff * mask(w/2delta)"] and not bad["zero threshold 0.35 s: mask(w/2t), dL/ds"]

    def float_rows_frozen(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, np.ones_like(live) if freeze else live,
                scale_kind, freeze, qmax, g)  # the fine-tune forgets the rows kept in float

    bad = {r.block: r.ok for r in recipe_rows(theta, I, H, O, g_eff, rows, w_idx, "s", stream(1, "r"),
                                              float_rows_frozen)}
    assert not bad["fine-tune: float rows = g_eff, the rest frozen"] and bad["progressive: float rows = g_eff"]

    def columns_ignored(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, np.minimum(live, 1), scale_kind, freeze, qmax,
                g)  # float columns quantized like the rest of their rows

    bad = {r.block: r.ok for r in recipe_rows(theta, I, H, O, g_eff, rows, w_idx, "s", stream(1, "r"),
                                              columns_ignored)}
    assert not bad["float columns = g_eff; LSQ over the rest"] and bad["progressive: float rows = g_eff"]


def _format_rows(backward=None, name="int4"):
    from ternq import formats
    from ternq.gradcheck import _Problem, format_rows
    from ternq.kernels.ternary import ste_ext

    theta, (I, H, O), _, rows, w_idx = _ste_setup()
    prob = _Problem(stream(5, "test-format"), I, H, O, 2, 6, 0.0, None)
    return {r.block: r for r in format_rows(theta, I, H, O, prob, rows, w_idx, name, formats.get(name),
                                            backward or ste_ext)}


@pytest.mark.parametrize("name", ["binary", "int4", "int8"])
def test_format_rows_pass_for_the_kernel(name):
    got = _format_rows(name=name)
    assert len(got) == (5 if name == "binary" else 6) and all(r.ok for r in got.values()), got


def test_format_rows_catch_a_planted_error_in_each_term():
    """Each new backward term of a format, planted wrong in turn, fails its row (and only the rows it touches)."""
    from ternq.kernels.ternary import SCALE_LEARNED, SCALE_LSQ, ste_ext

    def kernel(*args):
        ste_ext(*args)

    def ternary_scale_gradient(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        if scale_kind == SCALE_LEARNED and not freeze:  # the scale gradient of trits, not of the format's levels
            t = np.zeros_like(g)
            kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, np.ones_like(qmax), t)
            g[g_eff.size:] = t[g_eff.size:]

    def ternary_mask(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        t = np.zeros_like(g)  # the shadow weights' mask of ternary's one boundary
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, np.ones_like(qmax), t)
        g[: g_eff.size] = t[: g_eff.size]

    def lsq_scale_of_ternary(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        if scale_kind == SCALE_LSQ:  # 1/sqrt(n) instead of 1/sqrt(n qmax)
            g[g_eff.size:] *= np.sqrt(qmax)

    def lsq_clipped_at_one(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        if scale_kind == SCALE_LSQ:  # the -w/s term only inside |w/s| < 1, ternary's range
            n = g_eff.size
            s = theta[n:]
            for r in range(len(s)):
                W = theta[: 2 * H * (I + H)].reshape(2 * H, I + H)
                o = 2 * H * (I + H) + 3 * H
                Wo = theta[o: o + O * H].reshape(O, H)
                gW = g_eff[: 2 * H * (I + H)].reshape(2 * H, I + H)
                gO = g_eff[o: o + O * H].reshape(O, H)
                w, gw = (W[r], gW[r]) if r < 2 * H else (Wo[r - 2 * H], gO[r - 2 * H])
                x = w / s[r]
                k = np.sign(x) * np.minimum(np.floor(np.abs(x) + 0.5), qmax[r])
                g[n + r] = np.sum(gw * (k - x * (np.abs(x) < 1))) / np.sqrt(w.size * qmax[r])

    def unfrozen(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, False, qmax, g)

    def unclipped_binary(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        kernel(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        if kind == MASK_NONE and not freeze:
            g[: g_eff.size] = g_eff  # the plain identity: binary's STE is clipped at |w/s| = 1

    planted = [(ternary_scale_gradient, "int4", {"dL/ds (levels frozen)"}),
               (ternary_mask, "int4", {"STE = g_eff * notes' mask", "STE = g_eff * C program's mask"}),
               (ternary_mask, "binary", {"STE = g_eff (vanilla)", "STE = g_eff * notes' mask",
                                         "STE = g_eff * C program's mask"}),
               (lsq_scale_of_ternary, "int8", {"LSQ dL/ds (Esser et al.)"}),
               (lsq_clipped_at_one, "int4", {"LSQ dL/ds (Esser et al.)"}),
               (unfrozen, "int8", {"fine-tune: W frozen, dL/ds"}),
               (unclipped_binary, "binary", {"STE = g_eff (vanilla)"})]
    for backward, name, rows in planted:
        got = _format_rows(backward, name)
        failed = {block for block, r in got.items() if not r.ok}
        assert failed == rows, (backward.__name__, name, failed)


def test_mixed_format_rows_pass_for_the_kernel_and_catch_one_format_for_all():
    """A mixed student's rows (each matrix its own format) pass for the kernel; a backward that reads one
    format for every row (the first row's) fails the rows of the other matrices' terms."""
    from ternq.gradcheck import _Problem, format_rows, mixed_formats
    from ternq.kernels.ternary import ste_ext

    theta, (I, H, O), _, rows, w_idx = _ste_setup()

    def got(backward):
        prob = _Problem(stream(5, "test-format"), I, H, O, 2, 6, 0.0, None)
        return {r.block: r.ok for r in format_rows(theta, I, H, O, prob, rows, w_idx, "m",
                                                   mixed_formats("ternary+cand:int8+out:int4"), backward)}

    def one_format(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze,
                np.full_like(qmax, qmax[0]), g)

    good = got(ste_ext)
    assert len(good) == 6 and all(good.values()), good
    bad = got(one_format)
    assert not bad["dL/ds (levels frozen)"] and not bad["LSQ dL/ds (Esser et al.)"], bad


def test_group_rows_catch_a_planted_error():
    """The scale-group rows pass for the kernel; LSQ's gradient scale over a whole row's columns instead of the
    group's fails the LSQ row and not the fine-tune's."""
    from ternq.gradcheck import _Problem, group_rows
    from ternq.kernels.ternary import SCALE_LSQ, ste_ext

    theta, (I, H, O), _, _, w_idx = _ste_setup()
    prob = _Problem(stream(5, "test-group"), I, H, O, 2, 6, 0.0, None)
    good = {r.block: r.ok for r in group_rows(theta, I, H, O, prob, w_idx, "g", 3)}
    assert len(good) == 4 and all(good.values()), good

    def row_gradient_scale(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        if scale_kind == SCALE_LSQ and not freeze:
            g[g_eff.size:] *= np.sqrt(G / (I + H))

    bad = {r.block: r.ok for r in group_rows(theta, I, H, O, prob, w_idx, "g", 3, row_gradient_scale)}
    assert not bad["notes' mask; LSQ dL/ds_v"] and bad["fine-tune: W frozen, dL/ds_v"], bad


def test_sign_rows_catch_scales_of_the_wrong_sign():
    """The two-scales-by-sign rows pass for the kernel and fail where each row's two scale gradients change places."""
    from ternq.gradcheck import _Problem, group_rows
    from ternq.kernels.ternary import SCALE_BY_SIGN, ste_ext

    theta, (I, H, O), _, _, w_idx = _ste_setup()
    prob = _Problem(stream(6, "test-sign"), I, H, O, 2, 6, 0.0, None)
    good = {r.block: r.ok for r in group_rows(theta, I, H, O, prob, w_idx, "s", SCALE_BY_SIGN)}
    assert len(good) == 4 and all(good.values()), good

    def swapped(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g):
        ste_ext(theta, I, H, O, G, g_eff, beta, kind, use_thr, thr, live, scale_kind, freeze, qmax, g)
        gs = g[g_eff.size:].reshape(-1, 2)
        gs[:] = gs[:, ::-1].copy()

    bad = {r.block: r.ok for r in group_rows(theta, I, H, O, prob, w_idx, "s", SCALE_BY_SIGN, swapped)}
    assert not bad["dL/ds_v (trits frozen)"] and not bad["fine-tune: W frozen, dL/ds_v"], bad
