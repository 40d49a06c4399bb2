"""`python -m harness run`: one LoadGen test (performance or accuracy) in this process.

Order: resolve config -> run folder + stdout tee -> model, tokenizer, features (tokenised BEFORE the
test), backends, warm-up -> run_config.json -> TestSettings (FromConfig once) -> StartTest -> copies
of user.conf / audit.config -> results.json (+ accuracy scoring) -> summary printed, exit code.

Run folder contract: with --output_dir D: D/<MODEL>/<TASK>/<Scenario>/<mode>/; without it
build/logs/<YYYYmmdd-HHMMSS>/<MODEL>/<TASK>/<Scenario>/<mode>/ and build/logs/latest -> <stamp>.
Exit codes: 0 VALID (or --allow_invalid), 1 INVALID, 2 SUT failure (error printed), 3 bad config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.paths import BUILD
from harness.config import RunConfig, add_run_arguments
from harness.results import write_results
from models.base import Backend
from tasks.base import Task
from tasks.qsl import QuerySampleLibrary

if TYPE_CHECKING:
    from models.loaders import ServedModel


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)


def run_dir_for(cfg: RunConfig, now: float | None = None, create: bool = True) -> Path:
    """The run folder of `cfg` (the one place its path is made); with `create`, the folder is made
    and build/logs/latest refreshed when there is no --output_dir."""
    tail = Path(cfg.model, cfg.task, cfg.scenario, cfg.mode)
    if cfg.output_dir is not None:
        run_dir = Path(cfg.output_dir) / tail
    else:
        logs = BUILD / "logs"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        run_dir = logs / stamp / tail
        if not create:
            return run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        latest = logs / "latest"
        tmp = logs / f".latest-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(stamp)
        tmp.replace(latest)  # atomic swap of the symlink
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@dataclass
class Workload:
    """What the measured part runs, built before the test: the served model, one backend per SUT
    worker, and the task's pre-tokenised samples behind the QSL."""

    served: ServedModel
    backends: list[Backend]
    qsl: QuerySampleLibrary
    task: Task
    tokenizer: str  # where the tokenizer came from (run_config.json "tokenizer")


def prepare(cfg: RunConfig) -> Workload:
    """Resolve the served model, tokenise the task, build one backend per worker, warm them up."""
    from models.backends import create_backend
    from models.registry import resolve
    from tasks.registry import get_task

    def served_model():
        return resolve(
            cfg.model,
            cfg.task,
            encoder=cfg.encoder,
            weights=cfg.weights,
            models_dir=cfg.models_dir,
            pooling_layer=cfg.pooling_layer,
        )

    try:
        served = served_model()
    except FileNotFoundError:
        if cfg.encoder != "tiny" or cfg.weights not in (None, "random"):
            raise  # real checkpoints are the user's to provide
        from models.recipe import build_for_run

        build_for_run(cfg.model, cfg.task, Path(cfg.models_dir) if cfg.models_dir else None)
        served = served_model()
    if cfg.accuracy:
        served.check_for_accuracy()
    tokenizer = served.tokenizer()
    task = get_task(cfg.task, languages=cfg.languages)
    features = task.features(tokenizer)
    qsl = QuerySampleLibrary(
        features, count=cfg.count, pad_id=int(tokenizer.pad_token_id), pad_to=cfg.pad_to
    )
    backends = [create_backend(cfg.backend, served, cfg.backend_options()) for _ in range(cfg.workers)]
    source = str(getattr(tokenizer, "name_or_path", "") or served.checkpoint)
    return Workload(served, backends, qsl, task, source)


def warm_up(workload: Workload, backends: list[Backend] | None = None) -> None:
    """A few batches through each backend so one-time costs (allocations, graph opt) stay out.

    Call it on the thread that will run the backend: PyTorch's OpenMP pool belongs to the thread
    that first runs a parallel region, and a second thread's pool competes with the first one's
    idle threads (measured on 2 cores: single-sample forwards ~1.6x slower on the second thread).
    The SUT therefore warms each backend on its own worker thread (`SUT(warm_up=...)`)."""
    n = min(8, len(workload.qsl.lengths))
    sample = np.arange(n)
    qsl = QuerySampleLibrary(
        workload.qsl.features, count=workload.qsl.total_sample_count, pad_id=workload.qsl.pad_id
    )
    qsl.load_query_samples(sample.tolist())
    for backend in workload.backends if backends is None else backends:
        for idx in (sample[:1], sample):
            b = qsl.batch(idx)
            backend.predict(b.input_ids, b.attention_mask)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = RunConfig.from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return run(cfg, command=sys.argv)


def run(cfg: RunConfig, workload: Workload | None = None, command: list[str] | None = None) -> int:
    """One complete run into its folder; returns the exit code. `workload` lets tests inject backends."""
    started = time.time()
    run_dir = run_dir_for(cfg, started)
    with Tee(run_dir / "stdout.txt"):
        print(f"run folder: {run_dir}", flush=True)
        try:
            work = workload or prepare(cfg)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 3
        run_config = {
            "model": cfg.model,
            "task": cfg.task,
            "scenario": cfg.scenario,
            "mode": cfg.mode,
            "backend": cfg.backend,
            "model_kind": work.served.model_kind,
            "model_spec": work.served.describe(),
            "tokenizer": work.tokenizer,
            "backend_options": {**cfg.backend_options().to_dict(), **work.backends[0].describe()},
            "encoder": cfg.encoder,
            "loadgen_model_name": cfg.loadgen_model_name,
            "user_conf": str(cfg.user_conf),
            "audit_conf": str(cfg.audit_conf) if cfg.audit_conf else None,
            "duration_s": cfg.duration_s,
            "count": cfg.count,
            "submission_grade": cfg.submission_grade,
            "sut_options": cfg.sut_options().__dict__,
            "config": cfg.to_dict(),
            **provenance(),
            "command": list(command or sys.argv),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        }
        (run_dir / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str) + "\n")
        outcome = run_loadgen_test(cfg, work, run_dir)
        shutil.copyfile(cfg.user_conf, run_dir / "user.conf")
        if cfg.audit_conf:
            shutil.copyfile(cfg.audit_conf, run_dir / "audit.config")
        # results.json = LoadGen's summary parsed, plus what the harness itself knows of the run
        harness_fields: dict[str, Any] = {"sut_failure": outcome.failure, "sut_batches": outcome.batches}
        if outcome.failure is None and cfg.accuracy:
            harness_fields["accuracy"] = score(cfg, work, run_dir)
        if outcome.failure is None and outcome.issued:
            from harness.retime import retime_issued

            harness_fields["probe"] = retime_issued(
                cfg, work.backends[0], work.qsl, outcome.issued, outcome.predict_s
            )
        harness_fields["scenario"] = cfg.scenario
        if cfg.accuracy:  # LoadGen judges no validity in AccuracyOnly: complete log, no SUT failure
            ok = outcome.failure is None
            harness_fields.update(result_valid=ok, validity="VALID" if ok else "INVALID")
        res = write_results(run_dir, cfg.mode, cfg.submission_grade, harness_fields)
        for backend in work.backends:
            backend.close()
        return report(cfg, res, run_dir, outcome.failure)


def score(cfg: RunConfig, workload: Workload, run_dir: Path) -> Any:
    """Score the accuracy log in-process (tasks.scoring) into accuracy.txt / .json / predictions."""
    from tasks.scoring import score_log, write_outputs
    from tasks.scoring.classification import HELDOUT_FIRST_ROW

    try:
        options = {}
        if workload.served.model_kind == "tiny" and cfg.task in HELDOUT_FIRST_ROW:
            options["heldout_rows"] = True  # the tiny zoo trained on the other rows' English side
        log = run_dir / "mlperf_log_accuracy.json"
        result = score_log(cfg.task, log, languages=cfg.languages, **options)
    except ValueError as e:  # LogError / DataError: e.g. a --count run covers part of the data set
        print(f"accuracy not scored: {e}", file=sys.stderr, flush=True)
        return {"error": str(e)}
    write_outputs(result, run_dir)
    return getattr(result, "metrics", None) or str(result)


def report(cfg: RunConfig, res: dict[str, Any], run_dir: Path, failure: str | None) -> int:
    """Print the summary and the folder; the exit code."""
    print("\n".join(f"  {k}: {v}" for k, v in res["summary"].items() if not isinstance(v, dict)))
    print(
        f"result: {res['validity']} ({cfg.scenario}, {cfg.mode}, submission_grade={cfg.submission_grade})"
    )
    print(f"run folder: {run_dir}", flush=True)
    if failure:
        print(
            f"error: the SUT failed, responses after the failure are empty: {failure}", file=sys.stderr
        )
        return 2
    if cfg.accuracy:
        return 0
    if not res["result_valid"]:
        reasons = ", ".join(res["constraints_failed"]) or "see mlperf_log_summary.txt"
        print(f"INVALID: {reasons}", file=sys.stderr, flush=True)
        return 0 if cfg.allow_invalid else 1
    return 0


def _abort_after(sut, grace: float, done: threading.Event, run_dir: Path) -> None:
    """Failure monitor: if StartTest has not returned `grace` s after a SUT failure, leave anyway."""
    sut.failed.wait()
    if done.wait(grace):
        return
    (run_dir / "results.json").write_text(
        json.dumps({"result_valid": False, "validity": "INVALID", "sut_failure": sut.failure_text})
        + "\n"
    )
    print(
        f"error: SUT failed and LoadGen did not finish within {grace:g} s: {sut.failure_text}",
        flush=True,
    )
    sys.stdout.flush()
    os._exit(2)


# --- the LoadGen test ----------------------------------------------------------------------------
@dataclass
class SutOutcome:
    """What the SUT reports after the test."""

    failure: str | None  # the SUT's first failure (with traceback), None if none
    batches: int
    issued: list[Any] | None = None  # cfg.retime only: every query's qsl indices, in issue order,
    predict_s: list[float] | None = None  # and the seconds of every backend.predict call


def run_loadgen_test(cfg: RunConfig, workload: Workload, run_dir: Path) -> SutOutcome:
    """TestSettings (FromConfig once), SUT + QSL constructed, StartTest, destroyed. Never raises for
    a SUT failure: it is returned; a monitor exits the process if LoadGen then fails to finish."""
    import mlperf_loadgen as lg

    from harness.settings import make_test_settings
    from sut.registry import get_sut_class

    ts = make_test_settings(
        cfg.user_conf, cfg.loadgen_model_name, cfg.scenario, cfg.accuracy,
        workload.qsl.total_sample_count, cfg.duration_s, cfg.count,
    )  # fmt: skip
    log = lg.LogSettings()
    log.log_output.outdir = str(run_dir)  # exists: run_dir_for created it
    log.log_output.copy_summary_to_stdout = True
    log.enable_trace = False
    sut = get_sut_class(cfg.scenario)(
        workload.backends, workload.qsl, workload.task.kind, cfg.sut_options(),
        warm_up=lambda backend: warm_up(workload, [backend]),
    )  # fmt: skip
    if cfg.retime:
        sut.record_issued()
    done = threading.Event()
    monitor = threading.Thread(
        target=_abort_after, args=(sut, cfg.abort_grace_s, done, run_dir), daemon=True
    )
    # Without an audit file, point LoadGen at a path that cannot exist: a stray ./audit.config in the
    # working directory must never turn a normal run into an audit run.
    audit = str(cfg.audit_conf) if cfg.audit_conf else str(run_dir / "no-audit.config")
    with sut:
        sut_handle = lg.ConstructFastSUT(sut.issue_queries, sut.flush_queries)
        qsl_handle = lg.ConstructQSL(
            workload.qsl.total_sample_count,
            int(ts.performance_sample_count_override),
            sut.guard(workload.qsl.load_query_samples, "load_query_samples"),
            sut.guard(workload.qsl.unload_query_samples, "unload_query_samples"),
        )
        monitor.start()
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, ts, log, audit)
        finally:
            done.set()
            lg.DestroyQSL(qsl_handle)
            lg.DestroyFastSUT(sut_handle)
    trace = run_dir / "mlperf_log_trace.json"
    if trace.is_file() and trace.stat().st_size == 0:
        trace.unlink()  # LoadGen creates it even with tracing off
    return SutOutcome(sut.failure_text or None, sut.batches, sut.issued_log, sut.predict_s)


# --- provenance and the stdout tee -----------------------------------------------------------------
def provenance() -> dict[str, Any]:
    """git sha / dirty, package versions, device, for run_config.json: the same collectors (and so
    the same keys) as `make info`, which the submission's systems/<system>.json is filled from."""
    from harness.info import device_info, git_state, package_versions

    return {**git_state(), "versions": package_versions(), "device": device_info()}


class Tee:
    """Copy everything written to fds 1 and 2 (Python and LoadGen's C++ output) into `path` too."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Tee:
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = open(self.path, "ab")
        self._saved = [os.dup(1), os.dup(2)]
        read, write = os.pipe()
        self._read = read
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        while chunk := os.read(self._read, 65536):
            os.write(self._saved[0], chunk)
            self._file.write(chunk)
            self._file.flush()

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)  # closes the pipe's last write ends: the pump sees EOF
        os.dup2(self._saved[1], 2)
        self._thread.join(5)
        os.close(self._read)
        for fd in self._saved:
            os.close(fd)
        self._file.close()
