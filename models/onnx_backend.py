"""ONNX Runtime backend: the exported served module (models/export.py) in an InferenceSession."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from models import cpu_caps
from models.backends import check_options
from models.base import Backend, BackendOptions
from models.export import INPUTS, OUTPUT, export_onnx, optimized, quantized

# device type -> execution providers in order of preference (filtered by what this build has)
DEFAULT_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


class OnnxRuntimeBackend(Backend):
    """Serves build/onnx/<key>[-opt][-fp16|-int8].onnx.

    options.optimize: ORT transformer fusions; dtype int8: dynamic quantisation (CPU); fp16: fp16
    graph (GPU); bf16 is not offered by ORT here. threads -> SessionOptions.intra_op_num_threads.
    On CUDA, inputs/outputs go through IO binding (one host->device copy per input, no reallocation).
    """

    name: ClassVar[str] = "onnxruntime"

    def __init__(self, served, options: BackendOptions, onnx_dir: str | Path | None = None):
        check_options(self.name, options)  # ValueError: bf16 anywhere, fp16 on CPU
        gpu = options.device.startswith("cuda")
        self.served, self.options = served, options
        path = export_onnx(served, onnx_dir)
        if options.optimize or options.dtype == "fp16":
            path = optimized(path, served, use_gpu=gpu, fp16=options.dtype == "fp16")
        # int8: 8-bit weights everywhere. Without VNNI / AMX int8 the CPU's u8 x s8 kernel can
        # saturate on them (recorded as int8_gemm_exact); 7-bit weights avoid that but were further
        # from fp32 on e5-small (docs/amx.md)
        self.int8_gemm_exact = None
        if options.dtype == "int8":
            self.int8_gemm_exact = None if gpu else cpu_caps.probe().int8_exact
            path = quantized(path)
        self.path = path
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads > 0:
            so.intra_op_num_threads = options.threads
        self.providers = self._providers(ort.get_available_providers())
        self.session = ort.InferenceSession(str(path), so, providers=self.providers)
        self.device_id = int(options.device.split(":")[1]) if ":" in options.device else 0
        self.io_binding = gpu and "CUDAExecutionProvider" in self.session.get_providers()

    def _providers(self, available: list[str]) -> list[Any]:
        wanted = [p for p in self.options.providers.split(",") if p] or list(
            DEFAULT_PROVIDERS["cuda" if self.options.device.startswith("cuda") else "cpu"]
        )
        chosen = [p for p in wanted if p in available]
        if not chosen:
            raise ValueError(f"none of the providers {wanted} is available (have {available})")
        return chosen

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {
            INPUTS[0]: np.ascontiguousarray(input_ids, dtype=np.int64),
            INPUTS[1]: np.ascontiguousarray(attention_mask, dtype=np.int64),
        }
        if not self.io_binding:
            return self.session.run([OUTPUT], feeds)[0]
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(OUTPUT, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "onnxruntime": ort.__version__,
            "onnx_file": str(self.path),
            "model_bytes": self.path.stat().st_size if self.path.is_file() else None,
            "providers": self.session.get_providers(),
            "dtype": self.options.dtype,
            **({"int8_gemm_exact": self.int8_gemm_exact} if self.int8_gemm_exact is not None else {}),
            "optimize": self.options.optimize,
            "threads": self.options.threads,
            "io_binding": self.io_binding,
        }

    def close(self) -> None:
        self.session = None
