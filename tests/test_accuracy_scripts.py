"""Every accuracy_<task>.py run as a script on a REAL accuracy log (written by LoadGen in an
AccuracyOnly `python -m harness run` of a tiny seeded model), on success and on error.

Success: exit 0 and the printed final JSON line equal to the score computed here independently of
the scorers (XNLI, PAWS-X: argmax against the gold labels; Tatoeba: cosine top-1 in plain numpy), or
for TyDiQA and BUCC equal to what the run scored in-process (two entry points, one number).
Error: a truncated copy of the real log, and another task's real log: exit 3, one `error:` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from tasks.registry import get_task

ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
GUARD_S = 600
# task -> (languages, --count or None for every sample, checkpoint kind)
RUNS = {
    "xnli": ("en,sw", 120, "classifier3"),
    "pawsx": ("de,en", 90, "classifier2"),
    "tydiqa": ("en", 40, "qa"),
    "tatoeba": ("afr", None, "classifier3"),
    "bucc": ("zh", None, "classifier3"),
}


SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}


@pytest.fixture(scope="module")
def checkpoints(tiny_tokenizer, tmp_path_factory) -> dict[str, Path]:
    """Seeded random checkpoints of a very small XLM-R (2 x 64) with the session's tiny tokenizer:
    3- and 2-label classifiers and a QA model (retrieval runs pool the 3-label one's encoder)."""
    import torch
    from transformers import XLMRobertaForQuestionAnswering, XLMRobertaForSequenceClassification

    from models.encoders import TINY_CONFIG, xlmr_config

    config = {**TINY_CONFIG, **SMALL}
    makers = {
        "classifier3": lambda: XLMRobertaForSequenceClassification(xlmr_config(config, num_labels=3)),
        "classifier2": lambda: XLMRobertaForSequenceClassification(xlmr_config(config, num_labels=2)),
        "qa": lambda: XLMRobertaForQuestionAnswering(xlmr_config(config)),
    }
    out = {}
    for kind, make in makers.items():
        folder = tmp_path_factory.mktemp(kind)
        torch.manual_seed(1)
        make().save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        out[kind] = folder
    return out


@pytest.fixture(scope="module")
def runs(checkpoints, tmp_path_factory) -> dict[str, Path]:
    """task -> the folder of its AccuracyOnly run (mlperf_log_accuracy.json, accuracy.txt...)."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for task, (languages, count, kind) in RUNS.items():
        cmd = [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--scenario",
            "Offline",
            "--accuracy",
            "--model",
            "full",
            "--task",
            task,
            "--languages",
            languages,
            "--weights",
            str(checkpoints[kind]),
            "--output_dir",
            str(root / task),
            "--allow_invalid",
            "--threads",
            "1",
        ]
        cmd += ["--count", str(count)] if count else []
        proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=GUARD_S)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (log,) = (root / task).rglob("mlperf_log_accuracy.json")
        folders[task] = log.parent
    return folders


def script(task: str, log: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, f"accuracy_{task}.py", str(log), *flags]
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=GUARD_S)


def entries(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(qsl_idx [m], float32 [m, width]) of a run's log, decoded here with json and numpy only."""
    doc = json.loads((run / "mlperf_log_accuracy.json").read_text())
    idx = np.array([e["qsl_idx"] for e in doc])
    rows = np.stack([np.frombuffer(bytes.fromhex(e["data"]), "<f4") for e in doc])
    return idx, rows


def final_line(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- success ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("task", ["xnli", "pawsx"])
def test_classification_script_prints_the_argmax_accuracy(runs, task):
    run = runs[task]
    languages, count, _ = RUNS[task]
    idx, logits = entries(run)
    assert sorted(idx.tolist()) == list(range(count))  # AccuracyOnly: every sample exactly once
    gold = get_task(task, languages=languages).read()
    right = {lang: [] for lang in languages.split(",")}
    for q, row in zip(idx, logits, strict=True):
        right[gold[q].language].append(int(row.argmax()) == gold[q].label)
    per = {lang: 100.0 * np.mean(r) for lang, r in right.items() if r}  # mean over languages, unweighted
    proc = script(task, run / "mlperf_log_accuracy.json", "--languages", languages)
    assert final_line(proc) == {"accuracy": pytest.approx(np.mean(list(per.values())), abs=1e-9)}
    assert "partial coverage" in proc.stderr  # --count: the rest of the languages' rows not logged


@pytest.mark.slow
def test_tatoeba_script_prints_the_cosine_top1_accuracy(runs):
    run = runs["tatoeba"]
    idx, emb = entries(run)
    (pair,) = get_task("tatoeba", languages="afr").read()
    n = len(pair.src_sents)
    assert sorted(idx.tolist()) == list(range(2 * n))
    ordered = emb[np.argsort(idx)]
    src, en = ordered[:n], ordered[n:]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    hits = (unit(en) @ unit(src).T).argmax(axis=1) == np.arange(n)  # English query finds its pair
    proc = script("tatoeba", run / "mlperf_log_accuracy.json", "--languages", "afr")
    printed = final_line(proc)["accuracy"]
    assert printed == pytest.approx(100.0 * hits.mean(), abs=1e-9)
    assert 0 < printed < 100  # a random tiny encoder: some pairs found, not all


@pytest.mark.slow
@pytest.mark.parametrize("task", ["tydiqa", "bucc"])
def test_qa_and_mining_scripts_print_what_the_run_scored(runs, task):
    run = runs[task]
    in_run = (run / "accuracy.txt").read_text().strip().splitlines()[-1]
    proc = script(task, run / "mlperf_log_accuracy.json", "--languages", RUNS[task][0])
    assert final_line(proc) == json.loads(in_run)
    metrics = list(get_task(task).metrics)
    assert list(final_line(proc))[: len(metrics)] == metrics
    assert all(0 <= final_line(proc)[m] <= 100 for m in metrics)


# --- errors ----------------------------------------------------------------------------------------
def one_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == BAD_INPUT and proc.stdout == "", proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("task", list(RUNS))
def test_a_truncated_copy_of_the_real_log(runs, task, tmp_path):
    text = (runs[task] / "mlperf_log_accuracy.json").read_bytes()
    cut = tmp_path / "mlperf_log_accuracy.json"
    cut.write_bytes(text[: len(text) // 2])
    one_error(script(task, cut, "--languages", RUNS[task][0]), str(cut), "the JSON ends early")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "other", "needle"),
    [
        ("xnli", "pawsx", "xnli responses must have 3 floats each"),
        ("pawsx", "xnli", "pawsx responses must have 2 floats each"),
        ("tydiqa", "xnli", "this looks like a log from xnli"),
        ("tatoeba", "pawsx", "this looks like a log from pawsx"),
        ("bucc", "tatoeba", "no language pair of bucc is completely logged"),
    ],
)
def test_another_tasks_real_log(runs, task, other, needle):
    log = runs[other] / "mlperf_log_accuracy.json"
    flags = ["--languages", RUNS[task][0]]
    one_error(script(task, log, *flags), str(log), needle)
