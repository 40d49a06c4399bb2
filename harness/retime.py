"""`run --retime` (alias `--probe`): the samples LoadGen issued, timed again without LoadGen.

Right after the test, in the same process, on the very samples of that test: Offline runs them through
a plain loop with the SUT's batching (sut.batching.plan_batches, or the run's pad_to), SingleStream as
back-to-back single-sample forwards. Together with the model calls the SUT timed during the test
(`SUT.record_issued`) this gives both sides of the benchmark's ratios (bench/benchmark.py) in one
process, on the same samples, minutes apart at most: on a shared machine whose speed drifts between
minutes, that is what makes a ratio mean something. results.json keeps these figures under "retimed".

Every timing runs on a fresh thread (`on_new_thread`): the SUT ran the model on its worker threads,
and a thread that uses PyTorch after another one did can be slowed by the first one's idle OpenMP pool
(see harness.runner.warm_up), which would flatter the ratio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from harness.config import RunConfig
from models.base import Backend
from sut.batching import BatchLimits, plan_batches
from tasks.qsl import QuerySampleLibrary

T = TypeVar("T")


def time_batches(backend: Backend, qsl: QuerySampleLibrary, batches: list[np.ndarray]) -> float:
    """Seconds to run `batches` (qsl indices, loaded) through `backend`, batch building included."""
    t0 = time.perf_counter()
    for idx in batches:
        b = qsl.batch(idx)
        backend.predict(*b.inputs)
    return time.perf_counter() - t0


def plain_loop_sps(
    backend: Backend,
    qsl: QuerySampleLibrary,
    indices: np.ndarray,
    limits: BatchLimits,
    pad_to: int | None = None,
) -> float:
    """samples/s of a bare loop over `indices` with the Offline SUT's batching under `limits` (or,
    with `pad_to`, batch 1 padded to pad_to tokens: the reference design)."""
    qsl.load_query_samples(np.unique(indices).tolist())
    if pad_to is None:
        batches = [indices[pos] for pos in plan_batches(qsl.lengths[indices], limits)]
    else:
        batches = [indices[i : i + 1] for i in range(len(indices))]
    saved, qsl.pad_to = qsl.pad_to, pad_to
    try:
        return len(indices) / time_batches(backend, qsl, batches)
    finally:
        qsl.pad_to = saved
        qsl.unload_query_samples(np.unique(indices).tolist())


def bare_single_p90_ms(backend: Backend, qsl: QuerySampleLibrary, indices: np.ndarray) -> float:
    """p90 in ms of single-sample forwards (no padding), as SingleStream issues them."""
    qsl.load_query_samples(np.unique(indices).tolist())
    times = [time_batches(backend, qsl, [indices[i : i + 1]]) * 1e3 for i in range(len(indices))]
    qsl.unload_query_samples(np.unique(indices).tolist())
    return float(np.percentile(times, 90))


def on_new_thread(fn: Callable[[], T]) -> T:
    """fn() run on a fresh thread (its own PyTorch OpenMP pool, see harness.runner.warm_up); its
    result, or its exception re-raised here."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="retime")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def retime_issued(
    cfg: RunConfig,
    backend: Backend,
    qsl: QuerySampleLibrary,
    issued: list[Any],
    predict_s: list[float] | None = None,
) -> dict[str, Any]:
    """The results.json "retimed" figures of one run: `issued` (every query's qsl indices, in issue
    order) timed again on `backend`, and `predict_s` (the seconds of every backend.predict call in
    the test) summarised. {} for scenarios without a plain-loop counterpart (Server)."""
    indices = np.concatenate([np.asarray(q, dtype=np.int64).ravel() for q in issued])
    out: dict[str, Any] = {"samples": len(indices)}
    if cfg.scenario == "Offline":
        limits = cfg.sut_options().limits
        key = "plain_loop_samples_per_second"
        fn = lambda: plain_loop_sps(backend, qsl, indices, limits, cfg.pad_to)  # noqa: E731
        if predict_s:
            out["in_run_predict_samples_per_second"] = round(len(indices) / sum(predict_s), 3)
    elif cfg.scenario == "SingleStream":
        key, fn = "bare_p90_ms", lambda: bare_single_p90_ms(backend, qsl, indices)
        if predict_s:
            out["in_run_predict_p90_ms"] = round(float(np.percentile(predict_s, 90)) * 1e3, 4)
    else:
        return {}
    out[key] = round(on_new_thread(fn), 4)
    return out
