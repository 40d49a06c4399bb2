"""research/pooling.py: the retrieval layer chosen on XNLI's training rows, never a test row."""

from __future__ import annotations

import numpy as np

from research import pooling
from research.cli import main as research_main
from tasks.data import find_file, read_classification_file
from tasks.xnli import XnliTask
from tests.conftest import save_tiny_encoder


def test_the_sentences_are_the_training_rows_the_same_in_every_language():
    data = XnliTask().data_dir
    got = pooling.parallel_sentences(data, ["en", "de"])
    en_rows = read_classification_file(find_file(data, "dev-en.tsv"), XnliTask.label_names, "en")
    assert len(got["en"]) == len(got["de"]) == 415 + 1245  # 415 premises, then 1245 hypotheses
    assert got["en"][0] == en_rows[0].text_a and got["en"][1] == en_rows[3].text_a
    assert got["en"][415] == en_rows[0].text_b and got["en"][-1] == en_rows[1244].text_b
    assert en_rows[1245].text_b not in got["en"] and en_rows[1245].text_a not in got["en"][:415]


def test_retrieval_accuracy_is_tatoebas_top1_per_language():
    rng = np.random.default_rng(0)
    en = rng.normal(size=(10, 4)).astype(np.float32)
    swapped = en[[1, 0, *range(2, 10)]]  # rows 0 and 1 exchanged: 8 of 10 found
    got = pooling.retrieval_accuracy({"en": en, "de": en * 3.0, "fr": swapped})
    assert got == {"de": 100.0, "fr": 80.0}


def test_the_best_score_and_its_ties():
    s = [
        pooling.Score(8, "", {"de": 70.0}),
        pooling.Score(12, "query: ", {"de": 80.0}),
        pooling.Score(12, "", {"de": 80.0}),
        pooling.Score(10, "", {"de": 80.0}),
    ]
    assert pooling.best(s) == s[3]  # 80 three times: the earlier layer
    assert pooling.best(s[:3]) == s[2]  # then no prefix
    assert pooling.best([s[0], pooling.Score(4, "", {"de": 69.9})]) == s[0]


def test_the_command_on_a_tiny_encoder_writes_the_choice(tmp_path, tiny_tokenizer, capsys):
    save_tiny_encoder(tmp_path / "zoo" / "encoder", tiny_tokenizer, {"num_hidden_layers": 2})
    out = tmp_path / "pooling.md"
    argv = [
        "pooling",
        "--encoder",
        "tiny",
        "--models_dir",
        str(tmp_path / "zoo"),
        "--languages",
        "de,sw",
    ]
    argv += ["--layers", "0,2"]
    assert research_main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    rows = [
        line.split(" | ")
        for line in text.splitlines()
        if line.startswith("| 0 |") or line.startswith("| 2 |")
    ]
    assert [r[0] for r in rows] == ["| 0", "| 2"] and len(
        rows[0]
    ) == 3 + 2  # layer, prefix, mean, de, sw
    means = {int(r[0][2:]): float(r[2]) for r in rows}
    chosen = max(means, key=lambda k: (means[k], -k))
    assert f"**Chosen: layer {chosen}, prefix ''** (mean {means[chosen]:.1f})" in text
    served = 1  # tiny's retrieval layer: XTREME's ~7/12 of 2 layers (models/encoders.py)
    assert f"serves layer {served} without a prefix" in text and "the choice differs from it" in text
    assert "1660 sentences per language" in text and "XNLI's training rows 0-1244" in text
    # a layer the encoder does not have: one error line, exit 3
    assert research_main([*argv[:-1], "3", "--out", str(out)]) == 3
    assert capsys.readouterr().err.strip().endswith("error: --layers [3]: tiny has hidden_states 0..2")


def test_the_committed_choice_is_the_layer_e5_small_serves():
    """reports/retrieval_pooling.md (real e5-small): its best row is the one it names, and that is
    the layer and prefix the harness serves for retrieval (models/encoders.py)."""
    import re

    from common.paths import REPO
    from models.encoders import get_encoder

    text = (REPO / "reports" / "retrieval_pooling.md").read_text()
    rows = [line.strip("|").split("|") for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    table = {(int(r[0]), r[1].strip()): float(r[2]) for r in rows}
    assert len(table) == 10 and table[(12, "''")] == 93.0 and table[(12, "'query: '")] == 90.6
    best = max(table, key=table.get)
    assert best == (get_encoder("e5-small").retrieval_layer, "''")
    assert "**Chosen: layer 12, prefix ''** (mean 93.0)" in text and "the choice agrees with it" in text
