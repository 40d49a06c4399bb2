"""What serving knows of the model zoo that `python -m zoo build` trains (the zoo/ package).

Which encoders the zoo builds itself, where the zoo of each training seed lives, and the one command
that builds what a run is missing. Nothing here trains or downloads: `harness run` serves what is
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


def seed_models_dir(default: Path, seed: int) -> Path:
    """Where the zoo of training seed `seed` lives: the default folder for seed 0, beside it with a
    `-seed<N>` suffix otherwise (so a seed's stages never pass for another's finished ones)."""
    return default if seed == 0 else default.with_name(f"{default.name}-seed{seed}")


def seed_of_models_dir(models_dir: str | Path | None) -> int:
    """The training seed of a zoo folder named by `seed_models_dir` (0 for any other folder)."""
    m = re.fullmatch(r".*-seed(\d+)", Path(models_dir).name) if models_dir else None
    return int(m.group(1)) if m else 0


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
