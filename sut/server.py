"""Server: dynamic batching of queries arriving on a Poisson schedule.

A worker that has nothing planned takes the oldest query and gathers more: it waits for new arrivals
at most until `max_wait_ms` after that first query was issued (never past it) while it has fewer
than max_batch samples, and after that takes only what is already queued, up to `gather` samples.
It then cuts what it gathered into length-sorted batches of least modelled cost
(`plan_least_cost`: a batch costs `batch_overhead_tokens` plus its padded tokens) and runs them
oldest first, one QuerySamplesComplete per batch. Under load the backlog holds samples of every
length; padding them all to the longest would cost Server up to half of Offline's throughput.
"""

from __future__ import annotations

import queue
import time

import numpy as np

from sut.base import STOP, SUT, Work
from sut.batching import plan_least_cost


class ServerSUT(SUT):
    scenario = "Server"
    drain_factor = 2.0  # LoadGen issues for min duration; the backlog must be done by 2x + grace

    def _next_work(self, worker: int) -> Work | None:
        planned = self._carry.pop(worker, None)
        if planned:
            if len(planned) > 1:
                self._carry[worker] = planned[1:]
            return planned[0]
        first = self._queue.get()
        if first is STOP:
            return None
        gathered, n = [first], len(first.ids)
        deadline = first.t + self.options.max_wait_ms / 1000.0
        while n < self.options.gather_limit:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0 and n < self.options.max_batch:
                    nxt = self._queue.get(timeout=remaining)
                else:
                    nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is STOP:
                self._queue.put(STOP)
                break
            gathered.append(nxt)
            n += len(nxt.ids)
        batches = self._plan(gathered)
        if len(batches) > 1:
            self._carry[worker] = batches[1:]
        return batches[0]

    def _plan(self, gathered: list[Work]) -> list[Work]:
        """Least-cost length-sorted batches of the gathered samples, the oldest batch first."""
        if len(gathered) == 1 and len(gathered[0].ids) == 1:
            return [Work(gathered[0].ids, gathered[0].indices, gathered[0].t, planned=True)]
        ids = [i for w in gathered for i in w.ids]
        indices = np.concatenate([np.asarray(w.indices, dtype=np.int64) for w in gathered])
        issued = np.concatenate([np.full(len(w.ids), w.t) for w in gathered])
        plan = plan_least_cost(
            self.qsl.lengths[indices], self.options.limits, self.options.batch_overhead_tokens
        )
        batches = [
            Work([ids[p] for p in pos.tolist()], indices[pos], float(issued[pos].min()), planned=True)
            for pos in plan
        ]
        return sorted(batches, key=lambda w: w.t)
