"""The SUT contract shared by every scenario, and the one response-packing helper.

Threads and what runs where:
  * LoadGen's thread calls `issue_queries(ids, indices)` (ConstructFastSUT) and `flush_queries()`:
    they only append one work item to a queue (O(1), no numpy, no logging).
  * `workers` worker threads, each owning one Backend instance (`Backend.predict` is single-threaded
    per instance) and warming it up itself before `start()` returns (a PyTorch OpenMP pool belongs
    to the thread that uses it; see harness.runner.warm_up), take work via the scheduler's
    `_next_work` (the only part a scenario defines), build the padded batch from the QSL, run the
    backend, and complete the batch with ONE `QuerySamplesComplete` call (`respond`).
  * a monitor thread (the watchdog) bounds stalls: when samples are outstanding and nothing was
    issued or completed for `watchdog_s`, it records a failure and completes everything outstanding
    with empty responses. Where the scenario bounds its drain (`drain_factor`, Server), it also ends
    the test early when the backlog cannot finish by `drain_factor` x min duration + DRAIN_GRACE_S.
  * `end_early(reason)` (any thread: the runner on SIGINT/SIGTERM, the drain bound) completes
    everything outstanding and, from then on, every new query at once inside `issue_queries`, with
    empty responses and without computing: LoadGen then ends as fast as its schedule allows.

Exactly-once completion: a batch is registered in `_in_flight` before it runs and whoever removes it
from there (its worker, or the watchdog) completes it; queued work is completed by whoever dequeues it.
No exception leaves a LoadGen callback: every failure is recorded (`failure`, first one wins), the
affected samples are completed with empty responses, and from then on work is completed empty without
computing, so LoadGen finishes quickly and the runner exits non-zero.

Non-finite outputs: each packer counts the samples whose response holds a NaN or Inf (`nonfinite`,
per batch, a few vectorised operations); the runner reports them and fails accuracy runs.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import mlperf_loadgen as lg
import numpy as np

from models.base import Backend
from sut.batching import BatchLimits
from tasks.qsl import QuerySampleLibrary


# --- responses ----------------------------------------------------------------------------------
@dataclass
class Packed:
    """Responses of one batch: byte addresses/sizes inside `buffer` (kept alive by this object);
    nonfinite: how many of the batch's responses hold a NaN or Inf."""

    buffer: np.ndarray | list[np.ndarray] | None
    addresses: list[int]
    sizes: list[int]
    nonfinite: int = 0


def pack_rows(out: np.ndarray, lengths: np.ndarray) -> Packed:
    """classification [B, C] / retrieval [B, H]: one response per row, no copy for float32 C-order."""
    out = np.ascontiguousarray(out, dtype=np.float32)
    base, stride = out.ctypes.data, out.strides[0]
    n = len(out)
    bad = int((~np.isfinite(out.reshape(n, -1))).any(axis=1).sum()) if n else 0
    return Packed(out, (base + stride * np.arange(n)).tolist(), [out[0].nbytes] * n if n else [], bad)


def pack_qa(out: np.ndarray, lengths: np.ndarray) -> Packed:
    """qa [B, 2, L]: sample i's response is out[i, :, :len_i] row-major (starts then ends), float32."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.asarray(out, dtype=np.float32)
    buf = np.concatenate([out[i, :, :n].ravel() for i, n in enumerate(lengths.tolist())])
    sizes = 2 * 4 * lengths
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    seen = np.concatenate([[0], np.cumsum(~np.isfinite(buf))])  # non-finite values before each float
    bad = int((seen[(starts + sizes) // 4] > seen[starts // 4]).sum())  # padding is not counted
    return Packed(buf, (buf.ctypes.data + starts).tolist(), sizes.tolist(), bad)


def pack_mixed(out: Any, lengths: np.ndarray) -> Packed:
    """A mixed run's batch (tasks/mixed.py MixedOutput): each task's rows packed by its kind's packer,
    the responses put back in row order; every part's buffer is kept alive with the Packed."""
    lengths = np.asarray(lengths, dtype=np.int64)
    addresses, sizes = [0] * len(lengths), [0] * len(lengths)
    answers = np.zeros(len(lengths), dtype=np.int64)  # per row: how many parts answer it
    buffers, bad = [], 0
    for rows, kind, part in out.parts:
        p = PACKERS[kind](part, lengths[rows])
        buffers.append(p.buffer)
        for r, a, n in zip(rows.tolist(), p.addresses, p.sizes, strict=True):
            addresses[r], sizes[r] = a, n
        np.add.at(answers, rows, 1)
        bad += p.nonfinite
    if (wrong := np.flatnonzero(answers != 1)).size:
        r = int(wrong[0])
        raise ValueError(
            f"mixed output answers row {r} of a batch of {len(lengths)} {answers[r]} times: "
            "each row must be answered exactly once"
        )
    return Packed(buffers, addresses, sizes, bad)


PACKERS: dict[str, Callable[[Any, np.ndarray], Packed]] = {
    "classification": pack_rows,
    "retrieval": pack_rows,
    "qa": pack_qa,
    "mixed": pack_mixed,  # several tasks in one run (tasks/mixed.py): rows of several kinds
}


def respond(ids: Sequence[int], packed: Packed | None) -> None:
    """THE one place responses are built and `QuerySamplesComplete` is called (once per batch).

    packed=None completes every id with an empty response (failure path). `packed` (and so its
    buffer) is referenced until `QuerySamplesComplete` returns, which is when LoadGen has copied it.
    """
    if packed is None:
        responses = [lg.QuerySampleResponse(i, 0, 0) for i in ids]
    else:
        responses = [
            lg.QuerySampleResponse(i, a, n)
            for i, a, n in zip(ids, packed.addresses, packed.sizes, strict=True)
        ]
    lg.QuerySamplesComplete(responses)
    del packed  # only now may the buffer go


# --- options and work ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SUTOptions:
    """Scheduling knobs, each with its one default (a CPU's; `for_device` gives another device's).
    LoadGen timing knobs live in user.conf, not here; `harness run`'s flags are generated from these
    fields (harness/config.py).

    max_batch / token_budget: batch limits (see sut/batching.py); SingleStream ignores them.
    max_wait_ms: Server only, how long a batch may wait for more samples after its first one arrived.
    workers: worker threads, one Backend instance each.
    watchdog_s: stall bound (see module doc); 0 disables it.
    gather: Server only, the most samples one planning step takes off the queue (0 = 4 x max_batch).
    batch_overhead_tokens: Server only, the fixed cost of one forward pass in padded tokens' worth of
      compute, which decides when a backlog is better run as several length-sorted batches.
    """

    max_batch: int = 32
    token_budget: int = 4096
    max_wait_ms: float = 2.0
    workers: int = 1
    watchdog_s: float = 60.0
    gather: int = 0
    batch_overhead_tokens: int = 192

    @classmethod
    def for_device(cls, kind: str) -> SUTOptions:
        """The defaults on a device of `kind` (cpu | cuda): `DEVICE_OPTIONS` over the class's."""
        return cls(**DEVICE_OPTIONS[kind])

    def __post_init__(self) -> None:
        BatchLimits(self.max_batch, self.token_budget)  # validates both
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if min(self.max_wait_ms, self.watchdog_s, self.gather, self.batch_overhead_tokens) < 0:
            raise ValueError("max_wait_ms, watchdog_s, gather and batch_overhead_tokens must be >= 0")

    @property
    def gather_limit(self) -> int:
        """Server: the most samples a planning step takes off the queue (`gather`, or 4 x max_batch)."""
        return self.gather or 4 * self.max_batch

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(self.max_batch, self.token_budget)


# device kind -> its defaults where they differ from SUTOptions' (flags override). CPU: one worker
# owning all intra-op threads. batch_overhead_tokens: a forward pass's fixed cost in padded tokens.
DEVICE_OPTIONS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "cuda": {
        "max_batch": 256,
        "token_budget": 65536,
        "workers": 2,
        "max_wait_ms": 5.0,
        "batch_overhead_tokens": 4096,
    },
}


@dataclass
class Work:
    """Samples to run: LoadGen ids (python ints) and qsl indices, with the monotonic enqueue time.
    planned=False: a raw query from issue_queries; True: a batch already cut by a scheduler."""

    ids: list[int]
    indices: Any  # list[int] or int64 array
    t: float
    planned: bool = False
    key: int = field(default=0, compare=False)


STOP = Work([], [], 0.0, planned=True)  # sentinel: one per worker at shutdown
DRAIN_GRACE_S = 10.0  # added to drain_factor x min duration (see SUT.bound_drain)


class SUT(ABC):
    """A LoadGen SUT over a QSL and one Backend per worker thread. Subclasses define `_next_work`."""

    scenario: ClassVar[str]
    # A backlog must drain by drain_factor x min duration + DRAIN_GRACE_S (0: no bound; an Offline
    # run's length is its query's size, SingleStream never has more than one sample outstanding).
    drain_factor: ClassVar[float] = 0.0

    def __init__(
        self,
        backends: Sequence[Backend],
        qsl: QuerySampleLibrary,
        task_kind: str,
        options: SUTOptions,
        warm_up: Callable[[Backend], None] | None = None,
    ):
        if len(backends) != options.workers:
            raise ValueError(f"need one backend per worker: {len(backends)} for {options.workers}")
        self.backends = list(backends)
        self.qsl = qsl
        self.pack = PACKERS[task_kind]
        self.options = options
        self.warm_up = warm_up  # run by each worker on its own thread before start() returns
        self.failure: BaseException | None = None
        self.failure_text = ""
        self.failed = threading.Event()
        self.issued = 0  # samples; written by LoadGen's thread only
        self.completed = 0  # samples; under _lock
        self.batches = 0
        self.nonfinite = 0  # samples whose response held a NaN or Inf; under _lock
        self.first_issue: float | None = None  # time.monotonic() of the first issue_queries
        self.flushed = False  # LoadGen called flush_queries: no more queries will come
        self.stop_reason: str | None = None  # why end_early ended the test (interrupt, drain bound)
        self._ending = threading.Event()
        self._drain_bound: tuple[float, float] | None = None  # (bound s, min duration s)
        # `record_issued()`: every query's qsl indices in issue order, and the seconds of every
        # backend.predict call (`run --retime`, harness/retime.py; off by default)
        self.issued_log: list[Any] | None = None
        self.predict_s: list[float] | None = None
        # queue.Queue, not SimpleQueue: SimpleQueue.get(timeout) can wait past its deadline until the
        # next put when another thread takes the item that woke it (CPython 3.11; a Server gather
        # then holds a sample after LoadGen's last query: tests/test_sut.py, 'wake_up'). Its put
        # costs about 0.5 us against SimpleQueue's 0.02-0.03 on these 2 cores (CPython 3.11.7;
        # 5 ms/s at 10k QPS): python -m timeit -s 'import queue; q = queue.Queue()' 'q.put(1)'
        self._queue: queue.Queue[Work] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight: dict[int, Work] = {}
        # worker -> batches it took off the queue and planned but has not run yet (Server); handed
        # over with dict.pop, so exactly one of the worker and the watchdog ever gets each
        self._carry: dict[int, list[Work]] = {}
        self._keys = iter(range(1, 1 << 62))
        self._last_activity = time.monotonic()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- LoadGen callbacks (LoadGen's thread) -------------------------------------------------
    def issue_queries(self, ids: list[int], indices: list[int]) -> None:
        """ConstructFastSUT's issue callback: enqueue only (ended early: complete at once, empty)."""
        try:
            now = time.monotonic()
            if self.first_issue is None:
                self.first_issue = now
            self._last_activity = now
            self.issued += len(ids)
            if self.issued_log is not None:
                self.issued_log.append(indices)
            if self._ending.is_set():
                self._complete_empty(Work(ids, indices, now))  # never raises (see _respond)
                return
            self._queue.put(Work(ids, indices, now))  # the last step: queued work is not ours
        except BaseException as exc:  # noqa: BLE001 - nothing may escape into LoadGen
            self._fail(exc, "issue_queries")
            self._complete_empty(Work(ids, indices, 0.0))

    def record_issued(self) -> None:
        """From now on keep `issued_log` and `predict_s` (call before the test starts)."""
        self.issued_log, self.predict_s = [], []

    def flush_queries(self) -> None:
        """Nothing is held back waiting for more queries; note that no more will come."""
        self.flushed = True

    def guard(self, fn: Callable[[list[int]], None], where: str) -> Callable[[list[int]], None]:
        """Wrap a QSL callback so that an exception is recorded instead of reaching LoadGen."""

        def wrapped(indices: list[int]) -> None:
            try:
                fn(indices)
            except BaseException as exc:  # noqa: BLE001
                self._fail(exc, where)

        return wrapped

    # --- lifecycle (the runner's thread) --------------------------------------------------------
    def start(self) -> None:
        """Start the workers; returns once each has warmed up its backend (a failing warm-up is
        recorded as the run's failure, and that worker then completes everything empty)."""
        ready = [threading.Event() for _ in self.backends]
        for w, backend in enumerate(self.backends):
            t = threading.Thread(
                target=self._worker, args=(w, backend, ready[w]), name=f"sut-worker-{w}", daemon=True
            )
            t.start()
            self._threads.append(t)
        for event in ready:
            event.wait()
        if self.options.watchdog_s or self._drain_bound:
            t = threading.Thread(target=self._watchdog, name="sut-watchdog", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop workers and watchdog; a worker stuck in `predict` is left behind (daemon thread)."""
        for _ in self.backends:
            self._queue.put(STOP)
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> SUT:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scheduling (worker threads) ------------------------------------------------------------
    @abstractmethod
    def _next_work(self, worker: int) -> Work | None:
        """Block until the next batch to run is formed; None = stop. Runs on worker `worker`."""

    def _worker(self, worker: int, backend: Backend, ready: threading.Event) -> None:
        try:
            if self.warm_up is not None:
                self.warm_up(backend)
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc, "warm-up")
        finally:
            ready.set()
        while True:
            try:
                work = self._next_work(worker)
            except BaseException as exc:  # noqa: BLE001
                self._fail(exc, "scheduler")
                continue
            if work is None:
                return
            self._run(backend, work)

    def _run(self, backend: Backend, work: Work) -> None:
        with self._lock:
            work.key = next(self._keys)
            self._in_flight[work.key] = work
        packed = None
        if not self.failed.is_set() and not self._ending.is_set():
            try:
                batch = self.qsl.batch(work.indices)
                t0 = time.perf_counter()
                out = backend.predict(*batch.inputs)  # + the rows' tasks in a mixed run
                if self.predict_s is not None:
                    self.predict_s.append(time.perf_counter() - t0)
                packed = self.pack(out, batch.lengths)
            except BaseException as exc:  # noqa: BLE001
                self._fail(exc, f"batch of {len(work.ids)} samples")
        with self._lock:
            mine = self._in_flight.pop(work.key, None) is not None
        if mine:
            self._respond(work, packed)

    def _respond(self, work: Work, packed: Packed | None) -> None:
        try:
            respond(work.ids, packed)
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc, "QuerySamplesComplete")
        with self._lock:
            self.completed += len(work.ids)
            self.batches += 1
            self.nonfinite += packed.nonfinite if packed is not None else 0
            self._last_activity = time.monotonic()

    def _complete_empty(self, work: Work) -> None:
        self._respond(work, None)

    # --- failure handling -----------------------------------------------------------------------
    def _fail(self, exc: BaseException, where: str) -> None:
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = exc
                self.failure_text = f"{where}: {type(exc).__name__}: {exc}\n" + "".join(
                    traceback.format_exception(exc)
                )
        if first:
            self.failed.set()
            print(f"SUT failure in {where}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def _drain(self, claim_in_flight: bool) -> None:
        """Complete queued work (and, on a stall, in-flight work) with empty responses."""
        if claim_in_flight:
            with self._lock:
                stuck, self._in_flight = list(self._in_flight.values()), {}
            for worker in list(self._carry):
                stuck.extend(self._carry.pop(worker, None) or [])
            for work in stuck:
                self._complete_empty(work)
        stops = 0
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is STOP:
                stops += 1
            else:
                self._complete_empty(work)
        for _ in range(stops):
            self._queue.put(STOP)

    # --- ending early (interrupt, drain bound) --------------------------------------------------
    def end_early(self, reason: str) -> None:
        """Any thread: complete everything outstanding now, and every later query inside
        `issue_queries`, with empty responses (nothing computed). Not a SUT failure; the first
        reason is kept in `stop_reason`."""
        with self._lock:
            if self.stop_reason is not None:
                return
            self.stop_reason = reason
        self._ending.set()
        print(f"ending the test early: {reason}", file=sys.stderr, flush=True)
        self._drain(claim_in_flight=True)

    def bound_drain(self, min_duration_s: float) -> None:
        """Before start(): bound the drain to drain_factor x min_duration_s + DRAIN_GRACE_S after the
        first query (no-op where drain_factor is 0)."""
        if self.drain_factor:
            self._drain_bound = (self.drain_factor * min_duration_s + DRAIN_GRACE_S, min_duration_s)

    def _check_drain(self) -> None:
        """End the test when the backlog cannot drain within the bound: past the bound, or, once
        LoadGen has issued everything, when the rate so far says it would finish past it."""
        if self._drain_bound is None or self.first_issue is None or self._ending.is_set():
            return
        bound, min_duration = self._drain_bound
        elapsed = time.monotonic() - self.first_issue
        outstanding, done = self.issued - self.completed, self.completed
        if outstanding <= 0:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        finish = elapsed + outstanding / rate if rate > 0 else float("inf")
        if elapsed > bound or (self.flushed and done and finish > bound):
            self.end_early(
                f"drain bound: {outstanding} samples outstanding {elapsed:.0f} s after the first "
                f"query; at {rate:.1f} samples/s they would finish at about {finish:.0f} s, past "
                f"{bound:g} s ({self.drain_factor:g} x min duration {min_duration:g} s + "
                f"{DRAIN_GRACE_S:g} s)"
            )

    def _watchdog(self) -> None:
        limit = self.options.watchdog_s or float("inf")
        while not self._stopping.wait(min(0.1, limit / 4)):
            self._check_drain()
            stalled = self.issued > self.completed and time.monotonic() - self._last_activity > limit
            if stalled:
                n = self.issued - self.completed
                self._fail(
                    TimeoutError(f"no batch completed for {limit:g} s, {n} samples outstanding"),
                    "watchdog",
                )
            if self.failed.is_set():
                self._drain(claim_in_flight=stalled)
