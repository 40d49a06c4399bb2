"""`python -m harness <command> ...`: one sub-command per Makefile target.

Each command lives in its own module exposing `configure_parser(parser)` and `main(args) -> int`;
modules are imported only when their command runs, so `info` works even while a heavy dependency
is broken.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("harness.info", "print versions, devices, paths, registries"),
    "run": ("harness.runner", "one LoadGen test (performance or accuracy) in this process"),
    "find_peak": ("research.find_peak", "search the highest VALID Server target_qps"),
    "models": ("models.recipe", "build the model zoo (train / export checkpoints)"),
    "compliance": ("harness.submission.compliance", "TEST01 audit run and its verification"),
    "submission": ("harness.submission", "stage / truncate / check / pack an open-division package"),
    "benchmark": ("research.benchmark", "harness-efficiency benchmark (ratios measured in one run)"),
    "study": ("research.study", "the full vs adapter efficiency study"),
    "gpu_check": ("research.gpu_check", "base/large-shape GPU figures (dry mode on CPU)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        parser.parse_args(argv[:1])  # argparse prints the choices and exits 2
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"python -m harness {name}", description=COMMANDS[name][1])
    module.configure_parser(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.main(args) or 0)
