"""`python -m research gpu_check`: XLM-R base/large shapes (RANDOM weights) on one NVIDIA GPU, < 8 min;
`--dry` checks the same path on CPU (docs/benchmark.md). Writes `<out>/gpu_check.json` and
`<out>/gpu_check.md`, run folders under `<out>/runs/`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from harness.config import RunConfig
from harness.info import device_info, git_state, package_versions
from harness.launch import launch
from harness.settings import user_conf_with
from models.registry import resolve
from research.measure import best_seconds, built, conf_line, flops_per_sample, gemm_flops
from research.tables import markdown_table
from tasks.registry import get_task
from zoo.recipe import tokenizer_for

# Dense (no sparsity) bf16 tensor-core peak, FLOP/s, from vendor datasheets (not measured here).
# Matched by substring of torch's device name, first match wins (the more specific names first).
KNOWN_PEAKS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


@dataclass(frozen=True)
class CheckRun:
    """One LoadGen test of the check (one cell of its table)."""

    encoder: str
    backend: str
    dtype: str
    scenario: str
    duration_s: float

    @property
    def name(self) -> str:
        return f"{self.encoder}.{self.backend}-{self.dtype}.{self.scenario}"


@dataclass(frozen=True)
class CheckPlan:
    """What the check runs: GPU (real shapes) or dry (tiny, CPU)."""

    dry: bool
    device: str
    runs: tuple[CheckRun, ...]
    server: CheckRun  # offered a fraction of the Offline samples/s of the same encoder/backend
    languages: str | None  # dry: English only, and the first `count` samples
    count: int | None
    bound_encoder: str  # the shape whose Offline run is compared with the compute bound


def make_plan(dry: bool, duration_s: float | None = None) -> CheckPlan:
    """The runs, most important first (the budget may cut the tail)."""
    if dry:
        d = duration_s or 1.0
        variants, encoders, device = [("pytorch", "fp32"), ("onnxruntime", "fp32")], ["tiny"], "cpu"
        languages, count = "en", 64
    else:
        d = duration_s or 20.0
        variants, encoders, device = (
            [("pytorch", "bf16"), ("onnxruntime", "fp16")],
            ["large", "base"],
            "cuda",
        )
        languages, count = None, None
    runs = tuple(
        CheckRun(enc, b, dt, sc, d)
        for b, dt in variants
        for enc in encoders
        for sc in ("Offline", "SingleStream")
    )
    server = CheckRun(encoders[0], variants[0][0], variants[0][1], "Server", d)
    return CheckPlan(dry, device, runs, server, languages, count, encoders[0])


def known_peak(device_name: str) -> float | None:
    for key, peak in KNOWN_PEAKS:
        if key.lower() in device_name.lower():
            return peak
    return None


def measured_matmul_peak(device: str, size: int, repeats: int = 20) -> float:
    """FLOP/s of a square matmul (bf16 on CUDA, fp32 on CPU), best of `repeats`."""
    cuda = device.startswith("cuda")
    a, b = (
        torch.randn(size, size, device=device, dtype=torch.bfloat16 if cuda else torch.float32)
        for _ in "ab"
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    return gemm_flops(size, size, size) / best_seconds(lambda: (a @ b, sync()), repeats, warm=1)


def task_lengths(plan: CheckPlan, models_dir: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Token lengths of the XNLI samples the runs use, and the bound encoder's config."""
    served = resolve("full", "xnli", plan.bound_encoder, weights="random", models_dir=models_dir)
    languages = "en" if plan.dry else None
    lengths = get_task("xnli", languages=languages).features(tokenizer_for(served)).lengths
    return (lengths[:64] if plan.dry else lengths), dict(served.encoder_config)


def run_config(p: CheckRun, plan: CheckPlan, out: Path, models_dir: str | None) -> RunConfig:
    """The `harness run` of one check run: model full on XNLI, random weights, development duration."""
    return RunConfig.layered(
        model="full",
        task="xnli",
        weights="random",
        encoder=p.encoder,
        backend=p.backend,
        dtype=p.dtype,
        device=plan.device,
        scenario=p.scenario,
        duration_s=p.duration_s,
        allow_invalid=True,
        output_dir=out / "runs" / f"{p.encoder}-{p.backend}-{p.dtype}",
        languages=plan.languages,
        count=plan.count,
        models_dir=models_dir,
    )


def run_check(p: CheckRun, cfg: RunConfig, out: Path, timeout_s: float) -> dict[str, Any]:
    """Run one check run; its results (or the error) as a row of the table."""
    t0 = time.perf_counter()
    run = launch(built(cfg), out / "logs" / f"{p.name}.log", timeout_s=timeout_s)
    row: dict[str, Any] = {
        **asdict(p),
        "name": p.name,
        "rc": run.rc,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    res = run.results
    if res is None:
        return {**row, "error": f"no results.json (exit {run.rc}); see {run.log}"}
    return {
        **row,
        "valid": res.result_valid,
        "samples_per_second": res.samples_per_second,
        "completed_qps": res.completed_qps,
        "target_qps": res.target_qps,
        "p50_ms": res.latency_ms("p50"),
        "p90_ms": res.latency_ms("p90"),
        "p99_ms": res.latency_ms("p99"),
        "run_folder": str(run.run_dir),
    }


def with_target_qps(cfg: RunConfig, target_qps: float, out: Path) -> RunConfig:
    """`cfg` with its user.conf plus its `<model>.<Scenario>.target_qps` line (LoadGen knobs live in
    user.conf only; the name is the run's LoadGen model name)."""
    lines = conf_line(cfg, cfg.scenario, "target_qps", target_qps)
    name = f"{cfg.scenario.lower()}_user.conf"
    return replace(cfg, user_conf=user_conf_with(cfg.user_conf, lines, out / name, "gpu_check"))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--dry", action="store_true", help="CPU, tiny shape, 1-second runs: checks the code path only")
    a("--out", type=Path, default=REPO / "reports" / "gpu")
    a("--duration", type=float, default=None, help="seconds per LoadGen run (default 20; dry 1)")
    a("--budget", type=float, default=450.0, help="seconds for all runs; the tail is skipped beyond")
    a("--server_fraction", type=float, default=0.8, help="Server offered load / Offline samples/s")
    a("--models_dir", default=None, help="zoo folder whose encoder/ tokenizer random weights use")


def main(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    plan = make_plan(args.dry, args.duration)
    dev = device_info()
    if not plan.dry and not dev["gpus"]:
        print("gpu_check: no CUDA GPU visible; use --dry on CPU", file=sys.stderr)
        return BAD_INPUT
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    device_name = dev["gpus"][0]["name"] if dev["gpus"] and not plan.dry else dev["cpu_model"]
    label = (
        "DRY RUN (CPU, tiny shape, numbers meaningless)" if plan.dry else "GPU check (random weights)"
    )
    print(f"gpu_check: {label} on {device_name}", flush=True)
    lengths, config = task_lengths(plan, args.models_dir)
    rows: list[dict[str, Any]] = []
    for p in plan.runs + (plan.server,):
        left = args.budget - (time.perf_counter() - t_start)
        if left < 2 * p.duration_s + 10:
            rows.append({**asdict(p), "name": p.name, "error": "skipped: time budget spent"})
            continue
        cfg = run_config(p, plan, out, args.models_dir)
        if plan.dry and p.scenario == "Offline":  # a query of 1.1 x 1 s x 100 samples: about 1 s
            cfg = with_target_qps(cfg, 100, out)
        if p.scenario == "Server":
            off = next(
                (r for r in rows if r["name"] == f"{p.encoder}.{p.backend}-{p.dtype}.Offline"), {}
            )
            if not off.get("samples_per_second"):
                rows.append({**asdict(p), "name": p.name, "error": "skipped: no Offline result"})
                continue
            cfg = with_target_qps(cfg, args.server_fraction * off["samples_per_second"], out)
        row = run_check(p, cfg, out, left)
        rows.append(row)
        print(f"  {p.name:<40} {_summary(row)}", flush=True)
    summary = summarise(plan, rows, lengths, config, device_name)
    summary.update(
        dry=plan.dry,
        label=label,
        device=dev,
        versions=package_versions(),
        **git_state(),
        wall_s=round(time.perf_counter() - t_start, 1),
        runs=rows,
    )
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(summary))
    print(f"gpu_check: wrote {out / 'gpu_check.md'} ({summary['wall_s']:.0f} s)")
    return 0 if all("error" not in r or r["error"].startswith("skipped") for r in rows) else 1


def _summary(row: dict[str, Any]) -> str:
    if "error" in row:
        return row["error"]
    sps = row.get("samples_per_second") or row.get("completed_qps")
    return f"{sps or 0:,.1f}/s p90 {row.get('p90_ms') or 0:.2f} ms valid={row.get('valid')}"


def summarise(
    plan: CheckPlan,
    rows: list[dict[str, Any]],
    lengths: np.ndarray,
    config: dict[str, Any],
    device_name: str,
) -> dict[str, Any]:
    """Compute-bound fraction of the bound shape's Offline run and the Server/Offline ratio."""
    by = {r["name"]: r for r in rows}
    first = plan.runs[0]
    off = by.get(f"{plan.bound_encoder}.{first.backend}-{first.dtype}.Offline", {})
    flops = flops_per_sample(config, lengths)
    peak_table = None if plan.dry else known_peak(device_name)
    peak_measured = measured_matmul_peak(plan.device, 512 if plan.dry else 8192)
    peak = peak_table or peak_measured
    sps = off.get("samples_per_second")
    achieved = sps * flops if sps else None
    server = by.get(plan.server.name, {})
    ratio = server["completed_qps"] / sps if sps and server.get("completed_qps") else None
    return {
        "device_name": device_name,
        "mean_tokens": float(np.mean(lengths)),
        "flops_per_sample": flops,
        "peak_flops": peak,
        "peak_source": "datasheet table" if peak_table else "measured matmul",
        "peak_measured_matmul": peak_measured,
        "achieved_flops": achieved,
        "fraction_of_peak": achieved / peak if achieved else None,
        "server_offline_ratio": ratio,
        "server_valid": server.get("valid"),
    }


def markdown(s: dict[str, Any]) -> str:
    """gpu_check.md: what ran, the bound and the Server/Offline ratio, clearly labelled."""
    f = s["fraction_of_peak"]
    lines = [
        f"# gpu_check: {s['label']}",
        "",
        f"Device: {s['device_name']}. Weights: random (speed only).",
        f"git {s['git_sha'][:12]}{' (dirty)' if s.get('git_dirty') else ''}; wall {s['wall_s']:.0f} s.",
        "",
    ]
    rows = [
        [r["name"], str(r.get("valid", "-")), r.get("samples_per_second") or r.get("completed_qps")]
        + [r.get(k) for k in ("p50_ms", "p90_ms", "p99_ms")]
        + [r.get("error", "")]
        for r in s["runs"]
    ]
    header = ["run", "valid", "samples/s or QPS", "p50 ms", "p90 ms", "p99 ms", "note"]
    lines += markdown_table(header, rows, digits=2)
    lines += [
        "",
        f"Mean XNLI tokens/sample {s['mean_tokens']:.1f}; "
        f"{s['flops_per_sample'] / 1e9:.2f} GFLOP/sample.",
        f"Peak {s['peak_flops'] / 1e12:.1f} TFLOP/s ({s['peak_source']}; measured matmul "
        f"{s['peak_measured_matmul'] / 1e12:.1f}).",
        f"Offline achieved {s['achieved_flops'] / 1e12:.2f} TFLOP/s = {100 * f:.1f}% of peak."
        if f
        else "Offline achieved: no Offline result.",
        f"Server/Offline: {s['server_offline_ratio']:.2f} (Server valid: {s['server_valid']}; "
        "a short run "
        "cannot meet early stopping, so INVALID here is expected)."
        if s["server_offline_ratio"]
        else "Server/Offline: no Server result.",
        "",
    ]
    if s["dry"]:
        lines.insert(
            1, "\n**DRY RUN on CPU with the tiny shape: these numbers check the code path only.**\n"
        )
    return "\n".join(lines)
