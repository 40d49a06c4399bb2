"""Which thread runs PyTorch matters: single-sample forward p90 on the main thread, then on new threads.

    python reports/scripts/thread_pool.py main-first   # main thread runs the model first, then 2 others
    python reports/scripts/thread_pool.py other-only   # a new thread runs it first, then the main thread

Tiny zoo model `full`, XNLI, 300 random samples, PyTorch fp32, library-default threads. The figures
quoted in reports/benchmark.md came from this script (2 cores, 2026-11-28).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.config import RunConfig  # noqa: E402
from harness.retime import bare_single_p90_ms, on_new_thread  # noqa: E402
from harness.runner import prepare, warm_up  # noqa: E402


def main(mode: str) -> None:
    work = prepare(RunConfig(scenario="SingleStream", model="full", task="xnli"))
    idx = np.random.default_rng(0).choice(work.qsl.total_sample_count, 300)

    def p90() -> float:
        return bare_single_p90_ms(work.backends[0], work.qsl, idx)

    if mode == "main-first":
        warm_up(work)
        print(f"main thread      p90 {p90():.2f} ms")
        print(f"new thread       p90 {on_new_thread(p90):.2f} ms")
        print(f"another thread   p90 {on_new_thread(p90):.2f} ms")
    else:
        print(f"new thread       p90 {on_new_thread(lambda: (warm_up(work), p90())[1]):.2f} ms")
        print(f"main thread      p90 {p90():.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "main-first")
