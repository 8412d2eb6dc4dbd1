"""The task protocol: what every task hands the training loop and the forecast evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..rng import stream

TWO_PI = 2.0 * np.pi


class Task:
    """Base class. Subclasses set ``name``, ``n_in``, ``n_out`` and the two sets.

    Arrays are float32, batch-major: inputs X (..., T, n_in) and targets Y
    (..., T, n_out), where target row t is input row t + 1 (the task is to
    predict the next row).
    """

    name = "task"
    n_in = 1
    n_out = 1
    steps = 50  # training sequence length
    period: int | None = None  # seasonal period in samples, where the task has one (seasonal naive baseline)
    lyapunov_per_step: float | None = None  # Lyapunov times per row, where the largest exponent is known

    @property
    def channels(self) -> list[str]:
        """A name for each output channel, for tables, plots and generated code."""
        return [f"channel {k}" for k in range(self.n_out)]

    def draw(self, rng: np.random.Generator, epochs: int, batch: int) -> np.ndarray:
        """The random part of every epoch's sequences (a phase or start per sequence): array (epochs, batch).

        All the randomness of :meth:`batches` is drawn here, in one call, so that
        :meth:`batch_chunks` can build the sequences a few epochs at a time and
        still consume the stream exactly as one :meth:`batches` call does.
        """
        raise NotImplementedError

    def sequences(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets for the draws ``draws`` (any shape S): arrays (*S, steps, n_in / n_out)."""
        raise NotImplementedError

    def batches(self, rng: np.random.Generator, epochs: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of every epoch: arrays (epochs, batch, steps, n_in / n_out)."""
        return self.sequences(self.draw(rng, epochs, batch))

    def batch_chunks(self, rng: np.random.Generator, epochs: int, batch: int, chunk: int
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """The batches of :meth:`batches`, ``chunk`` epochs at a time: yields ``(e0, X, Y)``.

        ``X, Y`` are the epochs ``e0 .. e0 + len(X) - 1``, bit-identical to
        ``batches(rng, epochs, batch)[k][e0:e0 + len(X)]`` for a Generator in the same
        state. Only the draws (8 bytes per sequence) exist for all epochs at once;
        the sequences themselves exist for one chunk at a time.

        Parameters
        ----------
        rng : np.random.Generator
            The data stream; consumed exactly as by :meth:`batches`.
        epochs, batch : int
            Epochs in all and sequences per epoch.
        chunk : int
            Epochs per yielded block (the last block may be shorter).
        """
        if int(chunk) != chunk or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, not {chunk}")
        draws = self.draw(rng, epochs, batch)
        for e0 in range(0, epochs, int(chunk)):
            X, Y = self.sequences(draws[e0:e0 + int(chunk)])
            yield e0, X, Y

    def eval_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out evaluation sequences: arrays (N, T, n_in / n_out)."""
        raise NotImplementedError

    def reference_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The C program's single evaluation sequence, where the task has one."""
        return None

    def held_out_rows(self, before: int = 0) -> np.ndarray:
        """The held-out windows as rows, reaching ``before`` rows back: (N, before + T + 1, C) float32.

        Row ``before + t`` of window n is X[n, t] for t < T, and the last row is Y[n, T - 1]; the
        rows before are the task's own past (:meth:`held_out_past`).
        """
        X, Y = self.eval_set()
        rows = np.concatenate([X, Y[:, -1:]], axis=1)
        if before <= 0:
            return rows
        past = self.held_out_past(int(before))
        return np.ascontiguousarray(np.concatenate([past.astype(np.float32), rows], axis=1))

    def held_out_past(self, before: int) -> np.ndarray:
        """The ``before`` rows just before each held-out window: (N, before, C)."""
        raise ValueError(f"task {self.name} does not expose its past before the held-out windows; "
                         "a seasonal naive forecast needs it")

    def past_rows(self) -> int | None:
        """Rows that exist before the first held-out window; None when the signal reaches back without end."""
        return None

    def held_out_span(self) -> int:
        """Rows of the held-out part: one window's T + 1 for a generated signal."""
        return int(self.eval_set()[0].shape[1]) + 1

    def training_part(self) -> np.ndarray | None:
        """The training part as float64 (rows, channels), for a task that is one recorded series; else None."""
        return None

    def naive_scale(self) -> np.ndarray:
        """In-sample one-step naive MAE per channel, mean |x_t - x_{t-1}| on training data: (C,) float64.

        This general version samples 64 training sequences from the named stream
        ("forecast", "naive-scale") of seed 0; tasks with a closed form or a
        training part override it.
        """
        X, Y = self.batches(stream(0, "forecast", "naive-scale"), 1, 64)
        return np.mean(np.abs(Y.astype(np.float64) - X), axis=(0, 1, 2))

    def describe(self) -> dict:
        return {"name": self.name, "n_in": self.n_in, "n_out": self.n_out, "steps": self.steps}
