"""Hand-computed cases for submission truncation, staging and the TEST01 checks (mutation testing).

Fast unit tests (no LoadGen run): the expected bytes and verdicts follow MLCommons' rules as
docs/submission.md states them, worked out by hand beside each case.
"""

from __future__ import annotations

from pathlib import Path

from harness.submission.truncate import truncate_file


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
