"""Task lists on ONNX Runtime (`--task xnli+pawsx --backend onnxruntime`, docs/multitask.md): the
per-task forms' sessions answer mixed batches row for row as the PyTorch forms do, synthetic tasks
hold K sessions, a LoadGen run's per-task scores equal the PyTorch run's, and the mixed-batch forms
are refused before anything is built.

The zoo is tests/conftest.py's `multitask_zoo` (built once per session, shared with
tests/test_multitask.py); the ONNX exports go to one folder per module."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from models.base import BackendOptions
from tasks.mixed import group_rows, parse_task_list

ORT = BackendOptions(threads=1)  # one intra-op thread per session: the machine is shared


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    """Every graph this module exports (each task's once, reused by every test here)."""
    return tmp_path_factory.mktemp("multitask-onnx")


def _batch(tokenizer, tasks: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A padded batch of sentence pairs of different lengths, one row per entry of `tasks`."""
    pairs = [
        ("a cat sat on the mat", "dog"),
        ("hello world", "one two three four five six"),
        ("un deux trois", "quatre"),
        ("the end is near and far away from here", "yes"),
        ("short", "a somewhat longer second sentence of this pair"),
    ]
    pairs = [pairs[i % len(pairs)] for i in range(len(tasks))]
    enc = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    return (
        enc["input_ids"].astype(np.int64),
        enc["attention_mask"].astype(np.int64),
        np.array(tasks, dtype=np.int64),
    )


def _backends(model: str, task: str, zoo: Path, onnx_dir: Path):
    from models.multitask import MultiTaskBackend, resolve_tasks
    from models.onnx_backend import MultiTaskOnnxBackend

    multi = resolve_tasks(model, parse_task_list(task), models_dir=zoo)
    return multi, MultiTaskOnnxBackend(multi, ORT, onnx_dir), MultiTaskBackend(multi, BackendOptions())


def test_group_rows_is_the_same_for_numpy_and_torch():
    tasks = [2, 0, 2, 1, 0, 2]
    mask = np.array([[1] * n + [0] * (7 - n) for n in (3, 7, 5, 2, 4, 1)], dtype=np.int64)
    want = [(0, [1, 4], 7), (1, [3], 2), (2, [0, 2, 5], 5)]
    assert group_rows(np.array(tasks), mask) == want
    assert group_rows(torch.tensor(tasks), torch.from_numpy(mask)) == want
    assert group_rows(np.array([], dtype=np.int64), np.zeros((0, 3), dtype=np.int64)) == []


@pytest.mark.parametrize(
    ("model", "task", "form"),
    [
        ("full", "xnli+pawsx+tydiqa", "plain"),
        ("lora-squad", "xnli+pawsx", "merged"),
        ("adapter-squad", "xnli+pawsx", "fusion"),
    ],
)
def test_onnx_per_task_rows_equal_the_pytorch_forms(multitask_zoo, onnx_dir, model, task, form):
    """One session per task; a mixed batch's rows grouped as PerTaskForm groups them: the same rows
    per part, the same shapes (each sub-batch cut to its own longest row), the same numbers."""
    multi, ort_backend, torch_backend = _backends(model, task, multitask_zoo, onnx_dir)
    assert multi.form == form
    n_tasks = len(multi.models)
    rows = [1, 0, 0, 1, 1, 0, 1, 0] if n_tasks == 2 else [0, 1, 2, 2, 0, 1, 0, 2, 1]
    ids, mask, tasks = _batch(multi.models[0].tokenizer(), rows)
    got, want = ort_backend.predict(ids, mask, tasks), torch_backend.predict(ids, mask, tasks)
    assert got.rows == want.rows == len(rows)
    assert len(got.parts) == len(want.parts) == n_tasks
    for (g_rows, g_kind, g_out), (w_rows, w_kind, w_out) in zip(got.parts, want.parts, strict=True):
        assert g_rows.dtype == np.int64 and g_rows.tolist() == w_rows.tolist()
        assert g_kind == w_kind and g_out.dtype == np.float32 and g_out.shape == w_out.shape
        np.testing.assert_allclose(g_out, w_out, atol=1e-4, rtol=0)
        assert not np.allclose(g_out, 0)  # real numbers compared
    described = ort_backend.describe()
    assert described["backend"] == "onnxruntime" and described["form"] == form
    assert described["tasks"] == n_tasks == described["sessions"]
    assert [Path(p).parent for p in described["onnx_files"]] == [onnx_dir] * n_tasks
    assert len(set(described["onnx_files"])) == n_tasks  # one graph per task
    ort_backend.close()


def test_synthetic_tasks_hold_k_sessions_and_k_times_the_graph_bytes(multitask_zoo, onnx_dir):
    """xnli@K: K separate sessions of XNLI's one graph; memory() counts each session's graph."""
    from models.multitask import MultiTaskBackend, resolve_tasks
    from models.onnx_backend import MultiTaskOnnxBackend, graph_bytes

    one = MultiTaskOnnxBackend(
        resolve_tasks("full", parse_task_list("xnli@1"), models_dir=multitask_zoo), ORT, onnx_dir
    )
    multi = resolve_tasks("full", parse_task_list("xnli@3"), models_dir=multitask_zoo)
    three = MultiTaskOnnxBackend(multi, ORT, onnx_dir)
    single = one.memory()
    assert single == {"sessions": 1, "graph_bytes": graph_bytes(one.sessions[0].path)}
    assert single["graph_bytes"] > 0
    assert three.memory() == {"sessions": 3, "graph_bytes": 3 * single["graph_bytes"]}
    assert len({id(s.session) for s in three.sessions}) == 3  # separate sessions, one graph file
    assert {s.path for s in three.sessions} == {one.sessions[0].path}
    assert three.describe()["onnx_files"] == [str(one.sessions[0].path)]
    ids, mask, tasks = _batch(multi.models[0].tokenizer(), [0, 1, 2, 2, 1, 0, 0])
    got = three.predict(ids, mask, tasks)
    want = MultiTaskBackend(multi, BackendOptions()).predict(ids, mask, tasks)
    assert [r.tolist() for r, _, _ in got.parts] == [[0, 5, 6], [1, 4], [2, 3]]
    for (_, _, g), (_, _, w) in zip(got.parts, want.parts, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="needs each row's task"):
        three.predict(ids, mask)


@pytest.mark.parametrize(("model", "lora_form"), [("adapter", "merged"), ("lora-squad", "unmerged")])
def test_the_backend_refuses_the_mixed_batch_forms(multitask_zoo, model, lora_form):
    from models.multitask import resolve_tasks
    from models.onnx_backend import MultiTaskOnnxBackend

    multi = resolve_tasks(
        model, parse_task_list("xnli+pawsx"), models_dir=multitask_zoo, lora_form=lora_form
    )
    with pytest.raises(ValueError, match="run on PyTorch only: use --backend pytorch"):
        MultiTaskOnnxBackend(multi, ORT)


def _errors_of_main(flags: list[str], capsys) -> tuple[int, list[str]]:
    from harness.runner import configure_parser, main

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    code = main(parser.parse_args(flags))
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (
            "--model adapter --task xnli+pawsx",
            "model 'adapter' serves a task list's adapters in mixed batches",
        ),
        (
            "--model lora-squad --task xnli+pawsx --lora_form unmerged",
            "--lora_form unmerged serves the list's LoRA updates in mixed batches",
        ),
        ("--model adapter --task xnli@4", "model 'adapter' serves a task list's adapters"),
    ],
)
def test_mixed_batch_forms_on_onnxruntime_are_one_error_line_and_exit_3(flags, says, capsys):
    """Refused while the configuration is validated (nothing built): one line naming the fix."""
    code, errors = _errors_of_main([*flags.split(), "--backend", "onnxruntime"], capsys)
    assert code == BAD_INPUT
    assert len(errors) == 1 and says in errors[0]
    assert "use --backend pytorch, or a per-task MODEL on onnxruntime" in errors[0]


def test_noop_backend_is_refused_for_a_task_list_naming_both_backends(capsys):
    code, errors = _errors_of_main("--model full --task xnli+pawsx --backend noop".split(), capsys)
    assert code == BAD_INPUT and len(errors) == 1
    assert "a task list runs on --backend pytorch or onnxruntime" in errors[0]


def test_task_list_config_check_imports_neither_torch_nor_onnxruntime():
    """RunConfig's task-list check reads the form from the model's spec (no library import)."""
    code = (
        "import sys; from harness.config import RunConfig; "
        "RunConfig(model='full', task='xnli+pawsx', backend='onnxruntime'); "
        "print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


# --- LoadGen runs ------------------------------------------------------------------------------
LIST = "xnli+pawsx"
COUNT = 8


def _run(out: Path, *flags: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--output_dir", str(out), *flags]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _run_dir(out: Path, backend: str, mode: str) -> Path:
    return out / "tiny" / backend / "full" / LIST / "Offline" / mode  # harness/run_folder.py


@pytest.mark.slow
def test_onnx_task_list_runs_offline_and_scores_as_the_pytorch_run(tmp_path, multitask_zoo):
    common = [
        *f"--model full --task {LIST} --languages en --count {COUNT}".split(),
        "--models_dir",
        str(multitask_zoo),
    ]
    # Offline's one query is 1.1 x target_qps x 1 s samples: 5,500 outlast the 1 s min duration
    conf = tmp_path / "user.conf"
    conf.write_text((REPO / "user.conf").read_text() + "full.Offline.target_qps = 5000\n")
    perf = tmp_path / "perf"
    proc = _run(perf, *common, "--backend", "onnxruntime", "--duration", "1", "--user_conf", str(conf))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = _run_dir(perf, "onnxruntime", "performance")
    res = json.loads((run_dir / "results.json").read_text())
    assert res["validity"] == "VALID" and res["loadgen_errors"] == 0 and res["sut_failure"] is None
    assert int(res["summary"]["samples_per_query"]) >= 2 * COUNT
    cfg = json.loads((run_dir / "run_config.json").read_text())
    assert cfg["backend"] == "onnxruntime" and cfg["config"]["backend"] == "onnxruntime"
    options = cfg["backend_options"]
    assert options["backend"] == "onnxruntime" and options["form"] == "plain"
    assert options["sessions"] == 2 and options["graph_bytes"] > 0
    assert cfg["model_spec"]["tasks"] == list(LIST.split("+"))

    scores = {}
    for backend in ("onnxruntime", "pytorch"):
        proc = _run(tmp_path / backend, *common, "--backend", backend, "--accuracy")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        acc_dir = _run_dir(tmp_path / backend, backend, "accuracy")
        scores[backend] = json.loads((acc_dir / "accuracy.json").read_text())
        record = json.loads((acc_dir / "run_config.json").read_text())
        assert record["backend"] == backend
        assert [p["count"] for p in record["task_options"]["tasks"]] == [COUNT] * 2
    onnx, torch_scores = scores["onnxruntime"], scores["pytorch"]
    assert list(onnx) == list(torch_scores) == LIST.split("+")
    for task in onnx:
        assert onnx[task]["accuracy"] == pytest.approx(torch_scores[task]["accuracy"], abs=1e-6)
        assert onnx[task]["per_language"] == torch_scores[task]["per_language"]
