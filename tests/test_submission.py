"""Submission package: stage / truncate / check / pack on short real LoadGen runs.

The runs come from FAKE_RUNNER, a stand-in for `python -m harness run` with a trivial SUT (fixed
float32 responses, first element = qsl index + offset) that writes the run-folder contract
(LoadGen logs, user.conf, run_config.json, results.json, accuracy.txt).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.paths import REPO
from harness.submission.check import check_package
from harness.submission.layout import NOT_FOR_SUBMISSION, VIEWABLE_BYTES, full_logs_dir, read_hash
from harness.submission.pack import pack
from harness.submission.stage import stage
from harness.submission.truncate import truncate, truncate_dir

BENCH = "xlmr-tiny-adapter-squad-xnli"

FAKE_RUNNER = r"""
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np
import mlperf_loadgen as lg

p = argparse.ArgumentParser()
for flag, default in (("--scenario", "Offline"), ("--model", "adapter-squad"), ("--task", "xnli"),
                      ("--encoder", "tiny"), ("--backend", "pytorch"), ("--audit_conf", None),
                      ("--duration", None), ("--count", None), ("--git_sha", None),
                      ("--model_kind", "tiny"), ("--seen_file", None)):
    p.add_argument(flag, default=default)
p.add_argument("--output_dir", required=True)
p.add_argument("--accuracy", action="store_true")
p.add_argument("--fail", action="store_true")
p.add_argument("--offset", type=float, default=0.0)
a = p.parse_args()
if a.seen_file:
    Path(a.seen_file).write_text(f"{Path('audit.config').is_file()} {os.getcwd()}")
if a.fail:
    sys.exit(3)
mode = "accuracy" if a.accuracy else "performance"
out = Path(a.output_dir) / a.model / a.task / a.scenario / mode
out.mkdir(parents=True, exist_ok=True)
conf = out / "user.conf"
conf.write_text("*.Offline.min_duration = 300\n*.Offline.target_qps = 2000\n"
                "*.*.performance_sample_count_override = 32\n")
keep = []
def issue(qs):
    resp = []
    for q in qs:
        arr = np.array([q.index + a.offset, 1.0, 2.0], dtype=np.float32)
        keep.append(arr)
        resp.append(lg.QuerySampleResponse(q.id, arr.__array_interface__["data"][0], arr.nbytes))
    time.sleep(0.0005 * len(qs))  # ~2000 samples/s, stable enough for the 10% comparison
    lg.QuerySamplesComplete(resp)
sut = lg.ConstructSUT(issue, lambda: None)
qsl = lg.ConstructQSL(400, 32, lambda s: None, lambda s: None)
ts = lg.TestSettings()
ts.FromConfig(str(conf), "xlmr-xnli", a.scenario)
ts.scenario = getattr(lg.TestScenario, a.scenario)
ts.mode = lg.TestMode.AccuracyOnly if a.accuracy else lg.TestMode.PerformanceOnly
ls = lg.LogSettings()
ls.log_output.outdir = str(out)
ls.log_output.copy_summary_to_stdout = False
lg.StartTestWithLogSettings(sut, qsl, ts, ls, a.audit_conf or "audit.config")
lg.DestroySUT(sut); lg.DestroyQSL(qsl)
vals = {}
for line in (out / "mlperf_log_detail.txt").read_text().splitlines():
    rec = json.loads(line[len(":::MLLOG"):])
    vals[rec["key"]] = rec["value"]
validity = vals.get("result_validity")
(out / "run_config.json").write_text(json.dumps({
    "model": a.model, "task": a.task, "scenario": a.scenario, "mode": mode, "backend": a.backend,
    "backend_options": {}, "encoder": a.encoder, "model_kind": a.model_kind, "model_spec": "tiny-spec",
    "tokenizer": "tiny", "loadgen_model_name": "xlmr-xnli", "user_conf": str(conf),
    "audit_conf": a.audit_conf, "duration_s": 0.3, "count": None, "submission_grade": False,
    "git_sha": a.git_sha, "git_dirty": True, "versions": {"python": "3.11", "torch": "2.13.0",
    "mlperf_loadgen": "6.0.17", "numpy": "2"}, "device": {"cpu_model": "Test CPU", "cpu_cores": 2,
    "memory_gib": 8.0, "os": "Linux", "gpus": []}, "command": sys.argv,
    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}))
(out / "results.json").write_text(json.dumps({
    "result_valid": validity == "VALID" if not a.accuracy else True, "validity": validity,
    "scenario": a.scenario, "mode": mode, "loadgen_errors": 0, "submission_grade": False}))
(out / "stdout.txt").write_text("")
if a.accuracy:
    (out / "accuracy.txt").write_text('{"accuracy": 41.2, "count": 32}\n')
"""


def write_fake_runner(folder: Path) -> tuple[str, ...]:
    script = folder / "fake_runner.py"
    script.write_text(FAKE_RUNNER)
    return (sys.executable, str(script))


def head_sha() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()


def fake_run(runner: tuple[str, ...], log_dir: Path, *args: str) -> None:
    subprocess.run([*runner, "--output_dir", str(log_dir), "--git_sha", head_sha(), *args], check=True)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    """Offline performance + accuracy runs and a TEST01 audit (via the compliance code path)."""
    from harness.config import RunConfig
    from harness.submission.compliance import run_audit, write_test01

    base = tmp_path_factory.mktemp("logs")
    runner = write_fake_runner(base)
    d = base / "D"
    fake_run(runner, d)
    fake_run(runner, d, "--accuracy")
    audit = run_audit(RunConfig(model="adapter-squad"), ["--git_sha", head_sha()], runner)
    scenario_dir = d / "adapter-squad" / "xnli" / "Offline"
    assert write_test01(scenario_dir / "accuracy", scenario_dir / "performance", audit, "float32")
    shutil.rmtree(audit.parent)
    return d


@pytest.fixture(scope="session")
def package(log_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pkg") / "submission"
    count, problems = stage([log_dir], "TestOrg", "tiny_cpu", root, allow_test_runs=True)
    assert problems == [] and count == 1
    assert len(truncate(root, "TestOrg")) == 2  # main accuracy/ and TEST01/accuracy/
    return root


def test_package_accepted_and_stamped(package):
    errors, notes = check_package(package, "TestOrg")
    assert errors == []
    assert any("performance_sample_count 32 < 10833" in n for n in notes)
    assert any("min_duration 300 ms < 600000 ms" in n for n in notes)
    sub = package / "open" / "TestOrg"
    scen = sub / "results" / "tiny_cpu" / BENCH / "Offline"
    assert (sub / NOT_FOR_SUBMISSION).is_file() and (package / NOT_FOR_SUBMISSION).is_file()
    assert "NOT FOR SUBMISSION" in (scen / "README.md").read_text()
    assert "make compliance TEST=TEST01" in (scen / "README.md").read_text()
    assert json.loads((sub / "model_mapping.json").read_text()) == {BENCH: "bert-99"}
    assert (sub / "src" / "GIT_SHA").read_text().strip() == head_sha()
    assert (sub / "src" / "harness" / "cli.py").is_file()
    assert not list((sub / "src").glob(".*"))  # no .ci/ or .gitignore: the legacy checker refuses them
    assert not (package / "full_accuracy_logs").exists() and full_logs_dir(package).is_dir()
    system = json.loads((sub / "systems" / "tiny_cpu.json").read_text())
    assert system["host_processor_model_name"] == "Test CPU" and system["accelerators_per_node"] == "0"
    assert "TEST PASS" in (scen / "TEST01" / "verify_accuracy.txt").read_text().splitlines()
    for rel in ("accuracy", "TEST01/accuracy"):
        truncated = scen / rel / "mlperf_log_accuracy.json"
        full = full_logs_dir(package) / truncated.relative_to(package)
        assert truncated.stat().st_size <= 10 * 1024 < full.stat().st_size
        assert read_hash(scen / rel / "accuracy.txt") == hashlib.sha256(full.read_bytes()).hexdigest()
    assert pack(package, "TestOrg").name == "TestOrg-open-NOT_FOR_SUBMISSION.tar.gz"


def test_truncation_keeps_first_and_last_4k(tmp_path):
    acc = tmp_path / "accuracy"
    acc.mkdir()
    data = "[\n" + ",\n".join(
        f'{{ "seq_id" : {i}, "qsl_idx" : {i}, "data" : "{i:08X}" }}' for i in range(900)
    )
    log = acc / "mlperf_log_accuracy.json"
    log.write_text(data + "\n]\n")
    original = log.read_bytes()
    (acc / "accuracy.txt").write_text('{"accuracy": 1.0}\n')
    assert truncate_dir(acc, tmp_path / "backup")
    out = log.read_bytes()
    assert out.startswith(original[:VIEWABLE_BYTES]) and out.endswith(original[-VIEWABLE_BYTES:])
    assert len(out) == 2 * VIEWABLE_BYTES + len(b"\n\n...\n\n")
    assert read_hash(acc / "accuracy.txt") == hashlib.sha256(original).hexdigest()
    assert (tmp_path / "backup" / log.name).read_bytes() == original
    assert not truncate_dir(acc, tmp_path / "backup")  # idempotent


def _broken_copy(package: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "submission"
    shutil.copytree(package, root)
    return root, root / "open" / "TestOrg"


def test_check_rejects_missing_system_field(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    f = sub / "systems" / "tiny_cpu.json"
    desc = json.loads(f.read_text())
    del desc["host_memory_capacity"]
    f.write_text(json.dumps(desc))
    errors, _ = check_package(root, "TestOrg")
    assert any("required system field 'host_memory_capacity' is missing" in e for e in errors)


def test_check_rejects_untruncated_log(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    rel = Path("open/TestOrg/results/tiny_cpu") / BENCH / "Offline/accuracy/mlperf_log_accuracy.json"
    shutil.copy2(full_logs_dir(package) / rel, root / rel)
    errors, _ = check_package(root, "TestOrg")
    assert any("not truncated" in e for e in errors)


def test_check_rejects_wrong_folder_names(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    sub.rename(sub.parent / "OtherOrg")
    errors, _ = check_package(root, "OtherOrg")
    assert any("submitter 'TestOrg' differs from folder 'OtherOrg'" in e for e in errors)
    bench = root / "open" / "OtherOrg" / "results" / "tiny_cpu" / BENCH
    (bench / "Offline").rename(bench / "offline")
    errors, _ = check_package(root, "OtherOrg")
    assert any("unknown scenario folder 'offline'" in e for e in errors)


def _edit(run_dir: Path, name: str, **changes) -> None:
    f = run_dir / name
    f.write_text(json.dumps({**json.loads(f.read_text()), **changes}))


@pytest.mark.parametrize(
    ("mode", "name", "changes", "message"),
    [
        (
            "performance",
            "results.json",
            {"result_valid": False, "validity": "INVALID"},
            "result is INVALID",
        ),
        ("accuracy", "run_config.json", {"git_sha": "f" * 40}, "git sha mismatch"),
        ("accuracy", "run_config.json", {"model_kind": "random"}, "accuracy run on random weights"),
        ("performance", "results.json", {"nonfinite_samples": 7}, "7 samples returned NaN or Inf"),
        ("accuracy", "results.json", {"result_valid": False}, "the accuracy run is INVALID"),
        ("accuracy", "results.json", {"interrupted": True, "signal": "SIGINT"}, "interrupted (SIGINT)"),
    ],
)
def test_stage_refuses(log_dir, tmp_path, mode, name, changes, message):
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    _edit(d / "adapter-squad" / "xnli" / "Offline" / mode, name, **changes)
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0 and any(message in p for p in problems), problems
    assert not (tmp_path / "sub" / "open").exists()


def test_stage_refuses_symlinks_naming_them(log_dir, tmp_path):
    """Issue #14, failure 7: a log file replaced by a symlink to a file elsewhere used to be packed
    with that file's content. Staging copies regular files only and names the link."""
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    secret = tmp_path / "secret.txt"
    secret.write_text("not a LoadGen log\n")
    link = d / "adapter-squad" / "xnli" / "Offline" / "performance" / "mlperf_log_summary.txt"
    link.unlink()
    link.symlink_to(secret)
    audit_link = d / "adapter-squad" / "xnli" / "Offline" / "TEST01" / "verify_accuracy.txt"
    audit_link.rename(tmp_path / "verify_accuracy.txt")
    audit_link.symlink_to(tmp_path / "verify_accuracy.txt")
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0 and not (tmp_path / "sub" / "open").exists()
    assert any(f"{link} is a symlink (to {secret})" in p for p in problems), problems
    assert any(f"{audit_link} is a symlink" in p for p in problems), problems
    # a package that got a symlink after staging fails our check (and so pack)
    count, problems = stage([log_dir], "TestOrg", "tiny_cpu", tmp_path / "ok", allow_test_runs=True)
    assert count == 1, problems
    staged = next((tmp_path / "ok").rglob("mlperf_log_summary.txt"))
    staged.unlink()
    staged.symlink_to(secret)
    errors, _ = check_package(tmp_path / "ok", "TestOrg")
    assert any(f"{staged}: a symlink in the package" in e for e in errors), errors


def test_stage_refuses_runs_with_loadgen_errors(log_dir, tmp_path):
    """An error record in LoadGen's detail log (results.json only counts them) blocks staging."""
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    run_dir = d / "adapter-squad" / "xnli" / "Offline" / "performance"
    record = {"key": "error", "value": "boom", "time_ms": 1.0, "namespace": "mlperf::logging"}
    with open(run_dir / "mlperf_log_detail.txt", "a") as f:
        f.write(":::MLLOG " + json.dumps(record) + "\n")
    _edit(run_dir, "results.json", loadgen_errors=1)
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0 and any("LoadGen reported 1 error(s), first: boom" in p for p in problems), (
        problems
    )


def test_stage_refuses_user_conf_mismatch(log_dir, tmp_path):
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    with open(d / "adapter-squad" / "xnli" / "Offline" / "accuracy" / "user.conf", "a") as f:
        f.write("*.Offline.target_qps = 1\n")
    _, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert any("user.conf mismatch" in p for p in problems)


def test_stage_refuses_dev_runs_without_testing_option(log_dir, tmp_path):
    count, problems = stage([log_dir], "TestOrg", "tiny_cpu", tmp_path / "sub")
    assert count == 0
    assert any("development run (submission_grade false" in p for p in problems)
    assert any("dirty git tree" in p for p in problems)


@pytest.mark.parametrize("action", ["truncate", "check", "pack"])
def test_steps_before_stage_give_one_line_errors(tmp_path, action, capsys):
    import argparse

    from harness.submission.cli import configure_parser, main

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    rc = main(parser.parse_args([action, "--submitter", "Org", "--root", str(tmp_path / "none")]))
    out = capsys.readouterr()
    assert rc in (1, 3) and "Traceback" not in out.err + out.out  # rejected, or bad input
    assert "Org" in out.err + out.out  # names the missing package
