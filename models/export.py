"""ONNX export of a served module, plus the ORT graph variants (fusions, fp16, int8), cached on disk.

build/onnx/<key>.onnx is the exported fp32 graph of `served.torch_module(attn_implementation="eager")`
(the adapters library cannot export itself: the served module calls it with keyword arguments,
docs/zoo.md, "The adapters library"); <key>-opt.onnx, <key>-opt-fp16.onnx, <key>-opt-int8.onnx
(dynamic; -int8w7: 7-bit weights) and <key>-int8s-<tag>.onnx (static QDQ) are derived from it. The
key hashes the served model's description, the checkpoint files (names, sizes, mtimes), the opset
and torch version.
Every file is written under a temporary name and renamed: an interrupted export leaves no cache entry.
Graphs over 2 GB (large) keep their weights in <name>.data beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto

from common.files import sha256_file
from common.paths import BUILD
from models.loaders import MANIFEST, base_source

OPSET = 17
GRAPH_VERSION = (
    2  # bump when the exported module's code changes (2: models/dispatch_free.py, fusion folded)
)
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "output"
_PROTO_LIMIT = 1_800_000_000  # bytes of initialisers above which weights go to external data


def onnx_dir() -> Path:
    return BUILD / "onnx"


def _checkpoint_fingerprint(served) -> list[Any]:
    """Name, size and mtime of every file of the checkpoint and of its base encoder, named relative
    to their folder: the same checkpoint seen from another checkout (or through a symlink) keeps
    its key, and so its export. The zoo's manifest (MANIFEST, the sha256 of every weight file) is
    read whole, so two trainings saved alike in one second still differ."""
    files = []
    if served.checkpoint is not None:
        checkpoint = Path(served.checkpoint)
        base = Path(base_source(checkpoint))
        roots = {"checkpoint": checkpoint}
        if base.resolve() != checkpoint.resolve():
            roots["base"] = base
        for tag, root in roots.items():
            if root.is_dir():
                for p in sorted(root.rglob("*")):
                    if p.is_file():
                        st = p.stat()
                        name = p.relative_to(root).as_posix()
                        digest = sha256_file(p) if p.name == MANIFEST else None
                        files.append([tag, name, st.st_size, int(st.st_mtime), digest])
    return files


def export_key(served) -> str:
    src = {
        "served": {k: v for k, v in served.describe().items() if k != "checkpoint"},  # files below
        "config": served.encoder_config,
        "files": _checkpoint_fingerprint(served),
        "opset": OPSET,
        "torch": torch.__version__,
        "graph": GRAPH_VERSION,
    }
    return (
        f"{served.name}-{served.task}-{served.encoder}-"
        + hashlib.sha256(json.dumps(src, sort_keys=True, default=str).encode()).hexdigest()[:16]
    )


def _dummy_inputs(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch 2 x 16 with one padded row, so the traced graph keeps the attention-mask path."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, min(vocab, 1000), (2, 16), generator=g)
    ids[:, 0], ids[0, -1], ids[1, 9] = 0, 2, 2
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    ids[1, 10:] = 1
    return ids, mask


def _save(model_proto, path: Path) -> None:
    """Save an onnx ModelProto at `path` atomically (external data for > 2 GB graphs)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    big = sum(t.ByteSize() for t in model_proto.graph.initializer) > _PROTO_LIMIT
    if big:
        onnx.save_model(model_proto, tmp, save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model_proto, tmp)
    tmp.replace(path)


def export_onnx(served, out_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Export (or reuse) the fp32 ONNX graph of `served`; returns build/onnx/<key>.onnx.

    Inputs input_ids / attention_mask int64 [batch, sequence] (both axes dynamic); output "output"
    float32 with the task kind's shape. Opset 17, TorchScript exporter (dynamo=False).
    """
    out_dir = Path(out_dir) if out_dir is not None else onnx_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{export_key(served)}.onnx"
    if path.exists():
        return path
    if progress:
        print(f"[export] {served.name}/{served.task} ({served.encoder}) -> {path}", flush=True)
    module = served.torch_module(attn_implementation="eager").eval()  # eager: ORT fuses its pattern
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    dynamic[OUTPUT] = {0: "batch", 2: "sequence"} if served.task_kind == "qa" else {0: "batch"}
    tmp_dir = out_dir / f".export-{os.getpid()}"
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            module,
            _dummy_inputs(int(served.encoder_config["vocab_size"])),
            str(tmp),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    _save(onnx.load(str(tmp), load_external_data=True), path)
    for p in tmp_dir.iterdir():
        p.unlink()
    tmp_dir.rmdir()
    return path


def optimized(path: Path, served, use_gpu: bool = False, fp16: bool = False) -> Path:
    """ORT transformer fusions (model_type "bert": attention, LayerNorm, GELU) -> <key>-opt[-fp16].onnx.

    fp16 converts weights and compute to float16 with float32 inputs/outputs kept (GPU only).
    """
    # lazy: ORT's optimizer takes seconds to import, and only the optimised graphs need it
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

    out = path.with_name(
        path.stem + ("-opt-fp16" if fp16 else "-opt") + (".gpu" if use_gpu else "") + ".onnx"
    )
    if out.exists():
        return out
    cfg = served.encoder_config
    opt = optimize_model(
        str(path),
        model_type="bert",
        num_heads=int(cfg["num_attention_heads"]),
        hidden_size=int(cfg["hidden_size"]),
        use_gpu=use_gpu,
    )
    if fp16:
        opt.convert_float_to_float16(keep_io_types=True)
    _save(opt.model, out)
    return out


def quantized(path: Path, weight_bits: int = 8) -> Path:
    """int8 dynamic quantisation of MatMul weights (activations quantised at run time), per tensor
    -> <stem>-int8.onnx (what the backend serves); weight_bits 7 -> <stem>-int8w7.onnx, weights in
    [-64, 64] (ONNX Runtime's reduce_range): exact on a CPU whose u8 x s8 kernel saturates on
    full-range weights (models/cpu_caps.py CpuCaps.int8_exact), compared in
    docs/amx.md."""
    # lazy: ORT's quantisation tools take seconds to import, and only the int8 graphs need them
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits}")
    out = path.with_name(path.stem + ("-int8.onnx" if weight_bits == 8 else "-int8w7.onnx"))
    if out.exists():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}.onnx")
    quantize_dynamic(
        str(path),
        str(tmp),
        weight_type=QuantType.QInt8,
        reduce_range=weight_bits == 7,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": TensorProto.FLOAT},  # fused contrib ops lack shape inference
    )
    tmp.replace(out)
    return out


def static_quantized(path: Path, calibration: list[tuple[np.ndarray, np.ndarray]], tag: str) -> Path:
    """int8 static quantisation, QDQ format -> <stem>-int8s-<tag>.onnx (`tag` names the calibration
    set: the cache key cannot see the rows).

    `path`: the exported fp32 graph, unfused (its MatMuls explicit). `calibration`: (input_ids,
    attention_mask) int64 batches; activation ranges are their MinMax. Quantised: every MatMul with a
    constant weight (per output channel, s8; activations u8, per tensor). Kept fp32, per op: the
    attention products Q K^T and P V (both sides activations; P is the softmax's output), Gemm (the
    classification head), and everything that is not a MatMul (softmax, LayerNorm, GELU).
    ValueError on an empty calibration set."""
    # lazy: ORT's quantisation tools take seconds to import, and only the int8 graphs need them
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not calibration:
        raise ValueError("int8 static needs a calibration set: no calibration batch given")
    out = path.with_name(f"{path.stem}-int8s-{tag}.onnx")
    if out.exists():
        return out
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    activation_products = [
        n.name for n in graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)
    ]

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else dict(zip(INPUTS, batch, strict=True))

    tmp = out.with_name(out.name + f".tmp{os.getpid()}.onnx")
    quantize_static(
        str(path),
        str(tmp),
        Batches(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=activation_products,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    tmp.replace(out)
    return out
