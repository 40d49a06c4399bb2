"""`python -m harness <command> ...`: one sub-command per Makefile target of the LoadGen core.

Each command lives in its own module exposing `configure_parser(parser)` and `main(args) -> int`;
modules are imported only when their command runs, so `info` works even while a heavy dependency
is broken. `dispatch` is the front door of any package built the same way (`python -m research`,
`python -m bench`). Exit codes follow common/exit_codes.py: usage errors exit 3, an unexpected
exception prints its traceback and exits 2 (never 1, which means INVALID), Ctrl-C outside a run
exits 130.

Only the core's commands are here (find_peak included: the user.conf target is every submitter's
step): building the model zoo is `python -m zoo build` (the zoo/ package), the harness-efficiency
benchmark is `python -m bench benchmark`, the study's tools are `python -m research ...`; the core
names none of them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import signal
import sys
import traceback

from common.exit_codes import BAD_INPUT, SUT_FAILURE, ArgumentParser, interrupted

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("harness.info", "print versions, devices, paths, registries"),
    "run": ("harness.runner", "one LoadGen test (performance or accuracy) in this process"),
    "find_peak": ("harness.find_peak", "the user.conf target: Offline rate or highest VALID Server QPS"),
    "compliance": ("harness.submission.compliance", "TEST01 audit run and its verification"),
    "submission": ("harness.submission", "stage / truncate / check / pack an open-division package"),
}


# Flags of the MLCommons reference harnesses (language/bert/run.py and its siblings) -> (our flag, or
# None where there is no flag, and what to do here). A hint is shown only where the command has the
# flag it names.
REFERENCE_FLAGS: dict[str, tuple[str | None, str]] = {
    "--mlperf_conf": (
        "--user_conf",
        "LoadGen applies its built-in mlperf.conf itself; settings go in user.conf",
    ),
    "--max_examples": ("--count", "development: the QSL is the first N samples"),
    "--quantized": ("--dtype", "--dtype int8 serves an int8 model"),
    "--profile": (None, "no profiler here; --retime times the issued samples again without LoadGen"),
    "--network": (
        "--executor",
        "LoadGen over the network is not supported: --executor ray "
        "--ray_address HOST:PORT runs the workers on other machines",
    ),
    "--max-batchsize": ("--max_batch", "samples per batch"),
    "--dataset-path": ("--task", "the data ships in data/; TASK= picks it"),
    "--time": ("--duration", "development: run for S seconds"),
    "--qps": ("--user_conf", "target_qps lives in user.conf (`MODEL.Scenario.target_qps = N`)"),
    "--max-latency": ("--user_conf", "target_latency lives in user.conf"),
    "--samples-per-query": ("--user_conf", "samples_per_query lives in user.conf"),
    "--find-peak-performance": (
        None,
        "python -m harness find_peak (make find_peak) searches the Server peak",
    ),
}
for _flag in ("--node", "--port", "--sut_server"):
    REFERENCE_FLAGS[_flag] = REFERENCE_FLAGS["--network"]
for _flag in ("--dataset_path", "--max_batchsize"):
    REFERENCE_FLAGS[_flag] = REFERENCE_FLAGS[_flag.replace("_", "-")]


def unknown_flag_hint(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """One line for the arguments `parser` did not recognise: for a reference-harness flag, the flag
    that does its job here; for another flag, the closest of the command's own."""
    ours = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    flags = [arg.split("=", 1)[0] for arg in extra if arg.startswith("-")]
    if not flags:
        return f"{parser.prog}: unexpected argument(s): {' '.join(extra)}"
    flag = flags[0]
    if flag in REFERENCE_FLAGS:
        mine, how = REFERENCE_FLAGS[flag]
        if mine is None or mine in ours:
            here = f"use {mine} here ({how})" if mine else how
            return f"{flag} is a flag of the MLCommons reference harness: {here}"
    close = difflib.get_close_matches(flag.replace("-", "_").replace("__", "--"), ours, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else f"; `{parser.prog} --help` lists them"
    return f"{parser.prog}: unknown flag {flag}{hint}"


def names(text: str | None) -> list[str]:
    """A comma-separated flag ("xnli, tydiqa") as its items, stripped, blanks dropped (None: none):
    the type of the list flags of every front door built on `dispatch`."""
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def floats(text: str | None) -> list[float]:
    """A comma-separated flag of numbers ("0.9,0.75")."""
    return [float(x) for x in names(text)]


def ints(text: str | None) -> list[int]:
    """A comma-separated flag of whole numbers ("1,2,4")."""
    return [int(x) for x in names(text)]


def dispatch(
    commands: dict[str, tuple[str, str]],
    argv: list[str],
    prog: str,
    description: str,
) -> int:
    """Parse `argv` = [command, flags...] against `commands` and run the command's module."""
    parser = ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_) in commands.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else BAD_INPUT
    name = argv[0]
    if name not in commands:
        parser.parse_args(argv[:1])  # prints the choices and exits 3
        return BAD_INPUT
    try:
        module = importlib.import_module(commands[name][0])
        cmd_parser = ArgumentParser(prog=f"{prog} {name}", description=commands[name][1])
        module.configure_parser(cmd_parser)
        args, extra = cmd_parser.parse_known_args(argv[1:])
        if extra:
            print(f"error: {unknown_flag_hint(cmd_parser, extra)}", file=sys.stderr)
            return BAD_INPUT
        return int(module.main(args) or 0)
    except KeyboardInterrupt:  # `run` handles its own signals; this is any other command
        print(f"\n{name}: interrupted", file=sys.stderr)
        return interrupted(signal.SIGINT)
    except Exception:  # noqa: BLE001 - a bug, not a user error: show it, but never exit 1 (INVALID)
        traceback.print_exc()
        print(f"{name}: internal error (exit {SUT_FAILURE})", file=sys.stderr)
        return SUT_FAILURE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return dispatch(COMMANDS, argv, "python -m harness", __doc__.splitlines()[0])
