"""JSON that numpy values and non-finite floats cannot break."""

import json

import numpy as np


def clean(x):
    """JSON-safe copy: numpy scalars and arrays to Python, NaN and inf to None."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`clean` (obj)."""
    return json.dumps(clean(obj), **kwargs)
