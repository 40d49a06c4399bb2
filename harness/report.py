"""Collect run folders (results.json + run_config.json + accuracy.json) into a table, a CSV and plots.

Input: any tree containing the runner's run folders `.../<MODEL>/<TASK>/<Scenario>/<mode>/results.json`
(run_config.json and, for accuracy runs, accuracy.json beside it). Nothing here runs a model.

Output (`write_report`): `<out>/study.csv` (one row per variant = model x task x backend label),
`<out>/study_runs.csv` (one row per run folder), `<out>/study.md` and PNG figures (Agg backend):
throughput.png, latency.png, accuracy_vs_throughput.png, server_latency.png.
Units: throughput in samples/s (Offline) or queries/s (Server), latencies in milliseconds.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The headline metric of each task (XTREME conventions, see TASKS.md); others are kept in `metrics`.
PRIMARY_METRIC = {
    "xnli": "accuracy",
    "pawsx": "accuracy",
    "tatoeba": "accuracy",
    "tydiqa": "f1",
    "bucc": "f1",
}
NS_PER_MS = 1e6


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


def backend_label(config: dict[str, Any]) -> str:
    """The study's name for a backend + dtype: fp32 is implicit, anything else is a suffix."""
    backend = str(config.get("backend", "?"))
    opts = config.get("backend_options") or {}
    dtype = opts.get("dtype") or config.get("dtype") or "fp32"
    return backend if dtype == "fp32" else f"{backend}-{dtype}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _ms(latency: dict[str, Any], key: str) -> float | None:
    value = latency.get(key)
    return None if value is None else float(value) / NS_PER_MS


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _metrics(accuracy: dict[str, Any], task: str) -> tuple[str | None, float | None, dict[str, float]]:
    """(metric name, value, per-language values) from an accuracy.json, tolerant of its nesting."""
    name = PRIMARY_METRIC.get(task, "accuracy")
    metrics = accuracy.get("metrics", accuracy)
    value = metrics.get(name) if isinstance(metrics, dict) else None
    langs = accuracy.get("per_language") or (
        metrics.get("per_language") if isinstance(metrics, dict) else None
    )
    per_language: dict[str, float] = {}
    for lang, v in (langs or {}).items():
        v = v.get(name) if isinstance(v, dict) else v
        if isinstance(v, int | float):
            per_language[lang] = float(v)
    return (name if value is not None else None), _float(value), per_language


def load_run(results_path: Path) -> Run:
    """Flatten one run folder (the folder of `results_path`). Missing files give None fields."""
    folder = results_path.parent
    res = _read_json(results_path)
    cfg = _read_json(folder / "run_config.json")
    parts = folder.parts
    # Path fallbacks: .../<MODEL>/<TASK>/<Scenario>/<mode>
    model = cfg.get("model") or parts[-4]
    task = cfg.get("task") or parts[-3]
    lat = res.get("latency_ns") or {}
    es = res.get("early_stopping_latency_ns")
    es_p90 = es.get("p90") if isinstance(es, dict) else es
    metric, value, per_lang = _metrics(_read_json(folder / "accuracy.json"), task)
    return Run(
        path=str(folder),
        model=str(model),
        task=str(task),
        scenario=str(res.get("scenario") or cfg.get("scenario") or parts[-2]),
        mode=str(res.get("mode") or cfg.get("mode") or parts[-1]),
        backend=backend_label(cfg),
        encoder=str(cfg.get("encoder", "")),
        model_kind=str(cfg.get("model_kind", "")),
        result_valid=res.get("result_valid"),
        samples_per_second=_float(res.get("samples_per_second")),
        target_qps=_float(res.get("target_qps")),
        completed_qps=_float(res.get("completed_qps")),
        scheduled_qps=_float(res.get("scheduled_qps")),
        p50_ms=_ms(lat, "p50"),
        p90_ms=_ms(lat, "p90"),
        p99_ms=_ms(lat, "p99"),
        early_stopping_p90_ms=None if es_p90 is None else float(es_p90) / NS_PER_MS,
        duration_s=_float(cfg.get("duration_s")),
        metric=metric,
        metric_value=value,
        per_language=per_lang,
    )


def collect_runs(root: str | Path) -> list[Run]:
    """Every run folder under `root` (sorted by path, so the output is deterministic)."""
    return [load_run(p) for p in sorted(Path(root).rglob("results.json"))]


# ----------------------------------------------------------------------------------------------
# One row per variant
# ----------------------------------------------------------------------------------------------
VARIANT_COLUMNS = (
    "model", "task", "backend", "encoder", "model_kind",
    "offline_samples_per_s", "offline_valid",
    "singlestream_p90_ms", "singlestream_p99_ms", "singlestream_valid",
    "server_target_qps", "server_completed_qps", "server_p99_ms", "server_valid",
    "metric", "metric_value",
)  # fmt: skip


def _best_server(runs: list[Run]) -> Run | None:
    """The highest offered Server load that is VALID (else the lowest offered load, to show failure)."""
    if not runs:
        return None
    valid = [r for r in runs if r.result_valid]
    key = lambda r: r.target_qps or 0.0  # noqa: E731
    return max(valid, key=key) if valid else min(runs, key=key)


def variant_rows(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """Group runs by (model, task, backend): the table rows, in a stable order."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.model, r.task, r.backend), []).append(r)
    rows = []
    for (model, task, backend), rs in sorted(groups.items()):
        perf = {r.scenario: r for r in rs if r.mode == "performance" and r.scenario != "Server"}
        acc = next((r for r in rs if r.mode == "accuracy" and r.metric_value is not None), None)
        server = _best_server([r for r in rs if r.mode == "performance" and r.scenario == "Server"])
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


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def overhead_rows(rows: list[dict[str, Any]], reference: str = "full") -> list[dict[str, Any]]:
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


def int8_language_deltas(runs: Iterable[Run], task: str = "xnli") -> list[dict[str, Any]]:
    """Per-language accuracy of onnxruntime-int8 minus fp32 onnxruntime, per model (points x 100)."""
    acc = {
        (r.model, r.backend): r
        for r in runs
        if r.task == task and r.mode == "accuracy" and r.per_language
    }
    out = []
    for (model, backend), r in sorted(acc.items()):
        ref = acc.get((model, "onnxruntime")) if backend == "onnxruntime-int8" else None
        if ref is None:
            continue
        for lang in sorted(set(r.per_language) & set(ref.per_language)):
            out.append({"model": model, "language": lang, "fp32": ref.per_language[lang],
                        "int8": r.per_language[lang], "delta": r.per_language[lang] - ref.per_language[lang]})  # fmt: skip
    return out


def markdown(
    rows: list[dict[str, Any]],
    runs: list[Run],
    title: str = "Efficiency study",
    figures: Sequence[str] = (),
    command: str | None = None,
) -> str:
    """The study.md text: how it was made, the variant table, the overhead table, the int8
    per-language table, and the figures that were actually written."""
    from harness.info import device_info

    dev = device_info()
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`  "]
    lines += [f"Machine: {dev['cpu_model']}, {dev['cpu_cores']} cores, {dev['memory_gib']} GiB.", ""]
    kinds = sorted({r["model_kind"] for r in rows if r["model_kind"]})
    if kinds:
        lines += [
            f"Model kind(s): {', '.join(kinds)} (tiny = the offline zoo; random = speed only).",
            "",
        ]
    head = ["model", "task", "backend", "Offline samples/s", "SS p90 ms", "SS p99 ms", "Server QPS",
            "Server p99 ms", "metric", "value", "all valid"]  # fmt: skip
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        flags = [
            r[k] for k in ("offline_valid", "singlestream_valid", "server_valid") if r[k] is not None
        ]
        cells = [r["model"], r["task"], r["backend"], _fmt(r["offline_samples_per_s"]),
                 _fmt(r["singlestream_p90_ms"], 2), _fmt(r["singlestream_p99_ms"], 2),
                 _fmt(r["server_completed_qps"]), _fmt(r["server_p99_ms"], 2), _fmt(r["metric"]),
                 _fmt(r["metric_value"], 2), _fmt(all(flags)) if flags else "-"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    over = overhead_rows(rows)
    if over:
        lines += ["", "## Offline throughput relative to `full` (same task and backend)", "",
                  "| model | task | backend | ratio | cost % |", "|---|---|---|---|---|"]  # fmt: skip
        for r in over:
            lines.append(f"| {r['model']} | {r['task']} | {r['backend']} | {r['ratio_vs_full']:.3f} | "
                         f"{r['cost_pct']:+.1f} |")  # fmt: skip
    deltas = int8_language_deltas(runs)
    if deltas:
        lines += ["", "## XNLI accuracy per language: int8 minus fp32 (ONNX Runtime)", "",
                  "| model | language | fp32 | int8 | delta |", "|---|---|---|---|---|"]  # fmt: skip
        for d in deltas:
            lines.append(f"| {d['model']} | {d['language']} | {d['fp32']:.2f} | {d['int8']:.2f} | "
                         f"{d['delta']:+.2f} |")  # fmt: skip
        mean = statistics.fmean(d["delta"] for d in deltas)
        lines += ["", f"Mean change over models and languages: {mean:+.2f}."]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write_report(
    runs_root: str | Path, out: str | Path, title: str = "Efficiency study", command: str | None = None
) -> dict[str, Path]:
    """Collect `runs_root`, write csv/md/png under `out`; returns {name: path} of what was written."""
    from harness.plots import write_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(runs_root)
    rows = variant_rows(runs)
    written = {"csv": out / "study.csv", "runs_csv": out / "study_runs.csv", "md": out / "study.md"}
    write_csv(rows, written["csv"], VARIANT_COLUMNS)
    run_dicts = [asdict(r) for r in runs]
    write_csv(
        run_dicts, written["runs_csv"], [k for k in Run.__dataclass_fields__ if k != "per_language"]
    )
    figures = write_plots(rows, runs, out)
    names = sorted(path.name for path in figures.values())
    written["md"].write_text(markdown(rows, runs, title, names, command))
    written.update(figures)
    return written
