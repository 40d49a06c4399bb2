"""The QSL (LoadGen's Query Sample Library) over a pre-tokenised FeatureSet.

`FeatureSet` is the dataset (built before the test, possibly from the cache on disk). The QSL keeps a
separate *loaded* store holding only the samples LoadGen asked for via `load_query_samples`, as one
ragged int64 array ready for the backend; `unload_query_samples` drops them. `batch(indices)` gathers
loaded samples into a [B, L] padded batch with L = the batch's longest (vectorised, no Python loop per
sample). Threads: load/unload run on LoadGen's thread before/after the timed part; `batch` runs on
SUT worker threads while nothing is being loaded, so the store is read without a lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.base import FeatureSet
from tasks.mixed import TASK_KEY


@dataclass(frozen=True)
class Batch:
    """A padded batch: input_ids / attention_mask int64 [B, L]; lengths int64 [B] (true lengths);
    tasks int64 [B]: each row's task in a mixed run (features.extra["task"], tasks/mixed.py), else
    None."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    lengths: np.ndarray
    tasks: np.ndarray | None = None

    @property
    def inputs(self) -> tuple[np.ndarray, ...]:
        """Backend.predict's arguments: (input_ids, attention_mask), and the rows' tasks if mixed."""
        if self.tasks is None:
            return self.input_ids, self.attention_mask
        return self.input_ids, self.attention_mask, self.tasks


class QuerySampleLibrary:
    """QSL over `features`, optionally limited to its first `count` samples.

    performance_sample_count: how many samples LoadGen may keep loaded in performance mode
    (default min(total, 10833), BERT's value; user.conf's performance_sample_count_override wins).
    pad_to: pad every batch to this length instead of its longest (only the reference-design baseline
    of the benchmark uses it).
    """

    def __init__(
        self,
        features: FeatureSet,
        count: int | None = None,
        performance_sample_count: int | None = None,
        pad_id: int = 1,
        pad_to: int | None = None,
    ):
        n = len(features)
        if count is not None and not 1 <= count <= n:
            raise ValueError(f"count must be in 1..{n} for task {features.task!r}, got {count}")
        self.features = features
        self.total_sample_count = count if count is not None else n
        psc = performance_sample_count or min(self.total_sample_count, 10833)
        self.performance_sample_count = min(psc, self.total_sample_count)
        self.pad_id = pad_id
        self.pad_to = pad_to
        self.lengths = features.lengths[: self.total_sample_count].astype(np.int64)
        self._empty()

    def _empty(self) -> None:
        self._tokens = np.zeros(0, dtype=np.int64)  # ragged store of the loaded samples
        self._start = np.full(self.total_sample_count, -1, dtype=np.int64)  # qsl_idx -> offset or -1

    # --- LoadGen callbacks (LoadGen's thread) -------------------------------------------------
    def load_query_samples(self, indices: list[int]) -> None:
        """Replace the loaded store by exactly `indices` (LoadGen loads one set at a time)."""
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        src = self.features.offsets[idx]
        lens = self.lengths[idx]
        starts = np.zeros(len(idx), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        gather = np.repeat(src - starts, lens) + np.arange(int(lens.sum()), dtype=np.int64)
        self._tokens = self.features.input_ids[gather].astype(np.int64)
        self._start = np.full(self.total_sample_count, -1, dtype=np.int64)
        self._start[idx] = starts

    def unload_query_samples(self, indices: list[int]) -> None:
        """Drop `indices`; the store is rebuilt without them (or emptied when nothing is left)."""
        keep = np.flatnonzero(self._start >= 0)
        keep = np.setdiff1d(keep, np.asarray(indices, dtype=np.int64), assume_unique=True)
        if len(keep):
            self.load_query_samples(keep.tolist())
        else:
            self._empty()

    @property
    def loaded(self) -> np.ndarray:
        """int64 qsl indices currently loaded (sorted)."""
        return np.flatnonzero(self._start >= 0)

    @property
    def loaded_tokens(self) -> int:
        return int(self._tokens.size)

    # --- SUT side (worker threads) --------------------------------------------------------------
    def batch(self, indices: np.ndarray) -> Batch:
        """Padded batch of loaded samples, in the order given. KeyError if one is not loaded."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self._start[indices]
        if (starts < 0).any():
            raise KeyError(f"samples not loaded: {indices[starts < 0][:8].tolist()}")
        lens = self.lengths[indices]
        width = max(self.pad_to or 0, int(lens.max()))
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < lens[:, None]
        pos = np.where(mask, starts[:, None] + cols[None, :], 0)
        ids = np.where(mask, self._tokens[pos] if self._tokens.size else 0, self.pad_id)
        tasks = self.features.extra.get(TASK_KEY)  # a task list's union QSL (tasks/mixed.py)
        return Batch(ids, mask.astype(np.int64), lens, None if tasks is None else tasks[indices])
