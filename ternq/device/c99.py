"""C99 source for a deployed quantized CfC: the library, ``golden.h`` and the ``main.c`` harness.

Two formats:

``c``
    float32, bit-identical to ``ternq predict``: the same float32 operations in the
    same order as the training forward (:func:`ternq.kernels.cell._act` for
    sigmoid/tanh, a Cephes polynomial with the exponent built from integer bits,
    so no libm), decay factors precomputed on the host.
``c-int``
    integer only (:mod:`ternq.device.fixed`, :mod:`ternq.kernels.infer_int`), no
    float or double anywhere, bit-identical to ``ternq predict --int``.

Weights whose levels are signs (ternary, binary, int2: levels in -1..1) are added or
subtracted, never multiplied, in one of three layouts: ``sparse`` (their default) stores
per row the list of its non-zero columns, so a zero trit costs nothing (float:
ascending columns with the sign in the low bit, to keep the training forward's
summation order; integer: the +1 columns then the -1 columns, as integer sums are
exact in any order); ``dense`` stores every level as an int8 and visits it (the
baseline without zero-trit skipping); ``packed`` stores the levels as the deployable
file does (ternary five per byte in base 3, binary eight per byte, int2 four), each row
starting on a byte, and decodes them in C (the least flash, more instructions);
ternary also ``packed-table``: the same bytes, each decoded through a table of its five
trits (243 ``uint16_t``, two bits a trit: 486 bytes of flash for no division by 3, which
a core without a divide instruction, such as the Cortex-M0, does in a library routine).

Wider levels (int3 .. int8) are multiplied: float ``acc + v[j] * (s * (float)q)``, the
training forward's operation; integer ``acc += q * v[j]`` in int32 (exact: the input
bound of :mod:`ternq.device.fixed` keeps every sum in range). Their layouts: ``packed``
(default), as in the deployable file but each row starting on a byte: int8 (and
int5..int7) one ``int8_t`` per weight; int4 (and int3) two per byte, the first of a
pair in the low nibble, unpacked in C by sign-extending each nibble; ``dense``, one
``int8_t`` per weight (for int8 the same as packed).

A model trained on a recorded series (``--data``) works in normalised units.
The float library then also has ``ternq_step_units``, which takes and returns the
series' own units through the constants ``TERNQ_MEAN_IN``, ``TERNQ_INV_SD_IN``,
``TERNQ_MEAN_OUT`` and ``TERNQ_SD_OUT`` (:class:`ternq.deploy.Units`, the same
float32 operations as ``ternq predict --input``). The integer library stays in
normalised Q15.16: converting a value of arbitrary units to Q16 needs either
floating point or a per-channel fixed-point format chosen from the data, so its
header gives the mean and sd and leaves the conversion to the caller. Tasks
without normalisation (the built-in ones) get neither constants nor entry point.

The library has no malloc, no libm and no writable globals: the state is the
caller's ``ternq_state``; ``ternq_step`` uses ``I + H`` values of stack. It calls
no library function; GCC may still turn its copy loops into memcpy/memset
calls (as it may in any freestanding program, which must provide them).
"""

from __future__ import annotations

import re

import numpy as np

from ..deploy import Deployable, channel_names, pack_levels
from ..kernels import cell
from ..kernels.infer_int import DECAY_FRAC, FRAC, ONE, PRE_MAX, SIG_SAT, TABLE_STEP, TANH_SAT
from .fixed import IntModel

FORMATS = ("c", "c-int")
LAYOUTS = ("sparse", "dense", "packed", "packed-table")
FILES = ("ternq_model.h", "ternq_model.c", "golden.h", "main.c")


def hex_float(v) -> str:
    """An exact C99 float literal (hexadecimal) for a float32 value; ValueError if not finite."""
    f = float(np.float32(v))
    if not np.isfinite(f):
        raise ValueError(f"{f} has no C float literal")
    h = re.sub(r"\.?0*p", "p", f.hex())
    return h + "f"


def _array(ctype: str, name: str, values, per_line: int = 8, fmt=str) -> str:
    vals = [fmt(v) for v in np.asarray(values).ravel()] or ["0"]  # C99 has no empty arrays
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    {body}\n}};\n"


def _uint(maxval: int) -> str:
    return "uint8_t" if maxval < 256 else ("uint16_t" if maxval < 65536 else "uint32_t")


def _rows(dep: Deployable) -> list[np.ndarray]:
    """Level rows: 2H rows over [x ; h], then O output rows over h."""
    return [dep.levels_W[r] for r in range(2 * dep.hidden)] + [dep.levels_out[o] for o in range(dep.n_out)]


def multiplies(dep: Deployable) -> bool:
    """Whether the library multiplies by the levels (int3 .. int8) rather than adding or subtracting (signs)."""
    return dep.format.qmax > 1


def layouts(dep: Deployable) -> tuple[str, ...]:
    """The layouts the library of ``dep`` can have, its default first."""
    if multiplies(dep):
        return ("packed", "dense")
    return LAYOUTS if dep.format.name == "ternary" else LAYOUTS[:3]


def _packed_rows(dep: Deployable, layout: str) -> tuple[str, list, int, int]:
    """(C type, values, bytes per W row, bytes per W_out row) of the levels stored row by row, each row starting
    on a byte: int8_t values for one level per byte (``dense``, or a packed format of one per byte), else the
    bytes of the deployable file's packing (see the module docstring)."""
    fmt = dep.format
    I, H = dep.n_in, dep.hidden
    if layout == "dense" or fmt.per_byte == 1:
        return "int8_t", [int(v) for row in _rows(dep) for v in row], I + H, H
    data = b"".join(pack_levels(row, fmt) for row in _rows(dep))
    return "uint8_t", list(data), fmt.packed_bytes(I + H), fmt.packed_bytes(H)


def _level_loop(dep: Deployable, integer: bool, layout: str) -> str:
    """The body that runs one packed row's levels q over v in ascending j (float: acc = acc + v[j] * (s * q))."""
    step = "acc += (int32_t)({q}) * v[{j}];" if integer else "acc = acc + v[{j}] * (s * (float)({q}));"
    if layout == "dense" or dep.format.per_byte == 1:
        return f"    for (j = 0; j < n; ++j) {step.format(q='row[j]', j='j')}\n"
    lo, hi = "TERNQ_LO(row[j >> 1])", "TERNQ_HI(row[j >> 1])"
    return (f"    for (j = 0; j + 1 < n; j += 2) {{\n        {step.format(q=lo, j='j')}\n"
            f"        {step.format(q=hi, j='j + 1')}\n    }}\n"
            f"    if (j < n) {step.format(q=lo, j='j')}\n")


_SIGN_DIGIT = {  # the next level (-1, 0, +1) of a packed byte b, consuming it: per sign format
    "ternary": "const unsigned d = b % 3u; /* base 3, least significant digit first: level d - 1 */\n"
               "            const int q = (int)d - 1;\n            b /= 3u;",
    "binary": "const int q = (int)(b & 1u) * 2 - 1; /* bit 1: +1, bit 0: -1 */\n            b >>= 1;",
    "int2": "const int q = (int)((b & 3u) ^ 2u) - 2; /* two's complement in 2 bits */\n            b >>= 2;",
}


def trit_table() -> list[int]:
    """Byte b (0..242) -> its five base-3 digits d_k (level d_k - 1, least significant first), two bits each:
    sum of d_k << 2k."""
    return [sum(((b // 3 ** k) % 3) << (2 * k) for k in range(5)) for b in range(243)]


_TABLE_DIGIT = ("const int q = (int)(t & 3u) - 1; /* the byte's next base-3 digit, from the table */\n"
                "            t >>= 2;")


def _sign_packed_row_fn(dep: Deployable, integer: bool, table: bool = False) -> tuple[str, str]:
    """(the levels array, the row function) of a sign format's ``packed`` layout: the file's bytes, row-aligned,
    decoded level by level (with ``table``, ternary bytes through :func:`trit_table`); a zero level is skipped
    (as the sparse layout skips it)."""
    fmt = dep.format
    if fmt.name not in _SIGN_DIGIT:
        raise ValueError(f"no packed C layout for {fmt.name} weights")
    _, values, row_w, row_o = _packed_rows(dep, "packed")
    array = _array("uint8_t", "ternq_levels", values, per_line=16, fmt=lambda v: f"0x{int(v):02x}")
    if table:
        array += _array("uint16_t", "ternq_trits", trit_table(), per_line=12, fmt=lambda v: f"0x{v:03x}")
    fetch = "unsigned t = ternq_trits[*row++];" if table else "unsigned b = *row++;"
    digit = _TABLE_DIGIT if table else _SIGN_DIGIT[fmt.name]
    use = ("if (q > 0) acc += v[j];\n            else if (q < 0) acc -= v[j];" if integer else
           "if (q != 0) acc = acc + v[j] * w[q > 0];")
    head = f"""#define TERNQ_ROW_W {row_w} /* bytes per row of W ({fmt.per_byte} levels a byte) */
#define TERNQ_ROW_O {row_o} /* bytes per row of W_out */
"""
    sig, init = (("static int32_t ternq_sum(int r, const int32_t *v)", "int32_t acc = 0;") if integer else
                 ("static float ternq_row(int r, const float *v, float acc)",
                  "const float w[2] = {-ternq_scale[r], ternq_scale[r]}; /* level -1, +1 */"))
    what = ("the sum of v[j] over the row's +1 levels minus over its -1 levels" if integer else
            "acc (the bias) + v[j] * (+-s) over the row's non-zero levels, ascending j: the training forward's "
            "acc + v[j] * (s * q)\n   without its zero levels, which add nothing (see ternq/kernels/infer.py)")
    fn = f"""{head}
/* {what}; the levels decoded from the row's packed bytes */
{sig}
{{
    const int n = r < 2 * TERNQ_HIDDEN ? TERNQ_N_IN + TERNQ_HIDDEN : TERNQ_HIDDEN;
    const uint8_t *row = ternq_levels + (r < 2 * TERNQ_HIDDEN ? r * TERNQ_ROW_W
                                         : 2 * TERNQ_HIDDEN * TERNQ_ROW_W + (r - 2 * TERNQ_HIDDEN) * TERNQ_ROW_O);
    {init}
    int j = 0, k;
    while (j < n) {{
        {fetch}
        for (k = 0; k < {fmt.per_byte} && j < n; ++k, ++j) {{
            {digit}
            {use}
        }}
    }}
    return acc;
}}
"""
    return array, fn


def _packed_row_fn(dep: Deployable, integer: bool, layout: str) -> tuple[str, str]:
    """(the levels array, the row function) of the multiplying libraries."""
    ctype, values, row_w, row_o = _packed_rows(dep, layout)
    fmt = dep.format
    array = _array(ctype, "ternq_levels", values, per_line=16 if ctype == "uint8_t" else 24,
                   fmt=(lambda v: f"0x{int(v):02x}") if ctype == "uint8_t" else str)
    nibbles = ("" if ctype == "int8_t" else
               "/* a nibble as a signed level: two's complement in 4 bits */\n"
               "#define TERNQ_LO(b) ((int)(((unsigned)(b) & 15u) ^ 8u) - 8)\n"
               "#define TERNQ_HI(b) ((int)(((unsigned)(b) >> 4) ^ 8u) - 8)\n")
    head = f"""{nibbles}#define TERNQ_ROW_W {row_w} /* bytes per row of W */
#define TERNQ_ROW_O {row_o} /* bytes per row of W_out */

static const {ctype} *ternq_row_levels(int r)
{{
    return ternq_levels + (r < 2 * TERNQ_HIDDEN ? r * TERNQ_ROW_W
                           : 2 * TERNQ_HIDDEN * TERNQ_ROW_W + (r - 2 * TERNQ_HIDDEN) * TERNQ_ROW_O);
}}
"""
    n = "const int n = r < 2 * TERNQ_HIDDEN ? TERNQ_N_IN + TERNQ_HIDDEN : TERNQ_HIDDEN;"
    if integer:
        fn = f"""{head}
/* sum of q * v[j] over the row's {fmt.name} levels (exact in int32: see TERNQ_X_MAX) */
static int32_t ternq_sum(int r, const int32_t *v)
{{
    {n}
    const {ctype} *row = ternq_row_levels(r);
    int32_t acc = 0;
    int j;
{_level_loop(dep, True, layout)}    return acc;
}}
"""
    else:
        fn = f"""{head}
/* acc (the bias) + v[j] * (s * q) over the row's {fmt.name} levels, ascending j: the training forward's
   operations on its effective weights s * q */
static float ternq_row(int r, const float *v, float acc)
{{
    const float s = ternq_scale[r];
    {n}
    const {ctype} *row = ternq_row_levels(r);
    int j;
{_level_loop(dep, False, layout)}    return acc;
}}
"""
    return array, fn


def _header(dep: Deployable, fmt: str, layout: str, source: str) -> str:
    I, H, O = dep.dims
    integer = fmt == "c-int"
    ty = "int32_t" if integer else "float"
    q = (f"\n#define TERNQ_FRAC_BITS {FRAC} /* x, h and y are Q15.16: real value = integer / 65536 */\n"
         f"#define TERNQ_X_MAX {IntModel.from_deployable(dep).x_max} /* inputs are clamped to +-TERNQ_X_MAX */\n"
         if integer else "")
    what = ("integer-only (no floating point), bit-identical to 'ternq predict --int'" if integer else
            "float32, bit-identical to 'ternq predict' (compile with -ffp-contract=off)")
    units_doc, units_defs, units_decl = _units_header(dep, integer)
    return f"""/* ternq_model.h: a CfC recurrent network, generated by ternq from {source}.
 * Weights {dep.weight_format}; format {fmt} ({what}), weight layout {layout}.
 * Usage: ternq_state s; ternq_reset(&s); then ternq_step(&s, x, y) once per time step.
{units_doc} * No malloc, no libm, no writable globals: all state is in the caller's ternq_state. The only library
 * functions the object may need are memcpy/memset, which GCC can emit for plain copy loops. */
#ifndef TERNQ_MODEL_H
#define TERNQ_MODEL_H

#include <stdint.h>

#define TERNQ_N_IN {I}
#define TERNQ_HIDDEN {H}
#define TERNQ_N_OUT {O}{q}{units_defs}

typedef struct {{
    {ty} h[TERNQ_HIDDEN]; /* hidden state */
}} ternq_state;

/* Set the hidden state to zero (the start of a sequence). */
void ternq_reset(ternq_state *state);

/* One time step: read x[TERNQ_N_IN], update the state, write the prediction y[TERNQ_N_OUT]. */
void ternq_step(ternq_state *state, const {ty} x[TERNQ_N_IN], {ty} y[TERNQ_N_OUT]);
{units_decl}
#endif
"""


def _c_comment(text: str) -> str:
    return text.replace("*/", "* /")


def _units_header(dep: Deployable, integer: bool) -> tuple[str, str, str]:
    """(comment lines, #defines, declaration) describing which units each entry point takes and returns."""
    units = dep.units
    if units is None:
        return (" * Units: x and y are the task's own values (its training used no normalisation).\n", "", "")
    names = ", ".join(_c_comment(repr(n)) for n in channel_names(dep.task, dep.n_out))
    mean = ", ".join(f"{float(v):.9g}" for v in units.mean_in)
    sd = ", ".join(f"{float(v):.9g}" for v in units.sd_out)
    if integer:
        return (f" * Units: x and y are NORMALISED per channel ({names}), in Q15.16:\n"
                " *   x_q = round((x - mean) / sd * 65536), and y = y_q / 65536 * sd + mean in the series' units,\n"
                f" *   with the training part's mean = {{{mean}}} and sd = {{{sd}}}.\n", "", "")
    doc = (" * Units: ternq_step takes and returns NORMALISED values, (value - mean) / sd per channel;\n"
           " * ternq_step_units takes and returns the series' own units (the values of its data file):\n"
           " *   x_n = (x - TERNQ_MEAN_IN) * TERNQ_INV_SD_IN, ternq_step, y = y_n * TERNQ_SD_OUT + TERNQ_MEAN_OUT\n"
           f" *   per channel, in float32 (channels: {names}).\n")
    defs = "".join(f"\n#define TERNQ_{key} {{{', '.join(hex_float(v) for v in vals)}}}"
                   for key, vals in (("MEAN_IN", units.mean_in), ("INV_SD_IN", units.inv_sd_in),
                                     ("MEAN_OUT", units.mean_out), ("SD_OUT", units.sd_out)))
    decl = ("\n/* One time step in the series' own units: normalise x[TERNQ_N_IN], ternq_step, write the prediction\n"
            "   y[TERNQ_N_OUT] in the series' units. */\n"
            "void ternq_step_units(ternq_state *state, const float x[TERNQ_N_IN], float y[TERNQ_N_OUT]);\n")
    return doc, "\n#define TERNQ_HAS_UNITS 1" + defs, decl


_UNITS_STEP = """
static const float ternq_mean_in[TERNQ_N_IN] = TERNQ_MEAN_IN;
static const float ternq_inv_sd_in[TERNQ_N_IN] = TERNQ_INV_SD_IN;
static const float ternq_mean_out[TERNQ_N_OUT] = TERNQ_MEAN_OUT;
static const float ternq_sd_out[TERNQ_N_OUT] = TERNQ_SD_OUT;

/* The float32 operations of ternq.deploy.Units, in the same order (no fused multiply-add). */
void ternq_step_units(ternq_state *state, const float x[TERNQ_N_IN], float y[TERNQ_N_OUT])
{
    float z[TERNQ_N_IN];
    int i;
    for (i = 0; i < TERNQ_N_IN; ++i) z[i] = (x[i] - ternq_mean_in[i]) * ternq_inv_sd_in[i];
    ternq_step(state, z, y);
    for (i = 0; i < TERNQ_N_OUT; ++i) y[i] = y[i] * ternq_sd_out[i] + ternq_mean_out[i];
}
"""


_ACT = """/* exp(-s|x|) = 2^k (1 + m) by a Cephes polynomial with the exponent built from integer bits, then
   sigmoid (s = 1) or tanh (s = 2): the float32 operations of ternq.kernels.cell._act, in the same order. */
static float ternq_act(float x, float s)
{
    union { float f; uint32_t u; } w;
    float ax, y, v, fk, r, m, sc, e, q, t;
    w.f = x;
    w.u &= 0x7fffffffu; /* |x| */
    ax = w.f * s;
    if (ax > BIG) ax = BIG;
    y = -ax;
    v = y * LOG2E + 0.5f;
    fk = v; /* floor(v) without libm; v lies in [-116, 0.5] */
    if (v == v) {
        fk = (float)(int32_t)v;
        if (fk > v) fk = fk - 1.0f;
    }
    r = y - fk * C1 - fk * C2;
    m = (((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5) * (r * r) + r;
    w.u = (uint32_t)((int32_t)(fk >= KMIN ? fk : KMIN) + 127) << 23;
    sc = w.f;
    e = sc * m + sc;
    q = 1.0f / (1.0f + e);
    if (s == 1.0f) return x >= 0.0f ? q : e * q;
    t = -(sc * m + (sc - 1.0f)) * q;
    return x >= 0.0f ? t : -t;
}
"""


def _float_source(dep: Deployable, layout: str) -> str:
    I, H, O = dep.dims
    f32 = np.float32
    consts = {"LOG2E": cell.EXP_LOG2E, "C1": cell.EXP_C1, "C2": cell.EXP_C2, "BIG": 80.0, "KMIN": -126.0}
    consts.update({f"P{i}": c for i, c in enumerate(cell.EXP_POLY)})
    defs = "".join(f"#define {k} ({hex_float(f32(v))})\n" for k, v in consts.items())
    rows = _rows(dep)
    parts = [_array("float", "ternq_scale", dep.scales, fmt=hex_float),
             _array("float", "ternq_bias", dep.b, fmt=hex_float),
             _array("float", "ternq_decay", dep.decay(), fmt=hex_float),
             _array("float", "ternq_bias_out", dep.b_out, fmt=hex_float)]
    if multiplies(dep):
        array, row_fn = _packed_row_fn(dep, False, layout)
        parts.append(array)
    elif layout in ("packed", "packed-table"):
        array, row_fn = _sign_packed_row_fn(dep, integer=False, table=layout == "packed-table")
        parts.append(array)
    elif layout == "sparse":
        cols = [int(2 * j + (row[j] < 0)) for row in rows for j in np.flatnonzero(row)]
        start = np.cumsum([0] + [int(np.count_nonzero(row)) for row in rows])
        parts += [_array(_uint(int(start[-1])), "ternq_start", start),
                  _array(_uint(2 * (I + H)), "ternq_cols", cols, per_line=16)]
        row_fn = """/* acc (the bias) + v[j] * (+-s) over the row's non-zero trits, ascending j: the training forward's
   acc + v[j] * (s * trit) without its zero trits, which add nothing (see ternq/kernels/infer.py). */
static float ternq_row(int r, const float *v, float acc)
{
    const float w[2] = {ternq_scale[r], -ternq_scale[r]}; /* trit +1, -1 */
    unsigned k;
    for (k = ternq_start[r]; k < (unsigned)ternq_start[r + 1]; ++k) {
        const unsigned e = ternq_cols[k];
        acc = acc + v[e >> 1] * w[e & 1u];
    }
    return acc;
}
"""
    else:
        parts.append(_array("int8_t", "ternq_trits", np.concatenate(rows), per_line=24))
        row_fn = """/* acc (the bias) + v[j] * (s * trit) over every trit, ascending j: the training forward */
static float ternq_row(int r, const float *v, float acc)
{
    const float s = ternq_scale[r];
    const int n = r < 2 * TERNQ_HIDDEN ? TERNQ_N_IN + TERNQ_HIDDEN : TERNQ_HIDDEN;
    const int8_t *t = ternq_trits + (r < 2 * TERNQ_HIDDEN ? r * (TERNQ_N_IN + TERNQ_HIDDEN)
                                     : 2 * TERNQ_HIDDEN * TERNQ_N_IN + r * TERNQ_HIDDEN);
    int j;
    for (j = 0; j < n; ++j) acc = acc + v[j] * (s * (float)t[j]);
    return acc;
}
"""
    return f"""/* ternq_model.c: generated by ternq (format c, layout {layout}); see ternq_model.h. */
#include "ternq_model.h"

{defs}
{"".join(parts)}
{_ACT}
{row_fn}
void ternq_reset(ternq_state *state)
{{
    int i;
    for (i = 0; i < TERNQ_HIDDEN; ++i) state->h[i] = 0.0f;
}}

void ternq_step(ternq_state *state, const float x[TERNQ_N_IN], float y[TERNQ_N_OUT])
{{
    float z[TERNQ_N_IN + TERNQ_HIDDEN]; /* [x ; h_prev] */
    int i;
    for (i = 0; i < TERNQ_N_IN; ++i) z[i] = x[i];
    for (i = 0; i < TERNQ_HIDDEN; ++i) z[TERNQ_N_IN + i] = state->h[i];
    for (i = 0; i < TERNQ_HIDDEN; ++i) {{
        const float g = ternq_act(ternq_row(i, z, ternq_bias[i]), 1.0f);
        const float c = ternq_act(ternq_row(TERNQ_HIDDEN + i, z, ternq_bias[TERNQ_HIDDEN + i]), 2.0f);
        state->h[i] = (1.0f - g) * z[TERNQ_N_IN + i] * ternq_decay[i] + g * c;
    }}
    for (i = 0; i < TERNQ_N_OUT; ++i) y[i] = ternq_row(2 * TERNQ_HIDDEN + i, state->h, ternq_bias_out[i]);
}}
{_UNITS_STEP if dep.units is not None else ""}"""


def _int_source(dep: Deployable, layout: str) -> str:
    I, H, O = dep.dims
    im = IntModel.from_deployable(dep)
    rows = _rows(dep)
    m = np.concatenate([im.mW, im.mO])
    k = np.concatenate([im.kW, im.kO])
    parts = [_array("int32_t", "ternq_mult", m), _array("uint8_t", "ternq_shift", k, per_line=16),
             _array("int32_t", "ternq_bias", np.concatenate([im.bW, im.bO])),
             _array("int32_t", "ternq_decay", im.decay), _array("uint16_t", "ternq_table", im.table, per_line=12)]
    if multiplies(dep):
        array, sum_fn = _packed_row_fn(dep, True, layout)
        parts.append(array)
    elif layout in ("packed", "packed-table"):
        array, sum_fn = _sign_packed_row_fn(dep, integer=True, table=layout == "packed-table")
        parts.append(array)
    elif layout == "sparse":
        cols, start, mid = [], [0], []
        for row in rows:
            cols += [int(j) for j in np.flatnonzero(row > 0)]
            mid.append(len(cols))
            cols += [int(j) for j in np.flatnonzero(row < 0)]
            start.append(len(cols))
        parts += [_array(_uint(start[-1]), "ternq_start", start), _array(_uint(start[-1]), "ternq_mid", mid),
                  _array(_uint(I + H), "ternq_cols", cols, per_line=16)]
        sum_fn = """/* sum of v[j] over the row's +1 trits minus over its -1 trits (exact: order does not matter). */
static int32_t ternq_sum(int r, const int32_t *v)
{
    int32_t acc = 0;
    unsigned k;
    for (k = ternq_start[r]; k < (unsigned)ternq_mid[r]; ++k) acc += v[ternq_cols[k]];
    for (; k < (unsigned)ternq_start[r + 1]; ++k) acc -= v[ternq_cols[k]];
    return acc;
}
"""
    else:
        parts.append(_array("int8_t", "ternq_trits", np.concatenate(rows), per_line=24))
        sum_fn = """/* sum of trit * v[j] over every trit of the row. */
static int32_t ternq_sum(int r, const int32_t *v)
{
    const int n = r < 2 * TERNQ_HIDDEN ? TERNQ_N_IN + TERNQ_HIDDEN : TERNQ_HIDDEN;
    const int8_t *t = ternq_trits + (r < 2 * TERNQ_HIDDEN ? r * (TERNQ_N_IN + TERNQ_HIDDEN)
                                     : 2 * TERNQ_HIDDEN * TERNQ_N_IN + r * TERNQ_HIDDEN);
    int32_t acc = 0;
    int j;
    for (j = 0; j < n; ++j) acc += (int32_t)t[j] * v[j];
    return acc;
}
"""
    return f"""/* ternq_model.c: generated by ternq (format c-int, layout {layout}); see ternq_model.h.
 * Integer only. Formats: x, h, pre-activations, gate, candidate, biases and y in Q15.16 (int32);
 * decay in Q1.30; row scale r = ternq_mult[r] * 2^-ternq_shift[r]; products in int64, brought back by
 * rounding right shifts; sigmoid by linear interpolation in a table of 2^16 sigmoid(-k / 32);
 * tanh(x) = 2 sigmoid(2x) - 1. The arithmetic of ternq.kernels.infer_int, operation for operation. */
#include "ternq_model.h"

/* the rounding shifts below need an arithmetic right shift of negative values (every C99 compiler in use) */
typedef char ternq_arithmetic_shift_check[((int64_t)-3 >> 1) == -2 ? 1 : -1];

#define ONE ((int64_t){ONE})
#define PRE_MAX ((int64_t){PRE_MAX})
#define SIG_SAT {SIG_SAT}
#define TANH_SAT {TANH_SAT}

{"".join(parts)}
static int64_t ternq_rshr(int64_t v, int k)
{{
    return (v + ((int64_t)1 << (k - 1))) >> k;
}}

/* 2^16 sigmoid(-a / 2^16), 0 <= a < SIG_SAT: linear interpolation between table entries 2^-5 apart */
static int64_t ternq_lo(int64_t a)
{{
    const int64_t k = a >> {TABLE_STEP}, f = a & {(1 << TABLE_STEP) - 1};
    const int64_t t0 = ternq_table[k], t1 = ternq_table[k + 1];
    return t0 + (((t1 - t0) * f + {1 << (TABLE_STEP - 1)}) >> {TABLE_STEP});
}}

static int64_t ternq_sigmoid(int64_t p)
{{
    const int64_t a = p < 0 ? -p : p;
    const int64_t lo = a >= SIG_SAT ? 0 : ternq_lo(a);
    return p >= 0 ? ONE - lo : lo;
}}

static int64_t ternq_tanh(int64_t p)
{{
    const int64_t a = p < 0 ? -p : p;
    const int64_t lo = a >= TANH_SAT ? 0 : ternq_lo(a << 1);
    const int64_t th = ONE - 2 * lo;
    return p >= 0 ? th : -th;
}}

{sum_fn}
/* bias + scale * sum, clamped */
static int64_t ternq_pre(int r, const int32_t *v)
{{
    const int64_t p = ternq_bias[r] + ternq_rshr((int64_t)ternq_sum(r, v) * ternq_mult[r], ternq_shift[r]);
    return p > PRE_MAX ? PRE_MAX : (p < -PRE_MAX ? -PRE_MAX : p);
}}

void ternq_reset(ternq_state *state)
{{
    int i;
    for (i = 0; i < TERNQ_HIDDEN; ++i) state->h[i] = 0;
}}

void ternq_step(ternq_state *state, const int32_t x[TERNQ_N_IN], int32_t y[TERNQ_N_OUT])
{{
    int32_t z[TERNQ_N_IN + TERNQ_HIDDEN]; /* [clamp(x) ; h_prev] */
    int i;
    for (i = 0; i < TERNQ_N_IN; ++i)
        z[i] = x[i] > TERNQ_X_MAX ? TERNQ_X_MAX : (x[i] < -TERNQ_X_MAX ? -TERNQ_X_MAX : x[i]);
    for (i = 0; i < TERNQ_HIDDEN; ++i) z[TERNQ_N_IN + i] = state->h[i];
    for (i = 0; i < TERNQ_HIDDEN; ++i) {{
        const int64_t g = ternq_sigmoid(ternq_pre(i, z));
        const int64_t c = ternq_tanh(ternq_pre(TERNQ_HIDDEN + i, z));
        const int64_t a = ternq_rshr(ternq_rshr((ONE - g) * z[TERNQ_N_IN + i], {FRAC}) * ternq_decay[i], {DECAY_FRAC});
        const int64_t h = a + ternq_rshr(g * c, {FRAC});
        state->h[i] = (int32_t)(h > ONE ? ONE : (h < -ONE ? -ONE : h));
    }}
    for (i = 0; i < TERNQ_N_OUT; ++i) {{
        const int r = 2 * TERNQ_HIDDEN + i;
        const int64_t v = ternq_bias[r] + ternq_rshr((int64_t)ternq_sum(r, state->h) * ternq_mult[r], ternq_shift[r]);
        y[i] = (int32_t)(v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : v));
    }}
}}
"""


def golden_h(fmt: str, X: np.ndarray, Y: np.ndarray, units: bool = False, normalised: bool = False) -> str:
    """``golden.h``: the inputs X (N, T, I) and the expected outputs Y (N, T, O) of the exported model;
    with ``units``, both in the series' own units (``main.c`` then runs ``ternq_step_units``); ``normalised``
    says that the model's own inputs are normalised values.

    Float: inputs as exact hexadecimal literals, outputs as their float32 bit patterns; integer: int32.
    """
    N, T = X.shape[:2]
    if fmt == "c":
        xs = _array("float", "ternq_golden_x", X.astype(np.float32), fmt=hex_float)
        bits = np.ascontiguousarray(Y, np.float32).view(np.uint32)
        ys = _array("uint32_t", "ternq_golden_y", bits, fmt=lambda v: f"0x{int(v):08x}u")
    else:
        xs = _array("int32_t", "ternq_golden_x", X, fmt=lambda v: f"{int(v)}")
        ys = _array("int32_t", "ternq_golden_y", Y, fmt=lambda v: f"{int(v)}")
    cmd = "ternq predict --int" if fmt != "c" else "ternq predict"
    what = "held-out input sequences" + (" (normalised)" if normalised else "")
    flag = ""
    if units:
        cmd, what = "ternq predict --input", "input values in the series' own units"
        flag = "\n#define TERNQ_GOLDEN_UNITS 1"
    return f"""/* golden.h: {what} and the outputs '{cmd}' computes for them
 * ({N} sequences x {T} steps, each from a zero state). Generated by ternq. */
#ifndef TERNQ_GOLDEN_H
#define TERNQ_GOLDEN_H

#include <stdint.h>
{flag}
#define TERNQ_GOLDEN_N {N}
#define TERNQ_GOLDEN_T {T}

{xs}
{ys}
#endif
"""


def main_c(fmt: str) -> str:
    """``main.c``: run the golden inputs, print every output, exit 0 only if all equal golden.h bit for bit."""
    integer = fmt == "c-int"
    ty = "int32_t" if integer else "float"
    printf = 'printf("%ld\\n", (long)y[o]);' if integer else 'printf("%.9g\\n", (double)y[o]);'
    same = "(uint32_t)y[o] == (uint32_t)want" if integer else "bits.u == want"
    get = ("const int32_t want = ternq_golden_y[k];" if integer else
           "const uint32_t want = ternq_golden_y[k];\n                bits.f = y[o];")
    decl = "" if integer else "    union { float f; uint32_t u; } bits;\n"
    return f"""/* main.c: run golden.h through the model, print every output (one per line: sequences, steps, channels
 * in order), exit 0 only if every output equals the expected one bit for bit. Generated by ternq. */
#include <stdio.h>
#include "ternq_model.h"
#include "golden.h"

int main(void)
{{
    ternq_state state;
    {ty} y[TERNQ_N_OUT];
{decl}    long n, t, o, k = 0, bad = 0;
    for (n = 0; n < TERNQ_GOLDEN_N; ++n) {{
        ternq_reset(&state);
        for (t = 0; t < TERNQ_GOLDEN_T; ++t) {{
#ifdef TERNQ_GOLDEN_UNITS
            ternq_step_units(&state, &ternq_golden_x[(n * TERNQ_GOLDEN_T + t) * TERNQ_N_IN], y);
#else
            ternq_step(&state, &ternq_golden_x[(n * TERNQ_GOLDEN_T + t) * TERNQ_N_IN], y);
#endif
            for (o = 0; o < TERNQ_N_OUT; ++o, ++k) {{
                {get}
                {printf}
                if (!({same})) ++bad;
            }}
        }}
    }}
    if (bad) {{
        fprintf(stderr, "ternq: %ld of %ld outputs differ from golden.h\\n", bad, k);
        return 1;
    }}
    return 0;
}}
"""


def model_sources(dep: Deployable, fmt: str = "c", layout: str = "sparse", source: str = "a model") -> dict[str, str]:
    """``ternq_model.h`` and ``ternq_model.c`` for ``dep`` (see the module docstring for fmt and layout)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout not in layouts(dep):
        why = "are multiplied" if multiplies(dep) else "are not in base 3"
        raise ValueError(f"{dep.weight_format} weights {why}: the layout is "
                         f"{' or '.join(layouts(dep))}, not {layout}")
    body = _float_source(dep, layout) if fmt == "c" else _int_source(dep, layout)
    return {"ternq_model.h": _header(dep, fmt, layout, source), "ternq_model.c": body}


def golden_outputs(dep: Deployable, fmt: str, X: np.ndarray, units: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(inputs as the C sees them, expected outputs): float32 from ``dep.predict``, or Q16 int32 from the
    integer model; with ``units``, X and the outputs in the series' own units (``dep.predict_units``)."""
    if units:
        if fmt != "c":
            raise ValueError("inputs in the series' own units need --format c (the integer library takes Q15.16)")
        X = np.ascontiguousarray(X, np.float32)
        return X, dep.predict_units(X)
    if fmt == "c":
        X = np.ascontiguousarray(X, np.float32)
        if not np.all(np.isfinite(X)):
            raise ValueError("golden inputs must be finite")
        return X, dep.predict(X)[0]
    im = IntModel.from_deployable(dep)
    Xq = im.quantize_inputs(X)
    return Xq, im.predict_q(Xq)[0]


def sources(dep: Deployable, X: np.ndarray, fmt: str = "c", layout: str = "sparse",
            source: str = "a model", units: bool = False) -> dict[str, str]:
    """Every file of an export (name -> text): the library, ``golden.h`` for inputs X (N, T, I) (in the series'
    own units with ``units``), ``main.c``."""
    files = model_sources(dep, fmt, layout, source)
    units = units and dep.units is not None  # without normalisation the own units are the model's
    Xg, Yg = golden_outputs(dep, fmt, X, units)
    files["golden.h"] = golden_h(fmt, Xg, Yg, units, dep.units is not None)
    files["main.c"] = main_c(fmt)
    return files


def csv_lines(ys: np.ndarray) -> str:
    """The harness's output for predictions ys (N, T, O): ``%.9g`` per float32 value (``%d`` for integers),
    one per line, sequences, steps and channels in order."""
    flat = np.ascontiguousarray(ys).ravel()
    if np.issubdtype(flat.dtype, np.integer):
        return "".join(f"{int(v)}\n" for v in flat)
    return "".join(f"{float(v):.9g}\n" for v in flat.astype(np.float32))
