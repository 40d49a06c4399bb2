"""The "Answer" section of study.md: the study's question answered in words, from the figures only.

Every sentence is built from the rows of research/collect.py (and speed.json's in-process figures);
a sentence whose figures are missing is left out. Names come from the registries: a model's serving
form (models/registry.py), a task's title (tasks/registry.py), a backend's title (models/backends.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from models.backends import BACKENDS
from models.registry import MODELS
from research.collect import (
    REFERENCE,
    Run,
    int8_language_deltas,
    mean_interval,
    overhead_rows,
    per_round_cost,
    round_ratios,
)
from tasks.registry import TASKS

QUESTION = (
    "Does adapter-based fine-tuning after intermediate-task training keep the accuracy of full "
    "fine-tuning, and what does it cost or save at inference time?"
)
# How the answer names a serving form (models/spec.py SERVING); forms not listed need no note.
SERVING_NOTE = {"fusion": "AdapterFusion, folded", "merged": "merged"}
# Models served differently from the reference, named with their serving form, in registry order.
SERVED_AS = {
    name: f"{name} ({SERVING_NOTE[s.serving]})" if s.serving in SERVING_NOTE else name
    for name, s in MODELS.items()
    if s.serving != "plain"
}
# Models whose served graph is the reference's (plain weights; LoRA merged): their ratio is noise.
SAME_GRAPH_AS_FULL = tuple(
    n for n, s in MODELS.items() if n != REFERENCE and s.serving in ("plain", "merged")
)
ADAPTER_MODELS = tuple(n for n, s in MODELS.items() if s.serving in ("adapter", "fusion"))
MERGED_MODELS = tuple(n for n, s in MODELS.items() if s.serving == "merged")
KIND_NOTES = {
    "tiny": "tiny = a 4-layer, 128-wide model trained here for minutes, near chance on XNLI, so "
    "accuracy differences between models say nothing about XLM-R",
    "random": "random = random weights with the real shapes, speed only",
    "real": "real = trained checkpoints",
}


def _split(label: str) -> tuple[str, str]:
    """A backend label (harness.run_record.RunRecord.backend_label) -> (backend, dtype)."""
    backend, _, dtype = label.partition("-")
    return backend, dtype or "fp32"


def _ordered_backends(labels: Iterable[str]) -> list[str]:
    """Registry order of the backends, fp32 before the other element types."""
    order = list(BACKENDS)

    def key(label: str) -> tuple:
        backend, dtype = _split(label)
        return (order.index(backend) if backend in order else len(order), dtype != "fp32", label)

    return sorted(set(labels), key=key)


def _bname(label: str) -> str:
    """'ONNX Runtime int8' for 'onnxruntime-int8'."""
    backend, dtype = _split(label)
    title = BACKENDS[backend].title if backend in BACKENDS else backend
    return title if dtype == "fp32" else f"{title} {dtype}"


def _tname(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


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
        if r["model"] == REFERENCE and r["task"] == task and r["offline_samples_per_s"]
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
            subs.append(
                f"  - {_bname(backend)}, {_tname(task)} (full {full[backend]:.1f} samples/s): "
                + ", ".join(parts)
                + "."
            )
    noise = [o for (model, _), o in over.items() if model in SAME_GRAPH_AS_FULL]
    if noise:
        ratios = [o["ratio_vs_full"] for o in noise]
        names = sorted({o["model"] for o in noise}, key=SAME_GRAPH_AS_FULL.index)
        verb = "runs" if len(names) == 1 else "run"
        band = max(abs(r - 1.0) for r in ratios)  # the noise level, as a +- fraction around 1
        line = (
            f"  - Noise: {' and '.join(names)} {verb} the very graph of full; their ratios "
            f"({_span(ratios)} over {len(ratios)} run{'s' if len(ratios) > 1 else ''}) show the "
            f"noise of single short runs: up to {100.0 * band:.0f}% either way."
        )
        adapters = [o for (model, _), o in sorted(over.items()) if model in ADAPTER_MODELS]
        outside = [o for o in adapters if abs(o["ratio_vs_full"] - 1.0) > band]
        if outside:
            listed = ", ".join(
                f"{o['model']} on {_bname(o['backend'])} ({o['ratio_vs_full']:.2f}x)" for o in outside
            )
            line += f" Adapter ratios beyond that noise: {listed}."
        elif adapters:
            line += " No adapter ratio is beyond that noise."
        subs.append(line)
    if not subs:
        return []
    return [
        f"- Cost at inference ({_tname(task)} Offline samples/s relative to full, same backend):",
        *subs,
    ]


def _relative(
    values: dict[str, float],
    base: float | None,
    keys: Sequence[str],
    unit: str,
    digits: int,
    name=lambda k: k,
) -> list[str]:
    """'<name> <value> <unit> (<ratio>x, <pct>)' for each of `keys` present, relative to `base`."""
    return [
        f"{name(k)} {values[k]:.{digits}f} {unit} ({values[k] / base:.2f}x, {_pct(values[k] / base)})"
        for k in keys
        if base and k in values
    ]


def _common_load(runs: list[Run], task: str, backend: str) -> str:
    """' at 21.7 QPS offered to every model': the load of the common-load Server runs."""
    loads = sorted(
        {
            round(r.target_qps, 1)
            for r in runs
            if r.load_of and r.task == task and r.backend == backend and r.target_qps
        }
    )
    return f" at {_span(loads, '.1f')} QPS offered to every model" if loads else ""


def _common_load_rounds(runs: list[Run]) -> bool:
    """Whether the common-load Server cells ran in more than one round (their ratios have a range)."""
    return any(r.load_of and r.round for r in runs)


def _round_lines(runs: list[Run]) -> list[str]:
    """Cost at inference from the interleaved rounds: each model's median ratio to full with its
    range, per figure, task and backend; then the same-graph check (merged LoRA must include 1.00)."""
    rows = [r for r in round_ratios(runs) if r["rounds"] > 1]
    if not rows:
        return []
    what = {
        "offline": "Offline samples/s",
        "singlestream_p90": "SingleStream p90 latency",
        "server_p99": "Server p99 latency",
    }
    lines = [
        "- Cost at inference, interleaved rounds (ratio to full within each round; median [min-max]):"
    ]
    for key in dict.fromkeys((r["figure"], r["task"], r["backend"]) for r in rows):
        group = [r for r in rows if (r["figure"], r["task"], r["backend"]) == key]
        parts = [
            f"{SERVED_AS.get(r['model'], r['model'])} {r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]"
            for r in group
        ]
        label = what[key[0]] + (_common_load(runs, *key[1:]) if key[0] == "server_p99" else "")
        lines.append(
            f"  - {label}, {_tname(key[1])}, {_bname(key[2])} ({group[0]['rounds']} "
            "rounds): " + ", ".join(parts) + "."
        )
    same = [r for r in rows if r["model"] in MERGED_MODELS]
    if same:
        lines.append(_same_graph_line(same, what))
    return lines


def _same_graph_line(same: list[dict[str, Any]], what: dict[str, str]) -> str:
    """The check that merged LoRA, which serves full's very graph, costs 1.00x: per figure (does its
    range include 1.00, against how many figures miss it by chance alone), then over rounds, which
    decides: each round's geometric mean cost over the figures (the figures of one round share the
    machine's minutes, so the round is the independent unit), with Student's t 95% interval."""
    outside = [r for r in same if not r["min"] <= 1.0 <= r["max"]]
    names = " and ".join(dict.fromkeys(r["model"] for r in same))
    line = (
        f"  - {names} serves full's very graph: its range includes 1.00 in "
        f"{len(same) - len(outside)} of {len(same)} figures"
    )
    if outside:
        listed = "; ".join(
            f"{what[r['figure']]}, {_tname(r['task'])}, {_bname(r['backend'])} "
            f"[{r['min']:.2f}-{r['max']:.2f}]"
            for r in outside
        )
        line += f" (not in {listed})"
    rounds = min(r["rounds"] for r in same)
    by_chance = len(same) * 2.0 * 0.5**rounds  # all of a figure's rounds on one side of 1.00
    line += (
        f"; with {rounds} rounds a figure's range misses 1.00 by chance alone with probability "
        f"1/{2 ** (rounds - 1)}, {by_chance:.1f} of {len(same)} figures on average"
    )
    per_round = per_round_cost(same)  # rows of 2 rounds or more (_round_lines)
    mean, low, high = mean_interval(per_round.values())
    line += (
        f". Per round, its cost relative to full over the figures (geometric mean; time per "
        f"sample or latency): {', '.join(f'{c:.3f}' for c in per_round.values())}; over the "
        f"{len(per_round)} rounds {mean:.3f}x [{low:.3f}-{high:.3f}] (Student's t 95% interval)"
    )
    if low <= 1.0 <= high:
        return line + ": no bias of the harness shows."
    return line + f": a bias of {_pct(mean)} to find, in the harness or in the cells' order."


def _backend_line(rows: list[dict[str, Any]], task: str = "xnli") -> list[str]:
    """Offline throughput of `full` on every other backend variant relative to the first registered
    backend in fp32 (PyTorch)."""
    sps = _full_offline_sps(rows, task)
    first = next(iter(BACKENDS))
    base = sps.get(first)
    others = [b for b in _ordered_backends(sps) if b != first]
    parts = _relative(sps, base, others, "samples/s", 1, _bname)
    if not parts:
        return []
    return [
        f"- Backends (full, {_tname(task)} Offline, relative to {_bname(first)} at {base:.1f} "
        "samples/s): " + "; ".join(parts) + "."
    ]


def _backend_round_line(runs: list[Run], task: str = "xnli") -> list[str]:
    """Offline samples/s of `full` on every other backend variant relative to the first registered
    backend (PyTorch), paired by round (cells rerun later keep their round: docs/study.md says which):
    median [min-max] over the rounds."""
    first = next(iter(BACKENDS))
    rows = {
        r["backend"]: r
        for r in round_ratios(runs, reference=first, across="backend")
        if r["figure"] == "offline" and r["task"] == task and r["model"] == REFERENCE and r["rounds"] > 1
    }
    parts = [
        f"{_bname(b)} {rows[b]['median']:.2f}x [{rows[b]['min']:.2f}-{rows[b]['max']:.2f}] "
        f"({_pct(rows[b]['median'])}, {rows[b]['rounds']} rounds)"
        for b in _ordered_backends(rows)
    ]
    if not parts:
        return []
    return [
        f"- Backends (full, {_tname(task)} Offline samples/s relative to {_bname(first)} paired by "
        "round; median [min-max]): " + "; ".join(parts) + "."
    ]


def _latency_line(rows: list[dict[str, Any]], task: str = "xnli", backend: str = "pytorch") -> list[str]:
    """SingleStream p90 of the adapter models against full, on one backend."""
    p90 = {
        r["model"]: r["singlestream_p90_ms"]
        for r in rows
        if r["task"] == task and r["backend"] == backend and r["singlestream_p90_ms"]
    }
    base = p90.get(REFERENCE)
    parts = _relative(p90, base, ADAPTER_MODELS, "ms", 2)
    if not parts:
        return []
    return [
        f"- Latency ({_bname(backend)}, {_tname(task)} SingleStream p90): full {base:.2f} ms; "
        + "; ".join(parts)
        + "."
    ]


def _server_line(
    rows: list[dict[str, Any]], common_load: bool = False, task: str = "xnli", backend: str = "pytorch"
) -> list[str]:
    """The Server peaks stay out of the answer: each model's comes from one find_peak search, and one
    search ranks nothing (a short Server run's p99 tail moves more than the models differ). The line
    says so, with the evidence when the same graph's searches disagree (merged LoRA serves full's
    very graph: its peak bracket must meet full's). common_load: point to the common-load ratios."""
    searched = {
        r["model"]: r
        for r in rows
        if r["task"] == task and r["backend"] == backend and r["server_target_qps"]
    }
    if REFERENCE not in searched:
        return []
    line = (
        f"- Server ({_bname(backend)}, {_tname(task)}): each of the {len(searched)} models' peaks "
        "comes from one find_peak search, and one search per model ranks nothing, so no peak is "
        "compared here (the table above lists them)"
    )
    full = searched[REFERENCE]
    apart = [
        m
        for m in MERGED_MODELS
        if m in searched
        and not (
            full["server_valid"] and searched[m]["server_valid"] and _brackets_meet(searched[m], full)
        )
    ]
    if apart:
        line += ": " + "; ".join(
            f"{m}, which serves full's very graph, found {_bracket(searched[m])} "
            f"(full: {_bracket(full)})"
            for m in apart
        )
    line += "."
    return [line + (" The common-load p99 ratios above compare the forms." if common_load else "")]


def _bracket(row: dict[str, Any]) -> str:
    """Where a search put the peak: from its highest VALID load to the next INVALID one it tried."""
    above = row.get("server_invalid_above_qps")
    low = row["server_target_qps"]
    if not row.get("server_valid"):
        return f"no VALID load down to {low:.1f} QPS"
    return f"a peak of {low:.1f}-{above:.1f} QPS" if above else f"a peak of {low:.1f} QPS or more"


def _brackets_meet(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two searches' peak brackets [VALID load, next INVALID load) overlap."""
    inf = float("inf")
    a_hi, b_hi = a.get("server_invalid_above_qps") or inf, b.get("server_invalid_above_qps") or inf
    return a["server_target_qps"] < b_hi and b["server_target_qps"] < a_hi


def _accuracy_lines(rows: list[dict[str, Any]], runs: list[Run]) -> list[str]:
    """Per task: each model's metric minus full's on one backend (pytorch preferred); the int8 mean."""
    subs = []
    value = {(r["task"], r["backend"], r["model"]): r for r in rows if r["metric_value"] is not None}
    for task in sorted({t for t, _, _ in value}):
        backends = _ordered_backends({b for t, b, _ in value if t == task})
        for backend in backends:
            full = value.get((task, backend, REFERENCE))
            others = [
                r
                for (t, b, m), r in sorted(value.items())
                if t == task and b == backend and m != REFERENCE
            ]
            if full is None or not others:
                continue
            parts = [
                f"{r['model']} {r['metric_value']:.2f} ({r['metric_value'] - full['metric_value']:+.2f} points)"
                for r in others
            ]
            subs.append(
                f"  - {_tname(task)} {full['metric']}, {_bname(backend)}: full "
                f"{full['metric_value']:.2f}; " + ", ".join(parts) + "."
            )
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
        subs.append(
            f"  - ONNX Runtime int8 minus fp32 (XNLI, per language): mean {mean:+.2f} points "
            f"over {len(deltas)} model-language pairs (reference: {used})."
        )
    if not subs:
        return []
    return ["- Accuracy (each model minus full on the same backend, in points):", *subs]


def _variant_figures(change: dict[str, float], sign: int, fmt: str) -> str:
    """'adapter -5% (library form -12%), adapter-squad ..., lora-squad +0% vs full' from speed.json
    figures (sign -1 turns a cost into a throughput change)."""

    def fig(name: str) -> str:
        return format(sign * change[name] + 0.0, "+" + fmt)  # + 0.0: no "-0%"

    parts = [
        f"{m} {fig(m)}" + (f" (library form {fig(m + '-library')})" if m + "-library" in change else "")
        for m in ADAPTER_MODELS
    ]
    parts += [f"{m} {fig(m)}" for m in MERGED_MODELS]
    return ", ".join(parts) + f" vs {REFERENCE}"


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
            merged = " and ".join(MERGED_MODELS)
            subs.append(
                f"  - Timed, {shape} shape (part {part}): {_variant_figures(cost, -1, '.0%')}; the "
                f"rounds spread up to {spread:.0%}, and {merged} runs full's very graph, so its "
                "figure is noise."
            )
    b = speed.get("b") or {}
    for shape, figs in (("tiny", b), ("base", b.get("base") or {})):
        if "fp32_vs_pytorch" in figs:
            subs.append(
                f"  - ONNX Runtime vs PyTorch, full, {shape} shape (part b): fp32 "
                f"{figs['fp32_vs_pytorch']:.2f}x, int8 {figs['int8_vs_pytorch']:.2f}x."
            )
    for shape, g in (speed.get("g") or {}).items():
        if isinstance(g, dict) and "extra_vs_full" in g:
            subs.append(
                f"  - Counted FLOPs, {shape} shape (part g, no noise): "
                f"{_variant_figures(g['extra_vs_full'], 1, '.1%')}."
            )
    if not subs:
        return []
    return [
        "- Side by side in one process ([speed.md](speed.md), random weights, Offline throughput):",
        *subs,
    ]


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
    durations = sorted(
        {round(r.duration_s, 1) for r in runs if r.mode == "performance" and r.duration_s}
    )
    rounds = len({r.round for r in runs if r.mode == "performance"})
    how = "a single short run" if rounds < 2 else "a short run"
    if durations:
        how += f" (min_duration {_span(durations, 'g')} s" + (", no repeats)" if rounds < 2 else ")")
    how += f" on a shared {machine}" if machine else " on a shared machine"
    if rounds > 1:
        common = _common_load_rounds(runs)
        rounded = (
            "Offline, SingleStream and common-load Server" if common else "Offline and SingleStream"
        )
        once = "Server searches (find_peak)" if common else "Server"
        how += (
            f"; {rounded} cells ran in {rounds} interleaved rounds, so their ratios carry a range; "
            f"{once} and accuracy cells ran once"
        )
    if speed is not None:
        link = (
            "Side-by-side ratios measured in one process: [speed.md](speed.md) "
            "(`python -m research study --speed`)."
        )
    else:
        link = "`python -m research study --speed` writes side-by-side ratios measured in one process."
    return [f"- Caveats: {who}. Each figure is {how}. {link}"]


def answer_lines(
    rows: list[dict[str, Any]],
    runs: list[Run],
    machine: str | None = None,
    speed: dict[str, Any] | None = None,
    accuracy=None,
) -> list[str]:
    """The "Answer" section of study.md: bullets built only from the figures in `rows` / `runs`, each
    omitted when its figures are missing (the caveats always stay). `machine`: e.g. "2-core CPU
    (AMD EPYC)" for the caveat; `speed`: the parsed speed.json beside study.md (None: there is none),
    whose in-process figures get a bullet of their own and a link to speed.md; `accuracy`: a
    research.accuracy.AccuracyStudy, whose claims (with intervals) come first."""
    lines = ["## Answer (from the figures above)", "", f"Question: {QUESTION}", ""]
    claims = accuracy is not None and (accuracy.figures or accuracy.verdicts or accuracy.refused)
    if claims:
        lines += study_answer_lines(accuracy)
    rounds = _round_lines(runs)
    # single-run ratios only when there are no rounds (the rounds' lines hold SingleStream p90 too)
    lines += rounds or _cost_lines(rows)
    lines += _backend_round_line(runs) or _backend_line(rows)
    lines += [] if rounds else _latency_line(rows)
    lines += _server_line(rows, common_load=_common_load_rounds(runs))
    if not claims or not (accuracy.figures or accuracy.verdicts):  # else its claims came first
        lines += _accuracy_lines(rows, runs)
    lines += _speed_lines(speed)
    lines += _caveat_line(rows, runs, speed, machine)
    return lines


# --- the accuracy answer (research/accuracy.py), for trained checkpoints only ---------------------------
# What Phang et al. 2020 (XLM-R large, full-size English intermediate tasks) report per target task for
# English intermediate-task training: +1 = a gain, 0 = little change. Retrieval and QA gain most.
PHANG_DIRECTION = {"xnli": 0, "pawsx": 1, "tydiqa": 1, "tatoeba": 1, "bucc": 1}
PHANG = "Phang et al. 2020 (XLM-R large, intermediate tasks with their full training sets)"
KEEP_WORDS = {
    "exceeds": "keeps full fine-tuning's accuracy and exceeds it (the interval lies above 0)",
    "keeps": "keeps full fine-tuning's accuracy (the interval rules out a loss over {m:g} point)",
    "loses": "does not keep full fine-tuning's accuracy",
    "cannot tell": "cannot be told apart from a loss over {m:g} point or from no loss: the interval "
    "admits both",
}


def _form(a: str) -> str:
    return {
        "adapter": "the bottleneck adapter",
        "adapter-squad": "AdapterFusion (after SQuAD)",
        "lora-squad": "merged LoRA (after SQuAD)",
    }.get(a, a)


def _phang(task: str, verdict: str) -> str:
    expected = PHANG_DIRECTION.get(task)
    if expected is None:
        return ""
    if expected == 0:
        return f" {PHANG} found XNLI gains little; here: {verdict}."
    if verdict == "adds":
        return f" Same direction as {PHANG}, who found a gain."
    if verdict == "costs":
        return f" The opposite direction to {PHANG}, who found a gain."
    return f" {PHANG} found a gain; here the interval covers 0."


# What the retrieval verdicts compare (research.accuracy.RETRIEVAL_FORM) and how the pooling was chosen.
RETRIEVAL_WORDS = {
    "adds": "retrieves better than",
    "costs": "retrieves worse than",
    "no measurable effect": "cannot be told apart from",
}
POOLING_NOTE = (
    "- Retrieval (BUCC, Tatoeba) embeds sentences with the encoder alone: there `full` and `adapter` "
    "are the pretrained encoder with no fine-tuning, `full-squad` the encoder fully fine-tuned on "
    "SQuAD, `adapter-squad` the encoder with the SQuAD adapter alone and `lora-squad` with the SQuAD "
    "LoRA merged, so no "
    "retrieval figure compares a method with full fine-tuning on a target task. The pooled layer "
    "(the last, 12) and the absence of e5's `query: ` prefix were chosen by comparing layers 8 and 12 "
    "and both prefixes on Tatoeba and BUCC themselves (reports/retrieval_convention.md): a choice "
    "made on the test sets, so the retrieval figures may be optimistic (a limitation: no held-out "
    "split was kept for that choice)."
)


def _level(v) -> str:
    return f"at Holm's {100 * v.level:.2f}% level"


def _verdict_line(v, metric: str, margin: float) -> str:
    """One contrast's sentence: what is compared, the interval and what it covers, the words."""
    from research.accuracy import RETRIEVAL_FORM

    task = _tname(v.task)
    diff = f"{v.a} - {v.b} {metric}"
    if v.retrieval:
        words = f"{RETRIEVAL_FORM[v.a]} {RETRIEVAL_WORDS[v.word]} {RETRIEVAL_FORM[v.b]}"
    elif v.intermediate:
        change = {
            "adds": "adds",
            "costs": "costs",
            "no measurable effect": "has no measurable effect on",
        }
        amount = "" if v.word == "no measurable effect" else f" {abs(v.interval.value):.1f} points to"
        words = f"the intermediate task (SQuAD) {change[v.word]}{amount} {v.b}"
    else:
        words = f"{_form(v.a)} {KEEP_WORDS[v.word].format(m=margin)}"
    phang = _phang(v.task, v.word) if v.intermediate and not v.retrieval else ""
    if v.basis == "seeds":
        n_a, n_b = v.seeds
        variance = (
            "training-seed and test-set variance"
            if v.test_set
            else "training-seed variance only: no per-sample scores read for the test set's"
        )
        return (
            f"- {task}: {words[0].upper()}{words[1:]} ({diff}, mean of {n_a} and {n_b} training seeds: "
            f"{v.interval.text()} {_level(v)}, {variance}, Welch's "
            f"{v.df:.1f} degrees of freedom; uncorrected 95%: {v.interval95.text()}).{phang}"
        )
    return (
        f"- {task}, one training seed: {diff} {v.interval.text()} {_level(v)} (test-set variance "
        f"only; uncorrected 95%: {v.interval95.text()}). One seed per model compares two "
        f"checkpoints, not the methods; for these checkpoints: {words}.{phang}"
    )


def study_answer_lines(study, margin: float | None = None) -> list[str]:
    """The generated answer from a research.accuracy.AccuracyStudy: one bullet per contrast of
    research.accuracy.CONTRASTS (Holm-corrected; words from the corrected interval only, and a
    one-seed contrast never claims a method effect), the retrieval labels and pooling note, the
    transfer gaps and int8."""
    from research.accuracy import ALPHA, MARGIN

    m = MARGIN if margin is None else margin
    if not study.figures and not study.verdicts:
        why = study.refused[0] if study.refused else "there are no scored accuracy runs"
        return [f"- No accuracy claim: {why}."]
    n_seeds = sum(v.basis == "seeds" for v in study.verdicts)
    n_one = sum(v.basis == "one seed" for v in study.verdicts)
    untested = [v for v in study.verdicts if v.basis == "untested"]
    resampled = "; XNLI resampled by premise, jointly across its 15 languages" if study.figures else ""
    lines = [
        f"- Verdicts: {len(study.verdicts)} contrasts (research/accuracy.py CONTRASTS, all of "
        f"them, untested ones included), Holm-corrected for a family-wise error of {ALPHA:.0%}: "
        f"each interval is at its Holm level and the words follow it. With several training seeds "
        f"per model: {n_seeds}; with one seed per model (no method claim): {n_one}; without an "
        f"interval: {len(untested)}{resampled}."
    ]
    for v in study.verdicts:
        if v.basis != "untested":
            lines.append(_verdict_line(v, study.metric.get(v.task, ""), m))
    if untested:
        metric = study.metric
        parts = [
            f"{_tname(v.task)} {v.a} - {v.b} {metric.get(v.task, '')} {v.observed:+.1f}"
            for v in untested
        ]
        lines.append(
            "- No verdict (one training seed per model, and no per-sample scores in the data read for "
            "a test-set interval; the seed-0 checkpoints' difference only): " + "; ".join(parts) + "."
        )
    if any(v.retrieval for v in study.verdicts):
        lines.append(POOLING_NOTE)
    gaps = [(t, mdl, g) for (t, mdl), g in study.gaps.items()]
    if gaps:
        parts = [f"{mdl} on {_tname(t)} {g.text(signed=False)}" for t, mdl, g in gaps]
        lines.append(
            "- Cross-lingual transfer gap (English minus the mean of the other languages, "
            "points, 95%): " + "; ".join(parts) + "."
        )
    for (task, model), iv in study.int8.items():
        lines.append(
            f"- ONNX Runtime int8 on {_tname(task)}, {model}: {iv.text()} points against "
            "PyTorch fp32 of the same seed (95%)."
        )
    for (task, model), d in study.int8_figures.items():
        if (task, model) not in study.int8:
            lines.append(
                f"- ONNX Runtime int8 on {_tname(task)}, {model}: {d:+.2f} points against "
                "PyTorch fp32 of the same seed (task figures; no interval without the "
                "per-sample scores)."
            )
    return lines
