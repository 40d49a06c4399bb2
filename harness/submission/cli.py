"""Argument parsing and dispatch for `python -m harness submission stage|truncate|check|pack`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.exit_codes import BAD_INPUT
from harness.submission.check import check_package, run_official
from harness.submission.layout import DEFAULT_LOG_DIR, DEFAULT_ROOT, full_logs_dir
from harness.submission.pack import pack
from harness.submission.stage import stage
from harness.submission.truncate import truncate


def _mapping(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        bench, sep, model = item.partition("=")
        if not sep:
            raise ValueError(f"--map expects BENCHMARK=MODEL, got {item!r}")
        out[bench] = model
    return out


def _json_file(path: str | None) -> dict:
    return json.loads(Path(path).read_text()) if path else {}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """stage, truncate, check and pack take one flag set (each uses the flags it needs), so
    `make submission RUN_ARGS=...` passes the same flags to every step of the chain."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="stage|truncate|check|pack")
    common = argparse.ArgumentParser(add_help=False)
    a = common.add_argument
    a("--submitter", required=True, help="organisation name (folder open/<submitter>)")
    a("--root", type=Path, default=DEFAULT_ROOT, help="staging root: one folder per package")
    a("--system", help="stage: system name (results/<system>, systems/<system>.json); required")
    a("--log_dir", type=Path, action="append", help=f"stage: run logs (repeatable; {DEFAULT_LOG_DIR})")
    a(
        "--allow_test_runs",
        action="store_true",
        help="stage: accept development runs; stamps the packages NOT FOR SUBMISSION",
    )
    a(
        "--map",
        action="append",
        default=[],
        metavar="BENCHMARK=MODEL",
        help="stage: official model of a benchmark folder (default bert-99)",
    )
    a("--system_json", help="stage: JSON file overriding system-description fields")
    a("--measurements_json", help="stage: JSON file overriding measurements.json fields")
    a(
        "--checker",
        type=Path,
        help="check: a current checkout of mlcommons/inference: run its checkers (main.py and "
        "submission_checker_old.py) on the edge package",
    )
    a(
        "--checker_v4_1",
        type=Path,
        help="check: a checkout of mlcommons/inference at tag v5.0: run its submission_checker.py "
        "with round v4.1's rules on the datacenter package",
    )
    a(
        "--strict_dataset_size",
        action="store_true",
        help="check: do not pass --skip-dataset-size-check to the current checkers",
    )
    a("--checker_args", default="", help="check: extra flags for the official checkers")
    for name, what in (
        ("stage", "copy VALID runs into the packages' layout"),
        ("truncate", "truncate accuracy logs, add hash lines"),
        ("check", "our structural check (+ the official checkers)"),
        ("pack", "tar.gz of each checked package"),
    ):
        sub.add_parser(name, parents=[common], help=what)


def main(args: argparse.Namespace) -> int:
    """Each step reports a user error (nothing staged yet, a missing file) in one line, exit 3; a
    refused or rejected package exits 1."""
    try:
        return _run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: submission {args.action}: {e}", file=sys.stderr)
        return BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    root = args.root.resolve()
    if args.action == "stage":
        if not args.system:
            raise ValueError("--system NAME is required (results/<system>, systems/<system>.json)")

        count, problems = stage(
            [d.resolve() for d in (args.log_dir or [DEFAULT_LOG_DIR])],
            args.submitter,
            args.system,
            root,
            args.allow_test_runs,
            _mapping(args.map),
            _json_file(args.system_json),
            _json_file(args.measurements_json),
        )
        for p in problems:
            print(f"REFUSED: {p}")
        if problems:
            print(f"stage: {len(problems)} problem(s); nothing staged")
            return 1
        print(f"stage: {count} benchmark/scenario result(s) in {root}/<package>/open/{args.submitter}")
        return 0
    if args.action == "truncate":
        changed = truncate(root, args.submitter)
        print(f"truncate: {len(changed)} accuracy log(s) truncated; full logs in {full_logs_dir(root)}")
        return 0
    if args.action == "check":
        errors, notes = check_package(root, args.submitter)
        for n in notes:
            print(f"NOTE: {n}")
        for e in errors:
            print(f"ERROR: {e}")
        print(f"check: {len(errors)} error(s) ({'REJECTED' if errors else 'accepted'} by our rules)")
        status = 1 if errors else 0
        if args.checker or args.checker_v4_1:
            checkouts = {"checker": args.checker, "checker_v4_1": args.checker_v4_1}
            checkouts = {k: v.resolve() if v else None for k, v in checkouts.items()}
            official = run_official(
                checkouts, root, args.submitter, args.checker_args.split(), args.strict_dataset_size
            )
            print(f"official checkers: exit status {official}")
            status = status or official
        return status
    errors, _ = check_package(root, args.submitter)
    if errors:
        for e in errors:
            print(f"ERROR: {e}")
        print(f"pack: refused, `submission check` reports {len(errors)} error(s)")
        return 1
    for path in pack(root, args.submitter):
        print(f"pack: {path}")
    return 0
