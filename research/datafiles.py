"""The study's data files, read with a schema (common/datafiles.py): the presets
(research/grids/<name>.toml, one grid each) and the planning figures (research/rates.toml, with the
command and date that measured them).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.datafiles import NUMBER, DataFileError, check, flag_values, read_toml

HERE = Path(__file__).resolve().parent
GRIDS = HERE / "grids"  # one preset per file: research/grids/<name>.toml
RATES_FILE = HERE / "rates.toml"
MARKER = "study_cell.json"  # in a finished cell's run folder: its settings, command and wall time


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
    """The flag values of preset `name` (`help` is its one-line description): every key is a flag of
    the study, every value passes it (common.datafiles.flag_values)."""
    return flag_values((folder or GRIDS) / f"{name}.toml", parser, "the study", ("preset",))
