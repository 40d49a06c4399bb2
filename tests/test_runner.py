"""`python -m harness run` end to end (subprocesses: one LoadGen test per process), tiny models."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.loadgen_log import LoadgenLog
from common.paths import REPO
from harness.results import Results
from harness.run_record import RunRecord
from harness.submission.system import build_system_json

TEST01 = (
    "*.*.mode = 2\n"
    "*.*.accuracy_log_rng_seed = 720381539243781796\n"
    "*.*.accuracy_log_sampling_target = 4096\n"
)
COUNT = 96


def harness_run(out: Path, *flags: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--model", "full", "--task", "xnli",
           "--languages", "en", "--count", str(COUNT), "--output_dir", str(out), *flags]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def backend_available(name: str) -> bool:
    module = {"pytorch": "models.pytorch_backend", "onnxruntime": "models.onnx_backend"}[name]
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["performance", "accuracy"])
@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
@pytest.mark.parametrize("scenario", ["SingleStream", "Offline", "Server"])
def test_run_end_to_end(tmp_path, tiny_checkpoint, scenario, backend, mode):
    if not backend_available(backend):
        pytest.skip(f"backend {backend} not implemented yet (models engineer)")
    flags = ["--scenario", scenario, "--backend", backend, "--weights", str(tiny_checkpoint),
             "--duration", "1", "--allow_invalid"]  # fmt: skip
    flags += ["--accuracy"] if mode == "accuracy" else ["--probe"]
    proc = harness_run(tmp_path, *flags)
    run_dir = tmp_path / "tiny" / backend / "full" / "xnli" / scenario / mode
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json",
                 "user.conf", "run_config.json", "stdout.txt", "results.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "audit.config").exists()
    cfg = json.loads((run_dir / "run_config.json").read_text())
    assert cfg["mode"] == mode and cfg["model_kind"] == "tiny" and cfg["submission_grade"] is False
    assert cfg["loadgen_model_name"] == "full" and cfg["duration_s"] == 1.0 and cfg["count"] == COUNT
    # provenance carries the keys the submission's system description is filled from
    record = RunRecord.load(run_dir)  # the one reader agrees with the runner that wrote it
    assert (record.model, record.task, record.scenario, record.mode) == ("full", "xnli", scenario, mode)
    assert record.backend == backend and record.duration_s == 1.0 and record.results is not None
    system = build_system_json("Org", "box", record)
    assert system["host_processor_core_count"] == str(os.cpu_count()) == str(cfg["device"]["cpu_cores"])
    assert system["host_memory_capacity"] == f"{cfg['device']['memory_gib']} GiB"
    assert cfg["versions"]["mlperf_loadgen"] == "6.0.17" and len(cfg["git_sha"]) == 40
    res = json.loads((run_dir / "results.json").read_text())
    assert res["scenario"] == scenario and res["mode"] == mode and res["loadgen_errors"] == 0
    assert 100 < res["peak_rss_mib"] < 8192  # the process's own peak resident memory, in MiB
    if backend == "pytorch":  # the served module's parameters: the tiny model's 4 x 128 layers
        params = cfg["backend_options"]["parameters"]
        assert 1e6 < params < 1e7 and cfg["backend_options"]["parameter_bytes"] == 4 * params
    else:
        assert cfg["backend_options"]["model_bytes"] > 4e6
    stdout = (run_dir / "stdout.txt").read_text()
    assert f"run folder: {run_dir}" in stdout
    if mode == "performance":
        assert "MLPerf Results Summary" in stdout and res["latency_ns"]["p50"] > 0
        retimed = res["retimed"]  # the issued samples, re-timed without LoadGen
        if scenario == "Offline":
            assert retimed["samples"] == int(res["summary"]["samples_per_query"])
            assert retimed["plain_loop_samples_per_second"] > 0
        elif scenario == "SingleStream":
            queries = LoadgenLog.read(run_dir / "mlperf_log_detail.txt").get("result_query_count")
            assert retimed["samples"] == queries > 0 and retimed["bare_p90_ms"] > 0
        else:
            assert retimed == {}
    assert record.results == Results.from_json(res)  # what the runner wrote, read back whole
    if mode == "accuracy":
        entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
        assert sorted(e["qsl_idx"] for e in entries) == list(range(COUNT))
        check_against_direct_model(tiny_checkpoint, entries)


def check_against_direct_model(checkpoint: Path, entries: list[dict]) -> None:
    """Accuracy-log outputs equal the model run on each sample alone (batch of one, no padding)."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaForSequenceClassification

    from tasks.registry import get_task

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    fs = get_task("xnli", languages="en").features(tok, progress=False)
    model = XLMRobertaForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    for e in entries[:24]:
        ids = torch.tensor(fs.ids(e["qsl_idx"]).astype(np.int64))[None]
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].numpy()
        got = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        assert got.argmax() == ref.argmax()


@pytest.mark.slow
def test_test01_first_elements_match_accuracy_run(tmp_path, tiny_checkpoint):
    """TEST01: responses logged by an audit performance run equal the accuracy run's (first element)."""
    common = [
        "--scenario",
        "Offline",
        "--weights",
        str(tiny_checkpoint),
        "--duration",
        "1",
        "--allow_invalid",
    ]
    acc = harness_run(tmp_path / "acc", *common, "--accuracy")
    assert acc.returncode == 0, acc.stderr[-2000:]
    audit = tmp_path / "audit.config"
    audit.write_text(TEST01)
    perf = harness_run(tmp_path / "perf", *common, "--audit_conf", str(audit))
    assert perf.returncode == 0, perf.stderr[-2000:]
    run = tmp_path / "perf" / "tiny" / "pytorch" / "full" / "xnli" / "Offline" / "performance"
    assert (run / "audit.config").read_text() == TEST01
    first = {}
    for e in json.loads(
        (tmp_path / "acc/tiny/pytorch/full/xnli/Offline/accuracy/mlperf_log_accuracy.json").read_text()
    ):
        first[e["qsl_idx"]] = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32)[0]
    logged = json.loads((run / "mlperf_log_accuracy.json").read_text())
    assert logged
    for e in logged:
        got = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32)[0]
        assert abs(got - first[e["qsl_idx"]]) <= 1e-5 * max(1.0, abs(got))


def test_bad_config_exits_3(tmp_path):
    proc = harness_run(tmp_path, "--scenario", "Offline", "--max_batch", "0")
    assert proc.returncode == 3 and "max_batch" in proc.stderr
