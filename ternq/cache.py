"""A cache of trained teachers, so ``ternq student`` and ``ternq cs`` need not retrain one each time.

Keyed by the task, the teacher settings, the seed and the code that trains; stored under
``$TERNQ_CACHE`` (default ``~/.cache/ternq``). A damaged entry is retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from .model import Model, ModelFileError
from .tasks import Task
from .train import Progress, TeacherConfig, train_teacher


def cache_dir() -> Path:
    return Path(os.environ.get("TERNQ_CACHE", Path.home() / ".cache" / "ternq"))


def teacher(task: Task, cfg: TeacherConfig, seed: int, progress: Progress | None = None) -> tuple[Model, bool]:
    """The teacher for (task, cfg, seed): from the cache, else trained and cached. Returns (model, was_cached)."""
    from .factorial import code_fingerprint  # retrain when the code that made the teacher changed

    key = json.dumps({"task": task.describe(), "config": asdict(cfg), "seed": seed, "code": code_fingerprint()},
                     sort_keys=True)
    path = cache_dir() / "teachers" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    if path.exists():
        try:
            return Model.load(path), True
        except ModelFileError:
            pass
    model, _ = train_teacher(task, cfg, seed, progress)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    except OSError:
        pass  # a read-only home only costs a retrain next time
    return model, False
