"""The benchmark's peak section (`python -m bench benchmark --sections peak`, also `make gpu_check`
on a GPU): each serving form's Offline rate against the machine's own GEMM peak for its library and
dtype, measured side by side in one run (docs/benchmark.md says how)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import measure
from common.tables import markdown_table
from harness.cli import floats
from harness.config import RunConfig, device_kind
from harness.info import device_info
from models.cpu_caps import probe

Shape = tuple[int, int, int]  # M, K, N of one [M x K] @ [K x N] matmul: 2 M K N FLOPs


@dataclass(frozen=True)
class Form:
    """A serving form: --backend and --dtype, and the CPU GEMM peak its matmuls are held to."""

    backend: str
    dtype: str
    peak: str

    @property
    def label(self) -> str:
        """The study's name (harness.run_record.RunRecord.backend_label): fp32 implicit."""
        return self.backend if self.dtype == "fp32" else f"{self.backend}-{self.dtype}"

    def peak_on(self, device: str) -> str:
        """The peak on `device`: on a GPU both libraries' matmuls are cuBLAS's, timed through torch."""
        return self.peak if device_kind(device) == "cpu" else f"torch-{self.dtype}"


FORMS = {
    f.label: f
    for f in (
        Form("pytorch", "fp32", "torch-fp32"),
        Form("pytorch", "bf16", "torch-bf16"),
        Form("pytorch", "fp16", "torch-fp16"),
        Form("onnxruntime", "fp32", "onnxruntime-fp32"),
        Form("onnxruntime", "int8", "onnxruntime-int8"),
        Form("onnxruntime", "fp16", "torch-fp16"),
    )
}
BASELINE = "pytorch"  # every form's rate is also given as a ratio to this one's
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --- the machine's peaks ----------------------------------------------------------------------------
def _torch_gemm(dtype: str, threads: int, shape: Shape, device: str) -> Callable[[], Any]:
    if threads > 0:
        torch.set_num_threads(threads)
    m, k, n = shape
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(r, c, generator=g).to(device, TORCH_DTYPES[dtype]) for r, c in [(m, k), (k, n)])
    sync = torch.cuda.synchronize if device_kind(device) == "cuda" else (lambda: None)
    return lambda: (torch.matmul(a, b), sync())[0]


def _onnx_gemm(dtype: str, threads: int, shape: Shape, device: str) -> Callable[[], Any]:
    """A one-node ONNX Runtime CPU session: MatMul (fp32) or MatMulInteger (int8), weights constant."""
    # lazy: onnx / onnxruntime are the optional `cpu` extra, needed only for an ONNX Runtime peak
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    (m, k, n), rng, init = shape, np.random.default_rng(0), numpy_helper.from_array
    if dtype == "fp32":
        a = rng.standard_normal((m, k), dtype=np.float32)
        weights = [init(rng.standard_normal((k, n), dtype=np.float32), "B")]
        node, types = helper.make_node("MatMul", ["A", "B"], ["Y"]), (TensorProto.FLOAT,) * 2
    else:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        # 7-bit weights: without VNNI, the u8 x s8 kernel adds pairs of products in int16 and
        # saturates on full-range weights (255 x 127 x 2 > 32767); speed is the same either way
        weights = [init(rng.integers(-64, 64, (k, n), dtype=np.int8), "B")]
        weights += [init(np.array(128, dtype=np.uint8), "a_zero"), init(np.array(0, np.int8), "b_zero")]
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
        types = (TensorProto.UINT8, TensorProto.INT32)
    io = [
        helper.make_tensor_value_info(x, t, s)
        for x, t, s in zip("AY", types, [[m, k], [m, n]], strict=True)
    ]
    model = helper.make_model(
        helper.make_graph([node], "gemm", io[:1], io[1:], initializer=weights),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(threads, 0)
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"A": a})


PEAKS: dict[str, Callable[[int, Shape, str], Callable[[], Any]]] = {
    **{f"torch-{d}": lambda t, s, dev, d=d: _torch_gemm(d, t, s, dev) for d in TORCH_DTYPES},
    **{f"onnxruntime-{d}": lambda t, s, dev, d=d: _onnx_gemm(d, t, s, dev) for d in ("fp32", "int8")},
}


def measure_peaks(args: argparse.Namespace, names: list[str]) -> dict[str, float]:
    """FLOP/s of the --peak_shape matmul per peak name, best of --peak_repeats. A software bf16 GEMM
    (a CPU without AMX or AVX512-BF16) is timed once after one warm call: tens of times slower."""
    shape, out = tuple(int(x) for x in floats(args.peak_shape)), {}
    for name in names:
        slow = name == "torch-bf16" and device_kind(args.device) == "cpu" and probe().bf16_kernel is None
        call = PEAKS[name](args.threads, shape, args.device)
        seconds = (
            measure.best_seconds(call, 1, warm=1)
            if slow
            else measure.best_seconds(call, args.peak_repeats)
        )
        out[name] = 2.0 * np.prod(shape) / seconds
    return out


# --- the section ------------------------------------------------------------------------------------
def parse_forms(text: str) -> list[Form]:
    """--peak_forms -> Forms, PyTorch fp32 first when not listed; ValueError naming unknown ones."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in FORMS]
    if unknown or not names:
        raise ValueError(f"--peak_forms: {', '.join(unknown) or 'none'} not in {', '.join(FORMS)}")
    return ([] if BASELINE in names else [FORMS[BASELINE]]) + [FORMS[x] for x in names]


def measure_peak_section(args: argparse.Namespace, config: Callable[..., RunConfig]) -> dict[str, Any]:
    """Every figure of the section, measured in this call (LoadGen runs as child processes);
    `config(encoder, weights, **changes)` makes the benchmark's RunConfig. A form that would start
    after --budget seconds is listed as not run."""
    t0, forms, runs_dir = time.perf_counter(), parse_forms(args.peak_forms), Path(args.runs_dir) / "peak"
    load_before = measure.load_average()
    names = sorted({f.peak_on(args.device) for f in forms})
    before = measure_peaks(args, names)
    rows, lengths, encoder, kind, runs = [], None, None, None, {}
    for form in forms:
        row: dict[str, Any] = {"form": form.label, "peak": form.peak_on(args.device), "refused": None}
        rows.append(row)
        try:
            cfg = config(args.peak_encoder, args.peak_weights, backend=form.backend, dtype=form.dtype)
        except ValueError as e:  # this machine cannot serve the form: the RunConfig's own reason
            row["refused"] = str(e)
        if args.budget and time.perf_counter() - t0 > args.budget:
            row["refused"] = f"not run: --budget {args.budget:g} s spent"
        if row["refused"]:
            continue
        # in-process: a plain loop sizes the LoadGen run (it also exports / quantises an ONNX graph
        # once for the child); the QSL's lengths and the encoder's config give FLOPs per sample
        with measure.prepared(cfg) as work:
            rng = np.random.default_rng(0)
            est = measure.loop_sps(work, cfg.sut_options().limits, args.peak_estimate_samples, rng)
            lengths, encoder = np.asarray(work.qsl.lengths), dict(work.served.encoder_config)
            kind = work.served.model_kind
        runs[form.label] = measure.child(cfg, runs_dir, form.label, "Offline", "target_qps", 1.5 * est)
        res = measure.results(runs[form.label])
        row["offline_sps"] = round(res.samples_per_second, 2) if res.samples_per_second else None
        row["offline_valid"] = res.result_valid if res.samples_per_second else None
    after = measure_peaks(args, names)
    # on a shared machine a peak timed while others compute is too low: the better of two, timed
    # before and after the runs, and both kept in the record (their spread is the noise)
    best = {k: max(before[k], after[k]) for k in names}
    rec = summarise(rows, best, lengths, encoder, kind, probe(), measure.errors(runs))
    rec["gemm_shape"] = [int(x) for x in floats(args.peak_shape)]
    rec["load_average"] = {"before": load_before, "after": measure.load_average()}
    rec["peaks_before_after_gflops"] = {
        k: [round(before[k] / 1e9, 1), round(after[k] / 1e9, 1)] for k in names
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
    fps = measure.flops_per_sample(config, lengths) if config and lengths is not None else None
    base = next((r.get("offline_sps") for r in rows if r["form"] == BASELINE), None)
    for r in rows:
        sps, peak = r.get("offline_sps"), peaks.get(r["peak"])
        r["vs_baseline"] = measure.ratio(sps, base)
        r["useful_gflops"] = round(sps * fps / 1e9, 2) if sps and fps else None
        r["peak_gflops"] = round(peak / 1e9, 1) if peak else None
        r["fraction_of_peak"] = round(sps * fps / peak, 3) if sps and fps and peak else None
    cpu = {k: getattr(caps, k) for k in ("model", "bf16_kernel", "amx_int8", "avx512_vnni")}
    return {
        "rows": rows,
        "peaks_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
        "flops_per_sample": fps,
        "mean_tokens": float(np.mean(lengths)) if lengths is not None else None,
        "model_kind": kind,
        "cpu": cpu,
        "errors": errors,
    }


def render_peak(rec: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    """reports/benchmark_peak.md."""
    cpu, fps, spread = rec["cpu"], rec["flops_per_sample"], rec.get("peaks_before_after_gflops", {})
    m, k, n = rec["gemm_shape"]
    native = cpu["bf16_kernel"] or "none: bf16 converted in software"
    int8 = "AMX" if cpu["amx_int8"] else "AVX512-VNNI" if cpu["avx512_vnni"] else "AVX2 only"
    peaks = "; ".join(
        f"{name} {v:,.1f} GFLOP/s"
        + (f" ({' / '.join(map(str, spread[name]))})" if name in spread else "")
        for name, v in rec["peaks_gflops"].items()
    )
    table = []
    for r in rec["rows"]:
        figures = [r.get(k) for k in ("offline_sps", "vs_baseline", "useful_gflops", "peak_gflops")]
        sps, ratio, useful, peak = ("-" if v is None else str(v) for v in figures)
        sps += "" if r.get("offline_valid") or sps == "-" else " (INVALID)"
        fraction = "-" if r.get("fraction_of_peak") is None else str(r["fraction_of_peak"])
        sps = f"refused: {r['refused']}" if r["refused"] else sps
        table.append([r["form"], sps, ratio, useful, r["peak"], peak, fraction])
    device = "" if device_kind(args.device) == "cpu" else f", device {args.device}"
    lines = measure.header(
        "Serving forms against the machine's own GEMM peaks, measured side by side in one run",
        command,
        f"CPU: native bf16: {native}; int8 dot products: {int8}.  ",
        f"Model: {args.model}/{args.task}, encoder {args.peak_encoder} ({rec['model_kind']} weights), "
        f"threads {args.threads or 'library default'}, {args.duration:g} s per LoadGen Offline run"
        f"{device}.  ",
        f"FLOPs per sample: {fps / 1e9:.3f} GFLOP (mean {rec['mean_tokens']:.1f} tokens, unpadded; "
        "matmuls only)."
        if fps
        else "FLOPs per sample: n/a (no form ran).",
        "",
        f"GEMM peaks, [{m} x {k}] @ [{k} x {n}], best of the timed calls, the better of the passes "
        f"before and after the runs (before / after in brackets): {peaks}.",
        "",
        *markdown_table(
            ["form", "Offline samples/s", "vs PyTorch fp32", "useful GFLOP/s", "peak", "peak GFLOP/s"]
            + ["fraction of peak"],
            table,
        ),
    )
    if load := rec.get("load_average"):
        before, after = (", ".join(f"{x:.1f}" for x in load[k]) for k in ("before", "after"))
        cores = device_info()["cpu_cores"]
        said = f"before: {before}; after: {after} (on {cores} cores: what the figures competed with)."
        lines += ["", f"Load average (1, 5, 15 min) {said}"]
    if rec["errors"]:
        lines += ["", "Errors: " + "; ".join(rec["errors"])]
    return "\n".join(lines) + "\n"
