"""The one task registry: `TASK=` names -> Task classes, with a "did you mean" on unknown names.

Adding a task = one new module with a Task subclass + one `register` call (the built-in tasks are
registered at the end of this module). Everything else (the model zoo's heads, the SUT's response
packing, scoring, the study's tables) reads the task's declarations from its class.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.names import did_you_mean, lookup
from tasks.base import KINDS, Task
from tasks.bucc import BuccTask
from tasks.tatoeba import TatoebaTask
from tasks.tydiqa import TydiqaTask
from tasks.xnli import PawsxTask, XnliTask

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Add the task class `cls` under `cls.name` (usable as a class decorator). ValueError when the
    name is taken or the class lacks a declaration the harness reads (see tasks.base.Task)."""
    declared = ("name", "title", "kind", "languages", "scoring", "metrics", "primary_metric")
    missing = [a for a in declared if not hasattr(cls, a)]
    if missing:
        raise ValueError(f"task class {cls.__name__} does not declare {', '.join(missing)}")
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is registered already ({TASKS[cls.name].__name__})")
    if cls.kind not in KINDS:
        raise ValueError(f"task {cls.name!r}: kind {cls.kind!r} is not one of {', '.join(KINDS)}")
    if cls.primary_metric not in cls.metrics:
        raise ValueError(
            f"task {cls.name!r}: primary metric {cls.primary_metric!r} not in {cls.metrics}"
        )
    TASKS[cls.name] = cls
    return cls


def get_task_class(name: str) -> type[Task]:
    """The registered class of task `name` (its declarations); ValueError with "did you mean"."""
    return lookup("task", name, TASKS)


def task_names() -> list[str]:
    """Registered task names, in registration order."""
    return list(TASKS)


def get_task(
    name: str,
    data_dir: str | Path | None = None,
    languages: Sequence[str] | str | None = None,
    **options: Any,
) -> Task:
    """Build the task `name` for its data folder (None = bundled data/) and languages (None = all).

    options: task-specific keyword options (e.g. split="test", max_length=256). ValueError for an
    unknown task name or option, naming the closest match and what is accepted.
    """
    cls = get_task_class(name)
    accepted = [
        p
        for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "data_dir", "languages")
    ]
    for key in options:
        if key not in accepted:
            raise ValueError(
                f"task {name!r} has no option {key!r}.{did_you_mean(key, accepted)} "
                f"Accepted: {', '.join(accepted) or 'none'}"
            )
    return cls(data_dir=data_dir, languages=languages, **options)


for _cls in (XnliTask, PawsxTask, TydiqaTask, BuccTask, TatoebaTask):
    register(_cls)
