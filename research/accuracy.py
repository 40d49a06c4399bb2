"""The accuracy half of the study: figures, differences and Holm-corrected verdicts with intervals.

Input: the study's accuracy runs (research/collect.py `Run`s), with their per-sample scores where
they exist (research/bootstrap.py resamples them). Only trained checkpoints (model kind "real") are
compared. docs/study.md, "How the figures are made", says how each interval and verdict is made.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scipy import stats

from common.tables import table_block
from models.registry import MODELS
from research.bootstrap import N_BOOT, BootstrapError, Interval, UnitScores, difference, resample
from research.collect import Run
from tasks.registry import TASKS
from tasks.xnli import premise_of

# (a, b, what a - b measures), the pre-registered contrasts: first the first design's five (their
# order and Holm family unchanged where the newer arms are absent), then the second design's arms:
# LoRA without an intermediate task, a plain adapter after SQuAD, two-stage AdapterFusion, NLI.
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("adapter", "full", "adapters instead of full fine-tuning"),
    ("adapter-squad", "full-squad", "AdapterFusion instead of full fine-tuning, after SQuAD"),
    ("lora-squad", "full-squad", "merged LoRA instead of full fine-tuning, after SQuAD"),
    ("full-squad", "full", "the intermediate task (SQuAD), full fine-tuning"),
    # not SQuAD alone: adapter-squad also adds a fusion layer (adapter-seq-squad - adapter does not)
    ("adapter-squad", "adapter", "the intermediate task (SQuAD) with a fusion layer, adapters"),
    ("lora", "full", "merged LoRA instead of full fine-tuning"),
    ("adapter-seq-squad", "full-squad", "a plain adapter instead of full fine-tuning, after SQuAD"),
    (
        "adapter-fusion-squad",
        "full-squad",
        "two-stage AdapterFusion instead of full fine-tuning, after SQuAD",
    ),
    ("adapter-nli", "full-nli", "adapters instead of full fine-tuning, after NLI"),
    ("adapter-seq-squad", "adapter", "the intermediate task (SQuAD), a plain adapter"),
    ("lora-squad", "lora", "the intermediate task (SQuAD), merged LoRA"),
    (
        "adapter-fusion-squad",
        "adapter",
        "the intermediate task (SQuAD) fused with the task adapter, adapters",
    ),
    ("full-nli", "full", "the intermediate task (NLI), full fine-tuning"),
    ("adapter-nli", "adapter", "the intermediate task (NLI), adapters"),
)
# Retrieval tasks serve the encoder alone (RETRIEVAL_FORM says what each model is there): the
# intermediate task's effect on it, and adapters against full fine-tuning on that task.
RETRIEVAL_PAIRS = (
    ("adapter-squad", "full-squad"),
    ("lora-squad", "full-squad"),
    ("full-squad", "full"),
    ("full-nli", "full"),
    ("adapter-nli", "full-nli"),
    # the intermediate task's effect on the adapter's encoder (`full` is the pretrained encoder)
    ("adapter-squad", "full"),
    ("adapter-nli", "full"),
)
# Every contrast the study reads (task, a, b): the family Holm's correction covers.
CONTRASTS: tuple[tuple[str, str, str], ...] = tuple(
    (task, a, b)
    for task in ("xnli", "tydiqa", "bucc", "tatoeba")
    for a, b in ([(a, b) for a, b, _ in COMPARISONS] if task in ("xnli", "tydiqa") else RETRIEVAL_PAIRS)
)
RETRIEVAL_FORM = {
    "full": "the pretrained encoder (no fine-tuning)",
    "adapter": "the pretrained encoder (no fine-tuning)",
    "lora": "the pretrained encoder (no fine-tuning)",
    "full-squad": "the encoder fully fine-tuned on SQuAD",
    "adapter-squad": "the encoder with the SQuAD adapter alone",
    "adapter-seq-squad": "the encoder with the SQuAD adapter alone",
    "adapter-fusion-squad": "the encoder with the SQuAD adapter alone",
    "lora-squad": "the encoder with the SQuAD LoRA merged",
    "full-nli": "the encoder fully fine-tuned on NLI (SNLI)",
    "adapter-nli": "the encoder with the NLI adapter alone",
}
# XNLI's held-out rows come in threes sharing a premise, the same in every language: the premise is
# the unit resampled.
CLUSTERS = {"xnli": premise_of}
ALPHA = 0.05  # family-wise error rate of the verdicts (Holm)
CLAIM_KIND = "real"  # the only model kind whose accuracy the study compares
FP32 = "pytorch"
INT8 = "onnxruntime-int8"
EFFECT_WORDS = ("adds", "costs")  # an intermediate task's effect, above or below 0
RETRIEVAL_WORDS = ("retrieves better", "retrieves worse")  # a - b on BUCC and Tatoeba
MARGIN = 1.0  # points: "keeps" and "negligible" rule out a loss (or either effect) larger than this


def is_retrieval(task: str) -> bool:
    cls = TASKS.get(task)
    return bool(cls) and cls.kind == "retrieval"


def untrained(task: str, model: str) -> bool:
    """Whether `model` serves the pretrained encoder untouched on `task` (models/spec.py
    `pretrained_for`): its seeds are one set of weights, so its one figure has no training variance."""
    spec, cls = MODELS.get(model), TASKS.get(task)
    return spec is not None and cls is not None and spec.pretrained_for(cls.kind)


@dataclass
class Verdict:
    """One contrast (a - b on `task`) judged: `basis` says what its interval covers."""

    task: str
    a: str
    b: str
    observed: float  # the seed-0 checkpoints' difference (points)
    seeds: tuple[int, int]  # training seeds of a and of b
    basis: str  # "seeds" (training and test-set variance) | "one seed" (test set only) | "untested"
    p: float | None = None
    level: float | None = None  # Holm's confidence level for this contrast
    interval: Interval | None = None  # at `level`
    interval95: Interval | None = None  # at 95%, uncorrected (for reference only)
    word: str = "not tested"  # keeps_verdict / effect_verdict of `interval`
    df: float | None = None  # Welch-Satterthwaite degrees of freedom (basis "seeds")
    test_set: bool = False  # whether the interval holds the test set's variance (per-sample scores read)

    @property
    def retrieval(self) -> bool:
        return is_retrieval(self.task)

    @property
    def what(self) -> str:
        """The contrast in words: COMPARISONS' text, or for retrieval what each model is there."""
        if self.retrieval:
            return f"{RETRIEVAL_FORM[self.a]} vs {RETRIEVAL_FORM[self.b]}"
        return next(w for x, y, w in COMPARISONS if (x, y) == (self.a, self.b))


@dataclass
class AccuracyStudy:
    """Everything the report needs; intervals in points of the task's metric."""

    figures: dict[tuple[str, str], dict] = field(default_factory=dict)  # (task, model)
    differences: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (task, a, b)
    gaps: dict[tuple[str, str], Interval] = field(default_factory=dict)  # (task, model): transfer gap
    int8: dict[tuple[str, str], Interval] = field(default_factory=dict)  # (task, model)
    int8_figures: dict[tuple[str, str], float] = field(default_factory=dict)  # (task, model): seed 0
    seeds: dict[str, dict] = field(default_factory=dict)  # "task/model" -> values, mean, sd
    metric: dict[str, str] = field(default_factory=dict)  # task -> metric name
    verdicts: list[Verdict] = field(default_factory=list)  # one per contrast present, CONTRASTS order
    refused: list[str] = field(default_factory=list)  # runs left out, with why
    errors: list[str] = field(default_factory=list)  # runs that could not be compared, with why


def per_sample_name(run_path: str) -> str:
    """The name a run's per-sample scores are kept under in a report folder: its run-folder path
    relative to the runs root, '/' replaced by '__', plus .json.gz."""
    return str(run_path).strip("/").replace("/", "__") + ".json.gz"


def accuracy_study(
    runs: Sequence[Run], n_boot: int = N_BOOT, seed: int = 0, kept: Path | None = None
) -> AccuracyStudy:
    """The study's accuracy figures from the accuracy runs among `runs` (others are ignored).
    kept: a folder of per-sample files named by per_sample_name, read instead of the run folders'."""
    study = AccuracyStudy()
    acc = [r for r in runs if r.mode == "accuracy" and r.metric_value is not None]
    study.refused = [
        f"{r.path}: model kind {r.model_kind or 'unknown'!r}: no accuracy claim is made from tiny or "
        f"random models (only trained checkpoints, kind {CLAIM_KIND!r})"
        for r in acc
        if r.model_kind != CLAIM_KIND
    ]
    acc = [r for r in acc if r.model_kind == CLAIM_KIND]

    def attempt(make: Callable, *args):  # None, and the error noted, where the scores fail
        try:
            return make(*args)
        except BootstrapError as exc:
            study.errors.append(str(exc))
            return None

    def scores(r: Run) -> UnitScores | None:
        if kept is not None:
            return attempt(UnitScores.read, kept / per_sample_name(r.path))
        return attempt(UnitScores.load, r.path)

    main = {(r.task, r.model): r for r in acc if r.backend == FP32 and r.seed == 0}
    loaded = {key: s for key, r in main.items() if (s := scores(r)) is not None}
    for (task, model), unit_scores in sorted(loaded.items()):
        study.metric[task] = main[(task, model)].metric or ""
        reps = resample([unit_scores], n_boot, seed, CLUSTERS.get(task))
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
        for a, b in [(a, b) for t, a, b in CONTRASTS if t == task]:
            if (task, a) in loaded and (task, b) in loaded:
                pair = (loaded[(task, a)], loaded[(task, b)], n_boot, seed, CLUSTERS.get(task))
                if (d := attempt(difference, *pair)) is not None:
                    study.differences[(task, a, b)] = d
    for r in acc:
        if r.backend != INT8 or r.seed != 0 or (r.task, r.model) not in loaded:
            continue
        if (q := scores(r)) is not None:
            pair = (q, loaded[(r.task, r.model)], n_boot, seed, CLUSTERS.get(r.task))
            if (d := attempt(difference, *pair)) is not None:
                study.int8[(r.task, r.model)] = d["average"]
    for (task, model), values in seed_values(acc).items():
        if len(values) > 1:
            spread = {"mean": statistics.fmean(values.values()), "sd": statistics.stdev(values.values())}
            study.seeds[f"{task}/{model}"] = {"task": task, "model": model, "values": values, **spread}
    fp32 = {(r.task, r.model): r.metric_value for r in acc if r.backend == FP32 and r.seed == 0}
    for r in acc:
        study.metric.setdefault(r.task, r.metric or "")
        if r.backend == INT8 and r.seed == 0 and (r.task, r.model) in fp32:
            study.int8_figures[(r.task, r.model)] = r.metric_value - fp32[(r.task, r.model)]
    study.verdicts = contrast_verdicts(study, acc)
    return study


def seed_values(acc: Sequence[Run]) -> dict[tuple[str, str], dict[int, float]]:
    """(task, model) -> {training seed: task figure} of the PyTorch fp32 accuracy runs."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for r in acc:
        if r.backend == FP32 and r.metric_value is not None and r.model_kind == CLAIM_KIND:
            out.setdefault((r.task, r.model), {})[r.seed] = r.metric_value
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def holm_levels(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm's step-down as one confidence level per hypothesis (in input order): sorted by p, the
    i-th (from 0) of m gets 1 - alpha / (m - i) while every earlier one was rejected; from the first
    that is not, it and all later ones get that first one's level."""
    m = len(pvalues)
    levels = [0.0] * m
    stop = None
    for i, k in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        a = alpha / (m - i) if stop is None else stop
        levels[k] = 1.0 - a
        if stop is None and not pvalues[k] < a:
            stop = a
    return levels


def contrast_verdicts(study: AccuracyStudy, acc: Sequence[Run], alpha: float = ALPHA) -> list[Verdict]:
    """One Verdict per contrast of CONTRASTS whose two models have a seed-0 PyTorch figure, Holm-
    corrected across all of them: Welch's t over the seeds where both have two or more (a model
    serving the pretrained encoder untouched, `untrained`, counts as exact with one), else the
    seed-0 checkpoints' bootstrap interval where their per-sample scores were read."""
    seeds = seed_values(acc)
    out, tails = [], []
    for task, a, b in CONTRASTS:
        sa, sb = seeds.get((task, a), {}), seeds.get((task, b), {})
        if 0 not in sa or 0 not in sb:
            continue
        boot = study.differences.get((task, a, b))
        v = Verdict(task, a, b, sa[0] - sb[0], (len(sa), len(sb)), "untested")
        fixed_a, fixed_b = untrained(task, a), untrained(task, b)
        if (len(sa) >= 2 or fixed_a) and (len(sb) >= 2 or fixed_b):
            test_var = 0.0
            if boot is not None:
                test_var = float(boot["replicates"].var(ddof=1))  # the test set's share
                v.test_set = True
            est = seed_combination([(1.0, sa, fixed_a), (-1.0, sb, fixed_b)], test_var)
            v.basis, v.observed, v.df, v.p = "seeds", est.mean, est.df, est.p
            tails.append((v, est.interval))
        elif boot is not None:
            v.basis, v.observed, v.p, v.test_set = "one seed", boot["average"].value, boot["p"], True
            tails.append((v, lambda level, o=v.observed, r=boot["replicates"]: Interval.of(o, r, level)))
        out.append(v)
    levels = holm_levels([v.p if v.p is not None else 1.0 for v in out], alpha)
    for v, level in zip(out, levels, strict=True):
        v.level = level
    for v, make in tails:
        v.interval, v.interval95 = make(v.level), make(0.95)
        intermediate = any("intermediate" in w for x, y, w in COMPARISONS if (x, y) == (v.a, v.b))
        if v.retrieval:  # two encoders: no method keeps the other's accuracy, no stage adds to it
            v.word = effect_verdict(v.interval, words=RETRIEVAL_WORDS)
        else:
            v.word = effect_verdict(v.interval) if intermediate else keeps_verdict(v.interval)
    return out


@dataclass(frozen=True)
class SeedEstimate:
    """A combination of models' seed means with the seeds' and the test set's variance."""

    mean: float
    se: float
    df: float  # Welch-Satterthwaite

    @property
    def p(self) -> float:
        """Two-sided p-value of "the combination is 0" (Welch's t)."""
        if self.se <= 0:
            return float(self.mean == 0)
        return 2.0 * float(stats.t.sf(abs(self.mean) / self.se, self.df))

    def interval(self, level: float) -> Interval:
        return _t_interval(self.mean, self.se, self.df, level)


def seed_combination(
    sides: Sequence[tuple[float, Mapping[int, float], bool]], test_var: float = 0.0
) -> SeedEstimate:
    """sum(coefficient x seed mean) over `sides`, each (coefficient, {seed: figure}, exact): a - b
    is [(1, a, ...), (-1, b, ...)]. Its variance: each side's variance of its seed mean (none for
    an exact side, a model serving the pretrained encoder untouched, whose one figure has no
    training variance) plus the test set's `test_var` (the variance of the same combination's
    paired bootstrap replicates). Welch-Satterthwaite over the parts: the seeds' with n - 1 df
    each, the test set's from 2,000 replicates as good as known (infinite df: it adds to the
    numerator only, so a seed spread far below the test set's leaves t near the normal)."""
    parts = []  # (coefficient x seed mean, variance of that, its df)
    for c, s, exact in sides:
        n = len(s)
        seeds_var = 0.0 if exact else c * c * statistics.variance(s.values()) / n
        parts.append((c * statistics.fmean(s.values()), seeds_var, math.inf if exact else n - 1))
    mean = sum(m for m, _, _ in parts)
    var = sum(vm for _, vm, _ in parts) + test_var
    denom = sum(vm**2 / df for _, vm, df in parts if vm > 0)
    df = var**2 / denom if denom > 0 else 1e6  # no seed variance: t is the normal
    return SeedEstimate(mean, math.sqrt(var), df)


def _t_interval(mean: float, se: float, df: float, level: float) -> Interval:
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Interval(mean, mean - half, mean + half)


def keeps_verdict(d: Interval, margin: float = MARGIN) -> str:
    """'exceeds' (interval above 0), 'keeps' (it rules out a loss larger than `margin`), 'loses'
    (wholly below 0), else 'cannot tell'."""
    if d.low > 0:
        return "exceeds"
    if d.low >= -margin:
        return "keeps"
    return "loses" if d.high < 0 else "cannot tell"


def effect_verdict(d: Interval, margin: float = MARGIN, words: tuple[str, str] = EFFECT_WORDS) -> str:
    """'adds' (interval above 0), 'costs' (below 0), 'negligible' (it covers 0 and rules out an
    effect larger than `margin` either way), else 'cannot tell': an interval as wide as
    [-20, +16] covers 0 but says nothing about the effect. `words` name the two signs (two
    encoders compared on retrieval: RETRIEVAL_WORDS)."""
    if d.low > 0:
        return words[0]
    if d.high < 0:
        return words[1]
    return "negligible" if -margin <= d.low and d.high <= margin else "cannot tell"


def seed_rows(study: AccuracyStudy, acc: Sequence[Run]) -> list[dict]:
    """The per-seed figures the verdicts use: one row per (task, model, seed), PyTorch fp32."""
    return [
        {"task": t, "model": m, "seed": k, "metric": study.metric.get(t, ""), "value": x}
        for (t, m), per in seed_values(acc).items()
        for k, x in per.items()
    ]


VERDICT_COLUMNS = (
    "task", "a", "b", "what", "seeds_a", "seeds_b", "basis", "p", "level", "difference", "low", "high",
    "low95", "high95", "df", "verdict",
)  # fmt: skip


def verdict_rows(study: AccuracyStudy) -> list[dict]:
    """The verdicts as rows (VERDICT_COLUMNS; None where a contrast has no interval): what
    verdicts.csv holds, and what `python -m research curve` reads of each report."""
    rows = []
    for v in study.verdicts:
        hi, lo = v.interval, v.interval95  # the Holm interval and the uncorrected 95% one
        rows.append({
            "task": v.task, "a": v.a, "b": v.b, "what": v.what,
            "seeds_a": v.seeds[0], "seeds_b": v.seeds[1], "basis": v.basis, "p": v.p,
            "level": v.level if hi else None,
            "difference": hi.value if hi else v.observed,
            "low": hi.low if hi else None, "high": hi.high if hi else None,
            "low95": lo.low if lo else None, "high95": lo.high if lo else None,
            "df": v.df, "verdict": v.word,
        })  # fmt: skip
    return rows


MISSING = "missing; rescore the run (accuracy run, this version)"  # bootstrap's error for no scores


def model_words(task: str, model: str) -> str:
    """The model as a figures row names it: on a retrieval task, also what it is there (several
    models serve the same encoder)."""
    return (
        f"{model}: {RETRIEVAL_FORM[model]}" if is_retrieval(task) and model in RETRIEVAL_FORM else model
    )


def markdown(study: AccuracyStudy, task_titles: dict[str, str] | None = None) -> list[str]:
    """The accuracy section of study.md: figures, test-set differences, verdicts, int8, seeds."""
    title = (task_titles or {}).get
    lines = ["## Accuracy (zero-shot, LoadGen AccuracyOnly runs)"]
    if not study.figures:
        lines += [
            "",
            "No per-sample scores of trained checkpoints (model kind `real`) were read: no bootstrap "
            "interval; the verdicts below use the runs' task figures and training seeds only.",
        ]
    lines += table_block(
        f"Each figure: the task score of one PyTorch fp32 AccuracyOnly run, scored by the accuracy "
        f"scripts; [low, high] = 2.5th-97.5th percentile of {N_BOOT} bootstrap replicates "
        "(research/bootstrap.py): XNLI resamples premises jointly across its languages (row i is "
        "the same item in every language), the other tasks their units within each language. "
        "Differences are paired: both models on the same resampled samples.",
        ["task", "metric", "model", "score [95% CI]", "English minus others [95% CI]"],
        (
            [title(t, t), study.metric.get(t, ""), model_words(t, m), f["average"].text(signed=False)]
            + [g.text() if (g := study.gaps.get((t, m))) else "-"]
            for (t, m), f in study.figures.items()
        ),
    )
    lines += table_block(
        "Test-set differences of the seed-0 checkpoints (a minus b, points), 95% CI, uncorrected "
        "(the verdicts below correct them):",
        ["task", "a - b", "difference [95% CI]"],
        ([title(t, t), f"{a} - {b}", d["average"].text()] for (t, a, b), d in study.differences.items()),
    )
    lines += table_block(
        f"Verdicts: every contrast of research/accuracy.py CONTRASTS, Holm-corrected (family-wise "
        f"{ALPHA:.0%}). Basis `seeds`: difference of the seed means, with training-seed and test-set "
        "variance (Welch); `one seed`: the seed-0 checkpoints' test-set interval, no method claim; "
        "`untested`: no interval in the data read.",
        ["task", "a - b", "what it compares", "seeds (a, b)", "basis", "p", "Holm level"]
        + ["difference [Holm interval]", "uncorrected 95%", "Welch df", "verdict"],
        (
            [title(v.task, v.task), f"{v.a} - {v.b}", v.what, f"{v.seeds[0]}, {v.seeds[1]}", v.basis]
            + ["-" if v.p is None else f"{v.p:.3g}", f"{100 * v.level:.2f}%" if v.interval else "-"]
            + [v.interval.text() if v.interval else f"{v.observed:+.1f}"]
            + [v.interval95.text() if v.interval95 else "-"]
            + ["-" if v.df is None else f"{v.df:.1f}", v.word]
            for v in study.verdicts
        ),
    )
    lines += table_block(
        "ONNX Runtime int8 minus PyTorch fp32, same model and seed (points): the paired 95% CI where "
        "the per-sample scores were read, and the difference of the two task figures:",
        ["task", "model", "int8 - fp32 [95% CI]", "task figures"],
        (
            [title(t, t), m, study.int8[(t, m)].text() if (t, m) in study.int8 else "-", f"{d:+.2f}"]
            for (t, m), d in sorted(study.int8_figures.items())
        ),
    )
    lines += table_block(
        "Training noise (PyTorch fp32 runs of zoos trained with other seeds):",
        ["task", "model", "per seed", "mean", "sd"],
        (
            [title(s["task"], s["task"]), s["model"]]
            + [", ".join(f"{k}: {v:.2f}" for k, v in s["values"].items())]
            + [f"{s['mean']:.2f}", f"{s['sd']:.2f}"]
            for s in study.seeds.values()
        ),
    )
    missing = [e for e in study.errors if e.endswith(MISSING)]
    lines += [""] if study.refused or study.errors else []
    others = [e for e in study.errors if e not in missing]
    lines += [f"- left out: {note}" for note in (*study.refused, *others)]
    if missing:
        lines.append(
            f"- {len(missing)} accuracy runs have no per-sample file (per_sample.json) in the data "
            "read: their figures enter the verdicts, not the bootstrap."
        )
    return [*lines, ""]
