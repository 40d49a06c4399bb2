"""Submission packages: stage / truncate / check / pack on short real LoadGen runs.

The runs come from tests/fake_submission_runner.py, a stand-in for `python -m harness run` with a
trivial SUT (fixed float32 responses) that writes the run-folder contract; it is slow or fast by
construction, never by the machine's speed (its docstring says how).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from common.paths import REPO
from harness.config import RunConfig
from harness.submission.check import check_package
from harness.submission.compliance import run_audit, write_test01
from harness.submission.layout import (
    NOT_FOR_SUBMISSION,
    VIEWABLE_BYTES,
    full_logs_dir,
    read_hash,
    submitter_dir,
)
from harness.submission.mlperf_conf import builtin_mlperf_conf
from harness.submission.pack import pack
from harness.submission.stage import stage
from harness.submission.truncate import truncate, truncate_dir

BENCH = "xlmr-tiny-adapter-squad-xnli"
RUNNER = REPO / "tests" / "fake_submission_runner.py"
SCEN = ("tiny", "pytorch", "adapter-squad", "xnli")  # run folder: LOG_DIR/<these>/<Scenario>/<mode>
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}


def write_fake_runner(folder: Path) -> tuple[str, ...]:
    """The fake runner's command (`folder` is kept for callers that used to get a copy there)."""
    return (sys.executable, str(RUNNER))


def head_sha() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()


def fake_run(log_dir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(RUNNER), "--output_dir", str(log_dir), "--git_sha", head_sha(), *args],
        check=True,
        cwd=log_dir.parent,
        env=ENV,
    )


def scenario_dir(log_dir: Path, scenario: str) -> Path:
    return log_dir.joinpath(*SCEN, scenario)


def audit(log_dir: Path, scenario: str, *flags: str) -> bool:
    """TEST01 for `scenario` through the compliance code path (audit run with audit.config staged,
    then verification); the audit run reports the performance run's timing (--perf_from)."""
    d = scenario_dir(log_dir, scenario)
    more = ["--git_sha", head_sha(), "--perf_from", str(d / "performance"), *flags]
    run = run_audit(RunConfig(model="adapter-squad", scenario=scenario), more, write_fake_runner(d))
    try:
        return write_test01(d / "accuracy", d / "performance", run, "float32")
    finally:
        shutil.rmtree(run.parent)


def edge_runs(d: Path) -> Path:
    for scenario in ("Offline", "SingleStream"):
        fake_run(d, "--scenario", scenario)
        fake_run(d, "--scenario", scenario, "--accuracy")
        assert audit(d, scenario)
    return d


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    """Edge runs (Offline, SingleStream: performance, accuracy, TEST01) and datacenter runs (Server
    with round v4.1's seeds: performance, accuracy)."""
    d = edge_runs(tmp_path_factory.mktemp("logs") / "D")
    fake_run(d, "--scenario", "Server", "--seeds", "v4.1")
    fake_run(d, "--scenario", "Server", "--seeds", "v4.1", "--accuracy")
    return d


@pytest.fixture(scope="session")
def package(log_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pkg") / "submission"
    count, problems = stage([log_dir], "TestOrg", "tiny_cpu", root, allow_test_runs=True)
    assert problems == [] and count == 3
    assert len(truncate(root, "TestOrg")) == 5  # 3 accuracy/ and 2 TEST01/accuracy/
    return root


def edge(root: Path) -> Path:
    return submitter_dir(root / "edge", "TestOrg")


def datacenter(root: Path) -> Path:
    return submitter_dir(root / "datacenter", "TestOrg")


def test_edge_and_datacenter_packages_hold_what_their_checker_validates(package):
    """SingleStream and Offline in the edge package (checker v6.1, system_type edge), Server in the
    datacenter package (round v4.1, system_type datacenter), each with its own system description."""
    results = {
        name: sorted(p.name for p in (sub / "results" / "tiny_cpu" / BENCH).iterdir())
        for name, sub in (("edge", edge(package)), ("datacenter", datacenter(package)))
    }
    assert results == {"edge": ["Offline", "SingleStream"], "datacenter": ["Server"]}
    for sub, kind in ((edge(package), "edge"), (datacenter(package), "datacenter")):
        assert json.loads((sub / "systems" / "tiny_cpu.json").read_text())["system_type"] == kind
        assert json.loads((sub / "model_mapping.json").read_text()) == {BENCH: "bert-99"}


def test_package_accepted_and_stamped(package):
    errors, notes = check_package(package, "TestOrg")
    # the fake Server run's bound is 100 s (VALID on any machine): the one thing our check rejects
    assert errors == [
        f"{datacenter(package)}/results/tiny_cpu/{BENCH}/Server/performance/run_1/"
        "mlperf_log_detail.txt: "
        "Server target latency 100000000000 ns exceeds bert-99's bound 130000000 ns"
    ]
    assert sum("performance_sample_count 32 < 10833" in n for n in notes) == 3
    assert sum("min_duration 300 ms < 600000 ms" in n for n in notes) == 3
    sub = edge(package)
    scen = sub / "results" / "tiny_cpu" / BENCH / "Offline"
    assert (sub / NOT_FOR_SUBMISSION).is_file() and (package / NOT_FOR_SUBMISSION).is_file()
    assert "NOT FOR SUBMISSION" in (scen / "README.md").read_text()
    assert "make compliance TEST=TEST01" in (scen / "README.md").read_text()
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
    packed = pack(package, "TestOrg")
    assert [p.name for p in packed] == [
        "TestOrg-open-edge-NOT_FOR_SUBMISSION.tar.gz",
        "TestOrg-open-datacenter-NOT_FOR_SUBMISSION.tar.gz",
    ]
    for p in packed:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        assert p.with_name(p.name + ".sha256").read_text() == f"{digest}  {p.name}\n"


def test_server_bound_is_checked_from_the_detail_log(package, tmp_path):
    """With the Server run's target latency at bert-99's 130 ms, our check accepts the datacenter
    package; at 130 ms + 1 ns it does not."""
    root, _ = _broken_copy(package, tmp_path)
    detail = datacenter(root) / "results" / "tiny_cpu" / BENCH / "Server" / "performance" / "run_1"
    detail = detail / "mlperf_log_detail.txt"
    text = detail.read_text()
    for latency, expected in (
        (130_000_000, []),
        (130_000_001, ["exceeds bert-99's bound 130000000 ns"]),
    ):
        detail.write_text(text.replace('"value": 100000000000,', f'"value": {latency},'))
        errors, _ = check_package(root, "TestOrg")
        assert [e.split(": ", 1)[1].split("ns ", 1)[-1] for e in errors] == expected, errors


def test_src_ships_code_not_data(package):
    """The package redistributes no evaluation data (XNLI is CC BY-NC, BUCC research-only): src/data
    holds only README.md, and src/DATA.md says how to obtain the sets."""
    src = edge(package) / "src"
    assert sorted(p.relative_to(src).as_posix() for p in (src / "data").rglob("*")) == ["data/README.md"]
    note = (src / "DATA.md").read_text()
    assert "CC BY-NC" in note and "BUCC" in note and "GIT_SHA" in note
    assert (src / "tasks" / "xnli.py").is_file()  # the code is all there


def test_mlperf_conf_is_the_one_loadgen_applied(package):
    """Every scenario folder holds mlperf.conf, as the sample packages do: LoadGen's built-in copy
    for the edge package; with round v4.1's three seeds for the datacenter package, whose runs used
    them (the detail log says so)."""
    builtin = builtin_mlperf_conf()
    assert "*.*.qsl_rng_seed = 2085463073848966840" in builtin.splitlines()
    offline = edge(package) / "results" / "tiny_cpu" / BENCH / "Offline"
    assert (offline / "mlperf.conf").read_text() == builtin
    server = datacenter(package) / "results" / "tiny_cpu" / BENCH / "Server"
    lines = (server / "mlperf.conf").read_text().splitlines()
    assert "*.*.qsl_rng_seed = 3066443479025735752" in lines
    assert "*.*.schedule_rng_seed = 14962580496156340209" in lines
    assert len(lines) == len(builtin.splitlines()) + 1  # the note line
    detail = (server / "performance" / "run_1" / "mlperf_log_detail.txt").read_text()
    assert '"key": "effective_qsl_rng_seed", "value": 3066443479025735752' in detail


def test_measurements_name_the_starting_weights(package, log_dir, tmp_path):
    meas = json.loads(
        (edge(package) / "results" / "tiny_cpu" / BENCH / "Offline" / "measurements.json").read_text()
    )
    assert meas["served_weights_sha256"] == "c" * 64
    assert (
        meas["weight_data_types"] == "fp32"
        and "pretrained from seeded random" in (meas["starting_weights_filename"])
    )
    from harness.submission.runs import Run
    from harness.submission.stage import measurements
    from models.e5 import WEIGHTS

    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    run_dir = scenario_dir(d, "Offline") / "performance"
    _edit(run_dir, "run_config.json", encoder="e5-small")
    e5 = measurements(Run.load(run_dir), {})
    assert WEIGHTS.sha256 in e5["starting_weights_filename"]
    assert WEIGHTS.sha256 == "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
    assert (
        "4-bit (Q4_0)" in e5["weight_transformations"]
        and "dequantised to fp32" in (e5["weight_transformations"])
    )


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
    return root, edge(root)


def test_check_rejects_missing_system_field(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    f = sub / "systems" / "tiny_cpu.json"
    desc = json.loads(f.read_text())
    del desc["host_memory_capacity"]
    desc["system_type"] = "datacenter"
    f.write_text(json.dumps(desc))
    errors, _ = check_package(root, "TestOrg")
    assert any("required system field 'host_memory_capacity' is missing" in e for e in errors)
    assert any("system_type 'datacenter' is not the edge package's 'edge'" in e for e in errors)


def test_check_rejects_untruncated_log(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    rel = (
        sub.relative_to(root) / "results/tiny_cpu" / BENCH / "Offline/accuracy/mlperf_log_accuracy.json"
    )
    shutil.copy2(full_logs_dir(package) / rel, root / rel)
    errors, _ = check_package(root, "TestOrg")
    assert any("not truncated" in e for e in errors)


def test_accuracy_txt_carries_the_line_the_checkers_read_and_check_wants_it(package, tmp_path):
    """An XNLI accuracy run scores accuracy; staging appends bert-99's checker line with it as exact
    match and F1 (the legacy checker rejects an accuracy run without one); check refuses a package
    whose line is gone, and only notes a task staging could write none for."""
    root, sub = _broken_copy(package, tmp_path)
    txt = sub / "results/tiny_cpu" / BENCH / "Offline/accuracy/accuracy.txt"
    lines = txt.read_text().splitlines()
    scored = json.loads(lines[-5])["accuracy"]  # the XNLI scorer's final line
    line = f'{{"exact_match": {scored:.4f}, "f1": {scored:.4f}}}'
    note = "# for the MLPerf checkers, in bert-99's format (exact match, then F1): accuracy, "
    note += "which equals the exact match and the micro-averaged F1 of one answer per sample"
    assert lines[-4:] == [note, line, "", lines[-1]] and lines[-1].startswith("hash=")  # truncate's
    before = check_package(root, "TestOrg")[0]  # a test package's own (its Server bound)
    assert not any("accuracy.txt" in e for e in before)
    txt.write_text("\n".join(ln for ln in lines if ln != line) + "\n")
    errors, _ = check_package(root, "TestOrg")
    assert [e for e in errors if e not in before] == [
        f'{txt}: no line the official checkers read for bert-99 ({{"exact_match": ..., "f1": ...}}): '
        "stage the runs again"
    ]
    txt.write_text("# no line for the MLPerf checkers: BUCC has no exact match\n" + lines[-1] + "\n")
    errors, notes = check_package(root, "TestOrg")
    assert (
        errors == before
        and (
            f"{txt}: BUCC has no exact match: the legacy checker (submission_checker_old.py) rejects "
            "this accuracy run; the current one accepts it"
        )
        in notes
    )


def test_check_rejects_wrong_folder_names_and_misfiled_scenarios(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    shutil.rmtree(datacenter(root).parent)
    sub.rename(sub.parent / "OtherOrg")
    errors, _ = check_package(root, "OtherOrg")
    assert any("submitter 'TestOrg' differs from folder 'OtherOrg'" in e for e in errors)
    bench = root / "edge" / "open" / "OtherOrg" / "results" / "tiny_cpu" / BENCH
    (bench / "Offline").rename(bench / "Server")  # no Server rules for bert-99 in the edge round
    errors, _ = check_package(root, "OtherOrg")
    assert any("scenario folder 'Server' does not belong in the edge package" in e for e in errors)


def test_check_rejects_data_in_src(package, tmp_path):
    root, sub = _broken_copy(package, tmp_path)
    (sub / "src" / "data" / "xnli").mkdir()
    (sub / "src" / "data" / "xnli" / "dev-en.tsv.gz").write_bytes(b"\x1f\x8b")
    errors, _ = check_package(root, "TestOrg")
    assert any("must not redistribute the evaluation data" in e for e in errors)


def _edit(run_dir: Path, name: str, **changes) -> None:
    f = run_dir / name
    f.write_text(json.dumps({**json.loads(f.read_text()), **changes}))


def _stage_with(log_dir: Path, tmp_path: Path, mode: str, name: str, **changes) -> list[str]:
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    _edit(scenario_dir(d, "Offline") / mode, name, **changes)
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0 and not (tmp_path / "sub" / "edge").exists()
    return problems


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
        # a Ray run that lost an actor: VALID by LoadGen, but measured with an actor missing (exit 2)
        (
            "performance",
            "results.json",
            {"sut_failure": "actor 1 lost", "exit_status": 2},
            "SUT failure (actor 1 lost)",
        ),
        ("performance", "results.json", {"exit_status": 2}, "exited with status 2"),
        ("accuracy", "results.json", {"exit_status": 130}, "exited with status 130"),
    ],
)
def test_stage_refuses(log_dir, tmp_path, mode, name, changes, message):
    problems = _stage_with(log_dir, tmp_path, mode, name, **changes)
    assert any(message in p for p in problems), problems


def test_stage_names_a_results_json_it_cannot_read(log_dir, tmp_path):
    """results.json is loaded by its one loader (harness.results.Results.load): a key it does not
    know is one error naming the file, before anything is staged."""
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    run = scenario_dir(d, "Offline") / "performance"
    _edit(run, "results.json", qps=1.0)
    with pytest.raises(ValueError, match=re.escape(f"{run / 'results.json'}: unknown key 'qps'")):
        stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"encoder": "e5-small"}, None),  # another benchmark: the accuracy run has no partner
        ({"backend": "onnxruntime"}, "backend 'pytorch' vs 'onnxruntime'"),
        ({"backend_options": {"dtype": "int8"}}, "dtype 'fp32' vs 'int8'"),
        ({"model_kind": "real"}, "model kind 'tiny' vs 'real'"),
        ({"checkpoint_sha256": "d" * 64}, f"checkpoint sha256 {'c' * 64!r} vs {'d' * 64!r}"),
        ({"task_options": {"first_row": 1245}}, "task options {} vs {'first_row': 1245}"),
        ({"count": 64}, "count None vs 64"),
    ],
)
def test_stage_pairs_only_runs_of_one_measurement(log_dir, tmp_path, changes, field):
    """A performance run is staged with an accuracy run only when encoder, backend, dtype, model
    kind, weights, task options, languages and count agree; the refusal names the field."""
    problems = _stage_with(log_dir, tmp_path, "accuracy", "run_config.json", **changes)
    if field is None:
        assert any("no accuracy run" in p for p in problems), problems
    else:
        assert f"{BENCH}/Offline: performance and accuracy runs differ in {field}" in problems, problems


def test_stage_pairs_only_runs_of_the_same_languages(log_dir, tmp_path):
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    acc = scenario_dir(d, "Offline") / "accuracy"
    config = json.loads((acc / "run_config.json").read_text())
    _edit(acc, "run_config.json", config={**config["config"], "languages": "de,fr"})
    _, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert (
        f"{BENCH}/Offline: performance and accuracy runs differ in languages None vs 'de,fr'" in problems
    )


def test_stage_refuses_server_without_the_v41_seeds(tmp_path):
    """A Server run with LoadGen's current seeds has no checker that enforces its bound: refused."""
    d = tmp_path / "D"
    fake_run(d, "--scenario", "Server")
    fake_run(d, "--scenario", "Server", "--accuracy")
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0
    assert sum("only by round v4.1's checker" in p and "--seeds v4.1" in p for p in problems) == 2


def test_stage_refuses_two_backends_for_one_benchmark(log_dir, tmp_path):
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    fake_run(d, "--scenario", "Offline", "--backend", "onnxruntime")
    _, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert any("runs of 2 backend variants (onnxruntime, pytorch" in p for p in problems), problems


def test_stage_refuses_symlinks_naming_them(log_dir, tmp_path):
    """A log file replaced by a symlink to a file elsewhere used to be packed with that file's
    content. Staging copies regular files only and names the link."""
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    secret = tmp_path / "secret.txt"
    secret.write_text("not a LoadGen log\n")
    link = scenario_dir(d, "Offline") / "performance" / "mlperf_log_summary.txt"
    link.unlink()
    link.symlink_to(secret)
    audit_link = scenario_dir(d, "Offline") / "TEST01" / "verify_accuracy.txt"
    audit_link.rename(tmp_path / "verify_accuracy.txt")
    audit_link.symlink_to(tmp_path / "verify_accuracy.txt")
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0 and not (tmp_path / "sub" / "edge").exists()
    assert any(f"{link} is a symlink (to {secret})" in p for p in problems), problems
    assert any(f"{audit_link} is a symlink" in p for p in problems), problems
    # a package that got a symlink after staging fails our check (and so pack)
    count, problems = stage([log_dir], "TestOrg", "tiny_cpu", tmp_path / "ok", allow_test_runs=True)
    assert count == 3, problems
    staged = next(edge(tmp_path / "ok").rglob("mlperf_log_summary.txt"))
    staged.unlink()
    staged.symlink_to(secret)
    errors, _ = check_package(tmp_path / "ok", "TestOrg")
    assert any(f"{staged}: a symlink in the package" in e for e in errors), errors


def test_stage_refuses_runs_with_loadgen_errors(log_dir, tmp_path):
    """An error record in LoadGen's detail log (results.json only counts them) blocks staging."""
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    run_dir = scenario_dir(d, "Offline") / "performance"
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
    with open(scenario_dir(d, "Offline") / "accuracy" / "user.conf", "a") as f:
        f.write("*.Offline.target_qps = 1\n")
    _, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert any("user.conf mismatch" in p for p in problems)


def test_stage_refuses_dev_runs_without_testing_option(log_dir, tmp_path):
    count, problems = stage([log_dir], "TestOrg", "tiny_cpu", tmp_path / "sub")
    assert count == 0
    assert any("development run (submission_grade false" in p for p in problems)
    assert any("dirty git tree" in p for p in problems)


def _parse(argv: list[str]) -> argparse.Namespace:
    from harness.submission.cli import configure_parser

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("action", ["truncate", "check", "pack"])
def test_steps_before_stage_give_one_line_errors(tmp_path, action, capsys):
    from harness.submission.cli import main

    rc = main(_parse([action, "--submitter", "Org", "--root", str(tmp_path / "none")]))
    out = capsys.readouterr()
    assert rc in (1, 3) and "Traceback" not in out.err + out.out  # rejected, or bad input
    assert "Org" in out.err + out.out  # names the missing package


def test_every_step_takes_the_whole_chains_flags():
    """`make submission RUN_ARGS=...` gives the same flags to stage, truncate, check and pack."""
    flags = [
        "--submitter",
        "O",
        "--system",
        "S",
        "--log_dir",
        "L",
        "--allow_test_runs",
        "--map",
        "b=bert-99",
        "--checker",
        "C",
        "--checker_v4_1",
        "C41",
    ]
    for action in ("stage", "truncate", "check", "pack"):
        args = _parse([action, *flags])
        assert (args.action, args.allow_test_runs, args.system, args.checker_v4_1) == (
            action,
            True,
            "S",
            Path("C41"),
        )


def _chain(python: str, *argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "harness", "submission", *argv],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def edge_log_dir(tmp_path_factory) -> Path:
    return edge_runs(tmp_path_factory.mktemp("edge") / "D")


def test_submission_commands_run_to_a_package(edge_log_dir, tmp_path):
    """`python -m harness submission stage|truncate|check|pack` on short runs, in order, each with
    the same flags, through to a tarball holding the package."""
    root = tmp_path / "submission"
    flags = [
        "--submitter",
        "TestOrg",
        "--system",
        "tiny_cpu",
        "--log_dir",
        str(edge_log_dir),
        "--root",
        str(root),
        "--allow_test_runs",
    ]
    outs = {}
    for action in ("stage", "truncate", "check", "pack"):
        proc = _chain(sys.executable, action, *flags)
        assert proc.returncode == 0, (action, proc.stdout[-3000:], proc.stderr[-3000:])
        outs[action] = proc.stdout
    assert "stage: 2 benchmark/scenario result(s)" in outs["stage"]
    assert "truncate: 4 accuracy log(s) truncated" in outs["truncate"]
    assert "check: 0 error(s) (accepted by our rules)" in outs["check"]
    tar_path = tmp_path / "TestOrg-open-edge-NOT_FOR_SUBMISSION.tar.gz"
    assert f"pack: {tar_path}" in outs["pack"]
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
    scen = f"open/TestOrg/results/tiny_cpu/{BENCH}"
    for rel in (
        "Offline/mlperf.conf",
        "SingleStream/TEST01/accuracy/accuracy.txt",
        "Offline/performance/run_1/mlperf_log_detail.txt",
        "Offline/measurements.json",
    ):
        assert f"{scen}/{rel}" in names
    assert "open/TestOrg/src/DATA.md" in names and "open/TestOrg/systems/tiny_cpu.json" in names
    assert not any(n.startswith("open/TestOrg/src/data/xnli") for n in names)


def _fake_venv(tmp_path: Path) -> Path:
    """A VENV for the Makefile whose python is this one, marked installed."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"  # a wrapper (a symlink would lose this python's packages)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (venv / ".installed").touch()
    return venv


def _make(tmp_path: Path, *variables: str) -> subprocess.CompletedProcess:
    venv = _fake_venv(tmp_path)
    return subprocess.run(
        ["make", "-j2", "submission", f"VENV={venv}", *variables],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_submission_runs_the_chain_in_order(edge_log_dir, tmp_path):
    root = tmp_path / "submission"
    proc = _make(
        tmp_path,
        "SUBMITTER=TestOrg",
        "SYSTEM=tiny_cpu",
        f"LOG_DIR={edge_log_dir}",
        f"RUN_ARGS=--allow_test_runs --root {root}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    order = [line.split()[4] for line in proc.stdout.splitlines() if " -m harness submission " in line]
    assert order == ["stage", "truncate", "check", "pack"]
    assert (tmp_path / "TestOrg-open-edge-NOT_FOR_SUBMISSION.tar.gz").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_submission_stops_at_the_first_failing_step(edge_log_dir, tmp_path):
    """Stage refuses (development runs without --allow_test_runs): with -j2, nothing after it runs,
    and an earlier package's tarball is not rewritten."""
    root = tmp_path / "submission"
    stale = tmp_path / "TestOrg-open-edge.tar.gz"
    stale.write_bytes(b"earlier")
    proc = _make(
        tmp_path,
        "SUBMITTER=TestOrg",
        "SYSTEM=tiny_cpu",
        f"LOG_DIR={edge_log_dir}",
        f"RUN_ARGS=--root {root}",
    )
    assert proc.returncode != 0
    assert "nothing staged" in proc.stdout
    assert [w for w in ("truncate", "check", "pack") if f"harness submission {w} " in proc.stdout] == []
    assert stale.read_bytes() == b"earlier" and not list(tmp_path.glob("*NOT_FOR_SUBMISSION*"))


def test_check_applies_the_mapped_models_fallback_bound(package, tmp_path):
    """A TEST01 that passed by the fallback: scores 50.0 and 50.3 differ by 0.6%, within bert-99's
    1% but not bert-99.9's 0.1%."""
    root, sub = _broken_copy(package, tmp_path)
    t01 = sub / "results" / "tiny_cpu" / BENCH / "Offline" / "TEST01"
    verify = t01 / "verify_accuracy.txt"
    lines = verify.read_text().splitlines()
    verify.write_text(
        "\n".join([*lines[:-1], "TEST FAIL", "fallback_metric = accuracy", "FALLBACK PASS"])
    )
    for name, value in (("baseline_accuracy.txt", 50.0), ("compliance_accuracy.txt", 50.3)):
        (t01 / "accuracy" / name).write_text(f"table\n{json.dumps({'accuracy': value})}\n")
    assert [e for e in check_package(root, "TestOrg")[0] if "TEST01" in e] == []
    (sub / "model_mapping.json").write_text(json.dumps({BENCH: "bert-99.9"}))
    errors = [e for e in check_package(root, "TestOrg")[0] if "TEST01" in e]
    assert errors == [
        f"{t01}: TEST01 accuracy: deterministic check failed and the fallback's accuracy differs by "
        "0.5964% (baseline 50.0, compliance 50.3; bound 0.1%)"
    ]


def test_stage_refuses_a_test01_without_its_accuracy_txt(log_dir, tmp_path):
    d = tmp_path / "D"
    shutil.copytree(log_dir, d)
    (scenario_dir(d, "Offline") / "TEST01" / "accuracy" / "accuracy.txt").unlink()
    count, problems = stage([d], "TestOrg", "tiny_cpu", tmp_path / "sub", allow_test_runs=True)
    assert count == 0 and any("accuracy/accuracy.txt missing" in p for p in problems), problems
