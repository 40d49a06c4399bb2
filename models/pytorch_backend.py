"""PyTorch backend: the served module under torch.inference_mode, SDPA attention; autocast on GPU,
bf16 weights on CPU (AMX / AVX512-BF16)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from models.backends import check_options
from models.base import Backend, BackendOptions
from models.cpu_caps import bf16_warning

# BackendOptions.dtype -> autocast dtype (GPU only); fp32 runs without autocast
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
_WARNED: set[str] = set()  # warnings already printed by this process (one per kind, not per worker)


def _encoder_of(module: nn.Module) -> nn.Module:
    """The transformer encoder inside a served module: the first submodule with both `embeddings`
    and `encoder` (XLMRobertaModel, plain or inside an adapters / task model)."""
    for m in module.modules():
        if hasattr(m, "embeddings") and hasattr(m, "encoder"):
            return m
    raise ValueError(f"no transformer encoder (embeddings + encoder) inside {type(module).__name__}")


def _to_fp32(value):
    """A model output with every floating tensor (also inside tuples) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple) and not hasattr(value, "keys"):
        return type(value)(_to_fp32(v) for v in value)
    if hasattr(value, "keys"):  # a transformers ModelOutput (an ordered dict with attributes)
        for key in list(value.keys()):
            value[key] = _to_fp32(value[key])
    return value


def to_bf16_cpu(module: nn.Module) -> dict[str, int]:
    """Cast a served module for bf16 on CPU, in place; returns parameter counts by precision.

    The encoder (embeddings, attention, FFN, any adapters inside it) holds bf16 weights: its Linear
    layers run as bf16 x bf16 GEMMs with fp32 accumulation (oneDNN: AMX tiles or AVX512-BF16) and the
    SDPA attention kernel keeps its softmax sums in fp32. Kept in fp32 where bf16 loses accuracy:
      * LayerNorm weights and statistics: torch's mixed-dtype layer_norm takes the bf16 activations,
        computes mean and variance in fp32 with fp32 gamma/beta, and writes bf16;
      * the encoder's outputs, cast to fp32 by a forward hook, so the task head (classifier, span
        logits) and the retrieval mean pooling run and accumulate in fp32 on fp32 weights.
    """
    encoder = _encoder_of(module)
    encoder.to(torch.bfloat16)
    for m in encoder.modules():
        if isinstance(m, nn.LayerNorm):
            m.float()
    encoder.register_forward_hook(lambda _m, _args, out: _to_fp32(out))
    counts = {"bf16": 0, "fp32": 0}
    for p in module.parameters():
        counts["bf16" if p.dtype == torch.bfloat16 else "fp32"] += p.numel()
    return counts


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

    fp32 on CPU or GPU; bf16/fp16 on CUDA = torch.autocast (weights stay fp32, matmuls in half);
    bf16 on CPU = bf16 weights (to_bf16_cpu), only where the CPU multiplies bf16 natively
    (models/cpu_caps.py: AMX, or AVX512-BF16 with a printed warning; refused otherwise). int8 is ONNX
    Runtime only. threads > 0 -> torch.set_num_threads (process-wide). The module is built with
    intra-op parallelism off (see serial_intra_op).
    """

    name: ClassVar[str] = "pytorch"

    def __init__(self, served, options: BackendOptions):
        self.bf16_kernel = check_options(self.name, options)  # ValueError on a bad combination
        warning = bf16_warning(self.bf16_kernel) if self.bf16_kernel else None
        if warning and warning not in _WARNED:
            _WARNED.add(warning)
            print(warning, file=sys.stderr, flush=True)
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
            self.precision = to_bf16_cpu(self.module) if self.bf16_kernel else None
        if options.threads > 0:
            torch.set_num_threads(options.threads)
        self.autocast = None if self.bf16_kernel else AUTOCAST.get(options.dtype)

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
            **(
                {"bf16_kernel": self.bf16_kernel, "parameters_by_dtype": self.precision}
                if self.bf16_kernel
                else {}
            ),
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
