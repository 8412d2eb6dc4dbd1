"""Two-level designs: full and regular fractional factorials, their alias structure, and effect estimates.

Factors are named by letters A, B, C, ... (I is skipped, as in the textbooks, so
the tenth factor is K). Runs are in standard (Yates) order of the basic
factors, the first varying fastest: for the notes' 2^3 that is config
1 + a + 2 b + 4 c. A fraction 2^(k-p) runs the full factorial of the first
k - p factors and sets each other factor by a generator, e.g. ``E=ABC``.
An effect is the mean response at its + level minus the mean at its - level:
its contrast over the runs divided by N/2. Effects whose columns coincide are
aliased: the design estimates only their sum, named by its shortest member.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

LETTERS = "ABCDEFGHJK"  # no I (it is the identity of the defining relation)
MAX_FACTORS = len(LETTERS)

# Minimum-aberration regular fractions (Montgomery, Design and Analysis of Experiments, table 8.14;
# Box, Hunter & Hunter table 6.22), keyed by (k, p). Resolution IV or better except where marked III.
GENERATORS: dict[tuple[int, int], tuple[str, ...]] = {
    (3, 1): ("C=AB",),  # III
    (4, 1): ("D=ABC",),
    (5, 1): ("E=ABCD",),
    (5, 2): ("D=AB", "E=AC"),  # III
    (6, 1): ("F=ABCDE",),
    (6, 2): ("E=ABC", "F=BCD"),
    (6, 3): ("D=AB", "E=AC", "F=BC"),  # III
    (7, 1): ("G=ABCDEF",),
    (7, 2): ("F=ABCD", "G=ABDE"),
    (7, 3): ("E=ABC", "F=BCD", "G=ACD"),
    (7, 4): ("D=AB", "E=AC", "F=BC", "G=ABC"),  # III
    (8, 2): ("G=ABCD", "H=ABEF"),
    (8, 3): ("F=ABC", "G=ABD", "H=BCDE"),
    (8, 4): ("E=BCD", "F=ACD", "G=ABC", "H=ABD"),
    (9, 2): ("H=ACDFG", "J=BCEFG"),
    (9, 3): ("G=ABCD", "H=ACEF", "J=CDEF"),
    (9, 4): ("F=BCDE", "G=ACDE", "H=ABDE", "J=ABCE"),
    (10, 3): ("H=ABCG", "J=ACDE", "K=ACDF"),
    (10, 4): ("G=BCDF", "H=ACDF", "J=ABDE", "K=ABCE"),
    (10, 5): ("F=ABCD", "G=ABCE", "H=ABDE", "J=ACDE", "K=BCDE"),
}
FULL_MAX = 5  # up to this many factors the design is the full 2^k


class DesignError(ValueError):
    """A design that cannot be built (too many factors for the runs, a bad generator)."""


def word(letters: str, k: int) -> int:
    """An effect (a product of factors) as a bit mask over the first ``k`` factors."""
    mask = 0
    for ch in letters:
        i = LETTERS.find(ch)
        if i < 0 or i >= k:
            raise DesignError(f"generator letter {ch!r} is not one of the {k} factors {LETTERS[:k]}")
        mask ^= 1 << i
    return mask


def name(mask: int) -> str:
    """The letters of an effect's bit mask, e.g. 0b101 -> 'AC'."""
    return "".join(LETTERS[i] for i in range(MAX_FACTORS) if mask >> i & 1)


def _order(mask: int) -> int:
    return bin(mask).count("1")


def _sort_key(mask: int) -> tuple[int, str]:
    return _order(mask), name(mask)


@dataclass(frozen=True)
class Design:
    """A regular two-level design of ``k`` factors in ``runs`` runs.

    Attributes
    ----------
    k : int
        Number of factors (letters A, B, ...).
    generators : tuple of str
        ``X=ABC`` for each factor set by the others (empty: the full factorial).
    """

    k: int
    generators: tuple[str, ...] = ()

    @property
    def p(self) -> int:
        return len(self.generators)

    @property
    def runs(self) -> int:
        return 2 ** (self.k - self.p)

    def _gen_words(self) -> list[int]:
        words = []
        for g in self.generators:
            m = re.fullmatch(r"\s*([A-Z])\s*=\s*([A-Z]+)\s*", g)
            if not m:
                raise DesignError(f"generator {g!r} is not of the form E=ABC")
            words.append(word(m.group(1), self.k) ^ word(m.group(2), self.k))
        return words

    def validate(self) -> None:
        """Raise :class:`DesignError` when the generators do not define a design of ``k`` factors."""
        if not 1 <= self.k <= MAX_FACTORS:
            raise DesignError(f"{self.k} factors: a design has 1 to {MAX_FACTORS}")
        base = self.k - self.p
        if base < 1:
            raise DesignError(f"{self.p} generators for {self.k} factors leave no basic factor")
        targets = []
        for g in self.generators:
            m = re.fullmatch(r"\s*([A-Z])\s*=\s*([A-Z]+)\s*", g)
            if not m:
                raise DesignError(f"generator {g!r} is not of the form E=ABC")
            target, rhs = m.group(1), m.group(2)
            if LETTERS.find(target) < base or LETTERS.find(target) >= self.k:
                raise DesignError(f"generator {g!r}: the generated factors are {LETTERS[base:self.k]}")
            if any(LETTERS.find(ch) >= base for ch in rhs) or len(set(rhs)) != len(rhs) or len(rhs) < 2:
                raise DesignError(f"generator {g!r}: the right side is a product of two or more of "
                                  f"the basic factors {LETTERS[:base]}")
            targets.append(target)
        if len(set(targets)) != len(targets):
            raise DesignError("two generators set the same factor")

    def matrix(self) -> np.ndarray:
        """The runs x factors matrix of levels -1/+1 (int), standard order of the basic factors."""
        base = self.k - self.p
        n = np.arange(2**base)
        cols = [((n >> i) & 1) * 2 - 1 for i in range(base)]
        out = np.empty((2**base, self.k), dtype=np.int64)
        for i, c in enumerate(cols):
            out[:, i] = c
        for g in self.generators:
            target, rhs = g.replace(" ", "").split("=")
            col = np.ones(2**base, dtype=np.int64)
            for ch in rhs:
                col = col * out[:, LETTERS.index(ch)]
            out[:, LETTERS.index(target)] = col
        return out

    def defining_relation(self) -> list[int]:
        """Every word of the defining relation I = ... (bit masks, without I itself)."""
        gens = self._gen_words()
        words = set()
        for r in range(1, len(gens) + 1):
            for combo in itertools.combinations(gens, r):
                w = 0
                for g in combo:
                    w ^= g
                words.add(w)
        return sorted(words, key=_sort_key)

    @property
    def resolution(self) -> int | None:
        """Length of the shortest word of the defining relation (None for a full factorial)."""
        words = self.defining_relation()
        return min(map(_order, words)) if words else None

    def aliases(self, mask: int) -> list[int]:
        """The effects aliased with ``mask`` (itself first), shortest first."""
        return sorted({mask, *(mask ^ w for w in self.defining_relation())} - {0}, key=_sort_key)

    def column(self, mask: int) -> np.ndarray:
        """The -1/+1 column of an effect."""
        m = self.matrix()
        col = np.ones(self.runs, dtype=np.int64)
        for i in range(self.k):
            if mask >> i & 1:
                col = col * m[:, i]
        return col

    def estimable(self, max_order: int = 2) -> list[tuple[int, list[int]]]:
        """The alias chains holding a main effect or an interaction of order <= ``max_order``.

        Returns (effect, aliases) pairs in the order of the effects (A, B, ...,
        AB, AC, ...): the effect names the chain (its shortest member, so a main
        effect names any chain it is in), ``aliases`` are the chain's other
        members of order <= 3. A chain appears once, under its first effect.
        """
        out, seen = [], set()
        for order in range(1, max_order + 1):
            for combo in itertools.combinations(range(self.k), order):
                mask = sum(1 << i for i in combo)
                chain = self.aliases(mask)
                if chain[0] in seen or chain[0] != mask:
                    continue
                seen.add(mask)
                out.append((mask, [a for a in chain[1:] if _order(a) <= 3]))
        return out

    def effects(self, y: np.ndarray, max_order: int = 2) -> dict[str, float]:
        """Effect estimates of the responses ``y`` (one per run, design order), by chain name."""
        y = np.asarray(y, float)
        if y.shape != (self.runs,):
            raise ValueError(f"need the {self.runs} responses of the design, got shape {y.shape}")
        half = self.runs // 2
        return {name(mask): float(self.column(mask) @ y / half) for mask, _ in self.estimable(max_order)}


def choose(k: int, runs: int | None = None, generators: tuple[str, ...] = ()) -> Design:
    """The design for ``k`` factors: given generators; else the run count asked for; else the full 2^k up
    to :data:`FULL_MAX` factors and the smallest tabled fraction of resolution IV or better above.

    Raises
    ------
    DesignError
        Too many factors for the runs, a run count that is not a power of two, no tabled design.
    """
    if not 1 <= k <= MAX_FACTORS:
        raise DesignError(f"{k} factors: ternq designs have 1 to {MAX_FACTORS} factors")
    if generators:
        d = Design(k, tuple(generators))
        d.validate()
        if runs is not None and runs != d.runs:
            raise DesignError(f"{len(generators)} generators for {k} factors give {d.runs} runs, not {runs}")
        return d
    if runs is not None:
        if runs < 2 or runs & (runs - 1):
            raise DesignError(f"runs: {runs} is not a power of two (4, 8, 16, ...)")
        if runs > 2**k:
            raise DesignError(f"runs: {runs} is more than the {2**k} of the full factorial of {k} factors")
        if runs <= k:
            raise DesignError(f"runs: {k} factors need more than {runs} runs (at least {k + 1})")
        p = k - (runs.bit_length() - 1)
        if p == 0:
            return Design(k)
        if (k, p) not in GENERATORS:
            raise DesignError(f"no tabled 2^({k}-{p}) design: ask for more runs")
        return Design(k, GENERATORS[k, p])
    if k <= FULL_MAX:
        return Design(k)
    p = max(p for (kk, p), gens in GENERATORS.items() if kk == k and Design(k, gens).resolution >= 4)
    return Design(k, GENERATORS[k, p])
