"""XNLI / PAWS-X: accuracy of argmax(logits) per language, task score = unweighted mean over languages.

Response: float32 logits [num_labels] per sample; qsl order = languages in task order, rows in file
order.
"""

from __future__ import annotations

import numpy as np

from tasks.scoring.log import AccuracyLog, LogError, check_coverage, check_uniform_width
from tasks.scoring.result import ScoreResult, final_json, format_table, per_language_scores

# The tiny model zoo trains on the first rows of each dev language; `--heldout_rows` scores only the
# rows at or after these indices (0-based row within each language's file). The one place they live.
HELDOUT_FIRST_ROW: dict[str, int] = {"xnli": 1245, "pawsx": 1000}


def accuracy_by_language(
    logits: np.ndarray, labels: np.ndarray, language: np.ndarray, n_languages: int
) -> tuple[np.ndarray, np.ndarray]:
    """(count int64 [n_languages], accuracy x100 float64 [n_languages]; NaN where count is 0).

    logits float32 [n, num_labels]; labels int [n]; language int [n] (index into the task's languages).
    Prediction = argmax (the first maximal logit, as numpy and XTREME do).
    """
    correct = (np.argmax(logits, axis=1) == labels).astype(np.float64)
    count = np.bincount(language, minlength=n_languages)
    hits = np.bincount(language, weights=correct, minlength=n_languages)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, np.where(count > 0, 100.0 * hits / np.maximum(count, 1), np.nan)


def score_classification(task, log: AccuracyLog, heldout_rows: bool = False) -> ScoreResult:
    """Score a classification log against `task.read()` (labels, languages and rows in qsl order)."""
    examples = task.read()
    covered = check_coverage(log, len(examples), task.name)
    check_uniform_width(log, task.name, task.num_labels)
    languages = list(task.active_languages)
    lang_index = {lang: k for k, lang in enumerate(languages)}
    labels = np.array([e.label for e in examples], dtype=np.int64)
    language = np.array([lang_index[e.language] for e in examples], dtype=np.int64)
    rows = np.array([e.row for e in examples], dtype=np.int64)
    keep = covered.copy()
    if heldout_rows:
        if task.name not in HELDOUT_FIRST_ROW:
            raise LogError(
                f"{log.path}: --heldout_rows is defined for {', '.join(HELDOUT_FIRST_ROW)} only"
            )
        keep &= rows >= HELDOUT_FIRST_ROW[task.name]
    logits = np.zeros((len(examples), task.num_labels), dtype=np.float32)
    logits[log.qsl_idx] = log.dense()
    count, acc = accuracy_by_language(logits[keep], labels[keep], language[keep], len(languages))
    scored = count > 0
    if not scored.any():
        raise LogError(f"{log.path}: no logged sample is left to score (heldout_rows={heldout_rows})")
    warnings = list(log.warnings)
    if not scored.all():
        missing = [lang for lang, ok in zip(languages, scored, strict=True) if not ok]
        warnings.append(
            f"{log.path}: no scored samples for {', '.join(missing)}: left out of the average"
        )
    mean = float(np.mean(acc[scored]))
    per_lang = {lang: float(a) for lang, a, ok in zip(languages, acc, scored, strict=True) if ok}
    metrics = {
        "task": task.name,
        "accuracy": mean,
        "per_language": per_lang,
        "count": {lang: int(c) for lang, c in zip(languages, count, strict=True)},
        "samples_scored": int(count.sum()),
        "heldout_rows": HELDOUT_FIRST_ROW.get(task.name) if heldout_rows else None,
    }
    table = format_table(
        ["language", "count", "accuracy"],
        [
            [lang, int(c), float(a)]
            for lang, c, a, ok in zip(languages, count, acc, scored, strict=True)
            if ok
        ],
        ["average", int(count.sum()), mean],
    )
    hit = 100.0 * (np.argmax(logits[keep], axis=1) == labels[keep])
    per_sample = per_language_scores(
        [languages[k] for k in language[keep].tolist()], rows[keep].tolist(), hit.tolist()
    )
    return ScoreResult(
        metrics, table, final_json({"accuracy": mean}), warnings=warnings, per_sample=per_sample
    )
