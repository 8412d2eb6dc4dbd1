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
    row, whose names become the channels' names); predict the next row of all
    channels from the current row. ``columns`` selects and orders the channels
    by header name or 0-based index, leaving out, say, a timestamp column.

Every series task (all but the two sine tasks) is split in time: the first
``train_frac`` of the rows is the training part, the rest is held out. Each
channel is normalised by the training part's mean and standard deviation.
Training windows lie wholly inside the training part, evaluation windows wholly
inside the held-out part.

Modules: :mod:`.base` the task protocol (:class:`Task`), :mod:`.synthetic` the
sine tasks, :mod:`.simulated` the Lorenz and ECG simulators, :mod:`.series`
recorded series (files, statsmodels' data sets) and their normalisation,
:mod:`.registry` task names and the task a model was trained on.
"""

from .base import TWO_PI, Task
from .registry import TASK_HELP, TASKS, get_task, task_of
from .series import (
    CO2,
    MAX_ONE_ROW_SHARE,
    MAX_SIGMAS,
    Series,
    Sunspots,
    from_file,
    min_length,
    normalise,
    read_table,
    statsmodels_series,
)
from .simulated import (
    ECG,
    ECG_A,
    ECG_B,
    ECG_C_HF,
    ECG_C_LF,
    ECG_F_HF,
    ECG_F_LF,
    ECG_HR_MEAN,
    ECG_HR_STD,
    ECG_LF_HF,
    ECG_SEED,
    ECG_THETA,
    ECG_WANDER,
    LORENZ_EVERY,
    LORENZ_H,
    LORENZ_LYAPUNOV,
    Lorenz,
    ecg_trajectory,
    lorenz_trajectory,
    rr_process,
)
from .synthetic import MultiSine, Sine

__all__ = ["CO2", "ECG", "ECG_A", "ECG_B", "ECG_C_HF", "ECG_C_LF", "ECG_F_HF", "ECG_F_LF", "ECG_HR_MEAN",
           "ECG_HR_STD", "ECG_LF_HF", "ECG_SEED", "ECG_THETA", "ECG_WANDER", "LORENZ_EVERY", "LORENZ_H",
           "LORENZ_LYAPUNOV", "MAX_ONE_ROW_SHARE", "MAX_SIGMAS",
           "TASKS", "TASK_HELP", "TWO_PI", "Lorenz", "MultiSine", "Series", "Sine", "Sunspots", "Task",
           "ecg_trajectory", "from_file", "get_task", "lorenz_trajectory", "min_length", "normalise", "read_table",
           "rr_process", "statsmodels_series", "task_of"]
