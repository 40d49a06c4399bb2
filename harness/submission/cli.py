"""Argument parsing and dispatch for `python -m harness submission stage|truncate|check|pack`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.exit_codes import BAD_INPUT
from harness.submission.layout import DEFAULT_LOG_DIR, DEFAULT_ROOT, full_logs_dir


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
    sub = parser.add_subparsers(dest="action", required=True, metavar="stage|truncate|check|pack")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--submitter", required=True, help="organisation name (folder open/<submitter>)")
    common.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="package root (build/submission)"
    )

    p = sub.add_parser("stage", parents=[common], help="copy VALID runs into the package layout")
    p.add_argument(
        "--system", required=True, help="system name (results/<system>, systems/<system>.json)"
    )
    p.add_argument(
        "--log_dir", type=Path, action="append", help=f"run logs (repeatable; {DEFAULT_LOG_DIR})"
    )
    p.add_argument("--allow_test_runs", action="store_true",
                   help="accept development runs; stamps the package NOT FOR SUBMISSION")  # fmt: skip
    p.add_argument("--map", action="append", default=[], metavar="BENCHMARK=MODEL",
                   help="official model of a benchmark folder (default bert-99)")  # fmt: skip
    p.add_argument("--system_json", help="JSON file overriding system-description fields")
    p.add_argument("--measurements_json", help="JSON file overriding measurements.json fields")

    sub.add_parser("truncate", parents=[common], help="truncate accuracy logs, add hash lines")

    p = sub.add_parser("check", parents=[common], help="our structural check (+ official checker)")
    p.add_argument("--checker", type=Path, help="checkout of mlcommons/inference: also run its checker")
    p.add_argument("--strict_dataset_size", action="store_true",
                   help="do not pass --skip-dataset-size-check to the official checker")  # fmt: skip
    p.add_argument("--checker_args", default="", help="extra flags for the official checker")

    sub.add_parser("pack", parents=[common], help="tar.gz of the checked package")


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
        from harness.submission.stage import stage

        count, problems = stage(
            [d.resolve() for d in (args.log_dir or [DEFAULT_LOG_DIR])], args.submitter, args.system,
            root, args.allow_test_runs, _mapping(args.map), _json_file(args.system_json),
            _json_file(args.measurements_json),
        )  # fmt: skip
        for p in problems:
            print(f"REFUSED: {p}")
        if problems:
            print(f"stage: {len(problems)} problem(s); nothing staged")
            return 1
        print(f"stage: {count} benchmark/scenario result(s) in {root}/open/{args.submitter}")
        return 0
    if args.action == "truncate":
        from harness.submission.truncate import truncate

        changed = truncate(root, args.submitter)
        print(f"truncate: {len(changed)} accuracy log(s) truncated; full logs in {full_logs_dir(root)}")
        return 0
    if args.action == "check":
        from harness.submission.check import check_package, run_official

        errors, notes = check_package(root, args.submitter)
        for n in notes:
            print(f"NOTE: {n}")
        for e in errors:
            print(f"ERROR: {e}")
        print(f"check: {len(errors)} error(s) ({'REJECTED' if errors else 'accepted'} by our rules)")
        status = 1 if errors else 0
        if args.checker and (root / "open").is_dir():
            extra = args.checker_args.split() + (
                [] if args.strict_dataset_size else ["--skip-dataset-size-check"]
            )
            official = run_official(args.checker.resolve(), root, args.submitter, extra)
            print(f"official checker exit status: {official}")
            status = status or official
        return status
    from harness.submission.check import check_package
    from harness.submission.pack import pack

    errors, _ = check_package(root, args.submitter)
    if errors:
        for e in errors:
            print(f"ERROR: {e}")
        print(f"pack: refused, `submission check` reports {len(errors)} error(s)")
        return 1
    print(f"pack: {pack(root, args.submitter)}")
    return 0
