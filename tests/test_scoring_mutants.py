"""Hand-computed cases for the retrieval scorer and the accuracy-log reader (mutation testing).

Each expected value is worked out by hand in the comment beside it, from the metric's definition, not
from the code; reports/mutation.md lists the survivors they were written from.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from tasks.data import RetrievalPair
from tasks.scoring import cli, retrieval, score
from tasks.scoring import log as log_module
from tasks.scoring.log import LogError, read_accuracy_log
from tasks.scoring.retrieval import knn
from tests.test_accuracy import write_log
from tests.test_scoring_independent import HandTask


def test_knn_takes_the_k_most_similar_rows_in_descending_order():
    # query (1, 0) against (1, 0), (0, 1), (0.6, 0.8): dot products 1, 0, 0.6 -> best two: rows 0, 2
    sims, idx = knn(
        np.array([[1.0, 0.0]], np.float32), np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32), 2
    )
    assert idx.tolist() == [[0, 2]]
    np.testing.assert_allclose(sims, [[1.0, 0.6]], rtol=1e-6)


# --- the log reader ----------------------------------------------------------------------------------
def test_a_bad_entry_after_a_chunk_boundary_is_shown_in_full(tmp_path, monkeypatch):
    """Chunks of 64 bytes: "[", the first entry (47 bytes) and ", " end at byte 50 of the first chunk, so
    the 14 bytes left in it are fewer than the 80 the message shows: the next chunk is read, and the
    bad second entry, a 100-digit number, is shown as its first 80 digits."""
    monkeypatch.setattr(log_module, "CHUNK_BYTES", 64)
    first = '{"seq_id": 0, "qsl_idx": 0, "data": "00000000"}'
    path = tmp_path / "log.json"
    path.write_text(f"[{first}, {'1' * 100}]")
    assert len(f"[{first}, ") == 50
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value).endswith(f"; entry 1 is {'1' * 80})")


# --- BUCC ------------------------------------------------------------------------------------------
NOT_LOG = "not a LoadGen accuracy log (expected a JSON list of {seq_id, qsl_idx, data} objects"
NESTED = "holds a nested list or object, deeper than a LoadGen log's two levels)"
COMPACT = '{"qsl_idx":%d,"data":"00000000"}'  # 31 bytes for a one-digit index, no spaces


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # entry 0 starts at byte 1, after the "["
        ('[{"a": [1]}]', f"{NOT_LOG}; entry 0 at byte 1 {NESTED}"),
        ('[{"a": {"b": 1}}]', f"{NOT_LOG}; entry 0 at byte 1 {NESTED}"),  # an object, no list
        ("[{{}}]", f"{NOT_LOG}; entry 0 at byte 1 {NESTED}"),  # the second byte of the entry
        # entry 1 starts at byte 1 + 31 + 1 = 33: entries written without spaces
        (f'[{COMPACT % 0},{{"a": [1]}}]', f"{NOT_LOG}; entry 1 at byte 33 {NESTED}"),
        # json's own message: the value missing at character 23 of the entry
        (
            '[{"qsl_idx": 0, "data": }]',
            "not JSON (entry 0 at byte 1: Expecting value: line 1 column 24 (char 23))",
        ),
        # the entry fills bytes 1 to 34; the space at 35 is skipped; "x" at 36 is neither "," nor "]"
        # (the message gives the offset after that byte, consumed)
        (
            '[{"qsl_idx": 0, "data": "00000000"} x]',
            "not JSON (expected ',' or ']' after an entry at byte 37)",
        ),
        ("[]5", "not JSON (extra data after the list at byte 2)"),
        (
            '[{"seq_id": 0',  # 13 bytes, no closing brace
            "the JSON ends early (truncated at byte 13; was the run interrupted, or is this the "
            "submission checker's truncated copy? Score the full log)",
        ),
        # indices 1 and 2 logged twice each
        (
            f"[{COMPACT % 1},{COMPACT % 2},{COMPACT % 1},{COMPACT % 2},{COMPACT % 3}]",
            "2 qsl_idx logged more than once (first: 1); an accuracy log (AccuracyOnly mode) logs "
            "each sample exactly once: this looks like a performance-mode or audit (TEST01) log",
        ),
        # an entry that is no JSON value: shown up to its first "," or "]", whichever splits first
        ("[bad x,y]z]", f"{NOT_LOG}; entry 0 is bad x)"),
        ("[bad x]y,z]", f"{NOT_LOG}; entry 0 is bad x)"),
        # an unterminated string: its first 80 characters, the quote and 79 letters
        ('["' + "a" * 100 + '"]', f'{NOT_LOG}; entry 0 is "{"a" * 79})'),
        # a string of 30 "é": dumped as ASCII, 6 characters each; 80 characters are the quote, 13 whole
        # escapes and the backslash of the 14th
        ('["' + "é" * 30 + '"]', f'{NOT_LOG}; entry 0 is "' + "\\u00e9" * 13 + "\\)"),
        # four entries, the last without data: its number counts every entry before it
        (
            f'[{COMPACT % 0},{COMPACT % 1},{COMPACT % 2},{{"qsl_idx":3}}]',
            f'{NOT_LOG}; entry 3 is {{"qsl_idx": 3}})',
        ),
    ],
)
@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_a_malformed_log_gets_its_exact_message(tmp_path, monkeypatch, text, message, chunk):
    """Each message whole, with byte offsets counted from the file's first byte, whether the log is
    read in 7-byte chunks (every offset crosses a chunk boundary) or at once."""
    monkeypatch.setattr(log_module, "CHUNK_BYTES", chunk)
    path = tmp_path / "log.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value) == f"{path}: {message}"


def test_a_byte_that_is_not_utf8_is_named_by_its_offset(tmp_path):
    path = tmp_path / "log.json"
    path.write_bytes(b"[1\xff]")  # the entry "1" starts at byte 1; the bad byte is byte 2
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value) == f"{path}: cannot be read as UTF-8 text (byte 2)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON (expected '[' of a JSON list at byte 0)"),
        # a scalar is decoded from its first 4096 characters: a string of 4097 is not seen to end
        ('"' + "a" * 4095 + '"', "not JSON (expected '[' of a JSON list at byte 0)"),
        ('"' + "a" * 4094 + '"', f"{NOT_LOG}, found a JSON str)"),
        # an entry without data: shown as its first 80 characters of JSON (21 before the letters)
        (
            '[{"qsl_idx": 0, "x": "' + "a" * 100 + '"}]',
            f'{NOT_LOG}; entry 0 is {{"qsl_idx": 0, "x": "{"a" * 59})',
        ),
        # 3 bytes of data: not a whole number of float32 values
        (
            '[{"qsl_idx": 0, "data": "000000"}]',
            "entry 0 (qsl_idx 0) has 3 bytes, not a whole number of float32 values (4 bytes each): "
            "wrong --dtype, or not this harness's log",
        ),
    ],
)
def test_more_malformed_logs_get_their_exact_message(tmp_path, text, message):
    path = tmp_path / "log.json"
    path.write_text(text)
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value) == f"{path}: {message}"


def test_a_log_may_start_with_whitespace_and_hold_the_largest_index(tmp_path):
    path = tmp_path / "log.json"
    path.write_text(f'\n\n  [{{"qsl_idx": {2**63 - 1}, "data": "0000803F"}}]')  # 1.0 at index 2^63 - 1
    log = read_accuracy_log(path)
    assert (log.qsl_idx.tolist(), log.values.tolist()) == ([2**63 - 1], [1.0])


def test_an_oversized_log_is_refused_with_both_sizes(tmp_path):
    path = tmp_path / "log.json"
    path.write_text(" " * 20)
    with pytest.raises(LogError) as e:
        read_accuracy_log(path, max_bytes=10)
    assert str(e.value) == (
        f"{path}: 20 bytes, more than the 10 bytes an accuracy log of these tasks can hold: not a "
        "LoadGen accuracy log of this harness"
    )


def test_a_file_that_cannot_be_read_is_named_with_the_reason(tmp_path, monkeypatch):
    """A path under a regular file cannot even be looked at (ENOTDIR); a file that exists but cannot
    be opened (as for a user without read permission: the tests run as root) gets the same message."""
    (tmp_path / "file").write_text("x")
    under_a_file = tmp_path / "file" / "log.json"
    for read in (read_accuracy_log, lambda p: log_module.read_run_config(p, "needed for a test")):
        with pytest.raises(LogError) as e:
            read(under_a_file)
        assert str(e.value) == f"{under_a_file}: cannot be read (Not a directory)"

    def no_open(path, mode="r"):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(log_module, "open", no_open, raising=False)
    with pytest.raises(LogError) as e:
        read_accuracy_log(tmp_path / "file")
    assert str(e.value) == f"{tmp_path / 'file'}: cannot be read (Permission denied)"


def test_the_log_is_read_one_chunk_at_a_time(monkeypatch):
    """20 bytes in chunks of 7: three reads of 7 (the last returns 6) and one that finds the end."""
    monkeypatch.setattr(log_module, "CHUNK_BYTES", 7)
    asked = []

    class Recording(io.BytesIO):
        def read(self, n=-1):
            asked.append(n)
            return super().read(n)

    scan = log_module._Scanner(Recording(b"[" + b" " * 18 + b"]"), Path("log.json"))
    assert scan.until(b"]") == b"[" + b" " * 18 + b"]"
    assert scan.peek() is None
    assert asked == [7, 7, 7, 7]


def test_a_non_finite_value_past_the_first_block_names_its_entry(tmp_path, monkeypatch):
    """Blocks of 4 values over three entries of 3: the NaN is value 6, in the second block, and
    belongs to entry 2 (values 6 to 8)."""
    monkeypatch.setattr(log_module, "CHUNK_BYTES", 4)
    path = write_log(tmp_path / "log.json", [[0, 1, 2], [3, 4, 5], [np.nan, 7, 8]])
    with pytest.raises(LogError) as e:
        read_accuracy_log(path)
    assert str(e.value) == (
        f"{path}: 1 of 3 responses hold NaN or Inf (first: qsl_idx 2); the model produced non-finite "
        "outputs (damaged weights?): nothing to score"
    )


def test_an_index_out_of_range_names_the_task_and_the_likely_causes(tmp_path):
    path = write_log(tmp_path / "log.json", [[0, 1, 2]] * 3, qsl=[0, 1, 5])
    with pytest.raises(LogError) as e:
        log_module.check_coverage(read_accuracy_log(path), 4, "xnli")
    assert str(e.value) == (
        f"{path}: qsl_idx 5 is out of range: xnli has 4 samples (for the languages and data "
        "selected); this looks like a log from xnli (3 logits per sample), or from other --languages"
    )


def test_optimize_threshold_takes_the_cut_of_the_best_f1_not_of_the_best_precision():
    """10 gold pairs; 11 candidates scored 10, 9, ..., 1, 0.5, right at ranks 1, 9 and 10.
    Cut 1: P 1, R 0.1, F1 2 x 0.1 / 1.1 = 0.18; cut 9: P 2/9, R 0.2, F1 0.21; cut 10: P 0.3, R 0.3,
    F1 0.3 (the best); cut 11: P 3/11, R 0.3, F1 0.29. Threshold: between ranks 10 and 11,
    (1 + 0.5) / 2 = 0.75. The first candidate is wrong: F1 of 0 / 0 must come out as 0, silently."""
    scores = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5])
    gold = np.zeros(11, dtype=bool)
    gold[[0, 8, 9]] = True
    assert retrieval.optimize_threshold(scores, gold, 10) == 0.75
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would reach the script's stderr
        # cut 1 wrong (0 / 0), cut 2 right: P 0.5, R 1 -> F1 2/3, cut 3: P 1/3 -> threshold (5 + 4) / 2
        assert (
            retrieval.optimize_threshold(np.array([6.0, 5.0, 4.0]), np.array([False, True, False]), 1)
            == 4.5
        )


def test_bucc_duplicates_all_reaches_the_miner(tmp_path):
    """de: source sentences a, b, a (ids d0, d1, d2) on e1, e2, e1; English A, B (n0, n1) on e1, e2;
    gold (d0, n0), (d1, n1); threshold 1. k = min(4, 2) = 2, every neighbour mean is (1 + 0) / 2, so a
    matching pair's margin is 1 / 0.5 = 2. "drop" leaves out sentence a (it occurs twice): 1 pair,
    right: P 100, R 50, F1 66.67. "all" maps a-A to (d0, n0) and (d2, n0): 3 pairs, 2 right:
    P 66.67, R 100, F1 80."""
    gold = [("d0", "n0"), ("d1", "n1")]
    pair = RetrievalPair("de", ["d0", "d1", "d2"], ["a", "b", "a"], ["n0", "n1"], ["A", "B"], gold)
    task = HandTask("bucc", "bucc", [pair], ("de",))
    e = np.eye(4, dtype=np.float32)
    path = write_log(tmp_path / "log.json", [e[0], e[1], e[0], e[0], e[1]])
    drop = score(task, read_accuracy_log(path), threshold=1.0)
    assert drop.metrics["per_language"]["de"] == pytest.approx(
        {"f1": 200 / 3, "precision": 100.0, "recall": 50.0, "threshold": 1.0, "mined": 1}
    )
    every = score(task, read_accuracy_log(path), duplicates="all", threshold=1.0)
    assert every.metrics["duplicates"] == "all"
    assert every.metrics["per_language"]["de"] == pytest.approx(
        {"f1": 80.0, "precision": 200 / 3, "recall": 100.0, "threshold": 1.0, "mined": 3}
    )
    assert sorted((s, t) for s, t, _ in every.predictions) == [("d0", "n0"), ("d1", "n1"), ("d2", "n0")]


def test_mine_ids_drops_duplicated_sentences_by_default():
    """Source sentences A, B, A and English A, B on orthonormal directions (as in the duplicates
    test of tests/test_scoring_independent.py): by default (XTREME's evaluator) the pair of the
    repeated sentence A is dropped, leaving (s1, t1) with margin 2."""
    e = np.eye(4, dtype=np.float32)
    args = (e[[0, 1, 0]], e[[0, 1]], ["A", "B", "A"], ["A", "B"], ["s0", "s1", "s2"], ["t0", "t1"])
    assert retrieval.mine_ids(*args) == [("s1", "t1", 2.0)]


def test_source_counts_count_every_gold_pair_of_a_source():
    # s0 has two gold English sentences (a, b) and one right prediction: [1 right, 1 predicted, 2 gold]
    counts = retrieval.source_counts([("s0", "a", 1.0)], [("s0", "a"), ("s0", "b")], ["s0"])
    assert counts == {"s0": [1, 1, 2]}


def test_mine_ids_drops_sentences_repeated_on_the_english_side_too():
    """Source A, B; English A, B, A: English sentence A occurs twice, so its pair is dropped."""
    e = np.eye(4, dtype=np.float32)
    args = (e[[0, 1]], e[[0, 1, 0]], ["A", "B"], ["A", "B", "A"], ["s0", "s1"], ["t0", "t1", "t2"])
    assert retrieval.mine_ids(*args, duplicates="drop") == [("s1", "t1", 2.0)]


def test_bucc_keeps_the_warnings_of_a_partial_log(tmp_path):
    """de complete (qsl 0..3), fr (qsl 4..7) only half logged: de is scored, and both warnings
    (partial coverage, fr left out) reach the result."""
    e = np.eye(4, dtype=np.float32)
    pairs = [
        RetrievalPair("de", ["d0", "d1"], ["a", "b"], ["n0", "n1"], ["A", "B"], [("d0", "n0")]),
        RetrievalPair("fr", ["f0", "f1"], ["a", "b"], ["m0", "m1"], ["A", "B"], [("f0", "m0")]),
    ]
    task = HandTask("bucc", "bucc", pairs, ("de", "fr"))
    path = write_log(tmp_path / "log.json", [e[0], e[1], e[0], e[1], e[0], e[1]])
    r = score(task, read_accuracy_log(path))
    assert list(r.metrics["per_language"]) == ["de"]
    assert r.warnings == [
        f"{path}: partial coverage: 6 of 8 samples logged (2 missing); scoring the covered ones only",
        f"{path}: error for fr: only 2 of its 4 sentences were logged (qsl 4..7); a pair must be "
        "complete to be scored: left out",
    ]


def simple_margin_mining(x: np.ndarray, y: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """Ratio-margin mining written from its definition (XTREME's LASER procedure), one pair at a
    time in float64: cos(a, b) / ((mean cos of a's k nearest + mean cos of b's k nearest) / 2); each
    side's best candidate among its k nearest, both directions pooled (forward first), best score
    first, kept one-to-one, score > 0."""
    cos = x.astype(np.float64) @ y.astype(np.float64).T
    n, m = cos.shape

    def nearest_k(row: np.ndarray, kk: int) -> list[int]:
        return sorted(range(len(row)), key=lambda j: (-row[j], j))[:kk]

    kx, ky = min(k, m), min(k, n)
    mean_x = [np.mean(cos[i, nearest_k(cos[i], kx)]) for i in range(n)]
    mean_y = [np.mean(cos[nearest_k(cos[:, j], ky), j]) for j in range(m)]

    def margin(i: int, j: int) -> float:
        return cos[i, j] / ((mean_x[i] + mean_y[j]) / 2)

    pool = [
        max(((i, j, margin(i, j)) for j in nearest_k(cos[i], kx)), key=lambda c: c[2]) for i in range(n)
    ]
    pool += [
        max(((i, j, margin(i, j)) for i in nearest_k(cos[:, j], ky)), key=lambda c: c[2])
        for j in range(m)
    ]
    kept, used_x, used_y = [], set(), set()
    for i, j, s in sorted(pool, key=lambda c: -c[2]):
        if i not in used_x and j not in used_y:
            used_x.add(i)
            used_y.add(j)
            if s > 0:
                kept.append((i, j, s))
    return kept


@pytest.mark.parametrize("seed", range(6))
def test_mine_equals_the_simple_margin_mining_on_random_sentences(seed):
    """Random unit vectors (7 source, 5 English, 6 dimensions, k = 4, and k = 2): each direction's
    best candidate differs from the other's often, so a bug in either direction's margin changes the
    pairs or their scores."""
    rng = np.random.default_rng(seed)
    x = retrieval.l2_normalize(rng.standard_normal((7, 6)).astype(np.float32))
    y = retrieval.l2_normalize(rng.standard_normal((5, 6)).astype(np.float32))
    for k in (4, 2):
        src, trg, score_ = retrieval.mine(x, y, k)
        want = simple_margin_mining(x, y, k)
        assert list(zip(src.tolist(), trg.tolist(), strict=True)) == [(i, j) for i, j, _ in want]
        assert score_.tolist() == pytest.approx([s for *_, s in want], rel=1e-5)


# --- Tatoeba and BUCC logs that do not fit the task -----------------------------------------------
def test_retrieval_log_errors_name_the_task(tmp_path):
    """One Tatoeba pair of 2 + 2 sentences (qsl 0..3): a qsl_idx of 9 is out of range, and entries of
    8 and 16 floats are not one embedding size; both messages name the task."""
    pair = RetrievalPair("aaa", ["a0", "a1"], ["x", "y"], ["e0", "e1"], ["x", "y"], None)
    task = HandTask("tatoeba", "tatoeba", [pair], ("aaa",))
    e = np.eye(16, dtype=np.float32)
    far = write_log(tmp_path / "far.json", [e[0, :8]], qsl=[9])
    with pytest.raises(LogError) as info:
        score(task, read_accuracy_log(far))
    assert str(info.value).startswith(f"{far}: qsl_idx 9 is out of range: tatoeba has 4 samples")
    mixed = write_log(tmp_path / "mixed.json", [e[0, :8], e[1], e[2, :8], e[3, :8]])
    with pytest.raises(LogError) as info:
        score(task, read_accuracy_log(mixed))
    assert str(info.value).startswith(
        f"{mixed}: tatoeba responses must have one embedding size for all entries; found sizes 8, 16"
    )


def test_mine_keeps_equal_margins_in_candidate_order():
    """20 pairs, each sentence its own English twin (x_i = y_i), interleaved: even i on its own
    axis e_i (group A), odd i on (e_i + f) / sqrt 2 with f one shared axis (group B). k = 4. A's 4
    nearest cosines are 1, 0, 0, 0 (mean 1/4): margin 1 / (1/4) = 4. B's are 1, 1/2, 1/2, 1/2 (the
    other B sentences share f; mean 5/8): margin 1 / (5/8) = 1.6. Every candidate appears twice
    (forward, then backward), ties everywhere: the pairs come out best first and, within one
    margin, in candidate order (the forward copy, by source index): 0, 2, ..., 18, then 1, 3, ..., 19.
    (NumPy sorts arrays shorter than 17 stably by insertion: a smaller case could not see an
    unstable sort.)"""
    v = np.zeros((20, 21), dtype=np.float32)
    for i in range(20):
        v[i, i] = 1.0
        if i % 2:
            v[i, 20] = 1.0
    v = retrieval.l2_normalize(v)
    src, trg, score_ = retrieval.mine(v, v, 4)
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    assert src.tolist() == order and trg.tolist() == order
    assert score_.tolist() == pytest.approx([4.0] * 10 + [1.6] * 10, rel=1e-6)


@pytest.mark.parametrize("n_src, n_en", [(0, 3), (3, 0), (0, 0)])
def test_a_side_with_no_sentence_mines_no_pair_and_scores_zero(n_src, n_en):
    rng = np.random.default_rng(0)
    src, en = rng.normal(size=(n_src, 4)), rng.normal(size=(n_en, 4))
    src_ids, en_ids = [f"fr-{i}" for i in range(n_src)], [f"en-{i}" for i in range(n_en)]
    cands = retrieval.mine_ids(src, en, src_ids, en_ids, src_ids, en_ids)
    assert cands == []
    result = retrieval.bucc_score(cands, [("fr-0", "en-0")])
    assert (result.precision, result.recall, result.f1) == (0.0, 0.0, 0.0)


def test_a_candidate_of_margin_exactly_zero_is_not_mined():
    """x1 = e2 is orthogonal to both English sentences, so its best candidate y0 has a cosine of exactly
    0; y0's neighbour mean is not 0 (cos(y0, x0) = 1/sqrt2), so the margin is exactly 0.0 and both
    ends are still free when the greedy pass reaches it. XTREME mines only margins > 0: one pair."""
    r = np.float32(1 / np.sqrt(2))
    x = np.array([[1, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    y = np.array([[r, 0, 0, r], [1, 0, 0, 0]], dtype=np.float32)
    src, trg, score_ = retrieval.mine(x, y)
    assert list(zip(src.tolist(), trg.tolist(), strict=True)) == [(0, 1)]
    assert score_[0] > 0


def test_margins_are_computed_in_float32_as_xtreme_does():
    """The neighbour means and the margins are float32 arithmetic (XTREME's faiss similarities), cast
    to float64 only at the end: every score equals, to the last bit, the formula written here in
    float32 from the definition (k nearest cosines, descending, averaged) for the direction that
    proposed the pair (x @ y.T and y @ x.T may differ in their last bit)."""
    rng = np.random.default_rng(3)
    x = retrieval.l2_normalize(rng.standard_normal((9, 8)).astype(np.float32))
    y = retrieval.l2_normalize(rng.standard_normal((7, 8)).astype(np.float32))
    k = 4
    cos_xy, cos_yx = x @ y.T, y @ x.T
    mean_x = -np.sort(-cos_xy, axis=1)[:, :k].mean(axis=1)
    mean_y = -np.sort(-cos_yx, axis=1)[:, :k].mean(axis=1)
    assert (mean_x.dtype, mean_y.dtype) == (np.float32, np.float32)
    src, trg, score_ = retrieval.mine(x, y, k)
    assert len(src) >= 5 and score_.dtype == np.float64
    half = np.float32(2)
    for i, j, s in zip(src.tolist(), trg.tolist(), score_.tolist(), strict=True):
        fwd = cos_xy[i, j] / ((mean_x[i] + mean_y[j]) / half)
        bwd = cos_yx[j, i] / ((mean_y[j] + mean_x[i]) / half)
        assert s in (float(fwd), float(bwd)), (i, j)


# --- accuracy scripts' --output ---------------------------------------------------------------------
def test_check_output_names_what_stops_the_write(tmp_path, monkeypatch):
    with pytest.raises(LogError) as err:
        cli.check_output(tmp_path)
    assert str(err.value) == (
        f"{tmp_path}: --output names a directory; give a file name, e.g. {tmp_path / 'accuracy.json'}"
    )
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(LogError) as err:
        cli.check_output(plain / "sub" / "out.json")
    assert str(err.value) == (
        f"{plain / 'sub' / 'out.json'}: --output cannot be written: {plain} is not a directory"
    )
    cli.check_output(tmp_path / "new" / "deeper" / "out.json")  # missing folders are made later
    asked = []

    def no_write(path, mode):  # as for a user without write permission (the tests run as root)
        asked.append((Path(path), mode))
        return mode != os.W_OK | os.X_OK

    monkeypatch.setattr(cli.os, "access", no_write)
    with pytest.raises(LogError) as err:
        cli.check_output(tmp_path / "out.json")
    assert (
        str(err.value)
        == f"{tmp_path / 'out.json'}: --output cannot be written: {tmp_path} is not writable"
    )
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]


def test_write_atomically_makes_missing_folders_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a" / "b" / "accuracy.json"
    cli.write_atomically(target, "précision = 1\n")
    assert target.read_bytes() == "précision = 1\n".encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["accuracy.json"]


def test_a_file_of_no_known_kind_is_named_not_a_plain_file():
    assert log_module._file_kind(0) == "not a plain file"
    assert log_module._file_kind(stat.S_IFIFO) == "a named pipe"


def test_data_dir_reaches_the_scorer(tmp_path, capsys):
    """--data_dir: two German rows of our own, answered right: 100 over 2 samples, no coverage warning
    (the bundled file's 2,490 German rows would make the same log a partial one)."""
    data = tmp_path / "xnli"
    data.mkdir()
    (data / "dev-de.tsv").write_text("a\tb\tneutral\nc\td\tentailment\n", encoding="utf-8")
    log = write_log(tmp_path / "mlperf_log_accuracy.json", np.eye(3, dtype=np.float32)[[1, 0]])
    argv = [str(log), "--data_dir", str(data), "--languages", "de"]
    assert cli.main("xnli", argv) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[-1] == '{"accuracy": 100.0}'
    assert out.splitlines()[2].split() == ["de", "2", "100.00"]


def test_output_is_the_metrics_as_indented_json(tmp_path, capsys):
    log = write_log(tmp_path / "mlperf_log_accuracy.json", np.eye(3, dtype=np.float32)[[1]])
    data = tmp_path / "xnli"
    data.mkdir()
    (data / "dev-de.tsv").write_text("a\tb\tneutral\n", encoding="utf-8")
    out = tmp_path / "accuracy.json"
    argv = [str(log), "--data_dir", str(data), "--languages", "de", "--output", str(out)]
    assert cli.main("xnli", argv) == 0
    assert out.read_text(encoding="utf-8") == (
        '{\n "task": "xnli",\n "accuracy": 100.0,\n "per_language": {\n  "de": 100.0\n },\n'
        ' "count": {\n  "de": 1\n },\n "samples_scored": 1,\n "heldout_rows": null\n}\n'
    )


def test_an_output_that_cannot_be_written_is_one_error_line(tmp_path, capsys, monkeypatch):
    log = write_log(tmp_path / "mlperf_log_accuracy.json", np.eye(3, dtype=np.float32)[[1]])
    data = tmp_path / "xnli"
    data.mkdir()
    (data / "dev-de.tsv").write_text("a\tb\tneutral\n", encoding="utf-8")
    out = tmp_path / "accuracy.json"

    def full_disk(path, text):
        raise OSError(28, "No space left on device")  # no file name: the message names --output

    monkeypatch.setattr(cli, "write_atomically", full_disk)
    argv = [str(log), "--data_dir", str(data), "--languages", "de", "--output", str(out)]
    assert cli.main("xnli", argv) == 3
    assert capsys.readouterr().err == (
        f"error: {out}: --output cannot be written (No space left on device)\n"
    )


def test_running_out_of_memory_is_one_error_line(tmp_path, capsys, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli, "_main", no_memory)
    assert cli.main("xnli", [str(tmp_path / "big.json")]) == 3
    assert capsys.readouterr() == (
        "",
        f"error: {tmp_path / 'big.json'}: not enough memory to score this log\n",
    )


def test_a_run_config_of_more_than_1_mib_beside_the_log_is_refused_by_name(tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    cfg = tmp_path / "run_config.json"
    body = '{"task_options": {"first_row": 2}}'
    cfg.write_text(body + " " * ((1 << 20) - len(body)))  # exactly 1 MiB: still read
    assert cli.run_task_options(log) == {"first_row": 2}
    cfg.write_text(body + " " * ((1 << 20) - len(body) + 1))
    with pytest.raises(LogError) as err:
        cli.run_task_options(log)
    assert str(err.value) == f"{cfg}: 1048577 bytes, more than a run_config.json can be (1048576)"
