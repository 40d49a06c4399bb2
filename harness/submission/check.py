"""`submission check`: the project's own structural check of open/<submitter>/, plus (optionally)
MLCommons' official checker run from a checkout of mlcommons/inference.

`check_package` encodes the rules of the v6.1 checker that apply to our open-division package
(layout, required files, system fields, measurements keys, truncated accuracy logs with a hash
line, division/submitter equal to folder names, model_mapping, non-empty user.conf/README.md,
src/) and the mapped benchmark's performance_sample_count and min_duration rules. Those two are
errors for a real package and notes for one stamped NOT FOR SUBMISSION.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common.loadgen_log import LoadgenLog
from harness.submission.layout import (
    ACC_FILES,
    CHECKER_VERSION,
    DIVISION,
    MAPPED_RULES,
    MAX_ACCURACY_LOG_BYTES,
    MEANINGFUL_SYSTEM_FIELDS,
    MEASUREMENT_KEYS,
    MIN_DURATION_MS,
    NOT_FOR_SUBMISSION,
    PERF_FILES,
    SCENARIO_FILES,
    SCENARIOS,
    STATUSES,
    SYSTEM_FIELDS,
    SYSTEM_TYPES,
    TEST01_FILES,
    accuracy_dirs,
    read_hash,
    submitter_dir,
)


def _load_json(path: Path, errors: list[str]) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        errors.append(f"{path}: missing")
    except json.JSONDecodeError as exc:
        errors.append(f"{path}: not valid JSON ({exc})")
    return None


def check_system(path: Path, submitter: str, errors: list[str]) -> None:
    desc = _load_json(path, errors)
    if desc is None:
        return
    for k in SYSTEM_FIELDS:
        if k not in desc:
            errors.append(f"{path}: required system field '{k}' is missing")
        elif k in MEANINGFUL_SYSTEM_FIELDS and not desc[k]:
            errors.append(f"{path}: system field '{k}' needs a meaningful (non-empty) value")
    if str(desc.get("division", "")).lower() != DIVISION:
        errors.append(f"{path}: division '{desc.get('division')}' differs from folder '{DIVISION}'")
    if str(desc.get("submitter", "")).lower() != submitter.lower():
        errors.append(f"{path}: submitter '{desc.get('submitter')}' differs from folder '{submitter}'")
    if str(desc.get("status", "")).lower() not in STATUSES:
        errors.append(f"{path}: status '{desc.get('status')}' not in {STATUSES}")
    if desc.get("system_type") not in SYSTEM_TYPES:
        errors.append(f"{path}: system_type '{desc.get('system_type')}' not in {SYSTEM_TYPES}")


def _files(d: Path, names: tuple[str, ...], errors: list[str], nonempty: bool = False) -> None:
    for name in names:
        f = d / name
        if not f.is_file():
            errors.append(f"{f}: required file missing")
        elif nonempty and f.stat().st_size == 0:
            errors.append(f"{f}: must not be empty")


def check_scenario(d: Path, mapped: str, stamped: bool, errors: list[str], notes: list[str]) -> None:
    _files(d, SCENARIO_FILES, errors, nonempty=True)
    meas = _load_json(d / "measurements.json", errors) if (d / "measurements.json").is_file() else None
    for k in MEASUREMENT_KEYS if meas is not None else ():
        if not meas.get(k):
            errors.append(f"{d / 'measurements.json'}: key '{k}' missing or empty")
    _files(d / "performance" / "run_1", PERF_FILES, errors)
    _files(d / "accuracy", ACC_FILES, errors)
    detail = d / "performance" / "run_1" / "mlperf_log_detail.txt"
    if detail.is_file():
        log = LoadgenLog.read(detail)
        if not log.valid:
            errors.append(f"{detail}: result is {log.get('result_validity')}, not VALID")
        if log.errors:
            errors.append(f"{detail}: LoadGen errors: {log.errors[0]}")
        rules = MAPPED_RULES.get(mapped, {})
        psc, need = (
            log.get("effective_performance_sample_count", 0),
            rules.get("performance_sample_count", 0),
        )
        dur = log.get("effective_min_duration_ms", 0)
        (notes if stamped else errors).extend(
            [f"{detail}: performance_sample_count {psc} < {need} required for {mapped}"] * (psc < need)
            + [f"{detail}: min_duration {dur} ms < {MIN_DURATION_MS} ms"] * (dur < MIN_DURATION_MS)
        )
    if (d / "TEST01").is_dir():
        t = d / "TEST01"
        _files(t, TEST01_FILES, errors)
        _files(t / "performance" / "run_1", PERF_FILES, errors)
        _files(t / "accuracy", ("mlperf_log_accuracy.json", "accuracy.txt"), errors)
        for name in TEST01_FILES:
            f = t / name
            if f.is_file() and "TEST PASS" not in f.read_text().splitlines():
                errors.append(f"{f}: does not contain a 'TEST PASS' line")


def check_package(root: Path, submitter: str) -> tuple[list[str], list[str]]:
    """(errors, notes) for root/open/<submitter>; no errors means our rules accept it."""
    errors: list[str] = []
    notes: list[str] = []
    sub = submitter_dir(root, submitter)
    if not sub.is_dir():
        others = [p.name for p in (root / DIVISION).glob("*")] if (root / DIVISION).is_dir() else []
        return [f"{sub}: no package for submitter '{submitter}' (found: {others or 'none'})"], notes
    for link in sorted(p for p in sub.rglob("*") if p.is_symlink()):
        errors.append(f"{link}: a symlink in the package (pack would store a link, not a result)")
    stamped = (sub / NOT_FOR_SUBMISSION).is_file()
    if stamped:
        notes.append(f"{sub}: stamped NOT FOR SUBMISSION (built with --allow_test_runs)")
    if not (sub / "src").is_dir() or not any((sub / "src").iterdir()):
        errors.append(f"{sub / 'src'}: harness source folder missing or empty")
    mapping = _load_json(sub / "model_mapping.json", errors) or {}
    systems = sorted(p.name for p in (sub / "results").glob("*") if p.is_dir())
    if not systems:
        errors.append(f"{sub / 'results'}: no results")
    for system in systems:
        check_system(sub / "systems" / f"{system}.json", submitter, errors)
        for bench in sorted(p for p in (sub / "results" / system).iterdir() if p.is_dir()):
            if bench.name not in mapping:
                errors.append(f"{bench}: benchmark '{bench.name}' has no entry in model_mapping.json")
            for scen in sorted(p for p in bench.iterdir() if p.is_dir()):
                if scen.name not in SCENARIOS:
                    errors.append(
                        f"{scen}: unknown scenario folder '{scen.name}' (expected {SCENARIOS})"
                    )
                    continue
                check_scenario(scen, mapping.get(bench.name, ""), stamped, errors, notes)
    for acc in accuracy_dirs(sub):
        log = acc / "mlperf_log_accuracy.json"
        if log.is_file() and log.stat().st_size > MAX_ACCURACY_LOG_BYTES:
            errors.append(f"{log}: not truncated ({log.stat().st_size} bytes > 10 KiB): run truncate")
        if log.is_file() and not read_hash(acc / "accuracy.txt"):
            errors.append(f"{acc / 'accuracy.txt'}: no hash= line (run truncate)")
    return errors, notes


def run_official(checker: Path, root: Path, submitter: str, extra: list[str]) -> int:
    """MLCommons' checker from a checkout of mlcommons/inference; returns its exit status."""
    main_py = checker / "tools" / "submission" / "submission_checker" / "main.py"
    if not main_py.is_file():
        print(f"official checker not found at {main_py} (pass the mlcommons/inference checkout)")
        return 2
    cmd = [sys.executable, str(main_py), "--input", str(root), "--version", CHECKER_VERSION,
           "--submitter", submitter, "--submission-exceptions",
           "--csv", str(root.parent / "submission_checker_summary.csv"), *extra]  # fmt: skip
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode
