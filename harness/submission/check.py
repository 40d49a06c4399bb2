"""`submission check`: the project's own structural check of every staged package, plus (optionally)
MLCommons' official checkers run from checkouts of mlcommons/inference.

`check_package` encodes the rules of the official checkers that apply to our open-division packages
(layout, required files, system fields and type, measurements keys, truncated accuracy logs with a
hash line, division/submitter equal to folder names, model_mapping, non-empty user.conf/README.md,
mlperf.conf, src/), the mapped benchmark's performance_sample_count and min_duration rules, each
package's seeds and scenarios, bert-99's 130 ms Server bound in the datacenter package, and TEST01
(deterministic pass, or the fallback's scores within the mapped model's bound). The two duration
and sample-count rules are errors for a real package and notes for one stamped NOT FOR SUBMISSION.

`run_official` runs, per staged package, the checkers that know its round: for the edge package
(v6.1) the current checker (tools/submission/submission_checker/main.py) and the legacy one
(tools/submission/submission_checker_old.py) of a current checkout; for the datacenter package
(round v4.1) tools/submission/submission_checker.py of a checkout at tag v5.0 (the newest checker
code that still knows round v4.1). Neither is on PyPI, so CI runs our check only; the official runs
are recorded in docs/submission.md and reports/submission_checker.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common.loadgen_log import LoadgenLog
from harness.submission.compliance import test01_accuracy_passed
from harness.submission.layout import (
    ACC_FILES,
    CHECKER_LINE,
    DIVISION,
    MAPPED_RULES,
    MAX_ACCURACY_LOG_BYTES,
    MEANINGFUL_SYSTEM_FIELDS,
    MEASUREMENT_KEYS,
    MIN_DURATION_MS,
    NO_CHECKER_LINE,
    NOT_FOR_SUBMISSION,
    PACKAGES,
    PERF_FILES,
    SCENARIO_FILES,
    STATUSES,
    SYSTEM_FIELDS,
    TEST01_ACC_FILES,
    TEST01_FALLBACK_FILES,
    TEST01_FILES,
    Package,
    accuracy_dirs,
    read_hash,
    staged_packages,
)


def _load_json(path: Path, errors: list[str]) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        errors.append(f"{path}: missing")
    except json.JSONDecodeError as exc:
        errors.append(f"{path}: not valid JSON ({exc})")
    return None


def check_system(path: Path, submitter: str, pkg: Package, errors: list[str]) -> None:
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
    if desc.get("system_type") != pkg.system_type:
        errors.append(
            f"{path}: system_type '{desc.get('system_type')}' is not the {pkg.name} "
            f"package's '{pkg.system_type}'"
        )


def _files(d: Path, names: tuple[str, ...], errors: list[str], nonempty: bool = False) -> None:
    for name in names:
        f = d / name
        if not f.is_file():
            errors.append(f"{f}: required file missing")
        elif nonempty and f.stat().st_size == 0:
            errors.append(f"{f}: must not be empty")


def check_accuracy_txt(txt: Path, mapped: str, errors: list[str], notes: list[str]) -> None:
    """The line the official checkers read for the mapped model (layout.CHECKER_LINE), or the note
    staging wrote for a task without one."""
    if not txt.is_file():
        return
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    if any(CHECKER_LINE.match(line) for line in lines):
        return
    if why := next((ln for ln in lines if ln.startswith(NO_CHECKER_LINE)), None):
        notes.append(
            f"{txt}: {why.removeprefix(NO_CHECKER_LINE)}: the legacy checker "
            "(submission_checker_old.py) rejects this accuracy run; the current one accepts it"
        )
    else:
        errors.append(
            f'{txt}: no line the official checkers read for {mapped} ({{"exact_match": ..., "f1": '
            "...}): stage the runs again"
        )


def check_scenario(
    d: Path, mapped: str, pkg: Package, stamped: bool, errors: list[str], notes: list[str]
) -> None:
    _files(d, SCENARIO_FILES, errors, nonempty=True)
    meas = _load_json(d / "measurements.json", errors) if (d / "measurements.json").is_file() else None
    for k in MEASUREMENT_KEYS if meas is not None else ():
        if not meas.get(k):
            errors.append(f"{d / 'measurements.json'}: key '{k}' missing or empty")
    _files(d / "performance" / "run_1", PERF_FILES, errors)
    _files(d / "accuracy", ACC_FILES, errors)
    check_accuracy_txt(d / "accuracy" / "accuracy.txt", mapped, errors, notes)
    detail = d / "performance" / "run_1" / "mlperf_log_detail.txt"
    if detail.is_file():
        check_detail(detail, mapped, pkg, stamped, errors, notes)
    if (d / "TEST01").is_dir():
        t = d / "TEST01"
        _files(t, TEST01_FILES, errors)
        _files(t / "performance" / "run_1", PERF_FILES, errors)
        _files(t / "accuracy", TEST01_ACC_FILES, errors)
        passed, why = test01_accuracy_passed(t, mapped)
        if not passed:
            errors.append(f"{t}: TEST01 accuracy: {why}")
        else:
            extra = [n for n in TEST01_FALLBACK_FILES if (t / "accuracy" / n).is_file()]
            if extra and "TEST PASS" in (t / "verify_accuracy.txt").read_text().splitlines():
                errors.append(
                    f"{t / 'accuracy'}: {', '.join(extra)} beside a deterministic TEST PASS "
                    "(the checker then expects exactly mlperf_log_accuracy.json and "
                    "accuracy.txt)"
                )
        f = t / "verify_performance.txt"
        if f.is_file() and "TEST PASS" not in f.read_text().splitlines():
            errors.append(f"{f}: does not contain a 'TEST PASS' line")


def check_detail(
    detail: Path, mapped: str, pkg: Package, stamped: bool, errors: list[str], notes: list[str]
) -> None:
    """The performance run's detail log against the package's and the mapped model's rules."""
    log = LoadgenLog.read(detail)
    if not log.valid:
        errors.append(f"{detail}: result is {log.get('result_validity')}, not VALID")
    if log.errors:
        errors.append(f"{detail}: LoadGen errors: {log.errors[0]}")
    if log.scenario not in pkg.scenarios:
        errors.append(
            f"{detail}: {log.scenario} does not belong in the {pkg.name} package "
            f"({', '.join(pkg.scenarios)})"
        )
    seeds = tuple(log.get(f"effective_{k}_rng_seed") for k in ("qsl", "sample_index", "schedule"))
    if seeds != pkg.seed_values():
        errors.append(
            f"{detail}: LoadGen seeds {seeds} are not round {pkg.version}'s "
            f"{pkg.seed_values()} (the {pkg.name} package's checker rejects them)"
        )
    bound = pkg.server_latency_ns if mapped in MAPPED_RULES else None
    latency = log.get("effective_target_latency_ns")
    if log.scenario == "Server" and bound and (latency is None or latency > bound):
        errors.append(
            f"{detail}: Server target latency {latency} ns exceeds {mapped}'s bound {bound} ns"
        )
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


def check_package(root: Path, submitter: str) -> tuple[list[str], list[str]]:
    """(errors, notes) for every package staged under root; no errors means our rules accept them."""
    errors: list[str] = []
    notes: list[str] = []
    staged = staged_packages(root, submitter)
    if not staged:
        found = sorted(p.parent.name + "/" + p.name for p in root.glob(f"*/{DIVISION}/*"))
        names = ", ".join(pkg.name for pkg in PACKAGES)
        return [
            f"{root}: no package ({names}) for submitter '{submitter}' (found: "
            f"{', '.join(found) or 'none'})"
        ], notes
    for pkg, sub in staged:
        check_one(pkg, sub, submitter, errors, notes)
    return errors, notes


def check_one(pkg: Package, sub: Path, submitter: str, errors: list[str], notes: list[str]) -> None:
    for link in sorted(p for p in sub.rglob("*") if p.is_symlink()):
        errors.append(f"{link}: a symlink in the package (pack would store a link, not a result)")
    stamped = (sub / NOT_FOR_SUBMISSION).is_file()
    if stamped:
        notes.append(f"{sub}: stamped NOT FOR SUBMISSION (built with --allow_test_runs)")
    if not (sub / "src").is_dir() or not any((sub / "src").iterdir()):
        errors.append(f"{sub / 'src'}: harness source folder missing or empty")
    elif (sub / "src" / "data").is_dir() and any(
        p.is_file() and p.name != "README.md" for p in (sub / "src" / "data").rglob("*")
    ):
        errors.append(
            f"{sub / 'src' / 'data'}: holds data files; the package must not "
            "redistribute the evaluation data (src/DATA.md says how to get it)"
        )
    mapping = _load_json(sub / "model_mapping.json", errors) or {}
    systems = sorted(p.name for p in (sub / "results").glob("*") if p.is_dir())
    if not systems:
        errors.append(f"{sub / 'results'}: no results")
    for system in systems:
        check_system(sub / "systems" / f"{system}.json", submitter, pkg, errors)
        for bench in sorted(p for p in (sub / "results" / system).iterdir() if p.is_dir()):
            if bench.name not in mapping:
                errors.append(f"{bench}: benchmark '{bench.name}' has no entry in model_mapping.json")
            for scen in sorted(p for p in bench.iterdir() if p.is_dir()):
                if scen.name not in pkg.scenarios:
                    errors.append(
                        f"{scen}: scenario folder '{scen.name}' does not belong in the "
                        f"{pkg.name} package ({', '.join(pkg.scenarios)})"
                    )
                    continue
                check_scenario(scen, mapping.get(bench.name, ""), pkg, stamped, errors, notes)
    for acc in accuracy_dirs(sub):
        log = acc / "mlperf_log_accuracy.json"
        if log.is_file() and log.stat().st_size > MAX_ACCURACY_LOG_BYTES:
            errors.append(f"{log}: not truncated ({log.stat().st_size} bytes > 10 KiB): run truncate")
        if log.is_file() and not read_hash(acc / "accuracy.txt"):
            errors.append(f"{acc / 'accuracy.txt'}: no hash= line (run truncate)")


# The official checkers per package: (checkout flag, script inside the checkout, arguments).
# --skip-dataset-size-check (current checkers only): the checker compares the accuracy run's sample
# count with the mapped model's dataset (SQuAD's 10833), which our tasks can never match.
# --submission-exceptions is not passed: it only forgives LoadGen's "built with uncommitted changes"
# error, which the released LoadGen wheel never logs; any LoadGen error must fail the check.
SKIP_DATASET_SIZE = "--skip-dataset-size-check"
OFFICIAL = {
    "edge": [
        ("checker", "tools/submission/submission_checker/main.py", [SKIP_DATASET_SIZE]),
        ("checker", "tools/submission/submission_checker_old.py", [SKIP_DATASET_SIZE]),
    ],
    "datacenter": [("checker_v4_1", "tools/submission/submission_checker.py", [])],
}


def run_official(
    checkouts: dict[str, Path | None], root: Path, submitter: str, extra: list[str], strict: bool = False
) -> int:
    """Every official checker whose checkout is given, on each staged package of its round; returns
    the first non-zero exit status (2 when a given checkout lacks the script), else 0."""
    status = 0
    for pkg, _ in staged_packages(root, submitter):
        for flag, script, args in OFFICIAL[pkg.name]:
            checkout = checkouts.get(flag)
            if checkout is None:
                print(f"{pkg.name} package: no --{flag} checkout given; official checker not run")
                continue
            path = checkout / script
            if not path.is_file():
                print(
                    f"official checker not found at {path} (pass a checkout of mlcommons/inference"
                    f"{' at tag v5.0' if flag == 'checker_v4_1' else ''})"
                )
                status = status or 2
                continue
            input_dir = pkg.root(root)
            csv = root / f"checker_summary-{pkg.name}-{path.stem}.csv"
            # the current checker is a package (relative imports): run as a module from the checkout
            how = (
                ["-m", script.removesuffix(".py").replace("/", ".")]
                if script.endswith("/main.py")
                else [str(path)]
            )
            cmd = [
                sys.executable,
                *how,
                "--input",
                str(input_dir),
                "--version",
                pkg.version,
                "--submitter",
                submitter,
                "--csv",
                str(csv),
                *(x for x in args if not (strict and x == SKIP_DATASET_SIZE)),
                *extra,
            ]
            print("+ " + " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, cwd=checkout).returncode
            print(f"{pkg.name} package, {script}: exit status {rc}", flush=True)
            status = status or rc
    return status
