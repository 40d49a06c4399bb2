"""ONNX Runtime static int8 (QDQ, models/export.py `static_quantized`) against the served dynamic int8
and fp32, on the same XNLI batches in one process.

Calibration: English training rows only (XNLI dev-en rows below the held-out boundary,
tasks/scoring/classification.py HELDOUT_FIRST_ROW: the rows the zoo trains on, never a scored row).
Compared, on `--samples` held-out rows drawn from every language, padded in the SUT's length-sorted
batches: each form's logits against fp32's (largest / mean absolute error relative to fp32's largest
logit, argmax agreement), and its samples/s, the forms alternating batch by batch over `--repeats`
rounds (research/speed.py `interleaved`; the ratio is the median of the per-round ratios).

    python reports/scripts/int8_static.py [--encoder e5-small] [--weights random] [--calib_rows 256]

With random weights the fidelity figures are numeric only; an accuracy verdict needs the trained
model (`--weights zoo`) and LoadGen accuracy runs.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    import onnxruntime as ort

    from harness.config import RunConfig
    from harness.runner import task_options
    from models.export import export_onnx, optimized, quantized, static_quantized
    from models.registry import resolve
    from research.speed import _ratio, interleaved
    from sut.batching import BatchLimits, plan_batches
    from tasks.qsl import QuerySampleLibrary
    from tasks.registry import get_task
    from tasks.scoring.classification import HELDOUT_FIRST_ROW
    from zoo.recipe import tokenizer_for

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="e5-small")
    p.add_argument("--weights", default="random", help="'random' (the shape) or 'zoo' (trained)")
    p.add_argument("--calib_rows", type=int, default=256, help="English training rows calibrated on")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    weights = None if args.weights == "zoo" else args.weights
    served = resolve("full", "xnli", encoder=args.encoder, weights=weights)
    tok = tokenizer_for(served)
    pad = int(tok.pad_token_id)
    limits = BatchLimits(32, 4096)

    def batches(features, idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        qsl = QuerySampleLibrary(features, pad_id=pad)
        qsl.load_query_samples(idx.tolist())
        out = []
        for pos in plan_batches(qsl.lengths[idx], limits):
            b = qsl.batch(idx[pos])
            out.append((b.input_ids, b.attention_mask))
        return out

    english = get_task("xnli", languages="en").features(tok)  # rows in file order, from row 0
    train_rows = min(args.calib_rows, HELDOUT_FIRST_ROW["xnli"])
    calibration = batches(english, np.arange(train_rows))
    cfg = RunConfig.layered(encoder=args.encoder, weights=weights)
    heldout = get_task("xnli", **{**task_options(cfg, served), "first_row": HELDOUT_FIRST_ROW["xnli"]})
    features = heldout.features(tok)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(features.lengths), args.samples, replace=False))
    test = batches(features, idx)

    plain = export_onnx(served)
    paths = {
        "fp32 (fused)": optimized(plain, served),
        "int8 dynamic (served)": quantized(optimized(plain, served)),
        "int8 static QDQ": static_quantized(plain, calibration, f"xnli-en-train{train_rows}"),
    }
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sessions = {
        k: ort.InferenceSession(str(v), so, providers=["CPUExecutionProvider"]) for k, v in paths.items()
    }

    def predict(session):
        return lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    logits = {k: np.concatenate([predict(s)(*b) for b in test]) for k, s in sessions.items()}
    ref = logits["fp32 (fused)"]
    scale = float(np.abs(ref).max())
    print(
        f"full/xnli {args.encoder} ({served.model_kind} weights); calibrated on English training rows "
        f"0-{train_rows - 1}; {len(idx)} held-out samples, all languages; fp32 logits up to {scale:.3f}"
    )
    for k in list(paths)[1:]:
        err = np.abs(logits[k] - ref)
        agree = int((logits[k].argmax(1) == ref.argmax(1)).sum())
        print(
            f"  {k}: max |error| {err.max() / scale:.2%}, mean {err.mean() / scale:.3%}; argmax agrees "
            f"with fp32 on {agree}/{len(idx)}"
        )
    res = interleaved({k: (predict(s), test) for k, s in sessions.items()}, args.repeats)
    base = "fp32 (fused)"
    for k, r in res.items():
        vs_dynamic = _ratio(res, k, "int8 dynamic (served)")
        print(
            f"  {k}: {r['samples_per_s']:.2f} samples/s (spread {r['spread']:.0%}); "
            f"vs fp32 {_ratio(res, k, base):.3f}x; vs dynamic int8 {vs_dynamic:.3f}x"
        )


if __name__ == "__main__":
    main()
