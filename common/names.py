"""Looking a name up in a registry table, with a "did you mean" when it is not there."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """' Did you mean 'x'?' for the closest known name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def lookup(kind: str, name: str, table: Mapping[str, T]) -> T:
    """table[name]; otherwise ValueError "unknown <kind> 'name'. Did you mean ...? Known: a, b"."""
    if name not in table:
        raise ValueError(
            f"unknown {kind} {name!r}.{did_you_mean(name, list(table))} Known: {', '.join(table)}"
        )
    return table[name]
