"""Is the adapter's XNLI deficit against full fine-tuning a matter of training length?

The e5-small recipe trains every form for 5 epochs over the 1,245 English XNLI rows, and the
adapter's held-out English curve is still rising at epoch 5 (zoo.json). This builds each of
`--models` on XNLI again with `--epochs` epochs (same seed, learning rate and warm-up share) into
zoo folders of their own, runs a LoadGen AccuracyOnly test of each, and compares them with each
other and with the study's 5-epoch runs by the study's paired bootstrap (research/bootstrap.py).

    python reports/scripts/xnli_epochs.py --models adapter,full --epochs 10   # reports/xnli_epochs.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common.paths import BUILD  # noqa: E402
from models.registry import MODELS  # noqa: E402

RECIPE_EPOCHS = 5  # zoo.recipe.E5_SMALL's XNLI epochs, which the study's zoo was built with


def longer_run(model: str, epochs: float) -> tuple[Path, dict]:
    """Build `model` on XNLI with `epochs` epochs (once) and run its LoadGen accuracy test (once):
    (the run folder, the stage's training record)."""
    from harness.config import RunConfig
    from harness.launch import launch
    from harness.run_folder import RunFolder
    from zoo.recipe import E5_SMALL, build_zoo

    learning = MODELS[model].learning
    models_dir = BUILD / f"models-e5-small-xnli-{epochs:g}ep"
    plan = dict(E5_SMALL.target_epochs) | {f"xnli/{learning}": epochs}
    sizes = replace(E5_SMALL, target_epochs=tuple(plan.items()))
    build_zoo(models_dir, "e5-small", models=[model], tasks=["xnli"], sizes=sizes, progress=False)
    training = json.loads((models_dir / model / "xnli" / "zoo.json").read_text())["training"]
    out = BUILD / "xnli-epochs" / f"{epochs:g}ep"
    cfg = RunConfig(model=model, task="xnli", encoder="e5-small", accuracy=True,
                    models_dir=str(models_dir), output_dir=out)  # fmt: skip
    run_dir = RunFolder.plan(cfg).path
    if not (run_dir / "per_sample.json").is_file():
        log = out / f"{model}.log"
        if (rc := launch(cfg, log).rc) != 0:
            sys.exit(f"xnli_epochs: the accuracy run of {model} failed (exit {rc}); see {log}")
    return run_dir, training


def shown(path: Path) -> str:
    """`path` relative to the repository when it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main() -> None:
    from harness.config import RunConfig
    from harness.run_folder import RunFolder
    from research.bootstrap import UnitScores, difference

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="adapter,full", help="comma list of XNLI models to retrain")
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--study", type=Path, default=BUILD / "study-e5", help="the study's runs_dir")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "xnli_epochs.md")
    args = p.parse_args()

    n = f"{args.epochs:g}"
    scores, lines = {}, []
    for model in args.models.split(","):
        run_dir, training = longer_run(model, args.epochs)
        scores[f"{model} {n} epochs"] = UnitScores.load(run_dir)
        study_cfg = RunConfig(
            model=model,
            task="xnli",
            encoder="e5-small",
            accuracy=True,
            output_dir=args.study / "pytorch",
        )  # the study's pytorch cells
        study_run = RunFolder.plan(study_cfg).path
        scores[f"{model} {RECIPE_EPOCHS} epochs"] = UnitScores.load(study_run)
        probe = " ".join(f"{c['heldout']:.1f}" for c in training["curve"])
        lines.append(
            f"| {model} | {n} | {training['lr']:g} | {training['train_s'] / 60:.1f} | {probe} |"
        )

    report = [
        f"# XNLI: {n} training epochs against the recipe's {RECIPE_EPOCHS}",
        "",
        "Model: multilingual-e5-small (4-bit weights dequantised to fp32), zero-shot from the first "
        "1,245 English XNLI rows; scored on the held-out rows of the 15 languages (18,675) from "
        "LoadGen AccuracyOnly runs. Differences: paired bootstrap, 2,000 replicates, 95% intervals. "
        f"The {RECIPE_EPOCHS}-epoch runs are the study's (`{shown(args.study)}`).",
        "",
        f"Command: `python reports/scripts/xnli_epochs.py --models {args.models} --epochs {n}`",
        "",
        "| model | epochs | lr | training (min) | English held-out probe per epoch (300 rows) |",
        "| --- | --- | --- | --- | --- |",
        *lines,
        "",
        "| a - b | accuracy points [95% CI] |",
        "| --- | --- |",
    ]
    for a, b in itertools.combinations(scores, 2):
        report.append(f"| {a} - {b} | {difference(scores[a], scores[b])['average'].text()} |")
    args.out.write_text("\n".join(report) + "\n")
    print(f"xnli_epochs: wrote {shown(args.out)}")


if __name__ == "__main__":
    main()
