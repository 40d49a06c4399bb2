"""Held-out dev figures of a built zoo (the recipe's last step) -> reports/zoo.md.

Runs the PyTorch backend over each task's features and scores them with the tasks' own metrics
(tasks/scoring) through an in-memory accuracy log. XNLI / PAWS-X: held-out rows only (every
language); TyDiQA: dev sets (training used train-en); Tatoeba: all pairs (nothing is trained on it).
These are tiny-model figures: they show the pipeline works end to end, not XLM-R's accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 64


def predict_log(backend, fs, indices: np.ndarray, kind: str, pad_id: int = 1):
    """Run `indices` of FeatureSet `fs` through the backend (length-sorted batches) -> AccuracyLog."""
    from tasks.data import pad_ragged
    from tasks.scoring.log import AccuracyLog

    order = indices[np.argsort(fs.lengths[indices], kind="stable")]
    outputs: dict[int, np.ndarray] = {}
    for lo in range(0, len(order), BATCH):
        rows = order[lo : lo + BATCH]
        ids, mask = pad_ragged(fs.input_ids, fs.offsets, rows, pad_id)
        out = backend.predict(ids, mask)
        for b, i in enumerate(rows):
            n = int(fs.lengths[i])
            outputs[int(i)] = out[b, :, :n].ravel() if kind == "qa" else out[b].ravel()
    qsl = np.array(sorted(outputs), dtype=np.int64)
    sizes = np.array([len(outputs[i]) for i in qsl], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    values = np.concatenate([outputs[i] for i in qsl]).astype(np.float32)
    return AccuracyLog(Path("<zoo-eval>"), qsl, offsets, values)


def evaluate(served, languages: str | None = None, rows: int | None = None) -> dict[str, Any]:
    """Score one ServedModel on its task's held-out data (XNLI/PAWS-X: the first `rows` held-out rows
    of each language, all when None); returns the final-line metrics + details."""
    from models.backends import create_backend
    from tasks.registry import get_task
    from tasks.scoring import score
    from tasks.scoring.classification import HELDOUT_FIRST_ROW

    task = get_task(served.task, languages=languages)
    tok = served.tokenizer()
    fs = task.features(tok, progress=False)
    indices = np.arange(len(fs))
    if served.task in HELDOUT_FIRST_ROW:  # the recipe's EVAL_ROWS start there
        first = HELDOUT_FIRST_ROW[served.task]
        row = fs.extra["row"]
        indices = indices[(row >= first) & (row < (first + rows if rows else np.inf))]
    backend = create_backend("pytorch", served)
    log = predict_log(backend, fs, indices, served.task_kind, tok.pad_token_id)
    kwargs = {"heldout_rows": True} if served.task in HELDOUT_FIRST_ROW else {}
    kwargs |= {"tokenizer": tok} if served.task_kind == "qa" else {}
    result = score(task, log, **kwargs)
    return {
        "final": json.loads(result.final_line),
        "languages": list(task.active_languages),
        "n": len(indices),
    }


def evaluate_zoo(
    models_dir: Path, encoder: str, models: list[str], tasks: list[str], sizes, progress=True
):
    """One row per (model, task) that the zoo has: model, task, metrics, languages, samples, seconds."""
    from models.registry import resolve

    rows = []
    langs = sizes.eval_languages or {}
    for model in models:
        for task in tasks:
            t0 = time.perf_counter()
            try:
                served = resolve(model, task, encoder, models_dir=models_dir)
            except FileNotFoundError:
                continue
            res = evaluate(served, langs.get(task), sizes.eval_rows)
            rows.append({"model": model, "task": task, **res, "seconds": time.perf_counter() - t0})
            if progress:
                print(f"[models] eval {model} {task}: {res['final']} ({res['n']} samples)", flush=True)
    return rows


def write_report(
    path: Path, rows: list[dict], encoder: str, sizes, train_s: float, total_s: float
) -> None:
    """reports/zoo.md: the figures, what they are and are not, and how long the build took."""
    lines = [
        f"# Model zoo: held-out dev figures of the `{encoder}` zoo",
        "",
        f"Built by `python -m harness models` (encoder {encoder}); training stages {train_s:.0f} s, "
        f"total with evaluation {total_s:.0f} s on this machine (2 shared CPU cores).",
        "",
        "**Tiny-model figures** (a 4-layer, 128-wide XLM-R pretrained here for minutes): they check the "
        "pipeline end to end; they are not XLM-R results. Held-out data only: XNLI rows from 1245 on and "
        "PAWS-X rows from 1000 on of every language"
        + (f", the first {sizes.eval_rows} of them per language" if sizes.eval_rows else "")
        + " (training used English rows before those), TyDiQA-GoldP dev (training used train-en), "
        "Tatoeba (no training on it). Scored by the tasks' own metrics.",
        "",
        "| model | task | metric | languages | samples |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        metric = ", ".join(f"{k} {v:.1f}" for k, v in r["final"].items() if isinstance(v, (int, float)))
        lines.append(
            f"| {r['model']} | {r['task']} | {metric} | {','.join(r['languages'])} | {r['n']} |"
        )
    lines += ["", f"Sizes: `{sizes}`", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
