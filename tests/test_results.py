"""results.json: `harness.results.Results` is its one owner (written by the runner, loaded by every
reader through `Results.load`), its schema is documented field by field, older folders still load."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from common.paths import REPO
from harness.results import Results
from harness.run_record import RunRecord
from harness.settings import sizing_fix, sizing_line

SUMMARY = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Offline
Mode     : PerformanceOnly
Samples per second: 687.9
Result is : INVALID
  Min duration satisfied : NO
  Min queries satisfied : Yes
  Early stopping satisfied: Yes

================================================
Additional Stats
================================================
Min latency (ns)                : 1000
Max latency (ns)                : 9000
Mean latency (ns)               : 5000
50.00 percentile latency (ns)   : 4800
90.00 percentile latency (ns)   : 8000

================================================
Test Parameters Used
================================================
samples_per_query : 1100
target_qps : 2000
"""


def _measured(tmp_path: Path) -> Results:
    (tmp_path / "mlperf_log_summary.txt").write_text(SUMMARY)
    return Results.measured(tmp_path, "performance", False, "Offline")


def test_measured_reads_the_summary_into_typed_fields(tmp_path):
    res = _measured(tmp_path)
    assert (res.scenario, res.mode, res.validity, res.result_valid) == (
        "Offline",
        "performance",
        "INVALID",
        False,
    )
    assert res.samples_per_second == 687.9 and res.target_qps == 2000
    assert res.latency_ns == {"min": 1000, "mean": 5000, "max": 9000, "p50": 4800, "p90": 8000}
    assert res.latency_ms("p90") == 0.008 and res.latency_ms("p99") is None
    assert res.constraints_failed == ("min duration",)
    assert (res.loadgen_errors, res.loadgen_warnings) == (0, 0)  # no detail log
    assert res.summary["samples_per_query"] == 1100


def test_no_summary_is_an_unmet_constraint_with_the_runs_scenario(tmp_path):
    res = Results.measured(tmp_path, "accuracy", True, "Server")
    assert (res.scenario, res.mode, res.submission_grade) == ("Server", "accuracy", True)
    assert res.constraints_failed == ("no summary written",) and res.validity == "INVALID"
    assert res.summary == {} and res.latency_ns == {}


def test_the_runners_updates_are_methods_that_check_field_names(tmp_path):
    res = _measured(tmp_path)
    drained = res.updated(result_valid=True, validity="VALID").invalid("drain bound")
    assert drained.constraints_failed == ("min duration", "drain bound")
    assert (drained.result_valid, drained.validity) == (False, "INVALID")
    stopped = drained.interrupted_by("SIGTERM", 143)
    assert (stopped.interrupted, stopped.signal, stopped.exit_status) == (True, "SIGTERM", 143)
    assert stopped.constraints_failed == drained.constraints_failed  # no second reason
    assert res.exit_status is None and res.constraints_failed == ("min duration",)  # frozen
    with pytest.raises(TypeError):
        res.updated(probe={"samples": 1})  # the old name is not a field: one name per fact


def test_saved_file_has_exactly_the_fields_and_loads_back_equal(tmp_path):
    res = _measured(tmp_path).updated(
        retimed={"samples": 1100, "plain_loop_samples_per_second": 700.5},
        exit_status=1,
        accuracy={"error": "no sample"},
        ray={"actors": [{"batches": 3}]},
        peak_rss_mib=412.5,
    )
    res.save(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data) == [f.name for f in fields(Results)]  # every field, once, in order
    assert data["constraints_failed"] == ["min duration"] and data["retimed"]["samples"] == 1100
    assert Results.load(tmp_path) == res
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlperf_log_summary.txt", "results.json"]


def test_an_older_folder_loads_probe_as_retimed_and_defaults_what_it_lacks(tmp_path):
    """What the runner wrote before the record owned the file: `probe`, no executor, null latencies."""
    old = {
        "result_valid": True,
        "validity": "VALID",
        "scenario": "SingleStream",
        "mode": "performance",
        "latency_ns": {"min": None, "p90": 729456},
        "probe": {"samples": 40, "bare_p90_ms": 3.2},
        "constraints_failed": [],
        "summary": {"Scenario": "SingleStream"},
        "sut_failure": None,
    }
    (tmp_path / "results.json").write_text(json.dumps(old))
    res = Results.load(tmp_path)
    assert res.retimed == {"samples": 40, "bare_p90_ms": 3.2}
    assert res.latency_ns == {"p90": 729456} and res.constraints_failed == ()
    assert (res.executor, res.ray, res.exit_status, res.loadgen_finished) == ("thread", {}, None, True)
    assert Results.load(tmp_path / "nowhere") is None  # a run that wrote none


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{ not json", "not readable as JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"result_valid": true, "qps": 3}', "unknown key 'qps'"),
        ('{"result_valid": "yes"}', "result_valid = 'yes' is not bool"),
        ('{"samples_per_second": "fast"}', "samples_per_second = 'fast' is not float | None"),
        ('{"loadgen_errors": 1.5}', "loadgen_errors = 1.5 is not int"),
        ('{"constraints_failed": "latency"}', "is not a list of strings"),
        ('{"latency_ns": [1]}', "latency_ns = [1] is not dict"),
    ],
)
def test_a_malformed_file_is_one_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        Results.load(tmp_path)
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value)
    assert path.read_text() == text  # read only


def test_the_run_record_loads_results_through_the_one_loader(tmp_path):
    config = {
        "model": "full",
        "task": "xnli",
        "scenario": "Offline",
        "mode": "performance",
        "backend": "pytorch",
    }
    (tmp_path / "run_config.json").write_text(json.dumps(config))
    assert RunRecord.load(tmp_path).results is None
    _measured(tmp_path).save(tmp_path)
    assert RunRecord.load(tmp_path).results == Results.load(tmp_path)
    assert RunRecord.load(tmp_path).results.samples_per_second == 687.9
    (tmp_path / "results.json").write_text('{"probe": {}, "speed": 1}')
    with pytest.raises(ValueError, match="results.json: unknown key 'speed'"):
        RunRecord.load(tmp_path)


def test_sizing_reads_the_record(tmp_path):
    res = _measured(tmp_path)
    assert sizing_fix("full", "Offline", res) == "full.Offline.target_qps = 756.7"  # 1.1 x 687.9
    assert sizing_line("full", "SingleStream", res) == "full.SingleStream.target_latency = 0.005"
    assert sizing_line("full", "Server", res) is None and sizing_line("full", "Offline", None) is None
    assert sizing_line("full", "Offline", Results()) is None  # no rate measured
    assert sizing_fix("full", "Offline", res.updated(constraints_failed=("latency",))) is None


def test_the_docs_table_lists_every_field_once():
    """docs/running.md's results.json table is the schema: one row per field, in the record's order."""
    text = (REPO / "docs" / "running.md").read_text()
    section = text.split("## results.json\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", section, flags=re.M)
    assert [name for name, _ in rows] == [f.name for f in fields(Results)]
    kinds = {
        "bool": "bool",
        "str": "str",
        "int": "int",
        "float": "float",
        "dict": "object",
        "tuple": "list",
    }
    for f, (_, kind) in zip(fields(Results), rows, strict=True):
        annotation = str(f.type).split("[")[0].split(" ")[0]
        assert kinds[annotation] == kind, f.name
