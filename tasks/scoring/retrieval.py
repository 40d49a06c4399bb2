"""Tatoeba top-1 accuracy and BUCC 2018 margin-based bitext mining (XTREME's LASER-derived procedure).

Response: float32 embedding [hidden] per sentence (one hidden size for the whole log). qsl order: per
language pair (task order) the non-English sentences in file order, then the English ones.

Tatoeba: L2-normalise; each English sentence queries the non-English side; correct when its nearest
neighbour (cosine) is the line-aligned sentence; accuracy x100 per language, unweighted mean.
BUCC: de-duplicate identical sentences per side, L2-normalise, k=4 nearest neighbours both ways,
ratio margin score(x, y) = cos(x, y) / ((mean cos of x's kNN + mean cos of y's kNN) / 2); each side's
best candidate, both directions pooled, sorted by score, kept one-to-one greedily (score > 0); mapped
back to sentence ids; threshold tuned on gold (midpoint of the best-F1 cut and the next score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.scoring.log import AccuracyLog, LogError, check_coverage, check_uniform_width
from tasks.scoring.result import ScoreResult, final_json, format_table, per_language_scores

K_NEIGHBOURS = 4
CHUNK = 4096  # query rows per matrix product: CHUNK x n_database float32 at a time


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """float32 [n, d] rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1).astype(np.float32)


def nearest(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """int64 [n_queries]: index of each query's most similar (dot product) database row, first on
    ties."""
    out = np.empty(len(queries), dtype=np.int64)
    for lo in range(0, len(queries), CHUNK):
        out[lo : lo + CHUNK] = np.argmax(queries[lo : lo + CHUNK] @ database.T, axis=1)
    return out


def tatoeba_correct(src: np.ndarray, en: np.ndarray) -> np.ndarray:
    """bool [n]: English sentence i retrieves non-English sentence i. Inputs float32 [n, d], raw."""
    return nearest(l2_normalize(en), l2_normalize(src)) == np.arange(len(en))


def knn(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sims float32 [n, k] descending, idx int64 [n, k]) of the k most similar database rows.

    k rounds of argmax per chunk (much faster than argpartition for k = 4); ties: lower index first.
    """
    k = min(k, len(database))
    sims = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), CHUNK):
        s = queries[lo : lo + CHUNK] @ database.T
        rows = np.arange(len(s))
        for r in range(k):
            best = s.argmax(axis=1)
            idx[lo : lo + len(s), r] = best
            sims[lo : lo + len(s), r] = s[rows, best]
            s[rows, best] = -np.inf
    return sims, idx


def mine(
    x: np.ndarray, y: np.ndarray, k: int = K_NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio-margin mining of unique, L2-normalised x [n, d] against y [m, d].

    Returns (src int64 [p], trg int64 [p], score float64 [p]) one-to-one pairs, best score first,
    score > 0 (XTREME's mining threshold of 0). A side with no sentences mines no pair.
    """
    if not len(x) or not len(y):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    x2y_sim, x2y_idx = knn(x, y, k)
    y2x_sim, y2x_idx = knn(y, x, k)
    x2y_mean, y2x_mean = x2y_sim.mean(axis=1), y2x_sim.mean(axis=1)
    # scores of the k candidates of each side: cos / ((mean_x + mean_y) / 2), float32 as XTREME
    fwd = x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_idx]) / 2)
    bwd = y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_idx]) / 2)
    fwd_best = x2y_idx[np.arange(len(x)), fwd.argmax(axis=1)]
    bwd_best = y2x_idx[np.arange(len(y)), bwd.argmax(axis=1)]
    src = np.concatenate([np.arange(len(x)), bwd_best])
    trg = np.concatenate([fwd_best, np.arange(len(y))])
    score = np.concatenate([fwd.max(axis=1), bwd.max(axis=1)]).astype(np.float64)
    keep = np.zeros(len(score), dtype=bool)
    seen_src = np.zeros(len(x), dtype=bool)
    seen_trg = np.zeros(len(y), dtype=bool)
    for i in np.argsort(-score, kind="stable"):  # greedy one-to-one: inherently sequential
        s, t = src[i], trg[i]
        if not seen_src[s] and not seen_trg[t]:
            seen_src[s] = seen_trg[t] = True
            keep[i] = score[i] > 0
    order = np.argsort(-score[keep], kind="stable")
    return src[keep][order], trg[keep][order], score[keep][order]


def unify(sents: list[str]) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """De-duplicate identical sentences.

    Returns (rep int64 [u]: the row whose embedding represents unique sentence u (the LAST occurrence,
    as XTREME's `unique_embeddings`), first int64 [u]: first occurrence, members: rows of each unique).
    """
    index: dict[str, int] = {}
    members: list[list[int]] = []
    for row, s in enumerate(sents):
        u = index.setdefault(s, len(index))
        if u == len(members):
            members.append([])
        members[u].append(row)
    return np.array([m[-1] for m in members], dtype=np.int64), np.array([m[0] for m in members]), members


@dataclass
class BuccResult:
    """Mining outcome of one language pair. Scores are margins; P/R/F1 x100."""

    predictions: list[tuple[str, str, float]]  # those with score >= threshold
    threshold: float
    precision: float
    recall: float
    f1: float


def mine_ids(
    src_emb: np.ndarray,
    en_emb: np.ndarray,
    src_sents: list[str],
    en_sents: list[str],
    src_ids: list[str],
    en_ids: list[str],
    duplicates: str = "drop",
) -> list[tuple[str, str, float]]:
    """Mine on unique sentences, then map back to ids: (src_id, en_id, score) best first.

    duplicates="drop" (default, what XTREME's evaluator does): pairs whose sentence occurs more than
    once on its side are discarded; "all": a mined unique pair stands for every id pair with those
    sentences.
    """
    s_rep, _, s_members = unify(src_sents)
    e_rep, _, e_members = unify(en_sents)
    src, trg, score = mine(l2_normalize(src_emb[s_rep]), l2_normalize(en_emb[e_rep]))
    best: dict[tuple[str, str], float] = {}
    for s, t, sc in zip(src.tolist(), trg.tolist(), score.tolist(), strict=True):
        rows_s, rows_t = s_members[s], e_members[t]
        if duplicates == "drop" and (len(rows_s) > 1 or len(rows_t) > 1):
            continue
        for a in rows_s:
            for b in rows_t:
                key = (src_ids[a], en_ids[b])
                best[key] = max(sc, best.get(key, sc))
    items = sorted(best.items(), key=lambda kv: -kv[1])  # stable: mining order among equal scores
    return [(s, t, sc) for (s, t), sc in items]


def optimize_threshold(scores: np.ndarray, is_gold: np.ndarray, n_gold: int) -> float:
    """XTREME's `bucc_optimize`: walk candidates best first; at the first cut with the highest F1, return
    the midpoint between that candidate's score and the next one's. scores descending.

    Where the best cut is the last candidate (XTREME would index past the end) the threshold is that
    candidate's own score; with no correct candidate at all it is 0 (XTREME's initial value).
    """
    hits = np.cumsum(is_gold)
    n = np.arange(1, len(scores) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p, r = hits / n, hits / max(n_gold, 1)
        f1 = np.where(hits > 0, 2 * p * r / (p + r), 0.0)
    if not len(scores) or f1.max() <= 0:
        return 0.0
    i = int(np.argmax(f1))
    return float((scores[i] + scores[i + 1]) / 2) if i + 1 < len(scores) else float(scores[i])


def bucc_score(
    candidates: list[tuple[str, str, float]], gold: list[tuple[str, str]], threshold: float | None = None
) -> BuccResult:
    """Tune the threshold on gold (unless given), keep candidates with score >= threshold; P/R/F1
    x100."""
    gold_set = set(gold)
    scores = np.array([c[2] for c in candidates], dtype=np.float64)
    if threshold is None:
        is_gold = np.array([(s, t) in gold_set for s, t, _ in candidates], dtype=bool)
        threshold = optimize_threshold(scores, is_gold, len(gold_set))
    predictions = [c for c in candidates if c[2] >= threshold]
    correct = len(gold_set.intersection((s, t) for s, t, _ in predictions))
    if correct:
        precision, recall = correct / len(predictions), correct / len(gold_set)
        f1 = 2 * precision * recall / (precision + recall)
    else:
        precision = recall = f1 = 0.0
    return BuccResult(predictions, threshold, 100 * precision, 100 * recall, 100 * f1)


def source_counts(
    predictions: list[tuple[str, str, float]], gold: list[tuple[str, str]], src_ids: list[str]
) -> dict[str, list[int]]:
    """Per source sentence id: [correct, predicted, gold] pairs. Summed over any set of sources they
    give that set's P/R/F1 at the same threshold (the units of BUCC's paired bootstrap)."""
    counts = {i: [0, 0, 0] for i in src_ids}
    gold_set = set(gold)
    for s, t, _ in predictions:
        counts[s][1] += 1
        counts[s][0] += (s, t) in gold_set
    for s, _ in gold_set:
        counts.setdefault(s, [0, 0, 0])[2] += 1
    return counts


# --- scoring a log ---------------------------------------------------------------------------------
def pair_embeddings(
    task, log: AccuracyLog
) -> tuple[list, list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Split a retrieval log by language pair -> (pairs scored, [(src [n, d], en [m, d])], warnings).

    A pair is scored only when every one of its sentences was logged; a partly logged pair is left out
    with a message (its retrieval database would be incomplete); an unlogged pair is left out too.
    """
    pairs = task.read()
    sizes = [(len(p.src_sents), len(p.en_sents)) for p in pairs]
    n = sum(a + b for a, b in sizes)
    covered = check_coverage(log, n, task.name)
    width = check_uniform_width(log, task.name)
    if width <= 3:  # 2 or 3 floats are classification logits, not sentence embeddings
        raise LogError(
            f"{log.path}: {width}-float responses are not embeddings: "
            f"this looks like a log from {log.shape_guess()}"
        )
    emb = np.zeros((n, width), dtype=np.float32)
    emb[log.qsl_idx] = log.dense()
    kept, arrays, warnings = [], [], list(log.warnings)
    lo = 0
    for p, (a, b) in zip(pairs, sizes, strict=True):
        got = int(covered[lo : lo + a + b].sum())
        if got == a + b:
            kept.append(p)
            arrays.append((emb[lo : lo + a], emb[lo + a : lo + a + b]))
        elif got:
            warnings.append(
                f"{log.path}: error for {p.language}: only {got} of its {a + b} sentences were logged "
                f"(qsl {lo}..{lo + a + b - 1}); a pair must be complete to be scored: left out"
            )
        lo += a + b
    if not kept:
        raise LogError(
            f"{log.path}: no language pair of {task.name} is completely logged; nothing to score"
        )
    return kept, arrays, warnings


def score_tatoeba(task, log: AccuracyLog) -> ScoreResult:
    """Top-1 accuracy per language (English queries, non-English database), mean over languages."""
    pairs, arrays, warnings = pair_embeddings(task, log)
    acc = {}
    count = {}
    units: tuple[list, list, list] = ([], [], [])  # language, sentence index, 100 x correct
    for p, (src, en) in zip(pairs, arrays, strict=True):
        if len(src) != len(en):
            raise LogError(
                f"{log.path}: Tatoeba pair {p.language} is not line-aligned ({len(src)} vs {len(en)})"
            )
        hit = 100.0 * tatoeba_correct(src, en)
        acc[p.language] = float(hit.mean())
        count[p.language] = len(en)
        units[0].extend([p.language] * len(hit))
        units[1].extend(range(len(hit)))
        units[2].extend(hit.tolist())
    mean = float(np.mean(list(acc.values())))
    metrics = {"task": task.name, "accuracy": mean, "per_language": acc, "count": count}
    table = format_table(
        ["language", "count", "accuracy"],
        [[lang, count[lang], acc[lang]] for lang in acc],
        ["average", sum(count.values()), mean],
    )
    return ScoreResult(
        metrics,
        table,
        final_json({"accuracy": mean}),
        warnings=warnings,
        per_sample=per_language_scores(*units),
    )


def score_bucc(
    task, log: AccuracyLog, duplicates: str = "drop", threshold: float | None = None
) -> ScoreResult:
    """Mine each pair, tune the threshold on its gold (or apply `threshold`); P/R/F1 per pair and
    their mean."""
    if duplicates not in ("all", "drop"):
        raise LogError(f"{log.path}: duplicates must be 'all' or 'drop', got {duplicates!r}")
    pairs, arrays, warnings = pair_embeddings(task, log)
    per: dict[str, BuccResult] = {}
    units: tuple[list, list, list] = ([], [], [])  # language, source id, [correct, predicted, gold]
    for p, (src, en) in zip(pairs, arrays, strict=True):
        if p.gold is None and threshold is None:
            raise LogError(f"{log.path}: {p.language}-en has no gold alignments: pass --threshold")
        cands = mine_ids(src, en, p.src_sents, p.en_sents, p.src_ids, p.en_ids, duplicates)
        per[p.language] = bucc_score(cands, p.gold or [], threshold)
        counts = source_counts(per[p.language].predictions, p.gold or [], p.src_ids)
        units[0].extend([p.language] * len(counts))
        units[1].extend(counts)
        units[2].extend(counts.values())
    tuned = threshold is None
    keys = ("f1", "precision", "recall")
    mean = {k: float(np.mean([getattr(r, k) for r in per.values()])) for k in keys}
    thr: float | dict[str, float] = (
        next(iter(per.values())).threshold
        if len(per) == 1
        else {lang: r.threshold for lang, r in per.items()}
    )
    note = (
        "threshold tuned on the gold of the same split (XTREME tunes on the sample split and "
        "applies it to test; only the sample split is bundled, so this is the tuned-threshold F1)"
        if tuned
        else "threshold given by the user"
    )
    metrics = {
        "task": task.name,
        **mean,
        "threshold": thr,
        "threshold_note": note,
        "duplicates": duplicates,
        "per_language": {
            lang: {k: getattr(r, k) for k in (*keys, "threshold")} | {"mined": len(r.predictions)}
            for lang, r in per.items()
        },
    }
    table = format_table(
        ["pair", "mined", "precision", "recall", "f1", "threshold"],
        [
            [f"{lang}-en", len(r.predictions), r.precision, r.recall, r.f1, f"{r.threshold:.6f}"]
            for lang, r in per.items()
        ],
        [
            "average",
            sum(len(r.predictions) for r in per.values()),
            mean["precision"],
            mean["recall"],
            mean["f1"],
            "",
        ],
    )
    table += f"\nnote: {note}"
    predictions = [c for r in per.values() for c in r.predictions]
    final = final_json(
        {"f1": mean["f1"], "precision": mean["precision"], "recall": mean["recall"], "threshold": thr}
    )
    per_sample = per_language_scores(*units, statistic="f1_counts")
    return ScoreResult(
        metrics, table, final, predictions, "predictions.tsv", warnings, per_sample=per_sample
    )
