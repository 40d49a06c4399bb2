"""Backend registry: BACKEND= names -> Backend classes (models/base.py), imported only when used."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from common.names import lookup
from models.base import Backend, BackendOptions


@dataclass(frozen=True)
class BackendEntry:
    """target: "module:Class" (lazy: onnxruntime is not imported for a PyTorch run and vice versa);
    title: how reports name the backend."""

    target: str
    title: str


BACKENDS: dict[str, BackendEntry] = {
    "pytorch": BackendEntry("models.pytorch_backend:PyTorchBackend", "PyTorch"),
    "onnxruntime": BackendEntry("models.onnx_backend:OnnxRuntimeBackend", "ONNX Runtime"),
    # zeros at once: the harness's dispatch ceiling (speed only; accuracy runs refuse it)
    "noop": BackendEntry("models.noop_backend:NoopBackend", "no-op (dispatch ceiling)"),
}


def get_backend_class(name: str) -> type[Backend]:
    """The Backend class registered as `name`; ValueError with "did you mean" otherwise."""
    module, cls = lookup("backend", name, BACKENDS).target.split(":")
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, served, options: BackendOptions | None = None) -> Backend:
    """Build backend `name` for a ServedModel (models.registry.resolve) with `options`."""
    return get_backend_class(name)(served, options or BackendOptions())
