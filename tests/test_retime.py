"""`run --retime` (harness/retime.py): the issued samples timed again, exactly those, with the run's
batching, on a fresh thread."""

import threading

import pytest

from harness import retime
from harness.config import RunConfig


def test_retime_times_exactly_the_issued_samples(monkeypatch):
    """The query LoadGen issued: all its samples, with the run's batching limits and pad_to."""
    seen = {}

    def fake_loop(backend, qsl, idx, limits, pad_to=None):
        seen.update(idx=idx, limits=limits, pad=pad_to)
        return 50.0

    monkeypatch.setattr(retime, "plain_loop_sps", fake_loop)
    monkeypatch.setattr(retime, "bare_single_p90_ms", lambda b, q, idx: seen.update(ss=idx) or 3.25)
    off = RunConfig(scenario="Offline", pad_to=128, max_batch=16, token_budget=512)
    assert retime.retime_issued(off, None, None, [[4, 9, 9, 1]]) == {
        "samples": 4,
        "plain_loop_samples_per_second": 50.0,
    }
    assert seen["idx"].tolist() == [4, 9, 9, 1] and seen["pad"] == 128
    assert (seen["limits"].max_batch, seen["limits"].token_budget) == (16, 512)
    ss = RunConfig(scenario="SingleStream")
    got = retime.retime_issued(ss, None, None, [[3], [7], [3]], [0.001] * 9 + [0.011])
    assert got == {
        "samples": 3,
        "bare_p90_ms": 3.25,
        "in_run_predict_p90_ms": 2.0,
    }  # p90 of 9x1, 1x11 ms
    assert seen["ss"].tolist() == [3, 7, 3]
    assert retime.retime_issued(RunConfig(scenario="Server"), None, None, [[1]]) == {}


def test_on_new_thread_returns_the_value_or_reraises():
    main = threading.current_thread().name
    assert retime.on_new_thread(lambda: threading.current_thread().name) == "retime" != main
    with pytest.raises(ZeroDivisionError):
        retime.on_new_thread(lambda: 1 / 0)


def test_probe_is_the_older_name_of_retime():
    import argparse

    from harness.config import add_run_arguments

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    for flag in ("--retime", "--probe"):
        assert RunConfig.from_args(parser.parse_args([flag])).retime is True
    assert RunConfig.from_args(parser.parse_args([])).retime is False
