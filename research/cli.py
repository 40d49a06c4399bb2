"""`python -m research <command> ...`: the research tooling's commands.

The Makefile's study target calls it (the harness-efficiency benchmark, `make benchmark` and
`make gpu_check`, is `python -m bench benchmark`; find_peak, a product command, is `python -m harness
find_peak`). Same contract as the core's front door (harness.cli.dispatch): one module per command
with `configure_parser(parser)` and `main(args) -> int`, imported only when its command runs."""

from __future__ import annotations

import sys

from harness.cli import dispatch

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "study": ("research.study", "the full vs adapter efficiency study"),
    "curve": ("research.curve", "the learning curve's reports side by side (more English data)"),
    "pooling": ("research.pooling", "the retrieval embedding's layer, chosen on XNLI's training rows"),
    "mutation": ("research.mutation", "per-module kill rates of the last mutmut run, its survivors"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return dispatch(COMMANDS, argv, "python -m research", __doc__.splitlines()[0])
