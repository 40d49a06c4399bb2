"""Accuracy scripts: gold-derived logs score 100, hand-computed metric fixtures, bad input never a
traceback.

Logs are written as LoadGen does: a JSON list of {seq_id, qsl_idx, data = uppercase hex of the
little-endian float32 response bytes}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.registry import get_task
from tasks.scoring import LogError, main, score_log, write_outputs
from tasks.scoring.classification import HELDOUT_FIRST_ROW
from tasks.scoring.retrieval import bucc_score, mine_ids, optimize_threshold
from tasks.scoring.squad import best_span, em_f1, f1_score, max_context_mask, normalize_answer

FIXTURES = Path(__file__).parent / "fixtures"


def write_log(path: Path, responses, qsl=None, dtype="<f4") -> Path:
    """responses: list of 1-D arrays in qsl order (or at the given qsl indices)."""
    qsl = range(len(responses)) if qsl is None else qsl
    entries = [
        {"seq_id": k, "qsl_idx": int(q), "data": np.asarray(r, dtype=dtype).tobytes().hex().upper()}
        for k, (q, r) in enumerate(zip(qsl, responses, strict=True))
    ]
    path.write_text(json.dumps(entries))
    return path


def gold_classification(task_name: str, tmp_path: Path, noise_rows=None) -> Path:
    task = get_task(task_name)
    eye = np.eye(task.num_labels, dtype=np.float32)
    logits = [eye[e.label] for e in task.read()]
    return write_log(tmp_path / "mlperf_log_accuracy.json", logits)


# --- gold-derived logs ---------------------------------------------------------------------------
@pytest.mark.parametrize("task_name", ["xnli", "pawsx"])
def test_classification_gold_log_scores_100(task_name, tmp_path, capsys):
    log = gold_classification(task_name, tmp_path)
    assert main(task_name, [str(log), "--output", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == {"accuracy": 100.0}
    assert list(json.loads(out[-1])) == list(get_task(task_name).metrics)  # what the task declares
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["per_language"]) == set(get_task(task_name).languages)
    assert out[0].split() == ["language", "count", "accuracy"]


def test_classification_wrong_answers_and_heldout_rows(tmp_path):
    task = get_task("pawsx")
    ex = task.read()
    # predict the gold label only on held-out rows: held-out accuracy 100, all-rows accuracy = share
    # held out
    logits = [np.eye(2, dtype=np.float32)[e.label if e.row >= 1000 else 1 - e.label] for e in ex]
    log = write_log(tmp_path / "log.json", logits)
    assert score_log("pawsx", log, heldout_rows=True).metrics["accuracy"] == 100.0
    assert score_log("pawsx", log).metrics["accuracy"] == pytest.approx(50.0)
    assert HELDOUT_FIRST_ROW == {"xnli": 1245, "pawsx": 1000}


def test_tatoeba_identical_embeddings_score_100(tmp_path):
    task = get_task("tatoeba")
    rng = np.random.default_rng(0)
    resp = []
    for p in task.read():
        e = rng.standard_normal((len(p.src_sents), 8)).astype(np.float32)
        resp += [*e, *(2 * e)]  # the English side: the same directions, other norms
    r = score_log("tatoeba", write_log(tmp_path / "log.json", resp))
    assert json.loads(r.final_line) == {"accuracy": 100.0}
    assert len(r.metrics["per_language"]) == 36


def test_tydiqa_gold_span_logits(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("XLMR_HARNESS_CACHE", str(tmp_path / "cache"))
    task = get_task("tydiqa", languages="en,sw")
    examples = task.read()
    fs = task.features(tiny_tokenizer)
    cs, ce, ex_of = fs.extra["char_start"], fs.extra["char_end"], fs.extra["example_index"]
    ok_start = max_context_mask(ex_of, cs, fs.offsets)
    resp, expected = [], {}
    for i in range(len(fs)):
        lo, hi = fs.offsets[i], fs.offsets[i + 1]
        ex = examples[ex_of[i]]
        a0 = ex.answer_starts[0]
        a1 = a0 + len(ex.answers[0])
        start, end = np.zeros(hi - lo, np.float32), np.zeros(hi - lo, np.float32)
        c_s, c_e = cs[lo:hi], ce[lo:hi]
        inside = np.flatnonzero(
            (c_s >= 0) & (c_e > a0) & (c_s < a1)
        )  # tokens overlapping the gold answer
        if (
            len(inside)
            and c_s[inside[0]] <= a0
            and c_e[inside[-1]] >= a1
            and inside[-1] - inside[0] < 30
            and ok_start[lo + inside[0]]  # XTREME starts answers only in a token's max-context window
        ):
            start[inside[0]], end[inside[-1]] = 10.0, 10.0
            expected[ex.qid] = ex.context[c_s[inside[0]] : c_e[inside[-1]]]
        resp.append(np.concatenate([start, end]))
    log = write_log(tmp_path / "mlperf_log_accuracy.json", resp)
    (tmp_path / "run_config.json").write_text(json.dumps({"tokenizer": tiny_tokenizer.name_or_path}))
    r = score_log("tydiqa", log, languages="en,sw", tokenizer=tiny_tokenizer)
    assert len(expected) > 0.9 * len(examples)
    for qid, text in expected.items():  # the decoded answer is the gold-covering token span
        assert r.predictions[qid] == text
    assert list(json.loads(r.final_line)) == ["exact_match", "f1"] == list(get_task("tydiqa").metrics)
    assert r.metrics["f1"] > 90 and r.metrics["exact_match"] > 80
    exact = [em_f1(expected[e.qid], e.answers)[0] for e in examples if e.qid in expected]
    assert np.mean(exact) > 0.8
    paths = write_outputs(r, tmp_path / "run")
    assert json.loads(paths["predictions"].read_text()) == r.predictions
    assert paths["accuracy.txt"].read_text().splitlines()[-1] == r.final_line
    per = json.loads(paths["per_sample"].read_text())["per_language"]  # one F1 x100 per question
    for lang in ("en", "sw"):
        assert len(per[lang]["ids"]) == r.metrics["per_language"][lang]["count"]
        assert np.mean(per[lang]["scores"]) == pytest.approx(r.metrics["per_language"][lang]["f1"])


# --- SQuAD v1.1 metric (expected values checked against the official evaluate-v1.1 script) ---------
@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("The  Cat!", "cat"),
        ("an apple, a pear", "apple pear"),
        ("theory", "theory"),  # articles only as whole words
        ("Ünïcode «quoted»", "ünïcode «quoted»"),  # Unicode lowercased; « » are not ASCII punctuation
        ("a\u00a0b", "b"),  # non-breaking space is whitespace
        ("東京。", "東京。"),  # CJK punctuation is kept (English-only normalisation)
        ("  L'été — the_end  ", "lété — theend"),
        ("A.B.C.", "abc"),
        ("THE Ångström", "ångström"),
    ],
)
def test_normalize_answer(text, norm):
    assert normalize_answer(text) == norm


def test_f1_em_hand_computed():
    assert f1_score("the cat sat", "cat sat down") == pytest.approx(0.8)  # P 2/2, R 2/3
    assert f1_score("a b b", "b b b c") == pytest.approx(2 / 3)  # 'a' dropped; P 2/2, R 2/4
    assert f1_score("the", "a") == 0.0  # both empty after normalisation: F1 0 ...
    assert em_f1("the", ["a"]) == (1.0, 0.0)  # ... but EM 1, as in the official script
    assert em_f1("Paris.", ["London", "paris"]) == (1.0, 1.0)  # max over golds
    assert em_f1(None, ["x"]) == (0.0, 0.0)


def test_best_span_rules():
    # 6 tokens: <s> q </s> c0 c1 </s>; only c0, c1 are context
    ctx = np.array([0, 0, 0, 1, 1, 0], bool)
    start = np.array([9, 9, 0, 1, 2, 9], np.float32)  # the best starts are non-context: skipped
    end = np.array([9, 0, 0, 3, 1, 9], np.float32)
    assert best_span(start, end, ctx, ctx) == (
        4.0,
        3,
        3,
    )  # (c0, c0)=4 beats (c0, c1)=2; (c1, c0) has e < s
    assert best_span(start, end, ctx, np.array([0, 0, 0, 0, 1, 0], bool)) == (
        3.0,
        4,
        4,
    )  # c0 not max context
    assert best_span(start, end, np.zeros(6, bool), np.zeros(6, bool)) is None
    n = 40  # an answer longer than 30 tokens is never chosen
    s, e = np.zeros(n, np.float32), np.zeros(n, np.float32)
    s[1], e[35], e[20] = 5, 5, 1
    assert best_span(s, e, np.ones(n, bool), np.ones(n, bool)) == (6.0, 1, 20)


def test_max_context_mask():
    # one example, two windows over context chars 0..4; window 0 holds 0,1,2,3; window 1 holds 2,3,4
    char_start = np.array([-1, 0, 1, 2, 3, -1, -1, 2, 3, 4, -1], np.int32)
    offsets = np.array([0, 6, 11])
    mask = max_context_mask(np.array([0, 0]), char_start, offsets)
    # token 2: w0 score min(2,1)+.04=1.04, w1 min(0,2)+.03=.03 -> w0; token 3: w0 0.04, w1 1.03 -> w1
    assert mask.tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0]


# --- BUCC mining and threshold ---------------------------------------------------------------------
def test_optimize_threshold_hand_computed():
    # cuts: 1 -> P 1, R 1/3, F .5; 2 -> P .5, F .4; 3 -> P 2/3, R 2/3, F .667 (best); 4 -> F .571
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert optimize_threshold(scores, np.array([1, 0, 1, 0], bool), 3) == pytest.approx(0.65)
    assert optimize_threshold(scores, np.array([0, 0, 0, 1], bool), 1) == 0.6  # best cut last: own score
    assert optimize_threshold(scores, np.zeros(4, bool), 1) == 0.0


def test_bucc_tiny_fixture():
    """Hand-made pair with a duplicated sentence (A = z0 = z2).

    Unique zh side A, B, C; k = min(4, n): 4 neighbours zh->en, 3 en->zh. Mined one-to-one pairs
    (margin scores from XTREME's mine_bitext, run outside the repo with an exact inner-product index):
    A-a 2.443716526, C-c 2.213225126, B-b 2.094109058. Gold: (z0,e0), (z2,e0), (z3,e2).
    duplicates="drop" (XTREME's read_sent2id discards repeated sentences): candidates C-c (gold), B-b;
      cut 1: P 1, R 1/3, F1 .5 (best); cut 2: P .5, F1 .4 -> threshold = (2.2132 + 2.0941) / 2
      = 2.15366709; kept C-c: P 100, R 33.33, F1 50 -- XTREME's bucc_eval prints exactly these.
    duplicates="all": A-a maps to (z0,e0) and (z2,e0), both gold: cuts F1 .5, .8, 1.0 (best), .857
      -> the same midpoint threshold; P = R = F1 = 100.
    """
    f = json.loads((FIXTURES / "bucc_tiny.json").read_text())
    args = (
        np.array(f["src_emb"], np.float32),
        np.array(f["en_emb"], np.float32),
        f["src_sents"],
        f["en_sents"],
        f["src_ids"],
        f["en_ids"],
    )
    gold = [tuple(g) for g in f["gold"]]
    drop = mine_ids(*args, duplicates="drop")
    assert [(s, t) for s, t, _ in drop] == [("z3", "e2"), ("z1", "e1")]
    assert [c[2] for c in drop] == pytest.approx([2.2132251262664795, 2.094109058380127], abs=1e-6)
    r = bucc_score(drop, gold)
    assert r.threshold == pytest.approx(2.1536670923233032, abs=1e-6)
    assert (r.precision, r.recall, r.f1) == pytest.approx((100.0, 100 / 3, 50.0))
    everything = mine_ids(*args, duplicates="all")
    assert [(s, t) for s, t, _ in everything] == [("z0", "e0"), ("z2", "e0"), ("z3", "e2"), ("z1", "e1")]
    r = bucc_score(everything, gold)
    assert r.threshold == pytest.approx(2.1536670923233032, abs=1e-6)
    assert (r.precision, r.recall, r.f1) == pytest.approx((100.0, 100.0, 100.0))
    assert [p[:2] for p in r.predictions] == [("z0", "e0"), ("z2", "e0"), ("z3", "e2")]


def test_bucc_log_end_to_end(tmp_path, capsys):
    task = get_task("bucc")
    (pair,) = task.read()
    rng = np.random.default_rng(0)
    src = rng.standard_normal((len(pair.src_sents), 16)).astype(np.float32)
    en = rng.standard_normal((len(pair.en_sents), 16)).astype(np.float32)
    row = {i: k for k, i in enumerate(pair.src_ids)}
    for k, e_id in enumerate(pair.en_ids):
        for s_id, g_en in pair.gold:
            if g_en == e_id:
                en[k] = src[row[s_id]]
    log = write_log(tmp_path / "log.json", [*src, *en])
    assert main("bucc", [str(log), "--output", str(tmp_path / "out" / "bucc.json")]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(final) == ["f1", "precision", "recall", "threshold"]
    assert list(final)[:3] == list(task.metrics)  # then the threshold the metrics were taken at
    assert final["f1"] > 95
    mined = (tmp_path / "out" / "bucc.predictions.tsv").read_text().splitlines()
    assert len(set(mined) & {f"{a}\t{b}" for a, b in pair.gold}) >= 0.95 * len(pair.gold)


# --- bad input: a clear message naming the file, exit code 2, never a traceback -------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("not json at all", "not JSON"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "0000803F"}, {"seq_id": 1, "qsl', "truncated"),
        ('{"qsl_idx": 0}', "not a LoadGen accuracy log"),
        ('[{"seq_id": 0, "idx": 0}]', "not a LoadGen accuracy log"),
        ('[{"seq_id": 0, "qsl_idx": -1, "data": "00"}]', "qsl_idx -1"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "ZZ"}]', "not hexadecimal"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "0000803F00"}]', "not a whole number of float32"),
        ('[{"seq_id": 0, "qsl_idx": 99999999999999999999, "data": "00"}]', "integer in 0..9223372"),
        ('[{"seq_id": 0, "qsl_idx": 3, "data": "0000803F0000C07F"}]', "1 of 1 responses hold NaN"),
        (
            '[{"seq_id": 0, "qsl_idx": 1, "data": "0000807F00000000"}]',
            "hold NaN or Inf (first: qsl_idx 1)",
        ),
    ],
)
def test_bad_log_structure(tmp_path, capsys, content, message):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(content)
    assert main("pawsx", [str(log)]) == 3
    err = capsys.readouterr().err
    assert message in err and str(log) in err and "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    assert main("xnli", [str(tmp_path / "nope.json")]) == 3
    assert "no such file" in capsys.readouterr().err


def test_duplicate_and_out_of_range_qsl(tmp_path):
    one = np.array([1, 0], np.float32)
    with pytest.raises(LogError, match="more than once"):
        score_log("pawsx", write_log(tmp_path / "d.json", [one, one], qsl=[5, 5]))
    with pytest.raises(LogError, match="out of range: pawsx has 14000 samples"):
        score_log("pawsx", write_log(tmp_path / "o.json", [one], qsl=[14000]))


def test_log_of_another_task(tmp_path, capsys):
    log = gold_classification("xnli", tmp_path)
    assert main("pawsx", [str(log)]) == 3  # 37350 entries > 14000 samples
    assert "this looks like a log from xnli" in capsys.readouterr().err
    two = write_log(tmp_path / "p.json", [np.zeros(2, np.float32)] * 10)
    with pytest.raises(LogError, match="this looks like a log from pawsx"):
        score_log("xnli", two)
    emb = write_log(tmp_path / "e.json", [np.zeros(32, np.float32)] * 10)
    with pytest.raises(LogError, match="looks like a log from a retrieval task"):
        score_log("xnli", emb)
    with pytest.raises(LogError, match="looks like a log from pawsx"):
        score_log("tatoeba", two)


def test_float16_logs(tmp_path):
    task = get_task("pawsx")
    logits = [np.eye(2)[e.label] for e in task.read()]
    log = write_log(tmp_path / "h.json", logits, dtype="<f2")
    assert score_log("pawsx", log, dtype="float16").metrics["accuracy"] == 100.0
    with pytest.raises(LogError, match="pawsx responses must have 2 floats"):
        score_log("pawsx", log)  # read as float32: 1 value per entry


def test_partial_coverage_warns_and_scores_covered(tmp_path, capsys):
    task = get_task("pawsx")
    ex = task.read()
    logits = [np.eye(2, dtype=np.float32)[e.label] for e in ex[:3000]]
    assert main("pawsx", [str(write_log(tmp_path / "p.json", logits))]) == 0
    out, err = capsys.readouterr()
    assert "partial coverage: 3000 of 14000 samples logged (11000 missing)" in err
    assert "no scored samples for es, fr, ja, ko, zh" in err
    assert json.loads(out.strip().splitlines()[-1]) == {"accuracy": 100.0}


def test_retrieval_partial_pair_is_left_out(tmp_path):
    task = get_task("tatoeba", languages="afr,ara")
    pairs = task.read()
    n0 = len(pairs[0].src_sents) * 2
    rng = np.random.default_rng(1)
    e = rng.standard_normal((n0 // 2, 8)).astype(np.float32)
    resp = [*e, *e, np.ones(8, np.float32)]  # afr complete, one sentence of ara
    r = score_log("tatoeba", write_log(tmp_path / "t.json", resp), languages="afr,ara")
    assert list(r.metrics["per_language"]) == ["afr"]
    assert any("error for ara: only 1 of its" in w for w in r.warnings)


def test_tydiqa_needs_a_tokenizer(tmp_path, capsys):
    log = write_log(tmp_path / "mlperf_log_accuracy.json", [np.zeros(10, np.float32)])
    assert main("tydiqa", [str(log)]) == 3
    assert "pass --tokenizer PATH" in capsys.readouterr().err
    (tmp_path / "run_config.json").write_text(json.dumps({"tokenizer": "no/such/folder"}))
    assert main("tydiqa", [str(log)]) == 3
    assert "cannot load the tokenizer" in capsys.readouterr().err


def test_tydiqa_wrong_sizes(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("XLMR_HARNESS_CACHE", str(tmp_path / "cache"))
    log = write_log(tmp_path / "log.json", [np.zeros(3, np.float32)] * 5)
    with pytest.raises(LogError, match="looks like a log from xnli"):
        score_log("tydiqa", log, languages="sw", tokenizer=tiny_tokenizer)
    log = write_log(tmp_path / "log2.json", [np.zeros(12, np.float32), np.zeros(14, np.float32)])
    with pytest.raises(LogError, match="another tokenizer"):
        score_log("tydiqa", log, languages="sw", tokenizer=tiny_tokenizer)


def test_a_heldout_only_log_is_scored_with_the_runs_task_options(tmp_path, capsys):
    """The recipe's zoos serve XNLI rows from 1245 on only (task option first_row): the log's
    qsl_idx counts those rows, and the accuracy script rebuilds the task from run_config.json."""
    task = get_task("xnli", languages="de,sw", first_row=1245)
    ex = task.read()
    assert len(ex) == 2 * 1245 and min(e.row for e in ex) == 1245
    assert task.feature_settings() == {"max_length": 128, "first_row": 1245}  # its own feature cache
    eye = np.eye(3, dtype=np.float32)
    logits = [eye[e.label] if e.language == "de" else eye[(e.label + 1) % 3] for e in ex]
    run = tmp_path / "run"
    run.mkdir()
    log = write_log(run / "mlperf_log_accuracy.json", logits)
    (run / "run_config.json").write_text(json.dumps({"task_options": {"first_row": 1245}}))
    assert main("xnli", [str(log), "--languages", "de,sw"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1]) == {"accuracy": 50.0}  # de all right, sw all wrong: rows matched
    assert score_log("xnli", log, languages="de,sw", task_options={}).metrics["accuracy"] != 50.0
    (run / "run_config.json").write_text(json.dumps({"task_options": [1245]}))
    assert main("xnli", [str(log), "--languages", "de,sw"]) == 3
    assert '"task_options" is not an object' in capsys.readouterr().err
    with pytest.raises(ValueError, match="first_row must be an integer >= 0"):
        get_task("xnli", first_row=-1)
