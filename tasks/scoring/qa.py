"""TyDiQA-GoldP (SQuAD v1.1 format): decode the logged start/end logits into answers and score them.

Response of window i: float32 [2 * len_i] = len_i start logits then len_i end logits (len_i = the
window's token count). The windows come from `task.features(tokenizer)`, so the tokenizer must be the
one the run used (`--tokenizer`, or the "tokenizer" entry of run_config.json beside the log).

Coverage: an example is scored when at least one of its windows is logged (decoded from the logged
windows); an example with no logged window is left out of the averages (reported as a warning), so a
partial log scores the questions it covers rather than counting the others as wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.scoring.log import RUN_CONFIG, AccuracyLog, LogError, check_coverage, read_run_config
from tasks.scoring.result import ScoreResult, final_json, format_table, per_language_scores
from tasks.scoring.squad import best_span, em_f1, max_context_mask


def resolve_tokenizer(log_path: Path, tokenizer=None):
    """A tokenizer object: `tokenizer` itself, a path to load, or run_config.json's "tokenizer" entry
    (searched in the log's folder, then its parent; relative paths are taken from that file's folder)."""
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        return tokenizer
    where = f"--tokenizer {tokenizer}"
    if tokenizer is None:
        for folder in (log_path.parent, log_path.parent.parent):
            cfg = folder / RUN_CONFIG
            if cfg.is_file():
                config = read_run_config(cfg, "needed for the run's tokenizer; or pass --tokenizer PATH")
                value = config.get("tokenizer")
                if not isinstance(value, str) or not value:
                    raise LogError(f'{cfg}: has no "tokenizer" entry; pass --tokenizer PATH')
                tokenizer = folder / value  # an absolute value stays itself (pathlib's join)
                where = f'{cfg} ("tokenizer": {value!r})'
                break
        else:
            raise LogError(
                f"{log_path}: TyDiQA needs the run's tokenizer to rebuild the windows: "
                f'pass --tokenizer PATH (no {RUN_CONFIG} with a "tokenizer" entry beside the log)'
            )
    # lazy: transformers takes seconds to import, and only TyDiQA scoring needs a tokenizer
    from transformers import AutoTokenizer  # noqa: PLC0415

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as e:
        raise LogError(f"cannot load the tokenizer from {where}: {str(e).splitlines()[0]}") from None


def check_window_sizes(log: AccuracyLog, lengths: np.ndarray, task: str) -> None:
    """Entry sizes must be 2 x the window's token count; LogError saying what the log looks like."""
    want = 2 * lengths[log.qsl_idx]
    bad = np.flatnonzero(log.sizes != want)
    if not len(bad):
        return
    j = int(bad[0])
    guess = log.shape_guess()
    hint = (
        f"this looks like a log from {guess}"
        if not guess.startswith("tydiqa")
        else "was the log made with another tokenizer or max length? (--tokenizer)"
    )
    raise LogError(
        f"{log.path}: {len(bad)} of {len(log)} entries do not have 2 x window-length floats "
        f"(first: qsl_idx {int(log.qsl_idx[j])} has {int(log.sizes[j])}, "
        f"expected {int(want[j])}); {hint}"
    )


def decode(log: AccuracyLog, fs, n_examples: int) -> list[tuple[float, int, int, int] | None]:
    """Best (score, window, s, e) per example over its logged windows; None when no valid span."""
    ex_of = fs.extra["example_index"].astype(np.int64)
    cs_all = fs.extra["char_start"]
    ok_start = max_context_mask(ex_of, cs_all, fs.offsets)
    best: list[tuple[float, int, int, int] | None] = [None] * n_examples
    for j, q in enumerate(log.qsl_idx.tolist()):
        lo, hi = int(fs.offsets[q]), int(fs.offsets[q + 1])
        v = log.entry(j)
        span = best_span(v[: hi - lo], v[hi - lo :], cs_all[lo:hi] >= 0, ok_start[lo:hi])
        ex = int(ex_of[q])
        if span is not None and (best[ex] is None or span[0] > best[ex][0]):  # earlier window wins ties
            best[ex] = (span[0], q, span[1], span[2])
    return best


def score_tydiqa(task, log: AccuracyLog, tokenizer=None) -> ScoreResult:
    """SQuAD v1.1 EM/F1 x100 per language; final line = their unweighted means over languages."""
    tok = resolve_tokenizer(log.path, tokenizer)
    examples = task.read()
    fs = task.features(tok)
    covered = check_coverage(log, len(fs), task.name)
    check_window_sizes(log, fs.lengths, task.name)
    ex_of = fs.extra["example_index"].astype(np.int64)
    has_window = np.zeros(len(examples), dtype=bool)
    has_window[ex_of[covered]] = True
    warnings = list(log.warnings)
    if not has_window.all():
        warnings.append(
            f"{log.path}: {int((~has_window).sum())} of {len(examples)} questions have no logged "
            "window: left out of the scores"
        )
    best = decode(log, fs, len(examples))
    cs, ce = fs.extra["char_start"], fs.extra["char_end"]
    predictions: dict[str, str] = {}
    em: dict[str, list[float]] = {}
    f1: dict[str, list[float]] = {}
    unit_f1: list[float] = []  # per scored question, in example order (ScoreResult.per_sample)
    for k, ex in enumerate(examples):
        if not has_window[k]:
            continue
        b = best[k]
        text = (
            ""
            if b is None
            else ex.context[int(cs[fs.offsets[b[1]] + b[2]]) : int(ce[fs.offsets[b[1]] + b[3]])]
        )
        predictions[ex.qid] = text
        e, f = em_f1(text, ex.answers)
        em.setdefault(ex.language, []).append(e)
        f1.setdefault(ex.language, []).append(f)
        unit_f1.append(100.0 * f)
    langs = [lang for lang in task.active_languages if lang in em]
    per = {
        lang: {
            "exact_match": 100 * float(np.mean(em[lang])),
            "f1": 100 * float(np.mean(f1[lang])),
            "count": len(em[lang]),
        }
        for lang in langs
    }
    mean_em = float(np.mean([per[lang]["exact_match"] for lang in langs]))
    mean_f1 = float(np.mean([per[lang]["f1"] for lang in langs]))
    metrics = {
        "task": task.name,
        "exact_match": mean_em,
        "f1": mean_f1,
        "per_language": per,
        "questions_scored": len(predictions),
        "windows_logged": len(log),
    }
    table = format_table(
        ["language", "count", "exact_match", "f1"],
        [[lang, per[lang]["count"], per[lang]["exact_match"], per[lang]["f1"]] for lang in langs],
        ["average", len(predictions), mean_em, mean_f1],
    )
    final = final_json({"exact_match": mean_em, "f1": mean_f1})
    scored = [ex for k, ex in enumerate(examples) if has_window[k]]
    per_sample = per_language_scores([ex.language for ex in scored], [ex.qid for ex in scored], unit_f1)
    return ScoreResult(
        metrics, table, final, predictions, "predictions.json", warnings, per_sample=per_sample
    )
