"""ONNX Runtime backends: the exported served module (models/export.py) in an InferenceSession
(`OnnxRuntimeBackend`), and a task list's per-task forms, one session per task
(`MultiTaskOnnxBackend`, docs/multitask.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from models import cpu_caps
from models.backends import check_options
from models.base import Backend, BackendOptions
from models.export import INPUTS, OUTPUT, export_onnx, optimized, quantized
from models.spec import MIXED_BATCH_FORMS, mixed_batches_on_pytorch_only
from tasks.mixed import MixedOutput, group_rows

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


class MultiTaskOnnxBackend(Backend):
    """A task list's per-task forms on ONNX Runtime (fp32): one `OnnxRuntimeBackend`, i.e. one
    InferenceSession of the task's single-task export, per real task; synthetic tasks (TASK@K) K
    separate sessions of the one task's graph (K copies resident, as full fine-tuning holds K
    models). Forms: plain (`full`), merged (`lora-squad`), fusion (`adapter-squad`: each task's
    graph holds its own copy of the shared backbone). The mixed-batch forms (adapter, unmerged LoRA)
    are PyTorch only (ValueError).

    predict(input_ids int64 [B, L], attention_mask int64 [B, L], tasks int64 [B]) -> MixedOutput:
    rows grouped per task exactly as models/multitask.py `PerTaskForm` groups them (tasks/mixed.py
    `group_rows`), each task's sub-batch cut to its own longest row."""

    name: ClassVar[str] = "onnxruntime"

    def __init__(self, multi, options: BackendOptions, onnx_dir: str | Path | None = None):
        if multi.form in MIXED_BATCH_FORMS:
            raise ValueError(mixed_batches_on_pytorch_only(f"form {multi.form!r} serves a task list"))
        if options.dtype != "fp32":
            raise ValueError(f"a task list is served in fp32 only, got dtype {options.dtype}")
        self.multi, self.options = multi, options
        self.kinds: list[str] = list(multi.kinds)
        self.sessions: list[OnnxRuntimeBackend] = []
        for served in multi.models:
            self.sessions.append(OnnxRuntimeBackend(served, options, onnx_dir))
        if multi.synthetic:  # K separate sessions of the one graph (export and fusions cached)
            self.sessions += [
                OnnxRuntimeBackend(multi.models[0], options, onnx_dir)
                for _ in range(multi.synthetic - 1)
            ]

    def predict(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, tasks: np.ndarray | None = None
    ) -> MixedOutput:
        if tasks is None:
            raise ValueError("a task list's backend needs each row's task (a mixed QSL's Batch.inputs)")
        parts = []
        for k, rows, width in group_rows(tasks, attention_mask):
            index = np.asarray(rows, dtype=np.int64)
            out = self.sessions[k].predict(input_ids[index, :width], attention_mask[index, :width])
            parts.append((index, self.kinds[k], np.asarray(out, dtype=np.float32)))
        return MixedOutput(parts)

    def describe(self) -> dict[str, Any]:
        first = self.sessions[0]
        return {
            "backend": self.name,
            "onnxruntime": ort.__version__,
            "device": self.options.device,
            "dtype": self.options.dtype,
            "form": self.multi.form,
            "tasks": len(self.kinds),
            "onnx_files": [str(s.path) for s in self.sessions[: len(self.multi.models)]],
            "providers": first.session.get_providers() if first.session is not None else [],
            "optimize": self.options.optimize,
            "threads": self.options.threads,
            "io_binding": first.io_binding,
            **self.memory(),
        }

    def memory(self) -> dict[str, int]:
        """The ONNX graphs held: `sessions` (one per task, K for TASK@K) and `graph_bytes`, the size
        of each session's graph file (with its external weights file, if any) counted once per
        session, so K sessions of one graph count K times (each session holds its own copy of the
        weights). Not counted: ONNX Runtime's own allocations (prepacked weights, arenas), which
        the process's RSS shows."""
        return {
            "sessions": len(self.sessions),
            "graph_bytes": sum(graph_bytes(s.path) for s in self.sessions),
        }

    def close(self) -> None:
        for s in self.sessions:
            s.close()


def graph_bytes(path: Path) -> int:
    """The bytes of an ONNX graph on disk: its file, plus its external weights (<name>.data, models/
    export.py writes them beside graphs over 2 GB)."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
