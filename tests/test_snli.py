"""The vendored SNLI 1.0 dev and test splits (data/snli/) and their loader, tasks.data.read_snli."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from common.paths import DATA
from tasks.data import DataError, read_snli
from tasks.xnli import XnliTask

LABELS = XnliTask.label_names


def _raw_labels(split: str) -> list[str]:
    """The label words of one split, read with gzip alone (not through the loader)."""
    with gzip.open(DATA / "snli" / f"labels.{split}.gz", "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def test_snli_has_19666_pairs_with_the_label_counts_of_its_files():
    examples = read_snli(LABELS)
    assert len(examples) == 19666
    for split, offset, n in (("dev", 0, 9842), ("test", 9842, 9824)):
        raw = Counter(_raw_labels(split))
        # the counts the data set's release publishes for its splits
        published = {"dev": (3329, 3235, 3278), "test": (3368, 3219, 3237)}[split]
        assert tuple(raw[w] for w in ("entailment", "neutral", "contradiction")) == published
        loaded = Counter(LABELS[e.label] for e in examples[offset : offset + n])
        assert loaded == raw
        assert [e.row for e in examples[offset : offset + n]] == list(range(n))


def test_snli_first_pairs_are_the_files_first_lines():
    dev = read_snli(LABELS, splits=("dev",))
    first = dev[0]
    assert (first.language, first.row, first.label) == ("en", 0, LABELS.index("neutral"))
    assert first.text_a == "Two women are embracing while holding to go packages ."
    assert first.text_b == (
        "The sisters are hugging goodbye while holding to go packages after just eating lunch ."
    )
    assert dev[1].text_b == "Two woman are holding packages ."
    assert LABELS[dev[1].label] == "entailment"


def test_snli_unaligned_or_unknown_labels_are_data_errors(tmp_path):
    for name, lines in (("s1.dev", ["a", "b"]), ("s2.dev", ["c", "d"]), ("labels.dev", ["neutral"])):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="2 premises, 2 hypotheses, 1 labels"):
        read_snli(LABELS, splits=("dev",), folder=tmp_path)
    (tmp_path / "labels.dev").write_text("neutral\nmaybe\n")
    with pytest.raises(DataError, match="line 2: unknown label 'maybe'"):
        read_snli(LABELS, splits=("dev",), folder=tmp_path)
    with pytest.raises(ValueError, match="train"):
        read_snli(LABELS, splits=("train",), folder=tmp_path)
