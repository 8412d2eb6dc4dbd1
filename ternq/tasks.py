"""Tasks: where the training and held-out sequences come from.

A task hands out float32 arrays, batch-major: inputs X (..., T, n_in) and
targets Y (..., T, n_out). ``batches`` draws the sequences of every epoch at
once from a Generator, so the compiled training loop never calls back into
Python; ``eval_set`` is fixed (no randomness) and disjoint from training draws.
"""

from __future__ import annotations

import numpy as np

TWO_PI = 2.0 * np.pi


class Task:
    """Base class. Subclasses set ``name``, ``n_in``, ``n_out`` and the two sets."""

    name = "task"
    n_in = 1
    n_out = 1
    steps = 50  # training sequence length

    def batches(self, rng: np.random.Generator, epochs: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of every epoch: arrays (epochs, batch, steps, n_in / n_out)."""
        raise NotImplementedError

    def eval_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out evaluation sequences: arrays (N, T, n_in / n_out)."""
        raise NotImplementedError

    def reference_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The C program's single evaluation sequence, where the task has one."""
        return None

    def describe(self) -> dict:
        return {"name": self.name, "n_in": self.n_in, "n_out": self.n_out, "steps": self.steps}


class Sine(Task):
    """Predict sin(phi + (t+1) dt) from sin(phi + t dt); phi uniform in [0, 2 pi).

    Held out: ``n_eval`` phases on a fixed grid (offset by half a cell), 100 steps.
    """

    name = "sine"

    def __init__(self, steps: int = 50, dt: float = 0.1, n_eval: int = 64, eval_steps: int = 100):
        self.steps, self.dt, self.n_eval, self.eval_steps = steps, dt, n_eval, eval_steps

    def _seqs(self, phases: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(steps + 1) * self.dt
        s = np.sin(phases[..., None] + t).astype(np.float32)
        return np.ascontiguousarray(s[..., :-1, None]), np.ascontiguousarray(s[..., 1:, None])

    def batches(self, rng, epochs, batch):
        return self._seqs(rng.uniform(0.0, TWO_PI, size=(epochs, batch)), self.steps)

    def eval_set(self):
        phases = TWO_PI * (np.arange(self.n_eval) + 0.5) / self.n_eval
        return self._seqs(phases, self.eval_steps)

    def reference_set(self):
        return self._seqs(np.zeros(1), 100)

    def describe(self):
        return {**super().describe(), "dt": self.dt, "n_eval": self.n_eval, "eval_steps": self.eval_steps}


TASKS: dict[str, type[Task]] = {"sine": Sine}


def get_task(name: str, **kwargs) -> Task:
    """Build the task called ``name`` (one of ``TASKS``)."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}") from None
    return cls(**kwargs)
