"""The accuracy scripts under hostile input: deep nesting, an --output that is a directory, /dev/zero,
a FIFO, an oversized file, and the memory a large log takes. Each case is run as the user runs it
(`python accuracy_<task>.py ...` in a subprocess) and must end with ONE `error:` line and exit 3,
printing no score; timeouts below are guards against a hang, never measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.exit_codes import BAD_INPUT, SUT_FAILURE
from common.paths import REPO
from tasks.scoring import LogError, main
from tasks.scoring.log import MAX_LOG_BYTES, read_accuracy_log

ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
GUARD_S = 300  # a hang fails the test after this long; a working script answers at once


def script(task: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, f"accuracy_{task}.py", *args]
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=GUARD_S)


def assert_one_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 3, nothing on stdout, exactly one stderr line starting `error:` and holding each needle."""
    assert proc.returncode == BAD_INPUT, proc.stderr[-2000:]
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def pawsx_log(path: Path, n: int = 4) -> Path:
    """A well-formed PAWS-X log of n entries in LoadGen's own line layout: logits (0, 1) for the
    first half (label 1), (1, 0) for the rest. PAWS-X's first rows are German with gold label 1, so
    4 entries score 50.0 (2 right of 4)."""
    logits = [np.float32([0, 1]) if k < n // 2 else np.float32([1, 0]) for k in range(n)]
    lines = [
        f'{{ "seq_id" : {k}, "qsl_idx" : {k}, "data" : "{x.tobytes().hex().upper()}" }}'
        for k, x in enumerate(logits)
    ]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    return path


# --- nesting ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[" * 100_000, "entry 0 is [[[["),  # was: RecursionError traceback, exit 1 (= INVALID)
        (
            '[{"seq_id": 0, "qsl_idx": ' + "[" * 100_000 + "0" + "]" * 100_000 + ', "data": "00"}]',
            "entry 0 at byte 1 holds a nested list or object",
        ),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": {"x": "00"}}]', "holds a nested list or object"),
        ("{" * 100_000, "found a JSON object"),
    ],
)
def test_deep_nesting_is_one_error_line(tmp_path, content, needle):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(content)
    assert_one_error(script("xnli", str(log)), str(log), needle)


# --- the output file --------------------------------------------------------------------------------
def test_output_naming_a_directory_prints_no_score_and_changes_nothing(tmp_path):
    log = pawsx_log(tmp_path / "log.json")
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("earlier")
    line = assert_one_error(
        script("pawsx", str(log), "--output", str(out)), str(out), "names a directory"
    )
    assert "give a file name" in line
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]
    assert (out / "kept.txt").read_text() == "earlier"
    # the same log with a file name scores: 2 of the 4 German rows right
    ok = script("pawsx", str(log), "--output", str(out / "m.json"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1]) == {"accuracy": 50.0}
    metrics = json.loads((out / "m.json").read_text())
    assert metrics["per_language"] == {"de": 50.0} and metrics["count"]["de"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt", "m.json"]  # no temporary left


def test_output_under_a_file_is_refused_before_scoring(tmp_path):
    log = pawsx_log(tmp_path / "log.json")
    (tmp_path / "plain").write_text("x")
    target = tmp_path / "plain" / "m.json"
    assert_one_error(
        script("pawsx", str(log), "--output", str(target)), f"{tmp_path / 'plain'} is not a directory"
    )
    assert (tmp_path / "plain").read_text() == "x"


# --- what is not a regular file ---------------------------------------------------------------------
def test_dev_zero_is_refused_without_reading():
    assert_one_error(script("xnli", "/dev/zero"), "/dev/zero: not a regular file (a character device)")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "mlperf_log_accuracy.json"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would block forever
    assert_one_error(script("tatoeba", str(fifo)), f"{fifo}: not a regular file (a named pipe)")


def test_a_directory_is_refused(tmp_path):
    assert_one_error(script("bucc", str(tmp_path)), f"{tmp_path}: not a regular file (a directory)")


def test_an_oversized_file_is_refused_without_reading(tmp_path):
    big = tmp_path / "mlperf_log_accuracy.json"
    with open(big, "wb") as f:  # sparse: no disk is used, and reading it would take minutes
        f.truncate(MAX_LOG_BYTES + 1)
    assert_one_error(
        script("tydiqa", str(big)), f"{MAX_LOG_BYTES + 1:,} bytes, more than the {MAX_LOG_BYTES:,}"
    )
    small = pawsx_log(tmp_path / "small.json")
    size = small.stat().st_size
    assert len(read_accuracy_log(small, max_bytes=size)) == 4  # the bound is inclusive
    with pytest.raises(LogError, match=f"{size:,} bytes, more than the {size - 1:,}"):
        read_accuracy_log(small, max_bytes=size - 1)


# --- the streaming reader keeps the old results and messages ----------------------------------------
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[]  x", "not JSON (extra data after the list at byte 4)"),
        (
            '[{"seq_id": 0, "qsl_idx": 0, "data": "0000803F"} {"seq_id": 1}]',
            "expected ',' or ']' after an entry",
        ),
        (
            '[{"seq_id": 0, "qsl_idx": 0, "data": "0000803F"},',
            "the JSON ends early (truncated at byte 49;",
        ),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "0000', "the JSON ends early (truncated at byte 42;"),
        ("   \n  ", "the file is empty"),
        ('"just a string"', "found a JSON str"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "\\u00ff"}, 1]', "data is not hexadecimal"),
        ('[{"seq_id": 0, "qsl_idx": 0, "data": "0000803F"}, 7]', "entry 1 is 7)"),
    ],
)
def test_structure_errors_name_the_place(tmp_path, content, needle):
    log = tmp_path / "log.json"
    log.write_text(content)
    with pytest.raises(LogError, match=None) as e:
        read_accuracy_log(log)
    assert str(e.value).startswith(f"{log}: ") and needle in str(e.value)


def test_entries_spanning_read_chunks_decode_exactly(tmp_path, monkeypatch):
    """A chunk boundary inside every entry (chunks of 7 bytes) changes nothing: values in qsl order."""
    from tasks.scoring import log as log_module

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((50, 5)).astype(np.float32)
    order = rng.permutation(50)
    entries = [
        {"seq_id": k, "qsl_idx": int(q), "data": rows[q].tobytes().hex().upper()}
        for k, q in enumerate(order)
    ]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(entries, indent=2))
    monkeypatch.setattr(log_module, "CHUNK_BYTES", 7)
    log = read_accuracy_log(path)
    assert log.qsl_idx.tolist() == list(range(50))
    np.testing.assert_array_equal(log.dense(), rows)
    half = read_accuracy_log(write_f16(tmp_path / "h.json", rows[:3]), "float16")
    np.testing.assert_array_equal(half.dense(), rows[:3].astype(np.float16).astype(np.float32))


def write_f16(path: Path, rows: np.ndarray) -> Path:
    entries = [
        {"seq_id": k, "qsl_idx": k, "data": r.astype("<f2").tobytes().hex()} for k, r in enumerate(rows)
    ]
    path.write_text(json.dumps(entries))
    return path


def test_a_bug_exits_2_never_1(tmp_path, capsys, monkeypatch):
    """An unexpected exception is a bug: its traceback and exit 2 (1 would read as INVALID)."""
    from tasks.scoring import cli

    def broken(*a, **k):
        raise RuntimeError("injected scorer bug")

    monkeypatch.setattr(cli, "score_log", broken)
    assert main("pawsx", [str(pawsx_log(tmp_path / "log.json"))]) == SUT_FAILURE
    err = capsys.readouterr().err
    assert "RuntimeError: injected scorer bug" in err and "internal error (exit 2)" in err


def test_a_nested_run_config_beside_the_log_is_one_error(tmp_path):
    log = pawsx_log(tmp_path / "mlperf_log_accuracy.json")
    (tmp_path / "run_config.json").write_text("[" * 100_000)
    assert_one_error(script("pawsx", str(log)), f"{tmp_path / 'run_config.json'}: not a JSON object")


# --- memory -------------------------------------------------------------------------------------------
# The child's own peak (VmHWM: ru_maxrss would carry the parent's peak across exec), in bytes.
MEASURE = """
import sys
from tasks.scoring.log import read_accuracy_log
def peak():
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
before = peak()
log = read_accuracy_log(sys.argv[1])
print(len(log), log.values.nbytes, peak() - before)
"""


def write_embedding_log(path: Path, entries: int, width: int) -> np.ndarray:
    """A retrieval-style log (one `width`-float embedding per entry, shuffled qsl order)."""
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((entries, width)).astype(np.float32)
    with open(path, "w") as f:
        f.write("[\n")
        for k, q in enumerate(rng.permutation(entries)):
            sep = ",\n" if k else ""
            f.write(
                f'{sep}{{ "seq_id" : {k}, "qsl_idx" : {q}, '
                f'"data" : "{rows[q].tobytes().hex().upper()}" }}'
            )
        f.write("\n]\n")
    return rows


def test_peak_memory_is_about_the_log_size(tmp_path):
    """Reading a 48 MB log raises the process's peak resident memory by less than 1.25x the file size
    (it was 7x: the whole text, a Python object per entry, then copies). Memory use does not depend
    on machine load; docs/real_weights.md has the 200 MB measurement."""
    path = tmp_path / "mlperf_log_accuracy.json"
    write_embedding_log(path, 8000, 768)
    size = path.stat().st_size
    assert 48e6 < size < 50e6
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr
    entries, nbytes, grown = (int(x) for x in proc.stdout.split())
    assert (entries, nbytes) == (8000, 8000 * 768 * 4)
    assert grown < 1.25 * size, f"peak RSS grew by {grown / size:.2f}x the log's size"
