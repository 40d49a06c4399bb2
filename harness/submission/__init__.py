"""`python -m harness submission stage|truncate|check|pack`: build an open-division package.

The sub-sub-commands live in `harness.submission.cli`; this module re-exports its entry points so
`harness.cli` can treat `submission` like any other command.
"""

from harness.submission.cli import configure_parser, main

__all__ = ["configure_parser", "main"]
