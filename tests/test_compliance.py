"""TEST01: first-element accuracy verification, its scored fallback, 10% performance check,
audit-file hygiene."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig
from harness.submission import compliance
from tests.test_submission import ENV, RUNNER, head_sha, write_fake_runner


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


def test_accuracy_fails_when_no_qsl_idx_overlaps(tmp_path):
    """An audit log whose samples are all missing from the accuracy run compared nothing: no
    mismatch, and still TEST FAIL (the check needs at least one matched sample)."""
    ref = _acc_log(tmp_path / "ref.json", {0: 1.5, 1: 2.5})
    ok, text = compliance.verify_accuracy(ref, _acc_log(tmp_path / "t.json", {7: 1.5, 9: 2.5}))
    assert not ok and text.splitlines()[-1] == "TEST FAIL"
    assert "num_perf_log_qsl_idx_match = 0" in text and "num_perf_log_data_mismatch = 0" in text
    assert "num_missing_qsl_idxs = 2" in text


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


def _runs(d: Path) -> None:
    for extra in ([], ["--accuracy"]):
        subprocess.run(
            [sys.executable, str(RUNNER), "--output_dir", str(d), "--git_sha", head_sha(), *extra],
            check=True,
            cwd=d.parent,
            env=ENV,
        )


def test_compliance_command_end_to_end(tmp_path, monkeypatch, capsys):
    d = tmp_path / "D"
    assert compliance.main(_args(d)) == 3  # bad input: the runs it compares with are missing
    assert "no accuracy run at" in capsys.readouterr().out
    assert compliance.main(_args(d, model="../../x")) == 3  # a name that would escape LOG_DIR
    assert "unknown model '../../x'" in capsys.readouterr().out
    _runs(d)
    scen = d / "tiny" / "pytorch" / "adapter-squad" / "xnli" / "Offline"
    monkeypatch.setattr(compliance, "RUNNER", write_fake_runner(tmp_path))
    perf = f"--perf_from {scen / 'performance'}"  # the audit reports the performance run's timing
    t01 = scen / "TEST01"
    assert compliance.main(_args(d, run_args=perf)) == 0
    assert (t01 / "verify_accuracy.txt").read_text().splitlines()[-1] == "TEST PASS"
    assert (t01 / "verify_performance.txt").read_text().splitlines()[-1] == "TEST PASS"
    for rel in ("performance/run_1/mlperf_log_detail.txt", "accuracy/mlperf_log_accuracy.json"):
        assert (t01 / rel).is_file()
    # the deterministic pass needs no fallback files (the checker then expects exactly these two)
    assert sorted(p.name for p in (t01 / "accuracy").iterdir()) == [
        "accuracy.txt",
        "mlperf_log_accuracy.json",
    ]
    # a real accuracy.txt: the audit's responses scored by XNLI's script. The fake's logits are
    # [qsl_idx, 1, 2]: class 0 for every qsl_idx >= 3 (English rows); the first 2.5% or so are
    # samples 0-2 at class 2.
    final = json.loads((t01 / "accuracy" / "accuracy.txt").read_text().splitlines()[-1])
    logged = {
        e["qsl_idx"] for e in json.loads((t01 / "accuracy" / "mlperf_log_accuracy.json").read_text())
    }
    assert final["accuracy"] == pytest.approx(_xnli_accuracy(logged, offset=0.0))


def _xnli_accuracy(indices: set[int], offset: float, flip: bool = False) -> float:
    """XNLI accuracy (x100) of the fake's responses on `indices`, computed here from the
    labels (a second, independent reading of the data file: qsl_idx 0-399 are the first rows of
    Arabic, the first language in the task's order)."""
    import gzip

    from common.paths import DATA

    with gzip.open(DATA / "xnli" / "dev-ar.tsv.gz", "rt", encoding="utf-8") as f:
        labels = [line.rstrip("\n").split("\t")[2] for line in f]
    names = ["entailment", "neutral", "contradiction"]
    hits = 0
    for i in indices:
        logits = [float(i % 3 == k) for k in range(3)] if flip else [i + offset, 1.0, 2.0]
        hits += names[max(range(3), key=lambda k: (logits[k], -k))] == labels[i]
    return 100.0 * hits / len(indices)


def test_fallback_passes_when_outputs_differ_but_scores_agree(tmp_path, monkeypatch):
    """Responses whose first elements differ (offset 0.5) but whose predictions are the same: the
    deterministic check fails, the fallback's two scores are equal, so TEST01 passes (exit 0) with
    baseline_accuracy.txt and compliance_accuracy.txt beside the audit log, as the checker expects."""
    d = tmp_path / "D"
    _runs(d)
    scen = d / "tiny" / "pytorch" / "adapter-squad" / "xnli" / "Offline"
    monkeypatch.setattr(compliance, "RUNNER", write_fake_runner(tmp_path))
    args = _args(d, run_args=f"--perf_from {scen / 'performance'} --offset 0.5")
    assert compliance.main(args) == 0
    t01 = scen / "TEST01"
    lines = (t01 / "verify_accuracy.txt").read_text().splitlines()
    assert (
        "TEST FAIL" in lines and lines[-1] == "FALLBACK PASS" and "delta = 0.0000% (bound 1.0%)" in lines
    )
    assert sorted(p.name for p in (t01 / "accuracy").iterdir()) == [
        "accuracy.txt",
        "baseline_accuracy.txt",
        "compliance_accuracy.txt",
        "mlperf_log_accuracy.json",
    ]
    base = json.loads((t01 / "accuracy" / "baseline_accuracy.txt").read_text().splitlines()[-1])
    comp = json.loads((t01 / "accuracy" / "compliance_accuracy.txt").read_text().splitlines()[-1])
    logged = {
        e["qsl_idx"] for e in json.loads((t01 / "accuracy" / "mlperf_log_accuracy.json").read_text())
    }
    assert base["accuracy"] == comp["accuracy"] == pytest.approx(_xnli_accuracy(logged, 0.0))
    assert compliance.test01_accuracy_passed(t01) == (True, "")


def test_fallback_fails_when_the_scores_differ(tmp_path, monkeypatch):
    """Other logits (one-hot at qsl_idx mod 3) change the predictions: the deterministic check and the
    fallback both fail, and so does TEST01 (exit 1); staging and our check then refuse it."""
    d = tmp_path / "D"
    _runs(d)
    scen = d / "tiny" / "pytorch" / "adapter-squad" / "xnli" / "Offline"
    monkeypatch.setattr(compliance, "RUNNER", write_fake_runner(tmp_path))
    assert compliance.main(_args(d, run_args=f"--perf_from {scen / 'performance'} --flip")) == 1
    t01 = scen / "TEST01"
    lines = (t01 / "verify_accuracy.txt").read_text().splitlines()
    assert "TEST FAIL" in lines and lines[-1] == "FALLBACK FAIL"
    logged = {
        e["qsl_idx"] for e in json.loads((t01 / "accuracy" / "mlperf_log_accuracy.json").read_text())
    }
    expected = (_xnli_accuracy(logged, 0.0), _xnli_accuracy(logged, 0.0, flip=True))
    assert expected[0] != expected[1]
    assert (
        f"baseline accuracy = {expected[0]}" in lines and f"compliance accuracy = {expected[1]}" in lines
    )
    passed, why = compliance.test01_accuracy_passed(t01)
    assert not passed and "the fallback's accuracy differs by" in why


def test_fallback_with_no_overlapping_samples_fails(tmp_path):
    """Zero overlap between the audit log and the accuracy run: nothing to compare, FALLBACK FAIL."""
    acc = tmp_path / "acc"
    acc.mkdir()
    _acc_log(acc / "mlperf_log_accuracy.json", {0: 1.5, 1: 2.5})
    (acc / "run_config.json").write_text(
        json.dumps(
            {
                "model": "full",
                "task": "xnli",
                "scenario": "Offline",
                "mode": "accuracy",
                "backend": "pytorch",
            }
        )
    )
    audit = _acc_log(tmp_path / "audit.json", {5: 1.5})
    ok, lines = compliance.accuracy_fallback(acc, audit, tmp_path, "float32", 1.0)
    assert not ok and lines[0].endswith(
        "1 samples logged by the audit run, 0 of them in the accuracy run's log"
    )
    assert lines[-1] == "FALLBACK FAIL" and not (tmp_path / "baseline_accuracy.txt").exists()
