"""Is the bottleneck adapter's XNLI deficit against full fine-tuning a matter of training length?

The e5-small recipe trains every form for 5 epochs over the 1,245 English XNLI rows; the adapter's
held-out English curve is still rising at epoch 5 (zoo.json). This builds `adapter` on XNLI again
with `--epochs` epochs (same seed, learning rate and warm-up share) into its own zoo folder, runs a
LoadGen AccuracyOnly test of it, and compares it with the study's `full` and 5-epoch `adapter` runs
by the study's paired bootstrap (research/bootstrap.py).

    python reports/scripts/adapter_epochs.py --epochs 10      # writes reports/adapter_epochs.md
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    from common.paths import BUILD
    from harness.config import RunConfig
    from harness.launch import launch
    from harness.run_folder import RunFolder
    from models.recipe import E5_SMALL, build_zoo
    from research.bootstrap import UnitScores, difference

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--study", type=Path, default=BUILD / "study-e5", help="the study's runs_dir")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "adapter_epochs.md")
    args = p.parse_args()

    name = f"adapter-xnli-{args.epochs:g}ep"
    models_dir = BUILD / f"models-e5-small-{name}"
    epochs = dict(E5_SMALL.target_epochs) | {"xnli/adapter": args.epochs}
    sizes = replace(E5_SMALL, target_epochs=tuple(epochs.items()))
    build_zoo(models_dir, "e5-small", models=["adapter"], tasks=["xnli"], sizes=sizes, progress=False)
    training = json.loads((models_dir / "adapter" / "xnli" / "zoo.json").read_text())["training"]
    curve = training["curve"]

    out = BUILD / "adapter-epochs" / name
    cfg = RunConfig(model="adapter", task="xnli", encoder="e5-small", accuracy=True,
                    models_dir=str(models_dir), output_dir=out)  # fmt: skip
    run_dir = RunFolder.plan(cfg).path
    if not (run_dir / "per_sample.json").is_file():
        launched = launch(cfg, out / "run.log")
        if launched.rc != 0:
            sys.exit(
                f"adapter_epochs: the accuracy run failed (exit {launched.rc}); see {out / 'run.log'}"
            )
    longer = UnitScores.load(run_dir)
    study = {m: UnitScores.load(args.study / "pytorch" / m / "xnli" / "Offline" / "accuracy")
             for m in ("full", "adapter")}  # fmt: skip

    lines = [
        f"# Adapter on XNLI: {args.epochs:g} epochs against the recipe's 5",
        "",
        "Model: multilingual-e5-small (4-bit weights dequantised to fp32), zero-shot from the first "
        "1,245 English XNLI rows; scored on the held-out rows of the 15 languages (18,675) from "
        "LoadGen AccuracyOnly runs. Differences: paired bootstrap, 2,000 replicates, 95% intervals.",
        "",
        f"Command: `python reports/scripts/adapter_epochs.py --epochs {args.epochs:g}` (training "
        f"{training['train_s'] / 60:.1f} min on this machine, zoo.json `training.train_s`).",
        "",
    ]
    lines.append("| epoch | loss | English held-out probe (300 rows) |\n| --- | --- | --- |")
    for c in curve:
        lines.append(f"| {c['epoch']:g} | {c['loss']:.3f} | {c.get('heldout', float('nan')):.1f} |")
    lines.append("\n| comparison | difference, accuracy points [95% CI] |\n| --- | --- |")
    rows = (
        (f"adapter {args.epochs:g} epochs - adapter 5 epochs", longer, study["adapter"]),
        (f"adapter {args.epochs:g} epochs - full 5 epochs", longer, study["full"]),
        ("adapter 5 epochs - full 5 epochs (the study's)", study["adapter"], study["full"]),
    )
    for label, a, b in rows:
        lines.append(f"| {label} | {difference(a, b)['average'].text()} |")
    args.out.write_text("\n".join(lines) + "\n")
    sys.stdout.write(f"adapter_epochs: wrote {args.out}\n")


if __name__ == "__main__":
    main()
