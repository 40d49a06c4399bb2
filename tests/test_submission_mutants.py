"""Hand-computed cases for submission truncation, staging and the TEST01 checks (mutation testing).

Fast unit tests (no LoadGen run): the expected bytes and verdicts follow MLCommons' rules as
docs/submission.md states them, worked out by hand beside each case.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from harness.submission import compliance
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
