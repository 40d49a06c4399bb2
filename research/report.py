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

from harness.run_record import NS_PER_MS, Results, RunRecord, find_records

# The headline metric of each task (XTREME conventions, see TASKS.md); others are kept in `metrics`.
PRIMARY_METRIC = {
    "xnli": "accuracy",
    "pawsx": "accuracy",
    "tatoeba": "accuracy",
    "tydiqa": "f1",
    "bucc": "f1",
}


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


def load_run(record: RunRecord) -> Run:
    """Flatten one run folder's record into the study's row (latencies in ms)."""
    res = record.results or Results()
    metric = PRIMARY_METRIC.get(record.task, "accuracy")
    value = record.metric(metric)
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
        per_language=record.per_language(metric),
    )


def collect_runs(root: str | Path) -> list[Run]:
    """Every finished run folder under `root` (sorted by path, so the output is deterministic)."""
    return [load_run(r) for r in find_records(root) if r.results is not None]


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


# fp32 references for the int8 accuracy comparison, in order of preference: the same runtime when
# its fp32 run exists, else PyTorch fp32 (the same fp32 math; the study's default accuracy backends
# are pytorch and onnxruntime-int8, so ONNX Runtime fp32 usually has no accuracy run).
INT8_REFERENCES = ("onnxruntime", "pytorch")


def int8_language_deltas(runs: Iterable[Run], task: str = "xnli") -> list[dict[str, Any]]:
    """Per-language accuracy of onnxruntime-int8 minus an fp32 reference, per model (points).

    The reference is the model's onnxruntime (fp32) accuracy run when present, else its pytorch one;
    each row names it in `reference`."""
    acc = {
        (r.model, r.backend): r
        for r in runs
        if r.task == task and r.mode == "accuracy" and r.per_language
    }
    out = []
    for (model, backend), r in sorted(acc.items()):
        if backend != "onnxruntime-int8":
            continue
        reference = next((b for b in INT8_REFERENCES if (model, b) in acc), None)
        if reference is None:
            continue
        ref = acc[(model, reference)]
        for lang in sorted(set(r.per_language) & set(ref.per_language)):
            out.append({"model": model, "reference": reference, "language": lang,
                        "fp32": ref.per_language[lang], "int8": r.per_language[lang],
                        "delta": r.per_language[lang] - ref.per_language[lang]})  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------
# The answer to the study's question, in words, from the figures only
# ----------------------------------------------------------------------------------------------
QUESTION = (
    "Does adapter-based fine-tuning after intermediate-task training keep the accuracy of full "
    "fine-tuning, and what does it cost or save at inference time?"
)
BACKEND_NAMES = {
    "pytorch": "PyTorch",
    "onnxruntime": "ONNX Runtime",
    "onnxruntime-int8": "ONNX Runtime int8",
}
TASK_NAMES = {
    "xnli": "XNLI",
    "pawsx": "PAWS-X",
    "tydiqa": "TyDiQA",
    "tatoeba": "Tatoeba",
    "bucc": "BUCC",
}
# How each non-reference model is served (models/registry.py), as the answer names it.
SERVED_AS = {"adapter": "adapter", "adapter-squad": "adapter-squad (AdapterFusion, folded)",
             "lora-squad": "lora-squad (merged)"}  # fmt: skip
# Models whose served graph is the one of `full` (plain weights; LoRA merged): their ratio is noise.
SAME_GRAPH_AS_FULL = ("full-squad", "lora-squad")
ADAPTER_MODELS = ("adapter", "adapter-squad")
KIND_NOTES = {
    "tiny": "tiny = a 4-layer, 128-wide model trained here for minutes, near chance on XNLI, so "
    "accuracy differences between models say nothing about XLM-R",
    "random": "random = random weights with the real shapes, speed only",
    "real": "real = trained checkpoints",
}


def _ordered_backends(labels: Iterable[str]) -> list[str]:
    known = [b for b in BACKEND_NAMES if b in labels]
    return known + sorted(set(labels) - set(known))


def _bname(backend: str) -> str:
    return BACKEND_NAMES.get(backend, backend)


def _tname(task: str) -> str:
    return TASK_NAMES.get(task, task)


def _pct(ratio: float) -> str:
    """A ratio as a signed whole-percent change: 0.91 -> '-9%', 1.02 -> '+2%' (never '-0%')."""
    return f"{round(100.0 * (ratio - 1.0)):+d}%"


def _span(values: Sequence[float], fmt: str = ".2f") -> str:
    lo, hi = min(values), max(values)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def _full_offline_sps(rows: list[dict[str, Any]], task: str) -> dict[str, float]:
    """backend -> Offline samples/s of `full` on `task` (backends without a figure left out)."""
    return {
        r["backend"]: r["offline_samples_per_s"]
        for r in rows
        if r["model"] == "full" and r["task"] == task and r["offline_samples_per_s"]
    }


def _cost_lines(rows: list[dict[str, Any]], task: str = "xnli") -> list[str]:
    """Offline throughput of adapter / adapter-squad / lora-squad relative to full, per backend,
    then the spread of the same-graph models as the noise level."""
    over = {(r["model"], r["backend"]): r for r in overhead_rows(rows) if r["task"] == task}
    full = _full_offline_sps(rows, task)
    subs = []
    for backend in _ordered_backends(full):
        parts = []
        for model, name in SERVED_AS.items():
            o = over.get((model, backend))
            if o:
                of_full = " of full" if not parts else ""
                parts.append(f"{name} {o['ratio_vs_full']:.2f}x{of_full} ({_pct(o['ratio_vs_full'])})")
        if parts:
            subs.append(f"  - {_bname(backend)}, {_tname(task)} (full {full[backend]:.1f} samples/s): "
                        + ", ".join(parts) + ".")  # fmt: skip
    noise = [o for (model, _), o in over.items() if model in SAME_GRAPH_AS_FULL]
    if noise:
        ratios = [o["ratio_vs_full"] for o in noise]
        names = sorted({o["model"] for o in noise}, key=SAME_GRAPH_AS_FULL.index)
        verb = "runs" if len(names) == 1 else "run"
        band = max(abs(r - 1.0) for r in ratios)  # the noise level, as a +- fraction around 1
        line = (f"  - Noise: {' and '.join(names)} {verb} the very graph of full; their ratios "
                f"({_span(ratios)} over {len(ratios)} run{'s' if len(ratios) > 1 else ''}) show the "
                f"noise of single short runs: up to {100.0 * band:.0f}% either way.")  # fmt: skip
        adapters = [o for (model, _), o in sorted(over.items()) if model in ADAPTER_MODELS]
        outside = [o for o in adapters if abs(o["ratio_vs_full"] - 1.0) > band]
        if outside:
            listed = ", ".join(f"{o['model']} on {_bname(o['backend'])} ({o['ratio_vs_full']:.2f}x)"
                               for o in outside)  # fmt: skip
            line += f" Adapter ratios beyond that noise: {listed}."
        elif adapters:
            line += " No adapter ratio is beyond that noise."
        subs.append(line)
    if not subs:
        return []
    return [f"- Cost at inference ({_tname(task)} Offline samples/s relative to full, same backend):",
            *subs]  # fmt: skip


def _relative(values: dict[str, float], base: float | None, keys: Sequence[str], unit: str,
              digits: int, name=lambda k: k) -> list[str]:  # fmt: skip
    """'<name> <value> <unit> (<ratio>x, <pct>)' for each of `keys` present, relative to `base`."""
    return [
        f"{name(k)} {values[k]:.{digits}f} {unit} ({values[k] / base:.2f}x, {_pct(values[k] / base)})"
        for k in keys
        if base and k in values
    ]


def _backend_line(rows: list[dict[str, Any]], task: str = "xnli") -> list[str]:
    """ONNX Runtime fp32 and int8 Offline throughput of `full` relative to PyTorch."""
    sps = _full_offline_sps(rows, task)
    base = sps.get("pytorch")
    parts = _relative(sps, base, ("onnxruntime", "onnxruntime-int8"), "samples/s", 1, _bname)
    if not parts:
        return []
    return [f"- Backends (full, {_tname(task)} Offline, relative to PyTorch at {base:.1f} samples/s): "
            + "; ".join(parts) + "."]  # fmt: skip


def _latency_line(rows: list[dict[str, Any]], task: str = "xnli", backend: str = "pytorch") -> list[str]:
    """SingleStream p90 of the adapter models against full, on one backend."""
    p90 = {
        r["model"]: r["singlestream_p90_ms"]
        for r in rows
        if r["task"] == task and r["backend"] == backend and r["singlestream_p90_ms"]
    }
    base = p90.get("full")
    parts = _relative(p90, base, ("adapter", "adapter-squad"), "ms", 2)
    if not parts:
        return []
    return [f"- Latency ({_bname(backend)}, {_tname(task)} SingleStream p90): full {base:.2f} ms; "
            + "; ".join(parts) + "."]  # fmt: skip


def _accuracy_lines(rows: list[dict[str, Any]], runs: list[Run]) -> list[str]:
    """Per task: each model's metric minus full's on one backend (pytorch preferred); the int8 mean."""
    subs = []
    value = {(r["task"], r["backend"], r["model"]): r for r in rows if r["metric_value"] is not None}
    for task in sorted({t for t, _, _ in value}):
        backends = _ordered_backends({b for t, b, _ in value if t == task})
        for backend in backends:
            full = value.get((task, backend, "full"))
            others = [
                r for (t, b, m), r in sorted(value.items()) if t == task and b == backend and m != "full"
            ]
            if full is None or not others:
                continue
            parts = [f"{r['model']} {r['metric_value']:.2f} ({r['metric_value'] - full['metric_value']:+.2f} points)"
                     for r in others]  # fmt: skip
            subs.append(f"  - {_tname(task)} {full['metric']}, {_bname(backend)}: full "
                        f"{full['metric_value']:.2f}; " + ", ".join(parts) + ".")  # fmt: skip
            break
    deltas = int8_language_deltas(runs)
    if deltas:
        refs: dict[str, list[str]] = {}
        for d in deltas:
            refs.setdefault(d["reference"], [])
            if d["model"] not in refs[d["reference"]]:
                refs[d["reference"]].append(d["model"])
        used = "; ".join(f"{_bname(b)} fp32 for {', '.join(ms)}" for b, ms in refs.items())
        mean = statistics.fmean(d["delta"] for d in deltas)
        subs.append(f"  - ONNX Runtime int8 minus fp32 (XNLI, per language): mean {mean:+.2f} points "
                    f"over {len(deltas)} model-language pairs (reference: {used}).")  # fmt: skip
    if not subs:
        return []
    return ["- Accuracy (each model minus full on the same backend, in points):", *subs]


def _variant_figures(change: dict[str, float], sign: int, fmt: str) -> str:
    """'adapter -5% (library form -12%), adapter-squad ..., lora-squad +0% vs full' from speed.json
    figures (sign -1 turns a cost into a throughput change)."""

    def fig(name: str) -> str:
        return format(sign * change[name] + 0.0, "+" + fmt)  # + 0.0: no "-0%"

    parts = [f"{m} {fig(m)}" + (f" (library form {fig(m + '-library')})" if m + "-library" in change else "")
             for m in ("adapter", "adapter-squad")]  # fmt: skip
    return ", ".join(parts) + f", lora-squad {fig('lora-squad')} vs full"


def _speed_lines(speed: dict[str, Any] | None) -> list[str]:
    """The in-process side-by-side figures of speed.json (parts b, d, f, g) in one bullet."""
    if not speed:
        return []
    subs = []
    for part, shape in (("d", "tiny"), ("f", "base")):
        p = speed.get(part) or {}
        cost, res = p.get("cost_vs_full") or {}, p.get("results") or {}
        if cost and res:
            spread = max(v["spread"] for v in res.values())
            subs.append(f"  - Timed, {shape} shape (part {part}): {_variant_figures(cost, -1, '.0%')}; the "
                        f"rounds spread up to {spread:.0%}, and lora-squad runs full's very graph, so its "
                        "figure is noise.")  # fmt: skip
    b = speed.get("b") or {}
    for shape, figs in (("tiny", b), ("base", b.get("base") or {})):
        if "fp32_vs_pytorch" in figs:
            subs.append(f"  - ONNX Runtime vs PyTorch, full, {shape} shape (part b): fp32 "
                        f"{figs['fp32_vs_pytorch']:.2f}x, int8 {figs['int8_vs_pytorch']:.2f}x.")  # fmt: skip
    for shape, g in (speed.get("g") or {}).items():
        if isinstance(g, dict) and "extra_vs_full" in g:
            subs.append(f"  - Counted FLOPs, {shape} shape (part g, no noise): "
                        f"{_variant_figures(g['extra_vs_full'], 1, '.1%')}.")  # fmt: skip
    if not subs:
        return []
    return ["- Side by side in one process ([speed.md](speed.md), random weights, Offline "
            "throughput):", *subs]  # fmt: skip


def _caveat_line(
    rows: list[dict[str, Any]], runs: list[Run], speed: dict[str, Any] | None, machine: str | None
) -> list[str]:
    kinds = sorted({r["model_kind"] for r in rows if r["model_kind"]})
    if kinds:
        notes = [KIND_NOTES[k] for k in kinds if k in KIND_NOTES]
        who = f"Figures come from model kind(s) {', '.join(kinds)}" + (
            f" ({'; '.join(notes)})" if notes else ""
        )
    else:
        who = "The model kind of these runs is not recorded"
    durations = sorted({r.duration_s for r in runs if r.mode == "performance" and r.duration_s})
    how = "a single short run"
    if durations:
        how += f" (min_duration {_span(durations, 'g')} s, no repeats)"
    how += f" on a shared {machine}" if machine else " on a shared machine"
    if speed is not None:
        link = ("Side-by-side ratios measured in one process: [speed.md](speed.md) "
                 "(`python -m research study --speed`).")  # fmt: skip
    else:
        link = "`python -m research study --speed` writes side-by-side ratios measured in one process."
    return [f"- Caveats: {who}. Each figure is {how}. {link}"]


def answer_lines(
    rows: list[dict[str, Any]],
    runs: list[Run],
    machine: str | None = None,
    speed: dict[str, Any] | None = None,
) -> list[str]:
    """The "Answer" section of study.md: bullets built only from the figures in `rows` / `runs`, each
    omitted when its figures are missing (the caveats always stay). `machine`: e.g. "2-core CPU
    (AMD EPYC)" for the caveat; `speed`: the parsed speed.json beside study.md (None: there is none),
    whose in-process figures get a bullet of their own and a link to speed.md."""
    lines = ["## Answer (from the figures above)", "", f"Question: {QUESTION}", ""]
    lines += _cost_lines(rows)
    lines += _backend_line(rows)
    lines += _latency_line(rows)
    lines += _accuracy_lines(rows, runs)
    lines += _speed_lines(speed)
    lines += _caveat_line(rows, runs, speed, machine)
    return lines


def markdown(
    rows: list[dict[str, Any]],
    runs: list[Run],
    title: str = "Efficiency study",
    figures: Sequence[str] = (),
    command: str | None = None,
    speed: dict[str, Any] | None = None,
) -> str:
    """The study.md text: how it was made, the variant table, the overhead table, the int8
    per-language table, the figures that were actually written, and the answer in words
    (`speed`: the parsed speed.json beside study.md, None if there is none)."""
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
        lines += ["", "## XNLI accuracy per language: ONNX Runtime int8 minus an fp32 reference", "",
                  "Reference: the model's ONNX Runtime fp32 accuracy run where there is one, else its "
                  "PyTorch fp32 run (the same fp32 math); the `reference` column names it.", "",
                  "| model | reference | language | fp32 | int8 | delta |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for d in deltas:
            lines.append(f"| {d['model']} | {d['reference']} | {d['language']} | {d['fp32']:.2f} | "
                         f"{d['int8']:.2f} | {d['delta']:+.2f} |")  # fmt: skip
        mean = statistics.fmean(d["delta"] for d in deltas)
        lines += ["", f"Mean change over models and languages: {mean:+.2f}."]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    machine = f"{dev['cpu_cores']}-core CPU ({dev['cpu_model']})"
    lines += [""] + answer_lines(rows, runs, machine=machine, speed=speed)
    return "\n".join(lines) + "\n"


def write_report(
    runs_root: str | Path, out: str | Path, title: str = "Efficiency study", command: str | None = None
) -> dict[str, Path]:
    """Collect `runs_root`, write csv/md/png under `out`; returns {name: path} of what was written."""
    from research.plots import write_plots

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
    # speed.json and speed.md are written together by `python -m research study --speed`
    speed = json.loads((out / "speed.json").read_text()) if (out / "speed.json").is_file() else None
    written["md"].write_text(markdown(rows, runs, title, names, command, speed))
    written.update(figures)
    return written
