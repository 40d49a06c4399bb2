"""TEST01: first-element accuracy verification, its scored fallback, 10% performance check,
audit-file hygiene."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.paths import DATA
from harness.config import RunConfig
from harness.results import Results
from harness.submission import compliance
from tests.test_submission import ENV, RUNNER, head_sha, write_fake_runner


def _acc_log(path: Path, firsts: dict[int, float]) -> Path:
    entries = [
        {"seq_id": i, "qsl_idx": idx, "data": np.array([v, 7.0], np.float32).tobytes().hex().upper()}
        for i, (idx, v) in enumerate(firsts.items())
    ]
    path.write_text(json.dumps(entries))
    return path


def _detail(path: Path, scenario: str, result: float, validity: str = "VALID") -> Path:
    key = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss"}[scenario]
    recs = {"effective_scenario": scenario, "result_validity": validity, key: result}
    path.write_text("".join(f":::MLLOG {json.dumps({'key': k, 'value': v})}\n" for k, v in recs.items()))
    return path


def test_accuracy_pass_on_identical_first_elements(tmp_path):
    ref = _acc_log(tmp_path / "ref.json", {0: 1.5, 1: 2.5, 2: 3.5})
    ok, text = compliance.verify_accuracy(ref, _acc_log(tmp_path / "t.json", {2: 3.5, 0: 1.5}))
    assert ok and text == (
        f"reference (accuracy run): {ref}\ntest (audit run): {tmp_path / 't.json'}\ndtype = float32\n"
        "num_acc_log_entries = 3\nnum_perf_log_qsl_idx_match = 2\nnum_perf_log_data_mismatch = 0\n"
        "num_missing_qsl_idxs = 0\nTEST PASS\n"
    )


def test_accuracy_fails_when_no_qsl_idx_overlaps(tmp_path):
    """An audit log whose samples are all missing from the accuracy run compared nothing: no
    mismatch, and still TEST FAIL (the check needs at least one matched sample)."""
    ref = _acc_log(tmp_path / "ref.json", {0: 1.5, 1: 2.5})
    ok, text = compliance.verify_accuracy(ref, _acc_log(tmp_path / "t.json", {7: 1.5, 9: 2.5}))
    assert not ok and text.splitlines()[-1] == "TEST FAIL"
    assert "num_perf_log_qsl_idx_match = 0" in text and "num_perf_log_data_mismatch = 0" in text
    assert "num_missing_qsl_idxs = 2" in text


def test_accuracy_fail_when_one_first_element_differs(tmp_path):
    ref = _acc_log(tmp_path / "ref.json", {0: 1.5, 1: 2.5, 2: 3.5})
    ok, text = compliance.verify_accuracy(ref, _acc_log(tmp_path / "t.json", {0: 1.5, 1: 2.25}))
    assert not ok and text.splitlines()[-1] == "TEST FAIL"
    assert "qsl_idx 1: accuracy run 2.5, audit 2.25" in text


def test_performance_within_and_beyond_10_percent(tmp_path):
    ref = _detail(tmp_path / "ref.txt", "Offline", 1000.0)
    assert compliance.verify_performance(ref, _detail(tmp_path / "a.txt", "Offline", 1090.0))[0]
    ok, text = compliance.verify_performance(ref, _detail(tmp_path / "b.txt", "Offline", 880.0))
    assert not ok and "off by 12.0%" in text and text.splitlines()[-1] == "TEST FAIL"
    ok, text = compliance.verify_performance(
        ref, _detail(tmp_path / "c.txt", "Offline", 1000.0, "INVALID")
    )
    assert not ok and "INVALID" in text


@pytest.mark.parametrize("test", [900.0, 1000 * (1 + 0.10)])
def test_performance_passes_at_exactly_10_percent_either_way(tmp_path, test):
    ref = _detail(tmp_path / "ref.txt", "Offline", 1000.0)
    ok, text = compliance.verify_performance(ref, _detail(tmp_path / "t.txt", "Offline", test))
    assert ok and text.splitlines()[-1] == "TEST PASS"


def test_audit_config_removed_even_when_the_run_fails(tmp_path, monkeypatch):
    runner = write_fake_runner(tmp_path)
    seen = tmp_path / "seen.txt"
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(compliance.tempfile, "tempdir", str(temp))
    with pytest.raises(RuntimeError, match="exit status 3"):
        compliance.run_audit(
            RunConfig(model="adapter-squad"), ["--fail", "--seen_file", str(seen)], runner
        )
    present, workdir = seen.read_text().split()
    assert present == "True"  # the runner saw audit.config in its working directory ...
    assert not Path(workdir).exists()  # ... which is gone afterwards
    assert not (Path.cwd() / "audit.config").exists()
    assert list(temp.iterdir()) == []  # neither the working folder nor the result folder is left


def test_an_audit_run_that_leaves_no_loadgen_logs_is_a_failure(tmp_path, monkeypatch):
    class Ended:
        rc = 0
        run_dir = tmp_path / "empty"

    monkeypatch.setattr(compliance, "launch", lambda *args, **kwargs: Ended())
    with pytest.raises(RuntimeError) as err:
        compliance.run_audit(RunConfig(model="full"), [], ("python",))
    assert str(err.value) == f"audit run left no LoadGen logs in {tmp_path / 'empty'}"


def _args(log_dir: Path, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compliance.configure_parser(parser)
    argv = [
        "--scenario",
        "Offline",
        "--model",
        "adapter-squad",
        "--task",
        "xnli",
        "--output_dir",
        str(log_dir),
    ]
    more = [x for k, v in kw.items() for x in ([f"--{k}"] if v is True else [f"--{k}", v])]
    return parser.parse_args(argv + more)


def _runs(d: Path) -> None:
    for extra in ([], ["--accuracy"]):
        subprocess.run(
            [sys.executable, str(RUNNER), "--output_dir", str(d), "--git_sha", head_sha(), *extra],
            check=True,
            cwd=d.parent,
            env=ENV,
        )


def test_compliance_command_end_to_end(tmp_path, monkeypatch, capsys):
    d = tmp_path / "D"
    assert compliance.main(_args(d)) == 3  # bad input: the runs it compares with are missing
    assert "no accuracy run at" in capsys.readouterr().out
    assert compliance.main(_args(d, model="../../x")) == 3  # a name that would escape LOG_DIR
    assert "unknown model '../../x'" in capsys.readouterr().out
    _runs(d)
    scen = d / "tiny" / "pytorch" / "adapter-squad" / "xnli" / "Offline"
    monkeypatch.setattr(compliance, "RUNNER", write_fake_runner(tmp_path))
    perf = f"--perf_from {scen / 'performance'}"  # the audit reports the performance run's timing
    t01 = scen / "TEST01"
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(compliance.tempfile, "tempdir", str(temp))
    assert compliance.main(_args(d, run_args=perf)) == 0
    assert list(temp.iterdir()) == []  # the audit run's working copies are gone
    verify = (t01 / "verify_accuracy.txt").read_text() + (t01 / "verify_performance.txt").read_text()
    assert verify.splitlines()[-1] == "TEST PASS" and verify.count("TEST PASS") == 2
    out = capsys.readouterr().out
    assert out.endswith(
        f"{verify}Accuracy check pass: True\nPerformance check pass: True\nTEST01 results in {t01}\n"
    )
    # the audit run is kept for --verify_only, which checks it again without running it; it ran
    # with the audit file staged in its working folder, which is gone
    assert (t01 / "audit_run" / "mlperf_log_accuracy.json").is_file()
    staged = Path(json.loads((t01 / "audit_run" / "run_config.json").read_text())["audit_conf"])
    assert staged.name == "audit.config" and staged.parent.parent == temp
    assert not staged.parent.exists()
    echo = f"+ (cwd {staged.parent}) "  # the audit run's command line, as run
    (line,) = [ln for ln in out.splitlines() if ln.startswith(echo)]
    assert f"--audit_conf {staged}" in line and line.endswith(perf)  # with the runner's own flags
    assert f"{RUNNER} " in line  # the runner it was given, not the default one
    monkeypatch.setattr(compliance, "RUNNER", tmp_path / "no-such-runner")
    assert compliance.main(_args(d, verify_only=True)) == 0
    assert capsys.readouterr().out.endswith(
        f"Accuracy check pass: True\nPerformance check pass: True\nTEST01 results in {t01}\n"
    )
    assert (t01 / "audit_run" / "mlperf_log_accuracy.json").is_file()
    for rel in ("performance/run_1/mlperf_log_detail.txt", "accuracy/mlperf_log_accuracy.json"):
        assert (t01 / rel).is_file()
    # the deterministic pass needs no fallback files (the checker then expects exactly these two)
    assert sorted(p.name for p in (t01 / "accuracy").iterdir()) == [
        "accuracy.txt",
        "mlperf_log_accuracy.json",
    ]
    # a real accuracy.txt: the audit's responses scored by XNLI's script. The fake's logits are
    # [qsl_idx, 1, 2]: class 0 for every qsl_idx >= 3 (English rows); the first 2.5% or so are
    # samples 0-2 at class 2.
    final = json.loads((t01 / "accuracy" / "accuracy.txt").read_text().splitlines()[-1])
    logged = {
        e["qsl_idx"] for e in json.loads((t01 / "accuracy" / "mlperf_log_accuracy.json").read_text())
    }
    assert final["accuracy"] == pytest.approx(_xnli_accuracy(logged, offset=0.0))


def _xnli_accuracy(indices: set[int], offset: float, flip: bool = False) -> float:
    """XNLI accuracy (x100) of the fake's responses on `indices`, computed here from the
    labels (a second, independent reading of the data file: qsl_idx 0-399 are the first rows of
    Arabic, the first language in the task's order)."""
    with gzip.open(DATA / "xnli" / "dev-ar.tsv.gz", "rt", encoding="utf-8") as f:
        labels = [line.rstrip("\n").split("\t")[2] for line in f]
    names = ["entailment", "neutral", "contradiction"]
    hits = 0
    for i in indices:
        logits = [float(i % 3 == k) for k in range(3)] if flip else [i + offset, 1.0, 2.0]
        hits += names[max(range(3), key=lambda k: (logits[k], -k))] == labels[i]
    return 100.0 * hits / len(indices)


def test_fallback_passes_when_outputs_differ_but_scores_agree(tmp_path, monkeypatch, capsys):
    """Responses whose first elements differ (offset 0.5) but whose predictions are the same: the
    deterministic check fails, the fallback's two scores are equal, so TEST01 passes (exit 0) with
    baseline_accuracy.txt and compliance_accuracy.txt beside the audit log, as the checker expects."""
    d = tmp_path / "D"
    _runs(d)
    scen = d / "tiny" / "pytorch" / "adapter-squad" / "xnli" / "Offline"
    monkeypatch.setattr(compliance, "RUNNER", write_fake_runner(tmp_path))
    args = _args(d, run_args=f"--perf_from {scen / 'performance'} --offset 0.5")
    assert compliance.main(args) == 0
    t01 = scen / "TEST01"
    assert (
        "Accuracy check pass: True (fallback)\nPerformance check pass: True\n" in capsys.readouterr().out
    )
    lines = (t01 / "verify_accuracy.txt").read_text().splitlines()
    assert (
        "TEST FAIL" in lines and lines[-1] == "FALLBACK PASS" and "delta = 0.0000% (bound 1.0%)" in lines
    )
    assert sorted(p.name for p in (t01 / "accuracy").iterdir()) == [
        "accuracy.txt",
        "baseline_accuracy.txt",
        "compliance_accuracy.txt",
        "mlperf_log_accuracy.json",
    ]
    base = json.loads((t01 / "accuracy" / "baseline_accuracy.txt").read_text().splitlines()[-1])
    comp = json.loads((t01 / "accuracy" / "compliance_accuracy.txt").read_text().splitlines()[-1])
    logged = {
        e["qsl_idx"] for e in json.loads((t01 / "accuracy" / "mlperf_log_accuracy.json").read_text())
    }
    assert base["accuracy"] == comp["accuracy"] == pytest.approx(_xnli_accuracy(logged, 0.0))
    assert compliance.test01_accuracy_passed(t01) == (True, "")


def test_fallback_fails_when_the_scores_differ(tmp_path, monkeypatch):
    """Other logits (one-hot at qsl_idx mod 3) change the predictions: the deterministic check and the
    fallback both fail, and so does TEST01 (exit 1); staging and our check then refuse it."""
    d = tmp_path / "D"
    _runs(d)
    scen = d / "tiny" / "pytorch" / "adapter-squad" / "xnli" / "Offline"
    monkeypatch.setattr(compliance, "RUNNER", write_fake_runner(tmp_path))
    assert compliance.main(_args(d, run_args=f"--perf_from {scen / 'performance'} --flip")) == 1
    t01 = scen / "TEST01"
    lines = (t01 / "verify_accuracy.txt").read_text().splitlines()
    assert "TEST FAIL" in lines and lines[-1] == "FALLBACK FAIL"
    logged = {
        e["qsl_idx"] for e in json.loads((t01 / "accuracy" / "mlperf_log_accuracy.json").read_text())
    }
    expected = (_xnli_accuracy(logged, 0.0), _xnli_accuracy(logged, 0.0, flip=True))
    assert expected[0] != expected[1]
    assert (
        f"baseline accuracy = {expected[0]}" in lines and f"compliance accuracy = {expected[1]}" in lines
    )
    passed, why = compliance.test01_accuracy_passed(t01)
    assert not passed and "the fallback's accuracy differs by" in why
    assert compliance.main(_args(d, verify_only=True)) == 1  # the kept audit run fails again


def test_fallback_with_no_overlapping_samples_fails(tmp_path):
    """Zero overlap between the audit log and the accuracy run: nothing to compare, FALLBACK FAIL."""
    acc = tmp_path / "acc"
    acc.mkdir()
    _acc_log(acc / "mlperf_log_accuracy.json", {0: 1.5, 1: 2.5})
    (acc / "run_config.json").write_text(
        json.dumps(
            {
                "model": "full",
                "task": "xnli",
                "scenario": "Offline",
                "mode": "accuracy",
                "backend": "pytorch",
            }
        )
    )
    audit = _acc_log(tmp_path / "audit.json", {5: 1.5})
    ok, lines = compliance.accuracy_fallback(acc, audit, tmp_path, "float32", 1.0)
    assert not ok and lines[0].endswith(
        "1 samples logged by the audit run, 0 of them in the accuracy run's log"
    )
    assert lines[-1] == "FALLBACK FAIL" and not (tmp_path / "baseline_accuracy.txt").exists()


# --- the command line, without a run (mutation testing found these unchecked) ----------------------
def test_parser_takes_every_run_flag_plus_the_audits_own():
    """`make compliance` passes `make run`'s flags: the parser takes every `harness run` flag (same
    names, same destinations) and four of its own, with their defaults."""
    from harness.config import add_run_arguments

    run, parser = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_run_arguments(run)
    compliance.configure_parser(parser)
    plain = vars(parser.parse_args([]))
    own = {"test": "TEST01", "response_dtype": "float32", "verify_only": False, "run_args": ""}
    assert plain == {**vars(run.parse_args([])), **own}
    assert len(plain) == len(vars(run.parse_args([]))) + 4  # no run flag shadowed by the audit's
    more = "--duration 1.5 --count 7 --output_dir o --response_dtype int64 --verify_only --accuracy"
    more += " --languages ar,de --dtype fp32 --weights random --models_dir z --executor ray"
    args = parser.parse_args(["--scenario", "Server", "--model", "m", "--task", "t", *more.split()])
    assert (args.duration_s, args.count, args.output_dir, args.response_dtype) == (1.5, 7, "o", "int64")
    assert (args.verify_only, args.accuracy, args.test) == (True, True, "TEST01")
    assert (args.languages, args.dtype, args.weights, args.models_dir, args.executor) == (
        "ar,de",
        "fp32",
        "random",
        "z",
        "ray",
    )


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--test", "TEST04"], "argument --test: invalid choice: 'TEST04'"),
        (["--response_dtype", "int3"], "argument --response_dtype: invalid choice: 'int3'"),
        (["--dtype", "float32"], "argument --dtype: invalid choice: 'float32'"),  # the run's dtype
        (["--scenario", "Streaming"], "argument --scenario: invalid choice: 'Streaming'"),
        (["--count", "1e3"], "argument --count: invalid int value: '1e3'"),
        (["--duration", "x"], "argument --duration: invalid float value: 'x'"),
    ],
)
def test_parser_refuses_bad_command_lines(argv, complaint, capsys):
    parser = argparse.ArgumentParser()
    compliance.configure_parser(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--model", "m", "--task", "t", *argv])
    assert exit_.value.code == 2 and complaint in capsys.readouterr().err


def test_parser_help_documents_every_option():
    parser = argparse.ArgumentParser()
    compliance.configure_parser(parser)
    shown = " ".join(parser.format_help().split())
    for text in (
        "--test {TEST01} BERT-class models need TEST01 only",
        "--response_dtype {byte,float32,int32,int64} element type of the logged responses",
        "--verify_only re-verify an existing TEST01/audit_run",
        "--run_args RUN_ARGS extra flags for the audit run's runner, one quoted string",
        "--languages LANGUAGES comma-separated subset of the task's languages",
        "--duration DURATION_S development: run for S seconds",
    ):
        assert text in shown


def test_main_refuses_accuracy_mode_and_bad_flags_before_any_run(tmp_path, capsys):
    assert compliance.main(_args(tmp_path, accuracy=True)) == 3
    assert capsys.readouterr().out == (
        "compliance: TEST01 is a performance-mode audit run; drop ACCURACY / --accuracy\n"
    )
    assert compliance.main(_args(tmp_path, languages="en,xx")) == 3  # checked as `harness run` does
    assert capsys.readouterr().out == (
        "compliance: unknown language 'xx' for task 'xnli'. Known: ar, bg, de, el, en, es, fr, hi, "
        "ru, sw, th, tr, ur, vi, zh\n"
    )
    missing = tmp_path / "no-audit.conf"
    assert compliance.main(_args(tmp_path, audit_conf=str(missing))) == 3
    assert capsys.readouterr().out == f"compliance: audit config not found: {missing}\n"


def test_main_builds_the_audit_run_from_every_option(tmp_path, monkeypatch, capsys):
    """Every option reaches the audit run's configuration (non-default values, so that a dropped
    option shows), the folders it compares with are the ones of those options, and a failed audit
    run's exit status is the command's."""
    d = tmp_path / "D"
    opts = {
        "scenario": "SingleStream",
        "model": "full",
        "task": "tatoeba",
        "backend": "onnxruntime",
        "encoder": "e5-small",
        "seeds": "v4.1",
        "languages": "de,fr",
        "threads": "2",
        "audit_conf": str(tmp_path / "my-audit.conf"),
        "run_args": "--a 'b c'",
    }
    (tmp_path / "my-audit.conf").write_text("*.*.accuracy_log_sampling_target = 64\n")
    scen = d / "e5-small" / "onnxruntime" / "full" / "tatoeba" / "SingleStream"
    assert compliance.main(_args(d, **opts)) == 3
    assert capsys.readouterr().out == (
        f"compliance: no accuracy run at {scen / 'accuracy'}. TEST01 compares against it: run "
        f"`make run SCENARIO=SingleStream MODEL=full TASK=tatoeba ACCURACY=1 LOG_DIR={d}` first "
        "(same LOG_DIR for every run).\n"
    )
    (scen / "accuracy").mkdir(parents=True)
    (scen / "accuracy" / "mlperf_log_detail.txt").write_text("")
    assert compliance.main(_args(d, **opts)) == 3
    assert capsys.readouterr().out == (
        f"compliance: no performance run at {scen / 'performance'}. TEST01 compares against it: run "
        f"`make run SCENARIO=SingleStream MODEL=full TASK=tatoeba LOG_DIR={d}` first "
        "(same LOG_DIR for every run).\n"
    )
    (scen / "performance").mkdir()
    (scen / "performance" / "mlperf_log_detail.txt").write_text("")
    seen = []

    def failing_audit(cfg, flags, runner, audit_conf):
        seen.append((cfg, list(flags), audit_conf))
        raise compliance.AuditRunFailed(2)

    monkeypatch.setattr(compliance, "run_audit", failing_audit)
    (tmp_path / "user.conf").write_text("")
    sized = []

    def dev_audit_conf(perf_dir, model, scenario, dest):
        sized.append((perf_dir, model, scenario, dest.name))
        return tmp_path / "user.conf", "full-e5-small.SingleStream.target_latency = 5"

    monkeypatch.setattr(compliance, "dev_audit_conf", dev_audit_conf)
    assert compliance.main(_args(d, **opts, duration="1.5", count="7")) == 2
    assert capsys.readouterr().out == (
        "compliance: development audit run sized like the performance run (its user.conf + "
        "full-e5-small.SingleStream.target_latency = 5)\n"
        "compliance: audit run failed with exit status 2 (SUT failure)\n"
    )
    # sized under the name user.conf's lines use for this encoder (full-e5-small), not MODEL's
    assert sized == [(scen / "performance", "full-e5-small", "SingleStream", "user.conf")]
    assert compliance.main(_args(d, **opts, count="7")) == 2  # --count alone sizes it too
    assert len(sized) == 2
    capsys.readouterr()
    # no sizing line (e.g. Server): the copy alone; a results.json it cannot read: exit 3, one line
    monkeypatch.setattr(compliance, "dev_audit_conf", lambda *a: (tmp_path / "user.conf", None))
    assert compliance.main(_args(d, **opts, count="7")) == 2
    assert capsys.readouterr().out.startswith(
        "compliance: development audit run sized like the performance run (its user.conf)\n"
    )

    def unreadable(*args):
        raise ValueError("perf/results.json: unknown key 'x'")

    monkeypatch.setattr(compliance, "dev_audit_conf", unreadable)
    assert compliance.main(_args(d, **opts, count="7")) == 3
    assert capsys.readouterr().out == "compliance: perf/results.json: unknown key 'x'\n"

    def lost(cfg, flags, runner, audit_conf):
        raise RuntimeError("audit run left no LoadGen logs in x")

    monkeypatch.setattr(compliance, "run_audit", lost)
    assert compliance.main(_args(d, **opts)) == 2
    assert capsys.readouterr().out == "compliance: audit run left no LoadGen logs in x\n"
    assert compliance.main(_args(d, **opts, count="0")) == 3  # RunConfig refuses it before any run
    assert capsys.readouterr().out.startswith("compliance: ")
    cfg, flags, audit_conf = seen[0]
    assert (cfg.scenario, cfg.model, cfg.task, cfg.backend, cfg.encoder, cfg.seeds) == (
        "SingleStream",
        "full",
        "tatoeba",
        "onnxruntime",
        "e5-small",
        "v4.1",
    )
    assert (cfg.languages, cfg.threads, cfg.audit_conf, audit_conf) == (
        "de,fr",
        2,
        None,  # the runs compared are plain runs; run_audit stages the file given
        tmp_path / "my-audit.conf",
    )
    assert (cfg.duration_s, cfg.count, cfg.output_dir, cfg.user_conf) == (
        1.5,
        7,
        d.resolve(),
        tmp_path / "user.conf",
    )
    assert flags == ["--a", "b c"]


def _first_labels(n: int) -> list[int]:
    """The gold class of XNLI's first n samples (Arabic rows 0..n-1), read here from the data file."""
    names = ["entailment", "neutral", "contradiction"]
    with gzip.open(DATA / "xnli" / "dev-ar.tsv.gz", "rt", encoding="utf-8") as f:
        return [names.index(next(f).rstrip("\n").split("\t")[2]) for _ in range(n)]


def _xnli_run(folder: Path, classes: list[int]) -> Path:
    """An XNLI accuracy run folder whose log answers class classes[i] (one-hot logits) for sample i."""
    folder.mkdir()
    config = {"model": "full", "task": "xnli", "scenario": "Offline", "mode": "accuracy"}
    (folder / "run_config.json").write_text(json.dumps({**config, "backend": "pytorch"}))
    _xnli_log(folder / "mlperf_log_accuracy.json", classes)
    return folder


def _xnli_log(path: Path, classes: list[int]) -> Path:
    entries = [
        {"seq_id": i, "qsl_idx": i, "data": np.eye(3, dtype=np.float32)[c].tobytes().hex().upper()}
        for i, c in enumerate(classes)
    ]
    path.write_text(json.dumps(entries))
    return path


@pytest.mark.parametrize("bound, passed", [(25.0, True), (24.9, False)])
def test_fallback_scores_both_sides_and_passes_at_the_bound(tmp_path, bound, passed):
    """The accuracy run has 3 of the 4 audited samples right (75.0), the audit run all 4 (100.0):
    |1 - 75 / 100| = 25 % exactly, which a bound of 25 % accepts (<=) and 24.9 % does not."""
    gold = _first_labels(4)
    acc = _xnli_run(tmp_path / "acc", [*gold[:3], (gold[3] + 1) % 3])
    audit = _xnli_log(tmp_path / "audit.json", gold)
    assert compliance.accuracy_fallback(acc, audit, tmp_path, "float32", bound) == (
        passed,
        [
            "fallback: 4 samples logged by the audit run, 4 of them in the accuracy run's log",
            "fallback_metric = accuracy",
            "baseline accuracy = 75.0",
            "compliance accuracy = 100.0",
            f"delta = 25.0000% (bound {bound}%)",
            "FALLBACK PASS" if passed else "FALLBACK FAIL",
        ],
    )
    for name, score in (("baseline_accuracy.txt", 75.0), ("compliance_accuracy.txt", 100.0)):
        assert json.loads((tmp_path / name).read_text().splitlines()[-1])["accuracy"] == score


def test_fallback_with_a_compliance_score_of_zero_fails_without_dividing_by_it(tmp_path):
    gold = _first_labels(4)
    acc = _xnli_run(tmp_path / "acc", gold)
    audit = _xnli_log(tmp_path / "audit.json", [(c + 1) % 3 for c in gold])
    ok, lines = compliance.accuracy_fallback(acc, audit, tmp_path, "float32", 1.0)
    assert not ok
    assert lines[2:] == [
        "baseline accuracy = 100.0",
        "compliance accuracy = 0.0",
        "delta = inf% (bound 1.0%)",
        "FALLBACK FAIL",
    ]


@pytest.mark.parametrize("baseline, passed", [(99.5, True), (98.5, False)])
def test_test01_fallback_bound_of_a_model_without_one_is_one_percent(tmp_path, baseline, passed):
    """A mapped model with no bound of its own gets the checker's default of 1 %: 0.5 % passes,
    1.5 % does not."""
    (tmp_path / "accuracy").mkdir()
    (tmp_path / "verify_accuracy.txt").write_text("TEST FAIL\nfallback_metric = f1\n")
    for name, value in (("baseline_accuracy.txt", baseline), ("compliance_accuracy.txt", 100.0)):
        (tmp_path / "accuracy" / name).write_text(f"table\n{json.dumps({'f1': value})}\n")
    assert compliance.test01_accuracy_passed(tmp_path, "resnet50") == (
        passed,
        ""
        if passed
        else "deterministic check failed and the fallback's f1 differs by 1.5000% "
        "(baseline 98.5, compliance 100.0; bound 1.0%)",
    )


def test_write_test01_with_an_audit_log_that_cannot_be_scored(tmp_path, capsys):
    """An audit run that logged no response: both checks fail, TEST01/accuracy/accuracy.txt says why
    in one line, and the command's verdict is a fail (no traceback)."""
    scen = tmp_path / "Offline"
    scen.mkdir()
    acc = _xnli_run(scen / "accuracy", _first_labels(2))
    perf, audit = scen / "performance", tmp_path / "audit_run"
    for folder in (perf, audit):
        folder.mkdir()
        _detail(folder / "mlperf_log_detail.txt", "Offline", 100.0)
        (folder / "mlperf_log_summary.txt").write_text("summary\n")
    (audit / "mlperf_log_accuracy.json").write_text("[]")
    assert compliance.write_test01(acc, perf, audit, "float32") is False
    text = (scen / "TEST01" / "accuracy" / "accuracy.txt").read_text()
    assert (
        text.startswith("error: the audit run's responses cannot be scored: ") and text.count("\n") == 1
    )
    assert "Accuracy check pass: False\nPerformance check pass: True\n" in capsys.readouterr().out


def test_fallback_scores_with_the_accuracy_runs_languages_and_held_out_rows(tmp_path):
    """score_responses scores like the accuracy run did: its languages (German only here, so qsl 0-3
    and 1245-1248 are German rows) and, as its accuracy.json records, only the held-out rows (>= 1245):
    4 of the 8 logged samples count."""
    acc = tmp_path / "acc"
    acc.mkdir()
    config = {"model": "full", "task": "xnli", "scenario": "Offline", "mode": "accuracy"}
    config |= {"backend": "pytorch", "config": {"languages": ["de"]}}
    (acc / "run_config.json").write_text(json.dumps(config))
    (acc / "accuracy.json").write_text(json.dumps({"accuracy": 50.0, "heldout_rows": 1245}))
    rows = [0, 1, 2, 3, 1245, 1246, 1247, 1248]
    one_hot = np.eye(3, dtype=np.float32)[0].tobytes().hex().upper()
    entries = [{"seq_id": i, "qsl_idx": q, "data": one_hot} for i, q in enumerate(rows)]
    text, score, metric = compliance.score_responses(entries, acc, "float32")
    assert metric == "accuracy" and text.splitlines()[2].split() == ["de", "4", f"{score:.2f}"]
    (acc / "accuracy.json").write_text(json.dumps({"accuracy": 50.0}))  # no held-out rows recorded
    assert compliance.score_responses(entries, acc, "float32")[0].splitlines()[2].split()[:2] == [
        "de",
        "8",
    ]


def test_fallback_scores_with_the_accuracy_runs_task_options(tmp_path):
    """An accuracy run made with `first_row 2` maps qsl 0 to data row 2: answers that are right for
    rows 2-5 score 100 with the run's task options (and would not against rows 0-3)."""
    gold = _first_labels(6)
    assert gold[2:6] != gold[0:4]
    acc = _xnli_run(tmp_path / "acc", gold[2:6])
    config = json.loads((acc / "run_config.json").read_text())
    (acc / "run_config.json").write_text(json.dumps({**config, "task_options": {"first_row": 2}}))
    entries = json.loads((acc / "mlperf_log_accuracy.json").read_text())
    assert compliance.score_responses(entries, acc, "float32")[1:] == (100.0, "accuracy")


def test_dev_audit_conf_is_the_performance_runs_user_conf_plus_its_sizing_line(tmp_path):
    """A development audit run (--duration/--count) copies the performance run's user.conf and sizes
    Offline's queries to 1.1 x the rate it measured (200 samples/s -> 220.0)."""
    perf = tmp_path / "perf"
    perf.mkdir()
    (perf / "user.conf").write_text("full-tiny.Offline.min_duration = 1000\n")
    Results(samples_per_second=200.0).save(perf)
    dest = tmp_path / "audit" / "user.conf"
    conf, line = compliance.dev_audit_conf(perf, "full-tiny", "Offline", dest)
    assert (conf, line) == (dest, "full-tiny.Offline.target_qps = 220.0")
    assert dest.read_text() == (
        "full-tiny.Offline.min_duration = 1000\n"
        "# compliance: development audit run sized like its performance run\n"
        "full-tiny.Offline.target_qps = 220.0\n"
    )
    # Server has no sizing line: the copy alone
    assert compliance.dev_audit_conf(perf, "full-tiny", "Server", tmp_path / "s.conf")[1] is None
    assert (tmp_path / "s.conf").read_text() == (
        "full-tiny.Offline.min_duration = 1000\n"
        "# compliance: development audit run sized like its performance run\n"
    )
