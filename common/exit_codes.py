"""The exit-code contract of `python -m harness` and the accuracy scripts (README, "Exit codes").

0 VALID, 1 INVALID, 2 SUT failure, 3 bad configuration or input (argparse errors included),
128 + signal number when a signal ended the run (130 SIGINT, 143 SIGTERM). Nothing else here is
imported, so every entry point can use it before its heavy imports.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

VALID = 0
INVALID = 1
SUT_FAILURE = 2
BAD_INPUT = 3

MEANINGS = {
    VALID: "VALID",
    INVALID: "INVALID",
    SUT_FAILURE: "SUT failure",
    BAD_INPUT: "bad configuration or input",
}


def interrupted(signum: int) -> int:
    """The exit code of a run ended by signal `signum` (the shell's 128 + n: SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


def describe(code: int) -> str:
    """`code`'s meaning in one phrase."""
    if code in MEANINGS:
        return MEANINGS[code]
    if code > 128:
        try:
            return f"interrupted ({signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return "unexpected"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors exit BAD_INPUT (3), not argparse's 2 (our SUT-failure code).

    Sub-command parsers made with `add_subparsers()` inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")
