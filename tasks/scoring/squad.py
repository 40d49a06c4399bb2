"""The SQuAD v1.1 metric (as XTREME applies it to TyDiQA-GoldP and XQuAD) and n-best span decoding.

Metric (identical to the official `evaluate-v1.1.py`): lowercase (Python's Unicode `str.lower`), drop
ASCII punctuation (`string.punctuation`), replace the English articles a/an/the (regex word boundaries)
by a space, collapse whitespace. EM = equal normalised strings; F1 = bag-of-tokens overlap; each the max
over the gold answers; x100 by the caller. The same normalisation is used for every language.

Decoding (XTREME's run_squad via transformers' `compute_predictions_logits`): per window the top-20
start and top-20 end logits; a span (s, e) is valid when both tokens are context tokens
(char_start >= 0), s <= e, e - s + 1 <= 30, and window w is s's "max context" window; the answer is the
valid span with the highest start + end logit over all windows of the example. Its text is the context
slice `context[char_start[s]:char_end[e]]` (the offset-mapping convention of the newer HF QA scripts).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

N_BEST = 20
MAX_ANSWER_TOKENS = 30

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lower case, remove ASCII punctuation, remove articles, collapse
    whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 in [0, 1] of normalised strings (0 when nothing overlaps)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def em_f1(prediction: str | None, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) in [0, 1], each maximised over the gold answers; an unanswered question (None) is 0."""
    if prediction is None or not golds:
        return 0.0, 0.0
    return max(exact_match(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds)


def max_context_mask(
    example_index: np.ndarray, char_start: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """bool [total_tokens]: True where the token's window is its max-context window (XTREME's rule).

    A context token at position j of the n context tokens of its window scores
    min(j, n - 1 - j) + 0.01 * n; among the windows of one example holding the same context token
    (identified by its char_start), the highest score wins, the earliest window on ties.
    Question and special tokens (char_start < 0) are False.
    """
    n_win = len(offsets) - 1
    lengths = np.diff(offsets)
    win = np.repeat(np.arange(n_win), lengths)
    ctx = char_start >= 0
    pos_ctx = np.flatnonzero(ctx)
    w = win[pos_ctx]
    first = np.searchsorted(
        pos_ctx, offsets[:-1]
    )  # index (in pos_ctx) of each window's first context token
    n_ctx = np.bincount(w, minlength=n_win)
    j = np.arange(len(pos_ctx)) - first[w]
    score = np.minimum(j, n_ctx[w] - 1 - j) + 0.01 * n_ctx[w]
    ex = example_index[w].astype(np.int64)
    cs = char_start[pos_ctx].astype(np.int64)
    order = np.lexsort(
        (w, -score, cs, ex)
    )  # per (example, token): best score first, then earliest window
    key_ex, key_cs = ex[order], cs[order]
    head = np.ones(len(order), dtype=bool)
    head[1:] = (key_ex[1:] != key_ex[:-1]) | (key_cs[1:] != key_cs[:-1])
    mask = np.zeros(len(char_start), dtype=bool)
    mask[pos_ctx[order[head]]] = True
    return mask


def best_span(
    start: np.ndarray, end: np.ndarray, is_context: np.ndarray, is_start_ok: np.ndarray
) -> tuple[float, int, int] | None:
    """The best valid (score, s, e) of one window, or None. All arrays have the window's length.

    Candidates are the top-N_BEST starts x top-N_BEST ends (stable order: lower index first on ties).
    """
    top_s = np.argsort(-start, kind="stable")[:N_BEST]
    top_e = np.argsort(-end, kind="stable")[:N_BEST]
    s, e = np.meshgrid(top_s, top_e, indexing="ij")  # [20, 20], row-major = HF's loop order
    ok = is_start_ok[s] & is_context[e] & (e >= s) & (e - s + 1 <= MAX_ANSWER_TOKENS)
    if not ok.any():
        return None
    total = np.where(ok, start[s].astype(np.float64) + end[e], -np.inf)  # HF sums Python floats
    k = int(np.argmax(total))  # first maximum: HF keeps the first of equal scores (stable sort)
    return float(total.flat[k]), int(s.flat[k]), int(e.flat[k])
