"""Parse LoadGen's mlperf_log_summary.txt (+ detail log) into results.json.

`parse_summary(text)` keeps every `key : value` line (numbers converted) and the validity reasons;
`build_results(run_dir, ...)` writes the results.json contract (see `RESULT_KEYS`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from common.loadgen_log import LoadgenLog

RESULT_KEYS = (
    "result_valid validity scenario mode samples_per_second completed_qps scheduled_qps target_qps "
    "target_latency_ns latency_ns early_stopping_latency_ns early_stopping_queries_short "
    "constraints_failed loadgen_errors loadgen_warnings submission_grade summary"
).split()
# The runner adds: interrupted (bool) and signal, ended_early (the SUT's reason: interrupt, Server
# drain bound), nonfinite_samples (responses holding NaN/Inf), sut_failure, sut_batches,
# exit_status, peak_rss_mib, accuracy (accuracy runs), probe (--probe), loadgen_finished: false when
# the process had to leave before LoadGen ended, error (a run that failed before its test), executor
# (thread | ray) and, with Ray, ray (per actor and per node batches and samples, lost actors:
# sut/ray_executor.py).
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


def results_from_summary(text: str, detail: Path, mode: str, submission_grade: bool) -> dict[str, Any]:
    """The results.json dict for one run (accuracy runs have no validity: reported VALID if logged)."""
    s = parse_summary(text)
    validity = str(s.get("Result is", "INVALID"))
    failed = [name for key, name in _CONSTRAINTS.items() if str(s.get(key, "Yes")).lower() == "no"]
    errors, warnings = count_detail(detail)
    early = None
    for key, value in s.items():
        if key.startswith("Early stopping") and "percentile estimate" in key:
            early = early or value
    target_latency = s.get("target_latency (ns)")
    short = _QUERIES_SHORT.search(text)
    return {
        "result_valid": validity == "VALID",
        "validity": validity,
        "scenario": s.get("Scenario"),
        "mode": mode,
        "samples_per_second": s.get("Samples per second"),
        "completed_qps": s.get("Completed samples per second"),
        "scheduled_qps": s.get("Scheduled samples per second"),
        "target_qps": s.get("target_qps"),
        "target_latency_ns": target_latency,
        "latency_ns": _percentiles(s),
        "early_stopping_latency_ns": early,
        "early_stopping_queries_short": int(short.group(1)) if short else None,
        "constraints_failed": failed,
        "loadgen_errors": errors,
        "loadgen_warnings": warnings,
        "submission_grade": submission_grade,
        "summary": s,
    }


def write_results(
    run_dir: Path, mode: str, submission_grade: bool, extra: dict[str, Any] | None = None
) -> dict:
    """Parse run_dir's LoadGen logs and write run_dir/results.json; returns the dict."""
    summary = run_dir / "mlperf_log_summary.txt"
    text = summary.read_text(errors="replace") if summary.is_file() else ""
    res = results_from_summary(text, run_dir / "mlperf_log_detail.txt", mode, submission_grade)
    if not text:
        res["constraints_failed"].append("no summary written")
    res.update(extra or {})
    save_results(run_dir, res)
    return res


def save_results(run_dir: Path, res: dict[str, Any]) -> None:
    """Write run_dir/results.json atomically (a signal or a crash never leaves half a file)."""
    tmp = run_dir / f".results.json.{os.getpid()}"
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(run_dir / "results.json")


def read_results(run_dir: Path) -> dict[str, Any] | None:
    """run_dir/results.json, or None when absent or unreadable."""
    try:
        return json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
