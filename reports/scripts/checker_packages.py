"""Build the edge and datacenter packages from short harness runs and run the official checkers on
them, plus a datacenter package whose Server run is overloaded (INVALID): the runs behind
reports/submission_checker.md.

    python reports/scripts/checker_packages.py --checker CHECKOUT --checker_v4_1 CHECKOUT_AT_V5_0

The runs are `harness run` itself (runner, LoadGen, run folders, results) with the test suite's
fault-injection backend (tests/fault_child.py `ok`: deterministic outputs, 1 ms per sample), short
(--duration), so every checker also reports the two rules short runs cannot meet (600 s minimum
duration, 10833 performance samples). Everything lands under build/checker-demo/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness.submission import compliance  # noqa: E402
from harness.submission.check import check_package, run_official  # noqa: E402
from harness.submission.layout import submitter_dir  # noqa: E402
from harness.submission.pack import pack  # noqa: E402
from harness.submission.stage import stage  # noqa: E402
from harness.submission.truncate import truncate  # noqa: E402

OUT = REPO / "build" / "checker-demo"
CHILD = (sys.executable, "-m", "tests.fault_child", "ok")
# --weights: not the recipe's zoo, so accuracy runs score every row (the fake QSL's 512 samples
# stand for the first XNLI rows, which the zoo's scoring would leave out as training rows)
WEIGHTS = ("--weights", "fault-injection-backend")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
BENCH = "xlmr-tiny-full-xnli"


def run(log_dir: Path, *flags: str) -> int:
    argv = [*CHILD, "--output_dir", str(log_dir), *WEIGHTS, *flags]
    print("+ " + " ".join(argv[1:]), flush=True)
    return subprocess.run(argv, cwd=REPO, env=ENV).returncode


def conf_with(line: str, name: str) -> Path:
    conf = OUT / name
    conf.write_text((REPO / "user.conf").read_text() + line + "\n")
    return conf


def test01(log_dir: Path, scenario: str, *flags: str) -> int:
    parser = argparse.ArgumentParser()
    compliance.configure_parser(parser)
    args = parser.parse_args(
        [
            "--scenario",
            scenario,
            "--model",
            "full",
            "--task",
            "xnli",
            "--output_dir",
            str(log_dir),
            "--duration",
            "20",
            "--run_args",
            " ".join([*WEIGHTS, *flags]),
        ]
    )
    compliance.RUNNER = CHILD
    return compliance.main(args)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checker", type=Path, help="a current checkout of mlcommons/inference")
    p.add_argument("--checker_v4_1", type=Path, help="a checkout of mlcommons/inference at tag v5.0")
    p.add_argument("--reuse_runs", action="store_true", help="stage the runs of the last call again")
    a = p.parse_args()
    edge, dc, overload = OUT / "logs-edge", OUT / "logs-datacenter", OUT / "logs-overload"
    if a.reuse_runs:
        for old in ("submission", "submission-overloaded", "submission_full_accuracy_logs"):
            shutil.rmtree(OUT / old, ignore_errors=True)
        return package(a, edge, dc, overload)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    fast = conf_with("full.Offline.target_qps = 3000", "offline-3000qps.conf")
    # Server: min_duration from user.conf instead of --duration, whose max_duration = min_duration
    # makes LoadGen's Server issue thread end with an error record ("Max test duration reached")
    server = conf_with(
        "full.Server.target_qps = 20\nfull.Server.min_duration = 60000", "server-20qps.conf"
    )
    heavy = conf_with(
        "full.Server.target_qps = 5000\nfull.Server.min_duration = 20000", "server-5000qps.conf"
    )
    for scenario in ("SingleStream", "Offline"):
        run(edge, "--scenario", scenario, "--duration", "20", "--user_conf", str(fast))
        run(edge, "--scenario", scenario, "--accuracy", "--user_conf", str(fast))
        rc = test01(edge, scenario)  # a development audit: the performance run's user.conf copy
        print(f"TEST01 {scenario}: exit {rc}", flush=True)
        if rc:  # two short timings of a busy shared machine: kept aside, the package goes without
            t01 = edge / "tiny" / "pytorch" / "full" / "xnli" / scenario / "TEST01"
            t01.rename(OUT / f"TEST01-{scenario}-failed")
    v41 = ("--seeds", "v4.1", "--user_conf", str(server))
    run(dc, "--scenario", "Server", *v41)
    run(dc, "--scenario", "Server", "--accuracy", *v41)
    run(
        overload,
        "--scenario",
        "Server",
        "--seeds",
        "v4.1",
        "--user_conf",
        str(heavy),
        "--allow_invalid",
    )
    return package(a, edge, dc, overload)


def package(a: argparse.Namespace, edge: Path, dc: Path, overload: Path) -> int:
    root = OUT / "submission"
    count, problems = stage([edge, dc], "Demo", "cpu2", root, allow_test_runs=True)
    print(f"stage: {count} result(s)", *problems, sep="\n", flush=True)
    if problems:
        return 1
    truncate(root, "Demo")
    errors, notes = check_package(root, "Demo")
    print("our check:", *errors, *notes, sep="\n", flush=True)
    print("packed:", *pack(root, "Demo"), sep="\n", flush=True)
    checkouts = {"checker": a.checker, "checker_v4_1": a.checker_v4_1}
    run_official(checkouts, root, "Demo", [])
    # the overloaded run in place of the VALID Server run, as if staging had let it through
    bad = OUT / "submission-overloaded"
    shutil.copytree(root, bad)
    dest = submitter_dir(bad / "datacenter", "Demo") / "results" / "cpu2" / BENCH / "Server"
    src = overload / "tiny" / "pytorch" / "full" / "xnli" / "Server" / "performance"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        shutil.copy2(src / name, dest / "performance" / "run_1" / name)
    errors, _ = check_package(bad, "Demo")
    print("our check (overloaded):", *errors, sep="\n", flush=True)
    run_official({"checker_v4_1": a.checker_v4_1}, bad, "Demo", [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
