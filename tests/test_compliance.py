"""TEST01: first-element accuracy verification, 10% performance check, audit-file hygiene."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig
from harness.submission import compliance
from tests.test_submission import head_sha, write_fake_runner


def _acc_log(path: Path, firsts: dict[int, float]) -> Path:
    entries = [
        {"seq_id": i, "qsl_idx": idx, "data": np.array([v, 7.0], np.float32).tobytes().hex().upper()}
        for i, (idx, v) in enumerate(firsts.items())
    ]
    path.write_text(json.dumps(entries))
    return path


def _detail(path: Path, scenario: str, result: float, validity: str = "VALID") -> Path:
    key = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss"}[scenario]
    recs = {"effective_scenario": scenario, "result_validity": validity, key: result}
    path.write_text("".join(f":::MLLOG {json.dumps({'key': k, 'value': v})}\n" for k, v in recs.items()))
    return path


def test_accuracy_pass_on_identical_first_elements(tmp_path):
    ref = _acc_log(tmp_path / "ref.json", {0: 1.5, 1: 2.5, 2: 3.5})
    ok, text = compliance.verify_accuracy(ref, _acc_log(tmp_path / "t.json", {2: 3.5, 0: 1.5}))
    assert ok and text.splitlines()[-1] == "TEST PASS" and "num_perf_log_qsl_idx_match = 2" in text


def test_accuracy_fail_when_one_first_element_differs(tmp_path):
    ref = _acc_log(tmp_path / "ref.json", {0: 1.5, 1: 2.5, 2: 3.5})
    ok, text = compliance.verify_accuracy(ref, _acc_log(tmp_path / "t.json", {0: 1.5, 1: 2.25}))
    assert not ok and text.splitlines()[-1] == "TEST FAIL"
    assert "qsl_idx 1: accuracy run 2.5, audit 2.25" in text


def test_performance_within_and_beyond_10_percent(tmp_path):
    ref = _detail(tmp_path / "ref.txt", "Offline", 1000.0)
    assert compliance.verify_performance(ref, _detail(tmp_path / "a.txt", "Offline", 1090.0))[0]
    ok, text = compliance.verify_performance(ref, _detail(tmp_path / "b.txt", "Offline", 880.0))
    assert not ok and "off by 12.0%" in text and text.splitlines()[-1] == "TEST FAIL"
    ok, text = compliance.verify_performance(
        ref, _detail(tmp_path / "c.txt", "Offline", 1000.0, "INVALID")
    )
    assert not ok and "INVALID" in text


def test_audit_config_removed_even_when_the_run_fails(tmp_path):
    runner = write_fake_runner(tmp_path)
    seen = tmp_path / "seen.txt"
    with pytest.raises(RuntimeError, match="exit status 3"):
        compliance.run_audit(
            RunConfig(model="adapter-squad"), ["--fail", "--seen_file", str(seen)], runner
        )
    present, workdir = seen.read_text().split()
    assert present == "True"  # the runner saw audit.config in its working directory ...
    assert not Path(workdir).exists()  # ... which is gone afterwards
    assert not (Path.cwd() / "audit.config").exists()


def _args(log_dir: Path, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compliance.configure_parser(parser)
    argv = [
        "--scenario",
        "Offline",
        "--model",
        "adapter-squad",
        "--task",
        "xnli",
        "--output_dir",
        str(log_dir),
    ]
    return parser.parse_args(argv + [x for k, v in kw.items() for x in (f"--{k}", v)])


def test_compliance_command_end_to_end(tmp_path, monkeypatch, capsys):
    runner = write_fake_runner(tmp_path)
    d = tmp_path / "D"
    assert compliance.main(_args(d)) == 3  # bad input: the runs it compares with are missing
    assert "no accuracy run at" in capsys.readouterr().out
    assert compliance.main(_args(d, model="../../x")) == 3  # a name that would escape LOG_DIR
    assert "unknown model '../../x'" in capsys.readouterr().out
    import subprocess

    for extra in ([], ["--accuracy"]):
        subprocess.run([*runner, "--output_dir", str(d), "--git_sha", head_sha(), *extra], check=True)
    monkeypatch.setattr(compliance, "RUNNER", runner)
    t01 = d / "adapter-squad" / "xnli" / "Offline" / "TEST01"
    assert compliance.main(_args(d)) == 0
    assert (t01 / "verify_accuracy.txt").read_text().splitlines()[-1] == "TEST PASS"
    for rel in ("performance/run_1/mlperf_log_detail.txt", "accuracy/mlperf_log_accuracy.json"):
        assert (t01 / rel).is_file()
    assert compliance.main(_args(d, run_args="--offset 1")) == 1  # outputs differ from the accuracy run
    assert (t01 / "verify_accuracy.txt").read_text().splitlines()[-1] == "TEST FAIL"
