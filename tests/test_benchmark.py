"""The benchmark's sections (sut, ray, peak and its GPU check), measured with faked runs or on CPU, and
the timing and sizing helpers they share (bench/measure.py)."""

import argparse
import json
import shlex
import subprocess
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from bench import benchmark, measure, peak_bench, ray_bench
from bench.benchmark import RATIOS, configure_parser, main, render
from bench.measure import flops_per_sample
from bench.peak_bench import PEAKS, measure_peaks, render_peak, summarise
from bench.ray_bench import render_ray
from common.paths import REPO
from harness.config import RunConfig
from harness.run_record import Results
from models.cpu_caps import CpuCaps

SHAPE = (1280, 384, 1536)  # the peak section's default GEMM: one e5-small FFN matmul at 32 x 40 tokens


@pytest.fixture(autouse=True)
def no_zoo_build(monkeypatch):
    """The runs here are faked and serve nothing: the zoo build that precedes each real child run
    (bench.measure.built; its own tests are in tests/test_conventions.py) is left out."""
    monkeypatch.setattr(measure, "built", lambda cfg: cfg)


def row(encoder: str, **ratios) -> dict:
    base = {
        "encoder": encoder,
        "model_kind": "tiny" if encoder == "tiny" else "random",
        "plain_loop_sps": 101.0,
        "in_run_predict_sps": 98.5,
        "offline_samples": 1111,
        "offline_sps": 97.0,
        "offline_valid": True,
        "reference_sps": 40.0,
        "bare_single_p90_ms": 4.0,
        "in_run_predict_p90_ms": 4.1,
        "singlestream_p90_ms": 4.2,
        "singlestream_samples": 2000,
        "server_runs": [{"fraction": 0.9, "target_qps": 87.3, "valid": True, "p99_ms": 55.0}],
        "offline_efficiency": 0.96,
        "offline_vs_model_calls": 0.985,
        "vs_reference": 2.43,
        "server_vs_offline": 0.9,
        "singlestream_ratio": 1.02,
        "singlestream_vs_loop": 1.05,
        "errors": [],
    }
    return {**base, **ratios}


def table_rows(text: str, width: int) -> list[list[str]]:
    """The cells of every markdown table line of `width` columns."""
    rows = ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines())
    return [cells for cells in rows if len(cells) == width]


def verdicts(text: str) -> dict[tuple[str, str], str]:
    return {(c[0].split()[0], c[1]): c[4] for c in table_rows(text, 6) if c[1] in RATIOS}


def test_verdicts_follow_the_targets_per_encoder():
    text = render([row("tiny"), row("base", offline_efficiency=0.93, singlestream_vs_loop=1.2)], "cmd")
    v = verdicts(text)
    assert v[("tiny", "offline_efficiency")] == "met"  # 0.96 >= 0.95
    assert v[("base", "offline_efficiency")] == "MISSED"  # 0.93 < 0.95
    assert v[("tiny", "vs_reference")] == "met"  # 2.43 >= 2 for tiny
    assert v[("base", "vs_reference")] == "MISSED"  # 2.43 < 3 for the base shape
    assert (
        v[("tiny", "singlestream_vs_loop")] == "met" and v[("base", "singlestream_vs_loop")] == "MISSED"
    )
    assert v[("base", "singlestream_ratio")] == "met"  # 1.02 <= 1.10
    assert "LoadGen 97.0 / plain loop 101.0 samples/s (the query's 1111 samples)" in text
    assert "LoadGen 97.0 / model calls alone 98.5 samples/s" in text
    assert v[("tiny", "offline_vs_model_calls")] == "met"
    assert "p90 4.2 ms / model calls in the run 4.1 ms (2000 queries)" in text
    assert "p90 4.2 ms / back-to-back loop 4.0 ms" in text
    assert "87.3 QPS VALID p99 55.0 ms" in text
    assert "base (random)" in text and "Command: `cmd`" in text


def test_missing_ratio_and_errors_are_reported_not_hidden():
    text = render([row("tiny", server_vs_offline=None, errors=["exit 2, see x.log"])], "cmd")
    assert verdicts(text)[("tiny", "server_vs_offline")] == "n/a"
    assert "exit 2, see x.log" in text


def test_report_links_the_hand_written_notes_only_when_they_exist(tmp_path):
    notes = tmp_path / "benchmark_notes.md"
    assert "How to read" not in render([row("tiny")], "cmd", notes)
    notes.write_text("# notes\n")
    assert render([row("tiny")], "cmd", notes).endswith(
        "How to read these figures: [benchmark_notes.md](benchmark_notes.md).\n"
    )


def ray_row(**changes) -> dict:
    base = {
        "model": "full",
        "task": "xnli",
        "backend": "pytorch",
        "model_kind": "tiny",
        "duration_s": 10.0,
        "offline_samples": 6000,
        "offline_thread_samples": 6000,
        "offline_thread_sps": 500.0,
        "offline_thread_2x1_sps": 480.0,
        "offline_ray_sps": 470.0,
        "offline_ray_actors": [
            {"name": "ray-worker-0", "samples": 3000, "batches": 100, "node_id": "abcdef0123"},
            {"name": "ray-worker-1", "samples": 3000, "batches": 101, "node_id": "abcdef0123"},
        ],
        "noop_thread_sps": 90000.0,
        "noop_ray_sps": {"1": 21000.0, "2": 30500.0},
        "noop_best_actors": 2,
        "round_trips": {
            "batch": [32, 128],
            "bare_init_s": 2.2,
            "bare_round_trip": {"median_ms": 1.0, "p99_ms": 3.0},
            "proxy_round_trip": {"median_ms": 1.1, "p99_ms": 3.5},
            "bare_pipelined_calls_per_s": 2500.0,
            "bare_pipelined_samples_per_s": 80000.0,
        },
        "server_runs": [
            {"fraction": 0.9, "target_qps": 423.0, "valid": False, "p99_ms": 900.0},
            {"fraction": 0.8, "target_qps": 376.0, "valid": True, "p99_ms": 80.0},
        ],
        "server_thread_control": {"target_qps": 376.0, "valid": True, "p99_ms": 60.0},
        "offline_ray_vs_thread": 0.94,
        "dispatch_ceiling": 30500.0,
        "server_vs_offline_ray": 0.8,
        "load_average": {"before": [1.0, 1.0, 1.0], "after": [2.0, 2.0, 2.0]},
        "errors": [],
    }
    return {**base, **changes}


def test_ray_section_reports_each_target_and_a_missed_one_as_missed():

    text = render_ray(ray_row(), "python -m bench benchmark --sections ray")
    rows = {c[0]: c for c in table_rows(text, 6)}
    assert rows["offline_ray_vs_thread"][2:5] == ["0.94", ">= 0.9", "met"]
    assert rows["dispatch_ceiling"][2:5] == ["30,500", ">= 40,000", "MISSED"]
    assert rows["server_vs_offline_ray"][2:5] == ["0.8", ">= 0.7", "met"]
    assert rows["offline_ray_vs_thread"][1] == "tiny: full/xnli pytorch"
    assert "1 actor 21,000; 2 actors 30,500; the thread executor (no Ray) 90,000" in text
    assert "control, threads 2 workers x 1 thread: 480.0 samples/s" in text
    assert (
        "423.0 QPS INVALID p99 900.0 ms; 376.0 QPS VALID p99 80.0 ms / Ray Offline 470.0 samples/s; "
        "control, threads 2 workers x 1 thread at 376.0 QPS: VALID p99 60.0 ms"
    ) in text
    assert "through the harness's proxy 1.1 / 3.5 ms; bare Ray 1.0 / 3.0 ms" in text
    assert "ray-worker-1 3000 samples in 101 batches (node abcdef01)" in text
    assert "Command: `python -m bench benchmark --sections ray`" in text
    missing = render_ray(ray_row(server_vs_offline_ray=None, errors=["x: exit 2, see y.log"]), "c")
    assert "| server_vs_offline_ray | tiny: full/xnli pytorch | - | >= 0.7 | n/a |" in missing
    assert "Errors: x: exit 2, see y.log" in missing


# --- the peak section: FLOP arithmetic against hand-computed values ---------------------------------
E5_SMALL = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 12}


def test_gemm_and_per_sample_flops_by_hand(monkeypatch):
    # the peak is 2 M K N FLOPs over the best time: 2 x 1280 x 384 x 1536 = 1,509,949,440 in 1 ms
    monkeypatch.setattr(measure, "best_seconds", lambda call, repeats, warm=2: 1e-3)
    args = argparse.Namespace(peak_shape="1280,384,1536", threads=0, device="cpu", peak_repeats=1)
    assert measure_peaks(args, ["torch-fp32"]) == {"torch-fp32": 1_509_949_440_000.0}
    # one 40-token sample, per layer: 2 x 40 x (4 x 384^2 + 2 x 384 x 1536) = 141,557,760
    # + attention 4 x 40^2 x 384 = 2,457,600 -> 144,015,360; x 12 layers (the "about 1.7 GFLOP")
    assert flops_per_sample(E5_SMALL, np.array([40])) == 1_728_184_320
    # 10 and 30 tokens: 426,516,480 and 1,290,608,640, mean 858,562,560 (not the 20-token figure,
    # 856,719,360: attention grows with the square of each sample's own length)
    assert flops_per_sample(E5_SMALL, np.array([10, 30])) == 858_562_560


def peak_rows():
    return [
        {
            "form": "pytorch",
            "peak": "torch-fp32",
            "refused": None,
            "offline_sps": 100.0,
            "offline_valid": True,
        },
        {"form": "pytorch-bf16", "peak": "torch-bf16", "refused": "dtype bf16 on CPU needs AMX"},
        {
            "form": "onnxruntime-int8",
            "peak": "onnxruntime-int8",
            "refused": None,
            "offline_sps": 181.0,
            "offline_valid": False,
        },
    ]


def test_fraction_of_peak_and_ratio_to_pytorch_fp32_by_hand():

    peaks = {"torch-fp32": 264e9, "torch-bf16": 1.3e9, "onnxruntime-int8": 500e9}
    caps = CpuCaps("AMD EPYC", amx_bf16=False, avx512_bf16=False)
    rec = summarise(peak_rows(), peaks, np.array([40, 40]), E5_SMALL, "random", caps, [])
    rec["gemm_shape"] = list(SHAPE)
    rec["peaks_before_after_gflops"] = {"torch-fp32": [264.0, 250.5]}
    rec["load_average"] = {"before": [1.0, 2.25, 3.0], "after": [8.04, 5.0, 4.0]}
    rows = {r["form"]: r for r in rec["rows"]}
    # 100 samples/s x 1.72818432 GFLOP = 172.82 GFLOP/s; / 264 = 0.6546
    assert rows["pytorch"]["useful_gflops"] == 172.82 and rows["pytorch"]["fraction_of_peak"] == 0.655
    assert rows["pytorch"]["vs_baseline"] == 1.0
    # 181 x 1.72818432 = 312.80 GFLOP/s; / 500 = 0.6256; 181 / 100 = 1.81
    assert rows["onnxruntime-int8"]["useful_gflops"] == 312.8
    assert rows["onnxruntime-int8"]["fraction_of_peak"] == 0.626
    assert rows["onnxruntime-int8"]["vs_baseline"] == 1.81
    assert (
        rows["pytorch-bf16"]["fraction_of_peak"] is None and rows["pytorch-bf16"]["peak_gflops"] == 1.3
    )
    args = argparse.Namespace(
        model="full", task="xnli", peak_encoder="e5-small", threads=2, duration=10.0, device="cpu"
    )
    text = render_peak(rec, args, "python -m bench benchmark --sections peak")
    assert "| pytorch | 100.0 | 1.0 | 172.82 | torch-fp32 | 264.0 | 0.655 |" in text
    assert (
        "| onnxruntime-int8 | 181.0 (INVALID) | 1.81 | 312.8 | onnxruntime-int8 | 500.0 | 0.626 |"
        in text
    )
    assert (
        "| pytorch-bf16 | refused: dtype bf16 on CPU needs AMX | - | - | torch-bf16 | 1.3 | - |" in text
    )
    assert "FLOPs per sample: 1.728 GFLOP (mean 40.0 tokens" in text
    assert "torch-fp32 264.0 GFLOP/s (264.0 / 250.5); torch-bf16 1.3 GFLOP/s;" in text
    assert "Load average (1, 5, 15 min) before: 1.0, 2.2, 3.0; after: 8.0, 5.0, 4.0 (on " in text
    assert "native bf16: none: bf16 converted in software; int8 dot products: AVX2 only" in text


def test_peak_gemms_run_on_both_libraries():
    """Each peak's callable multiplies the real operands (checked against numpy), not only runs."""

    m, k, n = SHAPE
    out = {
        n: PEAKS[n](1, SHAPE, "cpu")() for n in ("torch-fp32", "onnxruntime-fp32", "onnxruntime-int8")
    }
    assert tuple(out["torch-fp32"].shape) == (m, n)
    fp32 = out["onnxruntime-fp32"][0]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    assert np.allclose(fp32, a @ b, rtol=1e-3, atol=1e-2)
    int8 = out["onnxruntime-int8"][0]
    rng = np.random.default_rng(0)
    qa = rng.integers(0, 256, (m, k), dtype=np.uint8).astype(np.int64) - 128
    qb = rng.integers(-64, 64, (k, n), dtype=np.int8).astype(np.int64)
    assert int8.dtype == np.int32 and np.array_equal(int8, qa @ qb)


def test_unknown_peak_form_is_one_error_line_and_exit_3(tmp_path, capsys):

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--sections", "peak", "--peak_forms", "pytorch,pytorch-int4", "--runs_dir", str(tmp_path)]
    )
    assert main(args) == 3
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --peak_forms: pytorch-int4 not in pytorch, pytorch-bf16, pytorch-fp16, onnxruntime, "
        "onnxruntime-int8, onnxruntime-fp16"
    ]
    assert not (tmp_path / "peak").exists() and not (tmp_path / "benchmark_peak.json").exists()


def test_server_search_stops_at_the_first_valid_load_and_keeps_every_run(tmp_path, monkeypatch):
    """The benchmark's and the Ray section's Server search: loads tried in the given order, each a
    child run with its own user.conf line, until one is VALID; a failed run counts as INVALID."""

    seen = []

    def fake_launch(cfg, lines, name, runs_dir, **changes):
        seen.append((lines, name, changes))
        qps = float(lines[0].rsplit("=", 1)[1])
        res = Results(result_valid=qps <= 60, latency_ns={"p99": 1e6 * qps})
        rc = 2 if qps > 85 else 0  # the first run fails outright: its results are not read
        return SimpleNamespace(rc=rc, log=runs_dir / name / "benchmark.log", results=res)  # a Launched

    monkeypatch.setattr(measure, "launch_with_conf", fake_launch)
    cfg = RunConfig.layered(model="full", task="xnli", encoder="tiny")
    runs = {}
    tried = measure.server_search(cfg, 100.0, [0.9, 0.75, 0.6, 0.5], "server", tmp_path, runs, workers=2)
    assert [(t["target_qps"], t["valid"], t["p99_ms"]) for t in tried] == [
        (90.0, False, 0.0),
        (75.0, False, 75.0),
        (60.0, True, 60.0),
    ]
    assert seen[0] == (
        [f"{cfg.loadgen_model_name}.Server.target_qps = 90.00"],
        "server_0.9",
        {"scenario": "Server", "workers": 2},
    )
    assert list(runs) == ["server_0.9", "server_0.75", "server_0.6"]
    assert measure.best_valid(tried) == 60.0
    assert measure.errors(runs) == [
        f"server_0.9: exit 2, see {tmp_path / 'server_0.9' / 'benchmark.log'}"
    ]
    assert measure.server_text(tried[1:]) == "75.0 QPS INVALID p99 75.0 ms; 60.0 QPS VALID p99 60.0 ms"


def test_measure_encoder_sizes_each_run_and_divides_the_runs_own_figures(tmp_path, monkeypatch):
    """One encoder of the sut section with the in-process estimates and the child runs faked: each
    run's user.conf line comes from its estimate, and every ratio from the runs' own figures."""
    work = SimpleNamespace(
        served=SimpleNamespace(model_kind="tiny"),
        task=SimpleNamespace(feature_settings=lambda: {"max_length": 128}),
        qsl=SimpleNamespace(total_sample_count=10, lengths=np.array([5, 9])),
        backends=[None],
    )
    monkeypatch.setattr(measure, "prepared", contextmanager(lambda cfg: (yield work)))
    estimates = iter([200.0, 50.0])  # the plain loop, then the reference (padded, batch 1) loop
    monkeypatch.setattr(measure, "loop_sps", lambda *a, **k: next(estimates))
    monkeypatch.setattr(benchmark, "bare_single_p90_ms", lambda *a: 4.0)
    figures = {
        "offline": Results(
            result_valid=True,
            samples_per_second=190.0,
            retimed={
                "plain_loop_samples_per_second": 200.0,
                "in_run_predict_samples_per_second": 195.0,
                "samples": 2200,
            },
        ),
        "reference": Results(result_valid=True, samples_per_second=47.5),
        "singlestream": Results(
            result_valid=True,
            latency_ns={"p90": 4.4e6},
            retimed={"bare_p90_ms": 4.0, "in_run_predict_p90_ms": 4.2, "samples": 500},
        ),
        "server_0.9": Results(result_valid=False, latency_ns={"p99": 200e6}),
        "server_0.75": Results(result_valid=True, latency_ns={"p99": 80e6}),
    }
    launched = {}

    def fake_launch(cfg, lines, name, runs_dir, **changes):
        launched[name] = (lines[0].split(".", 1)[1], changes)
        return SimpleNamespace(rc=0, log=runs_dir / name / "benchmark.log", results=figures[name])

    monkeypatch.setattr(measure, "launch_with_conf", fake_launch)
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--runs_dir", str(tmp_path), "--duration", "10"])
    r = benchmark.measure_encoder("tiny", args)
    assert launched == {
        "offline": ("Offline.target_qps = 300.00", {"scenario": "Offline", "retime": True}),
        "reference": (
            "Offline.target_qps = 75.00",
            {"scenario": "Offline", "max_batch": 1, "token_budget": 0, "pad_to": 128},
        ),
        "singlestream": (
            "SingleStream.target_latency = 4.000",
            {"scenario": "SingleStream", "retime": True},
        ),
        "server_0.9": ("Server.target_qps = 171.00", {"scenario": "Server"}),
        "server_0.75": ("Server.target_qps = 142.50", {"scenario": "Server"}),
    }
    assert r["offline_efficiency"] == 0.95  # 190 / 200
    assert r["offline_vs_model_calls"] == 0.974  # 190 / 195
    assert r["vs_reference"] == 4.0  # 190 / 47.5
    assert r["server_vs_offline"] == 0.75  # 142.5 / 190
    assert r["singlestream_ratio"] == 1.048  # 4.4 / 4.2
    assert r["singlestream_vs_loop"] == 1.1  # 4.4 / 4.0
    assert r["model_kind"] == "tiny" and r["errors"] == []


def test_measure_ray_runs_each_layout_and_divides_the_runs_own_figures(tmp_path, monkeypatch):
    """The Ray section with the in-process figures and the child runs faked: the Offline query is
    the same for thread and Ray, the no-op runs are capped, the Server search stops at the first
    VALID load, and the thread control runs at that load."""
    work = SimpleNamespace(served=SimpleNamespace(model_kind="tiny"))
    monkeypatch.setattr(measure, "prepared", contextmanager(lambda cfg: (yield work)))
    estimates = iter([100.0, 50_000.0])  # the tiny model's loop, then the no-op backend's
    monkeypatch.setattr(measure, "loop_sps", lambda *a, **k: next(estimates))
    monkeypatch.setattr(ray_bench, "create_backend", lambda *a, **k: None)
    rtt = {"bare_pipelined_samples_per_s": 300_000.0}
    monkeypatch.setattr(ray_bench, "round_trips", lambda served: rtt)
    sps = {
        "offline_thread": 500.0,
        "offline_ray": 470.0,
        "offline_thread_2x1": 480.0,
        "noop_thread": 90_000.0,
        "noop_ray_1": 21_000.0,
        "noop_ray_2": 30_500.0,
    }
    launched = {}

    def fake_launch(cfg, lines, name, runs_dir, **changes):
        launched[name] = (float(lines[0].rsplit("=", 1)[1]), changes)
        valid = name in sps or name.endswith(("_0.8", "control_1"))
        res = Results(result_valid=valid, samples_per_second=sps.get(name), latency_ns={"p99": 9e7})
        return SimpleNamespace(rc=0, log=runs_dir / name / "benchmark.log", results=res)

    monkeypatch.setattr(measure, "launch_with_conf", fake_launch)
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--runs_dir", str(tmp_path), "--duration", "10"])
    r = ray_bench.measure_ray(args, lambda *a, **k: benchmark.config(args, *a, **k))
    # 4096 samples / (1.1 x 10 s) = 372.36 QPS is above 1.5 x 100: the query's floor sizes both
    assert launched["offline_thread"] == (372.36, {"scenario": "Offline", "workers": 1, "threads": 2})
    assert launched["offline_ray"][0] == 372.36 and launched["offline_ray"][1]["executor"] == "ray"
    # no-op runs: at most 1,000,000 samples / (1.1 x 5 s) = 181,818.18 QPS
    assert launched["noop_thread"][0] == 50_000.0 and launched["noop_ray_2"][0] == 181_818.18
    assert launched["noop_ray_2"][1]["workers"] == 2 and launched["noop_ray_2"][1]["max_batch"] == 32
    assert [n for n in launched if "server" in n] == [
        "server_ray_0.9",
        "server_ray_0.8",
        "server_thread_control_1",
    ]
    assert launched["server_thread_control_1"] == (
        376.0,
        {"scenario": "Server", "workers": 2, "threads": 1},
    )
    assert r["offline_ray_vs_thread"] == 0.94  # 470 / 500
    assert r["dispatch_ceiling"] == 30_500.0 and r["noop_best_actors"] == 2
    assert r["server_vs_offline_ray"] == 0.8  # 376 / 470
    assert r["server_thread_control"] == {"target_qps": 376.0, "valid": True, "p99_ms": 90.0}
    assert r["errors"] == []


def test_peak_section_lists_refused_forms_and_starts_none_past_the_budget(tmp_path, monkeypatch):
    """A form this machine cannot serve is listed with the RunConfig's reason; once --budget seconds
    are spent no further form starts (listed as not run); every other form gets one Offline run."""
    work = SimpleNamespace(
        served=SimpleNamespace(model_kind="random", encoder_config=E5_SMALL),
        qsl=SimpleNamespace(lengths=np.array([40, 40])),
    )
    monkeypatch.setattr(measure, "prepared", contextmanager(lambda cfg: (yield work)))
    monkeypatch.setattr(measure, "loop_sps", lambda *a, **k: 10.0)
    monkeypatch.setattr(peak_bench, "measure_peaks", lambda args, names: dict.fromkeys(names, 264e9))
    clock = iter([0.0, 1.0, 2.0, 3.0, 100.0])  # the start, then one reading per form
    monkeypatch.setattr(peak_bench.time, "perf_counter", lambda: next(clock))
    launched = []

    def fake_launch(cfg, lines, name, runs_dir, **changes):
        launched.append((name, lines[0].split(".", 1)[1]))
        res = Results(result_valid=True, samples_per_second=100.0)
        return SimpleNamespace(rc=0, log=runs_dir / name / "benchmark.log", results=res)

    def config(encoder, weights, **changes):
        if changes["dtype"] == "bf16":
            raise ValueError("dtype bf16 on CPU needs AMX")
        return RunConfig.layered(model="full", task="xnli", encoder=encoder, **changes)

    monkeypatch.setattr(measure, "launch_with_conf", fake_launch)
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    forms = "pytorch-bf16,onnxruntime,onnxruntime-int8"
    args = parser.parse_args(["--runs_dir", str(tmp_path), "--peak_forms", forms, "--budget", "50"])
    rec = peak_bench.measure_peak_section(args, config)
    rows = {r["form"]: r for r in rec["rows"]}
    assert list(rows) == ["pytorch", "pytorch-bf16", "onnxruntime", "onnxruntime-int8"]
    assert launched == [
        ("pytorch", "Offline.target_qps = 15.00"),
        ("onnxruntime", "Offline.target_qps = 15.00"),
    ]
    assert rows["pytorch-bf16"]["refused"] == "dtype bf16 on CPU needs AMX"
    assert rows["onnxruntime-int8"]["refused"] == "not run: --budget 50 s spent"
    # 100 samples/s x 1.72818432 GFLOP = 172.82 GFLOP/s; / 264 = 0.655
    assert rows["onnxruntime"]["fraction_of_peak"] == 0.655 and rows["onnxruntime"]["vs_baseline"] == 1.0


def test_make_gpu_check_dry_runs_the_peak_section_on_cpu(tiny_tokenizer, tmp_path):
    """`make gpu_check DRY=1`'s very command, end to end on CPU: tiny random weights (the zoo's
    tokenizer), 1-second Offline runs on 64 English samples, PyTorch and ONNX Runtime; the record's
    figures are the runs' own, divided as the report says."""
    tiny_tokenizer.save_pretrained(
        tmp_path / "zoo" / "encoder"
    )  # random weights use the zoo's tokenizer
    stamp = tmp_path / "installed"
    stamp.touch()
    make = ["make", "-n", "-s", "gpu_check", "DRY=1", f"PY={sys.executable}", f"STAMP={stamp}"]
    printed = subprocess.run(make, cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    (argv,) = [shlex.split(x) for x in printed.stdout.replace("\\\n", " ").splitlines() if x.strip()]
    assert argv[:4] == [sys.executable, "-m", "bench", "benchmark"] and "--device" in argv
    out = tmp_path / "runs"
    argv += [
        "--models_dir",
        str(tmp_path / "zoo"),
        "--runs_dir",
        str(out),
        "--peak_out",
        str(out / "gpu.md"),
    ]
    # a guard against a hung run, not a limit
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads((out / "benchmark_peak.json").read_text())
    rows = {r["form"]: r for r in rec["rows"]}
    assert list(rows) == ["pytorch", "onnxruntime"] and rec["errors"] == []
    assert rec["gemm_shape"] == [512, 512, 512] and rec["model_kind"] == "random"
    for r in rows.values():
        assert r["offline_sps"] > 0 and r["peak_gflops"] > 0
        assert r["useful_gflops"] == round(r["offline_sps"] * rec["flops_per_sample"] / 1e9, 2)
    assert rows["onnxruntime"]["vs_baseline"] == round(
        rows["onnxruntime"]["offline_sps"] / rows["pytorch"]["offline_sps"], 3
    )
    assert "encoder tiny (random weights)" in (out / "gpu.md").read_text()


# --- interleaved timing (bench/measure.py), shared with research's multitask command ----------------
def test_interleaving_pairs_sides_batch_by_batch(monkeypatch):
    """A machine that slows down round after round (x1, x2, x3) moves both sides' medians, but the
    paired per-round ratio stays exact: B costs 2 units per batch, A costs 1, so B/A = 0.5."""
    clock = {"t": 0.0}
    calls: list[str] = []
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["t"])
    scales = iter([1.0] * 2 + [1.0] * 6 + [2.0] * 6 + [3.0] * 6)  # 2 warm-ups, then 3 rounds of 6 calls

    def side(name: str, cost: float):
        def predict(ids, mask):
            calls.append(name)
            clock["t"] += cost * next(scales)

        return predict

    batches = [(np.zeros((4, 8)), np.ones((4, 8)))] * 3
    res = measure.interleaved(
        {"A": (side("A", 1.0), batches), "B": (side("B", 2.0), batches)}, 3, settle_s=0
    )
    assert calls[:2] == ["A", "B"]  # warm-ups
    assert calls[2:8] == ["A", "B", "B", "A", "A", "B"]  # round 0: the order rotates per batch
    assert calls[8:10] == ["B", "A"]  # round 1 starts with the other side
    assert res["A"]["rounds"] == [12 / 3, 12 / 6, 12 / 9]  # 12 samples per pass, slowing down
    assert res["A"]["samples_per_s"] == 2.0 and res["A"]["spread"] == 2.0
    assert measure.round_ratios(res, "B", "A") == [0.5, 0.5, 0.5]
