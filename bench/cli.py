"""`python -m bench <command> ...`: the harness-efficiency benchmarks' commands.

The Makefile's benchmark and gpu_check (the benchmark's peak section on a GPU) targets call it. Same
contract as the core's front door (harness.cli.dispatch): one module per command with
`configure_parser(parser)` and `main(args) -> int`, imported only when its command runs."""

from __future__ import annotations

import sys

from harness.cli import dispatch

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "benchmark": ("bench.benchmark", "harness-efficiency benchmark (ratios measured in one run)"),
    "multitask": ("bench.multitask", "K tasks in one process: memory, add-a-task time, throughput"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return dispatch(COMMANDS, argv, "python -m bench", __doc__.splitlines()[0])
