"""How the selection picks a learning rate and an epoch count per model from its trials' English dev
curves, and the file that carries the choice to `python -m zoo build --selected` (docs/selection.md).

Pure data and arithmetic (no torch): `python -m zoo select` (zoo/select.py) writes the file, the
recipe (zoo/recipe.py) reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.datafiles import NUMBER, DataFileError, check, read_toml
from models.registry import MODELS, TASKS

FLAT_GAIN = 0.5  # points: a curve whose last FLAT_WINDOW epochs gain less than this has flattened
FLAT_WINDOW = 2  # epochs
TIE = 9  # decimals: dev means equal to this many decimals are a tie (float noise, not a difference)


@dataclass(frozen=True)
class Choice:
    """One model's choice: the learning rate and epoch count with the best mean dev figure, that
    figure, and whether the chosen learning rate's mean curve flattened within max_epochs (`gain`:
    what its last FLAT_WINDOW epochs added, None when the curve is shorter than that)."""

    lr: float
    epochs: int
    dev: float
    max_epochs: int
    flattened: bool
    gain: float | None

    def why(self) -> str:
        """Why the curve counts as flattened or not, in words (the report's column)."""
        gain = f"last {FLAT_WINDOW} epochs {self.gain:+.1f}" if self.gain is not None else ""
        if self.epochs < self.max_epochs:
            return f"yes: best at epoch {self.epochs} of {self.max_epochs}"
        if self.flattened:
            return f"yes: {gain} (< {FLAT_GAIN:g})"
        return f"NO: best at the last epoch, {gain or 'too few epochs to tell'}"


def mean_curve(curves: list[list[float]]) -> list[float]:
    """The per-epoch mean of equally long curves (one per seed)."""
    if not curves or len({len(c) for c in curves}) != 1:
        raise ValueError(f"curves of unequal lengths: {[len(c) for c in curves]}")
    return [sum(points) / len(points) for points in zip(*curves, strict=True)]


def choose(curves: dict[float, list[list[float]]]) -> Choice:
    """The choice over `curves` (learning rate -> one dev curve per seed, the figure after each epoch
    1..max_epochs): the (learning rate, epoch) with the highest dev figure averaged over seeds; a
    tie goes to fewer epochs, then to the smaller learning rate."""
    means = {lr: mean_curve(c) for lr, c in curves.items()}
    _, epochs, lr = min(
        (-round(value, TIE), epoch, lr)
        for lr, curve in means.items()
        for epoch, value in enumerate(curve, 1)
    )
    curve = means[lr]
    gain = curve[-1] - curve[-1 - FLAT_WINDOW] if len(curve) > FLAT_WINDOW else None
    flat = epochs < len(curve) or (gain is not None and gain < FLAT_GAIN)
    return Choice(lr, epochs, curve[epochs - 1], len(curve), flat, gain)


# --- the file `python -m zoo build --selected` reads ------------------------------------------------
SELECTED_SCHEMA = {
    "encoder": str,
    "grid": str,
    "selected": {
        str: {str: {"lr": NUMBER, "epochs": int, "max_epochs": int, "dev": NUMBER, "seeds": [int]}}
    },
}


def selected_text(
    encoder: str, grid: str, task: str, choices: dict[str, Choice], seeds: list[int]
) -> str:
    """The selected-values file (TOML) for `choices` (model -> Choice) on `task`."""
    lines = [
        f"# Written by `python -m zoo select --grid {grid}` (docs/selection.md): per model the",
        "# learning rate and epoch count chosen on the English dev split, trained on XNLI rows only."
        if task == "xnli"
        else f"# learning rate and epoch count chosen on the English {task} dev split.",
        "# `python -m zoo build --selected <this file>` trains the target stages with them.",
        f"encoder = {json.dumps(encoder)}",
        f"grid = {json.dumps(grid)}",
    ]
    for model, c in choices.items():
        lines += [
            "",
            f'[selected.{task}."{model}"]',
            f"lr = {c.lr!r}",
            f"epochs = {c.epochs}",
            f"max_epochs = {c.max_epochs}",
            f"dev = {c.dev!r}",
            f"seeds = {list(seeds)}",
        ]
    return "\n".join(lines) + "\n"


def read_selected(path: Path, encoder: str) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> model -> the choice as a stage's zoo.json records it (`training.selection`: the file,
    lr, epochs, max_epochs, dev, seeds). DataFileError naming the file and the key when it does not
    match its schema, names an unknown task or model, or was selected for another encoder."""
    data = read_toml(path)
    check(path, data, SELECTED_SCHEMA)
    if data["encoder"] != encoder:
        raise DataFileError(
            f"{path}: key 'encoder': selected for {data['encoder']!r}, not for --encoder {encoder!r}"
        )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task, models in data["selected"].items():
        if task not in TASKS:
            raise DataFileError(
                f"{path}: key 'selected.{task}': unknown task (known: {', '.join(TASKS)})"
            )
        for model, c in models.items():
            where = f"selected.{task}.{model}"
            if model not in MODELS:
                raise DataFileError(f"{path}: key {where!r}: unknown model (known: {', '.join(MODELS)})")
            if not (c["lr"] > 0 and 1 <= c["epochs"] <= c["max_epochs"]):
                raise DataFileError(
                    f"{path}: key {where!r}: needs lr > 0 and 1 <= epochs <= max_epochs, got {c}"
                )
            out.setdefault(task, {})[model] = {"file": str(path), **c}
    return out


def read_selections(paths: Sequence[Path], encoder: str) -> dict[str, dict[str, dict[str, Any]]]:
    """`read_selected` of each file, merged by task (one selection per task: XNLI's and TyDiQA's
    grids write one file each); DataFileError naming both files when two choose for one task."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    source: dict[str, Path] = {}
    for path in paths:
        for task, chosen in read_selected(path, encoder).items():
            if task in source:
                raise DataFileError(
                    f"{path}: key 'selected.{task}': {source[task]} chooses for {task} already "
                    "(one selection file per task)"
                )
            out[task], source[task] = chosen, path
    return out
