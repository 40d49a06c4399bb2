"""XNLI and PAWS-X: sentence-pair classification, one code path (`ClassificationTask`).

Files: `<data_dir>/<split>-<lang>.tsv[.gz]`, rows `text_a TAB text_b TAB label`, no quoting. The bundled
split is `dev`; `split="test"` reads the user's official XTREME-format test files. A first line whose
label column reads "label" is a header and skipped.

qsl_idx order: languages in the task's order (only the active ones), and within a language the data
rows in file order. With all languages, sample `k * rows + r` is row r of language number k
(XNLI: ar bg de el en es fr hi ru sw th tr ur vi zh, 2490 dev rows each, so qsl 2490 is bg row 0;
PAWS-X: de en es fr ja ko zh, 2000 dev rows each).

`first_row=N` keeps only the rows from N on of every language (the rows a model trained on the
first N rows has not seen: the recipe's zoos, HELDOUT_FIRST_ROW); qsl_idx then counts those rows
only, and the scorer must be given the same option (accuracy scripts: run_config.json's
"task_options" beside the log).

Features: `tokenizer(text_a, text_b, truncation=True, max_length=max_length)` (default 128 tokens,
XTREME's setting; longest-first truncation). Extra arrays: "label" int16 [n] (index into
`label_names`), "row" int32 [n] (0-based row in its file).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tasks.base import FeatureSet, Task
from tasks.data import (
    ClassificationExample,
    batch_encode,
    check_choice,
    check_max_length,
    find_file,
    read_classification_file,
    to_ragged,
)


class ClassificationTask(Task):
    """A sentence-pair classification task; subclasses only declare their data (names, languages,
    labels)."""

    kind = "classification"
    scoring = "classification"
    metrics = ("accuracy",)
    primary_metric = "accuracy"
    splits: ClassVar[tuple[str, ...]] = ("dev", "test")

    def __init__(
        self,
        data_dir: str | Path | None = None,
        languages: Sequence[str] | str | None = None,
        split: str = "dev",
        max_length: int = 128,
        first_row: int = 0,
    ):
        super().__init__(data_dir, languages)
        self.split = check_choice(split, self.splits, "split")
        self.max_length = check_max_length(max_length)
        if not isinstance(first_row, int) or first_row < 0:
            raise ValueError(f"first_row must be an integer >= 0, got {first_row!r}")
        self.first_row = first_row

    def data_files(self) -> list[Path]:
        """`<split>-<lang>.tsv` (or .gz) per active language, in qsl order."""
        return [find_file(self.data_dir, f"{self.split}-{lang}.tsv") for lang in self.active_languages]

    def read(self) -> list[ClassificationExample]:
        """Every example of the active languages (rows from first_row on) in qsl order."""
        out: list[ClassificationExample] = []
        for lang, path in zip(self.active_languages, self.data_files(), strict=True):
            rows = read_classification_file(path, self.label_names, language=lang)
            out.extend(e for e in rows if e.row >= self.first_row)
        return out

    def feature_settings(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            **({"first_row": self.first_row} if self.first_row else {}),
        }

    def featurize(self, tokenizer, settings: dict[str, Any]) -> FeatureSet:
        examples = self.read()
        ids = batch_encode(
            tokenizer,
            [e.text_a for e in examples],
            [e.text_b for e in examples],
            max_length=settings["max_length"],
            desc=f"featurising {self.name}",
        )
        input_ids, offsets = to_ragged(ids)
        lang_index = {lang: k for k, lang in enumerate(self.active_languages)}
        return FeatureSet(
            task=self.name,
            languages=self.active_languages,
            input_ids=input_ids,
            offsets=offsets,
            language=np.array([lang_index[e.language] for e in examples], dtype=np.int16),
            extra={
                "label": np.array([e.label for e in examples], dtype=np.int16),
                "row": np.array([e.row for e in examples], dtype=np.int32),
            },
            meta={"split": self.split, "first_row": self.first_row},
        )


# XNLI's rows come in threes, one premise with three hypotheses (rows 3j, 3j+1, 3j+2), the same item
# in every language: the unit the bootstrap resamples and the dev split holds out whole.
PREMISE_ROWS = 3


def premise_of(row: int) -> int:
    """The premise (0, 1, ...) of XNLI row `row`."""
    return int(row) // PREMISE_ROWS


class XnliTask(ClassificationTask):
    """XNLI (Conneau et al. 2018): premise/hypothesis -> entailment, neutral, contradiction."""

    name = "xnli"
    title = "XNLI"
    languages = (
        "ar",
        "bg",
        "de",
        "el",
        "en",
        "es",
        "fr",
        "hi",
        "ru",
        "sw",
        "th",
        "tr",
        "ur",
        "vi",
        "zh",
    )
    label_names = ("entailment", "neutral", "contradiction")


class PawsxTask(ClassificationTask):
    """PAWS-X (Yang et al. 2019): is s2 a paraphrase of s1? Labels "0" (no) and "1" (yes)."""

    name = "pawsx"
    title = "PAWS-X"
    languages = ("de", "en", "es", "fr", "ja", "ko", "zh")
    label_names = ("0", "1")
