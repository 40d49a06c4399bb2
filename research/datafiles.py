"""The study's data files, read with a schema: the presets (research/grids/<name>.toml, one grid each)
and the planning figures (research/rates.toml, with the command and date that measured them).

A file that does not match its schema raises DataFileError naming the file and the bad key (the
command line: one `error:` line, exit 3); the schema checker is common/datafiles.py's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.datafiles import NUMBER, DataFileError, check, read_toml

HERE = Path(__file__).resolve().parent
GRIDS = HERE / "grids"  # one preset per file: research/grids/<name>.toml
RATES_FILE = HERE / "rates.toml"


@dataclass(frozen=True)
class PeakSearch:
    """find_peak's search for a Server cell: bisection `bounds` x the variant's Offline samples/s in
    `trials` steps of `trial_s` seconds each; `longer_s`: what its longer trials add on average."""

    bounds: tuple[float, float]
    trials: int
    trial_s: float
    longer_s: float


@dataclass(frozen=True)
class Rates:
    """One encoder's planning figures (rates.toml explains each)."""

    start_s: float
    accuracy_s: dict[str, float]
    seed_training_s: float
    offline_qps: dict[str, float]
    offline_qps_by_backend: dict[str, dict[str, float]] = field(default_factory=dict)
    offline_stretch: dict[str, float] = field(default_factory=dict)

    def offline_target(self, task: str, backend: str) -> float:
        """The Offline target_qps of `task` on `backend` (0 = none known: user.conf's)."""
        return self.offline_qps_by_backend.get(task, {}).get(backend, self.offline_qps.get(task, 0.0))


SOURCE = {"measured": str, "command": str}  # where each figure comes from: checked, not kept
RATES_SCHEMA = {
    "peak_search": {**SOURCE, "bounds": [NUMBER], "trials": int, "trial_s": NUMBER, "longer_s": NUMBER},
    "encoders": {
        str: {
            **SOURCE,
            "start_s": NUMBER,
            "seed_training_s": NUMBER,
            "accuracy_s": {str: NUMBER},
            "offline_qps": {str: NUMBER},
            "offline_qps_by_backend?": {str: {str: NUMBER}},
            "offline_stretch?": {str: NUMBER},
        }
    },
}


def load_rates(path: Path = RATES_FILE) -> tuple[PeakSearch, dict[str, Rates]]:
    """The peak search and each encoder's Rates of `path` (DataFileError when it does not match)."""
    data = read_toml(path)
    check(path, data, RATES_SCHEMA)
    peak = {k: v for k, v in data["peak_search"].items() if k not in SOURCE}
    if len(peak["bounds"]) != 2 or not 0 < peak["bounds"][0] < peak["bounds"][1]:
        raise DataFileError(f"{path}: key 'peak_search.bounds' must be [low, high] with 0 < low < high")
    rates = {
        name: Rates(**{k: v for k, v in e.items() if k not in SOURCE})
        for name, e in data["encoders"].items()
    }
    return PeakSearch(**peak | {"bounds": tuple(peak["bounds"])}), rates


def preset_names(folder: Path | None = None) -> list[str]:
    """The presets there are: one research/grids/<name>.toml each (`folder`: another one)."""
    return sorted(p.stem for p in (folder or GRIDS).glob("*.toml"))


def load_preset(
    name: str, parser: argparse.ArgumentParser, folder: Path | None = None
) -> dict[str, Any]:
    """The flag values of preset `name`, checked against the study's own parser: every key (but
    `help`, the preset's one-line description) is a flag's name, and every value passes that flag's
    type and choices, as if it had been typed (a list as a comma list); paths are relative to the
    repository. DataFileError names the file and the key that does not."""
    path = (folder or GRIDS) / f"{name}.toml"
    data = read_toml(path)
    actions = {
        a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("preset", "help")
    }
    out = {}
    for key, value in data.items():
        if key == "help":
            continue
        action = actions.get(key)
        if action is None:
            raise DataFileError(f"{path}: unknown key {key!r} (not a flag of the study)")
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        try:
            converted = action.type(text) if action.type else text
        except (TypeError, ValueError) as exc:
            raise DataFileError(f"{path}: key {key!r}: bad value {value!r} ({exc})") from exc
        if action.choices is not None and converted not in action.choices:
            raise DataFileError(f"{path}: key {key!r}: {value!r} is not one of {list(action.choices)}")
        if isinstance(converted, Path):
            converted = HERE.parent / converted
        out[key] = converted
    return out
