"""Time one forward pass of b x L tokens (PyTorch fp32, on a fresh thread): the Server cost model.

    python reports/scripts/cost_model.py tiny
    python reports/scripts/cost_model.py base      # random weights, the XLM-R base shape

A forward pass costs about a fixed overhead plus a time per padded token; harness/config.py turns the
measured pair into `batch_overhead_tokens` (overhead / time per token) per encoder. It first prints
the XNLI token lengths under the tokenizer the runs use (reports/benchmark.md quotes them).
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.config import RunConfig  # noqa: E402
from harness.retime import on_new_thread  # noqa: E402
from harness.runner import prepare  # noqa: E402


def main(encoder: str) -> None:
    cfg = RunConfig(model="full", task="xnli", encoder=encoder,
                    weights=None if encoder == "tiny" else "random")  # fmt: skip
    work = prepare(cfg)
    backend, lengths = work.backends[0], work.qsl.lengths
    print(f"XNLI lengths: mean {lengths.mean():.1f} tokens, {100 * (lengths >= 128).mean():.1f}% at "
          f"128 (padding every sample to 128 adds {128 / lengths.mean():.2f}x tokens)")  # fmt: skip
    shapes = [(b, L) for L in (32, 64, 128) for b in (1, 4, 16, 32)]
    if encoder != "tiny":
        shapes = [(1, 32), (8, 32), (1, 96), (8, 96), (4, 128), (8, 128), (32, 128)]
    reps = 5 if encoder == "tiny" else 1

    def run() -> None:
        for b, L in shapes:
            ids = np.full((b, L), 5, dtype=np.int64)
            backend.predict(ids, np.ones_like(ids))  # warm this shape
            t0 = time.perf_counter()
            for _ in range(reps):
                backend.predict(ids, np.ones_like(ids))
            ms = (time.perf_counter() - t0) / reps * 1e3
            print(f"b={b:<3} L={L:<4} {ms:9.2f} ms  {ms / (b * L) * 1e3:8.1f} us/token", flush=True)

    on_new_thread(run)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny")
