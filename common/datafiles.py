"""TOML data files read with a schema: grids, presets and measured figures are data, never code.

A file that does not match its schema raises DataFileError naming the file and the bad key (a
command line turns it into one `error:` line, exit 3). The study's presets and planning rates
(research/) and the zoo's selection grids (zoo/) read their files here: zoo/ cannot import research/.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from common.paths import REPO

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


def flag_values(
    path: Path, parser: argparse.ArgumentParser, command: str, not_flags: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The flag values a preset file gives, checked against `command`'s own parser: every key (but
    `help`, the preset's one-line description) is the name of a flag (not one of `not_flags`), and
    every value passes that flag's type and choices as if it had been typed (a list as a comma
    list); paths are relative to the repository. DataFileError names the file and the key."""
    data = read_toml(path)
    refused = {"help", *not_flags}
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in refused}
    out = {}
    for key, value in data.items():
        if key == "help":
            continue
        action = actions.get(key)
        if action is None:
            raise DataFileError(f"{path}: unknown key {key!r} (not a flag of {command})")
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        try:
            converted = action.type(text) if action.type else text
        except (TypeError, ValueError) as exc:
            raise DataFileError(f"{path}: key {key!r}: bad value {value!r} ({exc})") from exc
        if action.choices is not None and converted not in action.choices:
            raise DataFileError(f"{path}: key {key!r}: {value!r} is not one of {list(action.choices)}")
        out[key] = in_repo(converted)
    return out


def in_repo(value: Any) -> Any:
    """A path, or each path of a tuple of them, taken relative to the repository; others as given."""
    if isinstance(value, Path):
        return REPO / value
    if isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value):
        return tuple(REPO / v for v in value)
    return value
