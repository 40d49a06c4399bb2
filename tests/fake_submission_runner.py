"""A stand-in for `python -m harness run` for the submission and compliance tests: real LoadGen with
a trivial SUT (float32 responses [qsl index + offset, 1, 2]; with --flip one-hot at qsl index mod 3), and
the run-folder contract (LoadGen logs, user.conf, run_config.json, results.json, accuracy.txt) at
the folder harness.run_folder.RunFolder.plan gives.

Nothing in it depends on the machine's speed:
  * every query's completion waits SLOW_S first (a sleep is a lower bound), so an Offline run always
    lasts past its 300 ms min duration and is VALID, however busy the machine;
  * Server runs get a 100 s latency bound, which no queueing on a busy machine can reach;
  * an audit run given --perf_from DIR reports DIR's performance logs as its own (after its real
    LoadGen run, which logs the sampled responses TEST01 compares), so TEST01's 10% performance check
    compares equal numbers by construction instead of two timings of a busy machine.

    python tests/fake_submission_runner.py --output_dir D [--scenario S] [--accuracy] ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np

SLOW_S = 0.35  # > the 300 ms min duration below
USER_CONF = (
    "*.*.min_duration = 300\n*.*.min_query_count = 1\n*.Offline.target_qps = 2000\n"
    "*.SingleStream.min_query_count = 200\n*.Server.min_query_count = 1000\n"
    "*.Server.target_qps = 2000\n*.Server.target_latency = 100000\n"
    "*.*.performance_sample_count_override = 32\n"
)  # early stopping needs 64 SingleStream queries, more for Server's p99: these are plenty
SEEDS = {"v4.1": (3066443479025735752, 10688027786191513374, 14962580496156340209)}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for flag, default in (
        ("--scenario", "Offline"),
        ("--model", "adapter-squad"),
        ("--task", "xnli"),
        ("--encoder", "tiny"),
        ("--backend", "pytorch"),
        ("--dtype", "fp32"),
        ("--audit_conf", None),
        ("--git_sha", None),
        ("--model_kind", "tiny"),
        ("--seen_file", None),
        ("--seeds", None),
        ("--languages", None),
        ("--checkpoint_sha256", "c" * 64),
        ("--sut_failure", None),
        ("--perf_from", None),
        ("--user_conf", None),
    ):
        p.add_argument(flag, default=default)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--accuracy", action="store_true")
    p.add_argument("--fail", action="store_true")
    p.add_argument("--flip", action="store_true")
    p.add_argument("--offset", type=float, default=0.0)
    p.add_argument("--exit_status", type=int, default=0)
    args, _ = p.parse_known_args()  # the launcher's other run flags (duration, count...) are ignored
    return args


def main() -> int:
    a = parse()
    if a.seen_file:
        Path(a.seen_file).write_text(f"{Path('audit.config').is_file()} {os.getcwd()}")
    if a.fail:
        return 3
    mode = "accuracy" if a.accuracy else "performance"
    variant = a.backend if a.dtype == "fp32" else f"{a.backend}-{a.dtype}"
    out = Path(a.output_dir) / a.encoder / variant / a.model / a.task / a.scenario / mode
    out.mkdir(parents=True, exist_ok=True)
    conf = out / "user.conf"
    conf.write_text(Path(a.user_conf).read_text() if a.user_conf else USER_CONF)
    keep, first = [], threading.Event()

    def issue(queries):
        resp = []
        for q in queries:
            values = (
                [float(q.index % 3 == k) for k in range(3)] if a.flip else [q.index + a.offset, 1, 2]
            )
            arr = np.array(values, dtype=np.float32)
            keep.append(arr)
            resp.append(lg.QuerySampleResponse(q.id, arr.__array_interface__["data"][0], arr.nbytes))
        if not first.is_set():  # slow by construction: the first completion waits SLOW_S
            first.set()
            time.sleep(SLOW_S)
        lg.QuerySamplesComplete(resp)

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(400, 32, lambda s: None, lambda s: None)
    ts = lg.TestSettings()
    ts.FromConfig(str(conf), "xlmr-xnli", a.scenario)
    ts.scenario = getattr(lg.TestScenario, a.scenario)
    ts.mode = lg.TestMode.AccuracyOnly if a.accuracy else lg.TestMode.PerformanceOnly
    if a.seeds:
        ts.qsl_rng_seed, ts.sample_index_rng_seed, ts.schedule_rng_seed = SEEDS[a.seeds]
    ls = lg.LogSettings()
    ls.log_output.outdir = str(out)
    ls.log_output.copy_summary_to_stdout = False
    lg.StartTestWithLogSettings(sut, qsl, ts, ls, a.audit_conf or "audit.config")
    lg.DestroySUT(sut)
    lg.DestroyQSL(qsl)
    if a.perf_from:
        for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            shutil.copy2(Path(a.perf_from) / name, out / name)
    vals = {}
    for line in (out / "mlperf_log_detail.txt").read_text().splitlines():
        rec = json.loads(line[len(":::MLLOG") :])
        vals[rec["key"]] = rec["value"]
    validity = vals.get("result_validity")
    config = {
        "scenario": a.scenario,
        "model": a.model,
        "task": a.task,
        "backend": a.backend,
        "encoder": a.encoder,
        "dtype": a.dtype,
        "languages": a.languages,
        "seeds": a.seeds,
        "device": "cpu",
        "executor": "thread",
        "weights": None,
        "models_dir": None,
    }
    run_config = {
        "model": a.model,
        "task": a.task,
        "scenario": a.scenario,
        "mode": mode,
        "backend": a.backend,
        "backend_options": {"dtype": a.dtype},
        "encoder": a.encoder,
        "model_kind": a.model_kind,
        "model_spec": {"model": a.model},
        "checkpoint_sha256": a.checkpoint_sha256,
        "task_options": {},
        "tokenizer": "tiny",
        "loadgen_model_name": "xlmr-xnli",
        "user_conf": str(conf),
        "audit_conf": a.audit_conf,
        "duration_s": 0.3,
        "count": None,
        "submission_grade": False,
        "config": config,
        "git_sha": a.git_sha,
        "git_dirty": True,
        "versions": {"python": "3.11", "torch": "2.13.0", "mlperf_loadgen": "6.0.17", "numpy": "2"},
        "device": {
            "cpu_model": "Test CPU",
            "cpu_cores": 2,
            "memory_gib": 8.0,
            "os": "Linux",
            "gpus": [],
        },
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "run_config.json").write_text(json.dumps(run_config))
    results = {
        "result_valid": validity == "VALID" if not a.accuracy else True,
        "validity": validity,
        "scenario": a.scenario,
        "mode": mode,
        "loadgen_errors": 0,
        "submission_grade": False,
        "sut_failure": a.sut_failure,
        "exit_status": a.exit_status,
    }
    (out / "results.json").write_text(json.dumps(results))
    (out / "stdout.txt").write_text("")
    if a.accuracy:
        (out / "accuracy.txt").write_text('{"accuracy": 41.2, "count": 32}\n')
    return a.exit_status


if __name__ == "__main__":
    sys.exit(main())
