"""`--executor ray`: each SUT worker's backend lives in a Ray actor, on any node of a Ray cluster.

What runs where:
  * The LoadGen process keeps everything it has with threads: LoadGen, the QSL, the scenario's
    scheduler (Offline length-sorted batching, Server planning, SingleStream), the watchdog and
    `QuerySamplesComplete` (sut/base.py). Each SUT worker thread holds a `RayBackend` proxy whose
    `predict(input_ids, attention_mask)` sends the padded batch (two int64 arrays, 2 x B x L x 8
    bytes) to an actor and returns its float32 output as a numpy array. The tokenised features never
    leave this process: a batch carries only its own padded tokens.
  * An actor (`BackendActor`, one per `--workers`) builds the real backend in its own process from
    a picklable factory (a partial of `models.backends.create_backend`: any registered backend, no
    per-backend code here) and runs `predict`. Several proxies (`--ray_inflight`, default 2) share
    one actor, so its next batch is already queued there while it computes: the round trip is hidden.

Cluster: without an address `ray.init(address="local")` starts an embedded cluster for this run
(sized to hold the actors, stopped at the end); `--ray_address` (or RAY_ADDRESS) joins a running
one. Actors import this checkout (their PYTHONPATH is set to it: every node needs it at the same
path, and the model files the run resolved). An actor asks for `num_gpus=1` when the backend uses
CUDA, else `num_cpus=--threads` (1 when 0: Ray then sets OMP_NUM_THREADS to it); actors are placed
with the SPREAD strategy (one per node while nodes last). A cluster that cannot be started or
reached, too few resources, or an actor that cannot build its backend for a bad option or a missing
or damaged file (e.g. no checkpoint on its node) is a ValueError: one line, exit 3 in the runner.

Faults (`ActorPool.predict`): an actor lost during a call (its process or node died, it is
restarting, or the call took longer than the call timeout: it is then killed, so that Ray restarts
it) raises `ActorLost` in the transport. The batch is retried ONCE on another live actor (or, with
none, on the same actor once Ray has restarted it: `max_restarts=1`); until a lost actor answers a
probe again, its proxies send their batches to live actors. Every loss is recorded (`faults`:
actor, node, error, where the batch was retried, whether that worked). A batch lost on its retry
too raises `ActorFailure`, which the SUT records as the run's failure (its batch and all later work
complete empty; exit 2). The runner also exits 2 after a run that recovered: no query was lost, but
the figures were measured with an actor missing (harness/runner.py). A model error raised inside an
actor is not retried (it would recur anywhere): it reaches the SUT as that error.

Ray is imported only here in the core, and this module only when the executor is used: the thread
executor never needs it. Ray is optional (the `ray` extra): without it this module still imports
(the proxy pool works over any transport), and `RayExecutor.start` refuses in one line.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from common.paths import REPO
from models.base import Backend, BackendOptions

try:
    import ray
    from ray.exceptions import ActorDiedError, GetTimeoutError, RayError, RayTaskError
except ImportError:  # the optional ray extra is not installed: start() says how to install it
    ray = None

START_TIMEOUT_S = 300.0  # all actors placed and their backends built within this
CONNECT_TIMEOUT_S = 5.0  # TCP check of --ray_address before Ray's own (slow, retrying) connect
PROBE_EVERY_S = 0.2  # how often a lost actor is asked whether it is back
EMBEDDED_OBJECT_STORE_BYTES = 1 << 30  # an embedded cluster's object store (batches are small)
# Ray gives a starting node a fixed 30 s to register; on a busy machine it can take longer once
EMBEDDED_START_ATTEMPTS = 2


class ActorLost(Exception):
    """An actor could not serve a call: its process or node died, it is restarting, or it did not
    answer within the call timeout. Raised by a transport; the pool retries the batch once."""


class ActorFailure(RuntimeError):
    """A batch lost on its actor and again on its retry: the run's failure (exit 2)."""


def first_line(error: BaseException | str, limit: int = 240) -> str:
    """`error` as one short line (Ray's messages run to many lines of context)."""
    text = str(error) if isinstance(error, str) else f"{type(error).__name__}: {error}"
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --- the actor (runs in its own process, on any node) --------------------------------------------
class BackendActor:
    """Builds the backend with `make()` in the actor's process and serves `predict`.

    A build error is kept and raised by `ready()` (and by every later call), so the LoadGen process
    sees the original exception (e.g. a ValueError for a bad dtype) instead of a dead actor."""

    def __init__(self, make: Callable[[], Backend]):
        self.backend: Backend | None = None
        self.error: BaseException | None = None
        try:
            self.backend = make()
        except Exception as exc:  # noqa: BLE001 - re-raised by ready()
            self.error = exc

    def where(self) -> dict[str, Any]:
        """This actor's node and process (they change when Ray restarts it elsewhere)."""
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
        }

    def ready(self) -> dict[str, Any]:
        """where() and the backend's describe(), or the build error."""
        if self.backend is None:
            raise self.error or RuntimeError("backend not built")
        return {**self.where(), "backend": self.backend.describe()}

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.backend is None:
            raise self.error or RuntimeError("backend not built")
        return self.backend.predict(input_ids, attention_mask)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


# --- transport: how the pool reaches an actor (Ray here, a fake in tests) ------------------------
class Transport(Protocol):
    def call(self, actor: int, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The actor's predict; ActorLost when the actor could not serve it."""
        ...

    def probe(self, actor: int, wait_s: float) -> dict[str, Any] | None | bool:
        """Whether a lost actor is back: its where() dict when it answered, None while it has not
        (yet) within wait_s, False when it is dead for good (no restart left)."""
        ...


class ActorPool:
    """The actors of one run seen from the LoadGen process (thread-safe): which actor serves each
    batch, the retry of a batch whose actor was lost, and what each actor served."""

    def __init__(
        self,
        transport: Transport,
        names: Sequence[str],
        places: Sequence[dict[str, Any]],
        retry_wait_s: float,
    ):
        self.transport = transport
        self.names = list(names)
        self.places = [dict(p) for p in places]  # node_id, node_ip, pid of each actor, as last seen
        self.retry_wait_s = retry_wait_s  # longest wait for a lost actor's restart (no other alive)
        n = len(self.names)
        self.lost = [False] * n  # lost and not seen back yet
        self.dead = [False] * n  # lost for good
        self.batches, self.samples, self.losses, self.restarts = [0] * n, [0] * n, [0] * n, [0] * n
        self.nodes: dict[str, dict[str, Any]] = {}  # node_id -> {"node_ip", "batches", "samples"}
        self.faults: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def label(self, actor: int) -> str:
        """'ray-worker-1 (pid 123, node 5c4c1a57 at 10.0.0.2)': an actor and where it ran."""
        p = self.places[actor]
        node = str(p.get("node_id") or "?")[:8]
        return f"{self.names[actor]} (pid {p.get('pid', '?')}, node {node} at {p.get('node_ip', '?')})"

    # --- serving --------------------------------------------------------------------------------
    def predict(self, home: int, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Run one batch for a proxy whose own actor is `home`; retried once if its actor is lost."""
        first = self._route(home)
        try:
            out = self.transport.call(first, input_ids, attention_mask)
        except ActorLost as lost:
            fault = self._lose(first, lost, len(input_ids))
            second = self._retry_target(first)
            with self._lock:
                fault.update(
                    retried_on=self.names[second], retry_node_id=self.places[second].get("node_id")
                )
            try:
                out = self.transport.call(second, input_ids, attention_mask)
            except ActorLost as again:
                self._lose(second, again, len(input_ids), retry_of=fault)
                raise ActorFailure(
                    f"actor {fault['label']} was lost ({fault['error']}); the retry of its batch of "
                    f"{len(input_ids)} samples on {self.label(second)} was lost too "
                    f"({first_line(str(again))})"
                ) from again
            with self._lock:
                fault["recovered"] = True
            self._served(second, len(input_ids))
            return out
        self._served(first, len(input_ids))
        return out

    def reset_counts(self) -> None:
        """Zero the per actor and per node counts (the runner calls it after the warm-up, so they
        count LoadGen's samples only); faults are kept."""
        with self._lock:
            n = len(self.names)
            self.batches, self.samples, self.nodes = [0] * n, [0] * n, {}

    def _served(self, actor: int, n: int) -> None:
        with self._lock:
            self.batches[actor] += 1
            self.samples[actor] += n
            place = self.places[actor]
            node = self.nodes.setdefault(
                str(place.get("node_id")), {"node_ip": place.get("node_ip"), "batches": 0, "samples": 0}
            )
            node["batches"] += 1
            node["samples"] += n

    def _lose(self, actor: int, error: ActorLost, n: int, retry_of: dict | None = None) -> dict:
        """Mark `actor` lost and record the fault (or, for a lost retry, complete its record)."""
        with self._lock:
            self.lost[actor] = True
            self.losses[actor] += 1
            if retry_of is not None:
                retry_of.update(recovered=False, retry_error=first_line(str(error)))
                return retry_of
            fault = {
                "actor": self.names[actor],
                "label": self.label(actor),
                "node_id": self.places[actor].get("node_id"),
                "node_ip": self.places[actor].get("node_ip"),
                "pid": self.places[actor].get("pid"),
                "error": first_line(str(error)),
                "batch_samples": n,
                "at": time.time(),
                "retried_on": None,
                "recovered": False,
            }
            self.faults.append(fault)
            return fault

    # --- routing --------------------------------------------------------------------------------
    def _back(self, actor: int, wait_s: float = 0.0) -> bool:
        """Whether lost `actor` answers again (asks the transport; updates where it now runs)."""
        if self.dead[actor]:
            return False
        answer = self.transport.probe(actor, wait_s)
        with self._lock:
            if answer is False:
                self.dead[actor] = True
                return False
            if answer is None:
                return False
            if self.lost[actor]:
                self.lost[actor] = False
                self.restarts[actor] += 1 if answer.get("pid") != self.places[actor].get("pid") else 0
                self.places[actor] = dict(answer)
            return True

    def _live_others(self, actor: int) -> list[int]:
        with self._lock:
            return [a for a in range(len(self.names)) if a != actor and not self.lost[a]]

    def _route(self, home: int) -> int:
        """`home` unless it is lost and not back yet; then a live actor (round robin), else home."""
        if not self.lost[home] or self._back(home):
            return home
        others = self._live_others(home)
        return others[next(self._turn) % len(others)] if others else home

    def _retry_target(self, failed: int) -> int:
        """Where a lost batch is retried: another live actor, else `failed` itself once restarted
        (waiting up to retry_wait_s; if it is not back the retry's call fails at once)."""
        others = self._live_others(failed)
        if others:
            return others[next(self._turn) % len(others)]
        self._back(failed, self.retry_wait_s)
        return failed

    # --- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """results.json "ray": per actor and per node batches and samples, and every fault."""
        with self._lock:
            actors = [
                {
                    "name": name,
                    **self.places[a],
                    "batches": self.batches[a],
                    "samples": self.samples[a],
                    "losses": self.losses[a],
                    "restarts": self.restarts[a],
                    "dead": self.dead[a],
                }
                for a, name in enumerate(self.names)
            ]
            faults = [{k: v for k, v in f.items() if k != "label"} for f in self.faults]
            return {
                "actors": actors,
                "nodes": {k: dict(v) for k, v in self.nodes.items()},
                "faults": faults,
            }

    def fault_summary(self) -> str | None:
        """One line per lost actor for the run's exit message (None when no actor was lost)."""
        with self._lock:
            if not self.faults:
                return None
            lines = []
            for f in self.faults:
                where = f"retried on {f['retried_on']}" if f["retried_on"] else "not retried"
                outcome = (
                    "completed: no query lost"
                    if f["recovered"]
                    else f"lost again ({f.get('retry_error')})"
                )
                lines.append(
                    f"actor {f['label']} was lost mid-run ({f['error']}); its batch of "
                    f"{f['batch_samples']} samples was {where} and {outcome}"
                )
            return "; ".join(lines)


class RayBackend(Backend):
    """A worker's backend proxy: `predict` runs on actor `home` of `pool` (retried once elsewhere
    if that actor is lost). `describe()` is the real backend's, as its actor reported it."""

    name = "ray"

    def __init__(self, pool: ActorPool, home: int, description: dict[str, Any]):
        self.pool, self.home, self.description = pool, home, description

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.pool.predict(self.home, input_ids, attention_mask)

    def describe(self) -> dict[str, Any]:
        return {**self.description, "executor": "ray", "actor": self.pool.names[self.home]}


# --- Ray itself ---------------------------------------------------------------------------------
class RayTransport:
    """ActorPool's transport over Ray actor handles. A call waits at most `timeout_s`; past it the
    actor is killed (Ray restarts it if it has a restart left) and the call counts as lost."""

    def __init__(self, handles: Sequence[Any], timeout_s: float):
        self.handles, self.timeout_s = list(handles), timeout_s
        self._probes: dict[int, Any] = {}  # actor -> its pending where() call
        self._lock = threading.Lock()

    def call(self, actor: int, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        try:
            ref = self.handles[actor].predict.remote(input_ids, attention_mask)
            return ray.get(ref, timeout=self.timeout_s)
        except GetTimeoutError as exc:
            try:
                ray.kill(self.handles[actor], no_restart=False)
            except Exception:  # noqa: BLE001 - already gone
                pass
            raise ActorLost(
                f"no answer within {self.timeout_s:g} s; killed so that Ray restarts it"
            ) from exc
        except RayTaskError as exc:  # the backend raised inside the actor: that error, not a loss
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, BaseException) else exc) from exc
        except RayError as exc:  # actor or node died, actor restarting, result lost with its node
            raise ActorLost(first_line(exc)) from exc

    def probe(self, actor: int, wait_s: float) -> dict[str, Any] | None | bool:
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                ref = self._probes.get(actor)
                if ref is None:
                    ref = self._probes[actor] = self.handles[actor].where.remote()
            ready, _ = ray.wait([ref], timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            with self._lock:
                self._probes.pop(actor, None)
            try:
                return ray.get(ref)
            except ActorDiedError:
                return False
            except RayError:  # still restarting: ask again (below) until the deadline
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(PROBE_EVERY_S, left))


@dataclass(frozen=True)
class ActorResources:
    """What each actor asks the cluster for."""

    num_cpus: float
    num_gpus: float

    @classmethod
    def for_backend(cls, options: BackendOptions) -> ActorResources:
        """One GPU per actor on CUDA (and no CPU reservation); else --threads CPUs (1 when 0)."""
        if options.device.startswith("cuda"):
            return cls(num_cpus=0, num_gpus=1)
        return cls(num_cpus=max(1, options.threads), num_gpus=0)


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ValueError unless something listens at host:port (Ray itself retries a dead address for tens
    of seconds). Addresses Ray resolves itself ("auto", "local") are left to it."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return
    if not port.isdigit():
        raise ValueError(f"Ray address {address!r}: the port must be a number (host:port)")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ValueError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from exc


class RayExecutor:
    """One run's Ray session: the cluster connection, the actors, their pool and proxies.

    `RayExecutor.start(...)` connects (or starts an embedded cluster), places the actors and waits
    until each has built its backend; `proxies(per_actor)` gives the SUT's backends; `describe()`
    goes into run_config.json, `stats()` into results.json; `close()` ends the actors (and the
    embedded cluster)."""

    def __init__(
        self,
        address: str | None,
        owns_ray: bool,
        handles: list[Any],
        pool: ActorPool,
        resources: ActorResources,
        descriptions: list[dict[str, Any]],
        timeout_s: float,
        started_s: float,
    ):
        self.address, self.owns_ray, self.handles, self.pool = address, owns_ray, handles, pool
        self.resources, self.descriptions, self.timeout_s = resources, descriptions, timeout_s
        self.started_s = started_s
        self.inflight = 0

    @classmethod
    def start(
        cls,
        make: Callable[[], Backend],
        actors: int,
        resources: ActorResources,
        address: str | None = None,
        call_timeout_s: float = 30.0,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> RayExecutor:
        """Connect to `address` (None: start an embedded local cluster), start `actors` actors that
        each build `make()`, wait until all are ready. ValueError (one line) when that fails."""
        t0 = time.monotonic()
        if ray is None:
            raise ValueError("--executor ray needs Ray: pip install -e '.[ray]'")
        owns = not ray.is_initialized()
        if owns:
            _connect(ray, address, actors, resources)
        try:
            _check_resources(ray, actors, resources, address)
            remote = ray.remote(BackendActor).options(
                num_cpus=resources.num_cpus,
                num_gpus=resources.num_gpus,
                max_restarts=1,
                max_task_retries=0,
                scheduling_strategy="SPREAD",
            )
            handles = [remote.remote(make) for _ in range(actors)]
            names = [f"ray-worker-{i}" for i in range(actors)]
            ready = _wait_ready(ray, handles, names, start_timeout_s, resources)
        except BaseException:
            if owns:
                ray.shutdown()
            raise
        places = [{k: r[k] for k in ("node_id", "node_ip", "pid")} for r in ready]
        pool = ActorPool(RayTransport(handles, call_timeout_s), names, places, call_timeout_s)
        return cls(
            address,
            owns,
            handles,
            pool,
            resources,
            [r["backend"] for r in ready],
            call_timeout_s,
            time.monotonic() - t0,
        )

    def proxies(self, per_actor: int) -> list[RayBackend]:
        """per_actor proxies per actor, interleaved (actor 0, 1, ..., 0, 1, ...)."""
        self.inflight = per_actor
        n = len(self.handles)
        return [RayBackend(self.pool, w % n, self.descriptions[w % n]) for w in range(n * per_actor)]

    def describe(self) -> dict[str, Any]:
        """run_config.json "ray": the cluster as the run found it and where each actor was placed."""
        nodes = [
            {
                "node_id": n["NodeID"],
                "node_ip": n.get("NodeManagerAddress"),
                "alive": n.get("Alive"),
                "resources": n.get("Resources", {}),
            }
            for n in ray.nodes()
        ]
        return {
            "ray_version": ray.__version__,
            "address": self.address or "local (embedded cluster started by this run)",
            "nodes": nodes,
            "cluster_resources": ray.cluster_resources(),
            "actors": [
                {
                    "name": name,
                    **place,
                    "num_cpus": self.resources.num_cpus,
                    "num_gpus": self.resources.num_gpus,
                }
                for name, place in zip(self.pool.names, self.pool.places, strict=True)
            ],
            "inflight_per_actor": self.inflight,
            "call_timeout_s": self.timeout_s,
            "start_s": round(self.started_s, 2),
        }

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()

    def fault_summary(self) -> str | None:
        return self.pool.fault_summary()

    def close(self) -> None:
        """End the actors; stop the embedded cluster (or leave a joined one as it was)."""
        if not ray.is_initialized():
            return
        for handle in self.handles:
            try:
                ray.kill(handle)
            except Exception:  # noqa: BLE001 - already dead
                pass
        if self.owns_ray:
            ray.shutdown()


def _connect(ray: Any, address: str | None, actors: int, resources: ActorResources) -> None:
    """ray.init: join `address`, or start an embedded cluster with room for the actors. The workers'
    PYTHONPATH starts with this checkout (Ray itself adds only the driver's working directory), so
    the actors import the same code whatever directory the run was started from."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    common = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": {"PYTHONPATH": path}},
    }
    for attempt in range(1 if address else EMBEDDED_START_ATTEMPTS):
        try:
            if address:
                check_address(address)
                ray.init(address=address, **common)
            else:  # "local": never join a cluster that happens to run on this machine
                cpus = max(os.cpu_count() or 1, int(np.ceil(actors * resources.num_cpus)))
                ray.init(
                    address="local",
                    num_cpus=cpus,
                    object_store_memory=EMBEDDED_OBJECT_STORE_BYTES,
                    **common,
                )
            return
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, AuthenticationError...
            ray.shutdown()  # whatever part of the cluster did start
            if address or attempt + 1 == EMBEDDED_START_ATTEMPTS:
                where = (
                    f"reach the Ray cluster at {address}" if address else "start an embedded Ray cluster"
                )
                raise ValueError(f"cannot {where}: {first_line(exc)}") from exc
            print(
                f"warning: the embedded Ray cluster did not start ({first_line(exc)}); trying again",
                file=sys.stderr,
                flush=True,
            )


def _check_resources(ray: Any, actors: int, resources: ActorResources, address: str | None) -> None:
    """ValueError when the whole cluster cannot hold the actors (placement would wait forever)."""
    have = ray.cluster_resources()
    for key, each in (("CPU", resources.num_cpus), ("GPU", resources.num_gpus)):
        if each and actors * each > have.get(key, 0):
            raise ValueError(
                f"{actors} Ray actors need {actors * each:g} {key} ({each:g} each) but the cluster "
                f"{'at ' + address if address else '(embedded)'} has {have.get(key, 0):g}"
            )


def _wait_ready(
    ray: Any, handles: list[Any], names: list[str], timeout_s: float, resources: ActorResources
) -> list[dict[str, Any]]:
    """Each actor's ready() (where it runs, its backend's describe()); ValueError naming the actor
    when one is not placed in time or cannot build its backend."""
    refs = [h.ready.remote() for h in handles]
    done, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        late = ", ".join(names[refs.index(r)] for r in pending)
        raise ValueError(
            f"Ray actors {late} did not start within {timeout_s:g} s (each needs "
            f"{resources.num_cpus:g} CPU, {resources.num_gpus:g} GPU on one node; the cluster has "
            f"{ray.cluster_resources()})"
        )
    out = []
    for name, ref in zip(names, refs, strict=True):
        try:
            out.append(ray.get(ref))
        except RayTaskError as exc:  # the backend could not be built there
            cause = getattr(exc, "cause", None) or exc
            why = f"Ray actor {name} could not build its backend: {first_line(cause)}"
            if isinstance(cause, ValueError | OSError):  # bad options, a missing or damaged file
                raise ValueError(why) from exc
            raise RuntimeError(why) from exc
        except RayError as exc:
            raise ValueError(f"Ray actor {name} did not start: {first_line(exc)}") from exc
    return out
