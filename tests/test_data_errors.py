"""Bad input -> one clear error naming the file, the line and the problem; nothing cached."""

from __future__ import annotations

import gzip
import json

import pytest

from tasks.data import DataError, read_json, read_lines, read_tsv
from tasks.registry import get_task


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": "xnl"}, ["unknown task 'xnl'", "Did you mean 'xnli'?", "tatoeba"]),
        ({"name": "xnli", "max_len": 64}, ["no option 'max_len'", "Did you mean 'max_length'?"]),
        ({"name": "xnli", "split": "tset"}, ["unknown split 'tset'", "Did you mean 'test'?"]),
        ({"name": "xnli", "languages": ["en", "eng"]}, ["unknown language 'eng'", "'xnli'", "'en'"]),
        ({"name": "tatoeba", "languages": "deu,fre"}, ["unknown language 'fre'", "Did you mean 'fr'?"]),
        ({"name": "xnli", "max_length": 0}, ["max_length must be an integer >= 8, got 0"]),
        ({"name": "tydiqa", "doc_stride": 400}, ["must be < max_length"]),
    ],
)
def test_bad_names_and_options(kwargs, expected):
    with pytest.raises(ValueError) as err:
        get_task(**kwargs)
    for part in expected:
        assert part in str(err.value)


def test_missing_file_names_path_and_closest(tmp_path):
    _write(tmp_path / "dev-en.tsv", "a\tb\tneutral\n")
    with pytest.raises(DataError) as err:
        get_task("xnli", data_dir=tmp_path, languages=["fr"]).read()
    msg = str(err.value)
    assert str(tmp_path / "dev-fr.tsv") in msg and "file not found" in msg and "dev-fr.tsv.gz" in msg
    with pytest.raises(DataError, match="does not exist"):
        get_task("pawsx", data_dir=tmp_path / "nope", languages=["en"]).data_files()


def test_wrong_column_count(tmp_path):
    path = _write(tmp_path / "dev-en.tsv", "a\tb\tneutral\nc\td\tneutral\nonly one column\tneutral\n")
    with pytest.raises(DataError) as err:
        get_task("xnli", data_dir=tmp_path, languages="en").read()
    assert str(err.value) == f"{path}: line 3: expected 3 tab-separated columns, found 2"


def test_unknown_label(tmp_path):
    path = _write(tmp_path / "dev-en.tsv", "a\tb\tneutral\nc\td\tneutrl\n")
    with pytest.raises(DataError) as err:
        get_task("xnli", data_dir=tmp_path, languages="en").read()
    msg = str(err.value)
    assert msg.startswith(f"{path}: line 2: unknown label 'neutrl'") and "Did you mean 'neutral'?" in msg
    _write(tmp_path / "dev-de.tsv", "a\tb\t2\n")
    with pytest.raises(DataError, match=r"line 1: unknown label '2', expected one of 0, 1"):
        get_task("pawsx", data_dir=tmp_path, languages="de").read()


def test_empty_files(tmp_path):
    for reader, args in ((read_tsv, (3,)), (read_lines, ()), (read_json, ())):
        path = _write(tmp_path / f"empty-{reader.__name__}", "")
        with pytest.raises(DataError, match="file is empty") as err:
            reader(path, *args)
        assert str(path) in str(err.value)
    _write(tmp_path / "dev-en.tsv", "sentence1\tsentence2\tlabel\n")
    with pytest.raises(DataError, match="no data rows after the header"):
        get_task("pawsx", data_dir=tmp_path, languages="en").read()


def test_unreadable_bytes(tmp_path):
    (tmp_path / "dev-en.tsv.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match=r"dev-en\.tsv\.gz: line 1: cannot read"):
        get_task("xnli", data_dir=tmp_path, languages="en").read()
    with gzip.open(tmp_path / "dev-fr.tsv.gz", "wb") as f:
        f.write(b"a\tb\tneutral\n\xff\xfe\tb\tneutral\n")
    with pytest.raises(DataError, match=r"dev-fr\.tsv\.gz: line 2: not valid UTF-8"):
        get_task("xnli", data_dir=tmp_path, languages="fr").read()


def test_invalid_json_and_squad_structure(tmp_path):
    _write(tmp_path / "dev-en.json", '{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(DataError, match=r"dev-en\.json: line 2 column 19: invalid JSON"):
        get_task("tydiqa", data_dir=tmp_path, languages="en").read()
    _write(tmp_path / "dev-en.json", json.dumps([1, 2]))
    with pytest.raises(DataError, match="not SQuAD v1.1 JSON"):
        get_task("tydiqa", data_dir=tmp_path, languages="en").read()
    qa = {"id": "q7", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 2}]}
    doc = {"data": [{"paragraphs": [{"context": "In Paris.", "qas": [qa]}]}]}
    _write(tmp_path / "dev-en.json", json.dumps(doc))
    with pytest.raises(DataError) as err:
        get_task("tydiqa", data_dir=tmp_path, languages="en").read()
    assert "data[0].paragraphs[0].qas[0] (id 'q7')" in str(err.value) and "answer_start 2" in str(
        err.value
    )
    doc["data"][0]["paragraphs"][0]["qas"] = [{**qa, "answers": []}, {**qa, "answers": []}]
    _write(tmp_path / "dev-en.json", json.dumps(doc))
    with pytest.raises(DataError, match="qas\\[1\\]: duplicate question id 'q7'"):
        get_task("tydiqa", data_dir=tmp_path, languages="en").read()


def test_bucc_bad_files(tmp_path):
    with pytest.raises(DataError, match="no BUCC files for split 'sample'"):
        get_task("bucc", data_dir=tmp_path)
    _write(tmp_path / "fr-en.sample.fr", "fr-1\tBonjour\nfr-2\tSalut\n")
    _write(tmp_path / "fr-en.sample.en", "en-1\tHello\n")
    task = get_task("bucc", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"fr-en\.sample\.gold: file not found"):
        task.read()
    _write(tmp_path / "fr-en.sample.gold", "fr-1\ten-1\n")
    _write(tmp_path / "fr-en.sample.fr", "fr-1\tBonjour\nfr-1\tSalut\n")
    with pytest.raises(
        DataError, match=r"fr-en\.sample\.fr: line 2: duplicate id 'fr-1' \(first on line 1\)"
    ):
        task.read()
    _write(tmp_path / "fr-en.sample.fr", "fr-1\tBonjour\nfr-2\tSalut\n")
    _write(tmp_path / "fr-en.sample.gold", "fr-1\ten-1\nfr-2\ten-9\n")
    with pytest.raises(DataError, match=r"gold: line 2: id 'en-9' is not in the English sentence file"):
        task.read()
    with pytest.raises(DataError, match=r"de-en\.sample\.de: file not found"):
        get_task("bucc", data_dir=tmp_path, languages=["de"]).read()


def test_tatoeba_misaligned(tmp_path):
    _write(tmp_path / "tatoeba.fra-eng.fra", "Bonjour\nMerci\n")
    _write(tmp_path / "tatoeba.fra-eng.eng", "Hello\n")
    with pytest.raises(DataError, match="has 2 lines but .* has 1; Tatoeba files must be line-aligned"):
        get_task("tatoeba", data_dir=tmp_path, languages="fr").read()


def test_nothing_cached_on_error(tiny_tokenizer, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "dev-en.tsv", "a\tb\tneutral\nc\td\tmaybe\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="line 2: unknown label 'maybe'"):
        get_task("xnli", data_dir=data, languages="en").features(tiny_tokenizer, cache_dir=cache)
    assert not cache.exists() or not any(cache.rglob("*"))
    # an interruption while featurising leaves no file either
    _write(data / "dev-en.tsv", "a\tb\tneutral\n")
    task = get_task("xnli", data_dir=data, languages="en")
    monkeypatch.setattr(
        type(task), "featurize", lambda self, tok, settings: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(KeyboardInterrupt):
        task.features(tiny_tokenizer, cache_dir=cache)
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
