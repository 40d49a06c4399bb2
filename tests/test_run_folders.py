"""Run folders: every axis that makes another measurement is in the path or refused; the weights'
digest; an earlier round's seeds (`--seeds`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.paths import REPO
from harness.config import RunConfig
from harness.run_folder import RunFolder, checkpoint_sha256
from harness.seeds import SEEDS
from tests.test_faults import ENV


def test_every_measurement_axis_is_in_the_path(tmp_path):
    base = RunFolder.plan(RunConfig(output_dir=tmp_path)).path
    assert base == tmp_path / "tiny" / "pytorch" / "full" / "xnli" / "Offline" / "performance"
    variants = {
        "encoder": {"encoder": "e5-small"},
        "backend": {"backend": "onnxruntime"},
        "dtype": {"backend": "onnxruntime", "dtype": "int8"},
        "device": {"device": "cuda:1"},
        "executor": {"executor": "ray"},
    }
    paths = {
        k: RunFolder.plan(RunConfig.layered(output_dir=tmp_path, **v)).path for k, v in variants.items()
    }
    assert {k: p.relative_to(tmp_path).parts[:2] for k, p in paths.items()} == {
        "encoder": ("e5-small", "pytorch"),
        "backend": ("tiny", "onnxruntime"),
        "dtype": ("tiny", "onnxruntime-int8"),
        "device": ("tiny", "pytorch-cuda1"),
        "executor": ("tiny", "pytorch-ray"),
    }
    assert len({base, *paths.values()}) == 6


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess:
    argv = [
        sys.executable,
        "-m",
        "tests.fault_child",
        "ok",
        "--output_dir",
        str(out),
        "--count",
        "64",
        "--duration",
        "0.2",
        "--allow_invalid",
        *flags,
    ]
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def test_runs_of_two_backends_into_one_log_dir_both_stay(tmp_path):
    for backend in ("pytorch", "onnxruntime"):
        assert _run(tmp_path, "--backend", backend).returncode == 0
    for backend in ("pytorch", "onnxruntime"):
        folder = tmp_path / "tiny" / backend / "full" / "xnli" / "Offline" / "performance"
        assert json.loads((folder / "run_config.json").read_text())["backend"] == backend


def test_a_run_of_other_languages_into_an_earlier_runs_folder_is_refused(tmp_path):
    """Languages are not in the path: a run that would replace a run of other languages is refused
    (exit 3, one line naming the field), and the earlier run's files stay as they were."""
    assert _run(tmp_path, "--languages", "en,de").returncode == 0
    folder = tmp_path / "tiny" / "pytorch" / "full" / "xnli" / "Offline" / "performance"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}
    proc = _run(tmp_path, "--languages", "en")
    assert proc.returncode == 3, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: run folder {folder} holds another measurement (languages was 'en,de', this run's "
        "is 'en'); a run would replace it: choose another --output_dir (LOG_DIR), or delete that "
        "folder first"
    ]
    assert {
        p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"
    } == before
    assert _run(tmp_path, "--languages", "en,de").returncode == 0  # the same measurement: replaced


def test_a_record_older_than_an_identity_field_reads_as_its_default(tmp_path):
    """A run folder written before a field joined IDENTITY (lora_form) holds the default measurement:
    a rerun with the default takes it over, one with another value is refused naming the field."""
    cfg = RunConfig(task="xnli+pawsx", model="lora-squad", output_dir=tmp_path)
    folder = RunFolder.plan(cfg)
    folder.path.mkdir(parents=True)
    old = {"config": {"languages": None, "seeds": None}}  # no "lora_form": an older record
    (folder.path / "run_config.json").write_text(json.dumps(old))
    assert folder.earlier_run_differs() is None
    unmerged = RunFolder.plan(
        RunConfig(task="xnli+pawsx", model="lora-squad", output_dir=tmp_path, lora_form="unmerged")
    )
    assert unmerged.path == folder.path
    assert unmerged.earlier_run_differs() == "lora_form was 'merged', this run's is 'unmerged'"


def test_seeds_of_round_v41_reach_loadgen(tmp_path):
    assert _run(tmp_path, "--seeds", "v4.1", "--scenario", "SingleStream").returncode == 0
    detail = tmp_path / "tiny" / "pytorch" / "full" / "xnli" / "SingleStream" / "performance"
    values = {}
    for line in (detail / "mlperf_log_detail.txt").read_text().splitlines():
        rec = json.loads(line.split(" ", 1)[1])
        values[rec["key"]] = rec["value"]
    seeds = tuple(values[f"effective_{k}_rng_seed"] for k in ("qsl", "sample_index", "schedule"))
    assert seeds == (3066443479025735752, 10688027786191513374, 14962580496156340209) == SEEDS["v4.1"]
    config = json.loads((detail / "run_config.json").read_text())
    assert config["config"]["seeds"] == "v4.1" and config["checkpoint_sha256"] is None  # no weights


def test_an_unknown_seeds_round_is_refused():
    with pytest.raises(ValueError, match=r"unknown seeds round 'v4\.2'.*Known: v4\.1"):
        RunConfig(seeds="v4.2")


def _manifest(folder: Path, files: dict[str, str], **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zoo.json").write_text(json.dumps({**fields, "files": files}))


def test_checkpoint_digest_covers_the_files_and_the_base_encoder(tmp_path):
    enc, stage = tmp_path / "encoder", tmp_path / "adapter" / "xnli"
    _manifest(enc, {"model.safetensors": "a" * 64})
    _manifest(stage, {"adapters/xnli/w.bin": "b" * 64}, base="../../encoder")
    first = checkpoint_sha256(stage)
    assert first is not None and len(first) == 64
    _manifest(enc, {"model.safetensors": "e" * 64})  # another base encoder: another model
    assert checkpoint_sha256(stage) not in (None, first)
    _manifest(enc, {"model.safetensors": "a" * 64})
    assert checkpoint_sha256(stage) == first
    # a folder without a manifest (--weights): over its files' contents
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    digest = checkpoint_sha256(plain)
    (plain / "config.json").write_text('{"x": 1}')
    assert checkpoint_sha256(plain) != digest and checkpoint_sha256(None) is None
