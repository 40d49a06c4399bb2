"""TOML data files read with a schema (the study's presets and planning rates in research/, the zoo's
selection grids in zoo/): a file that does not match raises DataFileError naming the file and the bad
key. It lives in common/ because both packages read such files and zoo/ cannot import research/."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

NUMBER = (int, float)


class DataFileError(ValueError):
    """A data file that cannot be read or does not match its schema (the message names both)."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataFileError(f"{path}: {exc}") from exc


def check(path: Path, table: Any, schema: Any, where: str = "") -> None:
    """Check `table` against `schema`: a dict of key -> schema (a key ending in "?" optional), a
    one-entry dict {str: schema} (any keys, each value of that schema), a list [schema] (a list of such
    values) or a type or tuple of types (a leaf)."""
    at = f"key {where!r}" if where else "the file"
    prefix = f"{where}." if where else ""
    for kind, word in ((dict, "table"), (list, "list")):
        if isinstance(schema, kind) and not isinstance(table, kind):
            raise DataFileError(f"{path}: {at} must be a {word}")
    if isinstance(schema, dict) and list(schema) == [str]:
        for key, value in table.items():
            check(path, value, schema[str], prefix + key)
    elif isinstance(schema, dict):
        known = {k.rstrip("?"): sub for k, sub in schema.items()}
        for key in table.keys() - known.keys():
            raise DataFileError(f"{path}: unknown key {prefix + key!r} (known: {', '.join(known)})")
        for key, sub in known.items():
            if key in table:
                check(path, table[key], sub, prefix + key)
            elif f"{key}?" not in schema:
                raise DataFileError(f"{path}: missing key {prefix + key!r}")
    elif isinstance(schema, list):
        for i, value in enumerate(table):
            check(path, value, schema[0], f"{where}[{i}]")
    elif not isinstance(table, schema) or isinstance(table, bool):
        kinds = "number" if schema == NUMBER else getattr(schema, "__name__", str(schema))
        raise DataFileError(f"{path}: {at} must be a {kinds}, not {table!r}")
