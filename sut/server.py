"""Server: dynamic batching of queries arriving on a Poisson schedule.

A worker takes the oldest query, then keeps taking queued queries while the batch stays within
max_batch and the token budget, waiting for new arrivals at most until `max_wait_ms` after the first
query of the batch was issued (never past it). A query that does not fit is carried to the worker's
next batch. One QuerySamplesComplete per batch.
"""

from __future__ import annotations

import queue
import time

import numpy as np

from sut.base import STOP, SUT, Work
from sut.batching import fits


class ServerSUT(SUT):
    scenario = "Server"

    def _next_work(self, worker: int) -> Work | None:
        first = self._carry.pop(worker, None) or self._queue.get()
        if first is STOP:
            return None
        limits, lengths = self.options.limits, self.qsl.lengths
        ids, indices = list(first.ids), list(first.indices)
        longest = int(lengths[np.asarray(indices)].max())
        deadline = first.t + self.options.max_wait_ms / 1000.0
        while len(ids) < limits.max_batch:
            remaining = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is STOP:
                self._queue.put(STOP)
                break
            ok, new_longest = self._fits(len(ids), longest, nxt)
            if not ok:
                self._carry[worker] = nxt
                break
            ids.extend(nxt.ids)
            indices.extend(nxt.indices)
            longest = new_longest
        return Work(ids, indices, first.t, planned=True)

    def _fits(self, size: int, longest: int, work: Work) -> tuple[bool, int]:
        """Whether every sample of `work` (usually one) joins a batch of `size` samples."""
        limits = self.options.limits
        for n in self.qsl.lengths[np.asarray(work.indices)].tolist():
            if not fits(limits, size, longest, n):
                return False, longest
            size, longest = size + 1, max(longest, n)
        return True, longest
