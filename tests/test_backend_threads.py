"""The PyTorch backend builds its module without intra-op parallelism (models/pytorch_backend.py,
serial_intra_op): a build that enters an OpenMP parallel region leaves a thread team behind in the
building thread, beside the one the SUT's worker thread later gets, and on 2 cores that made a batch-1
adapter forward pass 1.7x slower (reports/study-e5/batch1_threads.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from models.base import BackendOptions
from models.pytorch_backend import PyTorchBackend


class _Served:
    """Stands in for a ServedModel: records the intra-op thread count its build saw."""

    def __init__(self):
        self.threads_seen: list[int] = []

    def torch_module(self, attn_implementation: str = "sdpa"):
        self.threads_seen.append(torch.get_num_threads())
        return torch.nn.Linear(4, 2)


def test_build_is_serial_and_threads_are_set_afterwards():
    before = torch.get_num_threads()
    try:
        served = _Served()
        backend = PyTorchBackend(served, BackendOptions(threads=2))
        assert served.threads_seen == [1]
        assert torch.get_num_threads() == 2
        assert backend.describe()["threads"] == 2
        served = _Served()
        torch.set_num_threads(3)
        PyTorchBackend(served, BackendOptions(threads=0))  # 0: keep the library's setting
        assert served.threads_seen == [1]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# A fresh interpreter, so no earlier test has started OpenMP teams: the number of native threads
# after a build whose module creation runs a large parallel op, built through the backend and
# directly (the control shows the op does start a team when parallelism is on).
_CHILD = textwrap.dedent(
    """
    import os, torch
    from models.base import BackendOptions
    from models.pytorch_backend import PyTorchBackend

    def threads():
        return len(os.listdir("/proc/self/task"))

    class Served:
        def torch_module(self, attn_implementation="sdpa"):
            torch.ones(4_000_000).exp_()  # far above the parallel grain: goes parallel
            return torch.nn.Linear(4, 2)

    torch.set_num_threads(2)
    start = threads()
    PyTorchBackend(Served(), BackendOptions(threads=2))
    after_backend = threads()
    Served().torch_module()
    after_direct = threads()
    print(start, after_backend, after_direct)
    """
)


def test_build_starts_no_openmp_team_in_the_building_thread():
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=120
    )
    start, after_backend, after_direct = map(int, out.stdout.split())
    assert after_backend == start
    assert after_direct > after_backend  # the control: the same op outside the backend does
