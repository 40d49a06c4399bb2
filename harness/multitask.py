"""A run over a task list (`--task xnli+pawsx+tydiqa`, docs/multitask.md): checks, prepare, scoring.

The runner calls three hooks: `check_options` while the RunConfig is validated (before anything is
created), `prepare` instead of the single-task preparation, and `score` instead of the single-task
scoring. Everything else (run folder, LoadGen, the SUT and its exactly-once completion) is the
ordinary run's: one QSL (the union of the tasks' samples), one SUT, one backend per worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.registry import serving_form
from models.spec import MIXED_BATCH_FORMS, mixed_batches_on_pytorch_only
from tasks.base import tokenizer_fingerprint
from tasks.mixed import MixedTask, parse_task_list, score_mixed_log
from tasks.qsl import QuerySampleLibrary

TASK_LIST_BACKENDS = ("pytorch", "onnxruntime")  # onnxruntime: the per-task forms only


def check_options(
    backend: str,
    executor: str,
    dtype: str,
    weights: str | None,
    model: str,
    lora_form: str,
) -> None:
    """ValueError (one line naming the fix) for run options a task list cannot take. Cheap: no torch
    or onnxruntime import (the form comes from the model's spec, models/registry.py serving_form).
    ONNX Runtime serves the per-task forms (full, merged lora-squad, adapter-squad); the mixed-batch
    forms (adapter, --lora_form unmerged) run on PyTorch only."""
    if backend not in TASK_LIST_BACKENDS:
        raise ValueError(
            f"backend {backend!r} serves one task per run; a task list runs on --backend "
            f"{' or '.join(TASK_LIST_BACKENDS)}"
        )
    if executor != "thread":
        raise ValueError("a task list runs on --executor thread (Ray actors take two arrays per batch)")
    if dtype != "fp32":
        raise ValueError(f"a task list is served in fp32; drop --dtype {dtype}")
    if weights not in (None, "random"):
        raise ValueError(
            f"--weights {weights}: one checkpoint folder serves one task; serve a task list from a zoo "
            "(--models_dir DIR) or with --weights random"
        )
    if backend == "onnxruntime" and serving_form(model, lora_form) in MIXED_BATCH_FORMS:
        what = (
            "--lora_form unmerged serves the list's LoRA updates"
            if lora_form == "unmerged"
            else f"model {model!r} serves a task list's adapters"
        )
        raise ValueError(mixed_batches_on_pytorch_only(what))


def prepare(cfg: Any, task_options: Callable[[Any, Any], dict[str, Any]]) -> dict[str, Any]:
    """The Workload fields of a task-list run: every task resolved (ValueError naming the fix when
    one lacks a checkpoint or the tasks cannot share the form), the union QSL, one backend per
    worker. `task_options(cfg, served)`: the runner's per-task options (run with each task's name)."""
    # lazy: it imports torch (seconds), and the config check imports this module for check_options
    from models.multitask import MultiTaskBackend, resolve_tasks  # noqa: PLC0415

    task_list = parse_task_list(cfg.task)
    multi = resolve_tasks(
        cfg.model,
        task_list,
        cfg.encoder,
        cfg.weights,
        cfg.models_dir,
        cfg.pooling_layer,
        cfg.lora_form,
    )
    if cfg.accuracy:
        multi.check_for_accuracy()
    tokenizers = [m.tokenizer() for m in multi.models]
    prints = {tokenizer_fingerprint(t) for t in tokenizers}
    if len(prints) > 1:
        raise ValueError(
            f"the tasks' checkpoints of model {cfg.model!r} carry different tokenizers: one QSL "
            "cannot feed them; rebuild them on one encoder"
        )
    # each task's options as its own single-task run would take them (one task is served merged)
    one = [replace(cfg, task=m.task, languages=None, lora_form="merged") for m in multi.models]
    options = [task_options(c, m) for c, m in zip(one, multi.models, strict=True)]
    mixed = MixedTask.build(cfg.task, cfg.languages, cfg.count, options)
    features = mixed.features(tokenizers[0])
    qsl = QuerySampleLibrary(features, pad_id=int(tokenizers[0].pad_token_id), pad_to=cfg.pad_to)
    if cfg.backend == "onnxruntime":  # the per-task forms, one session per task
        # lazy: onnxruntime takes seconds to import, and a PyTorch run never needs it
        from models.onnx_backend import MultiTaskOnnxBackend  # noqa: PLC0415

        backend_class: Callable[..., Any] = MultiTaskOnnxBackend
    else:
        backend_class = MultiTaskBackend
    backends = [backend_class(multi, cfg.backend_options()) for _ in range(cfg.workers)]
    parts = [
        {
            "task": t.name,
            "start": s,
            "count": n,
            "task_options": o,
            "languages": list(t.active_languages) if cfg.languages else None,
            "score_options": {"heldout_rows": True} if "first_row" in o else {},
        }
        for t, s, n, o in zip(mixed.tasks, mixed.starts, mixed.counts, options, strict=True)
    ]
    source = str(getattr(tokenizers[0], "name_or_path", "") or multi.checkpoint)
    return {
        "served": multi,
        "backends": backends,
        "qsl": qsl,
        "task": mixed,
        "tokenizer": source,
        "task_options": {"tasks": parts, "synthetic": task_list.synthetic},
    }


def score(workload: Any, run_dir: Path) -> tuple[Any, str | None]:
    """Score a task-list run's accuracy log per task (tasks/mixed.py score_mixed_log): per-task
    folders run_dir/<task>/ and, in run_dir, accuracy.txt (every task's table and final line) and
    accuracy.json ({task: metrics}). Returns ({task: metrics}, None) or (None, why)."""
    try:
        results = score_mixed_log(
            run_dir / "mlperf_log_accuracy.json", workload.task_options["tasks"], workload.tokenizer
        )
    except ValueError as e:  # LogError / DataError
        return None, str(e)
    return {task: r.metrics for task, r in results.items()}, None
