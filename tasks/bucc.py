"""BUCC 2018 parallel-sentence mining: de, fr, ru, zh against English.

Files (the official names): `<data_dir>/<l>-en.<split>.<l>`, `<l>-en.<split>.en` (lines
`<id>TAB<sentence>`) and `<l>-en.<split>.gold` (lines `<l-id>TAB<en-id>`), each optionally .gz. Only the
zh-en sample split is bundled. split: "sample" (default), "training", "dev" or "test"; the gold file is
required except for "test", where it may be absent (gold = None).

Languages: with `languages=None`, the pairs whose source file exists for the split (de fr ru zh order);
asking for a pair whose files are missing is a DataError.

qsl_idx order: pairs in alphabetical order (de, fr, ru, zh: the active ones); within a pair the
non-English sentences in file order, then the English sentences in file order. `read()` gives one
RetrievalPair per pair with the files' ids and gold pairs. Features and extra arrays ("side", "line"):
see tasks.tatoeba.RetrievalTask (max_length 128 tokens by default); "line" indexes src_ids / en_ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tasks.data import DataError, RetrievalPair, check_choice, find_file, read_id_sentences, read_tsv
from tasks.tatoeba import RetrievalTask


class BuccTask(RetrievalTask):
    """BUCC 2018: mine translation pairs between a language and English; F1 against gold."""

    name = "bucc"
    title = "BUCC"
    scoring = "bucc"
    metrics = ("f1", "precision", "recall")
    primary_metric = "f1"
    languages = ("de", "fr", "ru", "zh")
    splits = ("sample", "training", "dev", "test")

    def __init__(
        self,
        data_dir: str | Path | None = None,
        languages: Sequence[str] | str | None = None,
        split: str = "sample",
        max_length: int = 128,
        prefix: str = "",
    ):
        super().__init__(data_dir, languages, max_length, prefix)
        self.split = check_choice(split, self.splits, "split")
        if not languages:
            present = tuple(lang for lang in self.languages if self._find(lang, lang, False) is not None)
            if not present:
                raise DataError(
                    f"{self.data_dir}: no BUCC files for split {split!r} "
                    f"(expected e.g. zh-en.{split}.zh and zh-en.{split}.en, optionally .gz)"
                )
            self.active_languages = present

    def _find(self, lang: str, ext: str, required: bool = True) -> Path | None:
        return find_file(self.data_dir, f"{lang}-en.{self.split}.{ext}", required)

    def _gold_file(self, lang: str) -> Path | None:
        return self._find(lang, "gold", required=self.split != "test")

    def data_files(self) -> list[Path]:
        """Per active pair: source sentences, English sentences, gold (when present)."""
        files: list[Path] = []
        for lang in self.active_languages:
            files += [self._find(lang, lang), self._find(lang, "en")]
            gold = self._gold_file(lang)
            files += [gold] if gold is not None else []
        return files

    def read(self) -> list[RetrievalPair]:
        out = []
        for lang in self.active_languages:
            src_ids, src = read_id_sentences(self._find(lang, lang))
            en_ids, en = read_id_sentences(self._find(lang, "en"))
            gold_path = self._gold_file(lang)
            gold = _read_gold(gold_path, set(src_ids), set(en_ids)) if gold_path is not None else None
            out.append(RetrievalPair(lang, src_ids, src, en_ids, en, gold))
        return out


def _read_gold(path: Path, src_ids: set[str], en_ids: set[str]) -> list[tuple[str, str]]:
    """Gold `src-id TAB en-id` lines; every id must exist in its sentence file."""
    gold = []
    for lineno, (s, e) in enumerate(read_tsv(path, 2), 1):
        for sid, known, side in ((s, src_ids, "source"), (e, en_ids, "English")):
            if sid not in known:
                raise DataError(f"{path}: line {lineno}: id {sid!r} is not in the {side} sentence file")
        gold.append((s, e))
    return gold
