"""The one markdown table writer of the generated reports (every table that research/ and bench/
write goes through it, and the zoo's selection report).

It lives in common/ because both packages need it: in research/, bench could not import it (bench
sits below research); in bench/, the study's report would depend on the benchmark package for
formatting alone. It imports nothing from the project, so the lowest layer can hold it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def cell(value: Any, digits: int = 1) -> str:
    """One table cell: None and NaN as "-", booleans as yes/NO, floats with `digits` decimals."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 1) -> list[str]:
    """A GitHub markdown table as lines (header, rule, one line per row); each row must have one
    cell per header column."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells for {len(header)} columns: {row!r}")
        lines.append("| " + " | ".join(cell(v, digits) for v in row) + " |")
    return lines


def frame_table(frame: Any, digits: int = 1) -> list[str]:
    """A pandas DataFrame as a markdown table (its columns as the header, its index dropped)."""
    return markdown_table([str(c) for c in frame.columns], frame.itertuples(index=False), digits)


def table_block(lead: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A blank line, a lead paragraph (none when empty) and a table; nothing when there are no rows."""
    rows = list(rows)
    return ["", *([lead, ""] if lead else []), *markdown_table(header, rows)] if rows else []
