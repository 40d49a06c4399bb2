"""Several tasks in one run: `--task xnli+pawsx+tydiqa` (docs/multitask.md).

The QSL of a mixed run is the union of the tasks' samples, task after task, in the order the list
names them: task k's sample j (its own qsl index) is union index `start[k] + j`. The union is an
ordinary `FeatureSet` whose `extra["task"]` holds each sample's task (an index into the list), so the
ordinary QSL (tasks/qsl.py) hands every padded batch its rows' tasks (`Batch.tasks`) and the backend
runs each row with its own task's weights. A backend answers a mixed batch with a `MixedOutput`: one
part per task present, each in its task kind's encoding (tasks/base.py), which the SUT packs row by
row (sut/base.py `pack_mixed`).

Synthetic tasks for scaling studies: `xnli@16` is XNLI's samples spread round-robin over 16
synthetic tasks (sample i belongs to task i mod 16), each served by randomly initialised weights of
the real shapes: the same samples and the same work whatever K is, only the number of resident
task modules changes. Accuracy runs refuse them (the weights are random).

Scoring: `split_log` cuts a mixed accuracy log into one log per task with each task's own qsl
indices; each is scored by the task's existing scorer, so a mixed run's per-task figures are the
single-task runs' figures on the same samples.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.exit_codes import BAD_INPUT, ArgumentParser
from tasks.base import FeatureSet, Task
from tasks.data import DataError
from tasks.registry import get_task, get_task_class
from tasks.scoring import LogError, score_log, write_outputs
from tasks.scoring.log import RUN_CONFIG, read_run_config

SEP = "+"  # xnli+pawsx+tydiqa
SYNTHETIC = "@"  # xnli@16: XNLI's samples over 16 synthetic tasks
MAX_SYNTHETIC = 1024
KIND = "mixed"  # the task kind of a mixed run (its SUT packs per row: sut/base.py PACKERS)
TASK_KEY = "task"  # FeatureSet.extra key: the task of each union sample
ROW_KEY = "task_row"  # FeatureSet.extra key: the sample's qsl index within its own task


def is_mixed(text: str) -> bool:
    """True for a TASK= value naming several tasks (a+b) or synthetic ones (a@K)."""
    return SEP in text or SYNTHETIC in text


@dataclass(frozen=True)
class TaskList:
    """A parsed TASK= list: the real tasks' names in order, or one task and `synthetic` = K."""

    names: tuple[str, ...]
    synthetic: int = 0  # K > 0: names holds one task whose samples are spread over K synthetic tasks

    @property
    def task_names(self) -> list[str]:
        """The name of every served task: the real ones, or name#0 .. name#K-1 for synthetic ones."""
        if self.synthetic:
            return [f"{self.names[0]}#{k}" for k in range(self.synthetic)]
        return list(self.names)

    @property
    def kinds(self) -> list[str]:
        return [get_task_class(n).kind for n in self.names]


def parse_task_list(text: str) -> TaskList:
    """`a+b+c` or `a@K` -> TaskList; ValueError (one line naming the fix) for an unknown task, a task
    named twice, an empty item, or a bad K."""
    if SYNTHETIC in text:
        name, _, count = text.partition(SYNTHETIC)
        if SEP in text or not count.isdigit() or not 1 <= int(count) <= MAX_SYNTHETIC:
            raise ValueError(
                f"task {text!r}: synthetic tasks are written TASK@K with one task and K in "
                f"1..{MAX_SYNTHETIC} (e.g. xnli@16)"
            )
        get_task_class(name)
        return TaskList((name,), int(count))
    names = text.split(SEP)
    if any(not n for n in names):
        raise ValueError(
            f"task {text!r}: an empty name in the list; join task names with '+', e.g. xnli+pawsx+tydiqa"
        )
    for n in names:
        try:
            get_task_class(n)
        except ValueError as e:
            raise ValueError(f"task list {text!r}: {e}") from None
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"task list {text!r} names {', '.join(repeated)} more than once; name each task once "
            f"(for many tasks over one task's samples use synthetic ones, e.g. {repeated[0]}@16)"
        )
    if len(names) < 2:
        raise ValueError(f"task list {text!r} names one task: use --task {names[0]}")
    return TaskList(tuple(names))


def task_languages(tasks: TaskList, languages: str | Sequence[str] | None) -> list[list[str] | None]:
    """Each task's --languages: the given codes it has (None = all of its languages). ValueError
    when a code belongs to no task of the list or a task keeps none of its languages."""
    if languages is None:
        return [None] * len(tasks.names)
    codes = [c for c in (languages.split(",") if isinstance(languages, str) else languages) if c]
    per = [[c for c in codes if c in get_task_class(n).languages] for n in tasks.names]
    stray = [c for c in codes if not any(c in p for p in per)]
    if stray:
        raise ValueError(f"--languages {','.join(stray)}: no task of {'+'.join(tasks.names)} has it")
    empty = [n for n, p in zip(tasks.names, per, strict=True) if not p]
    if empty:
        raise ValueError(
            f"--languages {','.join(codes)} leaves {', '.join(empty)} no language; add one of "
            + "; ".join(f"{n}: {','.join(get_task_class(n).languages)}" for n in empty)
        )
    return per  # type: ignore[return-value]


@dataclass
class MixedOutput:
    """A backend's answer to a mixed batch: per task present, (rows, kind, out) with `rows` the
    batch positions (int64) and `out` that task kind's float32 array for those rows only
    (classification [n, num_labels], qa [n, 2, L], retrieval [n, hidden]; tasks/base.py)."""

    parts: list[tuple[np.ndarray, str, np.ndarray]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(rows) for rows, _, _ in self.parts)


def group_rows(tasks: Any, attention_mask: Any) -> list[tuple[int, list[int], int]]:
    """A mixed batch's rows per task present, in ascending task order: (k, rows, width) with `rows`
    the batch positions of task k's rows (ascending) and `width` the longest of them (its attention
    mask's sum), what a per-task sub-batch is cut to. `tasks` [B] and `attention_mask` [B, L] are
    numpy arrays or torch tensors alike (only `.tolist()` and `.sum(1)` are used): the PyTorch
    forms (models/multitask.py) and the ONNX Runtime one (models/onnx_backend.py) group alike."""
    lengths = attention_mask.sum(1).tolist()
    groups: dict[int, list[int]] = {}
    for row, k in enumerate(tasks.tolist()):
        groups.setdefault(int(k), []).append(row)
    return [(k, rows, int(max(lengths[r] for r in rows))) for k, rows in sorted(groups.items())]


class MixedTask:
    """The tasks of one mixed run, with the union QSL's features (`features`). kind = "mixed".

    tasks: the Task objects, in list order (for synthetic tasks: the one real task).
    counts: `count` samples of each task (None = all): the first `count` of each task's own order.
    """

    kind = KIND

    def __init__(self, task_list: TaskList, tasks: Sequence[Task], count: int | None = None):
        self.task_list = task_list
        self.tasks = list(tasks)
        self.count = count
        self.name = SEP.join(t.name for t in self.tasks) + (
            f"{SYNTHETIC}{task_list.synthetic}" if task_list.synthetic else ""
        )
        self.starts: list[int] = []  # union index of each real task's first sample (features())
        self.counts: list[int] = []  # each real task's samples in the union (features())

    @classmethod
    def build(
        cls,
        text: str,
        languages: str | None = None,
        count: int | None = None,
        options: Sequence[dict[str, Any]] | None = None,
    ) -> MixedTask:
        """The MixedTask of TASK=`text`; `options`: each real task's get_task options, in order."""
        task_list = parse_task_list(text)
        langs = task_languages(task_list, languages)
        options = options or [{} for _ in task_list.names]
        tasks = [
            get_task(n, languages=lang, **opt)
            for n, lang, opt in zip(task_list.names, langs, options, strict=True)
        ]
        return cls(task_list, tasks, count)

    def features(self, tokenizer) -> FeatureSet:
        """The union FeatureSet: each task's features (cached as in a single-task run), cut to
        `count`, concatenated in list order; extra[TASK_KEY] / extra[ROW_KEY] per sample."""
        parts = [t.features(tokenizer) for t in self.tasks]
        ids, offsets, language, task, row = [], [np.zeros(1, dtype=np.int64)], [], [], []
        languages: list[str] = []
        self.starts, self.counts, total_tokens, total = [], [], 0, 0
        for k, fs in enumerate(parts):
            n = len(fs) if self.count is None else min(self.count, len(fs))
            end = int(fs.offsets[n])
            ids.append(fs.input_ids[:end])
            offsets.append(fs.offsets[1 : n + 1].astype(np.int64) + total_tokens)
            code = {lang: languages.index(lang) if lang in languages else None for lang in fs.languages}
            for lang in fs.languages:
                if code[lang] is None:
                    languages.append(lang)
                    code[lang] = len(languages) - 1
            remap = np.array([code[lang] for lang in fs.languages], dtype=np.int16)
            language.append(remap[fs.language[:n]])
            row.append(np.arange(n, dtype=np.int64))
            if self.task_list.synthetic:
                task.append(np.arange(n, dtype=np.int64) % self.task_list.synthetic)
            else:
                task.append(np.full(n, k, dtype=np.int64))
            self.starts.append(total)
            self.counts.append(n)
            total, total_tokens = total + n, total_tokens + end
        return FeatureSet(
            task=self.name,
            languages=tuple(languages),
            input_ids=np.concatenate(ids),
            offsets=np.concatenate(offsets),
            language=np.concatenate(language),
            extra={TASK_KEY: np.concatenate(task), ROW_KEY: np.concatenate(row)},
            meta={"tasks": [fs.meta.get("cache_key") for fs in parts], "starts": list(self.starts)},
        )

    def feature_settings(self) -> dict[str, Any]:
        """The longest max_length of the tasks (what a benchmark pads a reference batch to)."""
        lengths = [t.feature_settings().get("max_length") for t in self.tasks]
        return {"max_length": max(v for v in lengths if v)} if any(lengths) else {}


# --- scoring a mixed accuracy log --------------------------------------------------------------
def split_log(log_path: Path, starts: Sequence[int], counts: Sequence[int]) -> list[list[dict]]:
    """A mixed accuracy log cut into one entry list per task, each entry's qsl_idx made the task's
    own (union index - start of the task). ValueError naming the file when an entry lies outside
    every task (not this run's log)."""
    doc = json.loads(Path(log_path).read_text(encoding="utf-8"))
    if not isinstance(doc, list):
        raise ValueError(f"{log_path}: not a LoadGen accuracy log (expected a JSON list)")
    per: list[list[dict]] = [[] for _ in starts]
    for entry in doc:
        q = entry.get("qsl_idx") if isinstance(entry, dict) else None
        k = next(
            (
                k
                for k, (s, n) in enumerate(zip(starts, counts, strict=True))
                if isinstance(q, int) and s <= q < s + n
            ),
            None,
        )
        if k is None:
            raise ValueError(f"{log_path}: entry {str(entry)[:80]} is outside this run's tasks")
        per[k].append({**entry, "qsl_idx": q - starts[k]})
    return per


def score_mixed_log(log_path: Path, parts: Sequence[dict[str, Any]], tokenizer: str) -> dict[str, Any]:
    """Score a mixed accuracy log task by task with the tasks' own scorers (tasks/scoring).

    parts: per task, in list order, {"task", "start", "count", "task_options", "languages" (None =
    all), "score_options"} (run_config.json "task_options" "tasks" of the run).
    Writes <log folder>/<task>/ with the task's own mlperf_log_accuracy.json (its own qsl indices;
    `python accuracy_<task>.py` scores it too), a run_config.json holding its task options and the
    tokenizer, and its accuracy.txt / .json; then the run's accuracy.txt (every task's table and
    final line, each under its name) and accuracy.json ({task: metrics}).
    Returns {task: ScoreResult}; LogError / DataError on bad input."""
    log_path = Path(log_path)
    try:
        per = split_log(log_path, [p["start"] for p in parts], [p["count"] for p in parts])
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise LogError(f"{log_path}: cannot be split per task ({e})") from None
    results: dict[str, Any] = {}
    for part, entries in zip(parts, per, strict=True):
        folder = log_path.parent / part["task"]
        folder.mkdir(exist_ok=True)
        sub = folder / log_path.name
        sub.write_text(json.dumps(entries) + "\n", encoding="utf-8")
        record = {"task": part["task"], "task_options": part["task_options"], "tokenizer": tokenizer}
        (folder / "run_config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        result = score_log(
            part["task"],
            sub,
            languages=part.get("languages"),
            task_options=part["task_options"],
            **part["score_options"],
        )
        write_outputs(result, folder)
        results[part["task"]] = result
    text = "".join(f"== {task}\n{r.stdout_text}" for task, r in results.items())
    (log_path.parent / "accuracy.txt").write_text(text, encoding="utf-8")
    metrics = {task: r.metrics for task, r in results.items()}
    (log_path.parent / "accuracy.json").write_text(
        json.dumps(metrics, indent=1) + "\n", encoding="utf-8"
    )
    return results


def check_task_list(text: str, languages: str | None = None) -> None:
    """ValueError (one line naming the fix) unless TASK=`text` is a valid list and --languages fits
    it: what a run checks before it creates anything (reads no data)."""
    task_list = parse_task_list(text)
    for name, langs in zip(task_list.names, task_languages(task_list, languages), strict=True):
        get_task(name, languages=langs)


def main(argv: list[str]) -> int:
    """accuracy_mixed.py: score LOG per task from its run_config.json. Exit 0, or 3 on bad input."""
    parser = ArgumentParser(prog="accuracy_mixed.py", description=main.__doc__)
    parser.add_argument("log", help="mlperf_log_accuracy.json of a task-list accuracy run")
    log = Path(parser.parse_args(argv).log)
    cfg = log.parent / RUN_CONFIG
    try:
        record = read_run_config(cfg, "needed for the task list") if cfg.is_file() else {}
        parts, tokenizer = record["task_options"]["tasks"], record["tokenizer"]
    except LogError as e:  # too large, not JSON, nested too deep
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    except (KeyError, TypeError):  # no file, or not a task list's
        print(
            f"error: {cfg}: no task list's run_config.json (task_options.tasks, tokenizer) beside "
            "the log; score a single-task log with accuracy_<task>.py",
            file=sys.stderr,
        )
        return BAD_INPUT
    try:
        results = score_mixed_log(log, parts, tokenizer)
    except (ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    for task, r in results.items():
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
        sys.stdout.write(f"== {task}\n{r.stdout_text}")
    return 0
