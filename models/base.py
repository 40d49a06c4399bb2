"""The Backend contract: run one served model on padded batches of pre-tokenised samples.

A backend is built from a `ServedModel` (what the model registry resolved: which checkpoint, which
task head, how it is served) and `BackendOptions` (device, dtype, threads). It never sees LoadGen:
the SUT (sut/) owns scheduling and calls `predict` from its worker thread(s).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

DTYPES = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs. Validated on construction.

    device:  "cpu" or "cuda" (or "cuda:N")
    dtype:   fp32 everywhere; bf16/fp16 on GPU (PyTorch autocast / ONNX fp16 graph);
             int8 = ONNX Runtime dynamic quantisation (CPU)
    threads: intra-op threads, 0 = the library's default
    optimize: ONNX Runtime transformer graph fusions (attention, LayerNorm, GELU)
    providers: ONNX Runtime execution providers in order of preference ("" = by device)
    """

    device: str = "cpu"
    dtype: str = "fp32"
    threads: int = 0
    optimize: bool = True
    providers: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device {self.device!r} must be 'cpu' or 'cuda[:N]'")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """Runs a model. `predict` is called by one thread at a time per instance.

    predict(input_ids int64 [B, L], attention_mask int64 [B, L]) returns float32, by task kind:
      classification [B, num_labels]; qa [B, 2, L]; retrieval [B, hidden]   (see tasks/base.py)
    Rows must not depend on the other rows of the batch beyond float rounding (TEST01 compares the
    first element of each response between batched and accuracy runs).
    """

    name: ClassVar[str]

    @abstractmethod
    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        """What run_config.json records about this backend (provider, dtype, threads...)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - an optional hook; most backends hold nothing to release
        """Release sessions / memory. Called once when the run ends, whatever happened."""
