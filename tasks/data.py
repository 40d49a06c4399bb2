"""Where task data and caches live, and strict readers for the bundled and the official data files.

Every reader opens `<name>.gz` or the plain `<name>` transparently (the repo vendors gzip copies under
data/; users point at folders of the official uncompressed files) and raises `DataError` naming the
file, the 1-based line and the problem: missing file, empty file, wrong column count, unknown label,
invalid JSON, undecodable bytes.

Bundled files (under <repo>/data/) must have the rows data/rows.json lists (lines; questions for
SQuAD-format JSON): a dropped or added row would silently change every score, so it is a DataError
naming the file and how to restore it. Files elsewhere (--data_dir) are not counted.

Paths:
  default_data_dir(task) -> <repo>/data/<folder of that task>
  cache_root()           -> <repo>/build/cache, or $XLMR_HARNESS_CACHE when set. This module is the
                            only place that reads that variable (the one documented override).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from common.names import did_you_mean, lookup
from common.paths import BUILD, DATA

CACHE_ENV = "XLMR_HARNESS_CACHE"


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file, the line and the problem."""


# Task name -> folder under data/ (plain data, not dispatch: unknown names map to themselves).
DATA_FOLDERS = {"tydiqa": "tydiqa_goldp", "bucc": "bucc2018", "squad": "squad_en"}


def default_data_dir(task_name: str) -> Path:
    """The bundled data folder of a task: <repo>/data/<folder>."""
    return DATA / DATA_FOLDERS.get(task_name, task_name)


def cache_root() -> Path:
    """Root of the feature cache: $XLMR_HARNESS_CACHE if set (and non-empty), else <repo>/build/cache."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else BUILD / "cache"


def resolve_languages(
    task: str,
    all_langs: Sequence[str],
    requested: Sequence[str] | str | None,
    aliases: dict[str, str] | None = None,
) -> tuple[str, ...]:
    """The active languages of a task, always in the task's qsl order (`all_langs` order).

    requested: None or empty -> all languages; else codes (a list, or one comma-separated string).
    aliases:   optional other spellings -> canonical code (e.g. Tatoeba's 2-letter codes).
    Raises ValueError naming the task, the unknown code and the closest known code.
    """
    if not requested:
        return tuple(all_langs)
    if isinstance(requested, str):
        requested = [r for r in requested.split(",") if r.strip()]
    aliases = aliases or {}
    chosen = set()
    for raw in requested:
        lang = aliases.get(raw.strip(), raw.strip())
        if lang not in all_langs:
            hint = did_you_mean(lang, [*all_langs, *aliases])
            raise ValueError(
                f"unknown language {raw!r} for task {task!r}.{hint} Known: {', '.join(all_langs)}"
            )
        chosen.add(lang)
    return tuple(lang for lang in all_langs if lang in chosen)


def check_bundled_rows(path: str | Path, rows: int, unit: str = "rows") -> None:
    """DataError if `path` is a bundled file whose row count differs from data/rows.json."""
    root = Path(DATA).resolve()
    try:
        rel = Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return  # the user's own file
    expected = _bundled_rows(str(root)).get(rel.removesuffix(".gz"))
    if expected is not None and rows != expected:
        raise DataError(
            f"{path}: {rows} {unit}, expected {expected} (data/rows.json): the bundled file is "
            f"damaged; restore it with `git checkout -- data/{rel}`"
        )


@functools.lru_cache(maxsize=4)
def _bundled_rows(root: str) -> dict[str, int]:
    table = Path(root) / "rows.json"
    return json.loads(table.read_text()) if table.is_file() else {}


# --- opening files ---------------------------------------------------------------------------------
def find_file(folder: str | Path, name: str, required: bool = True) -> Path | None:
    """`folder/name` if it exists, else `folder/name.gz`; DataError (or None if not required) if neither.

    The plain file wins when both exist (a user's official file beside a vendored copy).
    """
    folder = Path(folder)
    for cand in (folder / name, folder / f"{name}.gz"):
        if cand.is_file():
            return cand
    if not required:
        return None
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    where = f"folder {folder} does not exist" if not folder.is_dir() else f"not in {folder}"
    hint = did_you_mean(name, present) or did_you_mean(f"{name}.gz", present)
    raise DataError(f"{folder / name}: file not found (also tried {name}.gz; {where}).{hint}")


@contextmanager
def open_text(path: str | Path) -> Iterator[io.TextIOBase]:
    """Open a UTF-8 text file for reading, gunzipping when the name ends in .gz. DataError if missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
        yield f


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for each line; DataError on bad bytes/gzip."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):  # bytes per line: decode errors get their line
                line = raw.decode("utf-8").rstrip("\r\n")
                yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: line {lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: line {lineno + 1}: cannot read ({e})") from e


def read_lines(path: str | Path) -> list[str]:
    """All lines of a text file (no newlines). DataError if the file is missing or empty."""
    lines = [line for _, line in iter_lines(path)]
    if not lines:
        raise DataError(f"{path}: file is empty")
    check_bundled_rows(path, len(lines))
    return lines


def read_tsv(path: str | Path, ncols: int) -> list[list[str]]:
    """Rows of a tab-separated file with exactly `ncols` columns each (no quoting: TAB is the separator).

    DataError naming file and line on a wrong column count (blank lines included), or an empty file.
    """
    rows = []
    for lineno, line in iter_lines(path):
        fields = line.split("\t")
        if len(fields) != ncols:
            raise DataError(
                f"{path}: line {lineno}: expected {ncols} tab-separated columns, found {len(fields)}"
            )
        rows.append(fields)
    if not rows:
        raise DataError(f"{path}: file is empty")
    check_bundled_rows(path, len(rows))
    return rows


def read_json(path: str | Path) -> Any:
    """Parse a JSON file. DataError with line and column on invalid JSON, or for an empty file."""
    with open_text(path) as f:
        try:
            text = f.read()
        except (UnicodeDecodeError, OSError, EOFError) as e:
            raise DataError(f"{path}: cannot read ({e})") from e
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON ({e.msg})") from e


def read_id_sentences(path: str | Path) -> tuple[list[str], list[str]]:
    """BUCC-style `<id>TAB<sentence>` lines -> (ids, sentences) in file order. Ids must be unique."""
    ids, sents, seen = [], [], {}
    for lineno, (sid, sent) in enumerate(read_tsv(path, 2), 1):
        if not sid:
            raise DataError(f"{path}: line {lineno}: empty id")
        if sid in seen:
            raise DataError(f"{path}: line {lineno}: duplicate id {sid!r} (first on line {seen[sid]})")
        seen[sid] = lineno
        ids.append(sid)
        sents.append(sent)
    return ids, sents


# --- examples ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassificationExample:
    """One sentence pair. row: 0-based data row in its file; label: index into the task's label names."""

    language: str
    row: int
    text_a: str
    text_b: str
    label: int


@dataclass(frozen=True)
class QAExample:
    """One SQuAD v1.1 question; answer_starts are character offsets into `context` (parallel to
    answers)."""

    language: str
    qid: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]


@dataclass(frozen=True)
class RetrievalPair:
    """One language pair of a retrieval task, both sides in file order.

    gold: (src_id, en_id) pairs of parallel sentences, or None when the split has no gold (BUCC test).
    """

    language: str
    src_ids: list[str]
    src_sents: list[str]
    en_ids: list[str]
    en_sents: list[str]
    gold: list[tuple[str, str]] | None


def read_classification_file(
    path: str | Path, label_names: Sequence[str], language: str = ""
) -> list[ClassificationExample]:
    """`text_a TAB text_b TAB label` rows (label spelled as in label_names) in file order.

    A first line whose label column is literally "label" is a header and skipped (rows still count
    from 0 at the first data line). DataError naming file and line for an unknown label.
    """
    index = {name: k for k, name in enumerate(label_names)}
    rows = read_tsv(path, 3)
    header = rows[0][2].strip().lower() == "label"
    out = []
    for lineno, (a, b, lab) in enumerate(rows[1:] if header else rows, 2 if header else 1):
        if lab.strip() not in index:
            hint = did_you_mean(lab.strip(), label_names)
            raise DataError(
                f"{path}: line {lineno}: unknown label {lab!r}, expected one of "
                f"{', '.join(label_names)}.{hint}"
            )
        out.append(ClassificationExample(language, len(out), a, b, index[lab.strip()]))
    if not out:
        raise DataError(f"{path}: no data rows after the header")
    return out


def read_squad(path: str | Path, language: str = "") -> list[QAExample]:
    """Questions of a SQuAD v1.1 JSON file (articles, paragraphs, questions in file order).

    Checks the structure, unique ids, and that every answer's text sits at its answer_start in the
    context; DataError naming the file, the question id and the problem otherwise.
    """
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: not SQuAD v1.1 JSON (expected an object with a 'data' list)")
    out: list[QAExample] = []
    seen: set[str] = set()
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = para.get("context") if isinstance(para, dict) else None
            if not isinstance(context, str):
                raise DataError(f"{where}: missing 'context' string")
            for q, qa in enumerate(para.get("qas", [])):
                out.append(_squad_question(qa, context, language, f"{where}.qas[{q}]", seen))
    if not out:
        raise DataError(f"{path}: no questions found")
    check_bundled_rows(path, len(out), "questions")
    return out


def squad_titles(path: str | Path) -> list[str]:
    """The article title of every question of a SQuAD v1.1 file, in read_squad's order (a file
    read_squad accepts; an article without a title gives "")."""
    return [
        str(article.get("title", ""))
        for article in read_json(path)["data"]
        for para in article.get("paragraphs", [])
        for _ in para.get("qas", [])
    ]


def _squad_question(qa: Any, context: str, language: str, where: str, seen: set[str]) -> QAExample:
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or "id" not in qa:
        raise DataError(f"{where}: a question needs 'id' and 'question'")
    qid = str(qa["id"])
    if qid in seen:
        raise DataError(f"{where}: duplicate question id {qid!r}")
    seen.add(qid)
    texts, starts = [], []
    for ans in qa.get("answers", []):
        text, start = ans.get("text"), ans.get("answer_start")
        if not isinstance(text, str) or not isinstance(start, int):
            raise DataError(f"{where} (id {qid!r}): answer needs 'text' (str) and 'answer_start' (int)")
        if context[start : start + len(text)] != text:
            raise DataError(
                f"{where} (id {qid!r}): answer {text!r} is not at answer_start {start} of the context"
            )
        texts.append(text)
        starts.append(start)
    return QAExample(language, qid, qa["question"], context, texts, starts)


# --- ragged arrays -------------------------------------------------------------------------------
SNLI_SPLITS = ("dev", "test")


def read_snli(
    label_names: Sequence[str], splits: Sequence[str] = SNLI_SPLITS, folder: str | Path | None = None
) -> list[ClassificationExample]:
    """SNLI 1.0 pairs (English; data/snli/: `s1.<split>` premises, `s2.<split>` hypotheses and
    `labels.<split>` label words, line-aligned, text tokenised with a space before punctuation), in
    file order, split after split. `row` counts from 0 within each split; `label` indexes
    `label_names` (the caller's task order). DataError on unaligned files or an unknown label."""
    folder = Path(folder) if folder is not None else DATA / "snli"
    index = {name: k for k, name in enumerate(label_names)}
    out: list[ClassificationExample] = []
    for split in splits:
        check_choice(split, SNLI_SPLITS, "SNLI split")
        s1, s2, labels = (read_lines(find_file(folder, f"{k}.{split}")) for k in ("s1", "s2", "labels"))
        if not len(s1) == len(s2) == len(labels):
            raise DataError(
                f"{folder}: SNLI {split}: {len(s1)} premises, {len(s2)} hypotheses, "
                f"{len(labels)} labels: the files are not aligned"
            )
        for row, (a, b, lab) in enumerate(zip(s1, s2, labels, strict=True)):
            if lab.strip() not in index:
                raise DataError(
                    f"{folder}/labels.{split}: line {row + 1}: unknown label {lab!r}, "
                    f"expected one of {', '.join(label_names)}"
                )
            out.append(ClassificationExample("en", row, a.strip(), b.strip(), index[lab.strip()]))
    return out


def to_ragged(seqs: Sequence[Sequence[int]], dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate sequences -> (values dtype [total], offsets int64 [n + 1])."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((x for s in seqs for x in s), dtype=dtype, count=int(offsets[-1]))
    return values, offsets


def pad_ragged(
    values: np.ndarray, offsets: np.ndarray, rows: Sequence[int], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a ragged array padded to their longest -> (ids int64 [B, L], attention_mask int64
    [B, L])."""
    lengths = [int(offsets[i + 1] - offsets[i]) for i in rows]
    width = max(lengths, default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, (i, n) in enumerate(zip(rows, lengths, strict=True)):
        ids[b, :n] = values[offsets[i] : offsets[i] + n]
        mask[b, :n] = 1
    return ids, mask


def batch_encode(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    max_length: int = 128,
    desc: str = "tokenising",
    batch_size: int = 1024,
) -> list[list[int]]:
    """Token ids (with <s> ... </s>, truncated to max_length tokens) of each text or text pair, in order.

    Uses the fast tokenizer's batch call, `batch_size` rows at a time, with a tqdm bar (hidden when
    stderr is not a terminal).
    """
    out: list[list[int]] = []
    with keep_tokenizer_state(tokenizer):
        for lo in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", disable=None):
            enc = tokenizer(
                list(texts[lo : lo + batch_size]),
                list(pairs[lo : lo + batch_size]) if pairs is not None else None,
                truncation=True,
                max_length=max_length,
                return_attention_mask=False,
            )
            out.extend(enc["input_ids"])
    return out


@contextmanager
def keep_tokenizer_state(tokenizer) -> Iterator[None]:
    """Restore the fast tokenizer's truncation/padding state on exit.

    A call with truncation=... leaves it set on the Rust backend, which changes
    `backend_tokenizer.to_str()` and therefore `tasks.base.tokenizer_fingerprint` (the cache key).
    Featurising must leave the caller's tokenizer exactly as it found it.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    trunc = backend.truncation if backend is not None else None
    pad = backend.padding if backend is not None else None
    try:
        yield
    finally:
        if backend is not None:
            backend.no_truncation() if trunc is None else backend.enable_truncation(**trunc)
            backend.no_padding() if pad is None else backend.enable_padding(**pad)


def check_max_length(value: Any, name: str = "max_length", minimum: int = 8) -> int:
    """An int >= minimum, else ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(value: str, choices: Sequence[str], name: str) -> str:
    """`value` if it is one of `choices`, else ValueError with a 'did you mean'."""
    return lookup(name, value, dict.fromkeys(choices, value))
