"""The study's figures (matplotlib, Agg backend: no display needed; docs/study.md shows each).

Inputs are the report's variant rows, Run records, round ratios and accuracy study; each function
writes one PNG and returns its path, or None when there is nothing to draw.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.lines import Line2D  # noqa: E402

MODEL_COLORS = {
    "full": "tab:blue",
    "full-squad": "tab:cyan",
    "adapter": "tab:red",
    "adapter-squad": "tab:orange",
    "lora-squad": "tab:green",
}
BACKEND_MARKERS = {"pytorch": "o", "onnxruntime": "s", "onnxruntime-int8": "^"}
PERCENTILES = ("min", "p50", "p90", "p95", "p97", "p99", "p99.9", "max")


def _panels(tasks: Sequence[str], width: float, height: float):
    """One panel per task side by side."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(width * len(tasks), height), squeeze=False)
    return fig, zip(axes[0], tasks, strict=True)


def _save(fig, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (within `rect` of the figure, default all of it), write and close."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_bars(rows: list[dict[str, Any]], path: Path, keys: dict[str, str], what: str, unit: str):
    """One bar per variant and key (`keys`: row key -> label), one panel per task, stacked."""
    rows = [r for r in rows if any(r[k] for k in keys)]
    if not rows:
        return None
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(len(tasks), 1, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    width = 0.8 / len(keys)
    for ax, task in zip((a[0] for a in axes), tasks, strict=True):
        sub = [r for r in rows if r["task"] == task]
        for k, (key, label) in enumerate(keys.items()):
            xs = [i + k * width for i in range(len(sub))]
            ax.bar(xs, [r[key] or 0.0 for r in sub], width=width, label=label)
        ticks = [i + width * (len(keys) - 1) / 2 for i in range(len(sub))]
        names = [f"{r['model']}\n{r['backend']}" for r in sub]
        ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{task}: {what}")
        ax.set_ylabel(unit)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy_vs_throughput(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One point per model/backend: task metric (y) against Offline samples/s (x), a panel per task."""
    rows = [r for r in rows if r["metric_value"] is not None and r["offline_samples_per_s"]]
    if not rows:
        return None
    fig, panels = _panels(sorted({r["task"] for r in rows}), 5, 4.2)
    for ax, task in panels:
        for r in (r for r in rows if r["task"] == task):
            xy = (r["offline_samples_per_s"], r["metric_value"])
            ax.scatter(*xy, marker=BACKEND_MARKERS.get(r["backend"], "D"))
            label = f"{r['model']}/{r['backend']}"
            ax.annotate(label, xy, fontsize=6, xytext=(3, 3), textcoords="offset points")
        metric = next(r["metric"] for r in rows if r["task"] == task)
        ax.set_title(f"{task}: {metric} vs throughput")
        ax.set_xlabel("Offline samples/s")
        ax.set_ylabel(metric)
    return _save(fig, path)


def plot_server(runs: list[Any], path: Path) -> Path | None:
    """Server p99 latency against offered QPS, one line per model/task/backend; round 0 only."""
    lines: dict[str, list[Any]] = {}
    for r in runs:
        if r.scenario == "Server" and r.mode == "performance" and r.target_qps and not r.round:
            lines.setdefault(f"{r.model}/{r.task}/{r.backend}", []).append(r)
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
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


def plot_pareto(study, runs: list[Any], path: Path) -> Path | None:
    """Measured accuracy (each backend's own accuracy run, the 95% CI where there is one) against
    Offline samples/s (median, min-max over rounds), a panel per task, the Pareto front dashed."""
    by: dict[tuple[str, str, str], list[float]] = {}
    for r in runs:
        if r.scenario == "Offline" and r.mode == "performance" and r.samples_per_second and not r.seed:
            by.setdefault((r.task, r.model, r.backend), []).append(r.samples_per_second)
    speed = {k: (statistics.median(v), min(v), max(v)) for k, v in by.items()}
    measured = {
        (r.task, r.model, r.backend): r.metric_value
        for r in runs
        if r.mode == "accuracy" and r.metric_value is not None and not r.seed
    }
    tasks = sorted({t for t, m, b in speed if (t, m, b) in measured})
    if not tasks:
        return None
    metric = {r.task: r.metric for r in runs if r.metric}
    fig, panels = _panels(tasks, 6, 4.6)
    for ax, task in panels:
        points = []
        for (t, model, backend), (med, lo, hi) in sorted(speed.items()):
            if t != task or (y := measured.get((t, model, backend))) is None:
                continue
            ci = (study.figures.get((t, model)) or {}).get("average") if backend == "pytorch" else None
            ax.errorbar(
                med,
                y,
                xerr=[[med - lo], [hi - med]],
                yerr=[[y - ci.low], [ci.high - y]] if ci is not None else None,
                fmt=BACKEND_MARKERS.get(backend, "D"),
                color=MODEL_COLORS.get(model, "gray"),
                capsize=3,
                markersize=6,
            )
            points.append((med, y))
        front = sorted(
            p
            for p in points
            if not any(q[0] >= p[0] and q[1] > p[1] or q[0] > p[0] and q[1] >= p[1] for q in points)
        )
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", linewidth=0.8)
        ax.set_title(f"{task}: {metric.get(task, '')} vs Offline throughput (measured points)")
        ax.set_xlabel("Offline samples/s (median, min-max over rounds)")
        ax.set_ylabel(f"{metric.get(task, '')} (95% CI where computed)")
    entries = [(m, c, "o") for m, c in MODEL_COLORS.items()]
    entries += [(b, "gray", mk) for b, mk in BACKEND_MARKERS.items()]
    handles = [Line2D([], [], color=c, marker=mk, linestyle="", label=name) for name, c, mk in entries]
    # two rows: one row of 8 entries is wider than the figure and was cut at both sides
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    return _save(fig, path, rect=(0, 0.13, 1, 1))


def plot_languages(study, path: Path, task: str, models: Sequence[str] = ("full", "adapter")):
    """Per-language score of `models` side by side, with 95% CI error bars."""
    present = [m for m in models if (task, m) in study.figures]
    if len(present) < 2:
        return None
    langs = list(study.figures[(task, present[0])]["per_language"])
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(langs) * len(present)), 4))
    width = 0.8 / len(present)
    for k, model in enumerate(present):
        per = [study.figures[(task, model)]["per_language"][lang] for lang in langs]
        xs = [i + k * width for i in range(len(langs))]
        err = [[c.value - c.low for c in per], [c.high - c.value for c in per]]
        color = MODEL_COLORS.get(model)
        ax.bar(xs, [c.value for c in per], width=width, yerr=err, capsize=2, label=model, color=color)
    ax.set_xticks([i + width * (len(present) - 1) / 2 for i in range(len(langs))], langs)
    ax.set_ylabel(f"{study.metric.get(task, '')} (95% CI)")
    ax.set_title(f"{task}: per language, zero-shot from English")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_latency_distribution(runs: list[Any], path: Path, backend: str = "pytorch") -> Path | None:
    """SingleStream latency percentiles (LoadGen's summary) per model, round 0, a panel per task."""
    ss = [
        r
        for r in runs
        if r.scenario == "SingleStream" and r.mode == "performance" and r.backend == backend
        if not r.round and not r.seed and r.latency_pct_ms
    ]
    if not ss:
        return None
    fig, panels = _panels(sorted({r.task for r in ss}), 6, 4)
    for ax, task in panels:
        for r in sorted((r for r in ss if r.task == task), key=lambda r: r.model):
            ms = [r.latency_pct_ms[k] for k in PERCENTILES if k in r.latency_pct_ms]
            ax.plot(range(len(ms)), ms, marker="o", color=MODEL_COLORS.get(r.model), label=r.model)
        ax.set_xticks(range(len(PERCENTILES)), PERCENTILES)
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{task}: SingleStream latency distribution ({backend})")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_adapter_cost(ratio_rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Offline samples/s of each model relative to full, per backend: median bar, min-max whisker
    over the interleaved rounds (collect.round_ratios); the dashed line is 1.0 (full's speed)."""
    rows = [r for r in ratio_rows if r["figure"] == "offline" and r["rounds"] > 1]
    if not rows:
        return None
    fig, panels = _panels(sorted({r["task"] for r in rows}), 6, 4)
    for ax, task in panels:
        sub = [r for r in rows if r["task"] == task]
        backends = list(dict.fromkeys(r["backend"] for r in sub))
        models = list(dict.fromkeys(r["model"] for r in sub))
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            got = {r["backend"]: r for r in sub if r["model"] == model}
            xs = [i + k * width for i, b in enumerate(backends) if b in got]
            bars = [got[b] for b in backends if b in got]
            err = [[b["median"] - b["min"] for b in bars], [b["max"] - b["median"] for b in bars]]
            median = [b["median"] for b in bars]
            ax.bar(
                xs, median, width=width, yerr=err, capsize=3, label=model, color=MODEL_COLORS.get(model)
            )
        ax.axhline(1.0, color="k", linestyle="--", linewidth=0.8)
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(backends))], backends)
        ax.set_ylabel("Offline samples/s / full's (same round)")
        ax.set_title(f"{task}: cost at inference relative to full")
        ax.legend(fontsize=8)
    return _save(fig, path)


# bar figure -> (row key -> label, what, unit)
BARS = {
    "throughput": ({"offline_samples_per_s": "Offline"}, "Offline throughput", "samples/s"),
    "latency": (
        {"singlestream_p90_ms": "p90", "singlestream_p99_ms": "p99"},
        "SingleStream latency",
        "ms",
    ),
}


def write_plots(
    rows: list[dict[str, Any]], runs: list[Any], study, ratios: list[dict[str, Any]], out: Path
) -> dict[str, Path]:
    """Every figure that has data, the variants' then those with uncertainty; {figure name: path}."""
    made = {name: plot_bars(rows, out / f"{name}.png", *spec) for name, spec in BARS.items()}
    made |= {
        "accuracy_vs_throughput": plot_accuracy_vs_throughput(rows, out / "accuracy_vs_throughput.png"),
        "server_latency": plot_server(runs, out / "server_latency.png"),
        "pareto": plot_pareto(study, runs, out / "pareto.png"),
        "languages_xnli": plot_languages(study, out / "languages_xnli.png", "xnli"),
        "languages_tydiqa": plot_languages(study, out / "languages_tydiqa.png", "tydiqa"),
        "latency_distribution": plot_latency_distribution(runs, out / "latency_distribution.png"),
        "adapter_cost": plot_adapter_cost(ratios, out / "adapter_cost.png"),
    }
    return {k: v for k, v in made.items() if v is not None}
