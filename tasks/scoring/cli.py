"""The shared accuracy CLI behind accuracy_<task>.py, and `score_log` for the runner (in-process).

`python accuracy_<task>.py LOG [--data_dir D] [--dtype float32|float16] [--output FILE]
 [--languages L] [--tokenizer PATH] (tydiqa) [--heldout_rows] (xnli, pawsx) [--threshold T]
 [--duplicates all|drop] (bucc)`

stdout: the per-language table, then ONE final JSON line (what the submission checker reads).
stderr: warnings (partial coverage). Bad input: one `error: <file>: <what>` line on stderr, exit code 3
(common/exit_codes.py: bad input; argparse usage errors too): a log that is not a regular file, too
large, nested, malformed, or an --output that cannot be written (checked before scoring, written
atomically). Anything else is a bug: its traceback, then exit 2 (never 1, which means INVALID).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.exit_codes import BAD_INPUT, SUT_FAILURE, ArgumentParser
from common.names import lookup
from tasks import registry
from tasks.data import DataError
from tasks.scoring.classification import HELDOUT_FIRST_ROW, score_classification
from tasks.scoring.log import (
    DTYPES,
    RUN_CONFIG,
    AccuracyLog,
    LogError,
    read_accuracy_log,
    read_run_config,
)
from tasks.scoring.qa import score_tydiqa
from tasks.scoring.result import ScoreResult, write_predictions
from tasks.scoring.retrieval import score_bucc, score_tatoeba

EXIT_BAD_INPUT = BAD_INPUT

# Scoring method (a task's `scoring`, tasks/base.py) -> its function: (task, log, **options).
SCORERS: dict[str, Callable[..., ScoreResult]] = {
    "classification": score_classification,
    "squad": score_tydiqa,
    "tatoeba": score_tatoeba,
    "bucc": score_bucc,
}


def score(task, log: AccuracyLog, **options: Any) -> ScoreResult:
    """Score `log` with the method `task` declares (options that are None are ignored)."""
    scorer = lookup("scoring method", task.scoring, SCORERS)
    return scorer(task, log, **{k: v for k, v in options.items() if v is not None})


def score_log(
    task_name: str,
    log_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    languages: list[str] | str | None = None,
    dtype: str = "float32",
    task_options: dict[str, Any] | None = None,
    **options: Any,
) -> ScoreResult:
    """Score one accuracy log. Raises LogError / DataError / ValueError with a message naming the file.

    task_options: the options the run built its task with (e.g. first_row: the QSL held only those
    rows); None = run_config.json's "task_options" beside the log, if any.
    options by task: tokenizer (tydiqa: path or tokenizer object; default from run_config.json),
    heldout_rows: bool (xnli, pawsx), threshold: float | None and duplicates: "all" | "drop" (bucc).
    Options that are None are ignored.
    """
    if task_options is None:
        task_options = run_task_options(Path(log_path))
    task = registry.get_task(task_name, data_dir=data_dir, languages=languages, **task_options)
    return score(task, read_accuracy_log(log_path, dtype), **options)


def run_task_options(log_path: Path) -> dict[str, Any]:
    """run_config.json's "task_options" beside the log ({} without one): the scorer must build the
    task exactly as the run did, or its qsl indices would point at other samples."""
    cfg = log_path.parent / RUN_CONFIG
    if not cfg.is_file():  # False for a FIFO or a device too: nothing to read
        return {}
    options = read_run_config(cfg, "needed for the run's task options").get("task_options") or {}
    if not isinstance(options, dict):
        raise LogError(f'{cfg}: "task_options" is not an object')
    return options


def build_parser(task_name: str) -> ArgumentParser:
    p = ArgumentParser(
        prog=f"accuracy_{task_name}.py",
        description=(
            f"Score an MLPerf accuracy log (mlperf_log_accuracy.json) of {task_name} as XTREME does."
        ),
    )
    p.add_argument("log", metavar="LOG", help="mlperf_log_accuracy.json of an AccuracyOnly run")
    p.add_argument(
        "--data_dir", default=None, help="folder of the official data files (default: bundled data/)"
    )
    p.add_argument(
        "--languages", default=None, help="comma-separated subset the run used (default: all)"
    )
    p.add_argument("--dtype", default="float32", choices=list(DTYPES), help="response element type")
    p.add_argument(
        "--output", default=None, help="write all metrics as JSON to this file (+ predictions beside it)"
    )
    if task_name == "tydiqa":
        p.add_argument(
            "--tokenizer",
            default=None,
            help='the run\'s tokenizer folder (default: "tokenizer" in run_config.json beside LOG)',
        )
    if task_name in HELDOUT_FIRST_ROW:
        p.add_argument(
            "--heldout_rows",
            action="store_true",
            default=None,
            help=f"score only rows >= {HELDOUT_FIRST_ROW[task_name]} of each language "
            "(those the tiny model zoo did not train on)",
        )
    if task_name == "bucc":
        p.add_argument(
            "--threshold", type=float, default=None, help="apply this margin threshold instead of tuning"
        )
        p.add_argument(
            "--duplicates",
            choices=["all", "drop"],
            default=None,
            help="drop (default, as XTREME): discard mined pairs of repeated sentences; "
            "all: a mined duplicate sentence stands for all its ids",
        )
    return p


def predictions_path(output: Path, result: ScoreResult) -> Path:
    """`metrics.json` -> `metrics.predictions.json` / `.predictions.tsv` beside it."""
    return output.with_name(f"{output.stem}.{result.predictions_name}")


def check_output(output: Path) -> None:
    """LogError unless `output` can be written as a file (checked before scoring: nothing is printed
    and then lost to a traceback)."""
    if output.is_dir():
        raise LogError(
            f"{output}: --output names a directory; give a file name, e.g. {output / 'accuracy.json'}"
        )
    parent = output.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise LogError(f"{output}: --output cannot be written: {existing} is not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise LogError(f"{output}: --output cannot be written: {existing} is not writable")


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path` through a temporary sibling renamed over it: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(task_name: str, argv: list[str] | None = None) -> int:
    """Entry point of accuracy_<task>.py. Returns the exit code (0, 3 on bad input, 2 on a bug)."""
    args = build_parser(task_name).parse_args(argv)
    try:
        return _main(task_name, args)
    except (LogError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"error: {args.log}: not enough memory to score this log", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:  # noqa: BLE001 - a bug, not a user error: show it, but never exit 1 (INVALID)
        traceback.print_exc()
        print(f"accuracy_{task_name}.py: internal error (exit {SUT_FAILURE})", file=sys.stderr)
        return SUT_FAILURE


def _main(task_name: str, args) -> int:
    options = {
        k: v
        for k, v in vars(args).items()
        if k not in ("log", "data_dir", "languages", "dtype", "output")
    }
    out = Path(args.output) if args.output else None
    if out is not None:
        check_output(out)
    result = score_log(
        task_name,
        args.log,
        data_dir=args.data_dir,
        languages=args.languages,
        dtype=args.dtype,
        **options,
    )
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if out is not None:  # written before the score is printed: a failed write prints no score
        try:
            write_atomically(out, json.dumps(result.metrics, indent=1) + "\n")
            if result.predictions is not None:
                write_predictions(result, predictions_path(out, result))
        except OSError as e:
            raise LogError(f"{e.filename or out}: --output cannot be written ({e.strerror})") from None
    sys.stdout.write(result.stdout_text)
    return 0
