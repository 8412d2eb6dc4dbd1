"""Generated signals: the sine tasks, whose training and held-out windows come from a formula."""

from __future__ import annotations

import math

import numpy as np

from .base import TWO_PI, Task


class Sine(Task):
    """Predict sin(phi + (t+1) dt) from sin(phi + t dt); phi uniform in [0, 2 pi).

    Held out: ``n_eval`` phases on a fixed grid (offset by half a cell), 100 steps.
    """

    name = "sine"

    def __init__(self, steps: int = 50, dt: float = 0.1, n_eval: int = 64, eval_steps: int = 100):
        self.steps, self.dt, self.n_eval, self.eval_steps = steps, dt, n_eval, eval_steps

    def signal(self, phases: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of ``steps`` steps from the phases ``phases`` (any shape S): (*S, steps, 1)."""
        t = np.arange(steps + 1) * self.dt
        s = np.sin(phases[..., None] + t).astype(np.float32)
        return np.ascontiguousarray(s[..., :-1, None]), np.ascontiguousarray(s[..., 1:, None])

    @property
    def period(self) -> int:
        """2 pi / dt samples, rounded: the lag of the seasonal naive baseline (63 at dt = 0.1)."""
        return max(1, round(TWO_PI / self.dt))

    def eval_phases(self) -> np.ndarray:
        return TWO_PI * (np.arange(self.n_eval) + 0.5) / self.n_eval

    def draw(self, rng, epochs, batch):
        return rng.uniform(0.0, TWO_PI, size=(epochs, batch))

    def sequences(self, draws):
        return self.signal(draws, self.steps)

    def eval_set(self):
        return self.signal(self.eval_phases(), self.eval_steps)

    def reference_set(self):
        return self.signal(np.zeros(1), 100)

    def held_out_past(self, before):
        return self.signal(self.eval_phases() - before * self.dt, before)[0]

    def naive_scale(self):
        # the exact expectation of |sin(phi + dt) - sin(phi)| over a uniform phase
        return np.array([4.0 * math.sin(self.dt / 2.0) / math.pi])

    def describe(self):
        return {**super().describe(), "dt": self.dt, "n_eval": self.n_eval, "eval_steps": self.eval_steps}


class MultiSine(Task):
    """Predict the next value of (sin t + sin(sqrt2 t) + sin(pi t)) / sqrt(3/2), sampled every ``dt``.

    The three frequencies are incommensurate, so the signal never repeats. The
    division makes its long-run mean square 1. Training windows start at a time
    uniform in ``[0, train_span)``; the ``n_eval`` held-out windows start on a
    fixed grid (offset by half a cell) in ``[eval_from, eval_from + train_span)``,
    beyond the end of any training window.
    """

    name = "multisine"
    FREQS = (1.0, math.sqrt(2.0), math.pi)
    NORM = math.sqrt(1.5)

    def __init__(self, steps: int = 50, dt: float = 0.1, n_eval: int = 64, eval_steps: int = 100,
                 train_span: float = 1000.0, eval_from: float = 2000.0):
        if eval_from < train_span + (steps + 1) * dt:
            raise ValueError("multisine: eval_from must lie beyond the last training sample")
        self.steps, self.dt, self.n_eval, self.eval_steps = steps, dt, n_eval, eval_steps
        self.train_span, self.eval_from = float(train_span), float(eval_from)

    def signal(self, starts: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of ``steps`` steps from the times ``starts`` (any shape S): (*S, steps, 1)."""
        t = starts[..., None] + np.arange(steps + 1) * self.dt
        s = sum(np.sin(f * t) for f in self.FREQS) / self.NORM
        s = s.astype(np.float32)
        return np.ascontiguousarray(s[..., :-1, None]), np.ascontiguousarray(s[..., 1:, None])

    def draw(self, rng, epochs, batch):
        return rng.uniform(0.0, self.train_span, size=(epochs, batch))

    def sequences(self, draws):
        return self.signal(draws, self.steps)

    def eval_starts(self) -> np.ndarray:
        return self.eval_from + self.train_span * (np.arange(self.n_eval) + 0.5) / self.n_eval

    def eval_set(self):
        return self.signal(self.eval_starts(), self.eval_steps)

    def held_out_past(self, before):
        return self.signal(self.eval_starts() - before * self.dt, before)[0]

    def naive_scale(self):
        # the signal sampled over the whole training span
        t = np.arange(int(self.train_span / self.dt) + self.steps + 1) * self.dt
        x = sum(np.sin(f * t) for f in self.FREQS) / self.NORM
        return np.array([np.mean(np.abs(np.diff(x)))])

    def describe(self):
        return {**super().describe(), "dt": self.dt, "n_eval": self.n_eval, "eval_steps": self.eval_steps,
                "train_starts": [0.0, self.train_span],
                "eval_starts": [self.eval_from, self.eval_from + self.train_span],
                "normalisation": "sum / sqrt(1.5)"}
