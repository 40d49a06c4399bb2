"""`python -m research curve`: the learning curve's points side by side.

`python -m research study --preset e5-small-curve` writes one report per training data option
(`reports/study-e5-curve` for XNLI's 1,245 English rows, `reports/study-e5-curve-<option>` for the
options that add SNLI pairs: models/zoo_layout.py TRAIN_DATA). Each report judges adapter - full and
lora - full on XNLI with its own seeds and Holm family (its verdicts.csv). This command reads them
and writes one table, a row per training data: the seed means of full, adapter and lora, and each
contrast's difference with its interval and verdict as its report gives them. A point not run yet
says so. Nothing is recomputed here: a reader checks each figure against its report.
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


def read_point(folder: Path) -> dict | None:
    """One point's figures from its report folder: {"means": model -> (mean, seeds),
    "verdicts": (a, b) -> row}; None where the folder has no verdicts.csv (not run yet).
    DataFileError naming the file where one cannot be read."""
    verdicts, seeds = folder / "verdicts.csv", folder / "accuracy_seeds.csv"
    if not verdicts.is_file():
        return None
    try:
        v = pd.read_csv(verdicts)
        s = pd.read_csv(seeds)
        v = v[v["task"] == TASK]
        s = s[s["task"] == TASK]
        means = {m: (g["value"].mean(), len(g)) for m, g in s.groupby("model")}
        rows = {(r["a"], r["b"]): r for r in v.to_dict("records")}
    except (OSError, KeyError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError: ValueError
        raise DataFileError(
            f"{folder}: not a study report's verdicts.csv and accuracy_seeds.csv ({exc})"
        ) from exc
    return {"means": means, "verdicts": rows}


def contrast_cell(row: dict | None) -> list[str]:
    """difference [interval] (at its Holm level) and the verdict, or '-' twice."""
    if row is None:
        return ["-", "-"]
    if pd.isna(row["low"]):
        return [f"{row['difference']:+.1f} (no interval: {row['basis']})", row["verdict"]]
    level = f", {100 * row['level']:.2f}%" if not pd.isna(row["level"]) else ""
    return [f"{row['difference']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}{level}]", row["verdict"]]


def curve_table(base: Path, selected: Path | None = None) -> tuple[list[str], int, int]:
    """The markdown table of every training data option's point, then the `selected` report's (the
    1,245 rows trained with each arm's selected learning rate and epochs); how many points were
    read, of how many."""
    points = [(option, data_words(option), data_models_dir(base, option)) for option in TRAIN_DATA]
    if selected is not None:
        points.append((f"{DEFAULT_TRAIN_DATA}, selected", SELECTED_WORDS, selected))
    rows, read = [], 0
    for option, words, folder in points:
        point = read_point(folder)
        if point is None:
            rows.append([option, words, *[NOT_RUN] * len(MODELS), *["-"] * 4])
            continue
        read += 1
        means = [
            f"{point['means'][m][0]:.2f} ({point['means'][m][1]})" if m in point["means"] else "-"
            for m in MODELS
        ]
        cells = [c for pair in CONTRASTS for c in contrast_cell(point["verdicts"].get(pair))]
        rows.append([option, words, *means, *cells])
    header = ["training data", "rows", *(f"{m} (seeds)" for m in MODELS)]
    header += [h for a, b in CONTRASTS for h in (f"{a} - {b} [Holm interval]", "verdict")]
    return markdown_table(header, rows), read, len(points)


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
        table, read, points = curve_table(args.base, args.selected)
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
    write_atomically(out, "\n".join(text))
    print(f"curve: {read} of {points} points read -> {out}")
    return 0
