"""`python -m zoo build ...`: build the model zoo, whole (`make models`) or what one run serves
(`--for_run`, which `make run` runs before the run: the run's own flags, the ones a build does not use
ignored); `python -m zoo select ...`: choose each model's learning rate and epochs on an English dev
split (zoo/select.py). Exit codes (common/exit_codes.py): 0 built (or nothing missing), 3 a usage
error or a stage that cannot be built (one `error:` line), 2 an unexpected exception (its
traceback), 130 Ctrl-C.
"""

from __future__ import annotations

import importlib
import signal
import sys
import traceback

from common.exit_codes import BAD_INPUT, SUT_FAILURE, ArgumentParser, interrupted

COMMANDS = {
    "build": "build the model zoo (train / convert checkpoints), or what one run serves",
    "select": "choose each model's learning rate and epochs on an English dev split",
}


def build_parser() -> ArgumentParser:
    """The `build` parser, without abbreviations: `--for_run` takes the run's flag names exactly, and
    a run's --model never passes for the whole-zoo build's --models."""
    parser = ArgumentParser(
        prog="python -m zoo build", description=COMMANDS["build"], allow_abbrev=False
    )
    parser.add_argument(
        "--for_run",
        action="store_true",
        help="build only the missing stages one `harness run` with these flags serves from",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    top = ArgumentParser(prog="python -m zoo", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", metavar="command")
    for name, help_ in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else BAD_INPUT
    if argv[0] not in COMMANDS:
        try:
            top.parse_args(argv[:1])  # prints the choices
        except SystemExit:
            pass
        return BAD_INPUT
    for_run = "--for_run" in argv[1:]
    parser = build_parser()
    # imported when a build runs, not before: the recipe imports torch (about 2 s), which
    # `python -m zoo --help` and a mistyped command need not wait for
    recipe = importlib.import_module("zoo.recipe")
    if argv[0] == "select":
        select = importlib.import_module("zoo.select")
        parser = ArgumentParser(
            prog="python -m zoo select", description=COMMANDS["select"], allow_abbrev=False
        )
        select.configure_parser(parser)
        args = parser.parse_args(argv[1:])
        command = select.main
    elif for_run:
        recipe.configure_for_run_parser(parser)
        args, _ = parser.parse_known_args(argv[1:])  # the run's other flags are the run's business
        command = recipe.main_for_run
    else:
        recipe.configure_parser(parser)
        args = parser.parse_args(argv[1:])
        command = recipe.main
    try:
        return int(command(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{argv[0]}: interrupted", file=sys.stderr)
        return interrupted(signal.SIGINT)
    except Exception:  # noqa: BLE001 - a bug, not a user error: show it, but never exit 1 (INVALID)
        traceback.print_exc()
        print(f"{argv[0]}: internal error (exit {SUT_FAILURE})", file=sys.stderr)
        return SUT_FAILURE
