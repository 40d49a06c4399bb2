"""Offline: one huge query; sort it by length and cut it into token-budget batches (sut/batching.py)."""

from __future__ import annotations

import numpy as np

from sut.base import STOP, SUT, Work
from sut.batching import plan_batches


class OfflineSUT(SUT):
    """The worker that dequeues the query plans it and puts the batches back on the queue, so any
    number of workers share them; each batch is padded only to its own longest sample."""

    scenario = "Offline"

    def _next_work(self, worker: int) -> Work | None:
        work = self._queue.get()
        if work is STOP:
            return None
        if work.planned:
            return work
        ids = np.asarray(work.ids, dtype=np.uint64)
        indices = np.asarray(work.indices, dtype=np.int64)
        plan = plan_batches(self.qsl.lengths[indices], self.options.limits)
        batches = [Work(ids[p].tolist(), indices[p], work.t, planned=True) for p in plan]
        for b in batches[1:]:
            self._queue.put(b)
        return batches[0]
