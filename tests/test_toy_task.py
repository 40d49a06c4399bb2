"""Adding a task is one class and one registration call: a toy task, defined and registered here,
runs through the whole harness (CLI -> config -> model resolution -> QSL -> SUT under real LoadGen ->
results.json -> in-process scoring) with no other line of the harness knowing its name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.paths import REPO
from harness.run_record import RunRecord
from tasks.data import ClassificationExample
from tasks.xnli import ClassificationTask

ROWS = 24  # per language


class ToyTask(ClassificationTask):
    """Is the second text the first one repeated? Rows are generated (no data files): row r of a
    language pairs a few words with themselves (label "same") or with other words ("different")."""

    name = "toy"
    title = "Toy"
    languages = ("en", "fr")
    label_names = ("different", "same")

    def data_files(self) -> list[Path]:
        return []

    def read(self) -> list[ClassificationExample]:
        words = {
            "en": "red green blue cat dog tree".split(),
            "fr": "rouge vert bleu chat chien arbre".split(),
        }
        out = []
        for lang in self.active_languages:
            w = words[lang]
            for r in range(ROWS):
                a = " ".join(w[(r + k) % len(w)] for k in range(3))
                same = r % 2 == 0
                b = a if same else " ".join(w[(r + 2 * k + 1) % len(w)] for k in range(2))
                out.append(ClassificationExample(lang, r, a, b, int(same)))
        return out


# The child process registers the toy task (the one registration call), then is `python -m harness`.
CHILD = """
import sys
from tasks.registry import register
from tests.test_toy_task import ToyTask
register(ToyTask)
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def toy_checkpoint(tiny_tokenizer, tmp_path_factory) -> Path:
    """A tiny two-label classifier with seeded random weights, saved zoo-style (config + tokenizer)."""
    import torch
    from transformers import XLMRobertaForSequenceClassification

    from models.encoders import TINY_CONFIG, xlmr_config

    folder = tmp_path_factory.mktemp("toy-classifier")
    torch.manual_seed(0)
    config = xlmr_config({**TINY_CONFIG, "num_hidden_layers": 2}, num_labels=2)
    XLMRobertaForSequenceClassification(config).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def toy_registered():
    from tasks.registry import TASKS, register

    register(ToyTask)
    yield
    TASKS.pop(ToyTask.name)


def test_registration_is_all_the_model_zoo_needs(toy_registered, toy_checkpoint):
    """The zoo derives the task's kind and labels from the task registry: no table of its own."""
    from models.registry import TASKS, get_target, resolve
    from tasks.registry import register

    assert get_target("toy") is ToyTask and "toy" in TASKS
    served = resolve("full", "toy", weights=str(toy_checkpoint))
    assert (served.task_kind, served.num_labels) == ("classification", 2)
    with pytest.raises(ValueError, match="registered already"):
        register(ToyTask)


def test_registration_refuses_a_task_missing_a_declaration():
    from tasks.registry import register

    class Nameless(ClassificationTask):
        languages = ("en",)

    with pytest.raises(ValueError, match="does not declare name, title"):
        register(Nameless)


@pytest.mark.slow
def test_toy_task_runs_through_loadgen_and_scoring(toy_checkpoint, tmp_path):
    out = tmp_path / "runs"
    argv = [sys.executable, "-c", CHILD, "run", "--task", "toy", "--model", "full", "--weights",
            str(toy_checkpoint), "--scenario", "Offline", "--accuracy",
            "--output_dir", str(out)]  # fmt: skip
    env = {
        **os.environ,
        "XLMR_HARNESS_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run = RunRecord.load(out / "tiny" / "pytorch" / "full" / "toy" / "Offline" / "accuracy")
    assert (run.task, run.mode, run.model_kind) == ("toy", "accuracy", "tiny") and run.valid
    assert run.model_spec["num_labels"] == 2 and run.model_spec["task_kind"] == "classification"
    entries = json.loads((run.path / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(2 * ROWS))  # every sample, once
    assert {len(bytes.fromhex(e["data"])) for e in entries} == {2 * 4}  # two float32 logits each
    final = json.loads((run.path / "accuracy.txt").read_text().strip().splitlines()[-1])
    assert list(final) == list(ToyTask.metrics)
    assert set(run.per_language("accuracy")) == {"en", "fr"}
    assert 0.0 <= run.metric("accuracy") <= 100.0 and run.metric("accuracy") == final["accuracy"]
