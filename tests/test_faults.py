"""Fault injection: every failure ends in its documented exit code with one clear line,
the run folder says what happened, and nothing is left half-done or written elsewhere.

Most runs are `tests/fault_child.py`: the real runner (run folder, signals, LoadGen, results, exit
code) in a subprocess with a fake backend at a known speed (~1,000 samples/s), so a fault costs a
few seconds. The real CLI with the tiny checkpoint covers Ctrl-C and a damaged checkpoint.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.paths import REPO
from harness.cli import main as cli
from tests.fault_child import N
from tests.polling import GUARD_S, wait_for

ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}


def child(out: Path, backend: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "tests.fault_child", backend, "--output_dir", str(out), *flags]


def run_child(
    out: Path, backend: str, *flags: str, timeout: float = GUARD_S
) -> subprocess.CompletedProcess:
    """The child's stdout and stderr as one text in `.stdout` (inside a run both go through the
    stdout.txt tee to the terminal's stdout; the final `exit status` line goes to stderr)."""
    return subprocess.run(child(out, backend, *flags), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)  # fmt: skip


def folder(out: Path, scenario: str = "Offline", mode: str = "performance") -> Path:
    return out / "tiny" / "pytorch" / "full" / "xnli" / scenario / mode  # RunFolder.plan's layout


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def start_and_wait(cmd: list[str], ready: Path) -> subprocess.Popen:
    """Start `cmd`; return once `ready` exists (LoadGen creates its detail log as the test starts)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    wait_for(ready.exists, "the run to start", alive=proc)
    return proc


def logged_indices(run_dir: Path) -> list[int]:
    return sorted(e["qsl_idx"] for e in json.loads((run_dir / "mlperf_log_accuracy.json").read_text()))


# --- backend faults ---------------------------------------------------------------------------------
def test_backend_exception_exits_2_with_every_query_completed(tmp_path):
    proc = run_child(tmp_path, "raise", "--accuracy", "--duration", "1")
    run_dir = folder(tmp_path, mode="accuracy")
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "SUT failure in batch of" in proc.stdout and "injected backend failure" in proc.stdout
    res = results(run_dir)
    assert res["result_valid"] is False and res["exit_status"] == 2
    assert "RuntimeError: injected backend failure" in res["sut_failure"]
    assert logged_indices(run_dir) == list(range(N))  # every sample completed exactly once
    assert (run_dir / "mlperf_log_summary.txt").stat().st_size > 0  # LoadGen ended normally


def test_backend_hang_is_ended_by_the_watchdog(tmp_path):
    # without the watchdog the hung batch would wait an hour: run_child's timeout is the guard
    proc = run_child(tmp_path, "hang", "--accuracy", "--duration", "1", "--watchdog_s", "1")
    run_dir = folder(tmp_path, mode="accuracy")
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "watchdog: TimeoutError: no batch completed for 1 s" in results(run_dir)["sut_failure"]
    assert logged_indices(run_dir) == list(range(N))


# --- non-finite outputs -----------------------------------------------------------------------------
def test_nonfinite_outputs_are_counted_and_fail_an_accuracy_run(tmp_path):
    """NaN outputs once passed as a VALID run scored like a coin toss."""
    perf = run_child(tmp_path / "p", "nan", "--duration", "1", "--allow_invalid")
    res = results(folder(tmp_path / "p"))
    assert perf.returncode == 0, perf.stdout[-2000:]
    assert res["nonfinite_samples"] > 0 and "samples returned NaN or Inf outputs" in perf.stdout
    acc = run_child(tmp_path / "a", "nan", "--accuracy", "--duration", "1")
    run_dir = folder(tmp_path / "a", mode="accuracy")
    assert acc.returncode == 2, acc.stdout[-2000:]
    assert f"error: {N // 2} samples returned NaN or Inf: accuracy not scored" in acc.stdout
    assert results(run_dir)["nonfinite_samples"] == N // 2 and not (run_dir / "accuracy.txt").exists()
    script = subprocess.run(
        [sys.executable, "accuracy_xnli.py", str(run_dir / "mlperf_log_accuracy.json")],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert script.returncode == 3 and script.stdout == ""
    assert script.stderr.count("\n") == 1 and "responses hold NaN or Inf" in script.stderr


def test_packers_count_nonfinite_responses_but_not_padding():
    from sut.base import pack_qa, pack_rows

    rows = np.ones((4, 3), np.float32)
    rows[1, 2], rows[3, 0] = np.nan, np.inf
    assert pack_rows(rows, np.array([5, 5, 5, 5])).nonfinite == 2
    qa = np.ones((3, 2, 6), np.float32)
    qa[0, :, 4:] = -np.inf  # padding of sample 0 (length 4): not sent, not counted
    qa[2, 1, 1] = np.nan
    assert pack_qa(qa, np.array([4, 6, 6])).nonfinite == 1


# --- signals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "sig", "grace", "loadgen_ends"),
    [("Offline", signal.SIGINT, 300, True), ("SingleStream", signal.SIGTERM, 300, True),
     ("Server", signal.SIGINT, 4, False)],
)  # fmt: skip
def test_signal_mid_run_ends_it_cleanly(tmp_path, scenario, sig, grace, loadgen_ends):
    """SIGINT was once ignored for the whole test, then Python crashed (exit 139). Now the first
    signal ends the test: exit 130/143, results.json says so, no traceback. Offline and
    SingleStream: LoadGen ends by itself once the SUT completes what is left empty (SingleStream's
    schedule is sized so that takes well under a second here: harness/settings.py
    `dev_single_stream_latency_ns`; the 300 s grace is only a guard). Server: LoadGen keeps its
    schedule to min duration (30 s) whatever the SUT does, so the process leaves --abort_grace_s
    (4 s) after the signal with LoadGen's logs so far."""
    run_dir = folder(tmp_path, scenario)
    proc = start_and_wait(
        child(tmp_path, "ok", "--scenario", scenario, "--duration", "30", "--abort_grace_s", str(grace)),
        run_dir / "mlperf_log_detail.txt",
    )
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=grace + 120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in out + err and f"{sig.name}: ending the test" in out
    res = results(run_dir)
    assert res["interrupted"] is True and res["result_valid"] is False and res["signal"] == sig.name
    assert res["exit_status"] == 128 + sig
    assert (res.get("loadgen_finished", True) is True) == loadgen_ends
    assert ((run_dir / "mlperf_log_summary.txt").stat().st_size > 0) == loadgen_ends
    assert (run_dir / "user.conf").is_file() and (run_dir / "stdout.txt").is_file()


def test_second_signal_exits_at_once(tmp_path):
    """After the first SIGINT a Server run would wait for LoadGen's 600 s schedule (or the 600 s
    grace); the second one leaves at once, well inside the communicate guard."""
    run_dir = folder(tmp_path, "Server")
    proc = start_and_wait(
        child(tmp_path, "ok", "--scenario", "Server", "--duration", "600", "--abort_grace_s", "600"),
        run_dir / "mlperf_log_detail.txt",
    )
    proc.send_signal(signal.SIGINT)
    stdout_txt = run_dir / "stdout.txt"  # the run's tee: the first signal's line lands there
    wait_for(lambda: "SIGINT: ending the test" in stdout_txt.read_text(), "the first SIGINT", alive=proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "second SIGINT: exiting at once" in out and "Traceback" not in out + err
    assert results(run_dir)["interrupted"] is True


@pytest.mark.slow
def test_ctrl_c_on_the_real_cli(tmp_path, tiny_checkpoint):
    """The real `python -m harness run` (PyTorch, tiny checkpoint), Offline, SIGINT mid-test."""
    run_dir = folder(tmp_path)
    cmd = [sys.executable, "-m", "harness", "run", "--model", "full", "--task", "xnli", "--languages",
           "en", "--count", "96", "--weights", str(tiny_checkpoint), "--duration", "60",
           "--output_dir", str(tmp_path)]  # fmt: skip
    proc = start_and_wait(cmd, run_dir / "mlperf_log_detail.txt")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)  # a guard: the 60 s test ends at the signal
    assert proc.returncode == 130, out[-2000:]
    assert "Traceback" not in out + err and "exit status 130: interrupted (SIGINT)" in err
    res = results(run_dir)
    assert res["interrupted"] is True and res["validity"] == "INVALID"
    assert "MLPerf Results Summary" in (run_dir / "mlperf_log_summary.txt").read_text()


# --- run folders: concurrency, names, paths -------------------------------------------------------
def test_a_busy_run_folder_is_refused_and_stdout_is_fresh(tmp_path):
    """Two runs into one LOG_DIR once both exited 0 and stdout.txt mixed both."""
    run_dir = folder(tmp_path)
    first = start_and_wait(child(tmp_path, "ok", "--duration", "30"), run_dir / "mlperf_log_detail.txt")
    second = run_child(tmp_path, "ok", "--duration", "1")
    assert second.returncode == 3, second.stdout[-2000:]
    assert f"is in use by process {first.pid}" in second.stdout
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    assert "SIGINT" in (run_dir / "stdout.txt").read_text()
    again = run_child(tmp_path, "ok", "--duration", "1", "--allow_invalid")
    assert again.returncode == 0, again.stdout[-2000:]
    stdout = (run_dir / "stdout.txt").read_text()
    assert "SIGINT" not in stdout and stdout.count("run folder:") == 2  # this run's lines only
    assert results(run_dir)["interrupted"] is False


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "/abs/path"], "unknown model '/abs/path'"),
        (["--model", "../escape"], "unknown model '../escape'"),
        (["--task", "../../escape"], "unknown task '../../escape'"),
        (["--model", "fulll"], "Did you mean 'full'?"),
        (["--backend", "pytorh"], "Did you mean 'pytorch'?"),
        (["--languages", "en,xx"], "unknown language 'xx'"),
        (["--duration", "nan"], "duration must be a finite number"),
        (["--duration", "inf"], "duration must be a finite number"),
        (["--watchdog_s", "nan"], "watchdog must be a finite number"),
    ],
)
def test_bad_names_and_values_create_nothing(tmp_path, capsys, flags, message):
    """Names once became paths before they were checked; `--duration nan`
    ended in a traceback with exit 1 (INVALID's code)."""
    out = tmp_path / "out"
    logs = REPO / "build" / "logs"
    before = sorted(p.name for p in logs.iterdir()) if logs.is_dir() else []
    latest = os.readlink(logs / "latest") if (logs / "latest").is_symlink() else None
    assert cli(["run", "--output_dir", str(out), *flags]) == 3
    assert cli(["run", *flags]) == 3  # no --output_dir: build/logs/<stamp>, and latest, untouched
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
    assert (sorted(p.name for p in logs.iterdir()) if logs.is_dir() else []) == before
    assert (os.readlink(logs / "latest") if (logs / "latest").is_symlink() else None) == latest


def test_output_dir_must_be_a_writable_folder(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli(["run", "--output_dir", str(a_file / "sub")]) == 3
    assert f"{a_file} is a file, not a folder" in capsys.readouterr().err
    assert cli(["run", "--output_dir", "/proc/self/no-such-dir"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: " in err


def test_run_folder_stays_inside_the_output_dir(tmp_path):
    from harness.config import RunConfig
    from harness.run_folder import RunFolder

    out = tmp_path / "out"
    (out / "tiny" / "pytorch" / "full").mkdir(parents=True)
    # a symlinked sub-folder pointing elsewhere
    (out / "tiny" / "pytorch" / "full" / "xnli").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="resolves outside"):
        RunFolder.plan(RunConfig(output_dir=out))
    assert RunFolder.plan(RunConfig(output_dir=tmp_path / "new")).path == (
        tmp_path / "new" / "tiny" / "pytorch" / "full" / "xnli" / "Offline" / "performance"
    )


# --- user.conf --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("full.Offline.target_qps = abc", "line 3: value 'abc' is not a number"),
        ("full.Offline.target_qps=700", "write spaces around '='"),
        ("full.Offline.target_qps = 700 # fast", "comments only on lines of their own"),
        ("full.Offline.target_qps = nan", "full.Offline.target_qps = nan is not a usable value"),
        ("*.*.min_duration = -5", "is not a usable value"),
        ("full.target_qps = 700", "is not `model.scenario.key`"),
        ("#no space then words", "'#' stands alone"),
    ],
)
def test_bad_user_conf_is_one_line_exit_3(tmp_path, capsys, line, message):
    conf = tmp_path / "user.conf"
    conf.write_text(f"# ok\nfull.Offline.target_qps = 700\n{line}\n")
    assert cli(["run", "--user_conf", str(conf), "--output_dir", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert f"error: {conf}: " in err and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_user_conf_keys_of_the_run_model_warn(tmp_path):
    from harness.settings import check_user_conf

    conf = tmp_path / "user.conf"
    conf.write_text("full.Offline.target_qsp = 700\nfull.Ofline.target_qps = 1\n"
                    "other.Offline.whatever = 3\n*.Server.target_latncy = 5\n")  # fmt: skip
    warnings = check_user_conf(conf, "full", "Offline")
    assert len(warnings) == 3, warnings
    assert "line 1: unknown key 'target_qsp' (did you mean 'target_qps'?)" in warnings[0]
    assert "line 2: unknown scenario 'Ofline' (did you mean 'Offline'?)" in warnings[1]
    assert "line 4: unknown key 'target_latncy' (did you mean 'target_latency'?)" in warnings[2]
    assert check_user_conf(REPO / "user.conf", "full", "Offline") == []


# --- self-repair and integrity ----------------------------------------------------------------------
def test_corrupt_feature_cache_is_rebuilt_with_a_warning(tiny_tokenizer, tmp_path, capsys):
    """A truncated cache entry once gave a BadZipFile traceback."""
    from tasks.registry import get_task

    task = get_task("xnli", languages="en")
    fresh = task.features(tiny_tokenizer, cache_dir=tmp_path, progress=False)
    (entry,) = (tmp_path / "xnli").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 3])
    again = task.features(tiny_tokenizer, cache_dir=tmp_path, progress=False)
    assert f"warning: feature cache {entry} cannot be read" in capsys.readouterr().err
    np.testing.assert_array_equal(again.input_ids, fresh.input_ids)
    assert task.features(tiny_tokenizer, cache_dir=tmp_path, progress=False).meta == again.meta


def _damaged_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return weights


def test_corrupt_checkpoint_is_one_line_naming_the_file(tiny_checkpoint, tmp_path):
    """A truncated model.safetensors once gave a SafetensorError traceback,
    and nothing checked the checkpoints' integrity."""
    weights = _damaged_copy(tiny_checkpoint, tmp_path / "ckpt")
    cmd = [sys.executable, "-m", "harness", "run", "--model", "full", "--task", "xnli", "--languages",
           "en", "--count", "8", "--weights", str(weights.parent),
           "--output_dir", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 3, proc.stdout[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("error: ")]
    assert line.startswith(f"error: {weights}: cannot load the model (SafetensorError")
    assert "it was not built by `make models`" in line and "Traceback" not in proc.stdout


def test_manifest_checksums_are_verified_at_load(tiny_checkpoint, tmp_path):
    from models.loaders import MANIFEST, CheckpointError, rebuild_hint, write_manifest
    from models.registry import resolve

    zoo = tmp_path / "zoo"
    stage = zoo / "full" / "xnli"
    shutil.copytree(tiny_checkpoint, stage)
    write_manifest(stage, stage="xnli", serving="plain")
    files = json.loads((stage / MANIFEST).read_text())["files"]
    assert set(files) >= {"model.safetensors", "config.json", "tokenizer.json"}
    (stage / ".done").write_text("1 s\n")
    assert resolve("full", "xnli", models_dir=zoo).checkpoint == stage  # verified, intact
    weights = stage / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped bit pattern in the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        resolve("full", "xnli", models_dir=zoo)
    assert str(err.value) == (
        f"{weights}: sha256 differs from the one zoo.json recorded (the file is damaged); "
        f"rebuild it: rm -rf {stage} && python -m zoo build --models_dir {zoo}"
    )
    build = tmp_path / "build"  # the default zoo folders get the make command
    shutil.copytree(stage, build / "models-base" / "full" / "xnli")
    assert rebuild_hint(build / "models-base" / "full" / "xnli", build) == (
        f"rebuild it: rm -rf {build / 'models-base/full/xnli'} && make models ENCODER=base"
    )


def test_bundled_data_files_are_checked_against_their_row_counts(tmp_path, monkeypatch):
    """A data file with a dropped row was once accepted without a word."""
    import tasks.data as data
    from tasks.data import DataError
    from tasks.registry import get_task

    bundled = tmp_path / "data"
    shutil.copytree(REPO / "data" / "xnli", bundled / "xnli")
    shutil.copy(REPO / "data" / "rows.json", bundled)
    monkeypatch.setattr(data, "DATA", bundled)
    assert len(get_task("xnli", data_dir=bundled / "xnli", languages="de").read()) == 2490
    path = bundled / "xnli" / "dev-de.tsv.gz"
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:100] + lines[101:])))
    with pytest.raises(DataError) as err:
        get_task("xnli", data_dir=bundled / "xnli", languages="de").read()
    assert str(err.value) == (
        f"{path}: 2489 rows, expected 2490 (data/rows.json): the bundled file is damaged; "
        "restore it with `git checkout -- data/xnli/dev-de.tsv.gz`"
    )


# --- exit contract and targets that fit the machine ----------------------------------------------
def test_an_unscorable_accuracy_run_is_invalid(tmp_path):
    """An accuracy run with a small COUNT once exited 0 "VALID" while printing
    "accuracy not scored" (the tiny zoo scores held-out rows only; the first 64 have none)."""
    proc = run_child(tmp_path, "ok:tiny", "--accuracy", "--count", "64", "--duration", "1")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "INVALID: accuracy not scored: " in proc.stdout
    res = results(folder(tmp_path, mode="accuracy"))
    assert res["validity"] == "INVALID" and "error" in res["accuracy"]


def test_min_duration_invalid_prints_the_user_conf_line_that_fixes_it(tmp_path):
    """A target_qps below the machine's rate makes LoadGen's query run out
    before min duration. The report says so and prints target_qps = the measured rate x 1.1."""
    proc = run_child(tmp_path, "ok", "--duration", "2")  # 1.1 x 2 s x 760 samples at ~1,000/s
    res = results(folder(tmp_path))
    assert proc.returncode == 1 and res["constraints_failed"] == ["min duration"], proc.stdout[-2000:]
    line = f"full.Offline.target_qps = {1.1 * res['samples_per_second']:.1f}"
    assert "INVALID: min duration" in proc.stdout and f"\n  {line}\n" in proc.stdout


def test_dev_audit_runs_are_sized_like_their_performance_run(tmp_path):
    from harness.submission.compliance import dev_audit_conf

    perf = tmp_path / "perf"
    perf.mkdir()
    (perf / "user.conf").write_text("full.Offline.target_qps = 600\n")
    (perf / "results.json").write_text(json.dumps({"samples_per_second": 687.9}))
    conf, line = dev_audit_conf(perf, "full", "Offline", tmp_path / "audit.conf")
    assert line == "full.Offline.target_qps = 756.7"
    assert conf.read_text().splitlines()[0] == "full.Offline.target_qps = 600"
    assert conf.read_text().splitlines()[-1] == line  # later lines win in LoadGen's parser
    conf, line = dev_audit_conf(perf, "full", "Server", tmp_path / "server.conf")
    assert line is None and "target_qps = 600" in conf.read_text()


def test_server_drain_bound_ends_an_overloaded_run(tmp_path):
    """A 5 s Server run at 10x the machine's capacity once took 220 s. A backlog
    that cannot finish by 2 x min duration + 10 s now ends the run, INVALID with the reason."""
    conf = tmp_path / "user.conf"
    conf.write_text((REPO / "user.conf").read_text() + "full.Server.target_qps = 1000\n")
    # 3 s of arrivals at 1,000/s; the slow backend runs at most 100 samples/s, so the backlog needs
    # about 30 s (more on a busy machine): only the drain bound can end it at 16 s
    proc = run_child(
        tmp_path, "slow", "--scenario", "Server", "--duration", "3", "--user_conf", str(conf)
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    res = results(folder(tmp_path, "Server"))
    assert res["validity"] == "INVALID" and "drain bound" in res["constraints_failed"]
    assert res["ended_early"].startswith("drain bound: ") and "past 16 s" in res["ended_early"]
    assert "INVALID: drain bound: " in proc.stdout


def test_progress_line_reads_the_sut_counters(tmp_path):
    from types import SimpleNamespace

    from harness.progress import Progress

    sut = SimpleNamespace(first_issue=100.0, completed=0, issued=0, flushed=False)
    read, write = os.pipe()
    progress = Progress(sut, min_duration_s=600, fd=write, every_s=0)
    progress.tick(now=101.0)  # a pipe: the first line waits one period
    sut.issued, sut.completed = 1000, 500
    progress.tick(now=110.0)
    sut.flushed, sut.issued, sut.completed = True, 10_000, 1500
    progress.tick(now=112.0)
    os.close(write)
    lines = os.read(read, 4096).decode().splitlines()
    os.close(read)
    assert lines[0].startswith(
        "progress: 500 samples done, 55.6/s, ends in about 10 min"
    )  # min duration
    assert lines[1].startswith("progress: 1,500 samples done, 136.4/s, ends in about 62 s")  # backlog


def test_progress_of_an_accuracy_run_counts_every_sample_not_min_duration():
    """A Server accuracy run issues all its samples at the target rate, past min duration (11,205
    samples at 2.5 QPS: 75 min); its line once said "ends in about 0 s" from the 600th second on."""
    from types import SimpleNamespace

    from harness.progress import Progress

    sut = SimpleNamespace(first_issue=0.0, completed=0, issued=0, flushed=False)
    progress = Progress(sut, min_duration_s=600, fd=None, total=11_205)
    assert progress.line(0.5) == "progress: 0 samples done, 0.0/s, end not known yet"
    sut.issued = sut.completed = 1500
    progress.line(300.0)
    sut.issued = sut.completed = 4000
    text = progress.line(1300.0)  # past min duration, 7,205 samples to go at 2.5/s
    assert text is not None and text.startswith(
        "progress: 4,000 samples done, 2.5/s, ends in about 48 min"
    )
    assert progress.remaining_s == pytest.approx(7205 / 2.5)
