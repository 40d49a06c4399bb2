"""The study's figures, collected from run folders: one `Run` per folder, one row per variant.

Input: any tree of the runner's run folders (read through harness.run_record.RunRecord). Nothing here
runs a model or writes prose: research/answer.py turns these figures into words, research/report.py
writes study.csv, study_runs.csv, study.md and the figures. Latencies in ms; throughput in
samples/s (Offline) or queries/s (Server).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from harness.run_record import NS_PER_MS, Results, RunRecord, find_records
from tasks.registry import TASKS

REFERENCE = "full"  # the model every other one is compared with


def primary_metric(task: str) -> str | None:
    """The metric the study reports for `task` (its declaration in the task registry)."""
    cls = TASKS.get(task)
    return cls.primary_metric if cls else None


@dataclass
class Run:
    """One run folder, flattened. Latencies in ms; None where the run does not report the value."""

    path: str
    model: str
    task: str
    scenario: str
    mode: str
    backend: str  # label: pytorch | onnxruntime | onnxruntime-int8 | <backend>-<dtype>
    encoder: str = ""
    model_kind: str = ""
    result_valid: bool | None = None
    samples_per_second: float | None = None
    target_qps: float | None = None
    completed_qps: float | None = None
    scheduled_qps: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    early_stopping_p90_ms: float | None = None
    duration_s: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    per_language: dict[str, float] = field(default_factory=dict)
    seed: int = 0  # training seed of the zoo served
    round: int = 0  # the study's repeat of a performance cell (a `round-<R>` folder on its path)
    load_of: str | None = None  # Server at a common load: the model whose Offline rate set it
    latency_pct_ms: dict[str, float] = field(default_factory=dict)  # min, p50 ... p99.9, max
    parameters: int | None = None  # the served module's (PyTorch backend)
    parameter_bytes: int | None = None
    peak_rss_mib: float | None = None  # the run process's peak resident memory


def round_of(path: str | Path) -> int:
    """R when a component of `path` is `round-<R>` (research/study.py ROUND_DIR), else 0."""
    for part in Path(path).parts:
        if part.startswith("round-") and part[6:].isdigit():
            return int(part[6:])
    return 0


def load_of_path(path: str | Path) -> str | None:
    """M when a component of `path` is `qps-<F>-of-<M>` (research/study.py: a Server cell offered F x
    model M's Offline samples/s, the same load for every model), else None."""
    for part in Path(path).parts:
        head, sep, model = part.partition("-of-")
        if sep and head.startswith("qps-") and model:
            return model
    return None


def load_run(record: RunRecord) -> Run:
    """Flatten one run folder's record into the study's row (latencies in ms)."""
    res = record.results or Results()
    metric = primary_metric(record.task)
    value = record.metric(metric) if metric else None
    es = res.early_stopping_latency_ns
    return Run(
        path=str(record.path),
        model=record.model,
        task=record.task,
        scenario=record.scenario,
        mode=record.mode,
        backend=record.backend_label,
        encoder=record.encoder,
        model_kind=record.model_kind,
        result_valid=res.result_valid,
        samples_per_second=res.samples_per_second,
        target_qps=res.target_qps,
        completed_qps=res.completed_qps,
        scheduled_qps=res.scheduled_qps,
        p50_ms=res.latency_ms("p50"),
        p90_ms=res.latency_ms("p90"),
        p99_ms=res.latency_ms("p99"),
        early_stopping_p90_ms=None if es is None else float(es) / NS_PER_MS,
        duration_s=record.duration_s,
        metric=metric if value is not None else None,
        metric_value=value,
        per_language=record.per_language(metric) if metric else {},
        seed=record.seed,
        round=round_of(record.path),
        load_of=load_of_path(record.path),
        latency_pct_ms={k: float(v) / NS_PER_MS for k, v in res.latency_ns.items() if k != "mean"},
        parameters=record.backend_options.get("parameters"),
        parameter_bytes=record.backend_options.get("parameter_bytes"),
        peak_rss_mib=res.peak_rss_mib,
    )


def collect_runs(root: str | Path) -> list[Run]:
    """Every finished run folder under `root` (sorted by path, so the output is deterministic)."""
    return [load_run(r) for r in find_records(root) if r.results is not None]


# study_runs.csv's columns (write_report: every Run field but per_language and latency_pct_ms), typed
RUN_INT_FIELDS = ("seed", "round", "parameters", "parameter_bytes")
RUN_STR_FIELDS = (
    "path",
    "model",
    "task",
    "scenario",
    "mode",
    "backend",
    "encoder",
    "model_kind",
    "metric",
    "load_of",
)


def runs_from_csv(path: str | Path) -> list[Run]:
    """The runs of a study_runs.csv (the committed record of a study's run folders). Per-language
    figures, latency percentiles and per-sample scores are not in it: what needs them is left out."""
    runs = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values: dict[str, Any] = {}
            for name in Run.__dataclass_fields__:
                raw = row.get(name, "")
                if name not in row or raw == "":
                    continue  # the field's default (None, 0, "")
                if name == "result_valid":
                    values[name] = raw == "True"
                elif name in RUN_INT_FIELDS:
                    values[name] = int(raw)
                elif name in RUN_STR_FIELDS:
                    values[name] = raw
                else:
                    values[name] = float(raw)
            runs.append(Run(**values))
    return runs


# ----------------------------------------------------------------------------------------------
# One row per variant
# ----------------------------------------------------------------------------------------------
VARIANT_COLUMNS = (
    "model",
    "task",
    "backend",
    "encoder",
    "model_kind",
    "offline_samples_per_s",
    "offline_valid",
    "singlestream_p90_ms",
    "singlestream_p99_ms",
    "singlestream_valid",
    "server_target_qps",
    "server_completed_qps",
    "server_p99_ms",
    "server_valid",
    "server_invalid_above_qps",
    "metric",
    "metric_value",
)


def _best_server(runs: list[Run]) -> Run | None:
    """The highest offered Server load that is VALID (else the lowest offered load, to show failure)."""
    if not runs:
        return None
    valid = [r for r in runs if r.result_valid]
    key = lambda r: r.target_qps or 0.0  # noqa: E731
    return max(valid, key=key) if valid else min(runs, key=key)


def _invalid_above(runs: list[Run], best: Run | None) -> float | None:
    """The lowest INVALID offered Server load above the VALID `best` one: with it, a search brackets
    the peak (None when `best` is not VALID or nothing above it was tried)."""
    if best is None or not best.result_valid or best.target_qps is None:
        return None
    above = [
        r.target_qps for r in runs if not r.result_valid and (r.target_qps or 0.0) > best.target_qps
    ]
    return min(above) if above else None


def variant_rows(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """Group the seed-0 runs by (model, task, backend): the table rows, in a stable order."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        if r.seed or r.round:  # other seeds: training noise (research/accuracy.py); other rounds:
            continue  # the spread of the ratios (round_ratios)
        groups.setdefault((r.model, r.task, r.backend), []).append(r)
    rows = []
    for (model, task, backend), rs in sorted(groups.items()):
        perf = {r.scenario: r for r in rs if r.mode == "performance" and r.scenario != "Server"}
        acc = next((r for r in rs if r.mode == "accuracy" and r.metric_value is not None), None)
        searched = [
            r for r in rs if r.mode == "performance" and r.scenario == "Server" and not r.load_of
        ]
        server = _best_server(searched)
        off, ss = perf.get("Offline"), perf.get("SingleStream")
        rows.append(
            {
                "model": model,
                "task": task,
                "backend": backend,
                "encoder": rs[0].encoder,
                "model_kind": rs[0].model_kind,
                "offline_samples_per_s": off.samples_per_second if off else None,
                "offline_valid": off.result_valid if off else None,
                "singlestream_p90_ms": (ss.early_stopping_p90_ms or ss.p90_ms) if ss else None,
                "singlestream_p99_ms": ss.p99_ms if ss else None,
                "singlestream_valid": ss.result_valid if ss else None,
                "server_target_qps": server.target_qps if server else None,
                "server_completed_qps": server.completed_qps if server else None,
                "server_p99_ms": server.p99_ms if server else None,
                "server_valid": server.result_valid if server else None,
                "server_invalid_above_qps": _invalid_above(searched, server),
                "metric": acc.metric if acc else None,
                "metric_value": acc.metric_value if acc else None,
            }
        )
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path, columns: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def overhead_rows(rows: list[dict[str, Any]], reference: str = REFERENCE) -> list[dict[str, Any]]:
    """Offline throughput of each model relative to `reference` on the same task and backend."""
    ref = {
        (r["task"], r["backend"]): r["offline_samples_per_s"] for r in rows if r["model"] == reference
    }
    out = []
    for r in rows:
        base = ref.get((r["task"], r["backend"]))
        if r["model"] != reference and base and r["offline_samples_per_s"]:
            ratio = r["offline_samples_per_s"] / base
            out.append({**r, "ratio_vs_full": ratio, "cost_pct": 100.0 * (1.0 - ratio)})
    return out


# fp32 references for the int8 accuracy comparison, in order of preference: the same runtime when
# its fp32 run exists, else PyTorch fp32 (the same fp32 math; the study's default accuracy backends
# are pytorch and onnxruntime-int8, so ONNX Runtime fp32 usually has no accuracy run).
INT8_REFERENCES = ("onnxruntime", "pytorch")


def int8_language_deltas(runs: Iterable[Run], task: str = "xnli") -> list[dict[str, Any]]:
    """Per-language accuracy of onnxruntime-int8 minus an fp32 reference, per model and training
    seed (points): the int8 run and its reference serve the same seed's checkpoint, so the change
    is the quantisation's alone (another seed's fp32 run differs by its training noise).

    The reference is the model's onnxruntime (fp32) accuracy run of that seed when present, else
    its pytorch one; each row names it in `reference` and the seed in `seed`."""
    acc = {
        (r.model, r.backend, r.seed): r
        for r in runs
        if r.task == task and r.mode == "accuracy" and r.per_language
    }
    out = []
    for (model, backend, seed), r in sorted(acc.items()):
        if backend != "onnxruntime-int8":
            continue
        reference = next((b for b in INT8_REFERENCES if (model, b, seed) in acc), None)
        if reference is None:
            continue
        ref = acc[(model, reference, seed)]
        for lang in sorted(set(r.per_language) & set(ref.per_language)):
            fp32, int8 = ref.per_language[lang], r.per_language[lang]
            out.append(
                {
                    "model": model,
                    "seed": seed,
                    "reference": reference,
                    "language": lang,
                    "fp32": fp32,
                    "int8": int8,
                    "delta": int8 - fp32,
                }
            )
    return out


# Per-round figures: the ratio of each model to the reference within one round (the same minutes of
# the machine), then their spread over rounds (the study's --rounds). Server: only the runs at the
# load common to every model (a find_peak trial's load is the model's own).
ROUND_FIGURES = {
    "offline": ("Offline", "samples_per_second"),
    "singlestream_p90": ("SingleStream", "p90_ms"),
    "server_p99": ("Server", "p99_ms"),
}


def round_ratios(
    runs: Iterable[Run], reference: str = REFERENCE, across: str = "model"
) -> list[dict[str, Any]]:
    """One row per (figure, task, backend, model other than reference) with runs in at least one
    round: the ratio model / reference in every round where both ran, its median, min and max.
    Offline samples/s, SingleStream p90 ms and Server p99 ms at the common load (for latency, a
    ratio above 1 is a cost).
    across="backend": the same for each backend variant / the `reference` backend, per model."""
    other = {"model": "backend", "backend": "model"}[across]
    by: dict[tuple, float] = {}
    for r in runs:
        for fig, (scenario, attr) in ROUND_FIGURES.items():
            value = getattr(r, attr)
            common = r.scenario != "Server" or r.load_of is not None
            if r.mode == "performance" and r.scenario == scenario and value and not r.seed and common:
                by[(fig, r.task, getattr(r, other), getattr(r, across), r.round)] = float(value)
    rows = []
    keys = sorted({k[:4] for k in by if k[3] != reference})
    for fig, task, group, member in keys:
        both = [
            n
            for n in sorted({k[4] for k in by})
            if (fig, task, group, member, n) in by and (fig, task, group, reference, n) in by
        ]
        ratios = [by[(fig, task, group, member, n)] / by[(fig, task, group, reference, n)] for n in both]
        if ratios:
            rows.append(
                {
                    "figure": fig,
                    "task": task,
                    other: group,
                    across: member,
                    "ratios": ratios,
                    "round_numbers": both,
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "rounds": len(ratios),
                }
            )
    return rows


def cost_ratios(row: dict[str, Any]) -> list[float]:
    """A round_ratios row's ratios as costs (above 1: the model is slower than the reference):
    inverted for throughput (Offline samples/s), as they are for latency."""
    return [1.0 / r for r in row["ratios"]] if row["figure"] == "offline" else list(row["ratios"])


def per_round_cost(rows: Iterable[dict[str, Any]]) -> dict[int, float]:
    """Round number -> the geometric mean of the rows' costs (cost_ratios) in that round. The
    figures of one round share the machine's minutes, so the round, not the figure, is the
    independent unit of the interleaved design."""
    logs: dict[int, list[float]] = {}
    for row in rows:
        for n, cost in zip(row["round_numbers"], cost_ratios(row), strict=True):
            logs.setdefault(n, []).append(math.log(cost))
    return {n: math.exp(statistics.fmean(v)) for n, v in sorted(logs.items())}


def mean_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """The geometric mean of positive `values` (ratios) with Student's t interval on their logs
    (ValueError with fewer than 2 values)."""
    logs = [math.log(v) for v in values]
    if len(logs) < 2:
        raise ValueError(f"an interval needs at least 2 values, got {len(logs)}")
    mean = statistics.fmean(logs)
    half = stats.t.ppf(0.5 + level / 2, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def memory_rows(runs: Iterable[Run], reference: str = REFERENCE) -> list[dict[str, Any]]:
    """Per (task, model, backend), from the round-0 Offline performance run: parameters (PyTorch),
    extra parameters against `reference` on the same task, and the process's peak resident MiB."""
    offline = {
        (r.task, r.model, r.backend): r
        for r in runs
        if r.scenario == "Offline" and r.mode == "performance" and not r.round and not r.seed
    }
    rows = []
    for (task, model, backend), r in sorted(offline.items()):
        ref = offline.get((task, reference, backend))
        extra = (r.parameters - ref.parameters) if r.parameters and ref and ref.parameters else None
        rows.append(
            {
                "task": task,
                "model": model,
                "backend": backend,
                "parameters": r.parameters,
                "extra_parameters": extra,
                "parameter_mib": (r.parameter_bytes or 0) / 2**20 or None,
                "peak_rss_mib": r.peak_rss_mib,
            }
        )
    return rows
