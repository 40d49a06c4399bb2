"""Backend registry: BACKEND= names -> Backend classes (models/base.py), imported only when used."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from common.names import lookup
from models.base import DTYPES, Backend, BackendOptions
from models.cpu_caps import bf16_kernel


@dataclass(frozen=True)
class BackendEntry:
    """target: "module:Class" (lazy: onnxruntime is not imported for a PyTorch run and vice versa);
    title: how reports name the backend; dtypes: device kind ("cpu", "cuda") -> the dtypes it serves
    there (check_options refuses the others before anything is built); computes: False for a backend
    that answers without computing (its dtype needs no hardware)."""

    target: str
    title: str
    dtypes: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"cpu": DTYPES, "cuda": DTYPES}, hash=False
    )
    computes: bool = True


BACKENDS: dict[str, BackendEntry] = {
    # bf16 on CPU: bf16 weights through oneDNN, where the CPU has AMX or AVX512-BF16 (models/cpu_caps.py)
    "pytorch": BackendEntry(
        "models.pytorch_backend:PyTorchBackend",
        "PyTorch",
        {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
    ),
    # int8 = dynamic quantisation; fp16 = an fp16 graph (GPU)
    "onnxruntime": BackendEntry(
        "models.onnx_backend:OnnxRuntimeBackend",
        "ONNX Runtime",
        {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16", "int8")},
    ),
    # zeros at once: the harness's dispatch ceiling (speed only; accuracy runs refuse it)
    "noop": BackendEntry("models.noop_backend:NoopBackend", "no-op (dispatch ceiling)", computes=False),
}


def get_backend_class(name: str) -> type[Backend]:
    """The Backend class registered as `name`; ValueError with "did you mean" otherwise."""
    module, cls = lookup("backend", name, BACKENDS).target.split(":")
    return getattr(importlib.import_module(module), cls)


def check_options(name: str, options: BackendOptions) -> str | None:
    """ValueError (one line) unless backend `name` serves options.dtype on options.device on this
    machine; returns the bf16 CPU kernel ("amx", "avx512_bf16") for a bf16 CPU run, else None.
    Cheap: imports no backend library (the CPU probe imports torch, for bf16 on CPU only)."""
    entry = lookup("backend", name, BACKENDS)
    kind = "cuda" if options.device.startswith("cuda") else "cpu"
    served = entry.dtypes.get(kind, ())
    if options.dtype not in served:
        elsewhere = [
            f"{n} ({k})"
            for n, e in BACKENDS.items()
            if e.computes
            for k, ds in e.dtypes.items()
            if options.dtype in ds
        ]
        hint = f"; dtype {options.dtype} is served by {', '.join(elsewhere)}" if elsewhere else ""
        raise ValueError(
            f"backend {name} serves {', '.join(served)} on {kind}, not {options.dtype}{hint}"
        )
    if entry.computes and kind == "cpu" and options.dtype == "bf16":
        return bf16_kernel()
    return None


def create_backend(name: str, served, options: BackendOptions | None = None) -> Backend:
    """Build backend `name` for a ServedModel (models.registry.resolve) with `options`."""
    return get_backend_class(name)(served, options or BackendOptions())
