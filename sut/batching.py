"""Length-sorted, token-budget batching: pad each batch only to its own longest sample.

Pure functions on numpy arrays (no LoadGen, no threads): the Offline SUT plans a whole query with
`plan_batches`, the Server SUT grows one batch at a time with `fits`, and the benchmark's plain loop
uses the same `plan_batches` so both sides of the efficiency ratio batch identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchLimits:
    """max_batch: samples per batch (>= 1). token_budget: max padded tokens per batch, i.e.
    batch_size x longest length (0 = unlimited). A single sample longer than the budget still forms a
    batch of one: the budget bounds batching, it never drops a sample."""

    max_batch: int = 32
    token_budget: int = 0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.token_budget < 0:
            raise ValueError(f"token_budget must be >= 0, got {self.token_budget}")


def fits(limits: BatchLimits, size: int, longest: int, new_length: int) -> bool:
    """Whether a batch of `size` samples (longest `longest` tokens) can take one of `new_length`."""
    if size == 0:
        return True
    if size + 1 > limits.max_batch:
        return False
    return limits.token_budget == 0 or (size + 1) * max(longest, new_length) <= limits.token_budget


def plan_batches(lengths: np.ndarray, limits: BatchLimits) -> list[np.ndarray]:
    """Cut positions 0..n-1 into batches: sorted by length (longest first), each batch as large as the
    limits allow. Returns int64 arrays of positions into `lengths` (not qsl indices).

    Longest first: the most expensive batches run while everything is warm, and an out-of-memory
    batch shows up in the first second instead of at the end of a long run.
    """
    n = len(lengths)
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    sorted_len = np.asarray(lengths, dtype=np.int64)[order]
    batches: list[np.ndarray] = []
    start = 0
    while start < n:
        longest = int(sorted_len[start])  # sorted descending: the first sample is the batch's longest
        size = limits.max_batch
        if limits.token_budget:
            size = min(size, max(1, limits.token_budget // max(longest, 1)))
        end = min(n, start + size)
        batches.append(order[start:end])
        start = end
    return batches
