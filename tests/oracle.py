"""Plain NumPy versions of the cell, the loss and the ternary (and every weight format's) transform: the kernels'
oracle.

Written for clarity, one step at a time, with no shared code from ``ternq.kernels``.
"""

import numpy as np

DT = 0.1


def split(p, I, H, O):
    Z = I + H
    sizes = [2 * H * Z, 2 * H, H, O * H, O]
    parts = np.split(p, np.cumsum(sizes)[:-1])
    W = parts[0].reshape(2 * H, Z)
    return W[:H], W[H:], parts[1][:H], parts[1][H:], parts[2], parts[3].reshape(O, H), parts[4]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def run(p, X, I, H, O):
    """Hidden states (B, T+1, H) and predictions (B, T, O) from h_0 = 0."""
    Wg, Wc, bg, bc, tau, Wo, bo = split(p, I, H, O)
    B, T, _ = X.shape
    decay = np.exp(-DT / (np.abs(tau) + 1e-6))
    h = np.zeros((B, H), p.dtype)
    hs, ys = [h], []
    for t in range(T):
        z = np.concatenate([X[:, t, :], h], axis=1)
        gate = sigmoid(z @ Wg.T + bg)
        cand = np.tanh(z @ Wc.T + bc)
        h = (1 - gate) * h * decay + gate * cand
        hs.append(h)
        ys.append(h @ Wo.T + bo)
    return np.stack(hs, 1), np.stack(ys, 1)


def loss(p, X, Y, I, H, O, alpha=0.0, teacher_p=None):
    """The training loss: output term weighted 1 - alpha, trajectory term alpha."""
    hs, ys = run(p, X, I, H, O)
    out = 0.5 * np.mean((ys - Y) ** 2)
    if not alpha:
        return out
    ht, _ = run(teacher_p, X, I, H, O)
    traj = 0.5 * np.mean((hs[:, 1:] - ht[:, 1:]) ** 2)
    return (1 - alpha) * out + alpha * traj


def quantize(theta, I, H, O):
    """Effective parameters of a ternary student: s_r * clamp(round_half_away(w / s_r), -1, 1)."""
    return quantize_format(theta, I, H, O, 1)


def quantize_part_float(theta, I, H, O, part):
    """:func:`quantize` with one part left as its float shadow weights: the rows of "gate" (W's first H rows),
    "cand" (the next H) or "out" (W_out), or the columns of every row of W that read x ("input") or h
    ("recurrent")."""
    p = quantize(theta, I, H, O)
    n = theta.size - (2 * H + O)
    Z = I + H
    if part in ("input", "recurrent"):
        cols = slice(0, I) if part == "input" else slice(I, Z)
        p[: 2 * H * Z].reshape(2 * H, Z)[:, cols] = theta[: 2 * H * Z].reshape(2 * H, Z)[:, cols]
        return p
    o = 2 * H * Z + 3 * H
    span = {"gate": (0, H * Z), "cand": (H * Z, 2 * H * Z), "out": (o, o + O * H)}[part]
    p[span[0] : span[1]] = theta[:n][span[0] : span[1]]
    return p


def quantize_groups(theta, I, H, O, G):
    """Effective parameters of a ternary student with one scale per G columns of each row: the scales follow the
    cell's parameters, W's rows first (ceil((I + H) / G) each), then W_out's (ceil(H / G) each)."""
    Z = I + H
    n = theta.size
    per_w, per_o = -(-Z // G), -(-H // G)
    cell = n - 2 * H * per_w - O * per_o
    p = theta[:cell].copy()
    sw = theta[cell : cell + 2 * H * per_w].reshape(2 * H, per_w)
    so = theta[cell + 2 * H * per_w :].reshape(O, per_o)
    W = p[: 2 * H * Z].reshape(2 * H, Z)
    o = 2 * H * Z + 3 * H
    Wo = p[o : o + O * H].reshape(O, H)
    for M, S in ((W, sw), (Wo, so)):
        for r in range(M.shape[0]):
            for j in range(M.shape[1]):
                s = S[r, j // G]
                a = abs(M[r, j] / s)
                M[r, j] = 0.0 if a < 0.5 else s * np.sign(M[r, j])
    return p


def quantize_sign(theta, I, H, O):
    """Effective parameters of a ternary student with two scales per row: after the cell's parameters, each row's
    (s+, s-) pair, W's rows first; a weight w >= 0 runs s+ * trit(w / s+), a weight w < 0 s- * trit(w / s-)."""
    Z = I + H
    cell = theta.size - 2 * (2 * H + O)
    p = theta[:cell].copy()
    S = theta[cell:].reshape(2 * H + O, 2)
    W = p[: 2 * H * Z].reshape(2 * H, Z)
    o = 2 * H * Z + 3 * H
    Wo = p[o : o + O * H].reshape(O, H)
    for M, pairs in ((W, S[: 2 * H]), (Wo, S[2 * H :])):
        for r in range(M.shape[0]):
            for j in range(M.shape[1]):
                s = pairs[r, 1] if M[r, j] < 0 else pairs[r, 0]
                M[r, j] = 0.0 if abs(M[r, j] / s) < 0.5 else s * np.sign(M[r, j])
    return p


def level(r, qmax):
    """The integer level of r = w / s in the format ``qmax``: binary (0) sign(r) with +1 at 0; otherwise
    sign(r) min(round(|r|), qmax), halves rounded away from zero (the fraction compared with 1/2, exactly)."""
    r = np.asarray(r, np.float64)
    if qmax == 0:
        return np.where(r < 0, -1.0, 1.0)
    a = np.abs(r)
    whole = np.floor(a)
    k = whole + (a - whole >= 0.5)
    return np.sign(r) * np.minimum(k, qmax)


def quantize_format(theta, I, H, O, qmax):
    """Effective parameters of a student of the format ``qmax``: s_r * level(w / s_r), the ratio and the product
    in theta's type."""
    n = theta.size - (2 * H + O)
    p, scales = theta[:n].copy(), theta[n:]
    Z = I + H
    W = p[: 2 * H * Z].reshape(2 * H, Z)
    o = 2 * H * Z + 3 * H
    Wo = p[o : o + O * H].reshape(O, H)
    for M, s in ((W, scales[: 2 * H]), (Wo, scales[2 * H :])):
        q = level(M / s[:, None], qmax).astype(theta.dtype)
        M[:] = q * s[:, None]
    return p


def seed_mask(w, s, beta):
    """The design notes' smoothstep bump."""
    t = np.clip((np.abs(w / s) - 0.5) * beta + 0.5, 0.0, 1.0)
    return 6.0 * t * (1.0 - t) * beta


def rollout(p, X, I, H, O, warmup, horizon):
    """Free-running predictions (B, warmup + horizon - 1, O): X[:, t] read for t < warmup, then each
    prediction is the next input. The horizon-k forecast is column warmup - 2 + k."""
    Wg, Wc, bg, bc, tau, Wo, bo = split(p, I, H, O)
    decay = np.exp(-DT / (np.abs(tau) + 1e-6))
    h = np.zeros((X.shape[0], H), p.dtype)
    ys = []
    for t in range(warmup + horizon - 1):
        x = X[:, t, :] if t < warmup else ys[-1]
        z = np.concatenate([x, h], axis=1)
        gate = sigmoid(z @ Wg.T + bg)
        cand = np.tanh(z @ Wc.T + bc)
        h = (1 - gate) * h * decay + gate * cand
        ys.append(h @ Wo.T + bo)
    return np.stack(ys, 1)


def naive_forecasts(series, origin, horizon, period=None):
    """Persistence (or, with a period m, seasonal naive) forecasts of series[origin + k], k = 1 .. horizon,
    from the values up to series[origin], written out one at a time."""
    out = []
    for k in range(1, horizon + 1):
        if period is None:
            out.append(series[origin])
        else:
            back = period
            while origin + k - back > origin:  # the same season, in the observed past
                back += period
            out.append(series[origin + k - back])
    return np.array(out)


def c_program_mask(w, s, beta):
    """The C program's mask: 1 - smoothstep(beta * distance of w/s to its nearest integer)."""
    r = w / s
    d = np.abs(r - np.trunc(r + np.copysign(0.5, r)))
    x = np.minimum(beta * d, 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)


def coordinate_search(p, scales, Y, I, H, O, max_sweeps, predict):
    """The coordinate search as a Python loop over NumPy views (the compiled search's reference): each
    candidate trit in place, its predictions ``predict(p)`` (T, B, O) scored by numpy's sum of squared
    errors against Y (B, T, O); returns (flips, sweeps, objective after each sweep). ``p`` changes in
    place."""
    W, Wout = p[: 2 * H * (I + H)].reshape(2 * H, I + H), p[2 * H * (I + H) + 3 * H:][: O * H].reshape(O, H)
    target = np.asarray(Y, np.float64).transpose(1, 0, 2)

    def sse():
        return float(np.sum((predict(p) - target) ** 2))

    rows = [(W[r], scales[r]) for r in range(2 * H)] + [(Wout[o], scales[2 * H + o]) for o in range(O)]
    best = sse()
    history = [best]
    flips = sweeps = 0
    for _ in range(max_sweeps):
        changed = 0
        for row, s in rows:
            for j in range(row.shape[0]):
                old = row[j]
                for q in (-1, 0, 1):
                    new = p.dtype.type(s * q)
                    if new == old:
                        continue
                    row[j] = new
                    score = sse()
                    if score < best:
                        best, old = score, new
                        changed += 1
                    else:
                        row[j] = old
        flips += changed
        sweeps += 1
        history.append(best)
        if changed == 0:
            break
    return flips, sweeps, history
