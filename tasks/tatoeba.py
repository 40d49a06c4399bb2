"""Tatoeba (LASER's test sets, as in XTREME): sentence retrieval, 36 languages x English.

Also home of `RetrievalTask`, the shared base of Tatoeba and BUCC (same features, different data).

Files: `<data_dir>/tatoeba.<l3>-eng.<l3>[.gz]` and `tatoeba.<l3>-eng.eng[.gz]`, one sentence per line,
line i of one file translating line i of the other. Languages are the 3-letter codes of the file names
(2-letter ISO codes are accepted as aliases: `TatoebaTask.iso2`).

qsl_idx order: pairs in alphabetical order of the 3-letter code (afr ara ben ... vie, the active ones);
within a pair first the non-English lines in file order, then the English lines in file order.
`read()` gives one RetrievalPair per pair with ids = 0-based line numbers as strings and
gold = [(str(i), str(i))] for every line i.

Features (RetrievalTask): `tokenizer(prefix + sentence, truncation=True, max_length=max_length)`, one
sample per sentence (prefix "" by default; the encoder's convention, e.g. e5's "query: ", otherwise),
max_length 128 tokens by default (XTREME's retrieval setting). `language[i]` is the pair's language on
both sides. Extra arrays: "side" int8 [n] (0 = non-English, 1 = English),
"line" int32 [n] (0-based line of the sentence in its file, i.e. its index in src_ids / en_ids).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.base import FeatureSet, Task
from tasks.data import (
    DataError,
    RetrievalPair,
    batch_encode,
    check_max_length,
    find_file,
    read_lines,
    resolve_languages,
    to_ragged,
)


class RetrievalTask(Task):
    """Sentence retrieval between each active language and English; subclasses implement `read()`."""

    kind = "retrieval"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        languages: Sequence[str] | str | None = None,
        max_length: int = 128,
        prefix: str = "",
    ):
        super().__init__(data_dir, languages)
        self.max_length = check_max_length(max_length)
        self.prefix = prefix

    @abstractmethod
    def read(self) -> list[RetrievalPair]:
        """One RetrievalPair per active language, in qsl order."""

    def feature_settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length, **({"prefix": self.prefix} if self.prefix else {})}

    def featurize(self, tokenizer, settings: dict[str, Any]) -> FeatureSet:
        pairs = self.read()
        texts: list[str] = []
        side, line, language = [], [], []
        lang_index = {lang: k for k, lang in enumerate(self.active_languages)}
        for pair in pairs:
            for s, sents in enumerate((pair.src_sents, pair.en_sents)):
                texts.extend(sents)
                side.append(np.full(len(sents), s, dtype=np.int8))
                line.append(np.arange(len(sents), dtype=np.int32))
                language.append(np.full(len(sents), lang_index[pair.language], dtype=np.int16))
        if settings.get("prefix"):  # an embedding model's input convention, e.g. e5's "query: "
            texts = [settings["prefix"] + t for t in texts]
        ids = batch_encode(
            tokenizer, texts, max_length=settings["max_length"], desc=f"featurising {self.name}"
        )
        input_ids, offsets = to_ragged(ids)
        return FeatureSet(
            task=self.name,
            languages=self.active_languages,
            input_ids=input_ids,
            offsets=offsets,
            language=np.concatenate(language),
            extra={"side": np.concatenate(side), "line": np.concatenate(line)},
        )


class TatoebaTask(RetrievalTask):
    """Tatoeba: English sentences query their translations; top-1 accuracy per language."""

    name = "tatoeba"
    title = "Tatoeba"
    scoring = "tatoeba"
    metrics = ("accuracy",)
    primary_metric = "accuracy"
    # fmt: off
    iso2 = {
        "afr": "af", "ara": "ar", "ben": "bn", "bul": "bg", "cmn": "zh", "deu": "de", "ell": "el",
        "est": "et", "eus": "eu", "fin": "fi", "fra": "fr", "heb": "he", "hin": "hi", "hun": "hu",
        "ind": "id", "ita": "it", "jav": "jv", "jpn": "ja", "kat": "ka", "kaz": "kk", "kor": "ko",
        "mal": "ml", "mar": "mr", "nld": "nl", "pes": "fa", "por": "pt", "rus": "ru", "spa": "es",
        "swh": "sw", "tam": "ta", "tel": "te", "tgl": "tl", "tha": "th", "tur": "tr", "urd": "ur",
        "vie": "vi",
    }
    # fmt: on
    languages = tuple(sorted(iso2))

    def __init__(
        self,
        data_dir: str | Path | None = None,
        languages: Sequence[str] | str | None = None,
        max_length: int = 128,
        prefix: str = "",
    ):
        super().__init__(data_dir, None, max_length, prefix)
        aliases = {two: three for three, two in self.iso2.items()}
        self.active_languages = resolve_languages(self.name, self.languages, languages, aliases)

    def _files(self, lang: str) -> tuple[Path, Path]:
        return (
            find_file(self.data_dir, f"tatoeba.{lang}-eng.{lang}"),
            find_file(self.data_dir, f"tatoeba.{lang}-eng.eng"),
        )

    def data_files(self) -> list[Path]:
        """Per active language: its sentence file, then the English file."""
        return [p for lang in self.active_languages for p in self._files(lang)]

    def read(self) -> list[RetrievalPair]:
        out = []
        for lang in self.active_languages:
            src_path, en_path = self._files(lang)
            src, en = read_lines(src_path), read_lines(en_path)
            if len(src) != len(en):
                raise DataError(
                    f"{src_path}: has {len(src)} lines but {en_path} has {len(en)}; "
                    "Tatoeba files must be line-aligned"
                )
            ids = [str(i) for i in range(len(src))]
            out.append(RetrievalPair(lang, ids, src, list(ids), en, [(i, i) for i in ids]))
        return out
