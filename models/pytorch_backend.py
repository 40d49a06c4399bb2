"""PyTorch backend: the served module under torch.inference_mode, SDPA attention, optional autocast."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import Backend, BackendOptions

# BackendOptions.dtype -> autocast dtype (GPU only); fp32 runs without autocast
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def serial_intra_op():
    """torch's intra-op parallelism off for the block, then back to what it was.

    The model is built here, in the calling thread, and served from the SUT's worker threads.
    libgomp keeps one OpenMP thread team per native thread that enters a parallel region, and a
    build can enter one (the adapters library's load_adapter initialises tensors large enough to
    go parallel). Its team then outlives the build beside the worker's own, and with more OpenMP
    threads than cores libgomp stops spinning between regions: every op of a forward pass waits
    for a sleeping thread to wake. Measured on 2 cores, e5-small `adapter`, XNLI, batch 1, 2
    threads, on a worker thread: p90 48-52 ms built in parallel, 33 ms built serially (`full`
    28-34 ms either way; reports/study-e5/batch1_threads.md). Building serially costs nothing
    measurable (loading is I/O and initialisation)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class PyTorchBackend(Backend):
    """Runs `served.torch_module()` on options.device.

    fp32 on CPU or GPU; bf16/fp16 = torch.autocast on CUDA (weights stay fp32, matmuls in half);
    int8 is ONNX Runtime only. threads > 0 -> torch.set_num_threads (process-wide). The module is
    built with intra-op parallelism off (see serial_intra_op).
    """

    name: ClassVar[str] = "pytorch"

    def __init__(self, served, options: BackendOptions):
        if options.dtype == "int8":
            raise ValueError("dtype int8 is served by the onnxruntime backend (dynamic quantisation)")
        if options.dtype in AUTOCAST and not options.device.startswith("cuda"):
            raise ValueError(
                f"dtype {options.dtype} needs device cuda (autocast on GPU); use fp32 on CPU"
            )
        self.served, self.options = served, options
        self.device = torch.device(options.device)
        with serial_intra_op():
            try:
                module = served.torch_module(attn_implementation="sdpa")
                self.attn = "sdpa"
            except (ValueError, ImportError):  # an architecture without SDPA support
                module = served.torch_module(attn_implementation="eager")
                self.attn = "eager"
            self.module = module.to(self.device)
        if options.threads > 0:
            torch.set_num_threads(options.threads)
        self.autocast = AUTOCAST.get(options.dtype)

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(
            self.device, non_blocking=True
        )
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(
            self.device, non_blocking=True
        )
        with torch.inference_mode(), self._autocast():
            out = self.module(ids, mask)
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "torch": torch.__version__,
            "device": str(self.device),
            "dtype": self.options.dtype,
            "attn_implementation": self.attn,
            "threads": torch.get_num_threads(),
            **self.memory(),
        }

    def memory(self) -> dict[str, int]:
        """The served module's parameters: count and bytes (adapters included where served)."""
        params = list(self.module.parameters()) if self.module is not None else []
        return {
            "parameters": sum(p.numel() for p in params),
            "parameter_bytes": sum(p.numel() * p.element_size() for p in params),
        }

    def close(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
