"""How far ONNX Runtime's dynamic int8 is from its fp32 graph with 8-bit and with 7-bit weights.

Without a VNNI or AMX int8 instruction, ONNX Runtime's u8 x s8 GEMM adds pairs of products in int16
and saturates (models/cpu_caps.py CpuCaps.int8_exact). This builds the fp32 (fused), int8 and
int8w7 graphs of one served model (models/export.py) and runs the same padded XNLI batches through
the three sessions in this process, then prints, per int8 form: the largest and the mean absolute
logit error against fp32 (relative to fp32's largest logit) and how many argmaxes agree with fp32's.
It also times one exact-product check: a MatMulInteger of uniform operands, 8-bit against 7-bit
weights (the fraction of outputs that differ from numpy's int64 product).

    python reports/scripts/int8_weight_bits.py [--encoder e5-small] [--weights random] [--samples 256]

The figures say how much the saturation moves this model's outputs (a numeric fidelity, no
accuracy): a trained model's XNLI accuracy needs LoadGen accuracy runs of both forms.
"""

from __future__ import annotations

import argparse

import numpy as np


def saturation_check(k: int = 384, m: int = 64, n: int = 256) -> dict[str, float]:
    """Fraction of a MatMulInteger's outputs that differ from the exact product, per weight range."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    out = {}
    rng = np.random.default_rng(1)
    for name, (lo, hi) in {"8-bit [-127, 127]": (-127, 128), "7-bit [-64, 64]": (-64, 65)}.items():
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        b = rng.integers(lo, hi, (k, n), dtype=np.int8)
        inits = [
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), "az"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), "bz"),
        ]
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B", "az", "bz"], ["Y"])],
            "g",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
            initializer=inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"A": a})[0]
        exact = (a.astype(np.int64) - 128) @ b.astype(np.int64)
        out[name] = float((got != exact).mean())
    return out


def main() -> None:
    import onnxruntime as ort

    from harness.config import RunConfig
    from harness.runner import task_options
    from models.cpu_caps import probe
    from models.export import export_onnx, optimized, quantized
    from models.registry import resolve
    from tasks.qsl import QuerySampleLibrary
    from tasks.registry import get_task
    from zoo.recipe import tokenizer_for

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="e5-small")
    p.add_argument(
        "--weights",
        default="random",
        help="'random' (the shape), or 'zoo' (the encoder's trained zoo model)",
    )
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    weights = None if args.weights == "zoo" else args.weights
    caps = probe()
    print(f"CPU: {caps.model}; int8 exact for 8-bit weights (VNNI / AMX int8): {caps.int8_exact}")
    for name, frac in saturation_check().items():
        print(
            f"MatMulInteger, uniform u8 x s8 {name}: {frac:.1%} of outputs differ from the exact product"
        )

    served = resolve("full", "xnli", encoder=args.encoder, weights=weights)
    cfg = RunConfig.layered(encoder=args.encoder, weights=weights)
    task = get_task("xnli", **task_options(cfg, served))
    features = task.features(tokenizer_for(served))
    qsl = QuerySampleLibrary(features, pad_id=int(tokenizer_for(served).pad_token_id))
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(qsl.total_sample_count, args.samples, replace=False))
    qsl.load_query_samples(idx.tolist())
    fp32 = optimized(export_onnx(served), served)
    paths = {
        "fp32": fp32,
        "int8 (8-bit weights)": quantized(fp32, 8),
        "int8w7 (7-bit)": quantized(fp32, 7),
    }
    so = ort.SessionOptions()
    outs: dict[str, list[np.ndarray]] = {k: [] for k in paths}
    sessions = {
        k: ort.InferenceSession(str(v), so, providers=["CPUExecutionProvider"]) for k, v in paths.items()
    }
    for start in range(0, len(idx), args.batch):
        b = qsl.batch(idx[start : start + args.batch])
        feeds = {"input_ids": b.input_ids, "attention_mask": b.attention_mask}
        for k, s in sessions.items():
            outs[k].append(s.run(None, feeds)[0])
    ref = np.concatenate(outs["fp32"])
    scale = float(np.abs(ref).max())
    print(
        f"{served.name}/xnli {args.encoder} ({served.model_kind} weights), {len(idx)} XNLI samples, "
        f"fp32 logits up to {scale:.3f}"
    )
    for k in list(paths)[1:]:
        got = np.concatenate(outs[k])
        err = np.abs(got - ref)
        agree = int((got.argmax(1) == ref.argmax(1)).sum())
        print(
            f"  {k}: max |error| {err.max() / scale:.2%}, mean {err.mean() / scale:.3%} of fp32's "
            f"largest logit; argmax agrees with fp32 on {agree}/{len(idx)}"
        )


if __name__ == "__main__":
    main()
