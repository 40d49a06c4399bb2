"""`--executor ray` (sut/ray_executor.py).

Without Ray: the proxy pool's routing and retry-once logic over a scripted fake transport, and the
SUT with proxies under real LoadGen (every sample completed exactly once when an actor is lost).
With Ray (skipped when it is not installed): a real two-node cluster on this machine (`ray start
--head` + `ray start --address`, each with its own resources; torn down by process group), one run
of the tiny model whose batches are served on both nodes, an actor killed mid-run, and accuracy
through Ray equal to accuracy through threads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from common.paths import REPO
from sut.base import SUTOptions
from sut.ray_executor import ActorFailure, ActorLost, ActorPool, RayBackend, first_line
from tests.fault_child import MARKS_ENV, N, synthetic_features
from tests.polling import wait_for
from tests.test_sut import FakeBackend, expected, read_log, run_loadgen

PLACES = [{"node_id": f"node{a}" + "0" * 50, "node_ip": f"10.0.0.{a}", "pid": 100 + a} for a in range(3)]


class FakeTransport:
    """Actors 0..n-1 computing FakeBackend's outputs. `down`: actors whose calls raise ActorLost;
    `back_after[a]`: probes of a lost actor before it answers again (with pid + 1000: restarted);
    `gone`: actors dead for good; `model_error`: every call raises it (a model bug)."""

    def __init__(self, n: int):
        self.n, self.down, self.gone = n, set(), set()
        self.back_after: dict[int, int] = {}
        self.model_error: Exception | None = None
        self.calls: list[tuple[int, int]] = []  # (actor, batch size) of every call, failed ones too
        self.probes: list[tuple[int, float]] = []
        self.lose_next: list[int] = []  # actors whose next call (only) raises ActorLost, then restart
        self.lose_first_call: list[bool] = []  # [True]: the first call, whichever actor, is lost
        self.backend = FakeBackend()

    def call(self, actor, input_ids, attention_mask):
        self.calls.append((actor, len(input_ids)))
        if self.model_error is not None:
            raise self.model_error
        if actor in self.lose_next:
            self.lose_next.remove(actor)
            self.down.add(actor)
        elif self.lose_first_call:  # list.pop is atomic: exactly one concurrent caller gets it
            try:
                self.lose_first_call.pop()
            except IndexError:
                pass
            else:
                self.down.add(actor)
        if actor in self.down or actor in self.gone:
            raise ActorLost(f"actor {actor} process died")
        return self.backend.predict(input_ids, attention_mask)

    def probe(self, actor, wait_s):
        self.probes.append((actor, wait_s))
        if actor in self.gone:
            return False
        left = self.back_after.get(actor, 0)
        if left > 0:
            self.back_after[actor] = left - 1
            return None
        self.down.discard(actor)
        return {**PLACES[actor], "pid": PLACES[actor]["pid"] + 1000}


def pool(n: int = 2) -> tuple[ActorPool, FakeTransport]:
    t = FakeTransport(n)
    return ActorPool(t, [f"ray-worker-{a}" for a in range(n)], PLACES[:n], retry_wait_s=7.0), t


def batch(rows: int = 4, length: int = 6, seed: int = 0):
    ids = np.random.default_rng(seed).integers(3, 100, (rows, length))
    return ids, np.ones_like(ids)


# --- the pool's routing and retry, without Ray ------------------------------------------------------
def test_calls_go_to_the_home_actor_and_are_counted_per_actor_and_node():
    p, t = pool()
    ids, mask = batch(4)
    for home in (0, 1, 1):
        np.testing.assert_array_equal(p.predict(home, ids, mask), t.backend.predict(ids, mask))
    assert t.calls == [(0, 4), (1, 4), (1, 4)]
    s = p.stats()
    assert [(a["batches"], a["samples"]) for a in s["actors"]] == [(1, 4), (2, 8)]
    assert s["nodes"] == {
        PLACES[0]["node_id"]: {"node_ip": "10.0.0.0", "batches": 1, "samples": 4},
        PLACES[1]["node_id"]: {"node_ip": "10.0.0.1", "batches": 2, "samples": 8},
    }
    assert s["faults"] == [] and p.fault_summary() is None
    p.reset_counts()
    assert p.stats()["nodes"] == {} and [a["samples"] for a in p.stats()["actors"]] == [0, 0]


def test_a_lost_batch_is_retried_once_on_a_live_actor_and_later_batches_avoid_the_lost_one():
    p, t = pool()
    ids, mask = batch(5)
    t.down.add(1)
    t.back_after[1] = 2  # two probes before it is back (restarting)
    out = p.predict(1, ids, mask)
    np.testing.assert_array_equal(out, t.backend.predict(ids, mask))  # the real response
    assert t.calls == [(1, 5), (0, 5)]  # lost on 1, retried once on 0
    (fault,) = p.stats()["faults"]
    assert fault["actor"] == "ray-worker-1" and fault["retried_on"] == "ray-worker-0"
    assert fault["recovered"] is True and fault["batch_samples"] == 5 and fault["pid"] == 101
    assert fault["node_id"] == PLACES[1]["node_id"] and fault["error"] == "actor 1 process died"
    assert fault["retry_node_id"] == PLACES[0]["node_id"]
    # while it restarts, its proxies' batches go to the live actor without counting as faults
    p.predict(1, ids, mask)
    assert t.calls[-1] == (0, 5) and len(p.faults) == 1
    p.predict(1, ids, mask)  # second probe: still not back
    p.predict(1, ids, mask)  # third probe: back (restarted: new pid) -> served at home again
    assert t.calls[-1] == (1, 5)
    s = p.stats()
    assert [(a["batches"], a["samples"]) for a in s["actors"]] == [(3, 15), (1, 5)]
    assert s["actors"][1]["pid"] == 1101 and s["actors"][1]["restarts"] == 1
    assert s["actors"][1]["losses"] == 1
    summary = p.fault_summary()
    assert summary == ("actor ray-worker-1 (pid 101, node node1000 at 10.0.0.1) was lost mid-run "
                       "(actor 1 process died); its batch of 5 samples was retried on ray-worker-0 and "
                       "completed: no query lost")  # fmt: skip


def test_with_one_actor_the_retry_waits_for_its_restart():
    p, t = pool(1)
    ids, mask = batch(3)
    t.lose_next.append(0)
    out = p.predict(0, ids, mask)
    np.testing.assert_array_equal(out, t.backend.predict(ids, mask))
    assert t.calls == [(0, 3), (0, 3)]
    assert t.probes == [(0, 7.0)]  # waited up to retry_wait_s for the restart, then retried there
    assert p.faults[0]["retried_on"] == "ray-worker-0" and p.faults[0]["recovered"] is True


def test_a_batch_lost_twice_raises_naming_both_actors_and_nodes():
    p, t = pool()
    ids, mask = batch(4)
    t.down.update({0, 1})
    t.back_after.update({0: 99, 1: 99})
    with pytest.raises(ActorFailure) as e:
        p.predict(1, ids, mask)
    assert str(e.value) == (
        "actor ray-worker-1 (pid 101, node node1000 at 10.0.0.1) was lost (actor 1 process died); the "
        "retry of its batch of 4 samples on ray-worker-0 (pid 100, node node0000 at 10.0.0.0) was lost "
        "too (actor 0 process died)"
    )
    assert t.calls == [(1, 4), (0, 4)]  # exactly one retry
    (fault,) = p.stats()["faults"]
    assert fault["recovered"] is False and fault["retry_error"] == "actor 0 process died"
    assert [a["samples"] for a in p.stats()["actors"]] == [0, 0]


def test_a_dead_actor_is_never_used_again():
    p, t = pool(3)
    ids, mask = batch(2)
    t.gone.add(2)
    p.predict(2, ids, mask)  # lost, retried on a live one
    for _ in range(4):
        p.predict(2, ids, mask)
    assert [a for a, _ in t.calls].count(2) == 1
    assert p.stats()["actors"][2]["dead"] is True
    assert sorted({a for a, _ in t.calls[1:]}) == [0, 1]  # spread over the live ones


def test_a_model_error_inside_an_actor_is_not_retried():
    p, t = pool()
    t.model_error = RuntimeError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        p.predict(0, *batch())
    assert t.calls == [(0, 4)] and p.faults == []


def test_first_line_keeps_one_short_line():
    assert first_line(ValueError("a\nb")) == "ValueError: a"
    assert first_line("\n  x  \ny") == "x"
    assert len(first_line("z" * 1000)) == 240


# --- the SUT with proxies, real LoadGen, no Ray -----------------------------------------------------
class PoolProxy(RayBackend):
    def __init__(self, p: ActorPool, home: int):
        super().__init__(p, home, {"backend": "fake"})


# Server with 4 workers hung here about 1 run in 6 until the SUT's queue left SimpleQueue (see
# tests/test_sut.py,
# test_a_server_gather_ends_at_its_deadline_when_its_wake_up_is_taken_by_another_thread)
@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_sut_through_proxies_completes_every_sample_once_when_an_actor_is_lost(tmp_path, scenario):
    p, t = pool()
    # the first call, on whichever actor the scheduling picks, is lost; the actor restarts at the
    # next probe (a fixed actor may get no call at all when the worker threads are starved)
    t.lose_first_call.append(True)
    opts = SUTOptions(max_batch=8, token_budget=256, workers=4)
    sut, fs = run_loadgen(tmp_path, scenario, True, None, options=opts,
                          backends=[PoolProxy(p, w % 2) for w in range(4)])  # fmt: skip
    entries = read_log(tmp_path)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(len(fs.lengths)))
    for e in entries:  # every response is the real one, the lost batch's too
        got = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32)
        np.testing.assert_array_equal(got, expected(fs, e["qsl_idx"], "classification"))
    assert sut.failure is None and sut.issued == sut.completed == len(fs.lengths)
    s = p.stats()
    assert sum(a["samples"] for a in s["actors"]) == len(fs.lengths)
    assert sum(a["batches"] for a in s["actors"]) == sut.batches
    assert len(s["faults"]) == 1 and s["faults"][0]["recovered"] is True


def test_sut_through_proxies_fails_cleanly_when_the_retry_is_lost_too(tmp_path):
    p, t = pool()
    t.down.update({0, 1})
    t.back_after.update({0: 10**6, 1: 10**6})
    opts = SUTOptions(max_batch=8, token_budget=256, workers=2)
    sut, fs = run_loadgen(tmp_path, "Offline", True, None, options=opts,
                          backends=[PoolProxy(p, 0), PoolProxy(p, 1)])  # fmt: skip
    assert isinstance(sut.failure, ActorFailure) and "was lost too" in sut.failure_text
    assert sut.issued == sut.completed == len(fs.lengths)  # all completed once, empty after the failure
    assert sorted(e["qsl_idx"] for e in read_log(tmp_path)) == list(range(len(fs.lengths)))


# --- configuration ------------------------------------------------------------------------------------
def test_ray_flags_are_checked():
    from harness.config import RunConfig

    with pytest.raises(ValueError, match="--ray_address only apply to --executor ray"):
        RunConfig.layered(ray_address="127.0.0.1:6379")
    with pytest.raises(ValueError, match="executor 'dask' is not one of thread, ray"):
        RunConfig.layered(executor="dask")
    with pytest.raises(ValueError, match="ray_inflight must be >= 1"):
        RunConfig.layered(executor="ray", ray_inflight=0)
    cfg = RunConfig.layered(executor="ray", workers=3)
    assert cfg.sut_options().workers == 6 and cfg.ray_call_timeout_s == 30.0  # 2 proxies per actor
    assert RunConfig.layered(executor="ray", workers=3, ray_inflight=1).sut_options().workers == 3
    assert RunConfig.layered(workers=3).sut_options().workers == 3


def test_actor_resources_follow_the_backend_options():
    from models.base import BackendOptions
    from sut.ray_executor import ActorResources

    assert ActorResources.for_backend(BackendOptions()) == ActorResources(num_cpus=1, num_gpus=0)
    assert ActorResources.for_backend(BackendOptions(threads=4)) == ActorResources(4, 0)
    assert ActorResources.for_backend(BackendOptions(device="cuda:1")) == ActorResources(0, 1)


class FakeRay:
    """ray.init / ray.shutdown as seen by sut.ray_executor._connect: `fail` inits raise first."""

    def __init__(self, fail: int):
        self.fail, self.inits, self.shutdowns = fail, [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        if len(self.inits) <= self.fail:
            raise Exception("The current node timed out during startup.\nmore lines")

    def shutdown(self):
        self.shutdowns += 1


def test_an_embedded_cluster_that_times_out_once_is_started_again(capsys):
    from sut.ray_executor import ActorResources, _connect

    fake = FakeRay(fail=1)
    _connect(fake, None, actors=3, resources=ActorResources(1, 0))
    assert len(fake.inits) == 2 and fake.shutdowns == 1
    assert fake.inits[1]["address"] == "local" and fake.inits[1]["num_cpus"] == max(3, os.cpu_count())
    assert fake.inits[1]["runtime_env"]["env_vars"]["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    assert "warning: the embedded Ray cluster did not start (Exception: The current node timed out " \
           "during startup.); trying again" in capsys.readouterr().err  # fmt: skip
    with pytest.raises(ValueError) as e:
        _connect(FakeRay(fail=2), None, actors=1, resources=ActorResources(1, 0))
    assert str(e.value) == (
        "cannot start an embedded Ray cluster: Exception: The current node timed out during startup."
    )


def test_a_cluster_address_is_tried_once_and_checked_first():
    from sut.ray_executor import ActorResources, _connect

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        fake = FakeRay(fail=1)
        with pytest.raises(ValueError, match=f"^cannot reach the Ray cluster at {address}: Exception: "):
            _connect(fake, address, actors=1, resources=ActorResources(1, 0))
        assert len(fake.inits) == 1 and fake.inits[0]["address"] == address
    with pytest.raises(ValueError, match="the port must be a number"):
        _connect(FakeRay(fail=0), "127.0.0.1:abc", actors=1, resources=ActorResources(1, 0))


# --- a real Ray cluster -------------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install -e '.[ray]')")  # fmt: skip
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the `ray start --block` process (it drains and stops what it started), then SIGKILL
    whatever is left in its process group: only the processes this fixture started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def two_nodes():
    """A two-node Ray cluster on this machine: head (1 CPU, resource node_a) and a second node (1 CPU,
    node_b), each `ray start --block` in its own process group. Yields the head's address."""
    # a short path: Ray's socket paths under it must fit in 107 characters
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    port = _free_port()
    common = ["--block", "--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    # the nodes know nothing of this checkout (no PYTHONPATH, another working directory): the run
    # itself must tell its actors where the code is
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    procs = []
    try:
        procs.append(subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", '--resources={"node_a": 1}', f"--temp-dir={temp}",
             "--include-dashboard=false", *common],
            env=env, cwd=temp, stdout=open(temp / "head.log", "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
        address = f"127.0.0.1:{port}"
        _wait_nodes(address, 1, procs)
        procs.append(subprocess.Popen(
            [RAY, "start", f"--address={address}", '--resources={"node_b": 1}', *common],
            env=env, cwd=temp, stdout=open(temp / "node_b.log", "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        ))  # fmt: skip
        _wait_nodes(address, 2, procs)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_nodes(address: str, n: int, procs: list[subprocess.Popen], timeout: float = 90) -> None:
    """Return once `n` nodes are alive at `address` (a child process asks, so this process never
    holds a Ray connection)."""
    script = (
        "import ray, sys, time\n"
        f"ray.init(address={address!r}, logging_level='ERROR')\n"
        f"end = time.monotonic() + {timeout}\n"
        f"while sum(x['Alive'] for x in ray.nodes()) < {n} and time.monotonic() < end: time.sleep(0.5)\n"
        f"sys.exit(0 if sum(x['Alive'] for x in ray.nodes()) >= {n} else 1)\n"
    )
    deadline = time.monotonic() + timeout
    while True:
        assert all(p.poll() is None for p in procs), "ray start exited"
        ok = subprocess.run(
            [sys.executable, "-c", script], env=ENV, capture_output=True, timeout=timeout + 30
        )
        if ok.returncode == 0:
            return
        assert time.monotonic() < deadline, ok.stderr[-2000:]
        time.sleep(1)


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def harness(out: Path, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--model", "full", "--task", "xnli",
           "--languages", "en", "--output_dir", str(out), *flags]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def fault_child(out: Path, backend: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "tests.fault_child", backend, "--output_dir", str(out), *flags]


@needs_ray
@pytest.mark.slow
def test_tiny_model_offline_run_is_served_by_actors_on_both_nodes(tmp_path, tiny_checkpoint, two_nodes):
    proc = harness(tmp_path, "--weights", str(tiny_checkpoint), "--executor", "ray", "--ray_address",
                   two_nodes, "--workers", "2", "--threads", "1", "--count", "96", "--duration", "1",
                   "--allow_invalid")  # fmt: skip
    run_dir = tmp_path / "tiny" / "pytorch-ray" / "full" / "xnli" / "Offline" / "performance"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = json.loads((run_dir / "run_config.json").read_text())
    res = _results(run_dir)
    assert cfg["executor"] == res["executor"] == "ray" and cfg["model_kind"] == "tiny"
    cluster = cfg["ray"]
    assert cluster["address"] == two_nodes and len(cluster["nodes"]) == 2
    node_of = {
        next(k for k in n["resources"] if k.startswith("node_")): n["node_id"] for n in cluster["nodes"]
    }
    assert sorted(node_of) == ["node_a", "node_b"]
    assert {a["node_id"] for a in cluster["actors"]} == set(node_of.values())  # one actor per node
    assert all(a["num_cpus"] == 1 for a in cluster["actors"])
    samples = int(res["summary"]["samples_per_query"])
    per_node = res["ray"]["nodes"]
    assert set(per_node) == set(node_of.values())
    assert all(per_node[n]["samples"] > 0 and per_node[n]["batches"] > 0 for n in node_of.values())
    assert sum(n["samples"] for n in per_node.values()) == samples  # LoadGen's samples only
    assert sum(n["batches"] for n in per_node.values()) == res["sut_batches"]
    assert res["ray"]["faults"] == [] and res["sut_failure"] is None and res["samples_per_second"] > 0
    assert cfg["backend_options"]["backend"] == "pytorch" and cfg["backend_options"]["threads"] == 1


@needs_ray
@pytest.mark.slow
def test_an_actor_killed_mid_run_loses_no_query(tmp_path, two_nodes):
    """SIGKILL one actor's process during an Offline accuracy run (fake backend at 100 samples/s per
    actor): its batch is retried on the other actor, every sample is logged once with its real
    response, the loss is recorded, and the run exits 2 naming the actor and its node."""
    run_dir = tmp_path / "tiny" / "pytorch-ray" / "full" / "xnli" / "Offline" / "accuracy"
    cmd = fault_child(tmp_path, "slow", "--accuracy", "--duration", "1", "--executor", "ray",
                      "--ray_address", two_nodes, "--workers", "2")  # fmt: skip
    # started outside the checkout: only PYTHONPATH (which the run hands to its actors) finds the code
    marks = tmp_path / "serving"
    marks.mkdir()
    env = {**ENV, MARKS_ENV: str(marks)}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_for((run_dir / "mlperf_log_detail.txt").exists, "the run to start", alive=proc)
    victim = json.loads((run_dir / "run_config.json").read_text())["ray"]["actors"][1]
    # the victim has started its first batch; its share of the query (256 samples at 100/s, with
    # --ray_inflight 2 batches queued on it) keeps it busy for seconds after that
    wait_for((marks / str(victim["pid"])).exists, "the victim's first batch", alive=proc)
    os.kill(victim["pid"], signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, out[-3000:]
    label = (
        f"actor ray-worker-1 (pid {victim['pid']}, node {victim['node_id'][:8]} at {victim['node_ip']})"
    )
    assert f"error: Ray: {label} was lost mid-run" in out and "retried on ray-worker-0" in out
    res = _results(run_dir)
    faults = res["ray"]["faults"]  # one per batch in flight on the killed actor (up to --ray_inflight 2)
    assert 1 <= len(faults) <= 2 and res["ray"]["actors"][1]["losses"] == len(faults)
    for fault in faults:
        assert fault["actor"] == "ray-worker-1" and fault["node_id"] == victim["node_id"]
        assert fault["recovered"] is True and fault["retried_on"] == "ray-worker-0"
    assert res["sut_failure"].startswith(f"Ray: {label} was lost mid-run") and res["exit_status"] == 2
    entries = read_log(run_dir)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(N))  # every sample exactly once
    fs = synthetic_features()
    for e in entries:  # ... with its real response (none completed empty)
        got = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32)
        np.testing.assert_array_equal(got, expected(fs, e["qsl_idx"], "classification"))
    assert sum(a["samples"] for a in res["ray"]["actors"]) == N  # the lost batches counted once


@needs_ray
@pytest.mark.slow
def test_sigterm_during_a_ray_run_ends_it_cleanly(tmp_path, tiny_checkpoint, two_nodes):
    """ray.init installs Ray's own SIGTERM handler in the driver (it ends the process at once); the
    runner takes SIGTERM back, so a Ray run ends like any other: exit 143, results.json says so."""
    run_dir = tmp_path / "tiny" / "pytorch-ray" / "full" / "xnli" / "Offline" / "performance"
    cmd = [sys.executable, "-m", "harness", "run", "--model", "full", "--task", "xnli",
           "--languages", "en", "--output_dir", str(tmp_path), "--weights", str(tiny_checkpoint),
           "--executor", "ray", "--ray_address", two_nodes,
           "--duration", "60", "--count", "96"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_for((run_dir / "mlperf_log_detail.txt").exists, "the run to start", alive=proc)
    proc.send_signal(signal.SIGTERM)  # the 60 s test has started: only the signal ends it early
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, out[-3000:]
    assert "SIGTERM: ending the test" in out and "SIGTERM received" not in out and "Traceback" not in out
    res = _results(run_dir)
    assert res["interrupted"] is True and res["signal"] == "SIGTERM" and res["exit_status"] == 143
    assert res["executor"] == "ray" and res["ray"]["faults"] == []


@needs_ray
@pytest.mark.slow
def test_server_through_ray_completes_everything(tmp_path, two_nodes):
    """Server through Ray on the two-node cluster (fake backend, about 1,000 samples/s per actor)."""
    from common.loadgen_log import LoadgenLog

    proc = subprocess.run(fault_child(tmp_path, "ok", "--scenario", "Server", "--duration", "2",
                                      "--executor", "ray", "--ray_address", two_nodes, "--workers", "2",
                                      "--allow_invalid"),
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "tiny" / "pytorch-ray" / "full" / "xnli" / "Server" / "performance"
    res = _results(run_dir)
    assert res["executor"] == "ray" and res["ray"]["faults"] == [] and res["sut_failure"] is None
    queries = LoadgenLog.read(run_dir / "mlperf_log_detail.txt").get("result_query_count")
    assert sum(a["samples"] for a in res["ray"]["actors"]) == queries > 0  # one sample per query
    assert all(a["batches"] > 0 for a in res["ray"]["actors"])


@needs_ray
@pytest.mark.slow
def test_accuracy_through_ray_equals_accuracy_through_threads(tmp_path, tiny_checkpoint):
    """Same batches, one intra-op thread on both sides: the same bytes for every sample, the same
    scores. The Ray run starts its own embedded cluster (no address: what a fresh clone does)."""
    flags = ["--weights", str(tiny_checkpoint), "--accuracy", "--count", "96", "--threads", "1"]
    threads = harness(tmp_path / "t", *flags)
    assert threads.returncode == 0, threads.stdout[-3000:] + threads.stderr[-3000:]
    env_without_address = {k: v for k, v in ENV.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "harness", "run", "--model", "full", "--task", "xnli",
           "--languages", "en", "--output_dir", str(tmp_path / "r"), *flags,
           "--executor", "ray", "--workers", "2"]  # fmt: skip
    ray_run = subprocess.run(cmd, cwd=REPO, env=env_without_address, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert ray_run.returncode == 0, ray_run.stdout[-3000:] + ray_run.stderr[-3000:]
    t_dir, r_dir = (
        tmp_path / x / "tiny" / v / "full" / "xnli" / "Offline" / "accuracy"
        for x, v in (("t", "pytorch"), ("r", "pytorch-ray"))
    )
    t_log = sorted((e["qsl_idx"], e["data"]) for e in read_log(t_dir))
    r_log = sorted((e["qsl_idx"], e["data"]) for e in read_log(r_dir))
    assert len(t_log) == 96 and t_log == r_log
    assert (t_dir / "accuracy.json").read_bytes() == (r_dir / "accuracy.json").read_bytes()
    cfg = json.loads((r_dir / "run_config.json").read_text())
    assert cfg["ray"]["address"].startswith("local") and len(cfg["ray"]["actors"]) == 2
    assert sum(a["samples"] for a in _results(r_dir)["ray"]["actors"]) == 96


@needs_ray
def test_an_unreachable_cluster_is_a_one_line_configuration_error(tmp_path, tiny_checkpoint):
    port = _free_port()  # nothing listens there
    proc = harness(tmp_path, "--weights", str(tiny_checkpoint), "--executor", "ray", "--ray_address",
                   f"127.0.0.1:{port}", "--duration", "1", timeout=120)  # fmt: skip
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = f"error: cannot reach a Ray cluster at 127.0.0.1:{port}: Connection refused"
    assert proc.stdout.splitlines().count(line) == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip() == "exit status 3: bad configuration or input"
    res = _results(tmp_path / "tiny" / "pytorch-ray" / "full" / "xnli" / "Offline" / "performance")
    assert res["exit_status"] == 3 and res["error"] == line.removeprefix("error: ")
