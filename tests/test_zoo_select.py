"""Learning rate and epoch selection on the English dev split (zoo/select.py, zoo/choice.py,
docs/selection.md): the split, the choice rule, the grid files, a tiny selection end to end (records,
resume, CSV, choices) and a zoo built with its choice.

One tiny selection (full and full-squad x 2 learning rates x 2 epochs, the very small recipe) runs
once per module, in a zoo folder that holds a seeded random-weight encoder of the very small shape
(pretraining one would take longer than the selection): the selection builds full-squad's SQuAD
stage there and trains its trials from it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.datafiles import DataFileError
from common.paths import DATA, REPO
from tasks.data import find_file, read_classification_file, read_snli, read_squad, squad_titles
from tasks.scoring.classification import HELDOUT_FIRST_ROW
from tasks.tydiqa import squad_train_features
from tasks.xnli import XnliTask
from tests.conftest import save_tiny_encoder
from zoo.choice import choose, read_selected
from zoo.cli import main as zoo_main
from zoo.recipe import (
    E5_SMALL,
    MIRRORS,
    STAGE_MINUTES,
    TINY_TEST,
    TRAIN_ROWS,
    StageError,
    check_selected_stages,
    dev_split,
)
from zoo.select import (
    Trial,
    choices,
    finished,
    load_grid,
    plan,
    report_text,
    settings,
    train_rows,
    trial_minutes,
)

LABELS = XnliTask.label_names
TINY_GRID = REPO / "zoo" / "grids" / "select-xnli-tiny.toml"
TINY_TRIALS = [  # the grid's order
    "full_lr0.0003_seed0_xnli",
    "full_lr0.001_seed0_xnli",
    "full-squad_lr0.0003_seed0_xnli",
    "full-squad_lr0.001_seed0_xnli",
]


# --- the dev split ---------------------------------------------------------------------------------
def test_the_dev_split_holds_out_whole_english_premises_of_the_training_rows():
    dev, rest = dev_split("xnli").dev, dev_split("xnli").train
    assert (len(dev), len(rest)) == (249, 996)
    assert not set(dev) & set(rest)
    assert sorted(dev + rest) == list(TRAIN_ROWS["xnli"]) == list(range(1245))
    assert max(dev) < HELDOUT_FIRST_ROW["xnli"] == 1245  # never a held-out (test) row
    assert dev[:6] == (12, 13, 14, 27, 28, 29) and dev[-1] == 1244  # premises 4, 9, ..., 414
    examples = read_classification_file(find_file(DATA / "xnli", "dev-en.tsv"), LABELS, "en")
    premise = {e.row: e.text_a for e in examples}
    dev_premises, rest_premises = {premise[r] for r in dev}, {premise[r] for r in rest}
    assert (len(dev_premises), len(rest_premises)) == (83, 332)
    assert not dev_premises & rest_premises  # no premise on both sides, by its text
    assert Counter(examples[r].label for r in dev) == {0: 83, 1: 83, 2: 83}


def test_the_tydiqa_dev_split_holds_out_whole_wikipedia_articles_of_train_en():
    """TyDiQA's dev split: every 5th article title of train-en.json (order of first appearance)
    taken whole, so no article has a passage on both sides; indices are train-en's questions."""
    split = dev_split("tydiqa")
    path = find_file(DATA / "tydiqa_goldp", "train-en.json")
    titles, examples = squad_titles(path), read_squad(path, "en")
    assert len(titles) == len(examples) == split.total == 3696
    assert (len(split.dev), len(split.train), split.groups) == (724, 2972, 603)
    assert sorted(split.dev + split.train) == list(range(3696)) and not set(split.dev) & set(split.train)
    dev_titles, train_titles = {titles[i] for i in split.dev}, {titles[i] for i in split.train}
    assert (len(dev_titles), len(train_titles)) == (603, 3016 - 603) and not dev_titles & train_titles
    first = list(dict.fromkeys(titles))  # the 5th, 10th ... title in order of first appearance
    assert [t for k, t in enumerate(first) if k % 5 == 4] == sorted(dev_titles, key=first.index)
    assert not {examples[i].context for i in split.dev} & {examples[i].context for i in split.train}
    assert (
        split.words
        == "every 5th Wikipedia article title of train-en.json taken whole (603 titles of 3016)"
    )
    with pytest.raises(ValueError, match="'pawsx' has no dev split"):
        dev_split("pawsx")
    from tasks.registry import get_task

    assert get_task("tydiqa", split="train").active_languages == ("en",)
    with pytest.raises(ValueError, match="tydiqa split 'train' is English only .*not languages ar"):
        get_task("tydiqa", languages="ar", split="train")


def test_a_tydiqa_trial_trains_on_its_questions_and_probes_the_held_out_ones(
    monkeypatch, tiny_tokenizer
):
    """A trial's QA training windows come from the split's training questions only; its dev probe
    reads train-en.json (not the dev-en evaluation file) and scores the windows of the dev questions
    only."""
    from zoo import evaluate, stages

    path = find_file(DATA / "tydiqa_goldp", "train-en.json")
    examples = read_squad(path, "en")
    picked = stages.qa_data(path, tiny_tokenizer, 128, questions=[5, 2])
    expected = squad_train_features(tiny_tokenizer, [examples[2], examples[5]], 128, 48, 32)
    assert picked.keys() == expected.keys()
    assert all(np.array_equal(picked[k], expected[k]) for k in expected)
    seen = {}

    def fake_predict(backend, fs, indices, kind, pad_id):
        seen["questions"] = sorted(set(fs.extra["example_index"][indices].tolist()))
        seen["windows"] = len(indices)
        return "log"

    def fake_score(task, log, **kwargs):
        seen["files"] = [p.name for p in task.data_files()]
        seen["tokenizer"] = kwargs.get("tokenizer")
        return SimpleNamespace(final_line=json.dumps({"f1": 12.5}))

    monkeypatch.setattr(evaluate, "predict_log", fake_predict)
    monkeypatch.setattr(evaluate, "score", fake_score)
    monkeypatch.setattr(evaluate, "_TrainingModule", lambda kind, model: None)
    dev = dev_split("tydiqa").dev[:3]
    assert evaluate.row_probe("tydiqa", tiny_tokenizer, dev)(None) == 12.5
    assert seen["questions"] == list(dev) and seen["windows"] >= 3
    assert seen["files"] == ["train-en.json.gz"] and seen["tokenizer"] is tiny_tokenizer
    evaluate.row_probe("tydiqa", tiny_tokenizer, None)(None)  # the held-out probe: dev-en, all of it
    assert seen["files"] == ["dev-en.json.gz"] and len(seen["questions"]) == 440


def test_a_tiny_tydiqa_selection_runs_end_to_end_into_its_own_folder(tmp_path, tiny_tokenizer):
    """A TyDiQA grid (one model, one learning rate, 2 epochs): the trial trains on the split's
    training questions (the very small recipe's first 120 windows), scores the 724 dev questions
    after each epoch as F1, and the report, the CSV and selected.toml say TyDiQA; its default
    folder is not the XNLI selection's."""
    grid = tmp_path / "select-tydiqa-tiny.toml"
    grid.write_text(
        'encoder = "tiny"\ntask = "tydiqa"\nmodels = ["full"]\nseeds = [0]\nmax_epochs = 2\n'
        "[lr]\nfull = [1e-3]\n"
    )
    save_tiny_encoder(tmp_path / "zoo" / "encoder", tiny_tokenizer, dict(TINY_TEST.config))
    argv = ["select", "--grid", str(grid), "--tiny-test", "--quiet", "--runs_dir", str(tmp_path)]
    assert zoo_main([*argv, "--models_dir", str(tmp_path / "zoo")]) == 0
    record = json.loads((tmp_path / "trials" / "full_lr0.001_seed0_xnli.json").read_text())
    assert record["settings"]["task"] == "tydiqa" and record["rows"] == {"train": 120, "dev": 724}
    assert [(p["epoch"], p["step"]) for p in record["curve"]] == [(1.0, 15), (2.0, 30)]
    assert all(0.0 <= p["dev"] <= 100.0 for p in record["curve"])
    report = (tmp_path / "selection.md").read_text()
    assert "**Dev split**: 724 English tydiqa questions, every 5th Wikipedia article title" in report
    assert "the trials train on the other 2972 questions of train-en.json. No held-out" in report
    assert "| model | learning | data | lr | epochs | dev F1 |" in report
    chosen = read_selected(tmp_path / "selected.toml", "tiny")
    assert list(chosen) == ["tydiqa"] and chosen["tydiqa"]["full"]["lr"] == 1e-3
    assert "chosen on the English tydiqa dev split." in (tmp_path / "selected.toml").read_text()
    from zoo.select import default_runs_dir

    assert default_runs_dir(load_grid(grid)).name == "select-tiny-tydiqa"
    assert default_runs_dir(load_grid(TINY_GRID)).name == "select-tiny"


def test_the_e5_small_tydiqa_grid_is_the_xnli_grid_at_four_epochs_and_plans_for_a_gpu(tmp_path):
    """The TyDiQA grid: the XNLI grid's arms and learning rates, up to 4 epochs (the recipe trains
    2); planned at about 24 hours on 2 cores from the measured TyDiQA stages."""
    grid = load_grid(REPO / "zoo" / "grids" / "select-tydiqa-e5-small.toml")
    xnli = load_grid(REPO / "zoo" / "grids" / "select-xnli-e5-small.toml")
    assert (grid.task, grid.models, grid.lr, grid.data, grid.max_epochs, grid.max_epochs_of) == (
        "tydiqa", xnli.models, xnli.lr, ("xnli",), 4, {}
    )  # fmt: skip
    _, minutes = plan(grid, grid.trials(), tmp_path / "empty-zoo")
    tydiqa = STAGE_MINUTES["e5-small"]
    per_epoch = tydiqa["full/tydiqa"] / 2 * 2972 / 3696  # measured: 2 epochs of all 3,696 questions
    assert trial_minutes(grid, Trial("full", 5e-5, 0, "xnli")) == pytest.approx(4 * per_epoch)
    assert round(minutes) == 1440


# --- the choice rule --------------------------------------------------------------------------------
def test_the_choice_is_the_best_mean_dev_figure_ties_to_fewer_epochs_then_the_smaller_lr():
    # 70 at epochs 2 and 4 of lr 1e-3: the fewer epochs
    c = choose({1e-3: [[60.0, 70.0, 65.0, 70.0]], 3e-3: [[50.0, 60.0, 69.0, 69.5]]})
    assert (c.lr, c.epochs, c.dev, c.max_epochs, c.flattened) == (1e-3, 2, 70.0, 4, True)
    assert c.why() == "yes: best at epoch 2 of 4"
    # the same figure at the same epoch for two learning rates: the smaller one
    c = choose({3e-4: [[60.0, 72.0]], 1e-4: [[61.0, 72.0]]})
    assert (c.lr, c.epochs) == (1e-4, 2)
    # float noise is no difference: 0.1 + 0.2 != 0.3 in binary, a tie here
    c = choose({2e-4: [[0.1 + 0.2]], 1e-4: [[0.3]]})
    assert c.lr == 1e-4
    # averaged over seeds: 65 (70, 60) loses to 66 (66, 66)
    c = choose({1e-3: [[70.0], [60.0]], 1e-4: [[66.0], [66.0]]})
    assert (c.lr, c.dev) == (1e-4, 66.0)
    with pytest.raises(ValueError, match="unequal lengths"):
        choose({1e-3: [[70.0], [60.0, 61.0]]})


def test_a_curve_has_flattened_when_its_best_epoch_is_not_the_last_or_its_last_two_epochs_gain_little():
    c = choose({1e-3: [[50.0, 60.0, 60.2, 60.4]]})  # best at the last epoch, +0.4 over the last two
    assert (c.epochs, c.flattened, c.gain) == (4, True, pytest.approx(0.4))
    assert c.why() == "yes: last 2 epochs +0.4 (< 0.5)"
    c = choose({1e-3: [[50.0, 55.0, 58.0, 60.0]]})
    assert (c.flattened, c.gain) == (False, 5.0)
    assert c.why() == "NO: best at the last epoch, last 2 epochs +5.0"
    c = choose({1e-3: [[50.0, 60.0]]})  # too short to tell
    assert (c.flattened, c.gain) == (False, None)
    assert c.why() == "NO: best at the last epoch, too few epochs to tell"


# --- the grid files ---------------------------------------------------------------------------------
GOOD = {
    "encoder": '"tiny"',
    "task": '"xnli"',
    "models": '["full", "lora-squad"]',
    "seeds": "[0]",
    "data": '["xnli"]',
    "max_epochs": "2",
}
LR = "\n[lr]\nfull = [1e-4]\nlora = [1e-3]\n"


def _grid(tmp_path: Path, lr: str = LR, **keys: str | None) -> Path:
    path = tmp_path / "bad.toml"
    lines = [f"{k} = {v}" for k, v in {**GOOD, **keys}.items() if v is not None]
    path.write_text("\n".join(lines) + "\n" + lr)
    return path


@pytest.mark.parametrize(
    "keys, lr, message",
    [
        ({"max_epochs": None}, LR, "missing key 'max_epochs'"),
        ({"epochs": "3"}, LR, "unknown key 'epochs'"),
        ({"models": '"full"'}, LR, "key 'models' must be a list"),
        ({"max_epochs": '"ten"'}, LR, "key 'max_epochs' must be a int, not 'ten'"),
        ({"models": '["full", "fulll"]'}, LR, "key 'models': unknown model 'fulll'"),
        ({"data": '["xnli+mnli"]'}, LR, "key 'data': unknown training data 'xnli+mnli'"),
        ({"task": '"pawsx"'}, LR, "key 'task': 'pawsx' has no dev split"),
        ({"task": '"tydiqa"', "data": '["xnli+snli5k"]'}, LR, "a tydiqa grid takes none"),
        ({"encoder": '"base"'}, LR, "key 'encoder': 'base' is not built by the zoo"),
        ({"seeds": "[]"}, LR, "key 'seeds': needs at least one value"),
        ({"max_epochs": "0"}, LR, "key 'max_epochs': must be at least 1"),
        ({}, "\n[lr]\nfull = [1e-4]\n", "key 'lr.lora': missing"),
        ({}, LR + "fusion = [1e-3]\n", "key 'lr.fusion': no model of the grid learns by 'fusion'"),
        ({}, "\n[lr]\nfull = [1e-4, 1e-4]\nlora = [1e-3]\n", "key 'lr.full': needs learning rates > 0"),
        ({}, '\n[lr]\nfull = ["fast"]\nlora = [1e-3]\n', "key 'lr.full[0]' must be a number"),
        ({}, LR + "[max_epochs_of]\nadapter = 20\n", "key 'max_epochs_of.adapter': no model of the"),
        ({}, LR + "[max_epochs_of]\nlora = 0\n", "key 'max_epochs_of.lora': must be at least 1"),
    ],
)
def test_a_bad_grid_file_names_the_file_and_the_key(tmp_path, keys, lr, message):
    path = _grid(tmp_path, lr, **keys)
    with pytest.raises(DataFileError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_a_learning_kind_with_its_own_schedule_trains_reports_and_keys_it(tmp_path):
    """[max_epochs_of] lora = 4: LoRA's trials run 4 epochs under a 4-epoch schedule, their records
    are keyed by it, the plan and the report say it, and its curve rows are the longest."""
    grid = load_grid(_grid(tmp_path, LR + "[max_epochs_of]\nlora = 4\n"))
    assert (grid.epochs_of("full"), grid.epochs_of("lora-squad"), grid.epochs_text()) == (
        2,
        4,
        "2 (lora 4)",
    )
    full, lora = Trial("full", 1e-4, 0, "xnli"), Trial("lora-squad", 1e-3, 0, "xnli")
    assert settings(grid, full, TINY_TEST)["max_epochs"] == 2
    assert settings(grid, lora, TINY_TEST)["max_epochs"] == 4
    e5 = dataclasses.replace(grid, encoder="e5-small")  # measured stage minutes: 4 epochs cost twice 2
    assert trial_minutes(e5, lora) == pytest.approx(
        2 * trial_minutes(dataclasses.replace(e5, max_epochs_of={}), lora)
    )
    lines, _ = plan(e5, [full, lora], tmp_path / "zoo")
    assert lines[-2:] == [
        f"full: 1 trial(s) x 2 epochs (~{trial_minutes(e5, full):.1f} min)",
        f"lora-squad: 1 trial(s) x 4 epochs (~{trial_minutes(e5, lora):.1f} min)",
    ]
    records = {
        t: {"curve": [{"dev": 40.0 + k} for k in range(grid.epochs_of(t.model))], "train_s": 60.0}
        for t in grid.trials()
    }
    text = report_text(grid, records, choices(grid, records), "cmd")
    assert "up to 2 (lora 4) epochs" in text
    assert "| full | xnli | 0.0001 | 40.0 | 41.0 |  |  |" in text  # padded to LoRA's 4 epochs
    assert "| lora-squad | xnli | 0.001 | 40.0 | 41.0 | 42.0 | 43.0 |" in text
    assert choices(grid, records)[("lora-squad", "xnli")].max_epochs == 4


def test_the_command_refuses_a_grid_for_another_encoder_in_one_line(capsys):
    assert zoo_main(["select", "--grid", str(TINY_GRID), "--encoder", "e5-small", "--plan"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {TINY_GRID}: key 'encoder': the grid is for 'tiny', not --encoder 'e5-small'"
    ]


def test_the_e5_small_grid_and_its_planned_time(tmp_path):
    grid = load_grid(REPO / "zoo" / "grids" / "select-xnli-e5-small.toml")
    assert (grid.encoder, grid.task, grid.seeds, grid.data, grid.max_epochs) == (
        "e5-small",
        "xnli",
        (0,),
        ("xnli",),
        10,
    )
    assert grid.models == (
        "full", "full-squad", "adapter", "adapter-squad", "lora-squad", "adapter-seq-squad", "lora",
        "full-nli", "adapter-nli",
    )  # fmt: skip
    assert grid.lr == {
        "full": (2e-5, 5e-5, 1e-4),
        "adapter": (3e-4, 1e-3, 3e-3),
        "fusion": (2e-4, 5e-4, 1e-3),
        "adapter-seq": (3e-4, 1e-3, 3e-3),
        "lora": (3e-4, 1e-3, 3e-3),
    }
    trials = grid.trials()
    assert len(trials) == 27 and trials[0] == Trial("full", 2e-5, 0, "xnli")
    lines, minutes = plan(grid, trials, tmp_path / "empty-zoo")
    xnli = STAGE_MINUTES["e5-small"]
    measured = {m: MIRRORS.get(f"{m}/xnli", f"{m}/xnli") for m in grid.models}  # the newer arms'
    assert measured["adapter-seq-squad"] == "adapter/xnli" and measured["lora"] == "lora-squad/xnli"
    assert measured["full-nli"] == "full-squad/xnli" and measured["adapter-nli"] == "adapter/xnli"
    per_epoch_996_rows = {m: xnli[measured[m]] / 5 * 996 / 1245 for m in grid.models}
    assert per_epoch_996_rows["full"] == pytest.approx(0.416)  # measured: 2.6 min for 5 x 1245 rows
    squad = 1.25 + 6.0 + 5.0 + 4.8 + 5.0  # the encoder and four SQuAD stages (the last mirrored)
    # the two NLI stages: 19,666 SNLI pairs x 1 epoch, estimated from the XNLI stage of the same
    # learning (5 x 1,245 rows) scaled by rows x epochs
    nli = 2 * round(2.6 * 19666 / (5 * 1245), 1)
    assert grid.max_epochs_of == {"lora": 20}  # LoRA's curve still rose at 10 epochs
    epochs = {m: grid.epochs_of(m) for m in grid.models}
    assert epochs["lora-squad"] == epochs["lora"] == 20 and epochs["full"] == 10
    trials_min = 3 * sum(per_epoch_996_rows[m] * epochs[m] for m in epochs)
    assert minutes == pytest.approx(squad + nli + trials_min)
    assert round(minutes) == 188
    assert lines[0].startswith(
        "first the zoo stages the trials start from: encoder e5-small (~1.25 min)"
    )
    assert lines[1] == "full: 3 trial(s) x 10 epochs (~12.5 min)"
    assert train_rows("xnli", "xnli") == 996 and train_rows("xnli", "xnli+snli5k") == 5996
    assert train_rows("xnli", "xnli+snli") == 996 + 19666


@pytest.mark.parametrize(("kernel", "says_fp32"), [("amx", False), (None, True)])
def test_the_plan_says_when_this_cpu_trains_in_fp32(tmp_path, monkeypatch, capsys, kernel, says_fp32):
    """The plan's minutes are bf16 stage times: on a CPU without native bf16 the printed plan says
    training runs in fp32, slower than that (the first e5-small trial here took about twice its plan)."""
    from zoo import select

    monkeypatch.setattr(select, "probe", lambda: SimpleNamespace(bf16_kernel=kernel))
    grid = load_grid(REPO / "zoo" / "grids" / "select-xnli-e5-small.toml")
    report = tmp_path / "selection.md"
    chosen = select.run_selection(
        grid, E5_SMALL, tmp_path, tmp_path / "zoo", report, "c", plan_only=True
    )
    first = capsys.readouterr().out.splitlines()[0]
    assert chosen is None and not report.exists()
    assert first.startswith(
        "[select] zoo/grids/select-xnli-e5-small.toml: 27 trials, 0 done, 27 to train; "
    )
    assert (
        first.endswith("; this CPU has no native bf16, so it trains in fp32, slower than that")
        == says_fp32
    )


# --- one tiny selection, end to end -----------------------------------------------------------------
@pytest.fixture(scope="module")
def selection(tmp_path_factory, tiny_tokenizer):
    runs = tmp_path_factory.mktemp("select")
    save_tiny_encoder(runs / "zoo" / "encoder", tiny_tokenizer, dict(TINY_TEST.config))
    argv = ["select", "--grid", "select-xnli-tiny", "--tiny-test", "--quiet", "--runs_dir", str(runs)]
    assert zoo_main([*argv, "--models_dir", str(runs / "zoo")]) == 0
    return runs


def _records(runs: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((runs / "trials").glob("*.json"))}


def test_each_trial_records_its_dev_curve_settings_and_rows(selection):
    records = _records(selection)
    assert sorted(records) == sorted(TINY_TRIALS)
    grid = load_grid(TINY_GRID)
    assert [t.name for t in grid.trials()] == TINY_TRIALS  # the grid's order: the CSV's
    for name, r in records.items():
        model, lr, seed, data = name.split("_")
        assert r["settings"] == {
            "encoder": "tiny",
            "task": "xnli",
            "model": model,
            "learning": "full",
            "lr": float(lr.removeprefix("lr")),
            "seed": 0,
            "data": "xnli",
            "max_epochs": 2,
            "sizes": repr(TINY_TEST),
        }
        assert Trial(model, float(lr.removeprefix("lr")), 0, data) in grid.trials()
        # 120 training rows (the very small recipe's first 120 of the 996) in batches of 8
        assert r["rows"] == {"train": 120, "dev": 249}
        assert [(p["epoch"], p["step"]) for p in r["curve"]] == [(1.0, 15), (2.0, 30)]
        for p in r["curve"]:  # a share of the 249 dev rows, no other figure
            assert set(p) == {"epoch", "step", "loss", "dev"}
            assert p["dev"] * 249 / 100 == pytest.approx(round(p["dev"] * 249 / 100), abs=1e-6)
        assert r["train_s"] > 0
    assert not (selection / ".work").exists() or not any((selection / ".work").iterdir())


def test_the_csv_has_one_row_per_trial_and_epoch(selection):
    records = _records(selection)
    with open(selection / "selection.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    expected = [
        [name.split("_")[0], str(r["settings"]["lr"]), str(p["epoch"]), str(p["dev"]), str(p["loss"])]
        for name, r in sorted(records.items(), key=lambda kv: TINY_TRIALS.index(kv[0]))
        for p in r["curve"]
    ]
    assert [[row[k] for k in ("model", "lr", "epoch", "dev", "loss")] for row in rows] == expected
    assert {(row["train_rows"], row["dev_rows"], row["data"], row["seed"]) for row in rows} == {
        ("120", "249", "xnli", "0")
    }
    # how each trial trained: the tiny-test recipe asks for no bf16 autocast
    assert {row["bf16"] for row in rows} == {"False"} == {str(r["bf16"]) for r in records.values()}


def test_the_chosen_values_are_the_best_dev_epoch_of_the_best_lr(selection):
    records = _records(selection)
    selected = read_selected(selection / "selected.toml", "tiny")
    assert sorted(selected["xnli"]) == ["full", "full-squad"]
    report = (selection / "selection.md").read_text()
    assert (
        "`python -m zoo select --encoder tiny --grid zoo/grids/select-xnli-tiny.toml --tiny-test`"
        in report
    )
    for model in ("full", "full-squad"):
        # every (dev, epoch, lr) of the model; the best dev, then the fewer epochs, the smaller lr
        points = [
            (-p["dev"], int(p["epoch"]), r["settings"]["lr"])
            for r in records.values()
            if r["settings"]["model"] == model
            for p in r["curve"]
        ]
        dev, epochs, lr = min(points)
        c = selected["xnli"][model]
        assert (c["lr"], c["epochs"], c["max_epochs"], c["dev"], c["seeds"]) == (
            lr,
            epochs,
            2,
            -dev,
            [0],
        )
        assert f"| {model} | " in report and f"| {lr:g} | {epochs} | {-dev:.1f} |" in report


def test_a_rerun_trains_nothing_and_a_changed_setting_trains_again(
    selection, capsys, monkeypatch, tmp_path
):
    from zoo import stages

    before = {p.name: p.stat().st_mtime_ns for p in (selection / "trials").iterdir()}
    squad = selection / "zoo" / "full-squad" / "squad" / ".done"
    squad_before = squad.stat().st_mtime_ns
    monkeypatch.setattr(stages, "target", lambda *a: pytest.fail("a finished trial was trained again"))
    argv = ["select", "--grid", str(TINY_GRID), "--tiny-test", "--quiet", "--runs_dir", str(selection)]
    assert zoo_main([*argv, "--models_dir", str(selection / "zoo")]) == 0
    out = capsys.readouterr().out
    assert "4 trials, 4 done, 0 to train" in out and "[select] trial " not in out
    assert {p.name: p.stat().st_mtime_ns for p in (selection / "trials").iterdir()} == before
    assert squad.stat().st_mtime_ns == squad_before
    # a record made with other settings does not count as done
    copy = tmp_path / "runs"
    shutil.copytree(selection / "trials", copy / "trials")
    changed = copy / "trials" / f"{TINY_TRIALS[0]}.json"
    record = json.loads(changed.read_text())
    record["settings"]["max_epochs"] = 3
    changed.write_text(json.dumps(record))
    grid = load_grid(TINY_GRID)
    assert sorted(t.name for t in finished(grid, TINY_TEST, copy)) == sorted(TINY_TRIALS[1:])
    assert len(finished(grid, TINY_TEST, selection)) == 4


def test_a_zoo_built_with_the_selection_trains_and_records_the_choice(selection, capsys, tmp_path):
    from models.loaders import read_manifest
    from zoo.evaluate import report_section

    zoo = selection / "zoo"  # the selection's zoo: the encoder and full-squad's SQuAD stage
    chosen = selection / "selected.toml"
    argv = ["build", "--encoder", "tiny", "--tiny-test", "--models_dir", str(zoo), "--models"]
    argv += ["full", "--tasks", "xnli", "--no_eval", "--quiet", "--selected", str(chosen)]
    assert zoo_main(argv) == 0
    assert f"--selected {chosen}: chosen lr and epochs for full/xnli; the recipe's" in (
        capsys.readouterr().out
    )
    selected = read_selected(chosen, "tiny")["xnli"]
    c = selected["full"]
    training = read_manifest(zoo / "full" / "xnli")["training"]
    assert training["selection"] == {**c, "file": str(chosen)}
    assert (training["lr"], training["epochs"], training["schedule_epochs"]) == (c["lr"], c["epochs"], 2)
    # the 1245 training rows, cut to the very small recipe's first 120: 15 steps an epoch, no probe
    assert training["train_samples"] == 120
    assert [p["step"] for p in training["curve"]] == [15 * e for e in range(1, c["epochs"] + 1)]
    assert {k for p in training["curve"] for k in p} == {"epoch", "step", "loss"}
    section = report_section([], "tiny", TINY_TEST, 1.0, 2.0, zoo)  # reports/zoo.md's curves table
    assert f"| full/xnli | {c['lr']:g} | {float(c['epochs'])} of 2.0 | " in section
    # a zoo built with another choice is not passed off as this one: refused before any work
    other = tmp_path / "other.toml"
    other.write_text(chosen.read_text().replace("max_epochs = 2", "max_epochs = 3", 1))
    assert zoo_main([*argv[:-1], str(other)]) == 3
    err = capsys.readouterr().err
    assert f"{zoo / 'full' / 'xnli'}: built already with lr {selected['full']['lr']:g}, " in err
    assert f"not with {other}'s choice (" in err and "--force" in err
    # a stage the recipe built (no choice recorded) is refused the same way
    recipe_stage = tmp_path / "zoo" / "full" / "xnli"
    recipe_stage.mkdir(parents=True)
    (recipe_stage / ".done").write_text("1 s\n")
    (recipe_stage / "zoo.json").write_text(json.dumps({"training": {"lr": 1e-4, "epochs": 0.0}}))
    with pytest.raises(StageError, match="built already with the recipe's lr and epochs, not with"):
        check_selected_stages(tmp_path / "zoo", ["full"], {"xnli": selected})
    check_selected_stages(tmp_path / "zoo", ["adapter"], {"xnli": selected})  # no choice: built as is


@pytest.mark.parametrize(
    "edit, message",
    [
        (('encoder = "tiny"', 'encoder = "e5-small"'), "key 'encoder': selected for 'e5-small'"),
        (("epochs = ", "epochs = 9\nx = "), "unknown key 'selected.xnli.full.x'"),
        (
            ('[selected.xnli."full"]', '[selected.xnli."fulll"]'),
            "key 'selected.xnli.fulll': unknown model",
        ),
        (("epochs = ", "epochs = 3 #"), "needs lr > 0 and 1 <= epochs <= max_epochs"),
    ],
)
def test_a_bad_selected_file_names_the_file_and_the_key(selection, tmp_path, edit, message):
    path = tmp_path / "selected.toml"
    path.write_text((selection / "selected.toml").read_text().replace(*edit, 1))
    with pytest.raises(DataFileError) as err:
        read_selected(path, "tiny")
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


# --- training pieces --------------------------------------------------------------------------------
def test_early_stopping_in_a_longer_schedule_is_the_start_of_that_run():
    """`--selected` trains the chosen epochs of the trial's max_epochs schedule: batch for batch the
    first epochs of the trial, not a run with a schedule of its own."""
    from zoo import stages

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, input_ids, attention_mask, labels):
            x = (input_ids * attention_mask).float().mean(dim=1)
            return SimpleNamespace(loss=((self.w * x - labels.float()) ** 2).mean())

    sizes = SimpleNamespace(batch_size=2, warmup=0.1, bf16=False)
    ctx = stages.Context(Path("."), sizes, seed=0, progress=False, squad_path=Path("."))
    data = {"input_ids": np.arange(1, 13), "offsets": np.arange(0, 13, 2), "labels": [0, 1, 2, 0, 1, 2]}
    whole = stages.train(Toy(), data, 0.05, ctx, "t", epochs=4)
    stopped = stages.train(Toy(), data, 0.05, ctx, "t", epochs=2, schedule_epochs=4)
    own = stages.train(Toy(), data, 0.05, ctx, "t", epochs=2)
    assert len(whole) == 4 and stopped == whole[:2]
    assert own[1]["loss"] != whole[1]["loss"]  # a schedule of 2 epochs decays sooner


def test_snli_pairs_join_the_english_rows_in_xnli_label_order(selection):
    from transformers import AutoTokenizer

    from zoo.stages import classification_data

    tok = AutoTokenizer.from_pretrained(selection / "zoo" / "encoder")
    data = classification_data("xnli", tok, dev_split("xnli").train, 5000)
    assert len(data["labels"]) == 996 + 5000
    snli = read_snli(LABELS)[:5000]
    assert data["labels"][996:].tolist() == [e.label for e in snli]
    assert [LABELS[k] for k in data["labels"][996:998]] == ["neutral", "entailment"]  # its first two
    with pytest.raises(ValueError, match="SNLI pairs train XNLI only, not pawsx"):
        classification_data("pawsx", tok, range(10), 5)


# the exact `sizes` of an e5-small trial recorded before the recipe gained the NLI stage and the
# sequential adapter's learning rate: fields a trial never reads
RECORDED_E5_SIZES = (
    "Sizes(vocab_size=8000, char_coverage=0.9995, config=(), pretrain_steps=400, squad_steps=50, "
    "target_steps=50, squad_epochs=1.0, target_epochs=(('xnli', 5.0), ('pawsx', 3.0), "
    "('tydiqa', 2.0)), target_schedule=(), lr=(('full', 5e-05), ('adapter', 0.001), "
    "('fusion', 0.0005), ('lora', 0.001)), warmup=0.1, bf16=True, freeze_word_embeddings=True, "
    "curve=True, batch_size=32, qa_max_length=384, max_corpus_lines=None, "
    "max_train_examples=None, eval_languages={'tydiqa': None}, eval_rows=None)"
)


def test_a_record_matches_when_only_fields_a_trial_never_reads_changed():
    """A trial recorded before the recipe gained a stage (NLI) and a learning kind (its lr) is
    still done; a change to what the trial reads (its epochs, its rows), a lost field or a record
    that is not a Sizes literal trains it again."""
    from dataclasses import replace

    from zoo.recipe import SIZES
    from zoo.select import same_settings

    sizes = SIZES["e5-small"]
    assert sizes.nli_epochs == 1.0 and ("adapter-seq", 0.001) in sizes.lr  # changed since
    rest = {"encoder": "e5-small", "model": "full", "lr": 2e-05, "seed": 0}
    old = rest | {"sizes": RECORDED_E5_SIZES}
    now = rest | {"sizes": repr(sizes)}
    assert same_settings(old, now, sizes)
    assert not same_settings(old | {"seed": 1}, now, sizes)
    assert not same_settings(old, now, replace(sizes, target_epochs=(("xnli", 10.0),)))
    assert not same_settings(old, now, replace(sizes, max_train_examples=500))
    lost = old | {"sizes": RECORDED_E5_SIZES.replace("eval_rows=None", "")}
    assert not same_settings(lost, now, sizes)
    assert not same_settings(old | {"sizes": "Sizes(vocab_size=open('x'))"}, now, sizes)
    assert not same_settings(old | {"sizes": "not python ("}, now, sizes)


def test_the_study_serves_the_selection_and_refuses_a_stage_built_without_it(
    selection, tmp_path, capsys
):
    """research study --selected FILE: a cell's settings carry its stage's choice (a new choice makes
    it undone), and a stage found built with the recipe's lr and epochs is refused, not served,
    even when nothing is missing (zoo/recipe.py build_for_run)."""
    from research import study
    from research.cli import main as research_main
    from zoo.recipe import build_for_run

    chosen = read_selected(selection / "selected.toml", "tiny")
    s = study.StudySettings(
        runs_dir=tmp_path / "runs", encoder="tiny", selected=(selection / "selected.toml",)
    )
    full = study.Cell("full", "xnli", "pytorch", "Offline", "accuracy")
    c = chosen["xnli"]["full"]
    assert full.settings_key(s)["selection"] == {k: c[k] for k in ("lr", "epochs", "max_epochs")}
    assert (
        study.Cell("full", "tatoeba", "pytorch", "Offline", "accuracy").settings_key(s)["selection"]
        is None
    )
    assert "selection" not in full.settings_key(study.StudySettings(runs_dir=tmp_path, encoder="tiny"))
    recipe_stage = tmp_path / "zoo" / "full" / "xnli"
    recipe_stage.mkdir(parents=True)
    (recipe_stage / ".done").write_text("1 s\n")
    (recipe_stage / "zoo.json").write_text(json.dumps({"training": {"lr": 1e-4, "epochs": 2.0}}))
    with pytest.raises(
        StageError, match=f"{recipe_stage}: built already with the recipe's lr and epochs"
    ):
        build_for_run("full", "xnli", tmp_path / "zoo", "tiny", selected=chosen)
    # a selection file that does not match its schema: one error line before any cell, exit 3
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (selection / "selected.toml").read_text().replace('encoder = "tiny"', 'encoder = "e5-small"')
    )
    argv = ["study", "--encoder", "tiny", "--models", "full", "--tasks", "xnli", "--plan"]
    assert research_main([*argv, "--runs_dir", str(tmp_path / "r"), "--selected", str(bad)]) == 3
    assert capsys.readouterr().err == (
        f"error: {bad}: key 'encoder': selected for 'e5-small', not for --encoder 'tiny'\n"
    )


def test_the_study_reads_one_selection_file_per_task_and_refuses_two_for_one(tmp_path):
    """--selected takes a comma list (XNLI's and TyDiQA's grids write one file each): the choices
    merge by task; two files choosing for one task is an error naming both; a preset's files are
    taken relative to the repository."""
    import argparse

    from research import study
    from zoo.choice import read_selections

    def selection(name, task, lr):
        path = tmp_path / name
        path.write_text(
            f'encoder = "e5-small"\ngrid = "g"\n[selected.{task}.full]\n'
            f"lr = {lr}\nepochs = 2\nmax_epochs = 4\ndev = 50.0\nseeds = [0]\n"
        )
        return path

    xnli, tydiqa = selection("x.toml", "xnli", 1e-4), selection("t.toml", "tydiqa", 5e-5)
    merged = read_selections([xnli, tydiqa], "e5-small")
    assert {t: c["full"]["lr"] for t, c in merged.items()} == {"xnli": 1e-4, "tydiqa": 5e-5}
    assert merged["tydiqa"]["full"]["file"] == str(tydiqa)
    again = selection("x2.toml", "xnli", 3e-4)
    with pytest.raises(
        DataFileError, match=f"^{again}: key 'selected.xnli': {xnli} chooses for xnli already"
    ):
        read_selections([xnli, tydiqa, again], "e5-small")
    parser = argparse.ArgumentParser()
    study.configure_parser(parser)
    args = parser.parse_args(["--selected", f"{xnli}, {tydiqa}"])
    assert args.selected == (xnli, tydiqa)
    preset = tmp_path / "p.toml"
    preset.write_text('selected = ["reports/a.toml", "reports/b.toml"]\n')
    from common.datafiles import flag_values

    assert flag_values(preset, parser, "the study")["selected"] == (
        REPO / "reports/a.toml",
        REPO / "reports/b.toml",
    )


def test_the_xnli_dev_split_holds_row_ids_even_where_training_rows_do_not_start_at_zero(monkeypatch):
    """carve() returns positions; the XNLI split maps them back to row ids: training rows [30, 60)
    are premises 10-19, of which the 5th and 10th (premises 14 and 19) go whole to dev."""
    from zoo import recipe

    monkeypatch.setitem(recipe.TRAIN_ROWS, "xnli", range(30, 60))
    split = recipe.dev_split.__wrapped__("xnli")  # not the cached split of the real rows
    assert split.dev == (42, 43, 44, 57, 58, 59)
    assert split.train == tuple(r for r in range(30, 60) if r not in split.dev)
    assert split.groups == 2 and "[30, 60)" in split.words
