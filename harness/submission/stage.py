"""`submission stage`: copy VALID runs from the run logs into open/<submitter>/ (v6.1 layout).

Refuses, listing every reason at once and writing nothing, when a run is INVALID, has LoadGen
errors, is a development run (submission_grade false), is an accuracy run on random weights, or
when a benchmark's performance and accuracy runs differ in git sha or user.conf. With
allow_test_runs, development runs (and a dirty tree) are accepted and the package is stamped
NOT FOR SUBMISSION (a file at the package root and a banner in every README).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from common.paths import REPO
from harness.run_record import RunRecord
from harness.submission.layout import (
    ACC_FILES,
    DEFAULT_MAPPED_MODEL,
    DIVISION,
    NOT_FOR_SUBMISSION,
    PERF_FILES,
    full_logs_dir,
    submitter_dir,
)
from harness.submission.runs import Run, find_runs, test01_dir
from harness.submission.system import build_system_json

# What staging copies out of a TEST01 folder (relative paths).
TEST01_COPIED = (
    "verify_accuracy.txt",
    "verify_performance.txt",
    *(f"performance/run_1/{name}" for name in PERF_FILES),
    "accuracy/mlperf_log_accuracy.json",
)
BANNER = (
    "**NOT FOR SUBMISSION**: built with --allow_test_runs from development runs (short or "
    "overridden durations, possibly a dirty tree). Do not upload this package."
)


def not_regular(folder: Path, names: tuple[str, ...]) -> list[str]:
    """`folder/name` entries that staging must not copy: symlinks (they would carry a file from
    elsewhere into the package) and anything else that is not a regular file."""
    problems = []
    for name in names:
        path = folder / name
        if path.is_symlink():
            problems.append(f"{path} is a symlink (to {os.readlink(path)}); staging copies regular "
                            "files only")  # fmt: skip
        elif path.exists() and not path.is_file():
            problems.append(f"{path} is not a regular file")
    return problems


def run_problems(run: Run, allow_test_runs: bool) -> list[str]:
    """Reasons `run` cannot be staged (empty when it can)."""
    where = f"{run.benchmark}/{run.scenario} {run.mode} run ({run.path})"
    problems = []
    needed = ACC_FILES if run.mode == "accuracy" else PERF_FILES
    odd = not_regular(run.path, (*needed, "user.conf", "results.json", "run_config.json"))
    problems += [f"{where}: {p}" for p in odd]
    missing = [f for f in (*needed, "user.conf") if not (run.path / f).exists()]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
    res = run.results
    if res is not None and res.nonfinite_samples:
        problems.append(f"{where}: {res.nonfinite_samples} samples returned NaN or Inf")
    if res is not None and res.interrupted:
        problems.append(f"{where}: the run was interrupted ({res.signal})")
    elif run.mode == "accuracy" and res is not None and not res.result_valid:
        problems.append(f"{where}: the accuracy run is INVALID (see its results.json)")
    if run.mode == "performance":
        validity = run.results.validity if run.results else "no results.json"
        if not run.valid:
            problems.append(f"{where}: result is INVALID ({validity}); only VALID runs can be staged")
    errors = run.loadgen_errors()
    if errors:
        problems.append(f"{where}: LoadGen reported {len(errors)} error(s), first: {errors[0]}")
    if not run.submission_grade and not allow_test_runs:
        problems.append(
            f"{where}: development run (submission_grade false: DURATION/COUNT overridden); rerun "
            "without them, or pass --allow_test_runs for a NOT FOR SUBMISSION test package"
        )
    if run.git_dirty and not allow_test_runs:
        problems.append(f"{where}: made from a dirty git tree; commit, then rerun")
    if run.mode == "accuracy" and run.model_kind == "random":
        problems.append(
            f"{where}: accuracy run on random weights (model_kind random); use trained weights"
        )
    return problems


def pair_problems(perf: Run, acc: Run) -> list[str]:
    """Performance and accuracy runs of one benchmark/scenario must come from the same code and conf."""
    where = f"{perf.benchmark}/{perf.scenario}"
    problems = []
    sha_p, sha_a = perf.git_sha, acc.git_sha
    if sha_p != sha_a:
        problems.append(f"{where}: git sha mismatch: performance run {sha_p}, accuracy run {sha_a}")
    if perf.user_conf_digest() != acc.user_conf_digest():
        problems.append(f"{where}: user.conf mismatch between the performance and accuracy runs")
    return problems


def test01_problems(perf: Run, test_dir: Path) -> list[str]:
    where = f"{perf.benchmark}/{perf.scenario} TEST01 ({test_dir})"
    problems = [f"{where}: {p}" for p in not_regular(test_dir, TEST01_COPIED)]
    for name in ("verify_accuracy.txt", "verify_performance.txt"):
        f = test_dir / name
        if not f.is_file() or "TEST PASS" not in f.read_text().splitlines():
            problems.append(f"{where}: {name} does not say TEST PASS")
    if (test_dir / "audit_run" / "run_config.json").is_file():
        sha = RunRecord.load(test_dir / "audit_run").git_sha
        if sha != perf.git_sha:
            problems.append(f"{where}: git sha mismatch: audit run {sha}, performance run "
                            f"{perf.git_sha}")  # fmt: skip
    return problems


def _copy(src_dir: Path, names: tuple[str, ...], dst_dir: Path) -> None:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src_dir / name).is_symlink():  # checked before staging; never follow one regardless
            raise ValueError(f"{src_dir / name} is a symlink; staging copies regular files only")
        shutil.copy2(src_dir / name, dst_dir / name, follow_symlinks=False)


def extract_source(sha: str, dst: Path, repo: Path = REPO) -> None:
    """`git archive <sha>` unpacked into `dst` (the harness source exactly as the runs used it),
    without dot-files and dot-folders (.ci/, .gitignore): the legacy checker rejects such names."""
    proc = subprocess.run(["git", "archive", "--format=tar", sha], cwd=repo, capture_output=True)
    if proc.returncode:
        raise RuntimeError(f"git archive {sha} failed: {proc.stderr.decode().strip()}")
    dst.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        members = [m for m in tar.getmembers() if not any(p.startswith(".") for p in Path(m.name).parts)]
        tar.extractall(dst, members=members, filter="data")
    (dst / "GIT_SHA").write_text(sha + "\n")


def readme(perf: Run, acc: Run, system: str, has_test01: bool, stamped: bool) -> str:
    c = perf
    flags = f"SCENARIO={perf.scenario} MODEL={c.model} TASK={c.task} BACKEND={c.backend}"
    flags += f" ENCODER={c.encoder}" if c.encoder else ""
    lines = [f"# {perf.benchmark} / {perf.scenario} on {system}", ""]
    lines += [BANNER, ""] if stamped else []
    lines += [
        f"Harness source: `src/` of this package = git sha `{c.git_sha}` (see src/GIT_SHA).",
        f"Model: `{c.model}` ({c.model_kind}), spec `{c.model_spec}`, "
        f"encoder `{c.encoder}`, task `{c.task}`, backend `{c.backend}` "
        f"{json.dumps(c.backend_options)}.",
        "",
        "## Reproduce (from src/, one LOG_DIR for every run)",
        "```",
        "make install",
        f"make run {flags} LOG_DIR=build/logs/submission",
        f"make run {flags} ACCURACY=1 LOG_DIR=build/logs/submission",
    ]
    if has_test01:
        lines.append(f"make compliance TEST=TEST01 {flags} LOG_DIR=build/logs/submission")
    lines += [
        "make submission SUBMITTER=<org> SYSTEM=<system> LOG_DIR=build/logs/submission",
        "```",
        "",
        "Recorded command lines:",
        "",
        f"- performance: `{shlex.join(c.command)}`",
        f"- accuracy: `{shlex.join(acc.command)}`",
        "",
        "user.conf in this folder is the copy the runs used; LoadGen's built-in mlperf.conf applies first.",
    ]
    return "\n".join(lines) + "\n"


def measurements(run: Run, overrides: dict[str, Any]) -> dict[str, Any]:
    dtype = run.dtype
    out = {
        "input_data_types": "int64 (token ids and attention mask from the XLM-R tokenizer)",
        "retraining": f"yes: task fine-tuning of the public XLM-R encoder ({run.model})",
        "starting_weights_filename": str(run.model_spec or run.model),
        "weight_data_types": dtype,
        "weight_transformations": "none" if dtype == "fp32" else f"cast to {dtype}",
    }
    out.update(overrides)
    return out


def stage(
    log_dirs: list[Path],
    submitter: str,
    system: str,
    root: Path,
    allow_test_runs: bool = False,
    mapping: dict[str, str] | None = None,
    system_overrides: dict[str, Any] | None = None,
    measurement_overrides: dict[str, Any] | None = None,
) -> tuple[int, list[str]]:
    """Build root/open/<submitter>/. Returns (benchmark-scenarios staged, problems); nothing is
    written when problems is non-empty."""
    runs = find_runs(log_dirs)
    problems: list[str] = []
    if not runs:
        return 0, [f"no run folders (run_config.json) under {', '.join(map(str, log_dirs))}"]
    pairs: list[tuple[Run, Run, Path | None]] = []
    for (bench, scen, mode), run in sorted(runs.items()):
        problems += run_problems(run, allow_test_runs)
        if mode != "performance":
            continue
        acc = runs.get((bench, scen, "accuracy"))
        if acc is None:
            problems.append(
                f"{bench}/{scen}: no accuracy run; run `make run ... ACCURACY=1` with the same LOG_DIR"
            )
            continue
        t01 = test01_dir(run)
        problems += pair_problems(run, acc) + (test01_problems(run, t01) if t01 else [])
        pairs.append((run, acc, t01))
    for (bench, scen, mode), _ in runs.items():
        if mode == "accuracy" and (bench, scen, "performance") not in runs:
            problems.append(f"{bench}/{scen}: accuracy run without a performance run")
    shas = sorted({str(p.git_sha) for p, _, _ in pairs})
    if len(shas) > 1:
        problems.append(f"runs come from {len(shas)} git shas {shas}; src/ holds one: rerun on one sha")
    if problems:
        return 0, problems

    sub = submitter_dir(root, submitter)
    for stale in (sub, full_logs_dir(root) / DIVISION / submitter):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        extract_source(shas[0], sub / "src")
    except RuntimeError as exc:
        shutil.rmtree(sub, ignore_errors=True)
        return 0, [str(exc)]
    (sub / "systems").mkdir(parents=True)
    desc = build_system_json(submitter, system, pairs[0][0], system_overrides)
    (sub / "systems" / f"{system}.json").write_text(json.dumps(desc, indent=2) + "\n")
    model_map = {
        p.benchmark: (mapping or {}).get(p.benchmark, DEFAULT_MAPPED_MODEL) for p, _, _ in pairs
    }
    (sub / "model_mapping.json").write_text(json.dumps(model_map, indent=2, sort_keys=True) + "\n")
    for perf, acc, t01 in pairs:
        dst = sub / "results" / system / perf.benchmark / perf.scenario
        _copy(perf.path, PERF_FILES, dst / "performance" / "run_1")
        _copy(acc.path, ACC_FILES, dst / "accuracy")
        shutil.copy2(perf.path / "user.conf", dst / "user.conf")
        meas = measurements(perf, measurement_overrides or {})
        (dst / "measurements.json").write_text(json.dumps(meas, indent=2) + "\n")
        (dst / "README.md").write_text(readme(perf, acc, system, t01 is not None, allow_test_runs))
        if t01:
            _copy(t01, ("verify_accuracy.txt", "verify_performance.txt"), dst / "TEST01")
            _copy(t01 / "performance" / "run_1", PERF_FILES, dst / "TEST01" / "performance" / "run_1")
            _copy(t01 / "accuracy", ("mlperf_log_accuracy.json",), dst / "TEST01" / "accuracy")
            (dst / "TEST01" / "accuracy" / "accuracy.txt").write_text(
                "TEST01 audit-run accuracy log (first elements compared with the accuracy run; "
                "see ../verify_accuracy.txt)\n"
            )
    if allow_test_runs:
        for where in (sub, root):
            (where / NOT_FOR_SUBMISSION).write_text(BANNER + "\n")
    else:
        (root / NOT_FOR_SUBMISSION).unlink(missing_ok=True)
    return len(pairs), []
