"""Does building the model in parallel slow its batch-1 forward passes on the SUT's worker thread?

Before 2026-11-30 the PyTorch backend built its module with the run's intra-op threads in the
calling (main) thread. The adapters library's load_adapter then entered an OpenMP parallel region
there, and that thread team outlived the build beside the one of the SUT worker that serves the
model (models/pytorch_backend.serial_intra_op). This measures both builds side by side: each
measurement is a fresh process that builds `--models` one way (`parallel`, the old code, or
`serial`, the backend as it is), warms it up and times single-sample forwards on a worker thread,
exactly as SingleStream issues them (harness.retime.bare_single_p90_ms on XNLI samples). The
processes run in interleaved rounds, so drift of the machine falls on both builds alike.

    python reports/scripts/batch1_threads.py --out reports/study-e5/batch1_threads.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness.info import device_info  # noqa: E402

BUILDS = ("parallel", "serial")


def measure(model: str, build: str, encoder: str, threads: int, samples: int) -> float:
    """p90 ms of single-sample forwards of `model` on XNLI, on a worker thread, built `build`."""
    import numpy as np

    import models.pytorch_backend as pytorch_backend
    from harness.config import RunConfig
    from harness.retime import bare_single_p90_ms, on_new_thread
    from harness.runner import prepare, warm_up

    if build == "parallel":  # the backend as it was: the build runs with the run's threads
        pytorch_backend.serial_intra_op = contextlib.nullcontext
    cfg = RunConfig(scenario="SingleStream", model=model, task="xnli", encoder=encoder, threads=threads)
    work = prepare(cfg)
    indices = np.random.default_rng(0).choice(work.qsl.total_sample_count, samples)

    def timed() -> float:
        warm_up(work)
        return bare_single_p90_ms(work.backends[0], work.qsl, indices)

    return on_new_thread(timed)


def child(model: str, build: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--child", model, build, "--encoder", args.encoder,
           "--threads", str(args.threads), "--samples", str(args.samples)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def report(p90: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    info = device_info()
    cpu = f"{info['cpu_model']}, {info['cpu_cores']} cores"
    lines = [
        "# Batch-1 forward passes on the SUT's worker thread: model built in parallel vs serially",
        "",
        f"Command: `python reports/scripts/batch1_threads.py --models {args.models} --rounds "
        f"{args.rounds} --samples {args.samples} --threads {args.threads}`  ",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {cpu}, {args.threads} intra-op threads.  ",
        f"Model: real multilingual-e5-small ({args.encoder}) fine-tuned here, XNLI; "
        f"p90 of {args.samples} single-sample forwards (XNLI samples of all languages) on a new "
        "thread after a warm-up there, one fresh process per figure, builds interleaved in "
        f"{args.rounds} rounds. `parallel` = the backend before the fix (the build runs with the "
        "run's threads in the main thread); `serial` = models/pytorch_backend.serial_intra_op.",
        "",
        "| model | parallel build p90 ms (rounds) | serial build p90 ms (rounds) | parallel / serial |",
        "| --- | --- | --- | --- |",
    ]
    for model, by in p90.items():
        cells = [", ".join(f"{v:.1f}" for v in by[b]) for b in BUILDS]
        ratio = statistics.median(by["parallel"]) / statistics.median(by["serial"])
        lines.append(f"| {model} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    full = p90.get("full")
    if full:
        lines += ["", "Median ratio to `full` built the same way:", ""]
        for model, by in p90.items():
            ratios = {b: statistics.median(by[b]) / statistics.median(full[b]) for b in BUILDS}
            lines.append(
                f"- {model}: parallel {ratios['parallel']:.2f}x, serial {ratios['serial']:.2f}x"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="full,adapter,adapter-squad")
    parser.add_argument("--encoder", default="e5-small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "BUILD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(*args.child, args.encoder, args.threads, args.samples))
        return 0
    models = args.models.split(",")
    p90 = {m: {b: [] for b in BUILDS} for m in models}
    for r in range(args.rounds):
        for model in models:
            for build in BUILDS if r % 2 == 0 else BUILDS[::-1]:
                p90[model][build].append(child(model, build, args))
                print(f"round {r} {model} {build}: {p90[model][build][-1]:.2f} ms", flush=True)
    text = report(p90, args)
    print(text)
    if args.out:
        args.out.write_text(text)
        (args.out.with_suffix(".json")).write_text(json.dumps(p90, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
