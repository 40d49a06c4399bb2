"""The benchmark's peak section (`python -m research benchmark --sections peak`): each serving form's
Offline rate against the machine's own GEMM peak for its library and dtype, measured side by side
in one run (docs/benchmark.md says how)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import RunConfig
from harness.info import device_info
from models.cpu_caps import probe
from research import measure
from research.measure import flops_per_sample, gemm_flops
from research.tables import markdown_table

SHAPE = (1280, 384, 1536)  # M, K, N: one e5-small FFN matmul at batch 32 x 40 tokens


@dataclass(frozen=True)
class Form:
    """A serving form: --backend and --dtype, and the GEMM peak its matmuls are held to."""

    backend: str
    dtype: str
    peak: str

    @property
    def label(self) -> str:
        """The study's name (harness.run_record.RunRecord.backend_label): fp32 implicit."""
        return self.backend if self.dtype == "fp32" else f"{self.backend}-{self.dtype}"


FORMS = {
    f.label: f
    for f in (
        Form("pytorch", "fp32", "torch-fp32"),
        Form("pytorch", "bf16", "torch-bf16"),
        Form("onnxruntime", "fp32", "onnxruntime-fp32"),
        Form("onnxruntime", "int8", "onnxruntime-int8"),
    )
}
BASELINE = "pytorch"  # every form's rate is also given as a ratio to this one's


# --- the machine's peaks ----------------------------------------------------------------------------
def _torch_gemm(dtype_name: str, threads: int) -> Callable[[], Any]:
    if threads > 0:
        torch.set_num_threads(threads)
    m, k, n = SHAPE
    g = torch.Generator().manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(k, n, generator=g).to(dtype)
    return lambda: torch.matmul(a, b)


def _onnx_gemm(dtype_name: str, threads: int) -> Callable[[], Any]:
    """A one-node ONNX Runtime session: MatMul (fp32) or MatMulInteger (int8), weights constant."""
    # lazy: onnx / onnxruntime are the optional `cpu` extra, needed only when an ONNX Runtime peak is
    # timed
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    m, k, n = SHAPE
    rng = np.random.default_rng(0)
    if dtype_name == "fp32":
        a = rng.standard_normal((m, k), dtype=np.float32)
        weights = [numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B")]
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        types = (TensorProto.FLOAT, TensorProto.FLOAT)
    else:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        weights = [
            # 7-bit weights: without VNNI, the u8 x s8 kernel adds pairs of products in int16 and
            # saturates on full-range weights (255 x 127 x 2 > 32767); speed is the same either way
            numpy_helper.from_array(rng.integers(-64, 64, (k, n), dtype=np.int8), "B"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zero"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), "b_zero"),
        ]
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
        types = (TensorProto.UINT8, TensorProto.INT32)
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("A", types[0], [m, k])],
        [helper.make_tensor_value_info("Y", types[1], [m, n])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    if threads > 0:
        so.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"A": a})


PEAKS: dict[str, Callable[[int], Callable[[], Any]]] = {
    "torch-fp32": lambda t: _torch_gemm("fp32", t),
    "torch-bf16": lambda t: _torch_gemm("bf16", t),
    "onnxruntime-fp32": lambda t: _onnx_gemm("fp32", t),
    "onnxruntime-int8": lambda t: _onnx_gemm("int8", t),
}


def measure_peaks(threads: int, repeats: int, names: list[str]) -> dict[str, float]:
    """FLOP/s of SHAPE's matmul per peak name, best of `repeats`. A software bf16 GEMM (no AMX or
    AVX512-BF16) is timed once after one warm call: it is tens of times slower and its best is not
    worth the wait."""
    out = {}
    for name in names:
        slow = name == "torch-bf16" and probe().bf16_kernel is None
        seconds = measure.best_seconds(PEAKS[name](threads), 1 if slow else repeats, 1 if slow else 2)
        out[name] = gemm_flops(*SHAPE) / seconds
    return out


# --- the section ------------------------------------------------------------------------------------
def parse_forms(text: str) -> list[Form]:
    """--peak_forms -> Forms, PyTorch fp32 first when not listed; ValueError naming unknown ones."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in FORMS]
    if unknown or not names:
        raise ValueError(f"--peak_forms: {', '.join(unknown) or 'none'} not in {', '.join(FORMS)}")
    return ([] if BASELINE in names else [FORMS[BASELINE]]) + [FORMS[x] for x in names]


def _refusal(form: Form, cfg_args: dict[str, Any]) -> str | None:
    """Why this machine cannot serve `form` (the RunConfig's own one-line error), else None."""
    try:
        RunConfig.layered(**cfg_args, backend=form.backend, dtype=form.dtype)
    except ValueError as e:
        return str(e)
    return None


def measure_peak_section(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the section, measured in this call (LoadGen runs as child processes)."""
    forms = parse_forms(args.peak_forms)
    weights = None if args.peak_weights == "zoo" else args.peak_weights
    base = dict(
        model=args.model,
        task=args.task,
        encoder=args.peak_encoder,
        threads=args.threads,
        duration_s=args.duration,
        weights=weights,
    )
    runs_dir = Path(args.runs_dir) / "peak"
    load_before = measure.load_average()
    peak_names = sorted({f.peak for f in forms})
    before = measure_peaks(args.threads, args.peak_repeats, peak_names)
    rows, lengths, config, kind, runs = [], None, None, None, {}
    for form in forms:
        row: dict[str, Any] = {"form": form.label, "peak": form.peak, "refused": _refusal(form, base)}
        rows.append(row)
        if row["refused"]:
            continue
        cfg = RunConfig.layered(**base, backend=form.backend, dtype=form.dtype)
        # in-process: a plain loop sizes the LoadGen run (it also exports / quantises an ONNX graph
        # once for the child); the QSL's lengths and the encoder's config give FLOPs per sample
        with measure.prepared(cfg) as work:
            rng = np.random.default_rng(0)
            est = measure.loop_sps(work, cfg.sut_options().limits, args.peak_estimate_samples, rng)
            lengths, config = np.asarray(work.qsl.lengths), dict(work.served.encoder_config)
            kind = work.served.model_kind
        runs[form.label] = measure.child(cfg, runs_dir, form.label, "Offline", "target_qps", 1.5 * est)
        res = measure.results(runs[form.label])
        row["offline_sps"] = round(res.samples_per_second, 2) if res.samples_per_second else None
        row["offline_valid"] = res.result_valid if res.samples_per_second else None
    after = measure_peaks(args.threads, args.peak_repeats, peak_names)
    # on a shared machine a peak timed while others compute is too low: the better of two, timed
    # before and after the runs, and both kept in the record (their spread is the noise)
    best = {k: max(before[k], after[k]) for k in peak_names}
    rec = summarise(rows, best, lengths, config, kind, probe(), measure.errors(runs))
    rec["load_average"] = {"before": load_before, "after": measure.load_average()}
    rec["peaks_before_after_gflops"] = {
        k: [round(before[k] / 1e9, 1), round(after[k] / 1e9, 1)] for k in peak_names
    }
    return rec


def summarise(
    rows: list[dict[str, Any]],
    peaks: dict[str, float],
    lengths: np.ndarray | None,
    config: dict[str, Any] | None,
    kind: str | None,
    caps: Any,
    errors: list[str],
) -> dict[str, Any]:
    """The section's record: per form, its ratio to the baseline and its fraction of its peak."""
    fps = flops_per_sample(config, lengths) if config is not None and lengths is not None else None
    base = next((r.get("offline_sps") for r in rows if r["form"] == BASELINE), None)
    for r in rows:
        sps = r.get("offline_sps")
        r["vs_baseline"] = round(sps / base, 3) if sps and base else None
        r["useful_gflops"] = round(sps * fps / 1e9, 2) if sps and fps else None
        peak = peaks.get(r["peak"])
        r["peak_gflops"] = round(peak / 1e9, 1) if peak else None
        r["fraction_of_peak"] = round(sps * fps / peak, 3) if sps and fps and peak else None
    return {
        "rows": rows,
        "peaks_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
        "gemm_shape": list(SHAPE),
        "flops_per_sample": fps,
        "mean_tokens": float(np.mean(lengths)) if lengths is not None else None,
        "model_kind": kind,
        "cpu": {
            "model": caps.model,
            "bf16_kernel": caps.bf16_kernel,
            "amx_int8": caps.amx_int8,
            "avx512_vnni": caps.avx512_vnni,
        },
        "errors": errors,
    }


def text(value: Any) -> str:
    """A figure as the record rounded it; "-" when missing."""
    return "-" if value is None else str(value)


def render_peak(rec: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """reports/benchmark_peak.md."""
    cpu, fps = rec["cpu"], rec["flops_per_sample"]
    m, k, n = rec["gemm_shape"]
    native = cpu["bf16_kernel"] or "none: bf16 converted in software"
    int8 = "AMX" if cpu["amx_int8"] else "AVX512-VNNI" if cpu["avx512_vnni"] else "AVX2 only"
    spread = rec.get("peaks_before_after_gflops", {})
    peaks = "; ".join(
        f"{name} {v:,.1f} GFLOP/s"
        + (f" ({' / '.join(map(str, spread[name]))})" if name in spread else "")
        for name, v in rec["peaks_gflops"].items()
    )
    table = []
    for r in rec["rows"]:
        if r["refused"]:
            table.append(
                [
                    r["form"],
                    f"refused: {r['refused']}",
                    None,
                    None,
                    r["peak"],
                    text(r["peak_gflops"]),
                    None,
                ]
            )
            continue
        sps = text(r.get("offline_sps")) + ("" if r.get("offline_valid") else " (INVALID)")
        table.append(
            [
                r["form"],
                sps,
                *map(text, (r["vs_baseline"], r["useful_gflops"])),
                r["peak"],
                *map(text, (r["peak_gflops"], r["fraction_of_peak"])),
            ]
        )
    lines = measure.header(
        "Serving forms against the machine's own GEMM peaks, measured side by side in one run",
        command,
        f"CPU: native bf16: {native}; int8 dot products: {int8}.  ",
        f"Model: {args.model}/{args.task}, encoder {args.peak_encoder} ({rec['model_kind']} weights), "
        f"threads {args.threads or 'library default'}, {args.duration:g} s per LoadGen Offline run.  ",
        f"FLOPs per sample: {fps / 1e9:.3f} GFLOP (mean {rec['mean_tokens']:.1f} tokens, unpadded; "
        "matmuls only)."
        if fps
        else "FLOPs per sample: n/a (no form ran).",
        "",
        f"GEMM peaks, [{m} x {k}] @ [{k} x {n}], best of the timed calls, the better of the passes "
        f"before and after the runs (before / after in brackets): {peaks}.",
        "",
        *markdown_table(
            [
                "form",
                "Offline samples/s",
                "vs PyTorch fp32",
                "useful GFLOP/s",
                "peak",
                "peak GFLOP/s",
                "fraction of peak",
            ],
            table,
        ),
    )
    if load := rec.get("load_average"):
        before, after = (", ".join(f"{x:.1f}" for x in load[k]) for k in ("before", "after"))
        lines += [
            "",
            f"Load average (1, 5, 15 min) before: {before}; after: {after} (on "
            f"{device_info()['cpu_cores']} cores: what the figures competed with).",
        ]
    if rec["errors"]:
        lines += ["", "Errors: " + "; ".join(rec["errors"])]
    return "\n".join(lines) + "\n"
