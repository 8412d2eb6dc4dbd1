"""ternq: ternary-weight CfC recurrent networks, and the factorial that tells which training techniques matter.

The Python API, arrays in and arrays out::

    from ternq import Sine, TeacherConfig, StudentConfig, train_teacher, train_student, evaluate
    task = Sine()
    teacher, hist = train_teacher(task, TeacherConfig(hidden=16), seed=0)
    student, _ = train_student(teacher, task, StudentConfig(hidden=16, shaped=True), seed=0)
    evaluate(student, task)            # {'eval_mse': ..., 'ref_mse': ...}

Layout: ``ternq.kernels`` (compiled cell, ternary transform, optimiser, training loop),
``settings`` (every setting, defined once) and ``config`` (TOML files into them), training (``train``,
``search``, ``gradcheck``), the experiment engine (``experiment``: units, plans, designs, executor, store,
summary, and ``experiment.run``, the one runner of factorials and ``sweep``s), presentation (``report``, ``cli``).
"""

from . import kernels  # noqa: F401 - first: Numba's cache is set up before any compiled function is defined
from .config import ExperimentSettings
from .config import load as load_settings
from .experiment.run import run_experiment
from .gradcheck import check_all as check_gradients
from .model import Model, ModelFileError, init_teacher, student_from
from .search import coordinate_search, quantize_teacher
from .tasks import Sine, Task, get_task
from .train import (
    DivergedError,
    StudentConfig,
    TeacherConfig,
    evaluate,
    loss_and_grad,
    predict,
    predict_mse,
    train_student,
    train_teacher,
)

__all__ = [
    "DivergedError", "ExperimentSettings", "Model", "ModelFileError", "Sine", "StudentConfig", "Task",
    "TeacherConfig", "check_gradients", "coordinate_search", "evaluate", "get_task", "init_teacher", "load_settings",
    "loss_and_grad", "predict", "predict_mse", "quantize_teacher", "run_experiment", "student_from",
    "train_student", "train_teacher",
]
