"""`python -m harness run`: one LoadGen test (performance or accuracy) in this process.

Order: resolve config (names checked) -> user.conf checked -> run folder planned, claimed (locked)
and stdout tee -> model, tokenizer, features (tokenised BEFORE the test), backends, warm-up ->
run_config.json -> build/logs/latest -> TestSettings (FromConfig once) -> StartTest on a helper
thread while the main thread waits (progress line, signals) -> copies of user.conf / audit.config ->
results.json (+ accuracy scoring) -> summary printed, exit code.

Run folder contract: harness/run_folder.py. Exit codes (common/exit_codes.py): 0 VALID (or
--allow_invalid), 1 INVALID (LoadGen's reasons; the Server drain bound; an accuracy log that cannot
be scored), 2 SUT failure (error printed; also non-finite outputs in an accuracy run), 3 bad
configuration or input, 130 / 143 ended by SIGINT / SIGTERM (results.json: "interrupted": true).

Signals (harness/interrupts.py): the first SIGINT/SIGTERM during the test makes the SUT complete
everything outstanding and every later query at once (empty responses), so LoadGen ends as soon as
its schedule allows; if it has not ended `--abort_grace_s` later (10 s; a Server schedule runs to
min duration whatever the SUT does) the process records what it has and leaves. A second signal
exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import mlperf_loadgen as lg
import numpy as np

from common.exit_codes import BAD_INPUT, INVALID, SUT_FAILURE, VALID, describe
from common.paths import BUILD
from harness.config import RunConfig, add_run_arguments
from harness.info import device_info, git_state, package_versions
from harness.interrupts import Interrupted, SignalGate
from harness.multitask import prepare as prepare_task_list
from harness.multitask import score as score_task_list
from harness.progress import Progress
from harness.results import Results
from harness.retime import retime_issued
from harness.run_folder import RunFolder, checkpoint_sha256
from harness.seeds import SEEDS
from harness.settings import check_schedule, check_user_conf, make_test_settings, sizing_fix
from models.backends import create_backend
from models.base import Backend
from models.encoders import get_encoder
from models.registry import resolve
from models.zoo_layout import ZOO_ENCODERS, build_command, built_by_zoo
from sut.ray_executor import ActorResources, RayExecutor
from sut.registry import get_sut_class
from tasks.base import Task
from tasks.mixed import is_mixed
from tasks.qsl import QuerySampleLibrary
from tasks.registry import get_task
from tasks.scoring import score_log, write_outputs
from tasks.scoring.classification import HELDOUT_FIRST_ROW

if TYPE_CHECKING:
    from models.loaders import ServedModel


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)


@dataclass
class Workload:
    """What the measured part runs, built before the test: the served model, one backend per SUT
    worker (with --executor ray: proxies of the actors of `executor`), and the task's pre-tokenised
    samples behind the QSL."""

    served: ServedModel
    backends: list[Backend]
    qsl: QuerySampleLibrary
    task: Task
    tokenizer: str  # where the tokenizer came from (run_config.json "tokenizer")
    executor: RayExecutor | None = None  # --executor ray: the cluster session and its actors
    task_options: dict[str, Any] = field(default_factory=dict)  # get_task options (run_config.json)

    def close(self) -> None:
        """Release the backends, then the actors and (embedded) cluster; whatever happened."""
        try:
            for backend in self.backends:
                backend.close()
        finally:
            if self.executor is not None:
                self.executor.close()


def make_backends(
    cfg: RunConfig, make: Callable[[], Backend]
) -> tuple[list[Backend], RayExecutor | None]:
    """The SUT's backends: `cfg.workers` x `make()` in this process (thread executor), or
    `cfg.workers` Ray actors that each run `make()` and `cfg.inflight` proxies per actor (ray).
    ValueError (one line) when the Ray cluster cannot be started or reached or cannot hold them."""
    if cfg.executor != "ray":
        return [make() for _ in range(cfg.workers)], None
    executor = RayExecutor.start(
        make,
        cfg.workers,
        ActorResources.for_backend(cfg.backend_options()),
        cfg.cluster_address,
        call_timeout_s=cfg.ray_call_timeout_s,
    )
    return executor.proxies(cfg.inflight), executor


def prepare(cfg: RunConfig) -> Workload:
    """Resolve the served model, tokenise the task, build one backend per worker, warm them up.
    Serves only: a zoo stage (or random weights' tokenizer) not built yet is FileNotFoundError naming
    the command that builds it (`make run` runs it first)."""

    if is_mixed(cfg.task):  # a task list: one QSL over every task's samples (harness/multitask.py)
        return Workload(**prepare_task_list(cfg, task_options))

    try:
        served = resolve(
            cfg.model,
            cfg.task,
            encoder=cfg.encoder,
            weights=cfg.weights,
            models_dir=cfg.models_dir,
            pooling_layer=cfg.pooling_layer,
        )
        if cfg.accuracy:
            served.check_for_accuracy()
        tokenizer = served.tokenizer()
    except FileNotFoundError as e:
        if not built_by_zoo(cfg.encoder, cfg.weights):
            raise  # a --weights folder, or real base/large checkpoints: the user's to provide
        raise FileNotFoundError(not_built(cfg)) from e
    options = task_options(cfg, served)
    task = get_task(cfg.task, languages=cfg.languages, **options)
    features = task.features(tokenizer)
    qsl = QuerySampleLibrary(
        features, count=cfg.count, pad_id=int(tokenizer.pad_token_id), pad_to=cfg.pad_to
    )
    make = functools.partial(create_backend, cfg.backend, served, cfg.backend_options())
    backends, executor = make_backends(cfg, make)
    source = str(getattr(tokenizer, "name_or_path", "") or served.checkpoint)
    return Workload(served, backends, qsl, task, source, executor, options)


def not_built(cfg: RunConfig) -> str:
    """The one line a run prints when what it serves is not built yet: what, where, and the command
    that builds it (`harness run` serves and never trains)."""
    what = "the tokenizer of random weights" if cfg.weights == "random" else "its zoo stage(s)"
    where = cfg.models_dir or get_encoder(cfg.encoder).default_models_dir(BUILD)
    command = build_command(cfg.model, cfg.task, cfg.encoder, cfg.weights, cfg.models_dir)
    return (
        f"{cfg.model}/{cfg.task} ({cfg.encoder}): {what} not built in {where}; build it first with "
        f"`{command}` (`make run` runs it before the run)"
    )


def warm_up(workload: Workload, backends: list[Backend] | None = None) -> None:
    """A few batches through each backend so one-time costs (allocations, graph opt) stay out.

    Call it on the thread that will run the backend: PyTorch's OpenMP pool belongs to the thread
    that first runs a parallel region, and a second thread's pool competes with the first one's
    idle threads (measured on 2 cores: single-sample forwards ~1.6x slower on the second thread).
    The SUT therefore warms each backend on its own worker thread (`SUT(warm_up=...)`), and the
    PyTorch backend builds its module with intra-op parallelism off for the same reason
    (models.pytorch_backend.serial_intra_op)."""
    n = min(8, len(workload.qsl.lengths))
    sample = np.arange(n)
    qsl = QuerySampleLibrary(
        workload.qsl.features, count=workload.qsl.total_sample_count, pad_id=workload.qsl.pad_id
    )
    qsl.load_query_samples(sample.tolist())
    for backend in workload.backends if backends is None else backends:
        for idx in (sample[:1], sample):
            b = qsl.batch(idx)
            backend.predict(*b.inputs)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = RunConfig.from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        code = BAD_INPUT
    else:
        code = run(cfg, command=sys.argv)
    meaning = describe(code)
    if code == 0 and getattr(cfg, "allow_invalid", False):
        meaning = "VALID, or INVALID accepted by --allow_invalid"
    print(f"exit status {code}: {meaning}", file=sys.stderr, flush=True)
    return code


def run(cfg: RunConfig, workload: Workload | None = None, command: list[str] | None = None) -> int:
    """One complete run into its folder; returns the exit code. `workload` lets tests inject backends.

    Nothing is created before the names, paths and user.conf are checked; signals are handled from
    here on (harness/interrupts.py) when called on the main thread."""
    gate = SignalGate()
    gate.install()
    try:
        return _run(cfg, workload, list(command or sys.argv), gate)
    except Interrupted as i:  # before the run folder existed
        print(f"interrupted by {i}", file=sys.stderr, flush=True)
        return i.exit_code
    finally:
        gate.restore()


def check_conf(cfg: RunConfig) -> list[str]:
    """user.conf (and audit.config) checked for this run, and the schedule LoadGen would generate
    from them: ValueError on errors, warnings returned."""

    warnings = check_user_conf(cfg.user_conf, cfg.loadgen_model_name, cfg.scenario)
    if cfg.audit_conf:
        warnings += check_user_conf(cfg.audit_conf, cfg.loadgen_model_name, cfg.scenario)
    check_schedule(
        cfg.user_conf,
        cfg.loadgen_model_name,
        cfg.scenario,
        cfg.accuracy,
        duration_s=cfg.duration_s,
        count=cfg.count,
        audit_conf=cfg.audit_conf,
    )
    return warnings


def _run(cfg: RunConfig, workload: Workload | None, command: list[str], gate: SignalGate) -> int:
    started = time.time()
    try:
        warnings = check_conf(cfg)
        folder = RunFolder.plan(cfg, started)
        folder.claim(command)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return BAD_INPUT
    run_dir = folder.path
    with folder, Tee(run_dir / "stdout.txt") as tee:
        print(f"run folder: {run_dir}", flush=True)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr, flush=True)

        def leave(code: int, why: str, **fields: Any) -> NoReturn:
            """Record what is known and exit now (LoadGen has not ended: its thread cannot be joined)."""
            print(f"error: {why}", file=sys.stderr, flush=True)
            if cfg.user_conf.is_file():
                shutil.copyfile(cfg.user_conf, run_dir / "user.conf")
            res = Results.measured(run_dir, cfg.mode, cfg.submission_grade, cfg.scenario)
            res.invalid().updated(loadgen_finished=False, exit_status=code, **fields).save(run_dir)
            tee.close()
            os._exit(code)

        gate.last_words = lambda code: leave(
            code, f"second {signal.Signals(code - 128).name}: exiting at once", interrupted=True
        )
        try:
            return _measure(cfg, workload, command, gate, folder, started, tee, leave)
        except Interrupted as i:
            print(f"interrupted by {i}: run ended, recorded in results.json", file=sys.stderr)
            try:
                res = Results.load(run_dir)
            except ValueError:  # not ours to keep: measured again below
                res = None
            res = res or Results.measured(run_dir, cfg.mode, cfg.submission_grade, cfg.scenario)
            res.interrupted_by(str(i), i.exit_code).save(run_dir)
            return i.exit_code


def _measure(
    cfg: RunConfig,
    workload: Workload | None,
    command: list[str],
    gate: SignalGate,
    folder: RunFolder,
    started: float,
    tee: Tee,
    leave: Callable[..., NoReturn],
) -> int:
    """Prepare, run the LoadGen test, record and report: the part of a run inside its folder."""
    run_dir = folder.path
    try:
        work = workload or prepare(cfg)
        gate.reclaim()  # a Ray executor's ray.init replaced our SIGTERM handler with its own
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        res = Results.measured(run_dir, cfg.mode, cfg.submission_grade, cfg.scenario)
        res.updated(error=str(e), exit_status=BAD_INPUT).save(run_dir)
        return BAD_INPUT
    try:
        run_config = {
            "model": cfg.model,
            "task": cfg.task,
            "scenario": cfg.scenario,
            "mode": cfg.mode,
            "backend": cfg.backend,
            "model_kind": work.served.model_kind,
            "model_spec": work.served.describe(),
            "checkpoint_sha256": checkpoint_sha256(getattr(work.served, "checkpoint", None)),
            "tokenizer": work.tokenizer,
            "task_options": work.task_options,
            "backend_options": {**cfg.backend_options().to_dict(), **work.backends[0].describe()},
            "executor": cfg.executor,
            **({"ray": work.executor.describe()} if work.executor else {}),
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
            "command": command,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        }
        (run_dir / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str) + "\n")
        folder.mark_started()
        try:
            outcome = run_loadgen_test(cfg, work, run_dir, gate, _closing(work, leave), tee.terminal_fd)
        except ValueError as e:  # LoadGen refused the settings
            print(f"error: {e}", file=sys.stderr, flush=True)
            return BAD_INPUT
        shutil.copyfile(cfg.user_conf, run_dir / "user.conf")
        if cfg.audit_conf:
            shutil.copyfile(cfg.audit_conf, run_dir / "audit.config")
        res = Results.measured(run_dir, cfg.mode, cfg.submission_grade, cfg.scenario).updated(
            sut_failure=outcome.failure,
            sut_batches=outcome.batches,
            nonfinite_samples=outcome.nonfinite,
            interrupted=gate.signum is not None,
            signal=gate.name if gate.signum is not None else None,
            ended_early=outcome.stop_reason,
            peak_rss_mib=peak_rss_mib(),
            executor=cfg.executor,
        )
        if work.executor is not None:
            res = res.updated(ray=work.executor.stats())
            outcome.actors_lost = work.executor.fault_summary()
            if outcome.failure is None and outcome.actors_lost:
                res = res.updated(sut_failure=f"Ray: {outcome.actors_lost}")
        clean = outcome.failure is None and outcome.stop_reason is None and not outcome.nonfinite
        if cfg.accuracy:  # LoadGen judges no validity in AccuracyOnly: a complete, scored log
            metrics, error = score(cfg, work, run_dir) if clean else (None, None)
            res = res.updated(accuracy=metrics if error is None else {"error": error})
            ok = clean and error is None
            res = res.updated(result_valid=ok, validity="VALID" if ok else "INVALID")
        elif clean and outcome.issued:
            res = res.updated(
                retimed=retime_issued(cfg, work.backends[0], work.qsl, outcome.issued, outcome.predict_s)
            )
        if outcome.stop_reason is not None:
            res = res.invalid("drain bound" if gate.signum is None else None)
        res.save(run_dir)
        code = report(cfg, res, run_dir, outcome, gate.exit_code)
        res.updated(exit_status=code).save(run_dir)
        return code
    finally:
        work.close()


def _closing(work: Workload, leave: Callable[..., NoReturn]) -> Callable[..., NoReturn]:
    """`leave` (the process exits at once: LoadGen has not ended) after ending the Ray actors and
    embedded cluster, given at most 5 s (their processes would otherwise outlive this one a while)."""
    if work.executor is None:
        return leave

    def close_then_leave(code: int, why: str, **fields: Any) -> NoReturn:
        closer = threading.Thread(target=work.executor.close, name="ray-close", daemon=True)
        closer.start()
        closer.join(5.0)
        leave(code, why, **fields)

    return close_then_leave


def peak_rss_mib() -> float:
    """The process's peak resident memory so far (MiB): model, features, runtimes and LoadGen."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def score(cfg: RunConfig, workload: Workload, run_dir: Path) -> tuple[Any, str | None]:
    """Score the accuracy log in-process (tasks.scoring) into accuracy.txt / .json / predictions.
    Returns (metrics, None), or (None, why) when the log cannot be scored."""
    if is_mixed(cfg.task):  # per task, by each task's own scorer (harness/multitask.py)
        return score_task_list(workload, run_dir)
    try:
        options = {}
        if zoo_trained_on_dev(cfg, workload.served) and cfg.task in HELDOUT_FIRST_ROW:
            options["heldout_rows"] = True  # the zoo trained on the other rows' English side
        log = run_dir / "mlperf_log_accuracy.json"
        result = score_log(
            cfg.task, log, languages=cfg.languages, task_options=workload.task_options, **options
        )
    except ValueError as e:  # LogError / DataError: e.g. a --count run covers no scorable sample
        return None, str(e)
    write_outputs(result, run_dir)
    return getattr(result, "metrics", None) or str(result), None


def zoo_trained_on_dev(cfg: RunConfig, served: ServedModel) -> bool:
    """True for the zoo's own models (tiny, e5-small): their XNLI/PAWS-X targets trained on English dev
    rows, so only the held-out rows may be scored. A --weights checkpoint is scored on every row."""
    return cfg.weights is None and cfg.encoder in ZOO_ENCODERS and served.model_kind != "random"


def task_options(cfg: RunConfig, served: ServedModel) -> dict[str, Any]:
    """The task's options for this run: the encoder's conventions (served.task_options()) and, for
    the zoo's own models on XNLI/PAWS-X, `first_row`: the QSL holds only the held-out rows, which are
    all that can be scored (half of XNLI's, so an accuracy run takes half the time)."""
    options = served.task_options()
    if zoo_trained_on_dev(cfg, served) and cfg.task in HELDOUT_FIRST_ROW:
        options["first_row"] = HELDOUT_FIRST_ROW[cfg.task]
    return options


def report(
    cfg: RunConfig, res: Results, run_dir: Path, outcome: SutOutcome, signalled: int | None
) -> int:
    """Print the summary, the folder and what went wrong (one line each); the exit code."""
    print("\n".join(f"  {k}: {v}" for k, v in res.summary.items() if not isinstance(v, dict)))
    print(
        f"result: {res.validity} ({cfg.scenario}, {cfg.mode}, submission_grade={cfg.submission_grade})"
    )
    print(f"run folder: {run_dir}", flush=True)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    lenient = VALID if cfg.allow_invalid else INVALID
    if outcome.nonfinite and not cfg.accuracy:
        say(
            f"warning: {outcome.nonfinite} samples returned NaN or Inf outputs "
            "(results.json nonfinite_samples; staging refuses this run): check the weights"
        )
    if signalled is not None:
        say(
            f"{describe(signalled)}: the test was ended early; results.json marks the "
            "run interrupted, result_valid false"
        )
        return signalled
    if outcome.failure:
        say(f"error: the SUT failed, responses after the failure are empty: {outcome.failure}")
        return SUT_FAILURE
    if outcome.actors_lost:
        say(
            f"error: Ray: {outcome.actors_lost}. Every query has its real response, but the run was "
            "measured with an actor missing (results.json ray.faults)"
        )
        return SUT_FAILURE
    if cfg.accuracy and outcome.nonfinite:
        say(f"error: {outcome.nonfinite} samples returned NaN or Inf: accuracy not scored")
        return SUT_FAILURE
    if outcome.stop_reason is not None:
        say(f"INVALID: {outcome.stop_reason}")
        return lenient
    if cfg.accuracy:
        error = res.accuracy.get("error") if isinstance(res.accuracy, dict) else None
        if error:
            say(f"INVALID: accuracy not scored: {error}")
            return lenient
        return VALID
    if not res.result_valid:
        reasons = ", ".join(res.constraints_failed) or "see mlperf_log_summary.txt"
        say(f"INVALID: {reasons}")
        fix = sizing_fix(cfg.loadgen_model_name, cfg.scenario, res)
        if fix:
            say(
                f"  LoadGen's pre-generated queries ran out before min duration at this machine's "
                f"speed; put this line into {cfg.user_conf} (the measured rate x 1.1):\n  {fix}"
            )
        return lenient
    return VALID


# --- the LoadGen test ----------------------------------------------------------------------------
@dataclass
class SutOutcome:
    """What the SUT reports after the test."""

    failure: str | None  # the SUT's first failure (with traceback), None if none
    batches: int
    issued: list[Any] | None = None  # cfg.retime only: every query's qsl indices, in issue order,
    predict_s: list[float] | None = None  # and the seconds of every backend.predict call
    nonfinite: int = 0  # samples whose response held a NaN or Inf
    stop_reason: str | None = None  # why the SUT ended the test early (interrupt, drain bound)
    actors_lost: str | None = None  # --executor ray: actors lost mid-run whose batches were retried


def run_loadgen_test(
    cfg: RunConfig,
    workload: Workload,
    run_dir: Path,
    gate: SignalGate | None = None,
    leave: Callable[..., NoReturn] | None = None,
    terminal_fd: int | None = None,
) -> SutOutcome:
    """TestSettings (FromConfig once), SUT + QSL constructed, StartTest on a helper thread, destroyed.

    The calling (main) thread waits: it draws the progress line (harness/progress.py), handles
    signals through `gate`, and calls `leave(code, why, ...)` when LoadGen has not ended
    `cfg.abort_grace_s` after a SUT failure or a signal. Never raises for a
    SUT failure: it is returned. ValueError when LoadGen refuses the settings."""
    ts = make_test_settings(
        cfg.user_conf,
        cfg.loadgen_model_name,
        cfg.scenario,
        cfg.accuracy,
        total_count=workload.qsl.total_sample_count,
        duration_s=cfg.duration_s,
        count=cfg.count,
    )
    if cfg.seeds:  # an earlier round's seeds (LoadGen reads seeds from its built-in mlperf.conf only)
        ts.qsl_rng_seed, ts.sample_index_rng_seed, ts.schedule_rng_seed = SEEDS[cfg.seeds]
    log = lg.LogSettings()
    log.log_output.outdir = str(run_dir)  # exists: RunFolder.claim created it
    log.log_output.copy_summary_to_stdout = True
    log.enable_trace = False
    sut = get_sut_class(cfg.scenario)(
        workload.backends,
        workload.qsl,
        workload.task.kind,
        cfg.sut_options(),
        warm_up=lambda backend: warm_up(workload, [backend]),
    )
    if cfg.retime:
        sut.record_issued()
    min_duration_s = ts.min_duration_ms / 1000
    if not cfg.accuracy:  # an accuracy log must hold every sample's real response: never cut short
        sut.bound_drain(min_duration_s)
    # Without an audit file, point LoadGen at a path that cannot exist: a stray ./audit.config in the
    # working directory must never turn a normal run into an audit run.
    audit = str(cfg.audit_conf) if cfg.audit_conf else str(run_dir / "no-audit.config")
    finished = threading.Event()
    raised: list[BaseException] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        print(
            f"\n{name}: ending the test (outstanding queries complete empty; again to exit at once)",
            file=sys.stderr,
            flush=True,
        )
        sut.end_early(f"interrupted by {name}")

    with sut:  # start(): every worker has warmed up its backend
        if workload.executor is not None:
            workload.executor.pool.reset_counts()  # count LoadGen's samples only
        sut_handle = lg.ConstructFastSUT(sut.issue_queries, sut.flush_queries)
        qsl_handle = lg.ConstructQSL(
            workload.qsl.total_sample_count,
            int(ts.performance_sample_count_override),
            sut.guard(workload.qsl.load_query_samples, "load_query_samples"),
            sut.guard(workload.qsl.unload_query_samples, "unload_query_samples"),
        )

        def start_test() -> None:  # the helper thread: StartTest blocks it, not the main thread
            try:
                lg.StartTestWithLogSettings(sut_handle, qsl_handle, ts, log, audit)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                raised.append(exc)
            finally:
                finished.set()

        # an accuracy run issues every QSL sample once, whatever min duration says
        total = workload.qsl.total_sample_count if cfg.accuracy else None
        progress = Progress(sut, min_duration_s, terminal_fd, total=total)
        failed_at: float | None = None
        # the gate routes signals to the SUT before LoadGen starts: a signal as the test begins
        # (its detail log just created) ends the test like any later one
        with gate.during(on_signal) if gate else contextlib.nullcontext():
            threading.Thread(target=start_test, name="loadgen", daemon=True).start()
            while not finished.wait(0.2):
                progress.tick()
                now = time.monotonic()
                if sut.failed.is_set() and failed_at is None:
                    failed_at = now
                if leave is None:
                    continue
                if gate and gate.at is not None and now - gate.at > cfg.abort_grace_s:
                    why = f"LoadGen did not end within {cfg.abort_grace_s:g} s of {gate.name}"
                    leave(
                        gate.exit_code,
                        f"{why}; its logs so far are kept",
                        interrupted=True,
                        signal=gate.name,
                        ended_early=sut.stop_reason,
                    )
                if failed_at is not None and now - failed_at > cfg.abort_grace_s:
                    why = f"SUT failed and LoadGen did not finish within {cfg.abort_grace_s:g} s"
                    leave(SUT_FAILURE, f"{why}: {sut.failure_text}", sut_failure=sut.failure_text)
        progress.close()
        lg.DestroyQSL(qsl_handle)
        lg.DestroyFastSUT(sut_handle)
    if raised:
        raise raised[0]
    trace = run_dir / "mlperf_log_trace.json"
    if trace.is_file() and trace.stat().st_size == 0:
        trace.unlink()  # LoadGen creates it even with tracing off
    return SutOutcome(
        failure=sut.failure_text or None,
        batches=sut.batches,
        issued=sut.issued_log,
        predict_s=sut.predict_s,
        nonfinite=sut.nonfinite,
        stop_reason=sut.stop_reason,
    )


# --- provenance and the stdout tee -----------------------------------------------------------------
def provenance() -> dict[str, Any]:
    """git sha / dirty, package versions, device, for run_config.json: the same collectors (and so
    the same keys) as `make info`, which the submission's systems/<system>.json is filled from."""
    return {**git_state(), "versions": package_versions(), "device": device_info()}


class Tee:
    """Copy everything written to fds 1 and 2 (Python and LoadGen's C++ output) into `path` too."""

    def __init__(self, path: Path):
        self.path = path
        self._saved: list[int] = []

    @property
    def terminal_fd(self) -> int | None:
        """The stderr the process had before the tee (the terminal): lines that must not reach
        stdout.txt (the progress line) go there."""
        return self._saved[1] if self._saved else None

    def __enter__(self) -> Tee:
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = open(self.path, "wb")  # written fresh: a rerun never appends to an old run
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
        self.close()

    def close(self) -> None:
        """Restore fds 1 and 2 and let the pump copy what is left (idempotent)."""
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)  # closes the pipe's last write ends: the pump sees EOF
        os.dup2(self._saved[1], 2)
        self._thread.join(5)
        os.close(self._read)
        for fd in self._saved:
            os.close(fd)
        self._saved = []
        self._file.close()
