"""PyTorch and ONNX Runtime in one process: whole passes in turn vs alternating call by call.

    python reports/scripts/mixed_runtimes.py

Tiny-shape `full` (RANDOM weights), 512 XNLI-length samples in length-sorted batches: PyTorch eager,
ONNX Runtime fp32 unfused and fused. Prints each side's samples/s from 3 whole passes, then from
`research.speed.interleaved` alternating batch by batch. The reason part b of `study --speed`
alternates by whole passes (2026-11-28, 2 cores: PyTorch ~650 samples/s in whole passes, 456 when
alternating with ONNX Runtime, i.e. ~0.7x).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from models.backends import create_backend  # noqa: E402
from models.base import BackendOptions  # noqa: E402
from research import speed  # noqa: E402

lengths, _ = speed.xnli_lengths(512, None)
served = speed._served("full", "tiny", None)
batches = speed.make_batches(lengths, True, int(served.encoder_config["vocab_size"]))
ort = {f"ort_{'fused' if o else 'unfused'}": create_backend("onnxruntime", served, BackendOptions(optimize=o))
       for o in (False, True)}  # fmt: skip
sides = {"pytorch": speed.torch_predict(served.torch_module())} | {k: b.predict for k, b in ort.items()}


def whole_pass(predict) -> float:
    t0 = time.perf_counter()
    for ids, mask in batches:
        predict(ids, mask)
    return len(lengths) / (time.perf_counter() - t0)


for predict in sides.values():
    predict(*batches[0])
for _ in range(3):
    print("whole passes  ", {k: round(whole_pass(p)) for k, p in sides.items()})
res = speed.interleaved({k: (p, batches) for k, p in sides.items()}, 3, per_batch=True)
print("call by call  ", {k: round(v["samples_per_s"]) for k, v in res.items()})
