"""`python -m research curve`: the learning curve's points side by side.

`python -m research study --preset e5-small-curve` writes one report per training data option
(`reports/study-e5-curve` for XNLI's 1,245 English rows, `reports/study-e5-curve-<option>` for the
options that add SNLI pairs: models/zoo_layout.py TRAIN_DATA). Each report judges adapter - full and
lora - full on XNLI with its own seeds and Holm family (its verdicts.csv). This command reads them
and writes one table, a row per training data: the seed means of full, adapter and lora, and each
contrast's difference with its interval and verdict as its report gives them. A point not run yet
says so. These figures are not recomputed: a reader checks each against its report.

Whether a gap narrows with data is a question none of the reports answers alone: a second table
gives, for each later point, the change of adapter - full and lora - full from the first point
(a difference of differences), with an interval holding the four models' training-seed variance
and the test set's (the four seed-0 runs' per-sample scores, kept in each report's per_sample/,
resampled together by XNLI premise), Holm-corrected over the changes in the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from common.exit_codes import BAD_INPUT
from common.paths import REPO, repo_relative
from common.tables import markdown_table
from models.zoo_layout import DEFAULT_TRAIN_DATA, TRAIN_DATA, data_models_dir
from research.accuracy import (
    ALPHA,
    CLUSTERS,
    FP32,
    effect_verdict,
    holm_levels,
    per_sample_name,
    seed_combination,
)
from research.bootstrap import N_BOOT, BootstrapError, Interval, UnitScores, resample
from research.collect import runs_from_csv
from research.datafiles import DataFileError
from tasks.scoring.cli import write_atomically
from zoo.recipe import data_words

TASK = "xnli"
MODELS = ("full", "adapter", "lora")
CONTRASTS = (("adapter", "full"), ("lora", "full"))
DEFAULT_BASE = REPO / "reports" / "study-e5-curve"
# the second design's XNLI report: the 1,245-row point trained as tuned on the English dev split
DEFAULT_SELECTED = REPO / "reports" / "study-e5-xnli-seeds"
SELECTED_WORDS = (
    "the 1,245 English XNLI training rows alone, each arm's learning rate and epochs selected on "
    "the English dev split (the second design)"
)
NOT_RUN = "not run"
CHANGE_WORDS = ("rises", "falls")  # a later point's a - b against the first point's


def read_point(folder: Path) -> dict | None:
    """One point's figures from its report folder: {"means": model -> (mean, seeds), "seeds":
    model -> {seed: figure}, "verdicts": (a, b) -> row}; None where the folder has no
    verdicts.csv (not run yet). DataFileError naming the file where one cannot be read."""
    verdicts, seeds = folder / "verdicts.csv", folder / "accuracy_seeds.csv"
    if not verdicts.is_file():
        return None
    try:
        v = pd.read_csv(verdicts)
        s = pd.read_csv(seeds)
        v = v[v["task"] == TASK]
        s = s[s["task"] == TASK]
        means = {m: (g["value"].mean(), len(g)) for m, g in s.groupby("model")}
        per_seed = {m: dict(zip(g["seed"], g["value"], strict=True)) for m, g in s.groupby("model")}
        rows = {(r["a"], r["b"]): r for r in v.to_dict("records")}
    except (OSError, KeyError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError: ValueError
        raise DataFileError(
            f"{folder}: not a study report's verdicts.csv and accuracy_seeds.csv ({exc})"
        ) from exc
    return {"means": means, "seeds": per_seed, "verdicts": rows}


def seed0_scores(folder: Path) -> dict[str, UnitScores]:
    """model -> the per-sample XNLI scores of its seed-0 PyTorch run, as the report keeps them
    (per_sample/, named by the run's path in study_runs.csv); DataFileError naming the file where
    one cannot be read."""
    runs_csv = folder / "study_runs.csv"
    try:
        runs = runs_from_csv(runs_csv)
    except (OSError, KeyError, TypeError, ValueError, pd.errors.ParserError) as exc:
        raise DataFileError(f"{runs_csv}: not a study report's study_runs.csv ({exc})") from exc
    out = {}
    for r in runs:
        if (r.task, r.mode, r.backend, r.seed) == (TASK, "accuracy", FP32, 0) and r.model in MODELS:
            try:
                out[r.model] = UnitScores.read(folder / "per_sample" / per_sample_name(r.path))
            except BootstrapError as exc:
                raise DataFileError(str(exc)) from exc
    return out


def gap_changes(
    first: tuple[dict, Path], later: list[tuple[str, dict, Path]], n_boot: int = N_BOOT, seed: int = 0
) -> dict[tuple[str, str, str], tuple[Interval, float, str]]:
    """(option, a, b) -> (the change of a - b from the `first` point [Holm interval], its level,
    verdict) for each `later` point (option, read_point, folder) and contrast of CONTRASTS whose
    four models have two or more seeds and seed-0 per-sample scores at both points."""
    (base, base_dir), estimates = first, {}
    base_scores = seed0_scores(base_dir)
    for option, point, folder in later:
        scores = seed0_scores(folder)
        for a, b in CONTRASTS:  # (a - b) at this point minus (a - b) at the first
            sides = [(point, scores, a, 1.0), (point, scores, b, -1.0)]
            sides += [(base, base_scores, a, -1.0), (base, base_scores, b, 1.0)]
            seeds = [p["seeds"].get(m, {}) for p, _, m, _ in sides]
            runs = [s.get(m) for _, s, m, _ in sides]
            if any(len(s) < 2 for s in seeds) or None in runs:
                continue
            coefficients = [c for *_, c in sides]
            _, replicates = resample(runs, n_boot, seed, CLUSTERS[TASK]).average()
            test_var = float((replicates @ coefficients).var(ddof=1))  # the test set's share
            estimates[(option, a, b)] = seed_combination(
                [(c, s, False) for c, s in zip(coefficients, seeds, strict=True)], test_var
            )
    levels = holm_levels([e.p for e in estimates.values()], ALPHA)
    out = {}
    for key, level in zip(estimates, levels, strict=True):
        interval = estimates[key].interval(level)
        out[key] = (interval, level, effect_verdict(interval, words=CHANGE_WORDS))
    return out


def contrast_cell(row: dict | None) -> list[str]:
    """difference [interval] (at its Holm level) and the verdict, or '-' twice."""
    if row is None:
        return ["-", "-"]
    if pd.isna(row["low"]):
        return [f"{row['difference']:+.1f} (no interval: {row['basis']})", row["verdict"]]
    level = f", {100 * row['level']:.2f}%" if not pd.isna(row["level"]) else ""
    return [f"{row['difference']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}{level}]", row["verdict"]]


def change_cell(judged: tuple[Interval, float, str] | None) -> list[str]:
    """change [interval, Holm level] and the verdict, or '-' twice."""
    if judged is None:
        return ["-", "-"]
    i, level, word = judged
    return [f"{i.value:+.1f} [{i.low:+.1f}, {i.high:+.1f}, {100 * level:.2f}%]", word]


def curve_table(base: Path, selected: Path | None = None) -> tuple[list[str], list[str], int, int]:
    """The markdown table of every training data option's point, then the `selected` report's (the
    1,245 rows trained with each arm's selected learning rate and epochs); the table of each later
    point's gap changes from the first (`gap_changes`; empty where the first is not run); how many
    points were read, of how many."""
    points = [(option, data_words(option), data_models_dir(base, option)) for option in TRAIN_DATA]
    if selected is not None:
        points.append((f"{DEFAULT_TRAIN_DATA}, selected", SELECTED_WORDS, selected))
    rows, read = [], []
    for option, words, folder in points:
        point = read_point(folder)
        if point is None:
            rows.append([option, words, *[NOT_RUN] * len(MODELS), *["-"] * 4])
            continue
        read.append((option, point, folder))
        means = [
            f"{point['means'][m][0]:.2f} ({point['means'][m][1]})" if m in point["means"] else "-"
            for m in MODELS
        ]
        cells = [c for pair in CONTRASTS for c in contrast_cell(point["verdicts"].get(pair))]
        rows.append([option, words, *means, *cells])
    header = ["training data", "rows", *(f"{m} (seeds)" for m in MODELS)]
    header += [h for a, b in CONTRASTS for h in (f"{a} - {b} [Holm interval]", "verdict")]
    changes = []
    if read and read[0][0] == points[0][0]:  # the first point is the base of every change
        (first, point, folder), later = read[0], read[1:]
        judged = gap_changes((point, folder), later)
        change_rows = [
            [
                f"{option} vs {first}",
                *(c for a, b in CONTRASTS for c in change_cell(judged.get((option, a, b)))),
            ]
            for option, _, _ in later
        ]
        change_header = ["points"]
        change_header += [
            h for a, b in CONTRASTS for h in (f"change in {a} - {b} [Holm interval]", "verdict")
        ]
        changes = markdown_table(change_header, change_rows)
    return markdown_table(header, rows), changes, len(read), len(points)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        type=Path,
        default=DEFAULT_BASE,
        help="the 1,245-row point's report folder; the other options' are beside it (<base>-<option>)",
    )
    parser.add_argument(
        "--selected",
        type=Path,
        default=DEFAULT_SELECTED,
        help="the report of the 1,245 rows trained with the selected learning rates and epochs, "
        "the last row",
    )
    parser.add_argument("--out", type=Path, help="the table's file (default: <base>/curve.md)")


def main(args: argparse.Namespace) -> int:
    out = args.out or args.base / "curve.md"
    try:
        table, changes, read, points = curve_table(args.base, args.selected)
    except DataFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    text = [
        "# The learning curve: XNLI accuracy with more English training data",
        "",
        f"Made by `python -m research curve --base {repo_relative(args.base)}` from the reports of "
        "`python -m research study --preset e5-small-curve [--train_data OPTION]`: each row's figures "
        "are its report's (PyTorch fp32, the average over XNLI's 15 languages, zero-shot from English "
        "training), each model's mean over its training seeds (how many in brackets), each contrast's "
        "interval at its report's Holm level (seed and test-set variance: docs/study.md). The "
        "preset trains every point with the recipe's learning rates and epochs; the last row, "
        f"from `{repo_relative(args.selected)}`, is the 1,245-row point trained as the English dev "
        "split chose (its Holm family is the second design's, a larger one): where it differs from "
        "the first row, the recipe's training, not the data, made the difference.",
        "",
        *table,
        "",
    ]
    if changes:
        text += [
            "Does a gap narrow? Each later row's change in adapter - full and lora - full from the "
            "first row (a difference of differences, in points): its interval holds the four "
            "models' training-seed variance (Welch) and the test set's (their seed-0 runs' "
            "per-sample scores resampled together by XNLI premise), at Holm's level over the "
            f"changes in this table (family-wise {ALPHA:.0%}). A rise of a negative gap is a "
            "narrowing; 'negligible' rules out a change over 1 point either way.",
            "",
            *changes,
            "",
        ]
    write_atomically(out, "\n".join(text))
    print(f"curve: {read} of {points} points read -> {out}")
    return 0
