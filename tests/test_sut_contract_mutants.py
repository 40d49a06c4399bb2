"""The SUT contract of sut/base.py without LoadGen: every completion is recorded in Python (ids and
the exact response bytes), so a bug that completes a sample twice fails an assertion here instead of
aborting the interpreter inside LoadGen. Threads are waited on with events and generous guards only;
the drain bound runs on a fake clock.
"""

from __future__ import annotations

import ctypes
import threading
import time

import mlperf_loadgen as lg
import numpy as np
import pytest

import sut.base as base
from models.base import Backend
from sut.base import SUT, SUTOptions, Work, pack_qa, pack_rows, respond
from tasks.qsl import Batch

GUARD_S = 60.0  # a bound for waits on events: never reached unless the code under test is broken


class Completions:
    """Stands in for lg.QuerySamplesComplete: (id, response bytes) per sample, one list per call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, bytes]]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, responses) -> None:
        got = [(r.id, ctypes.string_at(r.data, r.size) if r.size else b"") for r in responses]
        with self.changed:
            self.calls.append(got)
            self.changed.notify_all()

    @property
    def ids(self) -> list[int]:
        with self.lock:
            return sorted(i for call in self.calls for i, _ in call)

    def by_id(self) -> dict[int, bytes]:
        with self.lock:
            return {i: data for call in self.calls for i, data in call}

    def wait_for(self, n: int) -> None:
        """Block until n samples were completed (fails the test past GUARD_S)."""
        with self.changed:
            ok = self.changed.wait_for(lambda: sum(len(c) for c in self.calls) >= n, GUARD_S)
        assert ok, f"only {self.ids} completed"


@pytest.fixture
def completions(monkeypatch) -> Completions:
    rec = Completions()
    monkeypatch.setattr(lg, "QuerySamplesComplete", rec)
    return rec


class FakeQSL:
    """Sample i is the 2-token row [i, 10 i] (all samples loaded)."""

    def batch(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        ids = np.stack([idx, 10 * idx], axis=1)
        return Batch(ids, np.ones_like(ids), np.full(len(idx), 2))


class RowBackend(Backend):
    """Classification-shaped output [B, 3] = (first id, second id, tokens); `gate` makes predict wait."""

    name = "rows"

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.gate, self.fail = gate, fail
        self.entered = threading.Event()
        self.calls = 0

    def predict(self, input_ids, attention_mask):
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(GUARD_S)
        if self.fail:
            raise RuntimeError("backend exploded")
        return np.stack([input_ids[:, 0], input_ids[:, 1], attention_mask.sum(1)], axis=1).astype(
            np.float32
        )


class FifoSUT(SUT):
    """Runs each queued item as one batch; signals every time a worker asks for more work."""

    scenario = "Fifo"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked = threading.Semaphore(0)
        self.asked_by: set[int] = set()

    def _next_work(self, worker: int) -> Work | None:
        self.asked_by.add(worker)
        self.asked.release()
        work = self._queue.get()
        if work is base.STOP:
            return None
        if not isinstance(work, Work):
            raise TypeError(f"not a Work item: {work!r}")
        return work


def row_bytes(i: int) -> bytes:
    return np.array([i, 10 * i, 2], np.float32).tobytes()


def make_sut(backend: Backend, watchdog_s: float = 0.0, warm_up=None) -> FifoSUT:
    opts = SUTOptions(max_batch=8, token_budget=256, watchdog_s=watchdog_s)
    return FifoSUT([backend], FakeQSL(), "classification", opts, warm_up=warm_up)


def wait_idle(sut: FifoSUT, times: int) -> None:
    """Wait until the worker has asked for work `times` times (it has finished what it had)."""
    for _ in range(times):
        assert sut.asked.acquire(timeout=GUARD_S)


# --- packing and responding ----------------------------------------------------------------------
def test_pack_rows_points_at_each_row_and_counts_nonfinite():
    out = np.array([[1, 2, 3], [4, np.nan, 6], [7, 8, np.inf], [0, 0, 0]], np.float32)
    p = pack_rows(out, np.array([5, 5, 5, 5]))
    base_addr = p.buffer.ctypes.data
    assert p.addresses == [base_addr, base_addr + 12, base_addr + 24, base_addr + 36]
    assert p.sizes == [12, 12, 12, 12] and p.nonfinite == 2
    assert ctypes.string_at(p.addresses[2], 12) == np.array([7, 8, np.inf], np.float32).tobytes()
    f64 = pack_rows(np.array([[1.5, -2.0]]), np.array([3]))  # float64 in: float32 out
    assert (
        f64.sizes == [8]
        and ctypes.string_at(f64.addresses[0], 8) == np.array([1.5, -2], "<f4").tobytes()
    )
    empty = pack_rows(np.zeros((0, 3), np.float32), np.zeros(0))
    assert (empty.addresses, empty.sizes, empty.nonfinite) == ([], [], 0)


def test_pack_qa_keeps_only_real_tokens_and_ignores_nonfinite_padding():
    # sample 0: 2 tokens (padding holds NaN: not counted); sample 1: 3 tokens, an Inf in its ends
    out = np.array(
        [[[1, 2, np.nan], [3, 4, np.nan]], [[5, 6, 7], [8, np.inf, 9]]],
        np.float32,
    )
    p = pack_qa(out, np.array([2, 3]))
    assert p.sizes == [16, 24] and p.nonfinite == 1
    assert p.addresses == [p.buffer.ctypes.data, p.buffer.ctypes.data + 16]
    assert ctypes.string_at(p.addresses[0], 16) == np.array([1, 2, 3, 4], np.float32).tobytes()
    assert (
        ctypes.string_at(p.addresses[1], 24) == np.array([5, 6, 7, 8, np.inf, 9], np.float32).tobytes()
    )
    first_bad = pack_qa(out[::-1].copy(), np.array([3, 2]))  # the non-finite sample first
    assert first_bad.nonfinite == 1 and first_bad.sizes == [24, 16]


def test_pack_qa_three_samples_from_float64_and_a_list_of_lengths():
    """Sample k holds k + 1 tokens of value 10 k + token (starts), negated (ends); only sample 1 has a
    NaN (its second end). Offsets 0, 8, 24 bytes; sizes 8, 16, 24."""
    out = np.zeros((3, 2, 4))
    for k in range(3):
        out[k, 0, : k + 1] = 10 * k + np.arange(k + 1)
        out[k, 1, : k + 1] = -out[k, 0, : k + 1]
    out[1, 1, 1] = np.nan
    out[0, :, 1:] = np.inf  # padding
    p = pack_qa(out, [1, 2, 3])
    assert p.sizes == [8, 16, 24] and p.nonfinite == 1
    start = p.buffer.ctypes.data
    assert p.addresses == [start, start + 8, start + 24]
    assert ctypes.string_at(p.addresses[2], 24) == np.array([20, 21, 22, -20, -21, -22], "<f4").tobytes()
    assert ctypes.string_at(p.addresses[0], 8) == np.array([0, -0.0], "<f4").tobytes()
    assert p.buffer.dtype == np.float32 and p.buffer.size == 12


def test_respond_completes_once_per_batch_and_empty_without_a_buffer(completions):
    packed = pack_rows(np.array([[1, 2], [3, 4]], np.float32), np.array([1, 1]))
    respond([7, 9], packed)
    respond([11, 12], None)
    assert len(completions.calls) == 2
    assert completions.calls[0] == [
        (7, np.array([1, 2], np.float32).tobytes()),
        (9, np.array([3, 4], np.float32).tobytes()),
    ]
    assert completions.calls[1] == [(11, b""), (12, b"")]


def test_options_are_validated_and_gather_defaults_to_four_batches():
    opts = SUTOptions(max_batch=6, token_budget=600)
    assert (
        opts.gather_limit == 24 and SUTOptions(max_batch=6, token_budget=600, gather=5).gather_limit == 5
    )
    assert (opts.limits.max_batch, opts.limits.token_budget) == (6, 600)
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        SUTOptions(workers=0)
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        SUTOptions(max_batch=0, token_budget=100)
    with pytest.raises(ValueError, match="token_budget must be >= 0, got -1"):
        SUTOptions(max_batch=4, token_budget=-1)
    for field in ("max_wait_ms", "watchdog_s", "gather", "batch_overhead_tokens"):
        with pytest.raises(ValueError) as info:
            SUTOptions(**{field: -1})
        assert (
            str(info.value) == "max_wait_ms, watchdog_s, gather and batch_overhead_tokens must be >= 0"
        )
    SUTOptions(max_wait_ms=0, watchdog_s=0, gather=0, batch_overhead_tokens=0)  # zero is allowed
    with pytest.raises(ValueError, match="need one backend per worker: 2 for 1"):
        FifoSUT([RowBackend(), RowBackend()], FakeQSL(), "classification", SUTOptions())


# --- the worker path ---------------------------------------------------------------------------------
def test_worker_completes_each_sample_once_with_its_bytes(completions):
    backend = RowBackend()
    sut = make_sut(backend)
    sut.record_issued()
    began = time.perf_counter()
    with sut:
        wait_idle(sut, 1)
        sut.issue_queries([100, 101], [3, 4])
        sut.issue_queries([102], [5])
        completions.wait_for(3)
        wait_idle(sut, 2)
    assert completions.by_id() == {100: row_bytes(3), 101: row_bytes(4), 102: row_bytes(5)}
    assert [len(c) for c in completions.calls] == [2, 1]  # one QuerySamplesComplete per batch
    assert (sut.issued, sut.completed, sut.batches, sut.nonfinite) == (3, 3, 2, 0)
    assert sut.issued_log == [[3, 4], [5]] and len(sut.predict_s) == 2
    assert all(0 <= t <= time.perf_counter() - began for t in sut.predict_s)  # seconds inside the test
    assert sut.failure is None and not sut._in_flight and backend.calls == 2
    assert sut.first_issue is not None and sut.first_issue <= sut._last_activity


def test_nonfinite_outputs_are_counted_per_sample(completions):
    class NanBackend(RowBackend):
        def predict(self, input_ids, attention_mask):
            out = super().predict(input_ids, attention_mask)
            out[input_ids[:, 0] % 2 == 1, 2] = np.nan  # odd samples
            return out

    sut = make_sut(NanBackend())
    with sut:
        sut.issue_queries([1, 2, 3], [1, 2, 3])
        sut.issue_queries([5, 6], [5, 6])
        completions.wait_for(5)
        wait_idle(sut, 3)
    assert sut.nonfinite == 3 and sut.completed == 5  # 2 in the first batch, 1 in the second


def test_a_failing_backend_is_recorded_and_later_work_completes_empty(completions, capsys):
    backend = RowBackend(fail=True)
    sut = make_sut(backend)
    with sut:
        sut.issue_queries([1, 2], [1, 2])
        completions.wait_for(2)
        sut.issue_queries([3], [3])
        completions.wait_for(3)
        wait_idle(sut, 3)
    assert isinstance(sut.failure, RuntimeError) and sut.failed.is_set()
    assert sut.failure_text.startswith("batch of 2 samples: RuntimeError: backend exploded\n")
    lines = sut.failure_text.splitlines()  # the one-line summary, then the traceback as printed
    assert (
        lines[1] == "Traceback (most recent call last):"
        and lines[-1] == "RuntimeError: backend exploded"
    )
    assert all(line.startswith(("  ", "Traceback", "RuntimeError")) for line in lines[1:])
    assert backend.calls == 1  # after the failure nothing is computed
    assert completions.by_id() == {1: b"", 2: b"", 3: b""} and sut.completed == 3 and sut.nonfinite == 0
    assert (
        capsys.readouterr().err == "SUT failure in batch of 2 samples: RuntimeError: backend exploded\n"
    )


def test_the_first_failure_wins():
    sut = make_sut(RowBackend())
    sut._fail(KeyError("a"), "first")
    sut._fail(ValueError("b"), "second")
    assert isinstance(sut.failure, KeyError) and sut.failure_text.startswith("first: KeyError: 'a'")


def test_a_failing_warm_up_is_the_runs_failure(completions):
    def warm_up(backend):
        raise OSError("no such model")

    sut = make_sut(RowBackend(), warm_up=warm_up)
    with sut:
        sut.issue_queries([4], [4])
        completions.wait_for(1)
    assert sut.failure_text.startswith("warm-up: OSError: no such model")
    assert completions.by_id() == {4: b""}


def test_each_worker_warms_up_before_start_returns():
    warmed = []
    backend = RowBackend()
    sut = make_sut(
        backend, watchdog_s=5.0, warm_up=lambda b: warmed.append((threading.current_thread().name, b))
    )
    assert sut.failure is None and sut.failure_text == "" and not sut.failed.is_set()
    sut.start()
    assert warmed == [("sut-worker-0", backend)]  # on the worker's own thread, before start() returned
    assert [(t.name, t.daemon) for t in sut._threads] == [("sut-worker-0", True), ("sut-watchdog", True)]
    sut.stop()
    assert all(not t.is_alive() for t in sut._threads) and sut.failure is None
    assert sut.asked_by == {0}


def test_a_failing_scheduler_is_recorded_and_the_worker_goes_on(completions):
    class Flaky(FifoSUT):
        def _next_work(self, worker):
            if not self.asked_by:
                self.asked_by.add(worker)
                raise RuntimeError("planner broke")
            return super()._next_work(worker)

    sut = Flaky([RowBackend()], FakeQSL(), "classification", SUTOptions(watchdog_s=0))
    with sut:
        sut.issue_queries([1], [1])
        completions.wait_for(1)
    assert sut.failure_text.startswith("scheduler: RuntimeError: planner broke")
    assert completions.by_id() == {1: b""}  # after a failure: completed empty
    assert all(not t.is_alive() for t in sut._threads)


def test_stop_returns_while_a_worker_is_stuck_in_predict(completions):
    """A worker stuck in predict is left behind (a daemon thread); stop() returns after its timeout."""
    gate = threading.Event()
    backend = RowBackend(gate=gate)
    sut = make_sut(backend)
    sut.start()
    sut.issue_queries([1], [1])
    assert backend.entered.wait(GUARD_S)
    stopper = threading.Thread(target=sut.stop, kwargs={"timeout": 0.05})
    stopper.start()
    stopper.join(GUARD_S)
    stuck = not stopper.is_alive()
    gate.set()
    completions.wait_for(1)  # the worker finished its batch once released
    assert stuck and sut._threads[0].daemon and completions.by_id() == {1: row_bytes(1)}


def test_qsl_callbacks_never_raise_into_loadgen():
    sut = make_sut(RowBackend())
    seen = []
    sut.guard(seen.append, "load")([1, 2])
    assert seen == [[1, 2]] and sut.failure is None

    def explode(indices):
        raise MemoryError("too big")

    sut.guard(explode, "load")([3])
    assert sut.failure_text.startswith("load: MemoryError: too big")


def test_issue_queries_that_fails_completes_its_samples_empty(completions, monkeypatch):
    sut = make_sut(RowBackend())

    def broken_put(item):
        raise RuntimeError("queue broken")

    monkeypatch.setattr(sut._queue, "put", broken_put)
    sut.issue_queries([5, 6], [5, 6])
    assert sut.failure_text.startswith("issue_queries: RuntimeError: queue broken")
    assert completions.by_id() == {5: b"", 6: b""} and sut.completed == 2


# --- draining: the in-flight dict ----------------------------------------------------------------
def test_stall_drain_claims_in_flight_work_so_the_worker_never_completes_it_again(completions):
    """The watchdog's drain on a stall completes a batch still inside predict; when predict returns
    later, the worker must find the batch gone from the in-flight dict and complete nothing. A drain
    that copies the in-flight dict without clearing it lets the worker complete the same samples a
    second time (in LoadGen: an abort)."""
    gate = threading.Event()
    backend = RowBackend(gate=gate)
    sut = make_sut(backend)
    with sut:
        wait_idle(sut, 1)
        sut.issue_queries([1, 2, 3], [1, 2, 3])
        assert backend.entered.wait(GUARD_S)
        sut._fail(TimeoutError("stalled"), "watchdog")
        sut._drain(claim_in_flight=True)  # what the watchdog does on a stall
        assert completions.by_id() == {1: b"", 2: b"", 3: b""}
        assert sut._in_flight == {}
        gate.set()  # predict returns now
        wait_idle(sut, 1)  # the worker finished that batch and asks for more
        sut._drain(claim_in_flight=True)  # a second drain finds nothing left to complete
    assert completions.ids == [1, 2, 3]  # each exactly once
    assert (sut.issued, sut.completed, sut.batches) == (3, 3, 1)


def test_watchdog_drains_a_hung_worker_exactly_once(completions, monkeypatch):
    """The same through the watchdog thread, on a fake clock: a stall limit of 5 s, a predict held
    until the clock has moved 100 s on and the watchdog has completed everything, then released."""
    clock = [0.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    gate = threading.Event()
    backend = RowBackend(gate=gate)
    sut = make_sut(backend, watchdog_s=5.0)
    with sut:
        wait_idle(sut, 1)
        sut.issue_queries([1, 2], [1, 2])
        assert backend.entered.wait(GUARD_S)
        clock[0] = 100.0  # nothing issued or completed for 100 s
        completions.wait_for(2)  # by the watchdog: predict is still held
        assert not gate.is_set()
        gate.set()
        wait_idle(sut, 1)
        sut.issue_queries([3], [3])  # after a failure: completed empty, never computed
        completions.wait_for(3)
    assert isinstance(sut.failure, TimeoutError)
    assert sut.failure_text.startswith(
        "watchdog: TimeoutError: no batch completed for 5 s, 2 samples outstanding"
    )
    assert completions.ids == [1, 2, 3] and completions.by_id() == {1: b"", 2: b"", 3: b""}
    assert backend.calls == 1 and sut.completed == 3


def test_drain_completes_queued_and_carried_work_and_keeps_the_stop_sentinels(completions):
    sut = make_sut(RowBackend())
    sut._queue.put(Work([1], [1], 0.0))
    sut._queue.put(base.STOP)
    sut._queue.put(Work([2, 3], [2, 3], 0.0))
    sut._carry[0] = [Work([4], [4], 0.0, planned=True)]
    sut._in_flight[9] = Work([5], [5], 0.0, planned=True)
    sut._drain(claim_in_flight=False)  # queued work only
    assert completions.ids == [1, 2, 3] and sut._in_flight and sut._carry
    assert sut._queue.get_nowait() is base.STOP and sut._queue.empty()  # the sentinel is put back
    sut._drain(claim_in_flight=True)
    assert completions.ids == [1, 2, 3, 4, 5] and not sut._in_flight and not sut._carry


def test_end_early_completes_everything_now_and_every_later_query_at_once(completions, capsys):
    gate = threading.Event()
    backend = RowBackend(gate=gate)
    sut = make_sut(backend)
    with sut:
        wait_idle(sut, 1)
        sut.issue_queries([1], [1])
        assert backend.entered.wait(GUARD_S)
        sut.issue_queries([2, 3], [2, 3])  # queued behind the held batch
        sut.end_early("interrupted by SIGINT")
        assert completions.ids == [1, 2, 3]  # in flight and queued: completed by end_early
        sut.issue_queries([4], [4])  # completed inside issue_queries
        assert completions.ids == [1, 2, 3, 4]
        sut.end_early("drain bound")  # the first reason is kept; nothing is completed again
        gate.set()
        wait_idle(sut, 1)
    assert sut.stop_reason == "interrupted by SIGINT" and sut.failure is None
    assert completions.by_id() == {1: b"", 2: b"", 3: b"", 4: b""} and completions.ids == [1, 2, 3, 4]
    assert sut.issued == sut.completed == 4 and backend.calls == 1
    assert capsys.readouterr().err == "ending the test early: interrupted by SIGINT\n"


# --- the drain bound, on a fake clock ---------------------------------------------------------------
class BoundedSUT(FifoSUT):
    drain_factor = 2.0


@pytest.mark.parametrize(
    ("elapsed", "issued", "completed", "flushed", "ends"),
    [
        (31.0, 10, 5, False, True),  # past the bound 2 x 10 + 10 = 30 s
        (30.0, 10, 5, False, False),  # at the bound, not past it
        (10.0, 100, 10, True, True),  # all issued, 1 sample/s: 90 more would end at 100 s
        (10.0, 100, 90, True, False),  # 9 samples/s: the last 10 end at 11.1 s
        (10.0, 30, 10, True, False),  # 1 sample/s: the last of 20 more ends at 30 s, not past it
        (0.5, 100, 50, True, False),  # 100 samples/s after half a second: done at 1 s
        (0.0, 10, 5, True, True),  # no time has passed: no rate yet, so no finish in sight
        (10.0, 100, 10, False, False),  # not all issued yet: only the bound itself counts
        (10.0, 100, 0, True, False),  # nothing done yet: no rate to judge by
        (40.0, 100, 100, True, False),  # nothing outstanding
    ],
)
def test_drain_bound(monkeypatch, completions, elapsed, issued, completed, flushed, ends):
    sut = BoundedSUT([RowBackend()], FakeQSL(), "classification", SUTOptions(watchdog_s=0))
    sut.bound_drain(10.0)
    assert sut._drain_bound == (30.0, 10.0)
    sut.first_issue, sut.issued, sut.completed, sut.flushed = 1000.0, issued, completed, flushed
    monkeypatch.setattr(base.time, "monotonic", lambda: 1000.0 + elapsed)
    sut._check_drain()
    assert (sut.stop_reason is not None) == ends
    if ends:
        assert sut.stop_reason.startswith(
            f"drain bound: {issued - completed} samples outstanding {elapsed:.0f} s after the first "
            "query"
        )
        assert sut.stop_reason.endswith("past 30 s (2 x min duration 10 s + 10 s)")


def test_drain_bound_message_gives_the_rate_and_the_projected_finish(monkeypatch, completions):
    sut = BoundedSUT([RowBackend()], FakeQSL(), "classification", SUTOptions(watchdog_s=0))
    sut.bound_drain(10.0)
    sut.first_issue, sut.issued, sut.completed, sut.flushed = 0.0, 100, 10, True
    monkeypatch.setattr(base.time, "monotonic", lambda: 10.0)
    sut._check_drain()
    assert sut.stop_reason == (
        "drain bound: 90 samples outstanding 10 s after the first query; at 1.0 samples/s they would "
        "finish at about 100 s, past 30 s (2 x min duration 10 s + 10 s)"
    )


def test_no_drain_bound_where_the_scenario_has_none_or_before_the_first_query(monkeypatch):
    sut = make_sut(RowBackend())
    sut.bound_drain(10.0)
    assert sut._drain_bound is None  # drain_factor 0
    bounded = BoundedSUT([RowBackend()], FakeQSL(), "classification", SUTOptions(watchdog_s=0))
    bounded.bound_drain(10.0)
    bounded.issued = 5
    monkeypatch.setattr(base.time, "monotonic", lambda: 1e9)
    bounded._check_drain()  # first_issue is None: nothing issued yet
    assert bounded.stop_reason is None


def test_the_watchdog_thread_ends_a_run_past_its_drain_bound(monkeypatch, completions):
    """With watchdog_s = 0 the thread still runs for the drain bound alone; a fake clock past the
    bound makes it end the test early, completing the queued samples empty."""
    sut = BoundedSUT(
        [RowBackend(gate=threading.Event())], FakeQSL(), "classification", SUTOptions(watchdog_s=0)
    )
    sut.bound_drain(1.0)  # bound 12 s
    with sut:
        assert [t.name for t in sut._threads] == ["sut-worker-0", "sut-watchdog"]
        wait_idle(sut, 1)
        monkeypatch.setattr(base.time, "monotonic", lambda: 0.0)
        sut.issue_queries([1], [1])
        monkeypatch.setattr(base.time, "monotonic", lambda: 100.0)
        completions.wait_for(1)
        sut.backends[0].gate.set()
    assert sut.stop_reason.startswith("drain bound: 1 samples outstanding 100 s after the first query")
    assert completions.by_id() == {1: b""}


def test_no_watchdog_thread_without_a_stall_limit_or_a_drain_bound():
    sut = make_sut(RowBackend(), watchdog_s=0.0)
    with sut:
        assert [t.name for t in sut._threads] == ["sut-worker-0"]


def test_flush_queries_marks_that_no_more_queries_will_come():
    sut = make_sut(RowBackend())
    assert sut.flushed is False
    sut.flush_queries()
    assert sut.flushed is True


class Polls:
    """Stands in for the watchdog's stop event: `wait` returns False `n` times (one poll each), then
    True, so `_watchdog()` runs exactly n rounds on the calling thread."""

    def __init__(self, n: int) -> None:
        self.n = n

    def wait(self, timeout: float) -> bool:
        self.n -= 1
        return self.n < 0


def watchdog_round(sut: SUT, now: float, monkeypatch) -> None:
    monkeypatch.setattr(base.time, "monotonic", lambda: now)
    sut._stopping = Polls(1)
    sut._watchdog()


def test_watchdog_stall_rule_on_a_fake_clock(completions, monkeypatch):
    """watchdog_s = 5: a stall is samples outstanding AND more than 5 s without an issue or a
    completion. In flight: a batch of 2 (ids 8, 9) of 3 issued samples, 1 completed."""
    sut = make_sut(RowBackend(), watchdog_s=5.0)
    sut.issued, sut.completed, sut._last_activity = 3, 3, 0.0
    watchdog_round(sut, 100.0, monkeypatch)  # idle for 100 s, nothing outstanding: not a stall
    assert sut.failure is None
    sut.issued, sut.completed, sut._last_activity = 3, 1, 1000.0
    sut._in_flight[1] = Work([8, 9], [8, 9], 1000.0)
    watchdog_round(sut, 1005.0, monkeypatch)  # exactly 5 s: not yet
    assert sut.failure is None and completions.ids == []
    watchdog_round(sut, 1005.5, monkeypatch)
    assert sut.failure_text.startswith(
        "watchdog: TimeoutError: no batch completed for 5 s, 2 samples outstanding"
    )
    assert completions.ids == [8, 9] and sut._in_flight == {}


def test_watchdog_after_a_failure_completes_queued_work_but_leaves_running_batches(
    completions, monkeypatch
):
    """Failed, but not stalled (recent activity): queued work is completed empty at once; a batch a
    worker is running stays with that worker."""
    sut = make_sut(RowBackend(), watchdog_s=5.0)
    sut._fail(RuntimeError("backend exploded"), "batch of 1 samples")
    sut.issued, sut.completed, sut._last_activity = 2, 0, 10.0
    sut._queue.put(Work([4], [4], 10.0))
    sut._in_flight[1] = Work([5], [5], 10.0)
    watchdog_round(sut, 11.0, monkeypatch)
    assert completions.ids == [4] and list(sut._in_flight) == [1]
    assert sut.failure_text.startswith("batch of 1 samples: RuntimeError")  # the first failure kept


def test_issue_queries_enqueues_with_the_issue_time(monkeypatch):
    sut = make_sut(RowBackend())
    monkeypatch.setattr(base.time, "monotonic", lambda: 42.0)
    sut.issue_queries([1, 2], [7, 8])
    monkeypatch.setattr(base.time, "monotonic", lambda: 43.0)
    sut.issue_queries([3], [9])
    first, second = sut._queue.get_nowait(), sut._queue.get_nowait()
    assert (first.ids, first.indices, first.t, first.planned) == ([1, 2], [7, 8], 42.0, False)
    assert (second.ids, second.t) == ([3], 43.0)
    assert sut.first_issue == 42.0 and sut._last_activity == 43.0 and sut.issued == 3


def test_two_workers_in_predict_are_both_claimed_by_a_drain(completions):
    """Each running batch has its own key in the in-flight dict: a stall drain completes both."""
    gates = [threading.Event(), threading.Event()]
    backends = [RowBackend(gate=gates[0]), RowBackend(gate=gates[1])]
    opts = SUTOptions(max_batch=8, token_budget=256, watchdog_s=0, workers=2)
    sut = FifoSUT(backends, FakeQSL(), "classification", opts)
    with sut:
        sut.issue_queries([1, 2], [1, 2])
        sut.issue_queries([3, 4], [3, 4])
        assert all(b.entered.wait(GUARD_S) for b in backends) and sut.asked_by == {0, 1}
        assert len(sut._in_flight) == 2
        sut._drain(claim_in_flight=True)
        assert completions.ids == [1, 2, 3, 4]
        for g in gates:
            g.set()
    assert completions.ids == [1, 2, 3, 4] and sut.completed == 4


def test_qa_responses_through_the_worker(completions):
    """task kind qa: the response of sample i is its start logits then its end logits (2 tokens)."""

    class QaBackend(RowBackend):
        def predict(self, input_ids, attention_mask):
            x = (input_ids * attention_mask).astype(np.float32)
            return np.stack([x, -x], axis=1)

    opts = SUTOptions(max_batch=8, token_budget=256, watchdog_s=0)
    sut = FifoSUT([QaBackend()], FakeQSL(), "qa", opts)
    with sut:
        sut.issue_queries([1, 2], [3, 4])
        completions.wait_for(2)
    assert completions.by_id() == {
        1: np.array([3, 30, -3, -30], np.float32).tobytes(),
        2: np.array([4, 40, -4, -40], np.float32).tobytes(),
    }


def test_a_failing_query_samples_complete_is_recorded_and_counted(completions, monkeypatch):
    def broken(responses):
        raise RuntimeError("LoadGen refused")

    monkeypatch.setattr(lg, "QuerySamplesComplete", broken)
    sut = make_sut(RowBackend())
    sut._complete_empty(Work([1, 2], [1, 2], 0.0))
    assert sut.failure_text.startswith("QuerySamplesComplete: RuntimeError: LoadGen refused")
    assert isinstance(sut.failure, RuntimeError) and (sut.completed, sut.batches) == (2, 1)


def test_drain_puts_back_every_stop_sentinel(completions):
    sut = make_sut(RowBackend())
    for item in (base.STOP, Work([1], [1], 0.0), base.STOP):
        sut._queue.put(item)
    sut._drain(claim_in_flight=False)
    assert completions.ids == [1]
    assert [sut._queue.get_nowait(), sut._queue.get_nowait()] == [base.STOP, base.STOP]
    assert sut._queue.empty()


def test_respond_refuses_a_packing_of_another_size(completions):
    packed = pack_rows(np.zeros((2, 3), np.float32), np.array([1, 1]))
    with pytest.raises(ValueError, match="zip"):
        respond([1, 2, 3], packed)
    assert completions.calls == []  # nothing half-completed


# --- a mixed run's batches and the device defaults ---------------------------------------------------
class _Mixed:
    """What tasks/mixed.py's model returns: (rows of the batch, the rows' task kind, their outputs)."""

    def __init__(self, parts):
        self.parts = parts


def _bytes_at(packed, i: int) -> bytes:
    return ctypes.string_at(packed.addresses[i], packed.sizes[i])


def test_pack_mixed_puts_each_tasks_responses_back_in_row_order():
    """Rows 0 and 2 are classification (3 logits), row 1 is QA (length 2: starts then ends), row 3 is
    classification with a NaN: each response's bytes at its row, one non-finite response counted."""
    cls = np.array([[1, 2, 3], [4, 5, 6], [7, np.nan, 9]], dtype=np.float32)
    qa = np.array([[[10, 11, 99], [12, 13, 99]]], dtype=np.float32)  # one window of 3, length 2
    mixed = _Mixed([(np.array([0, 2, 3]), "classification", cls), (np.array([1]), "qa", qa)])
    packed = base.pack_mixed(mixed, np.array([5, 2, 5, 5]))
    assert packed.sizes == [12, 16, 12, 12]
    want = [cls[0], np.array([10, 11, 12, 13], np.float32), cls[1], cls[2]]
    assert [_bytes_at(packed, i) for i in range(4)] == [w.tobytes() for w in want]
    assert packed.nonfinite == 1 and len(packed.buffer) == 2
    # every response lies inside a buffer the Packed keeps alive until LoadGen has copied it
    spans = [(b.ctypes.data, b.ctypes.data + b.nbytes) for b in packed.buffer]
    for a, n in zip(packed.addresses, packed.sizes, strict=True):
        assert sum(lo <= a and a + n <= hi for lo, hi in spans) == 1


@pytest.mark.parametrize(
    ("parts", "row", "times"),
    [
        ([[0]], 1, 0),  # row 1 not answered
        ([[0, 1], [1]], 1, 2),  # row 1 answered twice: three answers for two rows
        ([[1, 1]], 0, 0),  # row 1 twice in one part, row 0 never: the count is right, the rows not
    ],
)
def test_pack_mixed_refuses_a_batch_its_parts_do_not_answer_once_each(parts, row, times):
    mixed = _Mixed([(np.array(p), "classification", np.zeros((len(p), 3), np.float32)) for p in parts])
    with pytest.raises(ValueError) as e:
        base.pack_mixed(mixed, np.array([4, 4]))
    assert str(e.value) == (
        f"mixed output answers row {row} of a batch of 2 {times} times: each row must be answered "
        "exactly once"
    )


def test_device_defaults_and_the_gather_limit():
    assert SUTOptions.for_device("cpu") == SUTOptions()
    cuda = SUTOptions.for_device("cuda")
    assert (cuda.max_batch, cuda.token_budget, cuda.workers) == (256, 65536, 2)
    assert (cuda.max_wait_ms, cuda.batch_overhead_tokens, cuda.gather) == (5.0, 4096, 0)
    assert (SUTOptions().gather_limit, SUTOptions(gather=7).gather_limit, cuda.gather_limit) == (
        128,
        7,
        1024,
    )
