"""What the benchmark's sections (sut, ray, peak) share, and what research's study and multitask
commands take from here (`built`, `interleaved`, `round_ratios`): building and sizing runs, the
Server load search, interleaved timing, the FLOP count of a shape, and a report's head and output.
docs/benchmark.md defines every figure; nothing here is a stored measurement."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import RunConfig
from harness.info import device_info
from harness.launch import Launched, launch_with_conf
from harness.retime import plain_loop_sps
from harness.run_record import Results
from harness.runner import Workload, prepare, warm_up
from models.base import Backend
from models.e5 import parse_wheels
from sut.batching import BatchLimits
from zoo.recipe import build_what_a_run_serves


def built(cfg: RunConfig, selected: dict | None = None) -> RunConfig:
    """`cfg`, once the zoo stages it serves are built (`harness run` only serves, so every tool that
    starts or prepares a run builds them first, as `make run` does; ValueError when it cannot), with
    a selection's choices where given (zoo/recipe.py `build_for_run`)."""
    wheels = parse_wheels(cfg.e5_wheels)
    build_what_a_run_serves(
        cfg.model, cfg.task, cfg.encoder, cfg.weights, cfg.models_dir, wheels, selected=selected
    )
    return cfg


# --- in-process estimates (they only size the LoadGen runs; every ratio comes from the runs) -------
@contextmanager
def prepared(cfg: RunConfig) -> Iterator[Workload]:
    """`cfg`'s workload, prepared and warmed up as a run would, closed on exit."""
    work = prepare(built(cfg))
    try:
        warm_up(work)
        yield work
    finally:
        work.close()


def draw(work: Workload, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` sample indices of the workload's QSL, with replacement."""
    return rng.choice(work.qsl.total_sample_count, n)


def loop_sps(
    work: Workload,
    batching: BatchLimits,
    n: int,
    rng: np.random.Generator,
    *,
    pad_to: int | None = None,
    backend: Backend | None = None,
) -> float:
    """Samples/s of a plain loop over `n` drawn samples batched by `batching`, on `backend` (default:
    the workload's first), padded to `pad_to` when given."""
    backend = backend or work.backends[0]
    return plain_loop_sps(backend, work.qsl, draw(work, n, rng), batching, pad_to=pad_to)


# --- LoadGen runs (child processes) ---------------------------------------------------------------
def results(run: Launched) -> Results:
    """A child run's results; empty when it failed (its folder may still hold an older run's)."""
    return (run.results or Results()) if run.rc == 0 else Results()


def errors(runs: dict[str, Launched]) -> list[str]:
    """One line per run that gave no figures."""
    return [f"{n}: exit {r.rc}, see {r.log}" for n, r in runs.items() if r.rc != 0 or r.results is None]


def child(
    cfg: RunConfig, runs_dir: Path, name: str, scenario: str, knob: str, value: float, **changes: Any
) -> Launched:
    """One child run of `cfg` (with `changes`) in `scenario` into runs_dir/name, its user.conf the
    run's own plus `<model>.<scenario>.<knob> = value`; INVALID results are kept."""
    digits = 3 if knob == "target_latency" else 2
    line = f"{cfg.loadgen_model_name}.{scenario}.{knob} = {value:.{digits}f}"
    return launch_with_conf(built(cfg), [line], name, runs_dir, scenario=scenario, **changes)


def server_search(
    cfg: RunConfig, rate: float, fractions: list[float], name: str, runs_dir: Path, runs: dict, **kw: Any
) -> list[dict[str, Any]]:
    """Server runs offered fraction x `rate` QPS, in the given order, until one is VALID (each run
    added to `runs` as `<name>_<fraction>`); one row per run tried."""
    tried = []
    for frac in fractions:
        key = f"{name}_{frac:g}"
        runs[key] = child(cfg, runs_dir, key, "Server", "target_qps", frac * rate, **kw)
        res = results(runs[key])
        p99, qps = res.latency_ms("p99") or 0.0, round(frac * rate, 2)
        tried.append({"fraction": frac, "target_qps": qps, "valid": res.result_valid, "p99_ms": p99})
        if res.result_valid:
            break
    return tried


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """a / b rounded, None when either is missing or zero."""
    return round(a / b, digits) if a and b else None


def verdict(value: float | None, target: float, lower_is_better: bool = False) -> str:
    """met or MISSED against `target`; n/a for a figure that was not measured."""
    if value is None:
        return "n/a"
    return "met" if (value <= target if lower_is_better else value >= target) else "MISSED"


def best_valid(tried: list[dict[str, Any]]) -> float:
    """The highest VALID load of a Server search (0 when none was VALID)."""
    return max((r["target_qps"] for r in tried if r["valid"]), default=0.0)


def server_text(tried: list[dict[str, Any]]) -> str:
    """A Server search for a report: "87.3 QPS VALID p99 55.0 ms; ..."."""
    return "; ".join(
        f"{s['target_qps']} QPS {'VALID' if s['valid'] else 'INVALID'} p99 {s['p99_ms']:.1f} ms"
        for s in tried
    )


# --- in-process timing and compute ----------------------------------------------------------------
def flops_per_sample(config: dict[str, Any], lengths: np.ndarray) -> float:
    """Mean useful FLOPs per sample of an encoder of `config` over unpadded token `lengths`: per
    layer 2 L (4 d^2 + 2 d f) for Q, K, V, O and the two FFN matmuls, + 4 L^2 d for Q K^T and P V
    (embeddings, norms, GELU and the head are not counted)."""
    d, f, n = (int(config[k]) for k in ("hidden_size", "intermediate_size", "num_hidden_layers"))
    L = np.asarray(lengths, dtype=np.float64)
    return float(np.mean(n * (2.0 * L * (4 * d * d + 2 * d * f) + 4.0 * L * L * d)))


def best_seconds(call: Callable[[], Any], repeats: int, warm: int = 2) -> float:
    """The fastest of `repeats` timed calls after `warm` untimed ones (a peak: the least disturbed)."""
    for _ in range(warm):
        call()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(
    sides: dict[str, tuple[Callable[..., Any], list[tuple]]], repeats: int, settle_s: float = 0.02
) -> dict[str, dict[str, Any]]:
    """Samples/s of each side (a predict and its batches of arguments) over `repeats` rounds, after
    one warm-up call per side: each batch runs on every side back to back, the order rotating from
    batch to batch and round to round, so a drift in machine speed hits all sides alike. Per side:
    the median, the spread (max/min - 1) and the per-round rates."""
    names = list(sides)
    for predict, batches in sides.values():
        predict(*batches[0])
    rounds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for i in range(max(len(batches) for _, batches in sides.values())):
            k = (r + i) % len(names)
            for name in names[k:] + names[:k]:
                predict, batches = sides[name]
                if i < len(batches):
                    time.sleep(settle_s)  # the previous side's thread pool stops spin-waiting
                    t0 = time.perf_counter()
                    predict(*batches[i])
                    spent[name] += time.perf_counter() - t0
        for name, (_, batches) in sides.items():
            rounds[name].append(sum(len(b[0]) for b in batches) / spent[name])
    return {
        n: {"samples_per_s": statistics.median(r), "spread": max(r) / min(r) - 1, "rounds": r}
        for n, r in rounds.items()
    }


def round_ratios(res: dict[str, dict[str, Any]], new: str, old: str) -> list[float]:
    """new/old samples/s of `interleaved`'s sides, round by round (both timed in the same round)."""
    return [a / b for a, b in zip(res[new]["rounds"], res[old]["rounds"], strict=True)]


# --- reports --------------------------------------------------------------------------------------
def load_average() -> list[float]:
    """The machine's load average (1, 5, 15 min): what a figure competed with on a shared machine."""
    return [round(x, 2) for x in os.getloadavg()]


def header(title: str, command: str, *more: str) -> list[str]:
    """A report's first lines: title, the command, the machine and when; then `more` lines."""
    dev = device_info()
    machine = f"{dev['cpu_model']}, {dev['cpu_cores']} cores, {dev['memory_gib']} GiB"
    if dev["gpus"]:
        machine += ", " + ", ".join(g["name"] for g in dev["gpus"])
    when = time.strftime("%Y-%m-%d %H:%M")
    return [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}; measured {when}.  ",
        *more,
    ]


def publish(text: str, record: Any, json_path: Path, out: str | Path | None) -> None:
    """Print a report, keep its record as JSON, and write the report to `out` ('' or None = no)."""
    print(text)
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
