"""The one launcher (harness/launch.py) and the one reader of run folders (harness/run_record.py)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from common.paths import REPO
from harness import find_peak
from harness.config import RunConfig, add_run_arguments
from harness.launch import child_argv, launch
from harness.run_folder import RunFolder
from harness.run_record import RunRecord


def parse(argv: list[str]) -> RunConfig:
    """What the child resolves from `argv` (after `python -m harness run`)."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return RunConfig.from_args(parser.parse_args(argv))


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"encoder": "base", "weights": "random", "duration_s": 2.5, "retime": True},
        # equal to the dataclass default but not to what the child layers for base: must be passed
        {"encoder": "base", "batch_overhead_tokens": 192},
        {"device": "cuda:1", "encoder": "large", "dtype": "bf16", "scenario": "Server"},
        {
            "accuracy": True,
            "count": 7,
            "languages": "en,de",
            "max_wait_ms": 0.125,
            "allow_invalid": True,
        },
        {
            "output_dir": "/tmp/x y",
            "user_conf": str(REPO / "audit.conf"),
            "pad_to": 128,
            "token_budget": 0,
        },
    ],
)
def test_the_child_resolves_the_parents_config(given):
    cfg = RunConfig.layered(**given)
    argv = child_argv(cfg)
    assert argv[:4] == [sys.executable, "-m", "harness", "run"]
    assert parse(argv[4:]) == cfg
    assert len(argv) - 4 <= 2 * len(given)  # only what differs from the child's own resolution


def test_every_run_setting_has_a_flag():
    """A RunConfig field without a `harness run` flag could not reach a child run."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in fields(RunConfig)} <= dests


def test_launch_runs_the_child_and_reads_its_run_folder(tmp_path):
    fake = tmp_path / "fake_run.py"
    fake.write_text(
        "import json, sys\nfrom pathlib import Path\n"
        "argv = sys.argv[1:]\nout = Path(argv[argv.index('--output_dir') + 1])"
        " / 'tiny/pytorch/full/xnli/Offline/performance'\n"
        "out.mkdir(parents=True)\nprint('child says hi')\n"
        "(out / 'run_config.json').write_text(json.dumps({'model': 'full', 'task': 'xnli', "
        "'scenario': 'Offline', 'mode': 'performance', 'backend': 'pytorch', 'backend_options': "
        "{'dtype': 'int8'}, 'command': sys.argv}))\n"
        "(out / 'results.json').write_text(json.dumps({'result_valid': True, "
        "'samples_per_second': 12.5, 'latency_ns': {'p90': 3e6}, 'probe': {'samples': 4}}))\n"
    )
    cfg = RunConfig.layered(output_dir=tmp_path / "runs", threads=2)
    run = launch(
        cfg, tmp_path / "logs" / "run.log", program=[sys.executable, str(fake)], more_flags=["--x"]
    )
    assert run.rc == 0 and run.run_dir == RunFolder.plan(cfg).path
    assert run.argv[2:] == ["--output_dir", str(tmp_path / "runs"), "--threads", "2", "--x"]
    log = (tmp_path / "logs" / "run.log").read_text()
    assert log.startswith(" ".join(run.argv) + "\n\n") and "child says hi" in log
    rec = run.record
    assert (rec.model, rec.scenario, rec.mode, rec.backend_label) == (
        "full",
        "Offline",
        "performance",
        "pytorch-int8",
    )
    assert run.results.samples_per_second == 12.5 and run.results.latency_ms("p90") == 3.0
    assert run.results.retimed == {"samples": 4} and rec.valid


def test_launch_needs_a_known_run_folder():
    with pytest.raises(ValueError, match="output_dir"):
        launch(RunConfig())


def test_record_reads_what_accuracy_json_holds(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run_config.json").write_text(json.dumps(
        {"model": "adapter", "task": "tydiqa", "scenario": "Offline", "mode": "accuracy",
         "backend": "pytorch"}
    ))  # fmt: skip
    (folder / "accuracy.json").write_text(json.dumps(
        {"exact_match": 10.0, "f1": 20.0, "per_language": {"en": {"exact_match": 5.0, "f1": 8.0}}}
    ))  # fmt: skip
    rec = RunRecord.load(folder)
    assert rec.results is None and not rec.valid  # no results.json: the run did not finish
    assert rec.metric("f1") == 20.0 and rec.per_language("f1") == {"en": 8.0}
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        RunRecord.load(tmp_path)


# Outside the launcher, no module builds a `harness run` command line or a run folder's path
# (<MODEL>/<TASK>/<Scenario>/<mode>/ with the files the runner writes there).
_ARGV = re.compile(r"""["']-m["']\s*,\s*["']harness["']|["']harness["']\s*,\s*["']run["']""")
_RUN_PATH = re.compile(
    r"""\.model\s*/\s*\w*\.?task\b"""
    r"""|["'](performance|accuracy)["']\s*/\s*["'](results\.json|run_config\.json|mlperf_log_\w+\.\w+)["']"""
)
# find_peak keeps its trials in <output_dir>/<MODEL>/<TASK>/trial_NN/ (each trial's run folder is
# made by the launcher below that): its own folder, not a run folder
ALLOWED = {
    "harness/find_peak.py": 'return Path(cfg.output_dir or BUILD / "peak") / cfg.model / cfg.task'
}


def test_no_module_but_the_launcher_builds_a_run_command_or_folder_path():
    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("tests/", "build/", ".venv/")) or rel == "harness/launch.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if (_ARGV.search(line) or _RUN_PATH.search(line)) and ALLOWED.get(rel) != line.strip():
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []


def test_find_peak_offline_resizes_a_too_short_trial(tmp_path, monkeypatch):
    """No target in user.conf: LoadGen's query is tiny and its rate mostly start-up (INVALID, min
    duration); find_peak sizes the next trial from that rate until one lasts min duration."""
    from harness.run_record import Results

    rates = iter([39.4, 90.0, 108.0])  # what each trial measures
    seen = []

    def fake_trial(cfg, lines, folder):
        seen.append(list(lines))
        sps = next(rates)
        short = len(seen) < 3
        return Results(result_valid=not short, samples_per_second=sps, scenario="Offline",
                       constraints_failed=("min duration",) if short else ())  # fmt: skip

    monkeypatch.setattr(find_peak, "trial", fake_trial)
    cfg = parse(["--encoder", "e5-small", "--scenario", "Offline", "--duration", "10"])
    args = argparse.Namespace()
    assert find_peak.offline_peak(cfg, args, tmp_path) == 0
    assert seen == [
        [],
        ["full-e5-small.Offline.target_qps = 78.80"],
        ["full-e5-small.Offline.target_qps = 180.00"],
    ]
    record = json.loads((tmp_path / "find_peak.json").read_text())
    assert record["samples_per_second"] == 108.0 and record["valid"] is True
    assert record["user_conf_line"] == "full-e5-small.Offline.target_qps = 118.8"
    assert [t["valid"] for t in record["trials"]] == [False, False, True]


@pytest.mark.parametrize(
    "flags, kind, expected",
    [
        (["--encoder", "e5-small"], "real", {"first_row": 1245}),  # the recipe's zoo: held-out rows only
        (["--encoder", "tiny", "--task", "pawsx"], "tiny", {"first_row": 1000}),
        (["--encoder", "e5-small", "--task", "tydiqa"], "real", {}),  # trained on train-en, not dev
        (
            ["--encoder", "e5-small", "--weights", "/ckpt"],
            "real",
            {},
        ),  # the user's checkpoint: every row
        (["--encoder", "base", "--weights", "random"], "random", {}),
    ],
)
def test_run_task_options(flags, kind, expected):
    from harness.runner import task_options

    class Served:
        model_kind = kind

        def task_options(self):
            return {}

    assert task_options(parse(flags), Served()) == expected


def test_find_peak_server_never_reports_an_untried_bound(tmp_path, monkeypatch):
    """--low is assumed VALID and never run: when every trial is INVALID there is no peak to report."""
    from harness.run_record import Results

    offered = []

    def fake_trial(cfg, lines, folder):
        offered.append(float(lines[0].rsplit("=", 1)[1]))
        return Results(result_valid=offered[-1] <= valid_up_to, scenario="Server")

    monkeypatch.setattr(find_peak, "trial", fake_trial)
    cfg = parse(["--encoder", "e5-small", "--scenario", "Server", "--duration", "60"])
    args = argparse.Namespace(low=16.0, high=80.0, steps=3)
    valid_up_to = 10.0  # below every trial
    assert find_peak.server_peak(cfg, args, tmp_path) == 1
    record = json.loads((tmp_path / "find_peak.json").read_text())
    assert offered == [48.0, 32.0, 24.0]
    assert record["peak_valid_qps"] is None and record["user_conf_line"] is None
    offered.clear()
    valid_up_to = 40.0
    assert find_peak.server_peak(cfg, args, tmp_path) == 0
    record = json.loads((tmp_path / "find_peak.json").read_text())
    assert offered == [48.0, 32.0, 40.0] and record["peak_valid_qps"] == 40.0
    assert record["user_conf_line"] == "full-e5-small.Server.target_qps = 40.0"


@pytest.mark.parametrize("scenario", ["Server", "Offline"])
@pytest.mark.parametrize(("rc", "expected"), [(3, 3), (2, 2), (143, 143), (-9, 2)])
def test_find_peak_stops_at_a_trial_that_measured_nothing(
    tmp_path, monkeypatch, capsys, scenario, rc, expected
):
    """A trial run that failed (here a user.conf LoadGen cannot read: exit 3) used to count as an
    INVALID load, and the search bisected on down to "no trial was VALID". The search stops at the
    first such trial with its exit status, runs no other trial and derives no target."""
    from harness.launch import Launched

    launched = []

    def fake_launch(cfg):
        launched.append(cfg.output_dir)
        return Launched(argv=[], rc=rc, run_dir=Path(cfg.output_dir), record=None)

    monkeypatch.setattr(find_peak, "launch", fake_launch)
    parser = argparse.ArgumentParser()
    find_peak.configure_parser(parser)
    args = parser.parse_args(
        ["--encoder", "e5-small", "--scenario", scenario, "--output_dir", str(tmp_path), "--high", "8"]
    )
    assert find_peak.main(args) == expected
    assert len(launched) == 1
    out = tmp_path / "full" / "xnli"
    assert not (out / "find_peak.json").exists()
    err = capsys.readouterr().err
    assert err.strip() == (
        f"find_peak: the trial in {launched[0]} ended with exit status {rc} "
        f"({find_peak.describe(rc)}) without a measurement (its output above says why); the "
        "search stops, no target derived"
    )


def test_a_new_find_peak_search_sets_the_earlier_one_aside(tmp_path, monkeypatch):
    """A search at other loads must not mix with an earlier one's trials (the study collects every
    run folder under its root): the earlier trials and find_peak.json move to
    superseded/<when they ended>/, which no collector reads; each trial records its p99."""
    import os
    import time

    from harness.run_record import Results, find_records

    def run_folder(trial: Path, qps: float, valid: bool) -> None:
        folder = trial / "full" / "xnli" / "Server" / "performance"
        folder.mkdir(parents=True)
        (folder / "run_config.json").write_text(json.dumps({"model": "full", "task": "xnli",
            "scenario": "Server", "mode": "performance", "backend": "pytorch"}))  # fmt: skip
        (folder / "results.json").write_text(json.dumps({"result_valid": valid, "target_qps": qps}))

    out = tmp_path / "full" / "xnli"  # find_peak.search_folder: <output_dir>/<model>/<task>
    run_folder(out / "trial_00_31", 31.4, True)
    (out / "find_peak.json").write_text('{"peak_valid_qps": 31.4}')
    offline = out / "Offline" / "performance"  # a run of the same output_dir (the study's layout)
    offline.mkdir(parents=True)
    (offline / "run_config.json").write_text(json.dumps({"model": "full", "task": "xnli",
        "scenario": "Offline", "mode": "performance", "backend": "pytorch"}))  # fmt: skip
    (offline / "results.json").write_text(json.dumps({"result_valid": True, "target_qps": 118.0}))
    ended = time.mktime((2026, 11, 29, 14, 0, 0, 0, 0, -1))
    for path in out.rglob("*"):
        os.utime(path, (ended, ended))

    def fake_trial(cfg, lines, folder):
        q = float(lines[0].rsplit("=", 1)[1])
        run_folder(folder, q, q <= 20)
        return Results(
            result_valid=q <= 20,
            scenario="Server",
            latency_ns={"p99": 1e6 * (100 if q <= 20 else 150)},
            constraints_failed=() if q <= 20 else ("latency",),
        )

    monkeypatch.setattr(find_peak, "trial", fake_trial)
    parser = argparse.ArgumentParser()
    find_peak.configure_parser(parser)
    args = parser.parse_args(["--encoder", "e5-small", "--duration", "60", "--output_dir", str(tmp_path),
                              "--low", "10", "--high", "30", "--steps", "2"])  # fmt: skip
    assert find_peak.main(args) == 0
    earlier = out / "superseded" / time.strftime("%Y%m%d-%H%M%S", time.localtime(ended))
    assert json.loads((earlier / "find_peak.json").read_text()) == {"peak_valid_qps": 31.4}
    assert (earlier / "trial_00_31" / "full" / "xnli" / "Server" / "performance").is_dir()
    assert sorted(p.name for p in out.iterdir()) == [
        "Offline",
        "find_peak.json",
        "superseded",
        "trial_00_20",
        "trial_01_25",
    ]
    assert json.loads((out / "find_peak.json").read_text())["trials"] == [
        {"target_qps": 20.0, "p99_ms": 100.0, "constraints_failed": [], "valid": True},
        {"target_qps": 25.0, "p99_ms": 150.0, "constraints_failed": ["latency"], "valid": False},
    ]
    collected = lambda: sorted(r.results.target_qps for r in find_records(tmp_path))  # noqa: E731
    assert collected() == [20.0, 25.0, 118.0]  # not the earlier search's 31.4
    assert find_peak.main(args) == 0  # a third search: the second one is kept beside the first
    assert len(list((out / "superseded").iterdir())) == 2
    assert collected() == [20.0, 25.0, 118.0]


def test_find_peak_server_runs_a_trial_short_of_queries_again_for_longer(tmp_path, monkeypatch):
    """A development trial that met its latency bound but failed only early stopping (too few queries
    at a low load) is decided by longer trials at the same load, each lasting for the queries LoadGen
    said it needed x the margin, repeated while the shortfall shrinks (at most LONGER_TRIALS, never
    past MAX_TRIAL_S); any other INVALID trial is final."""
    from harness.run_record import Results

    runs = []
    shortfalls = []  # the queries short of each trial at 32 QPS in turn; none left: VALID

    def fake_trial(cfg, lines, folder):
        q = float(lines[0].rsplit("=", 1)[1])
        runs.append((q, round(cfg.duration_s, 2), folder.name))
        if q > 40:  # over the latency bound: final
            return Results(result_valid=False, constraints_failed=("latency",))
        if not shortfalls:
            return Results(result_valid=True)
        return Results(result_valid=False, constraints_failed=("early stopping",),
                       early_stopping_queries_short=shortfalls.pop(0))  # fmt: skip

    def search(*short):
        runs.clear()
        shortfalls[:] = short
        assert find_peak.server_peak(cfg, args, tmp_path) in (0, 1)
        return json.loads((tmp_path / "find_peak.json").read_text())["trials"][1]

    monkeypatch.setattr(find_peak, "trial", fake_trial)
    cfg = parse(["--encoder", "e5-small", "--scenario", "Server", "--duration", "60"])
    args = argparse.Namespace(low=16.0, high=80.0, steps=2)  # trials at 48, then 32 QPS
    d1 = 60.0 + find_peak.EARLY_STOPPING_MARGIN * 500 / 32.0  # 78.75 s
    d2 = d1 + find_peak.EARLY_STOPPING_MARGIN * 200 / 32.0  # 86.25 s

    # one longer trial decides
    assert search(500) == {"target_qps": 32.0, "longer_s": [78.8], "valid": True}
    assert runs == [(48.0, 60.0, "trial_00_48"), (32.0, 60.0, "trial_01_32"),
                    (32.0, d1, "trial_01_32_longer")]  # fmt: skip
    # a shrinking shortfall: longer again, from the last trial's duration
    assert search(500, 200) == {"target_qps": 32.0, "longer_s": [78.8, 86.2], "valid": True}
    assert runs[3] == (32.0, round(d2, 2), "trial_01_32_longer2")
    # a shortfall that does not shrink ends the trials: INVALID at that load
    assert search(500, 200, 200) == {"target_qps": 32.0, "longer_s": [78.8, 86.2], "valid": False}
    assert len(runs) == 4
    # at most LONGER_TRIALS longer trials
    assert search(900, 800, 700, 600, 500)["valid"] is False
    assert len(runs) == 2 + find_peak.LONGER_TRIALS and shortfalls == [500]
    # none past MAX_TRIAL_S; none after an official (600 s) run
    big = Results(result_valid=False, constraints_failed=("early stopping",),
                  early_stopping_queries_short=100_000)  # fmt: skip
    assert find_peak.longer_trial_s(60.0, big, 32.0) == find_peak.MAX_TRIAL_S
    assert find_peak.longer_trial_s(600.0, big, 32.0) is None  # already as long as allowed
    official = parse(["--encoder", "e5-small", "--scenario", "Server"])  # no --duration: 600 s runs
    assert find_peak.longer_trial_s(official.duration_s, big, 32.0) is None


def test_find_peak_is_a_core_command_and_refuses_singlestream(capsys):
    """`python -m harness find_peak` (make find_peak) runs harness/find_peak.py itself, with no
    forward to research; a SingleStream search is a bad input (exit 3) naming what it measures."""
    from harness.cli import COMMANDS, main
    from research.cli import COMMANDS as RESEARCH  # the test may import research; the core may not

    assert COMMANDS["find_peak"][0] == "harness.find_peak"
    assert "find_peak" not in RESEARCH
    assert main(["find_peak", "--scenario", "SingleStream"]) == 3
    assert "find_peak: measures Server and Offline" in capsys.readouterr().err
