"""Simulated series: the Lorenz system and a synthetic ECG, integrated by RK4, each one fixed series."""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from ..rng import stream
from .base import TWO_PI
from .series import Series

LORENZ_H = 0.01  # RK4 step (time units)
LORENZ_EVERY = 10  # RK4 steps per sample: a row is 0.1 time units, the cell's dt
LORENZ_LYAPUNOV = 0.9056  # largest Lyapunov exponent of Lorenz (10, 28, 8/3), per time unit


@functools.lru_cache(maxsize=4)
def lorenz_trajectory(samples: int, transient: int = 200, every: int = LORENZ_EVERY, h: float = LORENZ_H,
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

    lyapunov_per_step = LORENZ_LYAPUNOV * (LORENZ_H * LORENZ_EVERY)  # per row of 0.1 time units

    def __init__(self, steps: int = 50, samples: int = 5000, train_frac: float = 0.8, n_eval: int = 32,
                 eval_steps: int = 100):
        info = {"system": "lorenz sigma=10 rho=28 beta=8/3", "integrator": "rk4 h=0.01, every 10 steps",
                "start": [1.0, 1.0, 1.0], "transient_samples": 200, "samples": samples}
        super().__init__(lorenz_trajectory(int(samples)), "lorenz", steps, train_frac, n_eval, eval_steps, info)


# McSharry, Clifford, Tarassenko & Smith (2003), "A dynamical model for generating synthetic
# electrocardiogram signals", IEEE Trans. Biomed. Eng. 50(3), table 1: the P, Q, R, S, T events.
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


