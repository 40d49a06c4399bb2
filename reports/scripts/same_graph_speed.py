"""Does merged LoRA (lora-squad) serve at full's speed when both run in one process, batch by batch?

The study's interleaved rounds (separate processes, one LoadGen test each) put lora-squad, whose
ONNX graph is full's very graph with other weight values, at 1.00-1.04x full's cost. This removes the
processes and the cells' order: both ONNX Runtime fp32 (and int8) sessions of the real e5-small XNLI
models are timed over the same XNLI-length batches, alternating batch by batch with the order
rotating (research/speed.py `interleaved`), with ONNX Runtime's denormals-as-zero off and on (tiny
activations that fall below fp32's normal range are slow on x86 unless flushed).

    python reports/scripts/same_graph_speed.py [--repeats 7] [--samples 256]

Prints full's and lora-squad's samples/s and their per-round ratio; writes reports/same_graph_speed.md.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from common.paths import REPO
from harness.run_record import RunRecord
from research.speed import interleaved, make_batches, xnli_lengths
from research.study import Cell, StudySettings, preset


def onnx_file(model: str, backend: str) -> str:
    """The graph the e5-small study's round-0 Offline XNLI cell of `model` on `backend` served."""
    settings = StudySettings(runs_dir=preset("e5-small")["runs_dir"], encoder="e5-small", duration_s=5.0)
    folder = Cell(model, "xnli", backend, "Offline", "performance").run_folder(settings)
    try:
        return RunRecord.load(folder).backend_options["onnx_file"]
    except (FileNotFoundError, KeyError) as exc:
        raise SystemExit(
            f"{folder}: no served ONNX file on record ({exc}); run `make study` first"
        ) from exc


def session(path: str, flush_denormals: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if flush_denormals:
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def predict(ids: np.ndarray, mask: np.ndarray):
        return sess.run(None, dict(zip(names, (ids, mask), strict=False)))

    return predict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--backends", default="onnxruntime,onnxruntime-int8")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "same_graph_speed.md")
    args = parser.parse_args()
    lengths, source = xnli_lengths(args.samples, None)
    batches = make_batches(lengths, True, 250002)
    lines = [
        "# Merged LoRA against full in one process (real e5-small XNLI graphs)",
        "",
        f"Command: `python reports/scripts/same_graph_speed.py --repeats {args.repeats} --samples "
        f"{args.samples} --backends {args.backends}`; {len(lengths)} samples ({source}), "
        f"{len(batches)} length-sorted batches, the same random token ids for both models; each batch "
        "runs on both sides back to back, the order rotating; ratio = lora-squad / full samples/s "
        "within each round.",
        "",
        "| backend | denormals as zero | full samples/s | lora-squad samples/s | ratio median | min-max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for backend in args.backends.split(","):
        for flush in (False, True):
            sides = {m: (session(onnx_file(m, backend), flush), batches) for m in ("full", "lora-squad")}
            res = interleaved(sides, args.repeats)
            ratios = [
                a / b for a, b in zip(res["lora-squad"]["rounds"], res["full"]["rounds"], strict=True)
            ]
            row = (f"| {backend} | {'on' if flush else 'off'} | {res['full']['samples_per_s']:.1f} | "
                   f"{res['lora-squad']['samples_per_s']:.1f} | {statistics.median(ratios):.3f} | "
                   f"{min(ratios):.3f}-{max(ratios):.3f} |")  # fmt: skip
            print(row, flush=True)
            lines.append(row)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
