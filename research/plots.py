"""The study's figures (matplotlib, Agg backend: no display needed).

Inputs are report.py's variant rows and Run records; each function writes one PNG and returns its path,
or None when there is nothing to draw (e.g. no Server runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def _tasks(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({r["task"] for r in rows})


def _grouped_bars(ax, rows: list[dict[str, Any]], keys: Sequence[str], labels: Sequence[str]) -> None:
    """One bar group per variant label, one bar per key (None -> no bar)."""
    names = [f"{r['model']}\n{r['backend']}" for r in rows]
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(zip(keys, labels, strict=True)):
        xs = [i + k * width for i in range(len(rows))]
        ax.bar(xs, [r[key] or 0.0 for r in rows], width=width, label=label)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(rows))], names, rotation=60,
                  ha="right", fontsize=7)  # fmt: skip


def _figure(n: int, height: float = 3.6):
    fig, axes = plt.subplots(n, 1, figsize=(11, height * n), squeeze=False)
    return fig, [a[0] for a in axes]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_throughput(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Offline samples/s per variant, one panel per task."""
    rows = [r for r in rows if r["offline_samples_per_s"]]
    if not rows:
        return None
    tasks = _tasks(rows)
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        _grouped_bars(ax, [r for r in rows if r["task"] == task], ["offline_samples_per_s"], ["Offline"])
        ax.set_title(f"{task}: Offline throughput")
        ax.set_ylabel("samples/s")
    return _save(fig, path)


def plot_latency(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """SingleStream p90 and p99 latency per variant, one panel per task."""
    rows = [r for r in rows if r["singlestream_p90_ms"] or r["singlestream_p99_ms"]]
    if not rows:
        return None
    tasks = _tasks(rows)
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        sub = [r for r in rows if r["task"] == task]
        _grouped_bars(ax, sub, ["singlestream_p90_ms", "singlestream_p99_ms"], ["p90", "p99"])
        ax.set_title(f"{task}: SingleStream latency")
        ax.set_ylabel("ms")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy_vs_throughput(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One point per model/backend: task metric (y) against Offline samples/s (x), a panel per task."""
    rows = [r for r in rows if r["metric_value"] is not None and r["offline_samples_per_s"]]
    if not rows:
        return None
    tasks = _tasks(rows)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.2), squeeze=False)
    markers = {"pytorch": "o", "onnxruntime": "s", "onnxruntime-int8": "^"}
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in rows if r["task"] == task):
            ax.scatter(
                r["offline_samples_per_s"], r["metric_value"], marker=markers.get(r["backend"], "D")
            )
            ax.annotate(f"{r['model']}/{r['backend']}", (r["offline_samples_per_s"], r["metric_value"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")  # fmt: skip
        metric = next(r["metric"] for r in rows if r["task"] == task)
        ax.set_title(f"{task}: {metric} vs throughput")
        ax.set_xlabel("Offline samples/s")
        ax.set_ylabel(metric)
    return _save(fig, path)


def plot_server(runs: list[Any], path: Path) -> Path | None:
    """Server p99 latency against offered QPS (target_qps), one line per model/task/backend."""
    server = [r for r in runs if r.scenario == "Server" and r.mode == "performance" and r.target_qps]
    if not server:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    lines: dict[str, list[Any]] = {}
    for r in server:
        lines.setdefault(f"{r.model}/{r.task}/{r.backend}", []).append(r)
    for label, rs in sorted(lines.items()):
        rs.sort(key=lambda r: r.target_qps)
        ax.plot([r.target_qps for r in rs], [r.p99_ms or 0.0 for r in rs], marker="o", label=label)
        bad = [r for r in rs if r.result_valid is False]
        ax.scatter([r.target_qps for r in bad], [r.p99_ms or 0.0 for r in bad], marker="x", color="red")
    ax.set_xlabel("offered load (target_qps)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("Server: p99 latency vs offered QPS (red x = INVALID)")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def write_plots(rows: list[dict[str, Any]], runs: list[Any], out: Path) -> dict[str, Path]:
    """All figures that have data; {figure name: path}."""
    made = {
        "throughput": plot_throughput(rows, out / "throughput.png"),
        "latency": plot_latency(rows, out / "latency.png"),
        "accuracy_vs_throughput": plot_accuracy_vs_throughput(rows, out / "accuracy_vs_throughput.png"),
        "server_latency": plot_server(runs, out / "server_latency.png"),
    }
    return {k: v for k, v in made.items() if v is not None}
