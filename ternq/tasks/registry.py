"""Task names: the built-in tasks by name, and the task a model was trained on from its description."""

from __future__ import annotations

from pathlib import Path

from .base import Task
from .series import CO2, Sunspots, from_file
from .simulated import ECG, Lorenz
from .synthetic import MultiSine, Sine

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
            task = from_file(path, described.get("columns"), **kwargs)
        except ValueError:
            task = None
    if task is None or task.info.get("sha256") != described.get("sha256"):
        raise ValueError(f"the model was trained on data file {path}, which is gone or has changed; pass --data FILE")
    return task
