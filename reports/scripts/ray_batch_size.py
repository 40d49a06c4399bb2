"""Bare Ray, two zero-returning actors on an embedded cluster: the sequential round trip and the
pipelined calls/s of one 32 x 128 and one 256 x 128 int64 batch (ids and mask), twice each:
    python reports/scripts/ray_batch_size.py
docs/scale_out.md quotes it for what a larger max_batch buys the LoadGen process through Ray
(2026-11-30, two runs on this 2-core machine under another job's load: 32 rows 424 to 741 calls/s
and 1.4 to 1.7 ms a round trip, 256 rows 190 to 244 calls/s and 4.6 to 5.4 ms: 2.5 to 4x the
samples/s for 8x the rows; arrays over 100 KiB travel through Ray's object store, not inside the
call)."""

import logging
import time

import numpy as np
import ray


class Zeros:
    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.zeros((len(input_ids), 3), np.float32)


ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
         num_cpus=2)  # fmt: skip
actors = [ray.remote(num_cpus=1)(Zeros).remote() for _ in range(2)]
for rows in (32, 256, 32, 256):
    ids = np.ones((rows, 128), np.int64)
    ray.get([a.predict.remote(ids, ids) for a in actors])
    times = []
    for _ in range(200):
        t = time.perf_counter()
        ray.get(actors[0].predict.remote(ids, ids))
        times.append(time.perf_counter() - t)
    calls = 1000
    t = time.perf_counter()
    ray.get([actors[i % 2].predict.remote(ids, ids) for i in range(calls)])
    rate = calls / (time.perf_counter() - t)
    print(f"{rows} x 128: round trip median {np.median(times) * 1e3:.2f} ms, p99 "
          f"{np.percentile(times, 99) * 1e3:.2f} ms; pipelined {rate:.0f} calls/s = {rate * rows:.0f} "
          "samples/s")  # fmt: skip
ray.shutdown()
