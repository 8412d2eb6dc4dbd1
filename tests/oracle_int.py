"""Plain-Python oracle of the integer forward (``ternq.kernels.infer_int``), written from its specification.

Python integers never overflow and ``//`` floors, so every operation here is the
mathematical one; the kernel (int64, arithmetic shifts) and the C (int32/int64)
must produce the same integers. No NumPy in the arithmetic.
"""

import math

ONE = 65536  # Q15.16
STEP = 2048  # table step 2^-5 in Q16
N_TABLE = 513


def table() -> list[int]:
    """round(2^16 / (1 + e^(k/32))), k = 0..512, in double precision (ties are absent)."""
    return [math.floor(ONE / (1.0 + math.exp(k / 32.0)) + 0.5) for k in range(N_TABLE)]


def rshr(v: int, k: int) -> int:
    """v / 2^k rounded to nearest, ties up."""
    return (v + 2 ** (k - 1)) // 2**k


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else (hi if v > hi else v)


def sigmoid_lo(a: int, tab: list[int]) -> int:
    """2^16 sigmoid(-a / 2^16) by linear interpolation, 0 <= a < 16 * 2^16."""
    k, f = divmod(a, STEP)
    return tab[k] + ((tab[k + 1] - tab[k]) * f + STEP // 2) // STEP


def sigmoid(p: int, tab: list[int]) -> int:
    a = abs(p)
    lo = 0 if a >= 16 * ONE else sigmoid_lo(a, tab)
    return ONE - lo if p >= 0 else lo


def tanh(p: int, tab: list[int]) -> int:
    a = abs(p)
    lo = 0 if a >= 8 * ONE else sigmoid_lo(2 * a, tab)
    return (ONE - 2 * lo) * (1 if p >= 0 else -1)


def forward(im, Xq) -> tuple[list, list]:
    """Predictions [n][t][o] and hidden states [n][t+1][i] of an :class:`ternq.device.fixed.IntModel` on Q16
    integer inputs Xq [n][t][j] (nested lists or an array)."""
    I, H, O = im.dims
    tW = [[int(v) for v in row] for row in im.levels_W]
    tO = [[int(v) for v in row] for row in im.levels_out]
    mW, kW, bW = [int(v) for v in im.mW], [int(v) for v in im.kW], [int(v) for v in im.bW]
    mO, kO, bO = [int(v) for v in im.mO], [int(v) for v in im.kO], [int(v) for v in im.bO]
    D = [int(v) for v in im.decay]
    tab = [int(v) for v in im.table]
    xm = int(im.x_max)
    ys, hs = [], []
    for seq in Xq:
        h = [0] * H
        ys_n, hs_n = [], [list(h)]
        for x in seq:
            z = [clamp(int(v), -xm, xm) for v in x] + h
            pre = []
            for r in range(2 * H):
                acc = sum(t * v for t, v in zip(tW[r], z, strict=True))
                pre.append(clamp(bW[r] + rshr(acc * mW[r], kW[r]), -2**30, 2**30))
            new = []
            for i in range(H):
                g, c = sigmoid(pre[i], tab), tanh(pre[H + i], tab)
                a = rshr(rshr((ONE - g) * h[i], 16) * D[i], 30)
                new.append(clamp(a + rshr(g * c, 16), -ONE, ONE))
            h = new
            y = []
            for o in range(O):
                acc = sum(t * v for t, v in zip(tO[o], h, strict=True))
                y.append(clamp(bO[o] + rshr(acc * mO[o], kO[o]), -2**31, 2**31 - 1))
            ys_n.append(y)
            hs_n.append(list(h))
        ys.append(ys_n)
        hs.append(hs_n)
    return ys, hs
