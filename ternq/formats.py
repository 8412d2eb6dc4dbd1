"""Weight formats: what a student's weight rows are made of, and what they cost on a device.

Every format stores a weight as an integer *level* times one float32 scale per row
(the 2H rows of W, then the O rows of W_out); biases, tau and the scales stay float32.

- ``ternary``: levels {-1, 0, +1}, packed five per byte (base 3): 1.6 bits a weight.
- ``binary``: levels {-1, +1} (no zero), packed eight per byte.
- ``int2`` .. ``int8``: symmetric signed integers, levels -qmax..qmax with qmax = 2^(bits-1) - 1,
  packed 8 // bits per byte (int3, int5, int6 and int7 take a byte's worth of whole weights: 2, 1, 1, 1).
  Symmetric levels keep zero exact and the rows' sign flip free; int2's levels are ternary's, in 2 bits.

A format's kernel code is its ``qmax``: 0 for binary, 1 for ternary (and int2), 2^(bits-1) - 1 for intN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINARY = 0  # the qmax code of binary: sign levels, no zero


@dataclass(frozen=True)
class Format:
    """One weight format.

    name : str
        The setting's value (``ternary``, ``binary``, ``int2`` .. ``int8``).
    qmax : int
        The largest level magnitude; :data:`BINARY` (0) for binary's {-1, +1}.
    per_byte : int
        Weights in one byte of the packed file.
    """

    name: str
    qmax: int
    per_byte: int

    @property
    def bits(self) -> float:
        """Storage bits per weight as packed (ternary 1.6)."""
        return 8.0 / self.per_byte

    @property
    def n_levels(self) -> int:
        return 2 if self.qmax == BINARY else 2 * self.qmax + 1

    def packed_bytes(self, n_weights: int) -> int:
        """Bytes that ``n_weights`` levels take packed."""
        return -(-n_weights // self.per_byte)


def _formats() -> dict[str, Format]:
    out = {"ternary": Format("ternary", 1, 5), "binary": Format("binary", BINARY, 8)}
    for bits in range(2, 9):
        out[f"int{bits}"] = Format(f"int{bits}", 2 ** (bits - 1) - 1, 8 // bits)
    return out


FORMATS: dict[str, Format] = _formats()


def get(name: str) -> Format:
    """The format called ``name``; ValueError naming the choices otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown weight format {name!r}: one of {', '.join(FORMATS)}") from None


def weight_bytes(fmt: Format, n_in: int, hidden: int, n_out: int) -> int:
    """Bytes of a model's weights on a device: W (2H x (I+H)) and W_out (O x H) packed as one stream, plus one
    float32 scale per row. Biases and tau (float32, the same in every format) are not counted."""
    n = 2 * hidden * (n_in + hidden) + n_out * hidden
    return fmt.packed_bytes(n) + 4 * (2 * hidden + n_out)


# Mixed formats: each of the student's three matrices (W's first H rows, the gate's; its next H rows, the
# candidate's; W_out) may take its own format. A matrix's setting "" takes the model's weight_format.
MATRICES = ("gate", "cand", "out")


def matrix_formats(weight_format: str, gate: str = "", cand: str = "", out: str = "") -> tuple[Format, Format, Format]:
    """The formats of the gate, candidate and output matrices ("" takes ``weight_format``)."""
    return tuple(get(m or weight_format) for m in (gate, cand, out))  # type: ignore[return-value]


def label(weight_format: str, gate: str = "", cand: str = "", out: str = "") -> str:
    """The name of a model's formats: ``weight_format`` alone, or with ``+matrix:format`` for each matrix of
    another format (``ternary+cand:int8``); :func:`parse_label` reads it back."""
    base = get(weight_format).name
    rest = [f"{m}:{f.name}" for m, f in zip(MATRICES, matrix_formats(base, gate, cand, out), strict=True)
            if f.name != base]
    return "+".join([base, *rest])


def slug(text: str) -> str:
    """A :func:`label` as a file or folder name part (``ternary+cand:int8`` -> ``ternary-cand-int8``)."""
    return text.replace("+", "-").replace(":", "-")


def parse_label(text: str) -> dict[str, str]:
    """The settings (``weight_format`` and ``weight_format_<matrix>``) of a :func:`label`; ValueError naming what
    is wrong otherwise."""
    base, *rest = text.split("+")
    out = {"weight_format": get(base).name}
    for part in rest:
        m, sep, f = part.partition(":")
        if not sep or m not in MATRICES:
            raise ValueError(f"{text!r}: a mixed format is <format>+<matrix>:<format>, matrix one of "
                             f"{', '.join(MATRICES)}; not {part!r}")
        key = f"weight_format_{m}"
        if key in out:
            raise ValueError(f"{text!r}: matrix {m} is given twice")
        out[key] = get(f).name
    return out


def row_qmax(fmts: tuple[Format, Format, Format], hidden: int, n_out: int) -> np.ndarray:
    """(2H + O,) int64: each row's format code (the kernels' ``qmax``), gate rows, candidate rows, output rows."""
    return np.repeat(np.array([f.qmax for f in fmts], np.int64), [hidden, hidden, n_out])


def weight_bytes_mixed(fmts: tuple[Format, Format, Format], n_in: int, hidden: int, n_out: int) -> int:
    """:func:`weight_bytes` with each matrix of its own format: the matrices of one format packed as one stream,
    plus one float32 scale per row (so that one format for all is :func:`weight_bytes`)."""
    counts: dict[Format, int] = {}
    for f, n in zip(fmts, (hidden * (n_in + hidden), hidden * (n_in + hidden), n_out * hidden), strict=True):
        counts[f] = counts.get(f, 0) + n
    return sum(f.packed_bytes(n) for f, n in counts.items()) + 4 * (2 * hidden + n_out)
