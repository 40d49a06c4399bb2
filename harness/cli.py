"""`python -m harness <command> ...`: one sub-command per Makefile target.

Each command lives in its own module exposing `configure_parser(parser)` and `main(args) -> int`;
modules are imported only when their command runs, so `info` works even while a heavy dependency
is broken. Exit codes follow harness/exit_codes.py: usage errors exit 3, an unexpected exception
prints its traceback and exits 2 (never 1, which means INVALID), Ctrl-C outside a run exits 130.
"""

from __future__ import annotations

import importlib
import signal
import sys
import traceback

from harness.exit_codes import BAD_INPUT, SUT_FAILURE, ArgumentParser, interrupted

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("harness.info", "print versions, devices, paths, registries"),
    "run": ("harness.runner", "one LoadGen test (performance or accuracy) in this process"),
    "find_peak": ("harness.peak", "search the highest VALID Server target_qps"),
    "models": ("models.recipe", "build the model zoo (train / export checkpoints)"),
    "compliance": ("harness.compliance", "TEST01 audit run and its verification"),
    "submission": ("harness.submission", "stage / truncate / check / pack an open-division package"),
    "benchmark": ("harness.benchmark", "harness-efficiency benchmark (ratios measured in one run)"),
    "study": ("harness.study", "the full vs adapter efficiency study"),
    "gpu_check": ("harness.gpu_check", "base/large-shape GPU figures (dry mode on CPU)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else BAD_INPUT
    name = argv[0]
    if name not in COMMANDS:
        parser.parse_args(argv[:1])  # prints the choices and exits 3
        return BAD_INPUT
    try:
        module = importlib.import_module(COMMANDS[name][0])
        cmd_parser = ArgumentParser(prog=f"python -m harness {name}", description=COMMANDS[name][1])
        module.configure_parser(cmd_parser)
        args = cmd_parser.parse_args(argv[1:])
        return int(module.main(args) or 0)
    except KeyboardInterrupt:  # `run` handles its own signals; this is any other command
        print(f"\n{name}: interrupted", file=sys.stderr)
        return interrupted(signal.SIGINT)
    except Exception:  # noqa: BLE001 - a bug, not a user error: show it, but never exit 1 (INVALID)
        traceback.print_exc()
        print(f"{name}: internal error (exit {SUT_FAILURE})", file=sys.stderr)
        return SUT_FAILURE
