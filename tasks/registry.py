"""The one task registry: `TASK=` names -> Task classes, with a "did you mean" on unknown names.

Adding a task = one new module with a Task subclass + one line in `_CLASSES` below.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.names import did_you_mean, lookup
from tasks.base import Task
from tasks.bucc import BuccTask
from tasks.tatoeba import TatoebaTask
from tasks.tydiqa import TydiqaTask
from tasks.xnli import PawsxTask, XnliTask

_CLASSES: tuple[type[Task], ...] = (XnliTask, PawsxTask, TydiqaTask, BuccTask, TatoebaTask)
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in _CLASSES}


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
    cls = lookup("task", name, TASKS)
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
