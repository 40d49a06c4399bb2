"""Length-sorted, token-budget batching: pad each batch only to its own longest sample.

Pure functions on numpy arrays (no LoadGen, no threads): the Offline SUT plans a whole query with
`plan_batches`, the Server SUT cuts each gathered backlog with `plan_least_cost`, and the benchmark's
plain loop uses the same `plan_batches` so both sides of the efficiency ratio batch identically.
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


def plan_least_cost(lengths: np.ndarray, limits: BatchLimits, overhead_tokens: int) -> list[np.ndarray]:
    """Cut positions 0..n-1 into length-sorted batches that minimise the modelled time
    sum over batches of (overhead_tokens + size x longest), within the limits.

    The model: a forward pass costs a fixed overhead (Python, kernel launches, expressed in tokens of
    compute) plus time proportional to its padded tokens. `plan_batches` fills every batch to the
    limits, which is right for a long length-sorted query (neighbours have nearly equal lengths); a
    Server backlog of a few dozen random-length samples instead pads short samples to a long one,
    which this plan avoids whenever a separate batch costs less than the padding. Exact dynamic
    programme over the sorted lengths: O(n x max_batch) (n is a backlog, tens to hundreds).
    Returns position arrays, longest batch first.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    longest = lengths[order].astype(np.float64)  # batch [i, j) of the sorted list pads to longest[i]
    n = len(order)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        lo = max(0, j - limits.max_batch)
        size = j - np.arange(lo, j)
        padded = size * longest[lo:j]
        cost = best[lo:j] + overhead_tokens + padded
        if limits.token_budget:
            cost[(padded > limits.token_budget) & (size > 1)] = np.inf
        k = int(np.argmin(cost))
        best[j], start[j] = cost[k], lo + k
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start[cuts[-1]]))
    cuts.reverse()
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
