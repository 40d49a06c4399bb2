"""results.json, the one record of what a run measured: the `Results` dataclass owns its fields.

The runner (harness/runner.py) builds it from LoadGen's mlperf_log_summary.txt and detail log
(`Results.measured`), adds its own fields through the dataclass's methods and writes it atomically
(`Results.save`); every reader loads it through `Results.load` (one `ValueError` naming the file for
a malformed one). The schema, field by field, is in docs/running.md ("results.json").
`parse_summary(text)` keeps every `key : value` line of a summary (numbers converted).
"""

from __future__ import annotations

import json
import os
import re
import types
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from common.loadgen_log import LoadgenLog

_LINE = re.compile(r"^\s*(?:\*\s*)?([^:=*\s][^:]*?)\s*:\s*(.*?)\s*$")
_PERCENTILE = re.compile(r"^(\d+\.\d+) percentile latency \(ns\)$")
# a run that failed early stopping: how many more queries LoadGen says it would have needed
_QUERIES_SHORT = re.compile(r"Would need to run at least (\d+) more queries")
# summary line -> the constraint LoadGen reports as not met
_CONSTRAINTS = {
    "Min duration satisfied": "min duration",
    "Min queries satisfied": "min queries",
    "Performance constraints satisfied": "latency",
    "Early stopping satisfied": "early stopping",
}


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_summary(text: str) -> dict[str, Any]:
    """All `key : value` pairs of a summary (later duplicates keep the first), values as numbers."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = _number(m.group(2))
    return out


def _percentiles(summary: dict[str, Any]) -> dict[str, Any]:
    lat: dict[str, Any] = {
        "min": summary.get("Min latency (ns)"),
        "mean": summary.get("Mean latency (ns)"),
        "max": summary.get("Max latency (ns)"),
    }
    for key, value in summary.items():
        m = _PERCENTILE.match(key)
        if m:
            p = float(m.group(1))
            lat[f"p{p:g}"] = value
    return lat


def count_detail(detail: Path) -> tuple[int, int]:
    """(errors, warnings) logged by LoadGen in mlperf_log_detail.txt (0, 0 when it is absent)."""
    if not detail.is_file():
        return 0, 0
    log = LoadgenLog.read(detail)
    return len(log.errors), len(log.warnings)


NS_PER_MS = 1e6
FILE = "results.json"
# names older harness versions wrote for a field, read when loading their run folders
_OLD_NAMES = {"probe": "retimed"}


@dataclass(frozen=True)
class Results:
    """results.json. The first block comes from LoadGen's logs, the second from the harness.
    Latencies in ns; None where LoadGen did not report the value (e.g. no latency percentiles in
    accuracy mode)."""

    result_valid: bool = False
    validity: str = "INVALID"
    scenario: str | None = None
    mode: str | None = None
    samples_per_second: float | None = None
    completed_qps: float | None = None
    scheduled_qps: float | None = None
    target_qps: float | None = None
    target_latency_ns: float | None = None
    latency_ns: dict[str, float] = field(default_factory=dict)  # min, mean, max, p50, p90, p99...
    early_stopping_latency_ns: float | None = None
    early_stopping_queries_short: int | None = None  # failed early stopping: queries still needed
    constraints_failed: tuple[str, ...] = ()  # LoadGen's unmet constraints, then the harness's
    loadgen_errors: int = 0
    loadgen_warnings: int = 0
    submission_grade: bool = False
    summary: dict[str, Any] = field(default_factory=dict)  # every line of mlperf_log_summary.txt

    sut_failure: str | None = None  # the SUT's first failure, None if none
    sut_batches: int | None = None
    nonfinite_samples: int = 0  # responses holding NaN or Inf
    interrupted: bool = False  # a signal ended the run early
    signal: str | None = None  # which one (SIGINT, SIGTERM)
    ended_early: str | None = None  # why the SUT ended the test early (interrupt, Server drain bound)
    loadgen_finished: bool = True  # False: the process left before LoadGen ended
    exit_status: int | None = None  # the run's exit code (common/exit_codes.py)
    error: str | None = None  # a run that failed before its test (e.g. a bad checkpoint)
    peak_rss_mib: float | None = None  # the run process's peak resident memory
    accuracy: dict[str, Any] | str | None = None  # accuracy runs: the metrics, or {"error": why}
    retimed: dict[str, Any] = field(default_factory=dict)  # --retime (harness/retime.py)
    executor: str = "thread"  # where the backends ran: thread | ray
    ray: dict[str, Any] = field(default_factory=dict)  # --executor ray: per actor / node counts, faults

    # --- written by the runner ---------------------------------------------------------------
    @classmethod
    def measured(cls, run_dir: Path, mode: str, submission_grade: bool, scenario: str) -> Results:
        """What run_dir's LoadGen logs say (accuracy runs have no validity: VALID if logged); a
        missing summary is the unmet constraint "no summary written"."""
        path = run_dir / "mlperf_log_summary.txt"
        text = path.read_text(errors="replace") if path.is_file() else ""
        res = cls.from_summary(text, run_dir / "mlperf_log_detail.txt", mode, submission_grade)
        res = replace(res, scenario=scenario)
        return res if text else res.invalid("no summary written")

    @classmethod
    def from_summary(cls, text: str, detail: Path, mode: str, submission_grade: bool) -> Results:
        """The LoadGen fields of one summary's text (and the error and warning counts of `detail`)."""
        s = parse_summary(text)
        validity = str(s.get("Result is", "INVALID"))
        failed = [name for key, name in _CONSTRAINTS.items() if str(s.get(key, "Yes")).lower() == "no"]
        errors, warnings = count_detail(detail)
        early = None
        for key, value in s.items():
            if key.startswith("Early stopping") and "percentile estimate" in key:
                early = early or value
        short = _QUERIES_SHORT.search(text)
        return cls(
            result_valid=validity == "VALID",
            validity=validity,
            scenario=s.get("Scenario"),
            mode=mode,
            samples_per_second=s.get("Samples per second"),
            completed_qps=s.get("Completed samples per second"),
            scheduled_qps=s.get("Scheduled samples per second"),
            target_qps=s.get("target_qps"),
            target_latency_ns=s.get("target_latency (ns)"),
            latency_ns={k: v for k, v in _percentiles(s).items() if v is not None},
            early_stopping_latency_ns=early,
            early_stopping_queries_short=int(short.group(1)) if short else None,
            constraints_failed=tuple(failed),
            loadgen_errors=errors,
            loadgen_warnings=warnings,
            submission_grade=submission_grade,
            summary=s,
        )

    def invalid(self, constraint: str | None = None) -> Results:
        """This result INVALID, with `constraint` (the harness's reason) added to the unmet ones."""
        failed = self.constraints_failed + ((constraint,) if constraint else ())
        return replace(self, result_valid=False, validity="INVALID", constraints_failed=failed)

    def interrupted_by(self, signal_name: str, exit_status: int) -> Results:
        """This result after a signal ended the run: INVALID, interrupted, with its exit status."""
        return replace(self.invalid(), interrupted=True, signal=signal_name, exit_status=exit_status)

    def updated(self, **changes: Any) -> Results:
        """A copy with `changes` (field names; TypeError for any other name)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, run_dir: Path) -> None:
        """Write run_dir/results.json atomically (a signal or a crash never leaves half a file)."""
        tmp = run_dir / f".{FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(run_dir / FILE)

    # --- read by everyone else ---------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path) -> Results | None:
        """run_dir/results.json; None when the run wrote none. ValueError naming the file when it
        is not a results.json this harness reads (not JSON, a key it does not know, a wrong type)."""
        path = Path(run_dir) / FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not readable as JSON ({e})") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, source: str = FILE) -> Results:
        """The record of results.json's object `data` (older names read as today's, missing fields at
        their defaults); ValueError naming `source` and the key otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        hints = _hints()
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = _OLD_NAMES.get(key, key)
            if name not in hints:
                raise ValueError(f"{source}: unknown key {key!r} (not a results.json of this harness)")
            if value is None:
                continue  # the default (None, or empty for the dict fields older files left null)
            if not _matches(value, hints[name]):
                raise ValueError(f"{source}: {key} = {value!r} is not {_type_name(hints[name])}")
            values[name] = value
        values["constraints_failed"] = tuple(values.get("constraints_failed", ()))
        latency = values.get("latency_ns", {})
        values["latency_ns"] = {k: v for k, v in latency.items() if v is not None}
        return cls(**values)

    def latency_ms(self, key: str) -> float | None:
        """A latency percentile ("p90") or statistic ("mean") in milliseconds, None if not reported."""
        value = self.latency_ns.get(key)
        return None if value is None else float(value) / NS_PER_MS


def _hints() -> dict[str, Any]:
    hints = get_type_hints(Results)
    return {f.name: hints[f.name] for f in fields(Results)}


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (ints are fine where floats are)."""
    if isinstance(hint, types.UnionType):
        return any(_matches(value, arg) for arg in hint.__args__)
    origin = getattr(hint, "__origin__", hint)
    if hint is Any:
        return True
    if origin is tuple:
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


def _type_name(hint: Any) -> str:
    if getattr(hint, "__origin__", None) is tuple:
        return "a list of strings"
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
