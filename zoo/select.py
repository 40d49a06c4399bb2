"""`python -m zoo select --grid FILE`: choose each model's learning rate and epoch count on an English
dev split carved from the training rows (docs/selection.md).

A grid file (zoo/grids/*.toml, checked against GRID_SCHEMA) names the encoder, the task (one with a
dev split: XNLI or TyDiQA, zoo/recipe.py `dev_split`), the models, the learning rates of each learning
kind, the seeds, the training data options (XNLI only) and max_epochs. One trial = (model, learning
rate, seed, data): the zoo's own target stage (zoo/stages.py `target`, with zoo/recipe.py
`with_choice`) trained on the training data left (the split's `train`, plus SNLI pairs for XNLI's
`xnli+snli*` options) for max_epochs epochs
of one schedule, scoring the dev rows after every epoch; models with an intermediate stage start
from it, built first with the zoo's own build in the selection's zoo folder. Each finished trial
writes one JSON record under <runs_dir>/trials/; a rerun with the same settings trains only what has
no record. At the end: the report (markdown, and a CSV with one row per trial and epoch) and
selected.toml, which `python -m zoo build --selected` trains with.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from common.datafiles import NUMBER, DataFileError, check, read_toml
from common.exit_codes import BAD_INPUT
from common.paths import BUILD, repo_relative
from common.tables import markdown_table
from models.cpu_caps import probe
from models.loaders import DONE, read_manifest
from models.registry import MODELS
from models.zoo_layout import seed_models_dir
from tasks.scoring.cli import write_atomically
from zoo.choice import FLAT_GAIN, FLAT_WINDOW, Choice, choose, mean_curve, selected_text
from zoo.recipe import (
    DATA_TASK,
    DEV_TASKS,
    SIZES,
    SQUAD_TRAIN,
    TINY_TEST,
    TRAIN_DATA,
    Sizes,
    build_zoo,
    data_record,
    dev_split,
    stage_minutes,
    stages_for_run,
    with_choice,
)

GRIDS = Path(__file__).resolve().parent / "grids"
# training data options (TRAIN_DATA, models/zoo_layout.py: the SNLI pairs added to the English
# training rows, the same options `python -m zoo build --train_data` takes)
BUILD_DATA = "xnli"  # the data a zoo build trains on by default: the choices selected.toml carries
GRID_SCHEMA = {
    "help?": str,
    "encoder": str,
    "task": str,
    "models": [str],
    "lr": {str: [NUMBER]},
    "seeds": [int],
    "data?": [str],  # default [BUILD_DATA]; other options add SNLI pairs to XNLI's rows
    "max_epochs": int,
    "max_epochs_of?": {str: int},  # per learning kind, where its curves need a longer schedule
}


@dataclass(frozen=True)
class Trial:
    model: str
    lr: float
    seed: int
    data: str

    @property
    def name(self) -> str:
        return f"{self.model}_lr{self.lr:g}_seed{self.seed}_{self.data}"


@dataclass(frozen=True)
class Grid:
    path: Path
    encoder: str
    task: str
    models: tuple[str, ...]
    lr: dict[str, tuple[float, ...]]  # learning kind -> learning rates
    seeds: tuple[int, ...]
    data: tuple[str, ...]
    max_epochs: int
    max_epochs_of: dict[str, int] = field(default_factory=dict)  # learning kind -> its own

    def epochs_of(self, model: str) -> int:
        """The max_epochs of `model`'s trials: its learning kind's where the grid sets one."""
        return self.max_epochs_of.get(MODELS[model].learning, self.max_epochs)

    def epochs_text(self) -> str:
        """'10', or '10 (lora 20)' where a learning kind has its own."""
        own = ", ".join(f"{kind} {n}" for kind, n in self.max_epochs_of.items())
        return f"{self.max_epochs} ({own})" if own else str(self.max_epochs)

    def trials(self) -> list[Trial]:
        """Every trial, data option by data option, model by model, learning rate, then seed."""
        return [
            Trial(model, lr, seed, data)
            for data in self.data
            for model in self.models
            for lr in self.lr[MODELS[model].learning]
            for seed in self.seeds
        ]

    def shown(self) -> str:
        """The grid's path as the report prints it (relative to the repository when inside)."""
        return repo_relative(self.path)


def load_grid(path: Path) -> Grid:
    """The grid in `path`; DataFileError naming the file and the key when it does not match its
    schema or names something the selection does not know."""
    data = read_toml(path)
    check(path, data, GRID_SCHEMA)

    def bad(key: str, why: str) -> DataFileError:
        return DataFileError(f"{path}: key {key!r}: {why}")

    if data["encoder"] not in SIZES:
        raise bad("encoder", f"{data['encoder']!r} is not built by the zoo (one of {', '.join(SIZES)})")
    if data["task"] not in DEV_TASKS:
        raise bad("task", f"{data['task']!r} has no dev split (one of {', '.join(DEV_TASKS)})")
    data.setdefault("data", [BUILD_DATA])
    for key in ("models", "seeds", "data"):
        if not data[key] or len(set(data[key])) != len(data[key]):
            raise bad(key, "needs at least one value, none twice")
    for model in data["models"]:
        if model not in MODELS:
            raise bad("models", f"unknown model {model!r} (known: {', '.join(MODELS)})")
        if source := MODELS[model].adapter_of:  # two-stage AdapterFusion
            raise bad(
                "models",
                f"{model!r} cannot be selected: it fuses the task adapter of the {source!r} arm's "
                f"{data['task']} stage, trained on every English training row, this dev split's "
                "included, so its trials would score rows their adapter was trained on",
            )
    for option in data["data"]:
        if option not in TRAIN_DATA:
            raise bad("data", f"unknown training data {option!r} (known: {', '.join(TRAIN_DATA)})")
        if option != BUILD_DATA and data["task"] != DATA_TASK:
            raise bad(
                "data",
                f"{option!r} adds SNLI pairs to {DATA_TASK}'s rows: a {data['task']} grid takes none",
            )
    needed = {MODELS[m].learning for m in data["models"]}
    for kind, rates in data["lr"].items():
        if kind not in needed:
            raise bad(
                f"lr.{kind}", f"no model of the grid learns by {kind!r} ({', '.join(sorted(needed))})"
            )
        if not rates or any(r <= 0 for r in rates) or len(set(rates)) != len(rates):
            raise bad(f"lr.{kind}", "needs learning rates > 0, none twice")
    if missing := sorted(needed - data["lr"].keys()):
        raise bad(
            f"lr.{missing[0]}", "missing: the learning rates of a learning kind of the grid's models"
        )
    if data["max_epochs"] < 1:
        raise bad("max_epochs", "must be at least 1")
    for kind, n in data.get("max_epochs_of", {}).items():
        if kind not in needed:
            raise bad(
                f"max_epochs_of.{kind}",
                f"no model of the grid learns by {kind!r} ({', '.join(sorted(needed))})",
            )
        if n < 1:
            raise bad(f"max_epochs_of.{kind}", "must be at least 1")
    return Grid(
        path,
        data["encoder"],
        data["task"],
        tuple(data["models"]),
        {kind: tuple(float(r) for r in rates) for kind, rates in data["lr"].items()},
        tuple(data["seeds"]),
        tuple(data["data"]),
        data["max_epochs"],
        dict(data.get("max_epochs_of", {})),
    )


def train_rows(task: str, data: str) -> int:
    """How many rows (TyDiQA: questions) a trial with training data `data` trains on (before
    Sizes.max_train_examples): the zoo build's count (zoo/recipe.py `data_record`) over the split's
    training part."""
    rows = dev_split(task).train
    return data_record(data, rows)["rows"] if task == DATA_TASK else len(rows)


# --- records ----------------------------------------------------------------------------------------
def settings(grid: Grid, trial: Trial, sizes: Sizes) -> dict[str, Any]:
    """What a trial's record must match for a rerun to skip it."""
    return {
        "encoder": grid.encoder,
        "task": grid.task,
        "model": trial.model,
        "learning": MODELS[trial.model].learning,
        "lr": trial.lr,
        "seed": trial.seed,
        "data": trial.data,
        "max_epochs": grid.epochs_of(trial.model),
        "sizes": repr(sizes),
    }


def record_path(runs_dir: Path, trial: Trial) -> Path:
    return runs_dir / "trials" / f"{trial.name}.json"


def finished(grid: Grid, sizes: Sizes, runs_dir: Path) -> dict[Trial, dict[str, Any]]:
    """The trials of `grid` with a record of the same settings under runs_dir."""
    out = {}
    for trial in grid.trials():
        try:
            record = json.loads(record_path(runs_dir, trial).read_text())
        except (OSError, ValueError):
            continue
        if same_settings(record.get("settings") or {}, settings(grid, trial, sizes), sizes):
            out[trial] = record
    return out


# Sizes fields a trial's training never reads: the learning-rate table (a trial names its own lr)
# and the NLI intermediate stage's length. A record matches whatever they say, so adding a learning
# kind or a stage to the recipe keeps the trials already trained.
NOT_READ_BY_A_TRIAL = ("lr", "nli_steps", "nli_epochs")
_MISSING = object()  # a field the record lacks: never equal


def same_settings(recorded: dict[str, Any], current: dict[str, Any], sizes: Sizes) -> bool:
    """A record's settings match the current ones: every key equal, and its `sizes` (the repr of
    the Sizes it trained with) equal to `sizes` in every field a trial reads."""
    rest = {k: v for k, v in recorded.items() if k != "sizes"}
    if rest != {k: v for k, v in current.items() if k != "sizes"}:
        return False
    try:  # "Sizes(vocab_size=8000, ...)": each keyword's value is a Python literal
        call = ast.parse(str(recorded.get("sizes", "")), mode="eval").body
        held = {k.arg: ast.literal_eval(k.value) for k in getattr(call, "keywords", [])}
    except (SyntaxError, ValueError):
        return False
    return bool(held) and all(
        held.get(f.name, _MISSING) == getattr(sizes, f.name)
        for f in fields(sizes)
        if f.name not in NOT_READ_BY_A_TRIAL
    )


def run_trial(
    grid: Grid, trial: Trial, sizes: Sizes, runs_dir: Path, models_dir: Path, progress: bool
) -> dict[str, Any]:
    """Train one trial with the zoo's target stage into a scratch folder, write its record, and
    remove the folder (the record keeps the curve; the weights are not needed)."""
    from zoo import stages  # noqa: PLC0415  (lazy: torch, as in zoo/recipe.py)

    spec = MODELS[trial.model]
    zoo_dir = seed_models_dir(models_dir, trial.seed)
    split = dev_split(grid.task)
    ctx = stages.Context(
        models_dir=zoo_dir,
        sizes=with_choice(sizes, grid.task, spec.learning, trial.lr, grid.epochs_of(trial.model)),
        seed=trial.seed,
        progress=progress,
        squad_path=SQUAD_TRAIN,
        train_rows={grid.task: split.train},
        encoder_dir=str(zoo_dir / "encoder"),
        dev_rows={grid.task: split.dev},
        snli_pairs=TRAIN_DATA[trial.data],
    )
    work = runs_dir / ".work" / trial.name
    shutil.rmtree(work, ignore_errors=True)  # a killed trial's
    work.mkdir(parents=True)
    try:
        stages.target(ctx, spec, grid.task, work)
        training = read_manifest(work)["training"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "settings": settings(grid, trial, sizes),
        "curve": training["curve"],
        "train_s": training["train_s"],
        "rows": {"train": training["train_samples"], "dev": len(split.dev)},
        "bf16": training["bf16"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomically(record_path(runs_dir, trial), json.dumps(record, indent=1) + "\n")
    return record


# --- the plan ---------------------------------------------------------------------------------------
def trial_minutes(grid: Grid, trial: Trial) -> float | None:
    """A trial's expected minutes: the zoo's measured target stage (zoo/recipe.py STAGE_MINUTES, its
    held-out probe included, like the trial's dev probe; a newer arm's: the measured stage it
    mirrors, `stage_minutes`) per epoch and row, times the trial's epochs and rows; None where the
    stage is not measured."""
    stage, _ = stage_minutes(grid.encoder, f"{trial.model}/{grid.task}")
    if stage is None:
        return None
    epochs = dict(SIZES[grid.encoder].target_epochs)[grid.task]
    per_row_epoch = stage / epochs / dev_split(grid.task).total
    return per_row_epoch * train_rows(grid.task, trial.data) * grid.epochs_of(trial.model)


def plan(grid: Grid, todo: list[Trial], models_dir: Path) -> tuple[list[str], float | None]:
    """The plan's lines and its estimated minutes (None where a part is not measured): the zoo
    stages the trials to run start from and are missing (the encoder, intermediate stages), then
    the trials, model by model."""
    build = {}  # folder -> Stage, for every seed with a trial to run
    for trial in todo:
        zoo_dir = seed_models_dir(models_dir, trial.seed)
        for stage in stages_for_run(trial.model, grid.task, grid.encoder)[:-1]:  # not the target
            if not (zoo_dir / stage.folder / DONE).exists():
                build[zoo_dir / stage.folder] = stage
    minutes = [s.minutes for s in build.values()] + [trial_minutes(grid, t) for t in todo]
    total = None if None in minutes else sum(minutes)
    lines = []
    if build:
        parts = [f"{s.desc} (~{s.minutes:g} min)" if s.minutes else s.desc for s in build.values()]
        lines.append(f"first the zoo stages the trials start from: {', '.join(parts)}")
    for model in grid.models:
        mine = [t for t in todo if t.model == model]
        if mine:
            each = [trial_minutes(grid, t) for t in mine]
            cost = f"~{sum(each):.1f} min" if None not in each else "not measured"
            lines.append(f"{model}: {len(mine)} trial(s) x {grid.epochs_of(model)} epochs ({cost})")
    return lines, total


# --- the report ---------------------------------------------------------------------------------------
def curves_of(grid: Grid, records: dict[Trial, dict], model: str, data: str) -> dict[float, list]:
    """learning rate -> the dev curve of each seed, for one model and training data."""
    return {
        lr: [[p["dev"] for p in records[Trial(model, lr, seed, data)]["curve"]] for seed in grid.seeds]
        for lr in grid.lr[MODELS[model].learning]
    }


def choices(grid: Grid, records: dict[Trial, dict]) -> dict[tuple[str, str], Choice]:
    """(model, data) -> the choice over its trials (zoo/choice.py `choose`)."""
    return {
        (model, data): choose(curves_of(grid, records, model, data))
        for data in grid.data
        for model in grid.models
    }


CSV_COLUMNS = "model learning data lr seed epoch step loss dev train_rows dev_rows train_s bf16".split()


def csv_rows(grid: Grid, records: dict[Trial, dict]) -> list[dict[str, Any]]:
    """One row per trial and epoch, in the grid's order."""
    return [
        {
            "model": t.model,
            "learning": MODELS[t.model].learning,
            "data": t.data,
            "lr": t.lr,
            "seed": t.seed,
            **{k: point[k] for k in ("epoch", "step", "loss", "dev")},
            "train_rows": records[t]["rows"]["train"],
            "dev_rows": records[t]["rows"]["dev"],
            "train_s": records[t]["train_s"],
            "bf16": records[t]["bf16"],  # trials made on other machines may differ
        }
        for t in grid.trials()
        for point in records[t]["curve"]
    ]


def report_text(grid: Grid, records: dict[Trial, dict], chosen: dict, command: str) -> str:
    """The selection's markdown report."""
    task, split = grid.task, dev_split(grid.task)
    metric = "accuracy" if task == DATA_TASK else "F1"
    lrs = "; ".join(f"{kind} {', '.join(f'{r:g}' for r in rates)}" for kind, rates in grid.lr.items())
    if task == DATA_TASK:
        trained = (
            f"the trials train on the other {len(split.train)} English rows (data `xnli`; "
            "`xnli+snli5k` and `xnli+snli` add the first 5,000 and all 19,666 SNLI pairs)"
        )
        units = "rows"
    else:
        trained = f"the trials train on the other {len(split.train)} questions of train-en.json"
        units = "questions"
    lines = [
        f"# Learning rate and epochs per model: {grid.encoder}, {task}",
        "",
        f"Made by `{command}` (docs/selection.md) from one record per trial "
        "(`<runs_dir>/trials/*.json`); every epoch of every trial is in the CSV beside this file.",
        "",
        f"**Dev split**: {len(split.dev)} English {task} {units}, {split.words}; {trained}. No "
        "held-out (test) row and no other language is read.",
        "",
        f"**Grid** (`{grid.shown()}`): models {', '.join(grid.models)}; learning rates {lrs}; seeds "
        f"{', '.join(map(str, grid.seeds))}; data {', '.join(grid.data)}; up to {grid.epochs_text()} "
        "epochs, all epochs of a trial under one linear schedule of that many epochs: the "
        "epoch count is chosen by early stopping on the dev curve under that schedule, and "
        "`python -m zoo build --selected` trains the same way (the chosen epochs of a schedule of "
        "max_epochs, on all the training rows, dev rows included).",
        "",
        "**Choice**: per model and data, the learning rate and epoch count with the highest dev "
        f"{metric} averaged over seeds (a tie: fewer epochs, then the smaller learning rate). "
        f"Flattened: the best epoch is not the last, or the chosen learning rate's curve gained less "
        f"than {FLAT_GAIN:g} points over its last {FLAT_WINDOW} epochs.",
        "",
    ]
    minutes = {
        (m, d): sum(r["train_s"] for t, r in records.items() if (t.model, t.data) == (m, d)) / 60
        for m, d in chosen
    }
    lines += markdown_table(
        ["model", "learning", "data", "lr", "epochs", f"dev {metric}", "flattened", "training (min)"],
        [
            [m, MODELS[m].learning, d, f"{c.lr:g}", c.epochs, c.dev, c.why(), minutes[(m, d)]]
            for (m, d), c in chosen.items()
        ],
    )
    epochs = range(1, max(map(grid.epochs_of, grid.models)) + 1)
    lines += ["", f"Dev {metric} after each epoch (mean over seeds):", ""]
    lines += markdown_table(
        ["model", "data", "lr", *map(str, epochs)],
        [
            [m, d, f"{lr:g}", *pad(mean_curve(curves), len(epochs))]
            for (m, d) in chosen
            for lr, curves in curves_of(grid, records, m, d).items()
        ],
    )
    return "\n".join(lines) + "\n"


def pad(values: list, n: int) -> list:
    """`values` followed by empty cells up to `n` (a shorter schedule's row of the curve table)."""
    return [*values, *[""] * (n - len(values))]


def write_outputs(
    grid: Grid, records: dict[Trial, dict], runs_dir: Path, report: Path, command: str
) -> dict[tuple[str, str], Choice]:
    """The report (markdown), its CSV beside it, and <runs_dir>/selected.toml (the choices for the
    data a zoo build trains on, when the grid has it)."""
    chosen = choices(grid, records)
    write_atomically(report, report_text(grid, records, chosen, command))
    with open(report.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(grid, records))
    if BUILD_DATA in grid.data:
        for_build = {m: chosen[(m, BUILD_DATA)] for m in grid.models}
        text = selected_text(grid.encoder, grid.shown(), grid.task, for_build, list(grid.seeds))
        write_atomically(runs_dir / "selected.toml", text)
    return chosen


# --- the command -------------------------------------------------------------------------------------
def run_selection(
    grid: Grid,
    sizes: Sizes,
    runs_dir: Path,
    models_dir: Path,
    report: Path,
    command: str,
    plan_only: bool = False,
    progress: bool = True,
) -> dict[tuple[str, str], Choice] | None:
    """Plan, train the trials without a record, write the outputs; the choices (None: plan only)."""
    trials = grid.trials()
    done = finished(grid, sizes, runs_dir)
    todo = [t for t in trials if t not in done]
    lines, total = plan(grid, todo, models_dir)
    estimate = (
        f"about {total:.0f} min on a quiet 2-core CPU (the zoo's stage times, measured with bf16 "
        "autocast, scaled to the rows and epochs; loading and saving each trial's model come on top)"
        if total is not None
        else "time not measured for this encoder"
    )
    if total is not None and sizes.bf16 and probe().bf16_kernel is None:
        estimate += "; this CPU has no native bf16, so it trains in fp32, slower than that"
    print(
        f"[select] {grid.shown()}: {len(trials)} trials, {len(done)} done, {len(todo)} to train; "
        f"{estimate}",
        flush=True,
    )
    for line in lines:
        print(f"[select]   {line}", flush=True)
    if plan_only:
        return None
    for seed in sorted({t.seed for t in todo}):
        mine = {t.model for t in todo if t.seed == seed}
        needs = [m for m in grid.models if m in mine and MODELS[m].intermediate]
        zoo_dir = seed_models_dir(models_dir, seed)
        build_zoo(zoo_dir, grid.encoder, needs, [], sizes, seed=seed, progress=progress)
    records = dict(done)
    for k, trial in enumerate(todo, 1):
        print(f"[select] trial {k}/{len(todo)}: {trial.name}", flush=True)
        records[trial] = run_trial(grid, trial, sizes, runs_dir, models_dir, progress)
    chosen = write_outputs(grid, records, runs_dir, report, command)
    print(f"[select] report -> {report} (and {report.with_suffix('.csv').name})", flush=True)
    for (model, data), c in chosen.items():
        print(
            f"[select] {model} ({data}): lr {c.lr:g}, {c.epochs} of {c.max_epochs} epochs, "
            f"dev {c.dev:.1f}; flattened {c.why()}",
            flush=True,
        )
    return chosen


def default_runs_dir(grid: Grid) -> Path:
    """build/select-<encoder> for XNLI (the first grids'), build/select-<encoder>-<task> for another
    task: its trials and selected.toml never overwrite an XNLI selection's."""
    suffix = "" if grid.task == DATA_TASK else f"-{grid.task}"
    return BUILD / f"select-{grid.encoder}{suffix}"


def grid_path(text: str) -> Path:
    """A grid file's path, or the name of one in zoo/grids/."""
    path = Path(text)
    return path if path.exists() or path.suffix else GRIDS / f"{text}.toml"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grid",
        required=True,
        help="grid file (or the name of one in zoo/grids/, e.g. select-xnli-e5-small)",
    )
    parser.add_argument("--encoder", default=None, help="the grid's encoder (checked when given)")
    parser.add_argument(
        "--runs_dir",
        default=None,
        help="trial records and outputs (default build/select-<encoder>[-<task> but for xnli])",
    )
    parser.add_argument(
        "--models_dir",
        default=None,
        help="zoo folder whose encoder and intermediate stages the trials start from; missing ones are "
        "built there (default <runs_dir>/models)",
    )
    parser.add_argument(
        "--report", default=None, help="markdown report (default <runs_dir>/selection.md)"
    )
    parser.add_argument(
        "--plan", action="store_true", help="print the plan and its estimate, train nothing"
    )
    parser.add_argument(
        "--tiny-test", dest="tiny_test", action="store_true", help="very small, for tests"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    try:
        grid = load_grid(grid_path(args.grid))
        if args.encoder is not None and args.encoder != grid.encoder:
            raise DataFileError(
                f"{grid.path}: key 'encoder': the grid is for {grid.encoder!r}, "
                f"not --encoder {args.encoder!r}"
            )
        runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir(grid)
        command = f"python -m zoo select --encoder {grid.encoder} --grid {grid.shown()}"
        command += " --tiny-test" if args.tiny_test else ""
        run_selection(
            grid,
            TINY_TEST if args.tiny_test else SIZES[grid.encoder],
            runs_dir,
            Path(args.models_dir) if args.models_dir else runs_dir / "models",
            Path(args.report) if args.report else runs_dir / "selection.md",
            command,
            args.plan,
            not args.quiet,
        )
    except ValueError as e:  # DataFileError, StageError, E5Error: one line
        print(f"error: {e}", file=sys.stderr, flush=True)
        return BAD_INPUT
    return 0
