"""Named, independent random streams derived from one seed.

Every consumer of randomness asks for its own stream by name, so adding a new
consumer never shifts the numbers another one sees, and results do not depend
on the order in which trainings run (serial or parallel).
"""

import zlib

import numpy as np


def stream(seed: int, *names: str | int) -> np.random.Generator:
    """A numpy Generator for ``seed`` and the stream path ``names``.

    >>> stream(0, "teacher-init", 16).random() == stream(0, "teacher-init", 16).random()
    True
    """
    key = tuple(n if isinstance(n, int) else zlib.crc32(str(n).encode()) for n in names)
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=key))
