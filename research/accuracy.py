"""The accuracy half of the study: figures and differences with paired-bootstrap intervals.

Input: the study's accuracy runs (research/collect.py `Run`s of LoadGen AccuracyOnly runs, each scored
in-process by the accuracy scripts' code, with its `per_sample.json`). Only trained checkpoints
(model kind "real") are used: a tiny or random model's accuracy answers nothing about real encoders,
so `accuracy_study` refuses them (`refused` says which runs and why).

What it computes (PyTorch fp32 runs of seed 0 unless said otherwise; research/bootstrap.py):
  * each model's task figure with its 95% interval, per task, and per language;
  * the differences of COMPARISONS (a minus b, paired on the same samples), average and per language;
  * the cross-lingual transfer gap (English minus the mean of the other languages) per model;
  * int8 minus fp32 per model and task (ONNX Runtime int8 against the PyTorch fp32 run);
  * training noise: SEED_TASK figures of the models trained with several seeds, their mean and spread,
    and whether the adapter-full gap is larger than that spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from research.bootstrap import N_BOOT, BootstrapError, Interval, UnitScores, difference, resample
from research.collect import Run

# (a, b, what a - b measures): the study's question, then the intermediate task's effect
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("adapter", "full", "adapters instead of full fine-tuning"),
    ("adapter-squad", "full-squad", "AdapterFusion instead of full fine-tuning, after SQuAD"),
    ("lora-squad", "full-squad", "merged LoRA instead of full fine-tuning, after SQuAD"),
    ("full-squad", "full", "the intermediate task (SQuAD), full fine-tuning"),
    ("adapter-squad", "adapter", "the intermediate task (SQuAD), adapters"),
)
CLAIM_KIND = "real"  # the only model kind whose accuracy the study compares
FP32 = "pytorch"
INT8 = "onnxruntime-int8"
MARGIN = 1.0  # points: a form "keeps" accuracy when its interval rules out a loss larger than this


@dataclass
class AccuracyStudy:
    """Everything the report and the answer need; intervals in points of the task's metric."""

    figures: dict[tuple[str, str], dict] = field(default_factory=dict)  # (task, model) -> see below
    differences: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (task, a, b)
    gaps: dict[tuple[str, str], Interval] = field(default_factory=dict)  # (task, model)
    int8: dict[tuple[str, str], Interval] = field(default_factory=dict)  # (task, model)
    seeds: dict[str, dict] = field(default_factory=dict)  # model -> {"values": {seed: x}, ...}
    metric: dict[str, str] = field(default_factory=dict)  # task -> metric name
    refused: list[str] = field(default_factory=list)  # runs left out, with why
    errors: list[str] = field(default_factory=list)  # runs that could not be compared, with why


def _scores(run: Run, study: AccuracyStudy) -> UnitScores | None:
    try:
        return UnitScores.load(run.path)
    except BootstrapError as exc:
        study.errors.append(str(exc))
        return None


def accuracy_study(runs: Sequence[Run], n_boot: int = N_BOOT, seed: int = 0) -> AccuracyStudy:
    """The study's accuracy figures from the accuracy runs among `runs` (others are ignored)."""
    study = AccuracyStudy()
    acc = [r for r in runs if r.mode == "accuracy" and r.metric_value is not None]
    for r in acc:
        if r.model_kind != CLAIM_KIND:
            study.refused.append(
                f"{r.path}: model kind {r.model_kind or 'unknown'!r}: no accuracy claim is made from "
                f"tiny or random models (only trained checkpoints, kind {CLAIM_KIND!r})"
            )
    acc = [r for r in acc if r.model_kind == CLAIM_KIND]
    main = {(r.task, r.model): r for r in acc if r.backend == FP32 and r.seed == 0}
    loaded = {key: s for key, r in main.items() if (s := _scores(r, study)) is not None}
    for (task, model), scores in sorted(loaded.items()):
        study.metric[task] = main[(task, model)].metric or ""
        reps = resample([scores], n_boot, seed)
        obs, rep = reps.average()
        per = {}
        for lang in reps.languages:
            o, r = reps.language(lang)
            per[lang] = Interval.of(o[0], r[:, 0])
        study.figures[(task, model)] = {"average": Interval.of(obs[0], rep[:, 0]), "per_language": per}
        try:
            g_obs, g_rep = reps.transfer_gap()
            study.gaps[(task, model)] = Interval.of(g_obs[0], g_rep[:, 0])
        except BootstrapError:
            pass  # no English (Tatoeba, BUCC): no transfer gap
    for task in sorted({t for t, _ in loaded}):
        for a, b, _ in COMPARISONS:
            if (task, a) in loaded and (task, b) in loaded:
                try:
                    study.differences[(task, a, b)] = difference(
                        loaded[(task, a)], loaded[(task, b)], n_boot, seed
                    )
                except BootstrapError as exc:
                    study.errors.append(str(exc))
    for r in acc:
        if r.backend == INT8 and r.seed == 0 and (r.task, r.model) in loaded:
            if (q := _scores(r, study)) is not None:
                try:
                    d = difference(q, loaded[(r.task, r.model)], n_boot, seed)
                    study.int8[(r.task, r.model)] = d["average"]
                except BootstrapError as exc:
                    study.errors.append(str(exc))
    _seed_noise(acc, study)
    return study


def _seed_noise(acc: Sequence[Run], study: AccuracyStudy) -> None:
    """Per model with runs of more than one training seed (PyTorch fp32): the figure of each seed,
    their mean and sample standard deviation."""
    by_model: dict[tuple[str, str], dict[int, float]] = {}
    for r in acc:
        if r.backend == FP32 and r.metric_value is not None:
            by_model.setdefault((r.task, r.model), {})[r.seed] = r.metric_value
    for (task, model), values in sorted(by_model.items()):
        if len(values) < 2:
            continue
        vals = list(values.values())
        study.seeds[f"{task}/{model}"] = {
            "task": task,
            "model": model,
            "values": dict(sorted(values.items())),
            "mean": statistics.fmean(vals),
            "sd": statistics.stdev(vals),
            "range": max(vals) - min(vals),
        }


def seed_gap(study: AccuracyStudy, a: str = "adapter", b: str = "full") -> dict | None:
    """a - b over seeds (means), against the seed spread of either: None without both seed sets."""
    sa = next((v for v in study.seeds.values() if v["model"] == a), None)
    sb = next(
        (v for v in study.seeds.values() if v["model"] == b and v["task"] == (sa or {}).get("task")),
        None,
    )
    if sa is None or sb is None:
        return None
    gap = sa["mean"] - sb["mean"]
    spread = max(sa["sd"], sb["sd"])
    return {"task": sa["task"], "gap": gap, "spread_sd": spread, "beyond_spread": abs(gap) > 2 * spread,
            "seeds": (len(sa["values"]), len(sb["values"]))}  # fmt: skip


# --- words -------------------------------------------------------------------------------------------
def keeps_verdict(d: Interval, margin: float = MARGIN) -> str:
    """'exceeds' when the interval lies above 0; 'keeps' when it rules out a loss larger than
    `margin`; else 'loses' when it lies wholly below 0 (measurably lower, possibly by more than the
    margin); 'cannot tell' otherwise."""
    if d.low > 0:
        return "exceeds"
    if d.low >= -margin:
        return "keeps"
    if d.high < 0:
        return "loses"
    return "cannot tell"


def effect_verdict(d: Interval) -> str:
    """'adds' (interval above 0), 'costs' (below 0) or 'no measurable effect' (covers 0)."""
    if d.low > 0:
        return "adds"
    if d.high < 0:
        return "costs"
    return "no measurable effect"


def markdown(study: AccuracyStudy, task_titles: dict[str, str] | None = None) -> list[str]:
    """The accuracy section of study.md: figures, differences, gaps, int8, seeds."""
    titles = task_titles or {}
    lines = ["## Accuracy (zero-shot, LoadGen AccuracyOnly runs, 95% paired-bootstrap intervals)", ""]
    if not study.figures:
        lines += ["No accuracy runs of trained checkpoints (model kind `real`) were found.", ""]
    else:
        lines += [
            f"Each figure: the task score of one PyTorch fp32 AccuracyOnly run, scored by the accuracy "
            f"scripts; [low, high] = 2.5th-97.5th percentile of {N_BOOT} bootstrap replicates "
            "resampling the evaluation samples within each language (research/bootstrap.py). "
            "Differences are paired: both models on the same resampled samples.",
            "",
            "| task | metric | model | score [95% CI] | English minus others [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for (task, model), f in study.figures.items():
            gap = study.gaps.get((task, model))
            lines.append(f"| {titles.get(task, task)} | {study.metric.get(task, '')} | {model} | "
                         f"{f['average'].text(signed=False)} | {gap.text() if gap else '-'} |")  # fmt: skip
    if study.differences:
        lines += ["", "Differences (a minus b, points) [95% CI]:", "",
                  "| task | a - b | what it measures | difference [95% CI] | verdict |", "|---|---|---|---|---|"]  # fmt: skip
        what = {(a, b): w for a, b, w in COMPARISONS}
        for (task, a, b), d in study.differences.items():
            verdict = (effect_verdict if "intermediate" in what[(a, b)] else keeps_verdict)(d["average"])
            lines.append(f"| {titles.get(task, task)} | {a} - {b} | {what[(a, b)]} | "
                         f"{d['average'].text()} | {verdict} |")  # fmt: skip
    if study.int8:
        lines += ["", "ONNX Runtime int8 minus PyTorch fp32, same model (points) [95% CI]:", "",
                  "| task | model | int8 - fp32 |", "|---|---|---|"]  # fmt: skip
        for (task, model), d in study.int8.items():
            lines.append(f"| {titles.get(task, task)} | {model} | {d.text()} |")
    if study.seeds:
        lines += ["", "Training noise (PyTorch fp32 runs of zoos trained with other seeds):", "",
                  "| task | model | per seed | mean | sd |", "|---|---|---|---|---|"]  # fmt: skip
        for s in study.seeds.values():
            per = ", ".join(f"{k}: {v:.2f}" for k, v in s["values"].items())
            lines.append(f"| {titles.get(s['task'], s['task'])} | {s['model']} | {per} | "
                         f"{s['mean']:.2f} | {s['sd']:.2f} |")  # fmt: skip
    for note in (*study.refused, *study.errors):
        lines.append(f"- left out: {note}")
    return [*lines, ""]


def per_language_rows(study: AccuracyStudy, task: str, models: Sequence[str]) -> list[dict]:
    """For the per-language bar chart: one dict per (language, model) with value and interval."""
    rows = []
    for model in models:
        f = study.figures.get((task, model))
        if f:
            rows += [{"language": lang, "model": model, "value": i.value, "low": i.low, "high": i.high}
                     for lang, i in f["per_language"].items()]  # fmt: skip
    return rows
