"""Scorers against expectations worked out by hand, never taken from the scoring code's constants.

Each case is small enough to check on paper: a few samples per language with UNEQUAL counts (so an
unweighted mean over languages and a sample-weighted one differ), the first held-out row and the one
before it, answers and mined pairs with zero overlap. Logs are written as LoadGen writes them: a JSON
list of {seq_id, qsl_idx, data = uppercase hex of the little-endian response bytes}.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from common.paths import DATA
from tasks.base import FeatureSet
from tasks.data import ClassificationExample, QAExample, RetrievalPair
from tasks.registry import get_task
from tasks.scoring import LogError, ScoreResult, main, retrieval, score, score_log, write_outputs
from tasks.scoring.cli import build_parser, run_task_options
from tasks.scoring.log import AccuracyLog, check_coverage, check_uniform_width, read_accuracy_log
from tasks.scoring.qa import resolve_tokenizer
from tasks.scoring.result import format_table
from tasks.scoring.squad import best_span, max_context_mask
from tests.test_accuracy import write_log


def read(path: Path) -> AccuracyLog:
    return read_accuracy_log(path)


@dataclass
class HandTask:
    """The slice of a Task the scorers read, holding hand-made examples (qsl order = list order)."""

    name: str
    scoring: str
    examples: list
    active_languages: tuple[str, ...]
    num_labels: int = 3
    feature_set: FeatureSet | None = None

    def read(self) -> list:
        return self.examples

    def features(self, tokenizer) -> FeatureSet:
        return self.feature_set


def one_hot(k: int, n: int = 3) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[k]


# --- classification (XNLI / PAWS-X) ------------------------------------------------------------------
def hand_classification_task() -> tuple[HandTask, list[np.ndarray]]:
    """en: 3 samples, 2 right (66.67); fr: 1 sample, wrong (0); sw: 2 samples, both right (100), one of
    them by a three-way tie that argmax resolves to the FIRST label (as numpy and XTREME do)."""
    rows = [("en", 0, 0), ("en", 1, 1), ("en", 2, 2), ("fr", 0, 1), ("sw", 0, 2), ("sw", 1, 0)]
    ex = [ClassificationExample(lang, row, "a", "b", label) for lang, row, label in rows]
    logits = [
        one_hot(0),
        one_hot(1),
        one_hot(0),  # en row 2: label 2, predicted 0
        one_hot(0),  # fr row 0: label 1, predicted 0
        np.array([0.1, -3.0, 0.2], np.float32),  # sw row 0: label 2, the largest logit
        np.array([5.0, 5.0, 5.0], np.float32),  # sw row 1: label 0, a tie -> label 0
    ]
    return HandTask("xnli", "classification", ex, ("en", "fr", "sw")), logits


def test_classification_task_score_is_the_unweighted_mean_over_languages(tmp_path):
    task, logits = hand_classification_task()
    r = score(task, read(write_log(tmp_path / "log.json", logits)))
    assert r.metrics["per_language"] == pytest.approx({"en": 200 / 3, "fr": 0.0, "sw": 100.0})
    assert r.metrics["count"] == {"en": 3, "fr": 1, "sw": 2}
    assert r.metrics["samples_scored"] == 6
    # (66.67 + 0 + 100) / 3 = 55.56; the sample-weighted mean would be 4 right of 6 = 66.67
    assert r.metrics["accuracy"] == pytest.approx(500 / 9)
    assert json.loads(r.final_line) == {"accuracy": pytest.approx(500 / 9)}
    assert [line.split() for line in r.table_text.splitlines()] == [
        ["language", "count", "accuracy"],
        ["-" * 25],
        ["en", "3", "66.67"],
        ["fr", "1", "0.00"],
        ["sw", "2", "100.00"],
        ["-" * 25],
        ["average", "6", "55.56"],
    ]
    assert r.per_sample == {
        "statistic": "mean",
        "per_language": {
            "en": {"ids": [0, 1, 2], "scores": [100.0, 100.0, 0.0]},
            "fr": {"ids": [0], "scores": [0.0]},
            "sw": {"ids": [0, 1], "scores": [100.0, 100.0]},
        },
    }
    assert r.metrics["heldout_rows"] is None and r.warnings == []
    assert list(r.metrics) == [
        "task",
        "accuracy",
        "per_language",
        "count",
        "samples_scored",
        "heldout_rows",
    ]
    assert r.metrics["task"] == "xnli"


def test_classification_language_without_samples_is_left_out_of_the_mean(tmp_path):
    task, logits = hand_classification_task()
    # only en rows 0 and 2 (1 of 2 right) and sw row 0 (right): fr has nothing logged
    r = score(
        task, read(write_log(tmp_path / "log.json", [logits[0], logits[2], logits[4]], qsl=[0, 2, 4]))
    )
    assert r.metrics["per_language"] == {"en": 50.0, "sw": 100.0}
    assert r.metrics["accuracy"] == 75.0  # (50 + 100) / 2, not (50 + 0 + 100) / 3
    assert r.metrics["count"] == {"en": 2, "fr": 0, "sw": 1}
    assert any("no scored samples for fr: left out of the average" in w for w in r.warnings)
    assert any("partial coverage: 3 of 6 samples logged (3 missing)" in w for w in r.warnings)
    assert [line.split()[0] for line in r.table_text.splitlines()] == [
        "language",
        "-" * 25,
        "en",
        "sw",
        "-" * 25,
        "average",
    ]


def test_xnli_task_score_with_unequal_language_counts_is_unweighted(tmp_path):
    """The real task: every de row logged and right (100), 4 sw rows logged, 1 right (25). The task
    score is (100 + 25) / 2 = 62.5; a sample-weighted mean would give (2490 + 1) / 2494 = 99.88."""
    task = get_task("xnli", languages="de,sw")
    ex = task.read()
    de = [k for k, e in enumerate(ex) if e.language == "de"]
    sw = [k for k, e in enumerate(ex) if e.language == "sw"][:4]
    logits = [one_hot(ex[k].label) for k in de]
    logits += [one_hot(ex[sw[0]].label)] + [one_hot((ex[k].label + 1) % 3) for k in sw[1:]]
    r = score_log("xnli", write_log(tmp_path / "log.json", logits, qsl=de + sw), languages="de,sw")
    assert r.metrics["count"] == {"de": 2490, "sw": 4}
    assert r.metrics["per_language"] == {"de": 100.0, "sw": 25.0}
    assert r.metrics["accuracy"] == 62.5


def dev_rows(task_name: str, language: str) -> int:
    """Data rows of a dev file (no header line), counted from the file itself."""
    with gzip.open(DATA / task_name / f"dev-{language}.tsv.gz", "rt", encoding="utf-8") as f:
        return sum(1 for _ in f)


@pytest.mark.parametrize(("task_name", "rows"), [("xnli", 2490), ("pawsx", 2000)])
def test_heldout_rows_start_at_the_second_half_of_each_language(tmp_path, task_name, rows):
    """The tiny zoo trains on the first half of each dev language, so the held-out rows are the
    second half: rows n/2 .. n-1 (XNLI dev: 2490 rows per language, PAWS-X dev: 2000). Logged: the
    two rows on either side of the boundary, right, wrong, wrong, right. Held out: the last two."""
    assert dev_rows(task_name, "de") == rows
    first = rows // 2
    task = get_task(task_name, languages="de")
    ex = task.read()
    assert [e.row for e in ex] == list(range(rows))
    n = task.num_labels
    qsl = [first - 2, first - 1, first, first + 1]
    logits = [
        one_hot(ex[first - 2].label, n),
        one_hot((ex[first - 1].label + 1) % n, n),
        one_hot((ex[first].label + 1) % n, n),
        one_hot(ex[first + 1].label, n),
    ]
    log = write_log(tmp_path / "log.json", logits, qsl=qsl)
    held = score_log(task_name, log, languages="de", heldout_rows=True)
    assert held.metrics["count"] == {"de": 2}  # rows first and first + 1
    assert held.metrics["accuracy"] == 50.0
    assert held.metrics["heldout_rows"] == first
    assert held.per_sample["per_language"]["de"]["ids"] == [first, first + 1]
    every = score_log(task_name, log, languages="de")
    assert every.metrics["count"] == {"de": 4} and every.metrics["accuracy"] == 50.0


def test_first_row_task_option_serves_exactly_the_second_half():
    task = get_task("xnli", languages="de", first_row=2490 // 2)
    rows = [e.row for e in task.read()]
    assert rows[0] == 1245 and rows[-1] == 2489 and len(rows) == 1245


def test_heldout_rows_of_a_task_without_a_heldout_split_is_an_error(tmp_path):
    task, logits = hand_classification_task()
    task.name = "hand"
    with pytest.raises(LogError, match=r"log\.json: --heldout_rows is defined for xnli, pawsx only"):
        score(task, read(write_log(tmp_path / "log.json", logits)), heldout_rows=True)


def test_nothing_left_after_the_heldout_filter_is_an_error(tmp_path):
    task, logits = hand_classification_task()  # rows 0..2 only: none held out
    with pytest.raises(LogError, match=r"no logged sample is left to score \(heldout_rows=True\)"):
        score(task, read(write_log(tmp_path / "log.json", logits)), heldout_rows=True)


# --- TyDiQA -------------------------------------------------------------------------------------
def window(context_tokens: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """char_start, char_end of one window: <s> question </s> context... </s> (special tokens -1)."""
    cs = [-1, -1, -1] + [a for a, _ in context_tokens] + [-1]
    ce = [-1, -1, -1] + [b for _, b in context_tokens] + [-1]
    return cs, ce


def hand_tydiqa() -> tuple[HandTask, list[tuple[int, int]]]:
    """en q1: 'Paris is the capital', gold 'Paris' -> predicted 'Paris' (EM 1, F1 1);
    en q2: 'big red dog', gold 'red dog' -> predicted 'big red' (EM 0, P 1/2, R 1/2, F1 1/2);
    sw q3: 'mbwa mkubwa', gold 'paka' -> predicted 'mbwa' (no overlap: EM 0, F1 0);
    sw q4: never logged (left out). Returns the task and the (start, end) token to mark per window."""
    examples = [
        QAExample("en", "q1", "?", "Paris is the capital", ["Paris"], [0]),
        QAExample("en", "q2", "?", "big red dog", ["red dog"], [4]),
        QAExample("sw", "q3", "?", "mbwa mkubwa", ["paka"], [0]),
        QAExample("sw", "q4", "?", "paka", ["paka"], [0]),
    ]
    windows = [
        window([(0, 5), (6, 8), (9, 12), (13, 20)]),
        window([(0, 3), (4, 7), (8, 11)]),
        window([(0, 4), (5, 11)]),
        window([(0, 4)]),
    ]
    lengths = [len(cs) for cs, _ in windows]
    fs = FeatureSet(
        task="tydiqa",
        languages=("en", "sw"),
        input_ids=np.arange(sum(lengths), dtype=np.int32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        language=np.array([0, 0, 1, 1], np.int16),
        extra={
            "example_index": np.arange(4, dtype=np.int32),
            "char_start": np.array(sum((cs for cs, _ in windows), []), np.int32),
            "char_end": np.array(sum((ce for _, ce in windows), []), np.int32),
        },
    )
    marks = [(3, 3), (3, 4), (3, 3)]  # token positions in the window (3 = first context token)
    return HandTask("tydiqa", "squad", examples, ("en", "sw"), feature_set=fs), marks


def span_logits(length: int, s: int, e: int) -> np.ndarray:
    start, end = np.zeros(length, np.float32), np.zeros(length, np.float32)
    start[s], end[e] = 10.0, 10.0
    return np.concatenate([start, end])


def test_tydiqa_hand_computed_em_f1_with_unequal_counts_and_zero_overlap(tmp_path):
    task, marks = hand_tydiqa()
    lengths = task.feature_set.lengths
    resp = [span_logits(int(lengths[w]), s, e) for w, (s, e) in enumerate(marks)]
    r = score(task, read(write_log(tmp_path / "log.json", resp)), tokenizer=object())
    assert r.predictions == {"q1": "Paris", "q2": "big red", "q3": "mbwa"}
    per = r.metrics["per_language"]
    assert per["en"] == pytest.approx({"exact_match": 50.0, "f1": 75.0, "count": 2})
    assert per["sw"] == {"exact_match": 0.0, "f1": 0.0, "count": 1}
    # unweighted over languages: EM (50 + 0) / 2, F1 (75 + 0) / 2 (weighted: 33.33 and 50)
    assert json.loads(r.final_line) == {"exact_match": 25.0, "f1": 37.5}
    assert r.metrics["questions_scored"] == 3 and r.metrics["windows_logged"] == 3
    assert r.metrics["task"] == "tydiqa" and list(r.metrics) == [
        "task",
        "exact_match",
        "f1",
        "per_language",
        "questions_scored",
        "windows_logged",
    ]
    assert r.predictions_name == "predictions.json"
    assert any("1 of 4 questions have no logged window" in w for w in r.warnings)
    assert r.per_sample["per_language"] == {
        "en": {"ids": ["q1", "q2"], "scores": [100.0, 50.0]},
        "sw": {"ids": ["q3"], "scores": [0.0]},
    }
    assert [line.split() for line in r.table_text.splitlines()] == [
        ["language", "count", "exact_match", "f1"],
        ["-" * 35],
        ["en", "2", "50.00", "75.00"],
        ["sw", "1", "0.00", "0.00"],
        ["-" * 35],
        ["average", "3", "25.00", "37.50"],
    ]


def test_tydiqa_special_tokens_are_never_part_of_an_answer(tmp_path):
    task, _ = hand_tydiqa()
    lengths = task.feature_set.lengths
    resp = [np.zeros(2 * int(lengths[0]), np.float32)]
    resp[0][0], resp[0][int(lengths[0])] = 50.0, 50.0  # <s> as start and end: not context
    r = score(task, read(write_log(tmp_path / "log.json", resp)), tokenizer=object())
    # the special token is skipped; among context tokens all logits are 0: the first valid span wins
    assert r.predictions == {"q1": "Paris"}
    assert r.metrics["per_language"] == {"en": {"exact_match": 100.0, "f1": 100.0, "count": 1}}


def qa_features(windows: list[tuple[int, list[tuple[int, int]]]], languages=("en",)) -> FeatureSet:
    """FeatureSet of hand-made windows: (example index, context tokens' (char_start, char_end))."""
    cs, ce, lengths = [], [], []
    for _, tokens in windows:
        a, b = window(tokens)
        cs += a
        ce += b
        lengths.append(len(a))
    return FeatureSet(
        task="tydiqa",
        languages=languages,
        input_ids=np.arange(sum(lengths), dtype=np.int32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        language=np.zeros(len(windows), np.int16),
        extra={
            "example_index": np.array([ex for ex, _ in windows], np.int32),
            "char_start": np.array(cs, np.int32),
            "char_end": np.array(ce, np.int32),
        },
    )


def test_tydiqa_windows_max_context_ties_and_a_window_without_a_span(tmp_path):
    """One question over 'aa bb cc' in three windows: W0 = aa bb, W1 = bb cc, W2 = bb.
    Max context (min(j, n - 1 - j) + 0.01 n): aa only in W0; bb scores .02 in W0, .02 in W1, .01 in
    W2 -> W0 (the earliest of the best); cc only in W1. Logits: W0 start aa 10, end aa 10 -> 'aa' 20.
    W1 start bb 30 (not a valid start there), cc 10, end cc 10 -> 'cc' 20: a tie, the earlier window
    wins ('aa'); were bb a valid start in W1, 'bb cc' (40) would win. W2: bb is no valid start: no
    span."""
    ex = [QAExample("en", "q5", "?", "aa bb cc", ["aa"], [0])]
    fs = qa_features([(0, [(0, 2), (3, 5)]), (0, [(3, 5), (6, 8)]), (0, [(3, 5)])])
    task = HandTask("tydiqa", "squad", ex, ("en",), feature_set=fs)
    w0, w1, w2 = (np.zeros(2 * int(n), np.float32) for n in fs.lengths)
    w0[3], w0[6 + 3] = 10, 10  # start aa, end aa
    w1[3], w1[4], w1[6 + 4] = 30, 10, 10  # start bb, start cc, end cc
    w2[3], w2[5 + 3] = 50, 50  # bb: never a start here
    r = score(task, read(write_log(tmp_path / "log.json", [w0, w1, w2])), tokenizer=object())
    assert r.predictions == {"q5": "aa"}
    assert json.loads(r.final_line) == {"exact_match": 100.0, "f1": 100.0}
    only_w2 = score(task, read(write_log(tmp_path / "w2.json", [w2], qsl=[2])), tokenizer=object())
    assert only_w2.predictions == {"q5": ""}  # no valid span in the logged window: an empty answer
    assert json.loads(only_w2.final_line) == {"exact_match": 0.0, "f1": 0.0}
    w1_w2 = score(task, read(write_log(tmp_path / "w12.json", [w1, w2], qsl=[1, 2])), tokenizer=object())
    assert w1_w2.predictions == {"q5": "cc"}
    w1[4] = 20  # 'cc' now scores 30 in W1: a later window with a better span wins
    better = score(task, read(write_log(tmp_path / "b.json", [w0, w1, w2])), tokenizer=object())
    assert better.predictions == {"q5": "cc"}


def test_tydiqa_entry_of_the_wrong_size_names_both_sizes(tmp_path):
    task, _ = hand_tydiqa()
    lengths = task.feature_set.lengths
    bad = write_log(
        tmp_path / "log.json", [np.zeros(2 * int(lengths[0]), np.float32), np.zeros(4, np.float32)]
    )
    # window 1 = <s> ? </s> + 3 context tokens + </s> = 7 tokens: 14 floats expected
    with pytest.raises(LogError) as info:
        score(task, read(bad), tokenizer=object())
    assert str(info.value).endswith(
        "1 of 2 entries do not have 2 x window-length floats (first: qsl_idx 1 has 4, expected 14); "
        "was the log made with another tokenizer or max length? (--tokenizer)"
    )
    # window 0: 3 + 4 context tokens + 1 = 8 tokens, 16 floats
    xnli_like = write_log(tmp_path / "x.json", [np.zeros(3, np.float32)] * 2)
    with pytest.raises(LogError) as info:
        score(task, read(xnli_like), tokenizer=object())
    assert str(info.value).endswith(
        "2 of 2 entries do not have 2 x window-length floats (first: qsl_idx 0 has 3, expected 16); "
        "this looks like a log from xnli (3 logits per sample)"
    )


# --- retrieval (Tatoeba, BUCC) --------------------------------------------------------------------
E = np.eye(4, dtype=np.float32)


def test_tatoeba_hand_computed_with_unequal_counts(tmp_path):
    """aaa (2 sentences): src0 = e1, src1 = 10 (0.6 e1 + 0.8 e2); queries en0 = e1, en1 = e2. Cosine:
    en0 -> src0 (1 vs 0.6), en1 -> src1: 100. (Raw dot products would send en0 to src1.)
    bbb (4 sentences): src = e1..e4, en = e2, e1, e1, e4: only en3 finds its line: 25.
    Task score (100 + 25) / 2 = 62.5; sample-weighted it would be 3 / 6 = 50."""
    aaa_src = [E[0], 10 * (0.6 * E[0] + 0.8 * E[1])]
    aaa_en = [E[0], 3 * E[1]]
    bbb_src = [E[0], E[1], E[2], E[3]]
    bbb_en = [E[1], E[0], E[0], E[3]]
    pairs = [
        RetrievalPair("aaa", ["a0", "a1"], ["x", "y"], ["e0", "e1"], ["x", "y"], None),
        RetrievalPair("bbb", list("0123"), list("pqrs"), list("0123"), list("pqrs"), None),
    ]
    task = HandTask("tatoeba", "tatoeba", pairs, ("aaa", "bbb"))
    r = score(task, read(write_log(tmp_path / "log.json", aaa_src + aaa_en + bbb_src + bbb_en)))
    assert r.metrics["per_language"] == {"aaa": 100.0, "bbb": 25.0}
    assert r.metrics["count"] == {"aaa": 2, "bbb": 4} and r.metrics["task"] == "tatoeba"
    assert list(r.metrics) == ["task", "accuracy", "per_language", "count"] and r.predictions is None
    assert json.loads(r.final_line) == {"accuracy": 62.5}
    assert r.per_sample["per_language"]["bbb"] == {"ids": [0, 1, 2, 3], "scores": [0.0, 0.0, 0.0, 100.0]}
    assert [line.split() for line in r.table_text.splitlines()] == [
        ["language", "count", "accuracy"],
        ["-" * 25],
        ["aaa", "2", "100.00"],
        ["bbb", "4", "25.00"],
        ["-" * 25],
        ["average", "6", "62.50"],
    ]


def test_tatoeba_pair_that_is_not_line_aligned_is_an_error(tmp_path):
    pair = RetrievalPair("aaa", ["a0", "a1"], ["x", "y"], ["e0"], ["x"], None)
    task = HandTask("tatoeba", "tatoeba", [pair], ("aaa",))
    with pytest.raises(LogError, match=r"Tatoeba pair aaa is not line-aligned \(2 vs 1\)"):
        score(task, read(write_log(tmp_path / "log.json", [E[0], E[1], E[0]])))


def test_classification_logits_are_not_embeddings(tmp_path):
    pair = RetrievalPair("aaa", ["a0"], ["x"], ["e0"], ["x"], None)
    task = HandTask("tatoeba", "tatoeba", [pair], ("aaa",))
    with pytest.raises(LogError, match="3-float responses are not embeddings"):
        score(task, read(write_log(tmp_path / "log.json", [E[0, :3], E[1, :3]])))


DE_GOLD = [("d0", "n0"), ("d1", "n1"), ("d2", "n2")]


def test_bucc_hand_computed_margins_and_zero_overlap(tmp_path):
    """de: 3 src and 3 en sentences on orthonormal directions e1, e2, e3 (ids d*, n*). k = min(4, 3)
    = 3 neighbours, each sentence's neighbour similarities are 1, 0, 0 (mean 1/3), so the margin of a
    matching pair is 1 / ((1/3 + 1/3) / 2) = 3 and of any other 0 (not mined). Gold = the 3 matches:
    cuts F1 .5, .8, 1 -> best cut is the last: threshold = its own score 3; P = R = F1 = 100.
    fr: 2 + 2 sentences (k = 2, margin 1 / ((1/2 + 1/2) / 2) = 2), gold (f0, m1) is never mined: no
    correct candidate -> threshold 0, both mined pairs kept, none right: P = R = F1 = 0.
    The task figures are the unweighted means: 50, 50, 50."""
    pairs = [
        RetrievalPair("de", ["d0", "d1", "d2"], list("abc"), ["n0", "n1", "n2"], list("ABC"), DE_GOLD),
        RetrievalPair("fr", ["f0", "f1"], ["a", "b"], ["m0", "m1"], ["A", "B"], [("f0", "m1")]),
    ]
    resp = [E[0], E[1], E[2], E[0], E[1], E[2], E[0], E[1], E[0], E[1]]
    task = HandTask("bucc", "bucc", pairs, ("de", "fr"))
    r = score(task, read(write_log(tmp_path / "log.json", resp)))
    per = r.metrics["per_language"]
    assert per["de"] == pytest.approx(
        {"f1": 100.0, "precision": 100.0, "recall": 100.0, "threshold": 3.0, "mined": 3}
    )
    assert per["fr"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "threshold": 0.0, "mined": 2}
    final = json.loads(r.final_line)
    assert final["threshold"] == pytest.approx({"de": 3.0, "fr": 0.0})
    assert list(final) == ["f1", "precision", "recall", "threshold"]
    assert [final[k] for k in ("f1", "precision", "recall")] == [50.0, 50.0, 50.0]
    assert r.metrics["duplicates"] == "drop" and r.metrics["threshold"] == {"de": 3.0, "fr": 0.0}
    assert r.metrics["task"] == "bucc" and list(r.metrics) == [
        "task",
        "f1",
        "precision",
        "recall",
        "threshold",
        "threshold_note",
        "duplicates",
        "per_language",
    ]
    note = (
        "threshold tuned on the gold of the same split (XTREME tunes on the sample split and applies it "
        "to test; only the sample split is bundled, so this is the tuned-threshold F1)"
    )
    assert r.metrics["threshold_note"] == note
    lines = r.table_text.splitlines()
    assert [line.split() for line in lines[:1] + lines[2:4] + lines[5:6]] == [
        ["pair", "mined", "precision", "recall", "f1", "threshold"],
        ["de-en", "3", "100.00", "100.00", "100.00", "3.000000"],
        ["fr-en", "2", "0.00", "0.00", "0.00", "0.000000"],
        ["average", "5", "50.00", "50.00", "50.00"],
    ]
    assert lines[-1] == f"note: {note}" and len(lines) == 7
    assert [(s, t) for s, t, _ in r.predictions] == [*DE_GOLD, ("f0", "m0"), ("f1", "m1")]
    assert [sc for *_, sc in r.predictions] == pytest.approx([3.0, 3.0, 3.0, 2.0, 2.0])
    # per source sentence: [correct, predicted, gold]
    assert r.per_sample == {
        "statistic": "f1_counts",
        "per_language": {
            "de": {"ids": ["d0", "d1", "d2"], "scores": [[1, 1, 1], [1, 1, 1], [1, 1, 1]]},
            "fr": {"ids": ["f0", "f1"], "scores": [[0, 1, 1], [0, 1, 0]]},
        },
    }
    paths = write_outputs(r, tmp_path / "run")
    assert paths["predictions"].name == "predictions.tsv"
    assert paths["predictions"].read_text() == "d0\tn0\nd1\tn1\nd2\tn2\nf0\tm0\nf1\tm1\n"


def test_bucc_given_threshold_applies_to_every_pair(tmp_path):
    """Two 2 + 2 pairs (margins 2, as above) scored at a given threshold of 1.5."""
    pairs = [
        RetrievalPair("de", ["d0", "d1"], ["a", "b"], ["n0", "n1"], ["A", "B"], [("d0", "n0")]),
        RetrievalPair("fr", ["f0", "f1"], ["a", "b"], ["m0", "m1"], ["A", "B"], None),
    ]
    resp = [E[0], E[1], E[0], E[1], E[0], E[1], E[0], E[1]]
    task = HandTask("bucc", "bucc", pairs, ("de", "fr"))
    r = score(task, read(write_log(tmp_path / "log.json", resp)), threshold=1.5)
    # de: both pairs (margin 2) kept, 1 of 2 right, gold 1: P 50, R 100, F1 66.67; fr: no gold
    assert r.metrics["per_language"]["de"] == pytest.approx(
        {"f1": 200 / 3, "precision": 50.0, "recall": 100.0, "threshold": 1.5, "mined": 2}
    )
    assert r.metrics["per_language"]["fr"]["mined"] == 2 and r.metrics["per_language"]["fr"]["f1"] == 0.0
    assert r.metrics["threshold"] == {"de": 1.5, "fr": 1.5} and r.metrics["threshold_note"] == (
        "threshold given by the user"
    )
    with pytest.raises(LogError, match="fr-en has no gold alignments: pass --threshold"):
        score(task, read(write_log(tmp_path / "log2.json", resp)))
    with pytest.raises(LogError, match="duplicates must be 'all' or 'drop', got 'some'"):
        score(task, read(write_log(tmp_path / "log3.json", resp)), duplicates="some")


# --- the log reader --------------------------------------------------------------------------------
def test_log_reader_decodes_sorts_and_splits_hand_made_hex(tmp_path):
    # 1.0 = 0x3F800000, -2.0 = 0xC0000000, 0.5 = 0x3F000000 (little-endian bytes in the hex)
    entries = [
        {"seq_id": 0, "qsl_idx": 2, "data": "0000803F000000C0"},
        {"seq_id": 1, "qsl_idx": 0, "data": "0000003F"},
        {"seq_id": 2, "qsl_idx": 1, "data": ""},
    ]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(entries))
    log = read_accuracy_log(path)
    assert log.qsl_idx.tolist() == [0, 1, 2]
    assert log.offsets.tolist() == [0, 1, 1, 3]
    assert log.values.tolist() == [0.5, 1.0, -2.0]
    assert log.sizes.tolist() == [1, 0, 2] and len(log) == 3
    assert log.entry(2).tolist() == [1.0, -2.0] and log.entry(1).tolist() == []
    # float16: 1.0 = 0x3C00, -2.0 = 0xC000
    path.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": "003C00C0"}]))
    half = read_accuracy_log(path, "float16")
    assert half.values.dtype == np.float32 and half.values.tolist() == [1.0, -2.0]
    with pytest.raises(LogError, match=r"unknown --dtype 'int8' \(expected one of float32, float16\)"):
        read_accuracy_log(path, "int8")


def test_log_reader_dense_and_width():
    log = AccuracyLog(
        Path("x.json"), np.array([0, 1]), np.array([0, 2, 4]), np.arange(4, dtype=np.float32)
    )
    assert log.dense().tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert check_uniform_width(log, "pawsx", 2) == 2 and check_uniform_width(log, "pawsx") == 2
    with pytest.raises(LogError, match="pawsx responses must have 3 floats each; found sizes 2"):
        check_uniform_width(log, "pawsx", 3)
    ragged = AccuracyLog(Path("x.json"), np.array([0, 1]), np.array([0, 2, 6]), np.zeros(6, np.float32))
    with pytest.raises(LogError, match="one embedding size for all entries; found sizes 2, 4: "):
        check_uniform_width(ragged, "tatoeba")
    assert ragged.shape_guess() == "tydiqa (variable-length start/end logits)"
    odd = AccuracyLog(Path("x.json"), np.array([0, 1]), np.array([0, 2, 5]), np.zeros(5, np.float32))
    assert odd.shape_guess() == "no known task"
    many = AccuracyLog(Path("x.json"), np.arange(6), np.array([0, 1, 3, 6, 10, 15, 21]), np.zeros(21))
    with pytest.raises(LogError, match="found sizes 1, 2, 3, 4, 5 ...: "):
        check_uniform_width(many, "tatoeba")
    empty = AccuracyLog(Path("x.json"), np.array([], np.int64), np.array([0]), np.zeros(0, np.float32))
    assert empty.dense().shape == (0, 0) and empty.shape_guess() == "no known task (0 floats per sample)"
    widths = [
        (1, "no known task (1 floats per sample)"),
        (7, "no known task (7 floats"),
        (8, "a retrieval task, tatoeba or bucc (8-float embeddings)"),
    ]
    for width, guess in widths:
        one = AccuracyLog(
            Path("x.json"), np.array([0]), np.array([0, width]), np.zeros(width, np.float32)
        )
        assert one.shape_guess().startswith(guess)


def test_coverage_boundary_is_the_last_sample():
    log = AccuracyLog(Path("x.json"), np.array([0, 2]), np.array([0, 1, 2]), np.zeros(2, np.float32))
    assert check_coverage(log, 3, "t").tolist() == [True, False, True]  # qsl_idx 2 of 3 samples: fine
    assert log.warnings == [
        "x.json: partial coverage: 2 of 3 samples logged (1 missing); scoring the covered ones only"
    ]
    full = AccuracyLog(Path("x.json"), np.array([0, 1]), np.array([0, 1, 2]), np.zeros(2, np.float32))
    assert check_coverage(full, 2, "t").tolist() == [True, True] and full.warnings == []
    with pytest.raises(LogError, match="qsl_idx 2 is out of range: t has 2 samples"):
        check_coverage(log, 2, "t")
    none = AccuracyLog(Path("x.json"), np.array([], np.int64), np.array([0]), np.zeros(0, np.float32))
    with pytest.raises(LogError, match="x.json: the log has no entries"):
        check_coverage(none, 2, "t")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"seq_id": 0, "qsl_idx": True, "data": "00000000"}], "entry 0 has qsl_idx True"),
        ([{"seq_id": 0, "qsl_idx": 0, "data": 5}], "entry 0 (qsl_idx 0) has non-string data"),
        ([{"seq_id": 0, "qsl_idx": 0, "data": "00000000"}, 3], "; entry 1 is 3)"),
        (
            [{"seq_id": 0, "qsl_idx": 4, "data": ""}, {"seq_id": 1, "qsl_idx": 4, "data": ""}],
            "1 qsl_idx logged more than once (first: 4)",
        ),
        (
            [{"seq_id": k, "qsl_idx": q, "data": ""} for k, q in enumerate([9, 4, 4, 9, 4, 1])],
            "2 qsl_idx logged more than once (first: 4)",
        ),
        (
            [
                {"seq_id": 0, "qsl_idx": 0, "data": "0000C07F"},
                {"seq_id": 1, "qsl_idx": 1, "data": "00000000"},
            ],
            "1 of 2 responses hold NaN or Inf (first: qsl_idx 0)",
        ),
        (
            [
                {"seq_id": 0, "qsl_idx": 0, "data": "00000000"},
                {"seq_id": 1, "qsl_idx": 1, "data": "00000000000080FF"},
            ],
            "1 of 2 responses hold NaN or Inf (first: qsl_idx 1)",
        ),
    ],
)
def test_bad_entries_are_named(tmp_path, entries, message):
    path = tmp_path / "log.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(LogError) as info:
        read_accuracy_log(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_table_is_fixed_width_with_two_decimals():
    text = format_table(["language", "count", "accuracy"], [["en", 3, 200 / 3]], ["average", 3, 200 / 3])
    assert text == (
        "language  count  accuracy\n"
        "-------------------------\n"
        "en            3     66.67\n"
        "-------------------------\n"
        "average       3     66.67"
    )


def test_script_writes_metrics_and_predictions_beside_output(tmp_path, capsys):
    """accuracy_pawsx.py on two logged rows of de, one right: 50 (a partial log: a warning)."""
    task = get_task("pawsx", languages="de")
    ex = task.read()
    log = write_log(tmp_path / "log.json", [one_hot(ex[0].label, 2), one_hot(1 - ex[1].label, 2)])
    out = tmp_path / "out" / "m.json"
    assert main("pawsx", [str(log), "--languages", "de", "--output", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout.splitlines()[-1] == '{"accuracy": 50.0}'
    assert "warning: " in stderr and "2 of 2000 samples logged (1998 missing)" in stderr
    metrics = json.loads(out.read_text())
    assert metrics["accuracy"] == 50.0 and metrics["count"] == {"de": 2}
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json"]  # no predictions for pawsx
    assert main("pawsx", [str(tmp_path / "missing.json")]) == 3
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.json'}: no such file")


def test_write_outputs_writes_exactly_what_the_script_prints(tmp_path):
    result = ScoreResult(
        {"task": "tydiqa", "f1": 50.0},
        "table",
        '{"f1": 50.0}',
        predictions={"q1": "東京", "q2": ""},
        predictions_name="predictions.json",
        per_sample={"statistic": "mean", "per_language": {"ja": {"ids": ["q1"], "scores": [50.0]}}},
    )
    out = tmp_path / "a" / "b"
    paths = write_outputs(result, out)
    assert sorted(paths) == ["accuracy.json", "accuracy.txt", "per_sample", "predictions"]
    names = ["accuracy.json", "accuracy.txt", "per_sample.json", "predictions.json"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert (out / "accuracy.txt").read_bytes() == b'table\n{"f1": 50.0}\n'
    assert (out / "accuracy.json").read_text() == '{\n "task": "tydiqa",\n "f1": 50.0\n}\n'
    assert (out / "predictions.json").read_bytes() == '{\n "q1": "東京",\n "q2": ""\n}\n'.encode()
    assert json.loads((out / "per_sample.json").read_text()) == result.per_sample
    again = write_outputs(result, out)  # scoring the same run again overwrites its files
    assert again == paths and (out / "accuracy.txt").read_bytes() == b'table\n{"f1": 50.0}\n'
    bare = ScoreResult({"accuracy": 1.0}, "t", "{}")
    assert sorted(write_outputs(bare, tmp_path / "c")) == ["accuracy.json", "accuracy.txt"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["accuracy.json", "accuracy.txt"]


def test_max_context_mask_two_examples_hand_computed():
    """Example 0: one window of 2 context tokens (both its own). Example 1: context tokens t0..t5 in
    W1 = t0..t4 (n = 5) and W2 = t2..t5 (n = 4); score = min(j, n - 1 - j) + 0.01 n:
    t2: W1 2.05, W2 0.04 -> W1; t3: W1 1.05, W2 1.04 -> W1; t4: W1 0.05, W2 1.04 -> W2."""
    ctx0 = [(0, 1), (2, 3)]
    ctx1 = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
    cs0, _ = window(ctx0)
    cs1, _ = window(ctx1[:5])
    cs2, _ = window(ctx1[2:])
    char_start = np.array(cs0 + cs1 + cs2, np.int32)
    offsets = np.cumsum([0, len(cs0), len(cs1), len(cs2)])
    mask = max_context_mask(np.array([0, 1, 1]), char_start, offsets)
    w0 = [False] * 3 + [True, True] + [False]  # <s> q </s>, 2 context tokens, </s>
    w1 = [False] * 3 + [True, True, True, True, False] + [False]  # t0..t3 here, t4 in W2
    w2 = [False] * 3 + [False, False, True, True] + [False]  # t2, t3 in W1; t4, t5 here
    assert mask.tolist() == w0 + w1 + w2


def test_best_span_takes_the_top_20_starts_lowest_index_first_on_ties():
    """64 context tokens, start logits in {0, 1, 2} (seeded), end logit 10 at token 61 only. The
    candidate starts are the 20 largest, lower index first on ties: the first 20 tokens whose start
    logit is 2. Of those, the ones that can reach token 61 within 30 tokens are >= 32; the first of
    them in candidate order is the answer: (2 + 10, 33, 61)."""
    start = np.random.default_rng(0).integers(0, 3, 64).astype(np.float32)
    twos = [i for i in range(64) if start[i] == 2]
    assert len(twos) >= 20 and [i for i in twos[:20] if i >= 32] == [33, 45, 50, 53, 54, 55, 57, 58]
    end = np.zeros(64, np.float32)
    end[61] = 10
    ok = np.ones(64, bool)
    assert best_span(start, end, ok, ok) == (12.0, 33, 61)


def test_best_span_takes_the_top_20_ends_lowest_index_first_on_ties():
    """The same rule for ends: one start (token 2, logit 10), end logits in {0, 1, 2}: the candidate
    ends are the first 20 tokens whose end logit is 2; the first of them at or after token 2 within
    30 tokens wins."""
    end = np.random.default_rng(1).integers(0, 3, 64).astype(np.float32)
    twos = [i for i in range(64) if end[i] == 2]
    first = next(i for i in twos[:20] if i >= 2)
    start = np.zeros(64, np.float32)
    start[2] = 10
    ok = np.ones(64, bool)
    assert best_span(start, end, ok, ok) == (12.0, 2, first)
    unstable = np.argsort(-end)[:20]  # what an unstable sort would offer instead, in its order
    assert unstable.tolist() != twos[:20]


def test_best_span_equal_scores_go_to_the_earlier_start_candidate():
    """Candidate starts (best first) 3, 1; ends 2, 4. (3, 2) is invalid (end before start); (3, 4) and
    (1, 2) both score 9: the loop over starts, then ends, meets (3, 4) first."""
    start = np.full(6, -10.0, np.float32)
    end = np.full(6, -10.0, np.float32)
    start[3], start[1], end[2], end[4] = 5, 4, 5, 4
    ok = np.ones(6, bool)
    assert best_span(start, end, ok, ok) == (9.0, 3, 4)


@pytest.mark.parametrize("first", [0, 2])
def test_best_span_longest_answer_is_30_tokens(first):
    """Start `first` (logit 5); end logit 1 at first + 29 (a 30-token span: allowed) and 3 at
    first + 30 (31 tokens: not allowed): the answer is the 30-token span, 6."""
    start, end = np.zeros(64, np.float32), np.zeros(64, np.float32)
    start[first], end[first + 29], end[first + 30] = 5, 1, 3
    ok = np.ones(64, bool)
    assert best_span(start, end, ok, ok) == (6.0, first, first + 29)


# --- retrieval building blocks, by hand ------------------------------------------------------------
def test_l2_normalize_keeps_zero_rows_zero():
    got = retrieval.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
    assert got.dtype == np.float32
    assert got.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0], [0.0, -1.0]]


@pytest.mark.parametrize("chunk", [1, 2, 4096])
def test_nearest_and_knn_are_the_same_in_chunks(monkeypatch, chunk):
    """Database rows e1, e2, e1 + e2 (unnormalised dot products); queries e1, e2, e1 - e2:
    e1 . [e1, e2, e1 + e2] = [1, 0, 1] -> nearest 0 (first of the tie), 2 nearest: (0, 2);
    e2 -> [0, 1, 1] -> 1, then 2; e1 - e2 -> [1, -1, 0] -> 0, then 2, then 1."""
    monkeypatch.setattr(retrieval, "CHUNK", chunk)
    db = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    q = np.array([[1, 0], [0, 1], [1, -1]], np.float32)
    assert retrieval.nearest(q, db).tolist() == [0, 1, 0]
    sims, idx = retrieval.knn(q, db, 2)
    assert idx.tolist() == [[0, 2], [1, 2], [0, 2]]
    assert sims.tolist() == [[1, 1], [1, 1], [1, 0]]
    sims, idx = retrieval.knn(q, db, 4)  # k is capped at the database size
    assert idx.tolist() == [[0, 2, 1], [1, 2, 0], [0, 2, 1]] and sims.shape == (3, 3)
    assert sims[2].tolist() == [1, 0, -1]


def test_unify_keeps_the_last_occurrence_as_representative():
    rep, first, members = retrieval.unify(["a", "b", "a", "c", "a", "b"])
    assert rep.tolist() == [4, 5, 3] and first.tolist() == [0, 1, 3]
    assert members == [[0, 2, 4], [1, 5], [3]]


def test_mine_scores_and_one_to_one():
    """x = e1, e2 (normalised); y = e1, (e1 + e2) / sqrt 2. k = 2 neighbours both ways.
    cos: x0.y0 = 1, x0.y1 = x1.y1 = 0.7071, x1.y0 = 0. Means: x0 (1 + .7071) / 2 = .8536,
    x1 (.7071 + 0) / 2 = .3536; y0 (1 + 0) / 2 = .5, y1 (.7071 + .7071) / 2 = .7071.
    Margins: x0-y0 1 / ((.8536 + .5) / 2) = 1.4776; x1-y1 .7071 / ((.3536 + .7071) / 2) = 1.3333;
    x0-y1 .7071 / ((.8536 + .7071) / 2) = .9062. Best per side: x0 -> y0, x1 -> y1, y0 -> x0,
    y1 -> x1 (1.3333 > .9062). One-to-one, best first: (0, 0) 1.4776, (1, 1) 1.3333."""
    r = np.sqrt(0.5)
    x = np.array([[1, 0], [0, 1]], np.float32)
    y = np.array([[1, 0], [r, r]], np.float32)
    src, trg, score = retrieval.mine(x, y, k=2)
    assert src.tolist() == [0, 1] and trg.tolist() == [0, 1]
    c = np.float32(r)
    want = [1 / ((1 + c) / 2 / 2 + 0.25), c / ((c / 2 + c) / 2)]
    assert score.tolist() == pytest.approx(want, rel=1e-6)
    assert score.tolist() == pytest.approx([1.4776, 1.3333], abs=1e-4)


def test_source_counts_per_sentence():
    predictions = [("s0", "t0", 3.0), ("s0", "t1", 2.0), ("s1", "t5", 1.0)]
    gold = [("s0", "t0"), ("s2", "t2"), ("s0", "t0")]  # a repeated gold pair counts once
    counts = retrieval.source_counts(predictions, gold, ["s0", "s1", "s2", "s3"])
    assert counts == {"s0": [1, 2, 1], "s1": [0, 1, 0], "s2": [0, 0, 1], "s3": [0, 0, 0]}
    assert retrieval.source_counts([], [("x", "y")], [])["x"] == [0, 0, 1]  # a gold source not listed


def test_optimize_threshold_edges():
    assert retrieval.optimize_threshold(np.array([]), np.array([], bool), 3) == 0.0
    # one correct candidate of two gold, first: F1 2/3 at cut 1, .5 at cut 2 -> (0.9 + 0.5) / 2
    assert retrieval.optimize_threshold(np.array([0.9, 0.5]), np.array([True, False]), 2) == 0.7
    # the same F1 at cuts 1 and 3 (P 1 R 1/3 -> .5; P 2/3 R 2/3 -> .667; better): cut 3
    assert retrieval.optimize_threshold(
        np.array([4.0, 3.0, 2.0, 1.0]), np.array([True, False, True, False]), 3
    ) == pytest.approx(1.5)


def test_bucc_score_keeps_candidates_at_the_threshold():
    cands = [("a", "x", 2.0), ("b", "y", 1.0), ("c", "z", 0.5)]
    r = retrieval.bucc_score(cands, [("a", "x"), ("c", "q")], threshold=1.0)
    assert [p[:2] for p in r.predictions] == [("a", "x"), ("b", "y")]  # 1.0 >= 1.0 is kept
    assert (r.precision, r.recall, r.f1) == (50.0, 50.0, 50.0) and r.threshold == 1.0
    none = retrieval.bucc_score(cands, [("q", "q")], threshold=3.0)
    assert (none.predictions, none.precision, none.recall, none.f1) == ([], 0.0, 0.0, 0.0)


def test_mine_ids_duplicates_all_keeps_the_best_score_per_id_pair():
    """src sentences A, B, A (ids s0, s1, s2), en sentences A, B (t0, t1), embeddings by sentence.
    Unique src A (rep s2), B; mining pairs A-A and B-B with margin 2 (k = 2, orthonormal).
    drop: A occurs twice on the src side: only (s1, t1). all: (s0, t0), (s2, t0), (s1, t1)."""
    e = np.eye(4, dtype=np.float32)
    args = (e[[0, 1, 0]], e[[0, 1]], ["A", "B", "A"], ["A", "B"], ["s0", "s1", "s2"], ["t0", "t1"])
    assert retrieval.mine_ids(*args, duplicates="drop") == [("s1", "t1", 2.0)]
    got = retrieval.mine_ids(*args, duplicates="all")
    assert sorted(got) == [("s0", "t0", 2.0), ("s1", "t1", 2.0), ("s2", "t0", 2.0)]


# --- the log reader's messages -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty (did the accuracy run finish?)"),
        ("  \n", "the file is empty (did the accuracy run finish?)"),
        ('[{"seq_id": 0', "the JSON ends early (truncated at byte 13; was the run interrupted"),
        ('[{"a": 1}, ', 'entry 0 is {"a": 1})'),  # a flat entry without LoadGen's keys
        ("[1, 2", "entry 0 is 1)"),
        ("[1,, 2]", "entry 0 is 1)"),
        ("[1,, 2", "entry 0 is 1)"),  # a list that never closes
        ('{"a": x}', "found a JSON object)"),  # the first byte says it cannot be a log
        ('{"a": , "b": 1}', "found a JSON object)"),
        (
            "7",
            "not a LoadGen accuracy log (expected a JSON list of {seq_id, qsl_idx, data} objects, "
            "found a JSON int)",
        ),
        ('["x"]', 'entry 0 is "x")'),
    ],
)
def test_log_text_problems_are_named(tmp_path, text, message):
    path = tmp_path / "log.json"
    path.write_text(text)
    with pytest.raises(LogError) as info:
        read_accuracy_log(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_log_that_is_a_folder_is_named(tmp_path):
    with pytest.raises(LogError, match=r": not a regular file \(a directory\); pass the run's log file"):
        read_accuracy_log(tmp_path)


def test_five_sizes_are_listed_without_an_ellipsis():
    five = AccuracyLog(Path("x.json"), np.arange(5), np.array([0, 1, 3, 6, 10, 15]), np.zeros(15))
    with pytest.raises(LogError, match="found sizes 1, 2, 3, 4, 5: this looks like"):
        check_uniform_width(five, "tatoeba")


def test_log_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "log.json"
    path.write_bytes(b"[\xff]")
    with pytest.raises(LogError, match=r"log\.json: cannot be read as UTF-8 text \(byte 1\)"):
        read_accuracy_log(path)


# --- the accuracy scripts' interface ------------------------------------------------------------
# `--help` of three scripts, as argparse prints it 200 columns wide: the options each task takes
HELP = {
    "xnli": (
        "usage: accuracy_xnli.py [-h] [--data_dir DATA_DIR] [--languages LANGUAGES] "
        "[--dtype {float32,float16}] [--output OUTPUT] [--heldout_rows] LOG\n"
        "\n"
        "Score an MLPerf accuracy log (mlperf_log_accuracy.json) of xnli as XTREME does.\n"
        "\n"
        "positional arguments:\n"
        "  LOG                   mlperf_log_accuracy.json of an AccuracyOnly run\n"
        "\n"
        "options:\n"
        "  -h, --help            show this help message and exit\n"
        "  --data_dir DATA_DIR   folder of the official data files (default: bundled data/)\n"
        "  --languages LANGUAGES\n"
        "                        comma-separated subset the run used (default: all)\n"
        "  --dtype {float32,float16}\n"
        "                        response element type\n"
        "  --output OUTPUT       write all metrics as JSON to this file (+ predictions beside it)\n"
        "  --heldout_rows        score only rows >= 1245 of each language "
        "(those the tiny model zoo did not train on)\n"
    ),
    "tydiqa": (
        "usage: accuracy_tydiqa.py [-h] [--data_dir DATA_DIR] [--languages LANGUAGES] "
        "[--dtype {float32,float16}] [--output OUTPUT] [--tokenizer TOKENIZER] LOG\n"
        "\n"
        "Score an MLPerf accuracy log (mlperf_log_accuracy.json) of tydiqa as XTREME does.\n"
        "\n"
        "positional arguments:\n"
        "  LOG                   mlperf_log_accuracy.json of an AccuracyOnly run\n"
        "\n"
        "options:\n"
        "  -h, --help            show this help message and exit\n"
        "  --data_dir DATA_DIR   folder of the official data files (default: bundled data/)\n"
        "  --languages LANGUAGES\n"
        "                        comma-separated subset the run used (default: all)\n"
        "  --dtype {float32,float16}\n"
        "                        response element type\n"
        "  --output OUTPUT       write all metrics as JSON to this file (+ predictions beside it)\n"
        "  --tokenizer TOKENIZER\n"
        "                        the run's tokenizer folder "
        '(default: "tokenizer" in run_config.json beside LOG)\n'
    ),
    "bucc": (
        "usage: accuracy_bucc.py [-h] [--data_dir DATA_DIR] [--languages LANGUAGES] "
        "[--dtype {float32,float16}] [--output OUTPUT] [--threshold THRESHOLD] "
        "[--duplicates {all,drop}] LOG\n"
        "\n"
        "Score an MLPerf accuracy log (mlperf_log_accuracy.json) of bucc as XTREME does.\n"
        "\n"
        "positional arguments:\n"
        "  LOG                   mlperf_log_accuracy.json of an AccuracyOnly run\n"
        "\n"
        "options:\n"
        "  -h, --help            show this help message and exit\n"
        "  --data_dir DATA_DIR   folder of the official data files (default: bundled data/)\n"
        "  --languages LANGUAGES\n"
        "                        comma-separated subset the run used (default: all)\n"
        "  --dtype {float32,float16}\n"
        "                        response element type\n"
        "  --output OUTPUT       write all metrics as JSON to this file (+ predictions beside it)\n"
        "  --threshold THRESHOLD\n"
        "                        apply this margin threshold instead of tuning\n"
        "  --duplicates {all,drop}\n"
        "                        drop (default, as XTREME): discard mined pairs of repeated sentences; "
        "all: a mined duplicate sentence stands for all its ids\n"
    ),
}


@pytest.mark.parametrize("task_name", sorted(HELP))
def test_script_help(monkeypatch, task_name):
    monkeypatch.setenv("COLUMNS", "200")
    assert build_parser(task_name).format_help() == HELP[task_name]


def test_script_options_reach_the_scorer(tmp_path, capsys, monkeypatch):
    """accuracy_pawsx.py --heldout_rows on the de rows 999 (wrong) and 1000 (right): 100 held out."""
    ex = get_task("pawsx", languages="de").read()
    log = write_log(
        tmp_path / "log.json", [one_hot(1 - ex[999].label, 2), one_hot(ex[1000].label, 2)], [999, 1000]
    )
    assert main("pawsx", [str(log), "--languages", "de", "--heldout_rows"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '{"accuracy": 100.0}'
    assert main("pawsx", [str(log), "--languages", "de"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '{"accuracy": 50.0}'
    half = write_log(tmp_path / "half.json", [one_hot(ex[0].label, 2)], dtype="<f2")
    assert main("pawsx", [str(half), "--languages", "de", "--dtype", "float16"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '{"accuracy": 100.0}'


def test_bucc_script_writes_predictions_beside_the_metrics(tmp_path, capsys, monkeypatch):
    """BUCC through the script on the hand-made pairs (scored with a given threshold 1.5)."""
    pairs = [RetrievalPair("de", ["d0", "d1"], ["a", "b"], ["n0", "n1"], ["A", "B"], [("d0", "n0")])]
    task = HandTask("bucc", "bucc", pairs, ("de",))
    monkeypatch.setattr("tasks.registry.get_task", lambda name, **kw: task)
    log = write_log(tmp_path / "log.json", [E[0], E[1], E[0], E[1]])
    out = tmp_path / "m.json"
    assert (
        main("bucc", [str(log), "--threshold", "1.5", "--duplicates", "all", "--output", str(out)]) == 0
    )
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert final == {"f1": pytest.approx(200 / 3), "precision": 50.0, "recall": 100.0, "threshold": 1.5}
    assert json.loads(out.read_text())["duplicates"] == "all"
    assert (tmp_path / "m.predictions.tsv").read_text() == "d0\tn0\nd1\tn1\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[1, 2]", "not a JSON object (needed for the run's task options)"),
        ("{", "not a JSON object (needed for the run's task options)"),
        ("[" * 100_000, "not a JSON object (needed for the run's task options)"),  # too deep
        ('{"task_options": "first_row"}', '"task_options" is not an object'),
    ],
)
def test_run_config_beside_the_log_must_be_an_object(tmp_path, config, message):
    (tmp_path / "run_config.json").write_text(config)
    with pytest.raises(LogError) as info:
        run_task_options(tmp_path / "log.json")
    assert str(info.value) == f"{tmp_path / 'run_config.json'}: {message}"


def test_run_config_without_task_options_builds_the_default_task(tmp_path):
    assert run_task_options(tmp_path / "log.json") == {}  # no run_config.json
    (tmp_path / "run_config.json").write_text('{"task_options": null}')
    assert run_task_options(tmp_path / "log.json") == {}
    (tmp_path / "run_config.json").write_text('{"task_options": {"first_row": 3}}')
    assert run_task_options(tmp_path / "log.json") == {"first_row": 3}


# --- which tokenizer TyDiQA scoring loads ----------------------------------------------------------
@pytest.fixture
def loaded(monkeypatch) -> list[str]:
    """transformers.AutoTokenizer replaced by a recorder of the paths it was asked to load (and no
    import of transformers: seconds saved in every mutant's run)."""
    paths: list[str] = []

    def from_pretrained(path):
        if "missing" in str(path):
            raise OSError(f"{path} is not a folder\nsecond line")
        paths.append(path)
        return f"tokenizer from {path}"

    fake = SimpleNamespace(AutoTokenizer=SimpleNamespace(from_pretrained=from_pretrained))
    monkeypatch.setitem(sys.modules, "transformers", fake)
    return paths


def test_tokenizer_given_as_object_or_path(tmp_path, loaded):
    log = tmp_path / "log.json"
    tok = object()
    assert resolve_tokenizer(log, tok) is tok and loaded == []
    assert resolve_tokenizer(log, "some/tok") == "tokenizer from some/tok"
    assert resolve_tokenizer(log, tmp_path / "tok") == f"tokenizer from {tmp_path / 'tok'}"
    with pytest.raises(LogError) as info:
        resolve_tokenizer(log, "missing")
    assert (
        str(info.value) == "cannot load the tokenizer from --tokenizer missing: missing is not a folder"
    )


def test_tokenizer_from_run_config_beside_the_log_or_one_folder_up(tmp_path, loaded):
    run, sub = tmp_path / "run", tmp_path / "run" / "accuracy"
    sub.mkdir(parents=True)
    (run / "run_config.json").write_text('{"tokenizer": "tok"}')  # relative: from run/
    assert resolve_tokenizer(sub / "log.json") == f"tokenizer from {run / 'tok'}"
    (sub / "run_config.json").write_text('{"tokenizer": "/abs/tok"}')  # beside the log: first
    assert resolve_tokenizer(sub / "log.json") == "tokenizer from /abs/tok"
    (sub / "run_config.json").write_text('{"tokenizer": "missing"}')
    with pytest.raises(LogError) as info:
        resolve_tokenizer(sub / "log.json")
    cfg = sub / "run_config.json"
    assert str(info.value) == (
        f"cannot load the tokenizer from {cfg} (\"tokenizer\": 'missing'): "
        f"{sub / 'missing'} is not a folder"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{", "not a JSON object (needed for the run's tokenizer; or pass --tokenizer PATH)"),
        ("[]", "not a JSON object (needed for the run's tokenizer; or pass --tokenizer PATH)"),
        (b"{\xff}", "not a JSON object (needed for the run's tokenizer; or pass --tokenizer PATH)"),
        ('{"model": "x"}', 'has no "tokenizer" entry; pass --tokenizer PATH'),
        ('{"tokenizer": ""}', 'has no "tokenizer" entry; pass --tokenizer PATH'),
        ('{"tokenizer": 5}', 'has no "tokenizer" entry; pass --tokenizer PATH'),
    ],
)
def test_run_config_without_a_usable_tokenizer(tmp_path, loaded, config, message):
    """Not UTF-8 (b"\\xff") or a number for a path: one message naming the file, no traceback."""
    (tmp_path / "run_config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
    with pytest.raises(LogError) as info:
        resolve_tokenizer(tmp_path / "log.json")
    assert str(info.value) == f"{tmp_path / 'run_config.json'}: {message}"


def test_no_tokenizer_anywhere(tmp_path, loaded):
    with pytest.raises(LogError) as info:
        resolve_tokenizer(tmp_path / "log.json")
    assert str(info.value) == (
        f"{tmp_path / 'log.json'}: TyDiQA needs the run's tokenizer to rebuild the windows: pass "
        '--tokenizer PATH (no run_config.json with a "tokenizer" entry beside the log)'
    )


def test_retrieval_pair_left_out_unless_complete(tmp_path):
    """aaa complete (qsl 0..3), bbb: 1 of its 8 sentences (qsl 4..11) logged: left out, named."""
    pairs = [
        RetrievalPair("aaa", ["a0", "a1"], ["x", "y"], ["e0", "e1"], ["x", "y"], None),
        RetrievalPair("bbb", list("0123"), list("pqrs"), list("0123"), list("pqrs"), None),
    ]
    task = HandTask("tatoeba", "tatoeba", pairs, ("aaa", "bbb"))
    path = write_log(tmp_path / "log.json", [E[0], E[1], E[0], E[1], E[2]])
    r = score(task, read(path))
    assert r.metrics["per_language"] == {"aaa": 100.0}
    assert r.warnings == [
        f"{path}: partial coverage: 5 of 12 samples logged (7 missing); scoring the covered ones only",
        f"{path}: error for bbb: only 1 of its 8 sentences were logged (qsl 4..11); a pair must be "
        "complete to be scored: left out",
    ]
    only_bbb = write_log(tmp_path / "b.json", [E[0]], qsl=[5])
    with pytest.raises(LogError) as info:
        score(task, read(only_bbb))
    assert (
        str(info.value)
        == f"{only_bbb}: no language pair of tatoeba is completely logged; nothing to score"
    )


def test_bucc_single_pair_threshold_is_a_number(tmp_path):
    pairs = [
        RetrievalPair("de", ["d0", "d1", "d2"], list("abc"), ["n0", "n1", "n2"], list("ABC"), DE_GOLD)
    ]
    task = HandTask("bucc", "bucc", pairs, ("de",))
    r = score(task, read(write_log(tmp_path / "log.json", [E[0], E[1], E[2], E[0], E[1], E[2]])))
    assert r.metrics["threshold"] == 3.0 and isinstance(r.metrics["threshold"], float)
    assert json.loads(r.final_line) == {
        "f1": 100.0,
        "precision": 100.0,
        "recall": 100.0,
        "threshold": 3.0,
    }
    assert r.predictions_name == "predictions.tsv"


def test_tydiqa_questions_after_an_unlogged_one_are_still_scored(tmp_path):
    task, marks = hand_tydiqa()
    lengths = task.feature_set.lengths
    resp = [span_logits(int(lengths[w]), *marks[w]) for w in (0, 2)]  # q2's window is not logged
    r = score(task, read(write_log(tmp_path / "log.json", resp, qsl=[0, 2])), tokenizer=object())
    assert r.predictions == {"q1": "Paris", "q3": "mbwa"}
    assert any("2 of 4 questions have no logged window" in w for w in r.warnings)
    assert json.loads(r.final_line) == {"exact_match": 50.0, "f1": 50.0}  # en (100, 100), sw (0, 0)
