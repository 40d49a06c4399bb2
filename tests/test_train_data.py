"""More English training data for XNLI (`python -m zoo build --train_data`, `python -m research study
--train_data`, docs/zoo.md "More English data"): the options and their zoo folders, the default
building what it built before, an `xnli+snli5k` zoo on the very small recipe (its rows, its SNLI
pairs in XNLI's label order, its zoo.json record), the refusals of a stage built with other data
and of another task, and the study serving, keying, planning and reporting the option's zoo.

The zoos here start from a seeded random-weight encoder of the very small shape, placed in each
zoo folder before the build (pretraining one would take longer than the stages themselves), as in
tests/test_zoo_select.py.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from common.paths import BUILD, DATA, REPO
from models.loaders import DONE, read_manifest
from models.registry import MODELS
from models.zoo_layout import (
    TRAIN_DATA,
    data_models_dir,
    seed_models_dir,
    seed_of_models_dir,
    train_data_of_models_dir,
)
from research import collect, datafiles, report, study
from research.cli import main as research_main
from tasks.data import find_file, read_classification_file, read_snli
from tasks.xnli import XnliTask
from tests.conftest import save_tiny_encoder
from zoo import recipe
from zoo.cli import main as zoo_main
from zoo.recipe import TINY_TEST, TRAIN_ROWS, StageError, build_for_run, data_record

LABELS = XnliTask.label_names
SNLI5K = {"option": "xnli+snli5k", "xnli_rows": 1245, "snli_pairs": 5000, "rows": 6245}
SNLI5K_WORDS = "the 1,245 English XNLI training rows and the first 5,000 SNLI pairs"


# --- the options and their folders ----------------------------------------------------------------
def test_each_option_counts_its_rows_and_names_its_folder_before_the_seed():
    assert TRAIN_DATA == {"xnli": 0, "xnli+snli5k": 5000, "xnli+snli": None}
    assert data_record("xnli") == {"option": "xnli", "xnli_rows": 1245, "snli_pairs": 0, "rows": 1245}
    assert data_record("xnli+snli5k") == SNLI5K
    assert data_record("xnli+snli") == {
        "option": "xnli+snli",
        "xnli_rows": 1245,
        "snli_pairs": 19666,  # every vendored pair: SNLI's dev and test splits
        "rows": 20911,
    }
    assert len(read_snli(LABELS)) == 19666
    zoo = Path("build/models-e5-small")
    assert data_models_dir(zoo, "xnli") == zoo  # the default: the zoo's own folder, as before
    assert data_models_dir(zoo, "xnli+snli5k") == Path("build/models-e5-small-xnli+snli5k")
    both = seed_models_dir(data_models_dir(zoo, "xnli+snli5k"), 2)
    assert both == Path("build/models-e5-small-xnli+snli5k-seed2")  # the seed's suffix last
    for option in TRAIN_DATA:
        for seed in (0, 1, 2, 10):
            folder = seed_models_dir(data_models_dir(zoo, option), seed)
            assert (seed_of_models_dir(folder), train_data_of_models_dir(folder)) == (seed, option)
    assert train_data_of_models_dir(Path("build/models-e5-small-seed1")) == "xnli"
    assert train_data_of_models_dir(Path("build/models-xnli+snli")) == "xnli+snli"  # not snli5k
    assert train_data_of_models_dir(None) == "xnli"
    with pytest.raises(ValueError, match=r"unknown training data 'snli' \(known: xnli, xnli\+snli5k"):
        data_models_dir(zoo, "snli")


def test_a_build_writes_the_option_folder_and_refuses_a_folder_named_for_other_data(tmp_path):
    default = tmp_path / "models"
    assert recipe.zoo_folder(default, None, 0, "xnli") == default
    assert recipe.zoo_folder(default, None, 1, "xnli+snli") == tmp_path / "models-xnli+snli-seed1"
    named = tmp_path / "mine-xnli+snli5k-seed3"
    assert recipe.zoo_folder(default, str(named), 0, "xnli+snli5k") == named  # as given
    with pytest.raises(ValueError) as err:
        recipe.zoo_folder(default, str(tmp_path / "mine"), 0, "xnli+snli5k")
    assert str(err.value) == (
        f"--models_dir {tmp_path / 'mine'}: the folder's name says training data xnli, not "
        "--train_data xnli+snli5k: a zoo's folder names its training data (ending in -xnli+snli5k "
        "(before any -seed<N>)), so that runs, `make run` and the study read it from the folder"
    )
    with pytest.raises(
        ValueError,
        match="says training data xnli\\+snli5k, not --train_data xnli: .*without a -<OPTION> suffix",
    ):
        recipe.zoo_folder(default, str(named), 0, "xnli")


# --- tiny zoos -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A seeded random-weight encoder of the very small recipe's shape, zoo-style, marked done."""
    folder = tmp_path_factory.mktemp("encoder") / "encoder"
    return save_tiny_encoder(folder, tiny_tokenizer, dict(TINY_TEST.config))


def _zoo(encoder: Path, folder: Path) -> Path:
    shutil.copytree(encoder, folder / "encoder")
    return folder


BUILD_ARGS = ["build", "--encoder", "tiny", "--tiny-test", "--no_eval", "--quiet", "--models", "full"]


@pytest.fixture(scope="module")
def snli5k_zoo(encoder, tmp_path_factory) -> Path:
    """`python -m zoo build --train_data xnli+snli5k` with no --models_dir and no --tasks: the tiny
    encoder's default folder (build/models, here under a temporary BUILD) with the option's suffix,
    XNLI alone."""
    build = tmp_path_factory.mktemp("build")
    zoo = _zoo(encoder, build / "models-xnli+snli5k")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipe, "BUILD", build)
        assert zoo_main([*BUILD_ARGS, "--train_data", "xnli+snli5k"]) == 0
    return zoo


def test_the_snli5k_zoo_records_its_rows_and_builds_xnli_alone(snli5k_zoo):
    assert sorted(p.name for p in snli5k_zoo.iterdir() if not p.name.startswith(".")) == [
        "encoder",
        "full",
    ]
    assert sorted(p.name for p in (snli5k_zoo / "full").iterdir() if not p.name.startswith(".")) == [
        "xnli"
    ]
    assert (snli5k_zoo / "full" / "xnli" / DONE).is_file()
    training = read_manifest(snli5k_zoo / "full" / "xnli")["training"]
    # the option's real counts; the very small recipe (Sizes.max_train_examples = 120) featurises
    # and samples only the first 120 of those 6,245 rows, XNLI's, which train_samples records
    assert training["train_data"] == SNLI5K
    assert (TINY_TEST.max_train_examples, training["train_samples"]) == (120, 120)
    assert recipe.recorded_train_data(snli5k_zoo / "full" / "xnli") == "xnli+snli5k"


def test_the_option_trains_on_the_english_rows_then_snli_pairs_in_xnli_label_order(snli5k_zoo):
    """The data the build's XNLI target stages train on (`data_context`, uncapped): the 1,245
    English rows, then the first 5,000 SNLI pairs; SNLI's dev pair 0 (premise, hypothesis and its
    label word read from the raw files) is row 1,245, labelled with XNLI's index of that word."""
    from transformers import AutoTokenizer

    from tasks.data import batch_encode
    from zoo import stages

    tok = AutoTokenizer.from_pretrained(snli5k_zoo / "encoder")
    base = stages.Context(
        models_dir=snli5k_zoo,
        sizes=replace(TINY_TEST, max_train_examples=None),
        seed=0,
        progress=False,
        squad_path=recipe.SQUAD_TRAIN,
        train_rows=TRAIN_ROWS,
        encoder_dir=str(snli5k_zoo / "encoder"),
    )
    assert recipe.data_context(base, "xnli", "xnli") is base  # the default: the context as it was
    assert recipe.data_context(base, "tydiqa", "xnli+snli5k") is base
    ctx = recipe.data_context(base, "xnli", "xnli+snli5k")
    assert (ctx.snli_pairs, ctx.train_data) == (5000, SNLI5K)
    data = stages.train_data(ctx, "xnli", tok)
    assert len(data["labels"]) == len(data["offsets"]) - 1 == 6245
    english = read_classification_file(find_file(DATA / "xnli", "dev-en.tsv"), LABELS, "en")
    assert data["labels"][:1245].tolist() == [e.label for e in english if e.row < 1245]
    raw = {
        k: gzip.open(DATA / "snli" / f"{k}.dev.gz", "rt").readline().strip()
        for k in ("s1", "s2", "labels")
    }
    assert raw["labels"] == "neutral" and LABELS.index("neutral") == 1
    assert data["labels"][1245] == 1
    ids = batch_encode(tok, [raw["s1"]], [raw["s2"]], 128)[0]
    assert data["input_ids"][data["offsets"][1245] : data["offsets"][1246]].tolist() == list(ids)
    assert data["labels"][1245:].tolist() == [e.label for e in read_snli(LABELS)[:5000]]


def test_the_default_builds_what_it_built_before(encoder, tmp_path):
    """`--train_data xnli` (the default) builds into the folder it always did, records no training
    data (as every stage before the option) and trains on the same 120 rows of the very small
    recipe: the same weights, byte for byte, as a build that never names the option."""
    zoo = _zoo(encoder, tmp_path / "models")
    assert zoo_main([*BUILD_ARGS, "--models_dir", str(zoo), "--tasks", "xnli"]) == 0
    training = read_manifest(zoo / "full" / "xnli")["training"]
    assert "train_data" not in training and training["train_samples"] == 120
    assert recipe.recorded_train_data(zoo / "full" / "xnli") == "xnli"
    other = _zoo(encoder, tmp_path / "again")
    recipe.build_zoo(other, "tiny", ["full"], ["xnli"], TINY_TEST, progress=False)
    weights = "model.safetensors"
    assert (zoo / "full" / "xnli" / weights).read_bytes() == (
        other / "full" / "xnli" / weights
    ).read_bytes()


def test_a_stage_built_with_other_data_is_refused_naming_the_folder(snli5k_zoo, tmp_path, capsys):
    # the option's stage, copied into a folder of the default data: refused before any work, by the
    # build and by what `make run` runs, even though nothing is missing
    plain = tmp_path / "models"
    shutil.copytree(snli5k_zoo, plain)
    stage = plain / "full" / "xnli"
    line = (
        f"error: {stage}: built already with training data xnli+snli5k ({SNLI5K_WORDS}), not xnli: "
        "each training data has a zoo folder of its own (`python -m zoo build --train_data OPTION` "
        "builds into <models_dir>-OPTION); rebuild it with --force, or build elsewhere with "
        "--models_dir DIR\n"
    )
    capsys.readouterr()
    assert zoo_main([*BUILD_ARGS, "--models_dir", str(plain), "--tasks", "xnli"]) == 3
    assert capsys.readouterr().err == line
    run = ["build", "--for_run", "--model", "full", "--task", "xnli", "--encoder", "tiny"]
    assert zoo_main([*run, "--models_dir", str(plain), "--tiny-test"]) == 3
    assert capsys.readouterr().err == line
    with pytest.raises(StageError, match="built already with training data xnli\\+snli5k"):
        build_for_run("full", "xnli", plain, "tiny", TINY_TEST)
    # a stage of the default data in a folder named for the option: refused the same way
    named = tmp_path / "zoo-xnli+snli5k"
    shutil.copytree(snli5k_zoo, named)
    (named / "full" / "xnli" / "zoo.json").write_text(json.dumps({"training": {"lr": 1e-4}}))
    with pytest.raises(StageError) as err:
        build_for_run("full", "xnli", named, "tiny", TINY_TEST)
    assert str(err.value).startswith(
        f"{named / 'full' / 'xnli'}: built already with training data xnli (the 1,245 English XNLI "
        "training rows alone), not xnli+snli5k: "
    )
    # the option's own folder serves: nothing missing, nothing refused
    assert build_for_run("full", "xnli", snli5k_zoo, "tiny", TINY_TEST) == []
    # a --models_dir not named for the option: one line
    assert zoo_main([*BUILD_ARGS, "--models_dir", str(plain), "--train_data", "xnli+snli5k"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: --models_dir {plain}: the folder's name says training data xnli")
    assert err.count("\n") == 1


SELECTED = (
    'encoder = "tiny"\ngrid = "g"\n[selected.xnli.full]\n'
    "lr = 1e-4\nepochs = 1\nmax_epochs = 2\ndev = 40.0\nseeds = [0]\n"
)


def test_another_task_or_a_selection_is_refused_with_another_option(snli5k_zoo, tmp_path, capsys):
    capsys.readouterr()
    argv = [*BUILD_ARGS, "--models_dir", str(snli5k_zoo), "--train_data", "xnli+snli5k"]
    assert zoo_main([*argv, "--tasks", "xnli,tydiqa"]) == 3
    assert capsys.readouterr().err == (
        "error: training data xnli+snli5k adds SNLI pairs to xnli's training rows only: its zoo "
        f"({snli5k_zoo}) holds xnli target stages alone, not tydiqa (the default zoo's, trained on "
        "the same data); build them without --train_data\n"
    )
    run = ["build", "--for_run", "--model", "full", "--task", "pawsx", "--encoder", "tiny"]
    assert zoo_main([*run, "--models_dir", str(snli5k_zoo), "--tiny-test"]) == 3
    assert "not pawsx (the default zoo's" in capsys.readouterr().err
    # a selection's choices, made on the default data: refused with another option
    chosen = tmp_path / "selected.toml"
    chosen.write_text(SELECTED)
    assert zoo_main([*argv, "--selected", str(chosen)]) == 3
    assert capsys.readouterr().err == (
        f"error: --selected {chosen}: its choices were made on the xnli training data, not on "
        "xnli+snli5k (selected.toml carries those alone): build without --selected\n"
    )
    assert zoo_main([*BUILD_ARGS, "--train_data", "xnli+snli1k"]) == 3
    assert capsys.readouterr().err == (
        "error: unknown training data 'xnli+snli1k' (known: xnli, xnli+snli5k, xnli+snli)\n"
    )


# --- the study ------------------------------------------------------------------------------------
def test_the_study_serves_and_keys_the_option_zoo(tmp_path):
    cell = study.Cell("full", "xnli", "pytorch", "Offline", "accuracy")
    seeded = study.Cell("adapter", "xnli", "pytorch", "Offline", "accuracy", seed=2)
    base = study.StudySettings(runs_dir=tmp_path / "runs", encoder="tiny")
    more = study.StudySettings(runs_dir=tmp_path / "runs", encoder="tiny", train_data="xnli+snli5k")
    moved = replace(more, models_dir=tmp_path / "zoo")
    assert cell.config(base).models_dir is None  # the default: as before
    assert cell.config(more).models_dir == str(BUILD / "models-xnli+snli5k")
    assert seeded.config(more).models_dir == str(BUILD / "models-xnli+snli5k-seed2")
    assert cell.config(moved).models_dir == str(tmp_path / "zoo-xnli+snli5k")
    assert seeded.config(moved).models_dir == str(tmp_path / "zoo-xnli+snli5k-seed2")
    assert "train_data" not in cell.settings_key(base)  # markers written before the flag still match
    assert cell.settings_key(more)["train_data"] == "xnli+snli5k"
    assert cell.settings_key(base) == {
        k: v for k, v in cell.settings_key(more).items() if k != "train_data"
    }


def test_the_curve_preset_and_its_plan_per_option(tmp_path, capsys):
    """The preset: XNLI, full, adapter and lora, PyTorch accuracy only, seeds 0, 1, 2. Its plan
    counts each option's zoo stages (3 seeds x the encoder and 3 XNLI target stages) at the measured
    minutes, the target stages scaled by rows: 2.6 min measured on 1,245 rows (full/xnli,
    adapter/xnli, and lora-squad/xnli for lora)."""
    p = argparse.ArgumentParser()
    study.configure_parser(p)
    flags = datafiles.load_preset("e5-small-curve", p)
    assert flags == {
        "encoder": "e5-small",
        "models": ["full", "adapter", "lora"],
        "tasks": ["xnli"],
        "backends": ["pytorch"],
        "accuracy_backends": ["pytorch"],
        "perf_tasks": [],
        "seeds": [0, 1, 2],
        "seed_tasks": [("xnli", None)],
        "train_data": "xnli",
        "models_dir": REPO / "build" / "models-e5-small-curve",  # the recipe's values at every point
        "runs_dir": REPO / "reports" / "study-e5-curve" / "runs",  # committed as cells finish
        "out": REPO / "reports" / "study-e5-curve",
    }
    expected = {"xnli": (2.6, 27), "xnli+snli5k": (13.0, 121), "xnli+snli": (43.7, 397)}
    for option, (stage, total) in expected.items():
        assert 3 * (1.25 + 3 * stage) == pytest.approx(total, abs=0.5)
        argv = ["study", "--preset", "e5-small-curve", "--train_data", option, "--plan"]
        argv += ["--models_dir", str(tmp_path / "zoo"), "--runs_dir", str(tmp_path / "runs")]
        assert research_main([*argv, "--out", str(tmp_path / "out")]) == 0
        out = capsys.readouterr().out.splitlines()
        runs = data_models_dir(tmp_path / "runs", option)
        assert out[0] == (
            f"study: training data {option} ({recipe.data_words(option)}): runs in {runs}, report in "
            f"{data_models_dir(tmp_path / 'out', option)}"
        )
        assert out[2] == (
            f"study: first 12 zoo stage(s) to train, about {total} min at the zoo's measured stage "
            "times (zoo/recipe.py STAGE_MINUTES)"
        )
        assert out[-1] == "study: 0 of 9 cells done at these settings; 29 min to go"
    s = study.StudySettings(
        runs_dir=tmp_path, encoder="e5-small", models_dir=tmp_path / "zoo", train_data="xnli+snli"
    )
    cells = [
        study.Cell(m, "xnli", "pytorch", "Offline", "accuracy") for m in ("full", "adapter", "lora")
    ]
    assert study.zoo_training(cells, s) == (pytest.approx(1.25 + 3 * 43.7), 4, 0)
    stages = recipe.stages_for_run("lora", "xnli", "e5-small", "xnli+snli")
    assert [(x.folder, x.minutes, x.mirrors, x.rows) for x in stages] == [
        ("encoder", 1.25, None, None),
        ("lora/xnli", 43.7, "lora-squad/xnli", 20911),
    ]


def test_a_bad_option_another_task_or_a_selection_is_one_error_line_and_exit_3(tmp_path, capsys):
    argv = ["study", "--encoder", "tiny", "--runs_dir", str(tmp_path / "r"), "--plan"]
    assert research_main([*argv, "--tasks", "xnli", "--train_data", "snli"]) == 3
    assert capsys.readouterr().err == (
        "error: unknown training data 'snli' (known: xnli, xnli+snli5k, xnli+snli)\n"
    )
    assert research_main([*argv, "--tasks", "xnli,tydiqa", "--train_data", "xnli+snli"]) == 3
    assert capsys.readouterr().err == (
        "error: --train_data xnli+snli adds SNLI pairs to xnli's training rows only, not to tydiqa's: "
        "run those tasks without --train_data (here: --tasks xnli)\n"
    )
    chosen = tmp_path / "selected.toml"
    chosen.write_text(SELECTED)
    argv += ["--tasks", "xnli", "--selected", str(chosen)]
    assert research_main([*argv, "--train_data", "xnli+snli5k"]) == 3
    assert capsys.readouterr().err == (
        f"error: --selected {chosen}: its choices were made on the xnli training data, not on "
        "--train_data xnli+snli5k: run without --selected\n"
    )
    assert not (tmp_path / "r").exists() and not (tmp_path / "r-xnli+snli").exists()


# --- the runs and the report ----------------------------------------------------------------------
def test_a_run_record_reads_the_seed_and_the_training_data_from_its_zoo_folder(tmp_path):
    from harness.run_record import RunRecord

    folder = tmp_path / "run"
    folder.mkdir()
    config = {"model": "full", "task": "xnli", "scenario": "Offline", "mode": "accuracy"}
    zoo = "build/models-e5-small-xnli+snli5k-seed2"
    config |= {"backend": "pytorch", "config": {"models_dir": zoo}}
    (folder / "run_config.json").write_text(json.dumps(config))
    record = RunRecord.load(folder)
    assert (record.seed, record.train_data) == (2, "xnli+snli5k")
    assert collect.load_run(record).train_data == "xnli+snli5k"
    config["config"]["models_dir"] = None
    (folder / "run_config.json").write_text(json.dumps(config))
    assert (RunRecord.load(folder).seed, RunRecord.load(folder).train_data) == (0, "xnli")


def _runs_csv(path: Path, data: list[str]) -> Path:
    """A study_runs.csv of XNLI accuracy runs of full and adapter, seeds 0-2, with `data` per seed."""
    columns = [
        k for k in collect.Run.__dataclass_fields__ if k not in ("per_language", "latency_pct_ms")
    ]
    lines = [",".join(columns)]
    for model, base in (("full", 55.0), ("adapter", 50.0)):
        for seed in range(3):
            row = dict.fromkeys(columns, "") | {
                "path": f"pytorch/{model}/xnli/Offline/accuracy-{seed}",
                "model": model,
                "task": "xnli",
                "scenario": "Offline",
                "mode": "accuracy",
                "backend": "pytorch",
                "encoder": "e5-small",
                "model_kind": "real",
                "result_valid": "True",
                "metric": "accuracy",
                "metric_value": str(base + 2 * seed),
                "seed": str(seed),
                "round": "0",
                "train_data": data[seed],
            }
            lines.append(",".join(row[c] for c in columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_report_states_its_training_data_and_refuses_a_mix(tmp_path):
    out = tmp_path / "out"
    runs = _runs_csv(out / "study_runs.csv", ["xnli+snli5k"] * 3)
    assert [r.train_data for r in collect.runs_from_csv(runs)] == ["xnli+snli5k"] * 6
    written = report.write_report(tmp_path / "none", out, "T", "python -m research study x", runs)
    md = written["md"].read_text().splitlines()
    assert md[2:4] == [
        "Command: `python -m research study x`  ",
        f"Training data: `xnli+snli5k`, {SNLI5K_WORDS} (docs/zoo.md, `--train_data`).  ",
    ]
    with open(written["seeds_csv"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["task", "model", "seed", "metric", "value", "train_data"]
    assert rows[1] == ["xnli", "adapter", "0", "accuracy", "50.0", "xnli+snli5k"]
    assert {r[5] for r in rows[1:]} == {"xnli+snli5k"} and len(rows) == 7
    # the default zoo's runs, the option not asked for: the report as before (no line, no column)
    plain = tmp_path / "plain"
    written = report.write_report(
        tmp_path / "none", plain, "T", "c", _runs_csv(plain / "study_runs.csv", ["xnli"] * 3)
    )
    assert "Training data" not in written["md"].read_text()
    assert written["seeds_csv"].read_text().splitlines()[0] == "task,model,seed,metric,value"
    # asked for (the curve preset names xnli): said, though it is the default
    written = report.write_report(tmp_path / "none", plain, "T", "c", plain / "study_runs.csv", "xnli")
    assert (
        "Training data: `xnli`, the 1,245 English XNLI training rows alone" in written["md"].read_text()
    )
    assert written["seeds_csv"].read_text().splitlines()[1].endswith(",xnli")
    # runs of two training data in one report: refused, naming where they were read
    mixed = _runs_csv(tmp_path / "mixed" / "study_runs.csv", ["xnli", "xnli+snli5k", "xnli"])
    with pytest.raises(ValueError) as err:
        report.write_report(tmp_path / "none", tmp_path / "mixed", "T", "c", mixed)
    assert str(err.value) == (
        f"{mixed}: runs of several training data (xnli, xnli+snli5k): one report per training data, "
        "each in the runs_dir the study gives it (<runs_dir>-<option>)"
    )


def test_every_training_stage_keeps_its_checkpoints_beside_its_own_folder(
    encoder, tmp_path, monkeypatch
):
    """build_zoo gives each intermediate and target stage's training the resume folder of that
    stage (recipe.resume_dir: `.<name>.resume` beside it), so a killed build resumes each stage
    from its own checkpoints and no two stages share one."""
    zoo = _zoo(encoder, tmp_path / "models")
    seen = []
    from zoo import stages

    monkeypatch.setattr(stages, "intermediate", lambda ctx, spec, out: seen.append(ctx.resume))
    monkeypatch.setattr(stages, "target", lambda ctx, spec, task, out: seen.append(ctx.resume))
    recipe.build_zoo(zoo, "tiny", ["full-squad", "adapter"], ["xnli"], TINY_TEST, progress=False)
    squad = zoo / str(MODELS["full-squad"].intermediate_folder())
    assert seen == [
        squad.with_name(f".{squad.name}.resume"),
        zoo / "full-squad" / ".xnli.resume",
        zoo / "adapter" / ".xnli.resume",
    ]
