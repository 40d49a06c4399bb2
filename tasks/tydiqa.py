"""TyDiQA-GoldP (and any SQuAD v1.1 file): extractive QA as overlapping windows over each context.

Files: `<data_dir>/dev-<lang>.json[.gz]`, SQuAD v1.1 JSON (read by tasks.data.read_squad); split
"train": `train-en.json[.gz]`, English only, the questions the zoo trains on (the selection's dev
probe scores some of them: zoo/recipe.py `dev_rows`).

qsl_idx order: languages ar bn en fi id ko ru sw te (the active ones, in this order); within a language
the questions in file order (articles, paragraphs, questions); within a question its windows from the
start of the context to its end. `read()` lists the questions in the same order, and
`extra["example_index"][i]` is the index into `read()` of window i.

Windows (XTREME's SQuAD settings, all part of the cache key):
  max_length 384 tokens per window, max_query_length 64, doc_stride 128.
  * The question is cut to its first 64 tokens (the text is cut at the end of its 64th token).
  * Window = `<s> question </s></s> context piece </s>`; the context pieces come from the fast
    tokenizer (truncation="only_second", return_overflowing_tokens, return_offsets_mapping).
  * doc_stride keeps XTREME's meaning: consecutive windows START doc_stride tokens apart (the
    tokenizer's own `stride` is the overlap, so we pass max_length - 4 - question length - doc_stride,
    batching questions of equal length together).
Extra arrays: "example_index" int32 [n windows]; "char_start"/"char_end" int32 [total_tokens], aligned
with input_ids: the half-open character span [char_start, char_end) of each context token in the
example's context (leading whitespace trimmed), -1 for question and special tokens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tasks.base import FeatureSet, Task
from tasks.data import (
    DataError,
    QAExample,
    check_choice,
    check_max_length,
    find_file,
    keep_tokenizer_state,
    read_squad,
    to_ragged,
)

Window = tuple[list[int], np.ndarray, np.ndarray]  # (input_ids, char_start, char_end)


class TydiqaTask(Task):
    """TyDiQA-GoldP v1.1 dev, 9 languages, scored with the SQuAD v1.1 metric."""

    name = "tydiqa"
    title = "TyDiQA"
    kind = "qa"
    scoring = "squad"
    metrics = ("exact_match", "f1")
    primary_metric = "f1"
    languages = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
    splits = ("dev", "train")  # train: English only

    def __init__(
        self,
        data_dir: str | Path | None = None,
        languages: Sequence[str] | str | None = None,
        max_length: int = 384,
        doc_stride: int = 128,
        max_query_length: int = 64,
        split: str = "dev",
    ):
        super().__init__(data_dir, languages)
        self.split = check_choice(split, self.splits, "split")
        if self.split == "train":
            if languages and tuple(self.active_languages) != ("en",):
                raise ValueError(
                    f"tydiqa split 'train' is English only (train-en.json), not languages "
                    f"{', '.join(self.active_languages)}"
                )
            self.active_languages = ("en",)
        self.max_length = check_max_length(max_length, minimum=32)
        self.doc_stride = check_max_length(doc_stride, "doc_stride", minimum=1)
        self.max_query_length = check_max_length(max_query_length, "max_query_length", minimum=1)
        if max_query_length + doc_stride + 4 >= max_length:
            raise ValueError(
                f"max_query_length + doc_stride + 4 must be < max_length, got "
                f"{max_query_length} + {doc_stride} + 4 >= {max_length}"
            )

    def data_files(self) -> list[Path]:
        """`<split>-<lang>.json` (or .gz) per active language, in qsl order."""
        return [find_file(self.data_dir, f"{self.split}-{lang}.json") for lang in self.active_languages]

    def read(self) -> list[QAExample]:
        """Every question of the active languages, in qsl order."""
        out: list[QAExample] = []
        for lang, path in zip(self.active_languages, self.data_files(), strict=True):
            out.extend(read_squad(path, language=lang))
        return out

    def feature_settings(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "doc_stride": self.doc_stride,
            "max_query_length": self.max_query_length,
        }

    def featurize(self, tokenizer, settings: dict[str, Any]) -> FeatureSet:
        examples = self.read()
        windows = qa_windows(tokenizer, examples, **settings, desc="featurising tydiqa")
        flat = [(k, w) for k, ws in enumerate(windows) for w in ws]
        input_ids, offsets = to_ragged([w[0] for _, w in flat])
        lang_index = {lang: j for j, lang in enumerate(self.active_languages)}
        empty = np.zeros(0, dtype=np.int32)
        return FeatureSet(
            task=self.name,
            languages=self.active_languages,
            input_ids=input_ids,
            offsets=offsets,
            language=np.array([lang_index[examples[k].language] for k, _ in flat], dtype=np.int16),
            extra={
                "example_index": np.array([k for k, _ in flat], dtype=np.int32),
                "char_start": np.concatenate([w[1] for _, w in flat] or [empty]).astype(np.int32),
                "char_end": np.concatenate([w[2] for _, w in flat] or [empty]).astype(np.int32),
            },
        )


def truncate_questions(tokenizer, questions: Sequence[str], max_query_length: int) -> list[str]:
    """Each question cut (as text) after its `max_query_length`-th token; shorter ones unchanged."""
    out = list(questions)
    todo = list(range(len(out)))
    for _ in range(5):  # re-tokenising a cut text almost always gives exactly the kept tokens
        enc = tokenizer([out[i] for i in todo], add_special_tokens=False, return_offsets_mapping=True)
        long = [
            (i, offs)
            for i, offs in zip(todo, enc["offset_mapping"], strict=True)
            if len(offs) > max_query_length
        ]
        for i, offs in long:
            out[i] = out[i][: offs[max_query_length - 1][1]]
        todo = [i for i, _ in long]
        if not todo:
            return out
    raise DataError(f"could not cut question {out[todo[0]]!r} to {max_query_length} tokens")


def qa_windows(
    tokenizer,
    examples: Sequence[QAExample],
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    desc: str = "windows",
    batch_size: int = 256,
) -> list[list[Window]]:
    """The windows of each example (see the module docstring), as (ids, char_start, char_end) lists.

    Result[k] lists example k's windows from the start of its context to its end.
    """
    with keep_tokenizer_state(tokenizer):
        return _qa_windows(
            tokenizer, examples, max_length, doc_stride, max_query_length, desc, batch_size
        )


def _qa_windows(tokenizer, examples, max_length, doc_stride, max_query_length, desc, batch_size):
    questions = truncate_questions(tokenizer, [e.question for e in examples], max_query_length)
    qlens = tokenizer(questions, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    groups: dict[int, list[int]] = defaultdict(list)  # question length -> example indices
    for k, ids in enumerate(qlens):
        groups[len(ids)].append(k)
    result: list[list[Window]] = [[] for _ in examples]
    bar = tqdm(total=len(examples), desc=desc, unit="q", disable=None)
    for qlen, members in sorted(groups.items()):
        overlap = max_length - specials - qlen - doc_stride  # tokenizer stride = overlap of windows
        for lo in range(0, len(members), batch_size):
            batch = members[lo : lo + batch_size]
            enc = tokenizer(
                [questions[k] for k in batch],
                [examples[k].context for k in batch],
                truncation="only_second",
                max_length=max_length,
                stride=overlap,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_attention_mask=False,
            )
            for w, local in enumerate(enc["overflow_to_sample_mapping"]):
                k = batch[local]
                cs, ce = _context_spans(enc, w, examples[k].context)
                result[k].append((enc["input_ids"][w], cs, ce))
            bar.update(len(batch))
    bar.close()
    return result


def _context_spans(enc, w: int, context: str) -> tuple[np.ndarray, np.ndarray]:
    """char_start/char_end int32 [L] of window w: context tokens' spans, -1 elsewhere."""
    offs = np.asarray(enc["offset_mapping"][w], dtype=np.int64).reshape(-1, 2)
    in_ctx = np.array([s == 1 for s in enc.sequence_ids(w)], dtype=bool)
    cs = np.where(in_ctx, offs[:, 0], -1)
    ce = np.where(in_ctx, offs[:, 1], -1)
    # SentencePiece's "▁" makes a word's first token cover the space before it: trim it.
    for _ in range(4):
        lead = np.flatnonzero(in_ctx & (ce - cs > 1))
        lead = lead[[context[i].isspace() for i in cs[lead]]]
        if len(lead) == 0:
            break
        cs[lead] += 1
    return cs.astype(np.int32), ce.astype(np.int32)


def answer_token_span(
    char_start: np.ndarray, char_end: np.ndarray, start: int, end: int
) -> tuple[int, int]:
    """Token positions (first, last) in one window covering the characters [start, end) of the context.

    (0, 0), i.e. <s>, when the window's context tokens do not contain the whole span.
    """
    ctx = np.flatnonzero(char_start >= 0)
    if len(ctx) == 0 or char_start[ctx[0]] > start or char_end[ctx[-1]] < end:
        return 0, 0
    first = ctx[np.argmax(char_end[ctx] > start)]
    last = ctx[len(ctx) - 1 - np.argmax(char_start[ctx][::-1] < end)]
    return int(first), int(last)


def squad_train_features(
    tokenizer,
    examples: Sequence[QAExample],
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> dict[str, np.ndarray]:
    """Training windows of SQuAD-format examples (e.g. read_squad of xquad.en or TyDiQA train-en).

    Same windows as TydiqaTask. The label is each example's first answer; a window that does not
    contain it whole (or an example without answers) points at token 0 (<s>).
    Returns ragged arrays: "input_ids" int32 [total_tokens], "offsets" int64 [n + 1] (window i is
    input_ids[offsets[i]:offsets[i + 1]], pad with tasks.data.pad_ragged), "start_positions" and
    "end_positions" int64 [n] (inclusive token indices), "example_index" int32 [n].
    """
    windows = qa_windows(
        tokenizer, examples, max_length, doc_stride, max_query_length, desc="train windows"
    )
    ids, starts, ends, example_index = [], [], [], []
    for k, (ex, ws) in enumerate(zip(examples, windows, strict=True)):
        for wid, cs, ce in ws:
            if ex.answers:
                s, e = answer_token_span(
                    cs, ce, ex.answer_starts[0], ex.answer_starts[0] + len(ex.answers[0])
                )
            else:
                s, e = 0, 0
            ids.append(wid)
            starts.append(s)
            ends.append(e)
            example_index.append(k)
    input_ids, offsets = to_ragged(ids)
    return {
        "input_ids": input_ids,
        "offsets": offsets,
        "start_positions": np.array(starts, dtype=np.int64),
        "end_positions": np.array(ends, dtype=np.int64),
        "example_index": np.array(example_index, dtype=np.int32),
    }
