"""Paired bootstrap confidence intervals over the evaluation samples of accuracy runs.

Input: the unit scores an accuracy run writes beside its accuracy.txt (`per_sample.json`,
tasks/scoring/result.py): per language, one score per evaluation unit (an XNLI sample, a TyDiQA
question, a Tatoeba sentence) or, for BUCC, [correct, predicted, gold] counts per source sentence.

Resampling is stratified by language, as the task figure is the unweighted mean of per-language
figures: each bootstrap replicate draws, in every language, as many units as it has, with replacement,
and the SAME draws for every run compared (paired: the difference of two models on one replicate is
computed on the very same samples, which removes the samples' own difficulty from the spread).
A 95% interval is the 2.5th to 97.5th percentile of the replicates (the percentile bootstrap).

Clustered resampling (`clusters`, a function of a unit id): units whose ids map to the same cluster
are drawn together, in every language at once. XNLI's row i is the same item translated into all 15
languages (and three consecutive rows share one premise), so its units are not independent across
languages: resampling each language separately treats 15 x 1,245 units as independent and gives an
interval about sqrt(15) too narrow when items, not languages, decide the errors. A clustered
replicate draws K clusters with replacement from the K clusters of the data; each unit then counts
as many times as its cluster was drawn, in every language and every run compared.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.scoring.result import PER_SAMPLE, PER_SAMPLE_GZ

N_BOOT = 2000
ENGLISH = "en"


class BootstrapError(ValueError):
    """Unit scores that cannot be compared (missing file, different samples, different statistic)."""


@dataclass(frozen=True)
class UnitScores:
    """One run's unit scores: language -> (ids, scores [n] or counts [n, 3])."""

    statistic: str  # "mean" | "f1_counts"
    languages: dict[str, tuple[list, np.ndarray]]
    source: str = ""

    @classmethod
    def load(cls, run_dir: str | Path) -> UnitScores:
        """The per_sample.json of a run folder, or its gzip copy where only that is kept."""
        plain, kept = Path(run_dir) / PER_SAMPLE, Path(run_dir) / PER_SAMPLE_GZ
        return cls.read(kept if not plain.is_file() and kept.is_file() else plain)

    @classmethod
    def read(cls, path: str | Path) -> UnitScores:
        """A per-sample score file, plain or gzip-compressed (a name ending in .gz)."""
        path = Path(path)
        if not path.is_file():
            raise BootstrapError(f"{path}: missing; rescore the run (accuracy run, this version)")
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            data = json.loads(raw.decode("utf-8"))
            per = {
                lang: (list(e["ids"]), np.asarray(e["scores"], dtype=np.float64))
                for lang, e in data["per_language"].items()
            }
            return cls(data["statistic"], per, str(path))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError, EOFError) as exc:
            raise BootstrapError(f"{path}: not a per-sample score file ({exc})") from exc


def language_figure(statistic: str, scores: np.ndarray) -> np.ndarray:
    """The per-language figure from unit scores summed along axis -2 (mean or F1 x100 of counts).
    scores: [..., n] (mean) or [..., n, 3] (f1_counts)."""
    if statistic == "mean":
        return scores.mean(axis=-1)
    c = scores.sum(axis=-2)
    denom = c[..., 1] + c[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 200.0 * c[..., 0] / np.maximum(denom, 1e-12), 0.0)


def aligned(runs: Sequence[UnitScores]) -> tuple[str, list[str], list[list[np.ndarray]]]:
    """(statistic, languages, per language the runs' scores on the same units in the same order).
    Raises BootstrapError when the runs do not share their languages and units."""
    stats = {r.statistic for r in runs}
    if len(stats) != 1:
        raise BootstrapError(f"runs mix statistics {sorted(stats)}: {[r.source for r in runs]}")
    langs = list(runs[0].languages)
    for r in runs[1:]:
        if set(r.languages) != set(langs):
            raise BootstrapError(
                f"{r.source}: languages {sorted(r.languages)} differ from "
                f"{runs[0].source}'s {sorted(langs)}"
            )
    per_lang = []
    for lang in langs:
        ids = runs[0].languages[lang][0]
        order = []
        for r in runs:
            pos = {i: k for k, i in enumerate(r.languages[lang][0])}
            if len(pos) != len(ids) or any(i not in pos for i in ids):
                raise BootstrapError(
                    f"{r.source}: the {lang} samples differ from {runs[0].source}'s: not comparable"
                )
            order.append(r.languages[lang][1][[pos[i] for i in ids]])
        per_lang.append(order)
    return stats.pop(), langs, per_lang


@dataclass(frozen=True)
class Replicates:
    """Per language: the observed figure of each run [k] and its bootstrap replicates [B, k]."""

    languages: list[str]
    observed: np.ndarray  # [L, k]
    replicates: np.ndarray  # [L, B, k]

    def average(self) -> tuple[np.ndarray, np.ndarray]:
        """The task figure (mean over languages): observed [k], replicates [B, k]."""
        return self.observed.mean(axis=0), self.replicates.mean(axis=0)

    def language(self, lang: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.languages.index(lang)
        return self.observed[i], self.replicates[i]

    def transfer_gap(self) -> tuple[np.ndarray, np.ndarray]:
        """English minus the mean of the other languages: observed [k], replicates [B, k]."""
        if ENGLISH not in self.languages or len(self.languages) < 2:
            raise BootstrapError("the transfer gap needs English and at least one other language")
        i = self.languages.index(ENGLISH)
        rest = [k for k in range(len(self.languages)) if k != i]
        return (
            self.observed[i] - self.observed[rest].mean(axis=0),
            self.replicates[i] - self.replicates[rest].mean(axis=0),
        )


def resample(
    runs: Sequence[UnitScores],
    n_boot: int = N_BOOT,
    seed: int = 0,
    clusters: Callable[[object], Hashable] | None = None,
) -> Replicates:
    """Paired bootstrap replicates of every run's per-language figure: stratified by language
    (clusters None: each language draws its own units), or by cluster jointly across languages
    (`clusters(unit id)` -> cluster key; see the module docstring)."""
    statistic, langs, per_lang = aligned(runs)
    rng = np.random.default_rng(seed)
    stacked = [np.stack(scores, axis=0) for scores in per_lang]  # per language [k, n] or [k, n, 3]
    observed = np.array([language_figure(statistic, x) for x in stacked])
    if clusters is not None:
        ids = [runs[0].languages[lang][0] for lang in langs]
        return Replicates(langs, observed, _clustered(statistic, stacked, ids, clusters, n_boot, rng))
    replicates = []
    for x in stacked:
        n = x.shape[1]
        figs = np.empty((n_boot, x.shape[0]))
        for start in range(0, n_boot, 250):  # bounded memory: 250 x n draws at a time
            draw = rng.integers(0, n, size=(min(250, n_boot - start), n))
            figs[start : start + len(draw)] = language_figure(statistic, np.moveaxis(x[:, draw], 0, 1))
        replicates.append(figs)
    return Replicates(langs, observed, np.array(replicates))


def _clustered(statistic, stacked, ids, clusters, n_boot, rng) -> np.ndarray:
    """[L, B, k] replicates: per replicate, K clusters drawn with replacement (the same draw for
    every language and run); a unit is weighted by how often its cluster was drawn."""
    keys = sorted({clusters(i) for lang_ids in ids for i in lang_ids}, key=repr)
    index = {key: c for c, key in enumerate(keys)}
    unit_cluster = [np.array([index[clusters(i)] for i in lang_ids]) for lang_ids in ids]
    k_runs = stacked[0].shape[0]
    out = np.empty((len(stacked), n_boot, k_runs))
    for start in range(0, n_boot, 250):
        b = min(250, n_boot - start)
        drawn = rng.integers(0, len(keys), size=(b, len(keys)))
        weight = np.zeros((b, len(keys)))
        np.add.at(weight, (np.arange(b)[:, None], drawn), 1.0)  # times each cluster was drawn
        for li, (x, uc) in enumerate(zip(stacked, unit_cluster, strict=True)):
            w = weight[:, uc]  # [b, n]
            if statistic == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[li, start : start + b] = (w @ x.T) / w.sum(axis=1, keepdims=True)
            else:  # summed counts [b, k, 3]: F1 of the weighted sums
                c = np.einsum("bn,knj->bkj", w, x)
                denom = c[..., 1] + c[..., 2]
                with np.errstate(invalid="ignore", divide="ignore"):
                    f1 = np.where(denom > 0, 200.0 * c[..., 0] / np.maximum(denom, 1e-12), 0.0)
                out[li, start : start + b] = f1
    return out


def p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": twice the smaller share of replicates
    on either side of 0 (capped at 1); consistent with the percentile interval, which excludes 0 at
    level 1 - alpha exactly when this is below alpha (up to ties at 0)."""
    r = np.asarray(replicates, dtype=float)
    return float(min(1.0, 2.0 * min(np.mean(r <= 0.0), np.mean(r >= 0.0))))


@dataclass(frozen=True)
class Interval:
    """A figure (or difference) with its 95% percentile-bootstrap interval, in points."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, observed: float, replicates: np.ndarray, level: float = 0.95) -> Interval:
        """The percentile interval of `replicates` at `level` (0.95: 2.5th to 97.5th percentile)."""
        tail = 100.0 * (1.0 - level) / 2.0
        lo, hi = np.percentile(replicates, [tail, 100.0 - tail])
        return cls(float(observed), float(lo), float(hi))

    def covers(self, x: float) -> bool:
        return self.low <= x <= self.high

    def text(self, signed: bool = True) -> str:
        f = "+.1f" if signed else ".1f"
        return f"{self.value:{f}} [{self.low:{f}}, {self.high:{f}}]"


def difference(
    a: UnitScores,
    b: UnitScores,
    n_boot: int = N_BOOT,
    seed: int = 0,
    clusters: Callable[[object], Hashable] | None = None,
) -> dict:
    """a minus b: {"average": Interval, "per_language": {lang: Interval}, "n": units, "replicates":
    the average difference's replicates [B], "p": p_value of them}."""
    reps = resample([a, b], n_boot, seed, clusters)
    obs, rep = reps.average()
    per = {}
    for lang in reps.languages:
        o, r = reps.language(lang)
        per[lang] = Interval.of(o[0] - o[1], r[:, 0] - r[:, 1])
    n = sum(len(ids) for ids, _ in a.languages.values())
    diff = rep[:, 0] - rep[:, 1]
    average = Interval.of(obs[0] - obs[1], diff)
    return {"average": average, "per_language": per, "n": n, "replicates": diff, "p": p_value(diff)}
