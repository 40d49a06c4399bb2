"""`make compliance TEST=TEST01`: the audit run and its verification, like MLCommons' TEST01.

1. Stage: audit.conf (repo root) is copied as `audit.config` into a fresh temporary working
   directory; the runner (`python -m harness run ... --audit_conf <it>`) runs there in a
   subprocess, because LoadGen applies any audit.config found in its working directory at
   StartTest. The directory is removed afterwards whatever happens, so no later run sees it.
2. Verify against the normal runs in D/<MODEL>/<TASK>/<Scenario>/{accuracy,performance}/:
   - accuracy: the first element of every response logged by the audit run equals the accuracy
     run's for the same qsl_idx (at least one match, no mismatch);
   - performance: the audit run's result is within 10% of the performance run's (20% for
     SingleStream latencies <= 200 us, as upstream), both VALID, same scenario (and Server latency).
3. When the first elements differ (a backend that is not bit-deterministic across batch shapes),
   the fallback MLPerf documents for TEST01: the audit run's logged responses (first one per
   qsl_idx) are scored with the task's accuracy script (compliance_accuracy.txt), the accuracy run's
   responses for the same samples likewise (baseline_accuracy.txt), and the task's primary metric
   must agree within 1% (relative; bert-99's bound, 0.1% for bert-99.9: `submission check` applies
   the mapped model's). verify_accuracy.txt keeps `TEST FAIL` for the deterministic check and adds
   the fallback's scores and verdict (`FALLBACK PASS` / `FALLBACK FAIL`), as the checker expects.
4. Write D/.../<Scenario>/TEST01/{verify_accuracy.txt, verify_performance.txt, accuracy/,
   performance/run_1/, audit_run/ (the full run folder)}; each verify file has a `TEST PASS` or
   `TEST FAIL` line with the details. accuracy/accuracy.txt is the audit run's responses scored by
   the task's accuracy script (the first response per qsl_idx; it covers the logged samples only).

A development audit run (--duration / --count) is sized like the performance run it is compared
with: it uses that run's user.conf copy plus the line that sizes its queries from the rate that run
measured x 1.1 (harness.settings.sizing_line), so a quicker moment of the machine cannot end it
under min duration. Official audit runs use user.conf as it is.
Exit codes (common/exit_codes.py): 0 TEST PASS (or FALLBACK PASS), 1 TEST FAIL or an INVALID audit
run, 2 / 130 / 143 the audit run's own, 3 bad input (names, missing performance or accuracy run).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.exit_codes import BAD_INPUT, SUT_FAILURE, describe
from common.loadgen_log import LoadgenLog
from common.paths import REPO
from harness.config import RunConfig, add_run_arguments
from harness.launch import child_argv, launch
from harness.results import Results
from harness.run_folder import RunFolder
from harness.run_record import RunRecord
from harness.settings import sizing_line, user_conf_with
from harness.submission.layout import (
    DEFAULT_LOG_DIR,
    PERF_FILES,
    TEST01_FALLBACK_DELTA_PERCENT,
    TEST01_FALLBACK_FILES,
    test01_dir_of,
)
from tasks.registry import get_task
from tasks.scoring import score_log

AUDIT_CONF = REPO / "audit.conf"
# What runs the audit: None = `python -m harness run` (tests put a fake runner here).
RUNNER: tuple[str, ...] | None = None
DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "byte": np.int8}


def _first_elements(log: Path, dtype: str) -> list[tuple[int, object]]:
    """(qsl_idx, first element or None for an empty response) of every accuracy-log entry."""
    out = []
    for entry in json.loads(log.read_text()):
        data = np.frombuffer(bytes.fromhex(entry["data"]), DTYPES[dtype])
        out.append((int(entry["qsl_idx"]), data[0].item() if data.size else None))
    return out


def verify_accuracy(reference: Path, audit: Path, dtype: str = "float32") -> tuple[bool, str]:
    """Compare first elements per qsl_idx; returns (passed, report ending in TEST PASS/FAIL)."""
    ref = dict(_first_elements(reference, dtype))
    matched = mismatched = missing = 0
    first_bad = ""
    for idx, value in _first_elements(audit, dtype):
        if idx not in ref:
            missing += 1
        elif ref[idx] == value:
            matched += 1
        else:
            mismatched += 1
            first_bad = (
                first_bad or f"first mismatch: qsl_idx {idx}: accuracy run {ref[idx]}, audit {value}"
            )
    passed = mismatched == 0 and matched > 0
    lines = [
        f"reference (accuracy run): {reference}",
        f"test (audit run): {audit}",
        f"dtype = {dtype}",
        f"num_acc_log_entries = {len(ref)}",
        f"num_perf_log_qsl_idx_match = {matched}",
        f"num_perf_log_data_mismatch = {mismatched}",
        f"num_missing_qsl_idxs = {missing}",
        *([first_bad] if first_bad else []),
        "TEST PASS" if passed else "TEST FAIL",
    ]
    return passed, "\n".join(lines) + "\n"


def verify_performance(reference: Path, audit: Path) -> tuple[bool, str]:
    """Audit result within the threshold of the reference; returns (passed, report)."""
    ref, test = LoadgenLog.read(reference), LoadgenLog.read(audit)
    lines = [f"reference (performance run): {reference}", f"test (audit run): {audit}"]

    def fail(why: str) -> tuple[bool, str]:
        return False, "\n".join([*lines, f"TEST FAIL: {why}", "TEST FAIL"]) + "\n"

    for name, log in (("reference", ref), ("test", test)):
        if not log.valid:
            return fail(f"{name} result is {log.get('result_validity')}, not VALID")
    if ref.scenario != test.scenario:
        return fail(f"scenarios differ: {ref.scenario} vs {test.scenario}")
    if ref.scenario == "Server" and ref.get("effective_target_latency_ns") != test.get(
        "effective_target_latency_ns"
    ):
        return fail("Server target latency differs")
    r, t = ref.result(), test.result()
    if r is None or t is None:
        return fail("result missing from a detail log")
    small_latency = (ref.scenario == "SingleStream" and r <= 200_000) or (
        ref.scenario == "MultiStream" and r <= 1_600_000
    )
    threshold = 0.20 if small_latency else 0.10
    lines += [f"reference score = {r}", f"test score = {t}", f"threshold = {threshold:.0%}"]
    if r * (1 - threshold) <= t <= r * (1 + threshold):
        return True, "\n".join([*lines, "TEST PASS"]) + "\n"
    return fail(f"test score off by {abs(t / r - 1):.1%} (> {threshold:.0%})")


class AuditRunFailed(RuntimeError):
    """The audit run exited non-zero; `code` is its exit status."""

    def __init__(self, code: int):
        super().__init__(f"audit run failed with exit status {code} ({describe(code)})")
        self.code = code


def run_audit(
    cfg: RunConfig,
    more_flags: Sequence[str] = (),
    runner: Sequence[str] | None = None,
    audit_conf: Path = AUDIT_CONF,
) -> Path:
    """Run `cfg` (plus the runner flags `more_flags`) with the audit file staged; returns the audit run
    folder (a temporary copy the caller must move). The temporary working directory, audit.config
    included, is always removed."""
    workdir = Path(tempfile.mkdtemp(prefix="audit-"))
    keep = Path(tempfile.mkdtemp(prefix="audit-result-"))
    try:
        staged = workdir / "audit.config"
        shutil.copy2(audit_conf, staged)
        audit = replace(cfg, output_dir=workdir / "out", audit_conf=staged)
        argv = child_argv(audit, more_flags=more_flags, program=runner)
        print("+ (cwd " + str(workdir) + ") " + shlex.join(argv), flush=True)
        run = launch(audit, more_flags=more_flags, program=runner, cwd=workdir)
        if run.rc:
            raise AuditRunFailed(run.rc)
        if not (run.run_dir / "mlperf_log_detail.txt").is_file():
            raise RuntimeError(f"audit run left no LoadGen logs in {run.run_dir}")
        shutil.copytree(run.run_dir, keep / "audit_run")
        return keep / "audit_run"
    except BaseException:
        shutil.rmtree(keep, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


FALLBACK_METRIC = "fallback_metric = "


def first_responses(log: Path) -> list[dict]:
    """The entries of an accuracy log, the first one per qsl_idx (an audit run logs a sample each
    time LoadGen issued it)."""
    seen: dict[int, dict] = {}
    for entry in json.loads(log.read_text()):
        seen.setdefault(int(entry["qsl_idx"]), entry)
    return list(seen.values())


def score_responses(entries: list[dict], accuracy_run: Path, dtype: str) -> tuple[str, float, str]:
    """Score `entries` the way the accuracy run was scored (its task, languages, task options and
    held-out rows): (the accuracy script's output, the task's primary metric, its name). ValueError
    (LogError) when they cannot be scored, e.g. no entry at all."""
    record = RunRecord.load(accuracy_run)
    config = json.loads((accuracy_run / "run_config.json").read_text())
    languages = (config.get("config") or {}).get("languages")
    options = config.get("task_options") or {}
    heldout = record.metrics.get("heldout_rows") is not None
    with tempfile.TemporaryDirectory(prefix="test01-score-") as tmp:
        log = Path(tmp) / "mlperf_log_accuracy.json"
        log.write_text(json.dumps(entries))
        # beside the log, as in the run folder: a scorer reads the run's tokenizer from it (TyDiQA)
        shutil.copy2(accuracy_run / "run_config.json", Path(tmp) / "run_config.json")
        result = score_log(
            record.task,
            log,
            languages=languages,
            dtype=dtype,
            task_options=options,
            heldout_rows=heldout or None,
        )
    metric = get_task(record.task, languages=languages, **options).primary_metric
    return result.stdout_text, float(json.loads(result.final_line)[metric]), metric


def fallback_delta(baseline: float, compliance: float) -> float:
    """The checker's comparison: |1 - baseline / compliance| in percent."""
    return abs(1 - baseline / compliance) * 100


def accuracy_fallback(
    accuracy_run: Path, audit_log: Path, out: Path, dtype: str, bound: float
) -> tuple[bool, list[str]]:
    """TEST01's fallback: score the audit run's responses and the accuracy run's for the same
    samples, write out/baseline_accuracy.txt and out/compliance_accuracy.txt, and compare. Returns
    (passed, lines for verify_accuracy.txt)."""
    audit = first_responses(audit_log)
    wanted = {int(e["qsl_idx"]) for e in audit}
    reference = [
        e
        for e in first_responses(accuracy_run / "mlperf_log_accuracy.json")
        if int(e["qsl_idx"]) in wanted
    ]
    lines = [
        f"fallback: {len(audit)} samples logged by the audit run, {len(reference)} of them in "
        "the accuracy run's log"
    ]
    try:
        base_text, base, metric = score_responses(reference, accuracy_run, dtype)
        comp_text, comp, _ = score_responses(audit, accuracy_run, dtype)
    except ValueError as e:
        return False, [*lines, f"fallback: cannot score ({e})", "FALLBACK FAIL"]
    (out / "baseline_accuracy.txt").write_text(base_text)
    (out / "compliance_accuracy.txt").write_text(comp_text)
    delta = fallback_delta(base, comp) if comp else float("inf")
    passed = bool(base) and bool(comp) and delta <= bound
    lines += [
        f"{FALLBACK_METRIC}{metric}",
        f"baseline {metric} = {base}",
        f"compliance {metric} = {comp}",
        f"delta = {delta:.4f}% (bound {bound}%)",
        "FALLBACK PASS" if passed else "FALLBACK FAIL",
    ]
    return passed, lines


def test01_accuracy_passed(test_dir: Path, mapped: str = "bert-99") -> tuple[bool, str]:
    """Whether a TEST01 folder passes the accuracy check: `TEST PASS` in verify_accuracy.txt, or
    the fallback's two scores (accuracy/) within the mapped model's bound. (passed, why not)."""
    verify = test_dir / "verify_accuracy.txt"
    if not verify.is_file():
        return False, "verify_accuracy.txt is missing"
    lines = verify.read_text().splitlines()
    if "TEST PASS" in lines:
        return True, ""
    metric = next((ln[len(FALLBACK_METRIC) :] for ln in lines if ln.startswith(FALLBACK_METRIC)), None)
    files = [test_dir / "accuracy" / name for name in TEST01_FALLBACK_FILES]
    if metric is None or not all(f.is_file() for f in files):
        return False, "verify_accuracy.txt does not say TEST PASS and there are no fallback scores"
    try:
        base, comp = (float(json.loads(f.read_text().splitlines()[-1])[metric]) for f in files)
    except (ValueError, KeyError, IndexError, TypeError):
        return False, f"the fallback scores in {test_dir / 'accuracy'} cannot be read"
    bound = TEST01_FALLBACK_DELTA_PERCENT.get(mapped, 1.0)
    delta = fallback_delta(base, comp) if comp else float("inf")
    if not (base and comp and delta <= bound):
        return False, (
            f"deterministic check failed and the fallback's {metric} differs by "
            f"{delta:.4f}% (baseline {base}, compliance {comp}; bound {bound}%)"
        )
    return True, ""


def write_test01(accuracy_run: Path, performance_run: Path, audit_run: Path, dtype: str) -> bool:
    """Verify `audit_run` against the accuracy and performance run folders of its benchmark and
    lay out TEST01/ beside them (<Scenario>/TEST01/)."""
    out = test01_dir_of(performance_run)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(audit_run, out / "audit_run")
    (out / "accuracy").mkdir(parents=True)
    audit_log = audit_run / "mlperf_log_accuracy.json"
    shutil.copy2(audit_log, out / "accuracy")
    (out / "performance" / "run_1").mkdir(parents=True)
    for name in PERF_FILES:
        shutil.copy2(audit_run / name, out / "performance" / "run_1")
    acc_ok, acc_text = verify_accuracy(accuracy_run / "mlperf_log_accuracy.json", audit_log, dtype)
    try:
        scored = score_responses(first_responses(audit_log), accuracy_run, dtype)[0]
    except ValueError as e:
        scored = f"error: the audit run's responses cannot be scored: {e}\n"
    (out / "accuracy" / "accuracy.txt").write_text(scored)
    fallback_ok = False
    if not acc_ok:
        bound = TEST01_FALLBACK_DELTA_PERCENT["bert-99"]
        fallback_ok, lines = accuracy_fallback(accuracy_run, audit_log, out / "accuracy", dtype, bound)
        acc_text += "\n".join(lines) + "\n"
    perf_ok, perf_text = verify_performance(
        performance_run / "mlperf_log_detail.txt", audit_run / "mlperf_log_detail.txt"
    )
    (out / "verify_accuracy.txt").write_text(acc_text)
    (out / "verify_performance.txt").write_text(perf_text)
    print(acc_text + perf_text, end="")
    print(
        f"Accuracy check pass: {acc_ok or fallback_ok}"
        f"{' (fallback)' if fallback_ok else ''}\nPerformance check pass: {perf_ok}\n"
        f"TEST01 results in {out}"
    )
    return (acc_ok or fallback_ok) and perf_ok


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """`harness run`'s flags (the runs compared and the audit run are the runs those flags name, so
    `make compliance` takes exactly `make run`'s), plus the audit's own."""
    add_run_arguments(parser)
    parser.add_argument(
        "--test", default="TEST01", choices=["TEST01"], help="BERT-class models need TEST01 only"
    )
    parser.add_argument(
        "--response_dtype",
        default="float32",
        choices=sorted(DTYPES),
        help="element type of the logged responses (float32 for every task of this harness)",
    )
    parser.add_argument(
        "--verify_only", action="store_true", help="re-verify an existing TEST01/audit_run"
    )
    parser.add_argument(
        "--run_args", default="", help="extra flags for the audit run's runner, one quoted string"
    )


def dev_audit_conf(perf_dir: Path, model: str, scenario: str, dest: Path) -> tuple[Path, str | None]:
    """The user.conf of a development audit run: the performance run's copy, plus its sizing line
    (from the rate it measured x 1.1) where the scenario has one. Returns (dest, the line)."""
    line = sizing_line(model, scenario, Results.load(perf_dir))
    why = "compliance: development audit run sized like its performance run"
    return user_conf_with(perf_dir / "user.conf", [line] if line else [], dest, why), line


def main(args: argparse.Namespace) -> int:
    if args.accuracy:
        print("compliance: TEST01 is a performance-mode audit run; drop ACCURACY / --accuracy")
        return BAD_INPUT
    try:  # the runs compared: plain runs with these flags (run_audit stages the audit file)
        given = RunConfig.from_args(args)
    except ValueError as exc:
        print(f"compliance: {exc}")
        return BAD_INPUT
    audit_conf = given.audit_conf or AUDIT_CONF
    log_dir = (given.output_dir or DEFAULT_LOG_DIR).resolve()
    cfg = replace(given, audit_conf=None, output_dir=log_dir)
    accuracy_run = RunFolder.plan(replace(cfg, accuracy=True)).path
    performance_run = RunFolder.plan(cfg).path
    for mode, folder, how in (
        ("accuracy", accuracy_run, " ACCURACY=1"),
        ("performance", performance_run, ""),
    ):
        if not (folder / "mlperf_log_detail.txt").is_file():
            print(
                f"compliance: no {mode} run at {folder}. TEST01 compares against it: run "
                f"`make run SCENARIO={cfg.scenario} MODEL={cfg.model} TASK={cfg.task}{how} "
                f"LOG_DIR={log_dir}` first (same LOG_DIR for every run)."
            )
            return BAD_INPUT
    if args.verify_only:  # re-verify a kept audit run (copied out first: TEST01/ is rewritten)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(test01_dir_of(performance_run) / "audit_run", Path(tmp) / "audit_run")
            ok = write_test01(
                accuracy_run, performance_run, Path(tmp) / "audit_run", args.response_dtype
            )
            return 0 if ok else 1
    with tempfile.TemporaryDirectory(prefix="audit-conf-") as tmp:
        if not cfg.submission_grade:
            try:
                conf, line = dev_audit_conf(
                    performance_run, cfg.loadgen_model_name, cfg.scenario, Path(tmp) / "user.conf"
                )
            except ValueError as exc:  # its results.json is not one this harness reads
                print(f"compliance: {exc}")
                return BAD_INPUT
            print(
                f"compliance: development audit run sized like the performance run "
                f"(its user.conf{' + ' + line if line else ''})"
            )
            cfg = replace(cfg, user_conf=conf)
        try:
            audit_run = run_audit(cfg, shlex.split(args.run_args), RUNNER, audit_conf)
        except AuditRunFailed as exc:
            print(f"compliance: {exc}")
            return exc.code
        except RuntimeError as exc:
            print(f"compliance: {exc}")
            return SUT_FAILURE
    try:
        return 0 if write_test01(accuracy_run, performance_run, audit_run, args.response_dtype) else 1
    finally:
        shutil.rmtree(audit_run.parent, ignore_errors=True)
