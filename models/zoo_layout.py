"""What serving knows of the model zoo that `python -m zoo build` trains (the zoo/ package).

Which encoders the zoo builds itself, where the zoo of each training seed lives, and the one command
that builds what a run is missing, and the training data a zoo was built with (`TRAIN_DATA`), which
its folder's name says. Nothing here trains or downloads: `harness run` serves what is
built and stops with one `error:` line naming `build_command` when a stage is missing (`make run`
runs that command before the run, so a fresh clone's `make run` still builds on first use).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

# encoders the zoo builds itself (tiny: pretrained here; e5-small: converted from its pinned wheels);
# zoo/recipe.py `SIZES` holds the training plan of each
ZOO_ENCODERS = ("tiny", "e5-small")

# Training data options of a zoo (`python -m zoo build --train_data`; `python -m zoo select` grids'
# `data`): option -> the SNLI pairs added to XNLI's English training rows (the first N in
# tasks.data.read_snli order, dev then test; None: all 19,666), in XNLI's label order. Only XNLI's
# target stages train on them. Defined here, not in zoo/, because a zoo's folder name carries its
# option (`data_models_dir`) and run records read it back (harness/run_record.py), as they read
# the seed; the core never imports the zoo's training.
TRAIN_DATA: dict[str, int | None] = {"xnli": 0, "xnli+snli5k": 5000, "xnli+snli": None}
DEFAULT_TRAIN_DATA = "xnli"  # the 1,245 English XNLI rows alone: the zoo's default folders


def seed_models_dir(default: Path, seed: int) -> Path:
    """Where the zoo of training seed `seed` lives: the default folder for seed 0, beside it with a
    `-seed<N>` suffix otherwise (so a seed's stages never pass for another's finished ones)."""
    return default if seed == 0 else default.with_name(f"{default.name}-seed{seed}")


def seed_of_models_dir(models_dir: str | Path | None) -> int:
    """The training seed of a zoo folder named by `seed_models_dir` (0 for any other folder)."""
    m = re.fullmatch(r".*-seed(\d+)", Path(models_dir).name) if models_dir else None
    return int(m.group(1)) if m else 0


def check_train_data(option: str) -> str:
    """`option` when it is a key of TRAIN_DATA; ValueError naming the known ones otherwise."""
    if option not in TRAIN_DATA:
        raise ValueError(f"unknown training data {option!r} (known: {', '.join(TRAIN_DATA)})")
    return option


def data_models_dir(default: Path, train_data: str) -> Path:
    """Where the zoo (or the study's runs) of training data `train_data` lives: `default` for
    DEFAULT_TRAIN_DATA, beside it with a `-<option>` suffix otherwise, so that a stage trained on
    other data never passes for a finished one. The seed's suffix comes after it:
    `seed_models_dir(data_models_dir(d, "xnli+snli5k"), 1)` is `<d>-xnli+snli5k-seed1`."""
    check_train_data(train_data)
    return (
        default
        if train_data == DEFAULT_TRAIN_DATA
        else default.with_name(f"{default.name}-{train_data}")
    )


def train_data_of_models_dir(models_dir: str | Path | None) -> str:
    """The training data option of a zoo folder named by `data_models_dir` (then, optionally,
    `seed_models_dir`): DEFAULT_TRAIN_DATA for any other folder."""
    name = re.sub(r"-seed\d+$", "", Path(models_dir).name) if models_dir else ""
    others = [o for o in TRAIN_DATA if o != DEFAULT_TRAIN_DATA]
    return next((o for o in others if name.endswith(f"-{o}")), DEFAULT_TRAIN_DATA)


def built_by_zoo(encoder: str, weights: str | None) -> bool:
    """True when `python -m zoo build --for_run` builds what such a run serves: the zoo's own stages
    (an encoder the zoo builds, no --weights), or the tokenizer random weights take (any encoder)."""
    return weights == "random" or (weights is None and encoder in ZOO_ENCODERS)


def build_command(
    model: str, task: str, encoder: str, weights: str | None = None, models_dir: str | Path | None = None
) -> str:
    """The command that builds every zoo stage a run of `model` on `task` serves from (for random
    weights: the encoder whose tokenizer they take), the one `make run` runs before the run."""
    argv = ["python", "-m", "zoo", "build", "--for_run", "--model", model, "--task", task]
    argv += ["--encoder", encoder]
    if weights == "random":
        argv += ["--weights", "random"]
    if models_dir is not None:
        argv += ["--models_dir", str(models_dir)]
    return shlex.join(argv)
