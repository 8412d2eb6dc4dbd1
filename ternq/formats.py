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
