"""A real `harness run` (harness.runner.run: run folder, signals, LoadGen, results, exit code) with
an injected fake backend, for the fault-injection suite (tests/test_faults.py), which starts it as a
subprocess: faults are exercised end to end in about a second, without torch or a model.

    python -m tests.fault_child BACKEND [python -m harness run flags ...]

BACKEND: ok | raise (fails from its 4th batch) | hang (hangs from its 4th batch) | nan (NaN in half
of the responses) | slow (10x slower), optionally `:<model_kind>` (default fake; `tiny` makes
accuracy scoring use the held-out rows, as for the tiny zoo). Every batch costs SAMPLE_S per
sample (slow: 10x), so rates are known: about 1,000 samples/s (slow: 100). The QSL is N synthetic
samples, qsl_idx i standing for XNLI sample i (the model and task names pick user.conf lines).
With `--executor ray` each worker's FaultyBackend lives in a Ray actor (harness.runner.make_backends).
With FAULT_CHILD_MARKS=<folder> set, each backend's process touches <folder>/<pid> as its first batch
starts, so a test can wait for an actor to be serving instead of sleeping.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from common.exit_codes import ArgumentParser
from harness.config import RunConfig, add_run_arguments
from harness.runner import Workload, make_backends, run
from models.base import Backend
from tasks.base import FeatureSet
from tasks.qsl import QuerySampleLibrary
from tasks.registry import get_task

N = 512
SAMPLE_S = 0.001
KINDS = ("ok", "raise", "hang", "nan", "slow")
MARKS_ENV = "FAULT_CHILD_MARKS"  # a folder: each backend process touches <pid> there at its first batch


class FaultyBackend(Backend):
    """Row-independent outputs [sum of ids, length, first id]; the fault named by `kind`."""

    name = "fault"

    def __init__(self, kind: str, sample_s: float = SAMPLE_S, marks: str | None = None):
        self.kind, self.calls, self.marks = kind, 0, marks
        self.sample_s = sample_s * (10 if kind == "slow" else 1)

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.marks and self.calls == 1:  # a test waits for this process to be serving
            Path(self.marks, str(os.getpid())).touch()
        time.sleep(self.sample_s * len(input_ids))
        if self.calls > 3 and self.kind == "raise":
            raise RuntimeError("injected backend failure")
        if self.calls > 3 and self.kind == "hang":
            threading.Event().wait(3600)
        x = (input_ids * attention_mask).astype(np.float32)
        out = np.stack([x.sum(1), attention_mask.sum(1).astype(np.float32), x[:, 0]], axis=1)
        if self.kind == "nan":
            out[::2, 0] = np.nan
        return out


class FakeServed:
    """The served-model facts a run records in run_config.json (no model behind them)."""

    def __init__(self, model_kind: str):
        self.model_kind = model_kind

    def describe(self) -> dict:
        return {}


def synthetic_features(n: int = N, seed: int = 0) -> FeatureSet:
    """n samples of 4 to 63 random token ids each (also the SUT tests' data)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(4, 64, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lens)
    ids = rng.integers(3, 2000, int(offsets[-1])).astype(np.int32)
    return FeatureSet("fake", ("en",), ids, offsets, np.zeros(n, dtype=np.int16))


def main(argv: list[str]) -> int:
    kind, _, model_kind = argv[0].partition(":")
    flags = argv[1:]
    if kind not in KINDS:
        raise SystemExit(f"backend {kind!r} is not one of {KINDS}")
    parser = ArgumentParser(prog="fault_child")
    add_run_arguments(parser)
    try:
        cfg = RunConfig.from_args(parser.parse_args(flags))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    qsl = QuerySampleLibrary(synthetic_features(), count=cfg.count)
    try:
        make = functools.partial(FaultyBackend, kind, marks=os.environ.get(MARKS_ENV))
        backends, executor = make_backends(cfg, make)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    task = get_task(cfg.task, languages=cfg.languages)  # its declarations only: reads no data
    work = Workload(FakeServed(model_kind or "fake"), backends, qsl, task, "", executor)
    return run(cfg, work, command=["fault_child", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
