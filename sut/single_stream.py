"""SingleStream: LoadGen sends one sample at a time; run it as a batch of one, complete, repeat."""

from __future__ import annotations

from sut.base import STOP, SUT, Work


class SingleStreamSUT(SUT):
    """Each query is run as it comes (no batching, no padding: the batch's longest is the sample)."""

    scenario = "SingleStream"

    def _next_work(self, worker: int) -> Work | None:
        work = self._queue.get()
        return None if work is STOP else work
