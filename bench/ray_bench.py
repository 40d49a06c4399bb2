"""The benchmark's Ray section (`python -m bench benchmark --sections ray`): thread executor vs
Ray, the no-op dispatch ceiling, Server through Ray, and bare Ray's round trips, measured side by
side in one run (docs/benchmark.md defines each figure)."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import measure
from common.tables import markdown_table
from harness.cli import floats
from harness.config import RunConfig
from models.backends import create_backend
from models.base import BackendOptions
from sut.batching import BatchLimits
from sut.ray_executor import ActorResources, RayExecutor

TARGETS = {"offline_ray_vs_thread": 0.90, "dispatch_ceiling": 40_000.0, "server_vs_offline_ray": 0.70}
RTT_SHAPE = (32, 128)  # the batch of the round-trip figures
# The Offline query of the thread-vs-Ray runs holds at least this many samples (about 130 batches of
# the tiny model): an estimate taken on a busy machine can be several times too low, and a query of
# a few batches measures start-up, not throughput.
OFFLINE_MIN_SAMPLES = 4096
NOOP_MAX_SAMPLES = 1_000_000  # bounds a no-op run whose in-process estimate flatters it


class _Zeros:
    """Bare Ray's actor for the reference figures: zeros for a batch, nothing else."""

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.zeros((len(input_ids), 3), dtype=np.float32)


def _timed(call: Callable[[], Any], calls: int) -> dict[str, float]:
    """Median and p99 in ms of `calls` sequential calls."""
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return {
        "median_ms": round(float(np.median(times)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
    }


def round_trips(served: Any, calls: int = 300, pipelined: int = 2000) -> dict[str, Any]:
    """Bare Ray (init, sequential round trip, pipelined calls/s to two actors) and the harness's
    proxy (RayExecutor with the no-op backend in one actor, sequential round trip), same batch."""
    # lazy: ray is an optional dependency (the `ray` extra), imported when the section runs
    import ray  # noqa: PLC0415

    ids = np.ones(RTT_SHAPE, dtype=np.int64)
    out: dict[str, Any] = {"batch": list(RTT_SHAPE)}
    t0 = time.perf_counter()
    ray.init(
        address="local",
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        num_cpus=max(2, os.cpu_count() or 1),
    )
    out["bare_init_s"] = round(time.perf_counter() - t0, 2)
    try:
        actors = [ray.remote(num_cpus=1)(_Zeros).remote() for _ in range(2)]
        ray.get([a.predict.remote(ids, ids) for a in actors])
        out["bare_round_trip"] = _timed(lambda: ray.get(actors[0].predict.remote(ids, ids)), calls)
        t = time.perf_counter()
        ray.get([actors[i % 2].predict.remote(ids, ids) for i in range(pipelined)])
        rate = pipelined / (time.perf_counter() - t)
        out["bare_pipelined_calls_per_s"] = round(rate, 1)
        out["bare_pipelined_samples_per_s"] = round(rate * RTT_SHAPE[0], 1)
        for a in actors:
            ray.kill(a)
        make = functools.partial(create_backend, "noop", served, BackendOptions())
        executor = RayExecutor.start(make, 1, ActorResources(1, 0))
        (proxy,) = executor.proxies(1)
        proxy.predict(ids, ids)
        out["proxy_round_trip"] = _timed(lambda: proxy.predict(ids, ids), calls)
        executor.close()
    finally:
        ray.shutdown()
    return out


def measure_ray(args: argparse.Namespace, config: Callable[..., RunConfig]) -> dict[str, Any]:
    """Every figure of the section, measured in this call (LoadGen runs as child processes) on the
    tiny zoo model; `config` makes the benchmark's RunConfig of an encoder."""
    load_before = measure.load_average()
    cfg = config("tiny", "zoo")
    runs_dir = Path(args.runs_dir) / "ray"
    rng = np.random.default_rng(0)
    with measure.prepared(cfg) as work:  # builds the tiny zoo entry on first use
        est = measure.loop_sps(work, cfg.sut_options().limits, 1024, rng)  # sizes the runs
        noop = create_backend("noop", work.served, BackendOptions())
        noop_est = measure.loop_sps(work, BatchLimits(32, 0), 4096, rng, backend=noop)
        served, model_kind = work.served, work.served.model_kind
    rtt = round_trips(served)
    # LoadGen issues 1.1 x D x target_qps samples
    offline_qps = max(1.5 * est, OFFLINE_MIN_SAMPLES / (1.1 * args.duration))
    run = functools.partial(measure.child, cfg, runs_dir, scenario="Offline", knob="target_qps")
    runs = {
        "offline_thread": run("offline_thread", value=offline_qps, workers=1, threads=2),
        "offline_ray": run("offline_ray", value=offline_qps, executor="ray", workers=2, threads=1),
        # control: the thread executor with Ray's layout (2 workers x 1 thread): what Ray itself costs,
        # apart from one process's two OpenMP threads against two single-threaded processes
        "offline_thread_2x1": run("offline_thread_2x1", value=offline_qps, workers=2, threads=1),
    }
    # the no-op runs: max_batch 32 and no token budget, so every batch holds 32 samples; sized from
    # in-process rates (thread: the no-op loop; Ray: bare Ray's pipelined rate), capped
    noop_qps = NOOP_MAX_SAMPLES / (1.1 * args.noop_duration)
    noop_run = functools.partial(
        run, backend="noop", max_batch=32, token_budget=0, duration_s=args.noop_duration
    )
    runs["noop_thread"] = noop_run("noop_thread", value=min(noop_est, noop_qps))
    actor_counts = [int(n) for n in floats(args.ray_actors)]
    for n in actor_counts:
        rate = min(rtt["bare_pipelined_samples_per_s"], noop_qps)
        runs[f"noop_ray_{n}"] = noop_run(f"noop_ray_{n}", value=rate, executor="ray", workers=n)
    res = {name: measure.results(r) for name, r in runs.items()}
    sps = {name: r.samples_per_second or 0.0 for name, r in res.items()}
    fractions = floats(args.ray_server_fractions) if sps["offline_ray"] else []
    layout = dict(workers=2, threads=1)
    search = functools.partial(measure.server_search, cfg, runs_dir=runs_dir, runs=runs, **layout)
    server_runs = search(sps["offline_ray"], fractions, "server_ray", executor="ray")
    # control: the thread executor (2 workers x 1 thread) at the last load tried through Ray, so an
    # INVALID Server run through Ray can be told from a machine that cannot hold the latency at all
    control = (
        search(server_runs[-1]["target_qps"], [1.0], "server_thread_control")[0] if server_runs else None
    )
    if control:
        del control["fraction"]
    ceiling = {n: sps[f"noop_ray_{n}"] for n in actor_counts}
    best_n = max(ceiling, key=lambda n: ceiling[n]) if ceiling else None
    return {
        "model": args.model,
        "task": args.task,
        "backend": args.backend,
        "model_kind": model_kind,
        "duration_s": args.duration,
        "offline_samples": int(res["offline_ray"].summary.get("samples_per_query", 0) or 0),
        "offline_thread_samples": int(res["offline_thread"].summary.get("samples_per_query", 0) or 0),
        "offline_thread_sps": round(sps["offline_thread"], 2),
        "offline_thread_2x1_sps": round(sps["offline_thread_2x1"], 2),
        "offline_ray_sps": round(sps["offline_ray"], 2),
        "offline_ray_actors": res["offline_ray"].ray.get("actors", []),
        "noop_thread_sps": round(sps["noop_thread"], 1),
        "noop_ray_sps": {str(n): round(v, 1) for n, v in ceiling.items()},
        "noop_best_actors": best_n,
        "round_trips": rtt,
        "server_runs": server_runs,
        "server_thread_control": control,
        "offline_ray_vs_thread": measure.ratio(sps["offline_ray"], sps["offline_thread"]),
        "dispatch_ceiling": round(ceiling[best_n], 1) if best_n is not None else None,
        "server_vs_offline_ray": measure.ratio(measure.best_valid(server_runs), sps["offline_ray"]),
        "load_average": {"before": load_before, "after": measure.load_average()},
        "errors": measure.errors(runs),
    }


def render_ray(r: dict[str, Any], command: str) -> str:
    """reports/benchmark_ray.md."""
    rt, kind = r["round_trips"], r["model_kind"]
    noop = "; ".join(
        f"{n} actor{'s' if n != '1' else ''} {v:,.0f}" for n, v in r["noop_ray_sps"].items()
    )
    control = ""
    if c := r.get("server_thread_control"):
        state = "VALID" if c["valid"] else "INVALID"
        at = f"at {c['target_qps']} QPS: {state} p99 {c['p99_ms']:.1f} ms"
        control = f"; control, threads 2 workers x 1 thread {at}"
    model = f"{kind}: {r['model']}/{r['task']} {r['backend']}"
    figures = {
        "offline_ray_vs_thread": (
            model,
            f"Ray 2 actors x 1 thread {r['offline_ray_sps']} / threads 1 worker x 2 threads "
            f"{r['offline_thread_sps']} samples/s (queries of {r['offline_samples']} and "
            f"{r['offline_thread_samples']} samples); control, threads 2 workers x 1 thread: "
            f"{r['offline_thread_2x1_sps']} samples/s",
        ),
        "dispatch_ceiling": (
            f"noop on {kind} shapes",
            f"samples/s through Ray at max_batch 32: {noop}; the thread executor (no Ray) "
            f"{r['noop_thread_sps']:,.0f}; bare Ray pipelined {rt['bare_pipelined_samples_per_s']:,.0f}",
        ),
        "server_vs_offline_ray": (
            model,
            f"{measure.server_text(r['server_runs'])} / Ray Offline {r['offline_ray_sps']} "
            f"samples/s{control}",
        ),
    }
    table = []
    for name, (model_cell, text) in figures.items():
        value, target, fmt = r[name], TARGETS[name], "{:,.0f}" if name == "dispatch_ceiling" else "{}"
        shown = None if value is None else fmt.format(value)
        table.append(
            [name, model_cell, shown, f">= {fmt.format(target)}", measure.verdict(value, target), text]
        )
    load, proxy, bare = r["load_average"], rt["proxy_round_trip"], rt["bare_round_trip"]
    actors = "; ".join(
        f"{a['name']} {a['samples']} samples in {a['batches']} batches "
        f"(node {str(a.get('node_id'))[:8]})"
        for a in r["offline_ray_actors"]
    )
    lines = measure.header(
        "Ray executor: figures measured side by side in one run",
        command,
        f"Load average (1, 5, 15 min): {load['before']} before, {load['after']} after.  ",
        f"Model kind `{kind}`: the repository's tiny zoo model (4 layers x 128; its figures say nothing "
        "about XLM-R's speed). `noop`: the no-op backend (zeros at once) on the same samples. Every Ray "
        "run starts its own embedded cluster on this machine.",
        "",
        *markdown_table(["figure", "model", "value", "target", "verdict", "figures"], table),
        "",
        f"Round trip of one {rt['batch'][0]} x {rt['batch'][1]} int64 batch, sequential calls from one "
        f"process (median / p99): through the harness's proxy {proxy['median_ms']} / {proxy['p99_ms']} "
        f"ms; bare Ray {bare['median_ms']} / {bare['p99_ms']} ms. Bare Ray, same run: init "
        f"{rt['bare_init_s']} s, {rt['bare_pipelined_calls_per_s']:,.0f} pipelined calls/s to two "
        f"actors = {rt['bare_pipelined_samples_per_s']:,.0f} samples/s.",
        "",
        f"Ray Offline, per actor: {actors}.",
    )
    if r["errors"]:
        lines += ["", "Errors: " + "; ".join(r["errors"])]
    return "\n".join(lines) + "\n"
