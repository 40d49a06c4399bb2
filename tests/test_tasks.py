"""The five tasks as QSL-ready datasets: counts, qsl order, features, cache, user data folders."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from tasks.base import FeatureSet
from tasks.data import cache_root, pad_ragged, read_squad
from tasks.registry import TASKS, get_task, task_names
from tasks.tydiqa import answer_token_span, squad_train_features
from tests.conftest import DATA

TYDIQA_COUNTS = {
    "ar": 921,
    "bn": 113,
    "en": 440,
    "fi": 782,
    "id": 565,
    "ko": 276,
    "ru": 812,
    "sw": 499,
    "te": 669,
}


def _gz_lines(path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def _assert_same(a: FeatureSet, b: FeatureSet) -> None:
    assert a.languages == b.languages
    for name in ("input_ids", "offsets", "language"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert sorted(a.extra) == sorted(b.extra)
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k])


@pytest.fixture(scope="module")
def xnli_features(tiny_tokenizer, tmp_path_factory):
    """Full XNLI (37,350 pairs) through the cache, plus the cache folder."""
    cache = tmp_path_factory.mktemp("cache")
    return get_task("xnli").features(tiny_tokenizer, cache_dir=cache), cache


def test_registry_names_and_kinds():
    assert task_names() == ["xnli", "pawsx", "tydiqa", "bucc", "tatoeba"]
    assert {n: TASKS[n].kind for n in TASKS} == {
        "xnli": "classification",
        "pawsx": "classification",
        "tydiqa": "qa",
        "bucc": "retrieval",
        "tatoeba": "retrieval",
    }
    assert (TASKS["xnli"].num_labels, TASKS["pawsx"].num_labels) == (3, 2)


def test_xnli_counts_order_and_features(xnli_features):
    task = get_task("xnli")
    examples = task.read()
    assert len(examples) == 37350 == 15 * 2490
    assert (examples[0].language, examples[0].row) == ("ar", 0)
    assert (examples[2490].language, examples[2490].row) == ("bg", 0)
    assert (examples[-1].language, examples[-1].row) == ("zh", 2489)
    first = _gz_lines(DATA / "xnli" / "dev-ar.tsv.gz")[0].split("\t")
    assert [examples[0].text_a, examples[0].text_b] == first[:2]
    assert examples[0].label == ("entailment", "neutral", "contradiction").index(first[2])
    # rows are translations of the same English rows: same labels in every language
    labels = np.array([e.label for e in examples]).reshape(15, 2490)
    assert (labels == labels[4]).all() and np.bincount(labels[4]).tolist() == [830, 830, 830]

    fs, _ = xnli_features
    assert len(fs) == 37350 and fs.languages == task.languages
    assert {k: len(v) for k, v in fs.language_slices().items()} == dict.fromkeys(task.languages, 2490)
    np.testing.assert_array_equal(fs.extra["label"], labels.ravel())
    np.testing.assert_array_equal(fs.extra["row"][2488:2492], [2488, 2489, 0, 1])
    assert fs.lengths.max() <= 128 and fs.input_ids.dtype == np.int32
    ids = fs.ids(0)
    assert ids[0] == 0 and ids[-1] == 2 and list(ids).count(2) == 3  # <s> a </s></s> b </s>


def test_cache_hit_is_identical_and_atomic(xnli_features, tiny_tokenizer):
    fs, cache = xnli_features
    files = sorted(p.name for p in (cache / "xnli").iterdir())
    assert len(files) == 1 and files[0].endswith(".npz")  # no temp file left behind
    again = get_task("xnli").features(tiny_tokenizer, cache_dir=cache)
    _assert_same(fs, again)
    assert again.meta["cache_key"] == fs.meta["cache_key"]
    assert sorted(p.name for p in (cache / "xnli").iterdir()) == files


def test_cache_invalidated_when_data_changes(tiny_tokenizer, tmp_path):
    data = tmp_path / "xnli"
    data.mkdir()
    shutil.copy(DATA / "xnli" / "dev-en.tsv.gz", data)
    task = get_task("xnli", data_dir=data, languages=["en"])
    first = task.features(tiny_tokenizer, cache_dir=tmp_path / "cache")
    lines = _gz_lines(data / "dev-en.tsv.gz")
    lines[5] = "A brand new premise.\tA brand new hypothesis.\tneutral"
    (data / "dev-en.tsv.gz").unlink()
    (data / "dev-en.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")  # plain file now
    second = task.features(tiny_tokenizer, cache_dir=tmp_path / "cache")
    assert second.meta["cache_key"] != first.meta["cache_key"]
    assert len(list((tmp_path / "cache" / "xnli").iterdir())) == 2
    assert not np.array_equal(second.ids(5), first.ids(5))
    assert second.extra["label"][5] == 1
    for i in (0, 4, 6, 2489):
        np.testing.assert_array_equal(second.ids(i), first.ids(i))


def test_features_are_deterministic(tiny_tokenizer):
    task = get_task("pawsx", languages="en,de")
    a = task.featurize(tiny_tokenizer, task.feature_settings())
    b = get_task("pawsx", languages=["de", "en"]).featurize(tiny_tokenizer, task.feature_settings())
    _assert_same(a, b)
    assert a.languages == ("de", "en") and len(a) == 4000  # task order, not request order


def test_pawsx_counts_and_order():
    task = get_task("pawsx")
    examples = task.read()
    assert len(examples) == 7 * 2000
    assert [examples[k * 2000].language for k in range(7)] == ["de", "en", "es", "fr", "ja", "ko", "zh"]
    assert all(e.row == i % 2000 for i, e in enumerate(examples))
    assert sum(e.label for e in examples[2000:4000]) == 863  # en: 863 paraphrases (label 1)


def test_max_length_setting_truncates(tiny_tokenizer):
    task = get_task("xnli", languages=["en"], max_length=16)
    assert task.feature_settings() == {"max_length": 16}
    fs = task.featurize(tiny_tokenizer, task.feature_settings())
    assert fs.lengths.max() == 16


def test_tatoeba_counts_order_and_features(tiny_tokenizer):
    task = get_task("tatoeba")
    assert len(task.languages) == 36 and list(task.languages) == sorted(task.languages)
    pairs = task.read()
    for pair in pairs:
        n = len(_gz_lines(DATA / "tatoeba" / f"tatoeba.{pair.language}-eng.{pair.language}.gz"))
        assert len(pair.src_sents) == len(pair.en_sents) == n
    counts = {p.language: len(p.src_sents) for p in pairs}
    assert counts["jav"] == 205 and counts["tel"] == 234 and counts["afr"] == 1000
    assert sum(counts.values()) == 31692
    assert pairs[0].gold[:2] == [("0", "0"), ("1", "1")]

    sub = get_task("tatoeba", languages=["te", "jav"])  # 2-letter alias and 3-letter code
    assert sub.active_languages == ("jav", "tel")
    fs = sub.featurize(tiny_tokenizer, sub.feature_settings())
    assert len(fs) == 2 * 205 + 2 * 234
    np.testing.assert_array_equal(fs.extra["side"][:411], [0] * 205 + [1] * 205 + [0])
    np.testing.assert_array_equal(fs.extra["line"][203:207], [203, 204, 0, 1])
    assert fs.language.tolist() == [0] * 410 + [1] * 468
    jav = _gz_lines(DATA / "tatoeba" / "tatoeba.jav-eng.eng.gz")
    ref = tiny_tokenizer(jav[3], truncation=True, max_length=128)["input_ids"]
    assert fs.ids(205 + 3).tolist() == ref


def test_bucc_counts_gold_and_features(tiny_tokenizer):
    task = get_task("bucc")
    assert task.active_languages == ("zh",) and task.split == "sample"
    (pair,) = task.read()
    assert (len(pair.src_ids), len(pair.en_ids), len(pair.gold)) == (8624, 13589, 257)
    assert pair.src_ids[0] == "zh-000000001" and pair.en_ids[0] == "en-000000001"
    assert pair.gold[0] == ("zh-000000057", "en-000008530")
    assert [p.name for p in task.data_files()] == [
        "zh-en.sample.zh.gz",
        "zh-en.sample.en.gz",
        "zh-en.sample.gold.gz",
    ]
    fs = task.featurize(tiny_tokenizer, task.feature_settings())
    assert len(fs) == 8624 + 13589
    assert np.bincount(fs.extra["side"]).tolist() == [8624, 13589]
    assert fs.extra["line"][8624] == 0 and fs.extra["line"][-1] == 13588


def test_tydiqa_counts_and_order():
    task = get_task("tydiqa")
    examples = task.read()
    got: dict[str, int] = {}
    for e in examples:
        got[e.language] = got.get(e.language, 0) + 1
    assert got == TYDIQA_COUNTS and list(got) == list(task.languages)
    assert examples[0].qid == "arabic-2387335860751143628-1"


def test_tydiqa_windows_and_answer_round_trip(tiny_tokenizer):
    task = get_task("tydiqa", languages=["sw", "en"])
    examples = task.read()
    fs = task.featurize(tiny_tokenizer, task.feature_settings())
    ex_idx, cs, ce = fs.extra["example_index"], fs.extra["char_start"], fs.extra["char_end"]
    assert len(cs) == len(ce) == len(fs.input_ids)
    assert fs.lengths.max() <= 384
    assert np.all(np.diff(ex_idx) >= 0) and set(ex_idx.tolist()) == set(range(len(examples)))
    assert fs.languages == ("en", "sw") and fs.language[0] == 0 and fs.language[-1] == 1
    exact = contained = 0
    for k, ex in enumerate(examples):
        start = ex.answer_starts[0]
        end = start + len(ex.answers[0])
        windows = np.flatnonzero(ex_idx == k)
        found = False
        for w in windows:
            lo, hi = fs.offsets[w], fs.offsets[w + 1]
            wcs, wce = cs[lo:hi], ce[lo:hi]
            assert wcs[0] == -1 and wcs[-1] == -1  # <s> and </s>
            first, last = answer_token_span(wcs, wce, start, end)
            if (first, last) == (0, 0):
                continue
            found = True
            text = ex.context[wcs[first] : wce[last]]
            contained += ex.answers[0] in text
            exact += text == ex.answers[0]
            break
        assert found, ex.qid
    assert contained == len(examples)
    assert exact >= 0.9 * len(examples)
    # windows of a long context advance by doc_stride (128) tokens
    k = int(np.bincount(ex_idx).argmax())
    w0, w1 = np.flatnonzero(ex_idx == k)[:2]
    first_ctx = [
        int(cs[fs.offsets[w] : fs.offsets[w + 1]][cs[fs.offsets[w] : fs.offsets[w + 1]] >= 0][0])
        for w in (w0, w1)
    ]
    ctx_ids = tiny_tokenizer(examples[k].context, add_special_tokens=False, return_offsets_mapping=True)
    starts = [o[0] for o in ctx_ids["offset_mapping"]]
    pos = [min(range(len(starts)), key=lambda i: abs(starts[i] - c)) for c in first_ctx]
    assert pos[1] - pos[0] == 128


def test_question_truncated_to_max_query_length(tiny_tokenizer):
    task = get_task("tydiqa", languages=["en"], max_query_length=5)
    fs = task.featurize(tiny_tokenizer, task.feature_settings())
    lo, hi = fs.offsets[0], fs.offsets[1]
    question_tokens = int(np.argmax(fs.input_ids[lo:hi] == 2)) - 1  # tokens between <s> and </s>
    assert question_tokens <= 5


def test_squad_train_features(tiny_tokenizer):
    examples = read_squad(DATA / "squad_en" / "xquad.en.json.gz", language="en")[:150]
    feats = squad_train_features(tiny_tokenizer, examples)
    n = len(feats["offsets"]) - 1
    assert feats["start_positions"].shape == feats["end_positions"].shape == (n,)
    assert np.all(feats["start_positions"] <= feats["end_positions"])
    positive = feats["start_positions"] > 0
    assert positive.sum() >= len(examples)  # every answer is inside at least one window
    ids, mask = pad_ragged(feats["input_ids"], feats["offsets"], range(n), tiny_tokenizer.pad_token_id)
    assert ids.shape[1] <= 384 and mask.sum() == len(feats["input_ids"])
    decoded_ok = 0
    for i in np.flatnonzero(positive)[:50]:
        ex = examples[feats["example_index"][i]]
        span = ids[i, feats["start_positions"][i] : feats["end_positions"][i] + 1]
        decoded_ok += ex.answers[0].strip().lower() in tiny_tokenizer.decode(span).strip().lower()
    assert decoded_ok >= 45


def test_cache_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("XLMR_HARNESS_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("XLMR_HARNESS_CACHE")
    assert cache_root().parts[-2:] == ("build", "cache")


def test_user_data_dir_of_plain_files(tiny_tokenizer, tmp_path):
    # XNLI official test split, uncompressed; a PAWS-X file with a header line
    (tmp_path / "test-fr.tsv").write_text("Il pleut.\tIl fait beau.\tcontradiction\nA\tB\tentailment\n")
    xnli = get_task("xnli", data_dir=tmp_path, languages=["fr"], split="test")
    assert [(e.row, e.label) for e in xnli.read()] == [(0, 2), (1, 0)]
    (tmp_path / "dev-ja.tsv").write_text("sentence1\tsentence2\tlabel\nx\ty\t1\n")
    assert [(e.row, e.label) for e in get_task("pawsx", data_dir=tmp_path, languages="ja").read()] == [
        (0, 1)
    ]
    # BUCC test split: de only, no gold
    (tmp_path / "de-en.test.de").write_text("de-1\tHallo Welt\nde-2\tGuten Tag\n")
    (tmp_path / "de-en.test.en").write_text("en-1\tGood day\n")
    bucc = get_task("bucc", data_dir=tmp_path, split="test")
    assert bucc.active_languages == ("de",)
    (pair,) = bucc.read()
    assert pair.src_ids == ["de-1", "de-2"] and pair.en_sents == ["Good day"] and pair.gold is None
    fs = bucc.featurize(tiny_tokenizer, bucc.feature_settings())
    assert fs.extra["side"].tolist() == [0, 0, 1] and fs.extra["line"].tolist() == [0, 1, 0]
    # Tatoeba and TyDiQA, uncompressed
    (tmp_path / "tatoeba.deu-eng.deu").write_text("Hallo\nDanke\n")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("Hello\nThanks\n")
    assert get_task("tatoeba", data_dir=tmp_path, languages="de").read()[0].en_sents == [
        "Hello",
        "Thanks",
    ]
    squad = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "Paris is in France.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where is Paris?",
                                "answers": [{"text": "France", "answer_start": 12}],
                            }
                        ],
                    }
                ]
            }
        ]
    }
    (tmp_path / "dev-fi.json").write_text(json.dumps(squad))
    (ex,) = get_task("tydiqa", data_dir=tmp_path, languages=["fi"]).read()
    assert (ex.language, ex.qid, ex.answers, ex.answer_starts) == ("fi", "q1", ["France"], [12])
