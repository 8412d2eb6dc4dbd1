"""Tasks: where the training and held-out sequences come from.

A task hands out float32 arrays, batch-major: inputs X (..., T, n_in) and
targets Y (..., T, n_out). ``batches`` draws the sequences of every epoch at
once from the Generator it is given (never the global random state), so the
compiled training loop never calls back into Python; ``eval_set`` is fixed (no
randomness) and disjoint from training draws.

Tasks (``get_task(name)``; :func:`from_file` for ``--data FILE``):

``sine``
    Predict sin(phi + (t+1) dt) from sin(phi + t dt), the C program's task.
``multisine``
    x(t) = (sin t + sin(sqrt2 t) + sin(pi t)) / sqrt(3/2) (unit mean square),
    sampled every dt = 0.1; predict the next value. Training windows start at a
    uniform random time in [0, 1000); held-out windows start on a fixed grid in
    [2000, 3000), so no held-out sample is ever a training sample.
``lorenz``
    The Lorenz system (sigma 10, rho 28, beta 8/3), RK4 at h = 0.01 from
    (1, 1, 1), sampled every 10 steps (0.1 time units, the cell's dt); the
    first 200 samples are discarded as transient. Predict the next (x, y, z).
    One trajectory, split in time (see :class:`Series`).
``ecg``
    A synthetic electrocardiogram: the dynamical model of McSharry et al. (2003)
    with its P, Q, R, S, T events and heart-rate variability (RR spectrum with
    Mayer-wave and respiratory peaks), RK4 at 512 Hz sampled at 64 Hz, 60 beats
    per minute on average (64 samples per beat, the seasonal period). One
    channel, one fixed series, split in time.
``sunspots``, ``co2``
    Recorded series shipped with statsmodels (optional extra: ``pip install
    ternq[data]``): yearly sunspot numbers 1700-2008, weekly Mauna Loa CO2
    1958-2001 (its 59 missing weeks linearly interpolated).
``--data FILE``
    A CSV or ``.npy`` file, one column per channel (a CSV may have one header
    row); predict the next row of all channels from the current row.

Every series task (all but the two sine tasks) is split in time: the first
``train_frac`` of the rows is the training part, the rest is held out. Each
channel is normalised by the training part's mean and standard deviation.
Training windows lie wholly inside the training part, evaluation windows wholly
inside the held-out part.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numba import njit

from . import files
from .rng import stream

TWO_PI = 2.0 * np.pi


class Task:
    """Base class. Subclasses set ``name``, ``n_in``, ``n_out`` and the two sets."""

    name = "task"
    n_in = 1
    n_out = 1
    steps = 50  # training sequence length
    period: int | None = None  # seasonal period in samples, where the task has one (seasonal naive baseline)

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

    @property
    def period(self) -> int:
        """2 pi / dt samples, rounded: the lag of the seasonal naive baseline (63 at dt = 0.1)."""
        return max(1, round(TWO_PI / self.dt))

    def draw(self, rng, epochs, batch):
        return rng.uniform(0.0, TWO_PI, size=(epochs, batch))

    def sequences(self, draws):
        return self._seqs(draws, self.steps)

    def eval_set(self):
        phases = TWO_PI * (np.arange(self.n_eval) + 0.5) / self.n_eval
        return self._seqs(phases, self.eval_steps)

    def reference_set(self):
        return self._seqs(np.zeros(1), 100)

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

    def _seqs(self, starts: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        t = starts[..., None] + np.arange(steps + 1) * self.dt
        s = sum(np.sin(f * t) for f in self.FREQS) / self.NORM
        s = s.astype(np.float32)
        return np.ascontiguousarray(s[..., :-1, None]), np.ascontiguousarray(s[..., 1:, None])

    def draw(self, rng, epochs, batch):
        return rng.uniform(0.0, self.train_span, size=(epochs, batch))

    def sequences(self, draws):
        return self._seqs(draws, self.steps)

    def eval_starts(self) -> np.ndarray:
        return self.eval_from + self.train_span * (np.arange(self.n_eval) + 0.5) / self.n_eval

    def eval_set(self):
        return self._seqs(self.eval_starts(), self.eval_steps)

    def describe(self):
        return {**super().describe(), "dt": self.dt, "n_eval": self.n_eval, "eval_steps": self.eval_steps,
                "train_starts": [0.0, self.train_span],
                "eval_starts": [self.eval_from, self.eval_from + self.train_span],
                "normalisation": "sum / sqrt(1.5)"}


class Series(Task):
    """Windows of one multichannel series (L rows, C channels): predict the next row from the current row.

    The first ``floor(train_frac * L)`` rows are the training part, the rest is
    held out; each channel is normalised by the training part's mean and
    standard deviation (see :func:`normalise`, which refuses series that cannot be
    normalised faithfully). Training windows of ``steps``
    steps (``steps + 1`` rows) start at a uniform random row such that the whole
    window lies in the training part. Held-out windows of ``min(eval_steps,
    rows held out - 1)`` steps start on a fixed, evenly spaced grid of at most
    ``n_eval`` distinct rows of the held-out part (they may overlap).
    """

    def __init__(self, series: np.ndarray, name: str, steps: int = 50, train_frac: float = 0.75,
                 n_eval: int = 32, eval_steps: int = 100, info: dict | None = None, what: str | None = None):
        series = np.asarray(series, np.float64)
        if series.ndim == 1:
            series = series[:, None]
        what = what or f"the {name} series"
        if series.ndim != 2 or series.shape[1] == 0:
            raise ValueError(f"{what} must be a table of rows and channels, got shape {series.shape}")
        if not 0.0 < train_frac < 1.0:
            raise ValueError(f"train_frac must lie in (0, 1), not {train_frac}")
        if int(steps) != steps or steps <= 0 or int(eval_steps) != eval_steps or eval_steps <= 0 or n_eval <= 0:
            raise ValueError("steps, eval_steps and n_eval must be positive integers")
        bad = np.argwhere(~np.isfinite(series))
        if bad.size:
            r, c = bad[0]
            raise ValueError(f"{what} has a non-finite value ({series[r, c]}) at row {r + 1}, column {c + 1} "
                             f"({len(bad)} in all)")
        L, C = series.shape
        need = min_length(steps, train_frac)
        if L < need:
            raise ValueError(f"{what} has {L} rows; sequences of {steps} steps need at least {need} "
                             f"({steps + 1} in the first {train_frac:.0%} for training, 2 held out)")
        self.name, self.steps, self.train_frac = name, int(steps), float(train_frac)
        self.n_in = self.n_out = C
        self.length = L
        self.n_train = int(math.floor(train_frac * L))
        self.mean, self.std, self.data = normalise(series, self.n_train, what)
        held = L - self.n_train
        self.eval_steps = int(min(eval_steps, held - 1))
        last = held - 1 - self.eval_steps
        self.eval_starts = self.n_train + np.unique(np.round(np.linspace(0, last, int(n_eval))).astype(np.int64))
        self.n_eval = len(self.eval_starts)
        self.info = dict(info or {})

    def _windows(self, starts: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.data[starts[..., None] + np.arange(steps + 1)]
        return np.ascontiguousarray(w[..., :-1, :]), np.ascontiguousarray(w[..., 1:, :])

    def draw(self, rng, epochs, batch):
        room = self.n_train - self.steps  # number of distinct windows in the training part
        if room < 1:
            raise ValueError(f"{self.name}: the training part has {self.n_train} rows, too few for windows of "
                             f"{self.steps} steps")
        return rng.integers(0, room, size=(epochs, batch))

    def sequences(self, draws):
        return self._windows(np.asarray(draws, np.int64), self.steps)

    def eval_set(self):
        return self._windows(self.eval_starts, self.eval_steps)

    def describe(self):
        return {**super().describe(), **self.info, "rows": self.length, "train_rows": self.n_train,
                "train_frac": self.train_frac, "n_eval": self.n_eval, "eval_steps": self.eval_steps,
                "mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}


MAX_SIGMAS = 1e6  # a held-out value further than this from the training mean is not on the series' scale
MAX_ONE_ROW_SHARE = 0.9  # most of a channel's training variance that a single row may carry


def normalise(series: np.ndarray, n_train: int, what: str = "the series") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise each channel by its training part's mean and standard deviation, or refuse.

    The statistics are taken in float64 on the channel divided by its largest
    magnitude first, so values near 1e-300 or 1e300 neither underflow nor overflow
    (no RuntimeWarning, no silent zeros). The result must be a faithful float32
    series; a channel is refused (``ValueError``, one line) when

    - it is constant over the training rows (nothing to learn, nothing to scale by);
    - its spread is below float64 resolution relative to its magnitude;
    - any value lies more than ``MAX_SIGMAS`` training standard deviations from the
      training mean (a series not on one scale, e.g. one 1e300 outlier);
    - one training row carries more than ``MAX_ONE_ROW_SHARE`` of its variance, or
      normalising merged its distinct values into fewer than three (an outlier
      that swamps the rest).

    Parameters
    ----------
    series : np.ndarray
        Finite float64 (L, C).
    n_train : int
        Rows of the training part (the first ones).
    what : str
        How messages name the series.

    Returns
    -------
    mean, std : np.ndarray
        Float64 (C,): the training part's statistics in the data's own units.
    data : np.ndarray
        Float32 (L, C), C-contiguous: the normalised series.
    """
    C = series.shape[1]
    scale = np.max(np.abs(series[:n_train]), axis=0)  # > 0 unless the training part is all zeros
    mean = np.zeros(C)
    std = np.zeros(C)
    data = np.empty(series.shape, np.float32)
    for c in range(C):
        x, train = series[:, c], series[:n_train, c]
        name = f"{what}, channel {c + 1},"
        if np.all(train == train[0]):
            raise ValueError(f"{name} is constant ({train[0]:.6g}) over the {n_train} training rows: "
                             "nothing to learn or normalise by; drop that column")
        with np.errstate(over="ignore", under="ignore"):  # held-out values may overflow: refused below
            s = x / scale[c]  # |s| <= 1 over the training rows: their sums cannot overflow
            mu = s[:n_train].mean()
            sd = s[:n_train].std()
            if not sd > 1e-12:
                raise ValueError(f"{name} varies by less than 1e-12 of its size over the training rows "
                                 f"({train.min():.17g} to {train.max():.17g}): too little to normalise")
            z = (s - mu) / sd
        far = int(np.argmax(np.abs(z)))
        if not abs(z[far]) <= MAX_SIGMAS:
            raise ValueError(f"{name} row {far + 1} holds {x[far]:.6g}, {abs(z[far]):.3g} training standard "
                             "deviations from the training mean: the series is not on one scale (an outlier?)")
        zt = z[:n_train]
        top = int(np.argmax(zt * zt))
        if zt[top] ** 2 > MAX_ONE_ROW_SHARE * n_train:
            raise ValueError(f"{name} row {top + 1} ({x[top]:.6g}) alone carries "
                             f"{zt[top] ** 2 / n_train:.0%} of the training variance: an outlier?")
        data[:, c] = z
        if len(np.unique(data[:n_train, c])) < min(3, len(np.unique(train))):
            raise ValueError(f"{name} loses its distinct values when normalised (row {top + 1}, {x[top]:.6g}, "
                             "swamps the rest): an outlier?")
        mean[c], std[c] = mu * scale[c], sd * scale[c]
    return mean, std, data


def min_length(steps: int, train_frac: float) -> int:
    """Fewest rows a series needs: ``steps + 1`` rows in the training part and 2 held out."""
    L = steps + 3
    while math.floor(train_frac * L) < steps + 1 or L - math.floor(train_frac * L) < 2:
        L += 1
    return L


@functools.lru_cache(maxsize=4)
def lorenz_trajectory(samples: int, transient: int = 200, every: int = 10, h: float = 0.01,
                      start: tuple[float, float, float] = (1.0, 1.0, 1.0),
                      sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0) -> np.ndarray:
    """(samples, 3) states of the Lorenz system: RK4 at step ``h``, one sample every ``every`` steps.

    Plain Python floats (IEEE double, no fused multiply-add): the same numbers on every machine.
    """

    def f(x, y, z):
        return sigma * (y - x), x * (rho - z) - y, x * y - beta * z

    x, y, z = start
    out = np.empty((samples, 3))
    n = 0
    for k in range(1, (samples + transient) * every + 1):
        a = f(x, y, z)
        b = f(x + 0.5 * h * a[0], y + 0.5 * h * a[1], z + 0.5 * h * a[2])
        c = f(x + 0.5 * h * b[0], y + 0.5 * h * b[1], z + 0.5 * h * b[2])
        d = f(x + h * c[0], y + h * c[1], z + h * c[2])
        x += h / 6.0 * (a[0] + 2.0 * b[0] + 2.0 * c[0] + d[0])
        y += h / 6.0 * (a[1] + 2.0 * b[1] + 2.0 * c[1] + d[1])
        z += h / 6.0 * (a[2] + 2.0 * b[2] + 2.0 * c[2] + d[2])
        if k % every == 0 and k > transient * every:
            out[n] = (x, y, z)
            n += 1
    out.setflags(write=False)
    return out


class Lorenz(Series):
    """Predict the next normalised (x, y, z) of one long Lorenz trajectory, split in time."""

    def __init__(self, steps: int = 50, samples: int = 5000, train_frac: float = 0.8, n_eval: int = 32,
                 eval_steps: int = 100):
        info = {"system": "lorenz sigma=10 rho=28 beta=8/3", "integrator": "rk4 h=0.01, every 10 steps",
                "start": [1.0, 1.0, 1.0], "transient_samples": 200, "samples": samples}
        super().__init__(lorenz_trajectory(int(samples)), "lorenz", steps, train_frac, n_eval, eval_steps, info)


# McSharry, Clifford, Tarassenko & Smith (2003), "A dynamical model for generating synthetic
# electrocardiogram signals", IEEE Trans. Biomed. Eng. 50(3), table 1: the P, Q, R, S, T events.
ECG_WAVES = ("P", "Q", "R", "S", "T")
ECG_THETA = (-math.pi / 3.0, -math.pi / 12.0, 0.0, math.pi / 12.0, math.pi / 2.0)  # angles theta_i (rad)
ECG_A = (1.2, -5.0, 30.0, -7.5, 0.75)  # amplitudes a_i
ECG_B = (0.25, 0.1, 0.1, 0.1, 0.4)  # widths b_i (rad)
ECG_SEED = 2003  # generation seed of the ecg task's series (its RR process), fixed like lorenz's start
ECG_HR_MEAN = 60.0  # beats per minute (the paper's and ecgsyn's default)
ECG_HR_STD = 1.0  # beats per minute
ECG_LF_HF = 0.5  # power ratio of the Mayer-wave (LF) to the RSA (HF) peak of the RR spectrum
ECG_F_LF, ECG_F_HF, ECG_C_LF, ECG_C_HF = 0.1, 0.25, 0.01, 0.01  # peak frequencies and widths (Hz)
ECG_WANDER = 0.005  # baseline wander amplitude A in model units (ecgsyn.m's value, ~0.15 mV once in mV)


def rr_process(rng: np.random.Generator, n: int, fs: float, hr_mean: float = ECG_HR_MEAN,
               hr_std: float = ECG_HR_STD, lf_hf: float = ECG_LF_HF, f_lf: float = ECG_F_LF,
               f_hf: float = ECG_F_HF, c_lf: float = ECG_C_LF, c_hf: float = ECG_C_HF) -> np.ndarray:
    """RR intervals (s) with the bimodal heart-rate-variability spectrum of McSharry et al. (2003).

    The power spectrum is a sum of two Gaussians, Mayer waves at ``f_lf`` (power
    ``lf_hf``) and respiratory sinus arrhythmia at ``f_hf`` (power 1), of standard
    deviations ``c_lf``, ``c_hf``. As in the paper, a series with that spectrum is
    made by an inverse FFT of its square-root amplitudes with phases uniform in
    [0, 2 pi), then shifted and scaled to mean 60 / hr_mean and standard deviation
    60 hr_std / hr_mean^2 seconds. Sampled here directly at ``fs`` (the paper
    samples at 1 Hz and interpolates; the spectrum is the same).

    Parameters
    ----------
    rng : np.random.Generator
        Source of the phases (``n // 2`` uniform draws).
    n : int
        Samples, at least 4.
    fs : float
        Sampling rate (Hz) of the returned series.
    hr_mean, hr_std : float
        Mean and standard deviation of the heart rate (beats per minute).
    lf_hf : float
        LF / HF power ratio.
    f_lf, f_hf, c_lf, c_hf : float
        Centres and widths (Hz) of the two spectral peaks.

    Returns
    -------
    np.ndarray
        Float64 (n,): the RR interval in force at each sample, seconds.
    """
    if int(n) != n or n < 4 or not fs > 0 or not hr_mean > 0 or not hr_std >= 0 or not lf_hf >= 0:
        raise ValueError("rr_process needs n >= 4 samples, fs > 0, hr_mean > 0, hr_std >= 0, lf_hf >= 0")
    if not (c_lf > 0 and c_hf > 0 and 0 < f_lf < fs / 2 and 0 < f_hf < fs / 2):
        raise ValueError("rr_process needs positive peak widths and peak frequencies below fs / 2")
    n = int(n)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    power = (lf_hf * np.exp(-0.5 * ((f - f_lf) / c_lf) ** 2) / math.sqrt(TWO_PI * c_lf ** 2)
             + np.exp(-0.5 * ((f - f_hf) / c_hf) ** 2) / math.sqrt(TWO_PI * c_hf ** 2))
    phase = np.zeros(len(f))
    phase[1:n // 2 + 1] = rng.uniform(0.0, TWO_PI, size=n // 2)
    amplitude = np.sqrt(power)
    amplitude[0] = 0.0  # zero mean: the mean RR is set below
    if n % 2 == 0:
        amplitude[-1] = 0.0  # the Nyquist bin of a real series has no phase to carry
    x = np.fft.irfft(amplitude * np.exp(1j * phase), n)
    rr_mean, rr_std = 60.0 / hr_mean, 60.0 * hr_std / hr_mean ** 2
    return rr_mean + x * (rr_std / x.std())


@njit(cache=True, nogil=True)
def _ecg_rk4(omega, h, every, theta, a, b, wander, f_resp):  # pragma: no cover - compiled
    """z every ``every`` steps (from t = 0) of the McSharry model by RK4 at step h, from (1, 0, 0).

    omega[k] is the angular velocity during step k (constant within a step, so the
    classical RK4 stages see one vector field).
    """
    n_out = omega.shape[0] // every
    out = np.empty(n_out)
    x, y, z = 1.0, 0.0, 0.0  # on the limit cycle at theta = 0: an R peak at t = 0
    m = theta.shape[0]
    k_x = np.empty(4)
    k_y = np.empty(4)
    k_z = np.empty(4)
    for k in range(n_out * every):
        if k % every == 0:
            out[k // every] = z
        w = omega[k]
        t0 = k * h
        sx, sy, sz = x, y, z
        for s in range(4):
            alpha = 1.0 - math.sqrt(sx * sx + sy * sy)  # pulls (x, y) back to the unit circle
            th = math.atan2(sy, sx)
            ts = t0 + (0.0 if s == 0 else (h if s == 3 else 0.5 * h))
            dz = -(sz - wander * math.sin(TWO_PI * f_resp * ts))
            for i in range(m):
                d = th - theta[i]
                if d < -math.pi:  # the angle to event i, wrapped to [-pi, pi)
                    d += 2.0 * math.pi
                elif d >= math.pi:
                    d -= 2.0 * math.pi
                dz -= a[i] * d * math.exp(-0.5 * (d / b[i]) ** 2)
            k_x[s] = alpha * sx - w * sy
            k_y[s] = alpha * sy + w * sx
            k_z[s] = dz
            c = h if s == 2 else 0.5 * h  # stage s + 1 evaluates at the state moved by c * k_s
            if s < 3:
                sx, sy, sz = x + c * k_x[s], y + c * k_y[s], z + c * k_z[s]
        x += h / 6.0 * (k_x[0] + 2.0 * k_x[1] + 2.0 * k_x[2] + k_x[3])
        y += h / 6.0 * (k_y[0] + 2.0 * k_y[1] + 2.0 * k_y[2] + k_y[3])
        z += h / 6.0 * (k_z[0] + 2.0 * k_z[1] + 2.0 * k_z[2] + k_z[3])
    return out


@functools.lru_cache(maxsize=4)
def ecg_trajectory(samples: int, seed: int = ECG_SEED, fs: int = 64, every: int = 8, transient: int = 640,
                   hr_mean: float = ECG_HR_MEAN, hr_std: float = ECG_HR_STD) -> np.ndarray:
    """(samples,) synthetic ECG: the z of the McSharry et al. (2003) model, one sample every ``every`` RK4 steps.

    The model (their eqs. 1-4) is a point (x, y) on a limit cycle of radius 1 turning
    at angular velocity omega(t), and z, pushed by a Gaussian event at each angle
    theta_i of :data:`ECG_THETA` (amplitudes :data:`ECG_A`, widths :data:`ECG_B`)
    and pulled back to a baseline z0(t) = A sin(2 pi f_hf t) that wanders with
    respiration. omega = 2 pi / RR where RR is the interval of the current beat:
    :func:`rr_process` (stream ``ternq.rng.stream(seed, "ecg", "rr")``) read at
    the beat's start, rounded to whole RK4 steps, and held for the beat, so every
    beat is one turn and begins at an R peak. RK4 at h = 1 / (fs * every) s from
    (1, 0, 0); the first ``transient`` samples are discarded. Compiled, float64, no
    fast-math: the same bits on every run. Cached; the array is read-only.

    Parameters
    ----------
    samples : int
        Samples returned.
    seed : int
        Seed of the RR process.
    fs : int
        Output sampling rate (Hz): with hr_mean 60, ``fs`` samples per beat on average.
    every : int
        RK4 steps per output sample (the paper's internal rate is 512 Hz: 64 Hz x 8).
    transient : int
        Leading samples discarded (z relaxes to its cycle with time constant 1 s).
    hr_mean, hr_std : float
        Heart rate mean and standard deviation (beats per minute).
    """
    for name, v in (("samples", samples), ("fs", fs), ("every", every)):
        if int(v) != v or v < 1:
            raise ValueError(f"ecg_trajectory: {name} must be a positive integer, not {v}")
    if int(transient) != transient or transient < 0:
        raise ValueError(f"ecg_trajectory: transient must be a non-negative integer, not {transient}")
    fs_int = int(fs) * int(every)
    n_steps = (int(samples) + int(transient)) * int(every)
    rr = rr_process(stream(seed, "ecg", "rr"), n_steps, float(fs_int), hr_mean, hr_std)
    if rr.min() <= 0.0:
        raise ValueError("ecg_trajectory: the heart-rate variability gives a non-positive RR interval")
    omega = np.empty(n_steps)
    k = 0
    while k < n_steps:  # one beat at a time: its RR interval, from its first step, in whole steps
        beat = max(1, round(rr[k] * fs_int))
        omega[k:k + beat] = TWO_PI * fs_int / beat
        k += beat
    z = _ecg_rk4(omega, 1.0 / fs_int, int(every), np.array(ECG_THETA), np.array(ECG_A), np.array(ECG_B),
                 ECG_WANDER, ECG_F_HF)
    out = np.ascontiguousarray(z[int(transient):])
    out.setflags(write=False)
    return out


class ECG(Series):
    """Predict the next sample of a synthetic ECG (McSharry et al. 2003) with heart-rate variability, split in time.

    ``samples`` rows at 64 Hz, 60 beats per minute on average (sd 1 bpm): 64
    samples per beat, the seasonal period. See :func:`ecg_trajectory`.
    """

    def __init__(self, steps: int = 50, samples: int = 16384, train_frac: float = 0.8, n_eval: int = 32,
                 eval_steps: int = 100):
        fs, every, transient = 64, 8, 640
        info = {"system": "McSharry et al. 2003 ECG model, table 1 P Q R S T events",
                "heart_rate": f"mean {ECG_HR_MEAN:g} bpm, sd {ECG_HR_STD:g} bpm; RR spectrum peaks "
                              f"{ECG_F_LF:g} Hz (Mayer) and {ECG_F_HF:g} Hz (RSA), sd {ECG_C_LF:g} Hz, "
                              f"LF/HF {ECG_LF_HF:g}",
                "integrator": f"rk4 h=1/{fs * every} s, every {every} steps ({fs} Hz)",
                "seed": ECG_SEED, "transient_samples": transient, "samples": samples}
        super().__init__(ecg_trajectory(int(samples), ECG_SEED, fs, every, transient), "ecg", steps, train_frac,
                         n_eval, eval_steps, info)
        self.period = round(fs * 60.0 / ECG_HR_MEAN)


@functools.lru_cache(maxsize=4)
def statsmodels_series(name: str) -> np.ndarray:
    """A recorded series from ``statsmodels.datasets`` (sunspots or co2) as float64 (L,)."""
    try:
        from statsmodels import datasets
    except ImportError:
        raise ValueError(f"the {name} task needs statsmodels, an optional extra: pip install ternq[data]") from None
    if name == "sunspots":
        df = datasets.sunspots.load_pandas().data
        values = df["SUNACTIVITY"].to_numpy(np.float64)
    elif name == "co2":
        df = datasets.co2.load_pandas().data
        values = df["co2"].interpolate(method="linear", limit_direction="both").to_numpy(np.float64)
    else:
        raise ValueError(f"no recorded series {name!r}")
    values.setflags(write=False)
    return values


class Sunspots(Series):
    """Yearly mean sunspot numbers 1700-2008 (309 rows); trains on 1700-1930, held out 1931-2008."""

    period = 11  # the solar cycle, in yearly rows

    def __init__(self, steps: int = 50, train_frac: float = 0.75, n_eval: int = 32, eval_steps: int = 50):
        info = {"source": "statsmodels.datasets.sunspots (yearly, 1700-2008)"}
        super().__init__(statsmodels_series("sunspots"), "sunspots", steps, train_frac, n_eval, eval_steps, info)


class CO2(Series):
    """Weekly Mauna Loa CO2 1958-2001 (2284 rows, 59 missing weeks interpolated linearly)."""

    period = 52  # a year, in weekly rows

    def __init__(self, steps: int = 50, train_frac: float = 0.75, n_eval: int = 32, eval_steps: int = 100):
        info = {"source": "statsmodels.datasets.co2 (weekly, 1958-2001, gaps interpolated)"}
        super().__init__(statsmodels_series("co2"), "co2", steps, train_frac, n_eval, eval_steps, info)


MAX_NPY_VALUES = 1 << 25  # 33.5 million numbers (268 MB as float64): far more than a training can use
MAX_NPY_BYTES = 8 * MAX_NPY_VALUES + files.MiB
MAX_CSV_BYTES = 64 * files.MiB


def read_table(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Read a CSV or ``.npy`` file into a float64 (rows, channels) array, with one-line errors.

    Only a regular file is read (not a device or FIFO), and at most ``MAX_CSV_BYTES``
    of CSV or ``MAX_NPY_BYTES`` of ``.npy``; a ``.npy`` header is checked (numbers
    only, at most ``MAX_NPY_VALUES``, consistent with the file's size) before its
    array is allocated. A CSV may start with one header row (a row with no number
    in it); every other cell must be a number. NaN and inf are refused by the task,
    which knows the row and column.

    Parameters
    ----------
    path : str or Path
        The file; its suffix picks the format.
    data : bytes, optional
        The file's bytes, when the caller has read them already (see :func:`from_file`).
    """
    path = Path(path)
    npy = path.suffix.lower() == ".npy"
    if data is None:
        data = files.read_bytes(path, MAX_NPY_BYTES if npy else MAX_CSV_BYTES, "data file")
    if npy:
        fh = io.BytesIO(data)
        head = files.npy_header(fh, f"data file {path}")
        if head.dtype.kind not in "biuf":
            raise ValueError(f"{path} holds {head.dtype} values, not numbers")
        if len(head.shape) not in (1, 2):
            raise ValueError(f"{path} holds an array of shape {head.shape}; need (rows,) or (rows, channels)")
        if head.count > MAX_NPY_VALUES:
            raise ValueError(f"{path} declares shape {head.shape}: {head.count:.3g} values, more than the "
                             f"{MAX_NPY_VALUES:.3g} accepted")
        if head.offset + head.nbytes != len(data):
            raise ValueError(f"{path} is damaged: its header declares {head.nbytes} bytes of data, "
                             f"the file holds {len(data) - head.offset}")
        fh.seek(0)
        try:
            arr = np.lib.format.read_array(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"cannot read {path} as a .npy array ({exc.__class__.__name__})") from None
        if arr.ndim == 1:
            arr = arr[:, None]
        return arr.astype(np.float64)
    if len(data) > MAX_CSV_BYTES:
        raise ValueError(f"data file {path} is larger than the {MAX_CSV_BYTES >> 20} MiB accepted for CSV "
                         "(use .npy for big series)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text CSV file (use .npy for binary arrays)") from None
    if "\0" in text:
        raise ValueError(f"{path} is not a text CSV file (it holds NUL bytes; use .npy for binary arrays)")
    try:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text, newline="")))
                if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if rows and not any(_is_number(c) for c in rows[0][1]):
        rows = rows[1:]  # a header row
    if not rows:
        raise ValueError(f"{path} holds no data rows")
    width = len(rows[0][1])
    out = np.empty((len(rows), width))
    for k, (line, cells) in enumerate(rows):
        if len(cells) != width:
            raise ValueError(f"{path} line {line} has {len(cells)} columns, the first data row has {width}")
        for c, cell in enumerate(cells):
            try:
                out[k, c] = float(cell)
            except ValueError:
                raise ValueError(f"{path} line {line}, column {c + 1}: {cell.strip()!r} is not a number") from None
    return out


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def from_file(path: str | Path, **kwargs) -> Series:
    """The ``--data FILE`` task: a recorded series from a CSV or ``.npy`` file (see :func:`read_table`)."""
    path = Path(path)
    npy = path.suffix.lower() == ".npy"
    data = files.read_bytes(path, MAX_NPY_BYTES if npy else MAX_CSV_BYTES, "data file")
    table = read_table(path, data)
    digest = hashlib.sha256(data).hexdigest()  # of the very bytes parsed
    info = {"path": str(path), "sha256": digest}
    return Series(table, "data", what=f"data file {path}", info=info, **kwargs)


TASKS: dict[str, type[Task]] = {"sine": Sine, "multisine": MultiSine, "lorenz": Lorenz, "ecg": ECG,
                                "sunspots": Sunspots, "co2": CO2}
TASK_HELP = ("sine, multisine, lorenz, ecg, sunspots, co2 (sunspots and co2 need statsmodels: "
             "pip install ternq[data])")


def get_task(name: str, **kwargs) -> Task:
    """Build the task called ``name`` (one of ``TASKS``); raise ValueError with a one-line message."""
    try:
        cls = TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"task {name}: {exc}") from None


def task_of(described: dict, **kwargs) -> Task:
    """The task a model was trained on, from its description (:meth:`Task.describe`, kept in the model).

    A ``--data`` series is read again from the path it was trained on and must
    have the same sha256, so a model is never scored on a file that has changed.

    Raises
    ------
    ValueError
        One line: the description names no task, or its data file is gone or has changed.
    """
    name = described.get("name") if isinstance(described, dict) else None
    if name != "data":
        if not isinstance(name, str):
            raise ValueError("the model does not say which task it was trained on; pass --task or --data")
        return get_task(name, **kwargs)
    path = described.get("path")
    task = None
    if isinstance(path, str) and path and Path(path).is_file():
        try:
            task = from_file(path, **kwargs)
        except ValueError:
            task = None
    if task is None or task.info.get("sha256") != described.get("sha256"):
        raise ValueError(f"the model was trained on data file {path}, which is gone or has changed; pass --data FILE")
    return task
