"""SUT, QSL and batching with real LoadGen (in-process, no FromConfig) and a deterministic fake
backend."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import pytest

from common.loadgen_log import LoadgenLog
from harness.results import Results
from models.base import Backend
from sut.base import SUTOptions
from sut.batching import BatchLimits, plan_batches, plan_least_cost
from sut.registry import SCENARIOS, get_sut_class
from tasks.base import FeatureSet
from tasks.qsl import QuerySampleLibrary
from tests.fault_child import synthetic_features
from tests.polling import GUARD_S, wait_for

N = 300


def make_features(n: int = N, seed: int = 0) -> FeatureSet:
    return synthetic_features(n, seed)


class FakeBackend(Backend):
    """Row-independent outputs: classification [sum ids, length, first id]; qa [ids, -ids]."""

    name = "fake"

    def __init__(self, kind: str = "classification", fail_after: int | None = None, hang: bool = False):
        self.kind, self.fail_after, self.hang, self.calls = kind, fail_after, hang, 0
        self.release = threading.Event()

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            if self.hang:
                self.release.wait(30)
            raise RuntimeError("backend exploded")
        x = (input_ids * attention_mask).astype(np.float32)
        if self.kind == "qa":
            return np.stack([x, -x], axis=1)
        return np.stack([x.sum(1), attention_mask.sum(1).astype(np.float32), x[:, 0]], axis=1)


def expected(fs: FeatureSet, i: int, kind: str) -> np.ndarray:
    ids = fs.ids(i).astype(np.float32)
    if kind == "qa":
        return np.concatenate([ids, -ids])
    return np.array([ids.sum(), len(ids), ids[0]], dtype=np.float32)


def run_loadgen(tmp: Path, scenario: str, accuracy: bool, backend: Backend | None,
                kind: str = "classification", options: SUTOptions | None = None,
                timeout: float = GUARD_S, during=None,
                backends: list[Backend] | None = None, settings: dict | None = None):  # fmt: skip
    """One LoadGen test with hand-made settings; returns (sut, out_dir). Fails the test on a hang.
    during(sut), if given, runs on the calling thread while the test runs. `backends` (one per
    worker of `options`) replaces the single `backend`. `settings`: TestSettings fields to override."""
    fs = make_features()
    qsl = QuerySampleLibrary(fs, performance_sample_count=100)
    sut = get_sut_class(scenario)(
        backends or [backend], qsl, kind, options or SUTOptions(max_batch=8, token_budget=256)
    )
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, scenario)
    ts.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    ts.min_duration_ms = ts.max_duration_ms = 500
    ts.min_query_count = 1
    ts.offline_expected_qps = 2000
    ts.server_target_qps = 400
    ts.server_target_latency_ns = 100_000_000
    ts.single_stream_expected_latency_ns = 100_000
    for name, value in (settings or {}).items():
        setattr(ts, name, value)
    log = lg.LogSettings()
    log.log_output.outdir = str(tmp)
    log.enable_trace = False
    tmp.mkdir(parents=True, exist_ok=True)

    def body() -> None:
        with sut:
            h = lg.ConstructFastSUT(sut.issue_queries, sut.flush_queries)
            q = lg.ConstructQSL(N, 100, sut.guard(qsl.load_query_samples, "load"),
                                sut.guard(qsl.unload_query_samples, "unload"))  # fmt: skip
            lg.StartTestWithLogSettings(h, q, ts, log, str(tmp / "no-audit"))
            lg.DestroyQSL(q)
            lg.DestroyFastSUT(h)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    if during is not None:
        during(sut)
    t.join(timeout)
    assert not t.is_alive(), "LoadGen test hung"
    return sut, fs


def read_log(out: Path) -> list[dict]:
    return json.loads((out / "mlperf_log_accuracy.json").read_text())


def test_plan_batches_respects_limits_and_covers_everything():
    lens = np.random.default_rng(1).integers(1, 100, 500)
    limits = BatchLimits(max_batch=16, token_budget=600)
    plan = plan_batches(lens, limits)
    seen = np.concatenate(plan)
    assert sorted(seen.tolist()) == list(range(500))
    for b in plan:
        assert len(b) <= 16 and (len(b) == 1 or len(b) * lens[b].max() <= 600)
    longest = [int(lens[b].max()) for b in plan]
    assert longest == sorted(longest, reverse=True)


def test_qsl_load_unload_keeps_only_requested():
    fs = make_features()
    qsl = QuerySampleLibrary(fs, performance_sample_count=50)
    assert qsl.loaded_tokens == 0
    qsl.load_query_samples([5, 2, 9])
    assert qsl.loaded.tolist() == [2, 5, 9]
    assert qsl.loaded_tokens == int(fs.lengths[[2, 5, 9]].sum())
    b = qsl.batch(np.array([9, 2]))
    assert b.input_ids.shape == (2, int(fs.lengths[[9, 2]].max()))  # padded to the batch's longest
    assert b.input_ids[0, : fs.lengths[9]].tolist() == fs.ids(9).tolist()
    assert (b.input_ids[1, fs.lengths[2] :] == 1).all() and b.attention_mask[1].sum() == fs.lengths[2]
    with pytest.raises(KeyError):
        qsl.batch(np.array([3]))
    qsl.unload_query_samples([2, 9])
    assert qsl.loaded.tolist() == [5] and qsl.loaded_tokens == int(fs.lengths[5])
    qsl.unload_query_samples([5])
    assert qsl.loaded_tokens == 0


@pytest.mark.parametrize("kind", ["classification", "qa"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_accuracy_log_is_complete_and_exact(tmp_path, scenario, kind):
    sut, fs = run_loadgen(tmp_path, scenario, True, FakeBackend(kind), kind)
    entries = read_log(tmp_path)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(N))  # every sample exactly once
    for e in entries:
        got = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32)
        np.testing.assert_array_equal(got, expected(fs, e["qsl_idx"], kind))
    assert sut.failure is None and sut.issued == sut.completed == N


class Paced(FakeBackend):
    """Each batch waits `wait_s` (5 ms): Offline's 1,100-sample query then lasts past the 500 ms min
    duration by construction, however fast the machine (a slower one only lasts longer)."""

    wait_s = 0.005

    def predict(self, input_ids, attention_mask):
        threading.Event().wait(self.wait_s)
        return super().predict(input_ids, attention_mask)


class PacedSample(Paced):
    """1 ms per SingleStream query: LoadGen's own minimum of 1,024 queries (enough for early
    stopping's p90 however slow the machine) then lasts past the 500 ms min duration by construction.
    Unpaced, a fast machine answered LoadGen's whole generated schedule (10,001 queries at about
    31 us each) in about 310 ms and the run was INVALID for min duration."""

    wait_s = 0.001


# LoadGen schedules SingleStream for 2 x min duration / expected latency queries (0.1 ms: the
# 10,001 above; at the 1 ms PacedSample takes, 1,000), so min_query_count (1,024) sets the count
ENOUGH_QUERIES = {
    "min_query_count": 1024,
    "max_duration_ms": 0,
    "single_stream_expected_latency_ns": 1_000_000,
}
# Server issues its whole schedule (no max duration cutting the last queries short of the min
# duration on a slow machine) under a latency bound no busy machine misses (10 s): early stopping is
# then the one unmet constraint on any machine
WHOLE_SCHEDULE = {"max_duration_ms": 0, "server_target_latency_ns": 10_000_000_000}


@pytest.mark.parametrize(
    ("scenario", "backend", "settings", "failed"),
    [
        ("SingleStream", PacedSample, ENOUGH_QUERIES, []),
        ("Offline", Paced, {}, []),
        ("Server", FakeBackend, WHOLE_SCHEDULE, ["early stopping"]),
    ],
)
def test_performance_run_completes_every_query_and_its_validity_is_loadgens(
    tmp_path, scenario, backend, settings, failed
):
    """SingleStream and Offline are VALID on any machine. Server's 500 ms at 400 QPS are about 200
    queries, fewer than early stopping needs for a p99 estimate with no query over the bound
    (ln 0.01 / ln 0.99, about 459), so LoadGen says INVALID for that reason alone, whatever the
    latencies (a busy machine's once added "latency" and "min duration": WHOLE_SCHEDULE)."""
    sut, _ = run_loadgen(tmp_path, scenario, False, backend(), settings=settings)
    res = Results.measured(tmp_path, "performance", False, scenario)
    assert res.scenario == res.summary["Scenario"] == scenario and res.loadgen_errors == 0
    assert list(res.constraints_failed) == failed and res.result_valid is (not failed)
    assert res.latency_ns["p99"] >= res.latency_ns["p50"] > 0
    queries = LoadgenLog.read(tmp_path / "mlperf_log_detail.txt").get("result_query_count")
    samples = queries * (1100 if scenario == "Offline" else 1)  # 1.1 x 2,000/s x 0.5 s in one query
    assert sut.issued == sut.completed == samples
    if scenario == "SingleStream":
        assert queries == 1024  # min_query_count, not the min duration, set the count
        assert sut.batches == sut.completed  # one sample at a time
    elif scenario == "Offline":
        assert 0 < sut.batches < sut.completed  # batched
    else:  # Server batches what has queued up, which depends on the arrivals
        assert 0 < queries < 459  # too few for early stopping's p99, by the schedule's length
        assert 0 < sut.batches <= sut.completed


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_failing_backend_ends_run_with_error(tmp_path, scenario):
    sut, _ = run_loadgen(tmp_path, scenario, True, FakeBackend(fail_after=3))
    assert isinstance(sut.failure, RuntimeError) and "backend exploded" in sut.failure_text
    assert sut.issued == sut.completed == N  # everything completed exactly once, empty after failure
    entries = read_log(tmp_path)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(N))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_end_early_completes_everything_exactly_once(tmp_path, scenario):
    """What SIGINT/SIGTERM and the Server drain bound do: from end_early on, outstanding and later
    queries complete at once, empty, without computing; the test ends; nothing is completed twice."""

    class Slow(FakeBackend):
        def predict(self, input_ids, attention_mask):
            threading.Event().wait(0.02)
            return super().predict(input_ids, attention_mask)

    backend = Slow()

    def interrupt(sut):
        while sut.completed < 16:
            threading.Event().wait(0.01)
        sut.end_early("interrupted by SIGINT")

    sut, _ = run_loadgen(tmp_path, scenario, True, backend, during=interrupt)
    assert sut.stop_reason == "interrupted by SIGINT" and sut.failure is None
    assert sut.issued == sut.completed == N and backend.calls < N
    entries = read_log(tmp_path)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(N))
    assert sum(1 for e in entries if e["data"] == "") >= N // 2  # the rest completed empty


def test_watchdog_unblocks_a_hung_backend(tmp_path):
    backend = FakeBackend(fail_after=2, hang=True)
    opts = SUTOptions(max_batch=8, token_budget=256, watchdog_s=1.0)
    sut, _ = run_loadgen(tmp_path, "Offline", True, backend, options=opts)
    backend.release.set()
    assert isinstance(sut.failure, TimeoutError) and sut.issued == sut.completed == N


def test_stall_drain_completes_a_query_held_back_by_a_server_worker(monkeypatch):
    """A Server worker stuck in predict may hold batches it planned: the drain must complete them."""
    from sut.base import Work

    sut = get_sut_class("Server")([FakeBackend()], QuerySampleLibrary(make_features()), "classification",
                                  SUTOptions(max_batch=8, token_budget=256))  # fmt: skip
    completed: list[int] = []
    monkeypatch.setattr(lg, "QuerySamplesComplete", lambda rs: completed.extend(r.id for r in rs))
    sut._carry[0] = [Work([7], [3], 0.0, planned=True), Work([9, 10], [5, 6], 0.0, planned=True)]
    sut._in_flight[1] = Work([5, 6], [1, 2], 0.0, planned=True)
    sut._queue.put(Work([8], [4], 0.0))
    sut._drain(claim_in_flight=True)
    assert sorted(completed) == [5, 6, 7, 8, 9, 10] and not sut._carry and not sut._in_flight
    sut._drain(claim_in_flight=True)  # nothing is completed twice
    assert sorted(completed) == [5, 6, 7, 8, 9, 10]


def test_a_server_gather_ends_at_its_deadline_when_its_wake_up_is_taken_by_another_thread():
    """Regression (found 2026-11-30, 1 Server run in 6 with 4 workers): CPython's
    SimpleQueue.get(timeout) blocks until the NEXT put when its waiter is woken by a put, another
    thread takes that item first, and the deadline has passed by the time the waiter runs again (the
    timeout it recomputes is negative, which the lock reads as "forever"). A gathering worker then
    held its first sample with LoadGen's last query issued: the run never ended and the watchdog
    could not see the sample. Here this thread is the other consumer, and holds the GIL past the
    gather's deadline while it takes the item."""
    import sys

    from sut.base import Work

    fs = make_features()
    sut = get_sut_class("Server")([FakeBackend()], QuerySampleLibrary(fs), "classification",
                                  SUTOptions(max_batch=8, token_budget=0, max_wait_ms=300))  # fmt: skip
    got: list = []
    worker = threading.Thread(target=lambda: got.append(sut._next_work(0)), daemon=True)
    interval = sys.getswitchinterval()
    sut._queue.put(Work([1], [0], time.monotonic()))
    worker.start()
    wait_for(sut._queue.empty, "the worker to take sample 1")  # it then waits (300 ms) for more
    sys.setswitchinterval(5.0)  # no forced switch: this thread keeps the GIL until it blocks
    try:
        sut._queue.put(Work([2], [1], time.monotonic()))  # wakes the worker's wait...
        taken = sut._queue.get_nowait()  # ...but this thread takes the item first
        end = time.monotonic() + 0.4
        while time.monotonic() < end:  # past the worker's deadline, still holding the GIL
            pass
    finally:
        sys.setswitchinterval(interval)
    worker.join(GUARD_S)  # with the bug it waits for a put that never comes: forever
    assert not worker.is_alive(), "the gather waited past its deadline for a put that never came"
    assert taken.ids == [2] and got[0].ids == [1] and list(got[0].indices) == [0]


def brute_force_cost(lens: np.ndarray, limits: BatchLimits, overhead: int) -> float:
    """Least modelled cost over every way to cut the descending-sorted lengths (small n only)."""
    s = np.sort(lens)[::-1]
    best = [0.0] + [np.inf] * len(s)
    for j in range(1, len(s) + 1):
        for i in range(max(0, j - limits.max_batch), j):
            padded = (j - i) * s[i]
            if j - i == 1 or not limits.token_budget or padded <= limits.token_budget:
                best[j] = min(best[j], best[i] + overhead + padded)
    return best[-1]


@pytest.mark.parametrize("overhead", [0, 20, 100, 10_000])
def test_plan_least_cost_is_optimal_within_limits(overhead):
    rng = np.random.default_rng(overhead)
    limits = BatchLimits(max_batch=5, token_budget=300)
    for _ in range(20):
        lens = rng.integers(1, 120, rng.integers(1, 14))
        plan = plan_least_cost(lens, limits, overhead)
        assert sorted(np.concatenate(plan).tolist()) == list(range(len(lens)))
        for b in plan:
            assert len(b) <= 5 and (len(b) == 1 or len(b) * lens[b].max() <= 300)
        cost = sum(overhead + len(b) * lens[b].max() for b in plan)
        assert cost == pytest.approx(brute_force_cost(lens, limits, overhead))


def test_plan_least_cost_splits_a_mixed_backlog_only_when_padding_costs_more():
    lens = np.array([10, 100, 12, 98, 11])
    limits = BatchLimits(max_batch=32, token_budget=0)
    # overhead 50: padding three 10-12 token samples to 100 wastes 267 tokens > one more batch
    assert [sorted(b.tolist()) for b in plan_least_cost(lens, limits, 50)] == [[1, 3], [0, 2, 4]]
    # overhead 1000: a second forward pass costs more than all the padding
    assert [sorted(b.tolist()) for b in plan_least_cost(lens, limits, 1000)] == [[0, 1, 2, 3, 4]]


def test_server_plans_a_backlog_into_length_sorted_batches_oldest_first():
    """A worker that finds a mixed backlog runs it as least-cost batches (oldest first), holds the rest
    for its next calls, and hands every sample out exactly once."""
    from sut.base import Work

    fs = make_features()
    sut = get_sut_class("Server")([FakeBackend()], QuerySampleLibrary(fs), "classification",
                                  SUTOptions(max_batch=8, token_budget=0, max_wait_ms=0,
                                             batch_overhead_tokens=16))  # fmt: skip
    long_ = [int(i) for i in np.argsort(-fs.lengths)[:3]]
    short = [int(i) for i in np.argsort(fs.lengths)[:3]]
    order = [short[0], long_[0], short[1], long_[1], short[2], long_[2]]
    for t, i in enumerate(order):
        sut._queue.put(Work([100 + i], [i], float(t)))
    first = sut._next_work(0)
    second = sut._next_work(0)
    assert sorted(first.indices.tolist()) == sorted(short) and first.t == 0.0
    assert sorted(second.indices.tolist()) == sorted(long_) and second.t == 1.0
    assert first.ids == [100 + i for i in first.indices.tolist()]
    assert not sut._carry and sut._queue.empty()


def test_results_parse_real_summaries_keep_reasons():
    text = """Scenario : SingleStream\nResult is : INVALID\n  Min duration satisfied : NO
  Min queries satisfied : Yes\n  Early stopping satisfied: Yes
 * Early stopping 90.0th percentile estimate: 733992\n90.00 percentile latency (ns)   : 729456\n"""
    res = Results.from_summary(text, Path("/nonexistent"), "performance", True)
    assert res.validity == "INVALID" and res.constraints_failed == ("min duration",)
    assert res.early_stopping_latency_ns == 733992 and res.latency_ns == {"p90": 729456}
    assert res.early_stopping_queries_short is None
    # a Server trial that met its latency bound but ran too few queries to show it (LoadGen 5.x)
    text = """Scenario : Server\nResult is : INVALID\n  Performance constraints satisfied : Yes
  Min duration satisfied : Yes\n  Min queries satisfied : Yes\n  Early stopping satisfied: NO
Early Stopping Result:\n * Run unsuccessful.\n * Processed 1219 queries.
 * Would need to run at least 517 more queries,\n with the run being successful if every additional
 query were under latency.\n"""
    res = Results.from_summary(text, Path("/nonexistent"), "performance", True)
    assert res.constraints_failed == ("early stopping",)
    assert res.early_stopping_queries_short == 517


def test_each_worker_warms_its_backend_on_its_own_thread(monkeypatch):
    """The warm-up runs on the worker thread (PyTorch's OpenMP pool is per thread) before start()
    returns; a failing warm-up becomes the run's failure and its samples are completed empty."""

    threads: list[str] = []
    fs = make_features()
    sut = get_sut_class("Offline")(
        [FakeBackend()],
        QuerySampleLibrary(fs),
        "classification",
        SUTOptions(max_batch=8, token_budget=256),
        warm_up=lambda b: threads.append(threading.current_thread().name),
    )
    with sut:
        assert threads == ["sut-worker-0"]  # done before start() returned
    completed: list[tuple[int, int]] = []
    monkeypatch.setattr(
        lg, "QuerySamplesComplete", lambda rs: completed.extend((r.id, r.size) for r in rs)
    )

    def boom(backend):
        raise RuntimeError("no memory for the warm-up batch")

    sut = get_sut_class("Offline")([FakeBackend()], QuerySampleLibrary(fs), "classification",
                                   SUTOptions(max_batch=8, token_budget=256), warm_up=boom)  # fmt: skip
    with sut:
        assert "warm-up: RuntimeError: no memory" in sut.failure_text
        sut.qsl.load_query_samples([1, 2])
        sut.issue_queries([11, 12], [1, 2])
        for _ in range(200):
            if len(completed) == 2:
                break
            threading.Event().wait(0.01)
    assert sorted(completed) == [(11, 0), (12, 0)]
