"""No-op backend (`--backend noop`): zeros of the right shape, at once, for any served model.

It measures the harness's dispatch ceiling: how many samples/s the LoadGen process (scheduling, QSL
batches, response packing, QuerySamplesComplete) and the executor (threads, or Ray actors: the
padded arrays still travel to the actor and the zeros back) can push when the model costs nothing
(`make benchmark`, bench/ray_bench.py). Its outputs mean nothing: accuracy runs refuse it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from models.base import Backend, BackendOptions


class NoopBackend(Backend):
    """predict -> float32 zeros: classification [B, num_labels], qa [B, 2, L], retrieval [B, hidden]."""

    name: ClassVar[str] = "noop"

    def __init__(self, served, options: BackendOptions):
        self.kind = served.task_kind
        self.num_labels = int(served.num_labels)
        self.hidden = int(served.encoder_config.get("hidden_size", 0))
        if self.kind == "retrieval" and self.hidden < 1:
            raise ValueError(f"noop backend: no hidden_size in the encoder config of {served.name!r}")

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        b, length = input_ids.shape
        if self.kind == "qa":
            return np.zeros((b, 2, length), dtype=np.float32)
        return np.zeros(
            (b, self.hidden if self.kind == "retrieval" else self.num_labels), dtype=np.float32
        )

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "note": "zeros: dispatch ceiling only, no model"}
