"""`python -m bench benchmark`: the SUT's speed targets as ratios measured side by side in one run
(section `sut`), the Ray executor's figures (bench/ray_bench.py) and each serving form against
the machine's GEMM peaks (bench/peak_bench.py; `make gpu_check` runs it on a GPU).
docs/benchmark.md defines every figure and its target."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import measure
from bench.peak_bench import measure_peak_section, parse_forms, render_peak
from bench.ray_bench import measure_ray, render_ray
from common.exit_codes import BAD_INPUT
from common.paths import BUILD, REPO
from common.tables import markdown_table
from harness.cli import floats, names
from harness.config import RunConfig
from harness.retime import bare_single_p90_ms
from zoo.recipe import SIZES

# ratio -> (target, whether lower is better); vs_reference's target depends on the encoder
TARGETS = {
    "offline_efficiency": (0.95, False),
    "offline_vs_model_calls": (0.95, False),
    "vs_reference": (3.0, False),
    "server_vs_offline": (0.75, False),
    "singlestream_ratio": (1.10, True),
    "singlestream_vs_loop": (1.10, True),
}
RATIOS = tuple(TARGETS)
VS_REFERENCE_TARGET = {"tiny": 2.0, "e5-small": 3.0, "base": 3.0, "large": 3.0}
SECTIONS = ("sut", "ray", "peak")
REPORTS = REPO / "reports"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--sections", default="sut,ray,peak", help=f"comma-separated, of {', '.join(SECTIONS)}")
    a("--encoders", default="tiny,e5-small,base", help="sut section: tiny, e5-small (zoos), base, large")
    a("--model", default="full")
    a("--task", default="xnli")
    a("--backend", default="pytorch")
    a("--dtype", default=None, help="sut section: the backend's dtype (default: the run's)")
    a("--device", default="cpu", help="cpu or cuda[:N]")
    a("--threads", type=int, default=0, help="backend intra-op threads (0 = library default)")
    a("--duration", type=float, default=10.0, help="seconds per LoadGen run (Server needs >= 10)")
    a("--models_dir", default=None, help="the zoo (random weights take its tokenizer for tiny)")
    a("--languages", default=None, help="the task's languages (default: all)")
    a("--count", type=int, default=None, help="the first COUNT samples only (development)")
    a("--server_fractions", default="0.9,0.75,0.6,0.5", help="Server loads tried (x Offline samples/s)")
    a("--runs_dir", default=str(BUILD / "benchmark"))
    a("--out", default=str(REPORTS / "benchmark.md"), help="the sut section's report ('' = none)")
    a("--ray_out", default=str(REPORTS / "benchmark_ray.md"), help="the ray section's report")
    a("--ray_actors", default="1,2", help="ray section: actor counts of the no-op dispatch-ceiling runs")
    a("--noop_duration", type=float, default=5.0, help="ray section: seconds per no-op run")
    a("--ray_server_fractions", default="0.9,0.8,0.7,0.6,0.5", help="ray section: Server loads tried")
    a("--peak_out", default=str(REPORTS / "benchmark_peak.md"), help="the peak section's report")
    a("--peak_encoder", default="e5-small", help="peak section: the encoder of its Offline runs")
    a("--peak_weights", default="random", help="peak section: 'random' (speed only) or 'zoo' (trained)")
    forms = "pytorch,pytorch-bf16,onnxruntime,onnxruntime-int8"
    a("--peak_forms", default=forms, help="peak section: backend[-dtype]s (+ PyTorch fp32 beside them)")
    a("--peak_shape", default="1280,384,1536", help="peak section: M,K,N of the timed GEMM")
    a("--peak_repeats", type=int, default=10, help="peak section: timed calls per GEMM peak (best kept)")
    a("--peak_estimate_samples", type=int, default=128, help="peak section: samples of the sizing loop")
    a(
        "--budget",
        type=float,
        default=0,
        help="peak section: seconds after which no form starts (0: none)",
    )


def config(args: argparse.Namespace, encoder: str, weights: str | None, **changes: Any) -> RunConfig:
    """The benchmark's RunConfig of `encoder` (weights 'zoo' or None: its zoo), with `changes`."""
    flags = (
        "model",
        "task",
        "backend",
        "dtype",
        "device",
        "threads",
        "models_dir",
        "languages",
        "count",
    )
    given = {k: getattr(args, k) for k in flags} | {"duration_s": args.duration, "encoder": encoder}
    return RunConfig.layered(**given | {"weights": None if weights == "zoo" else weights} | changes)


def measure_encoder(encoder: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every ratio for one encoder, each from figures measured in this call."""
    cfg = config(args, encoder, None if encoder in SIZES else "random")  # the recipe's zoos: trained
    runs_dir = Path(args.runs_dir) / encoder
    rng = np.random.default_rng(0)
    # estimates that only size the LoadGen runs (target_qps, target_latency); the ratios come from
    # each run's own re-timing
    with measure.prepared(cfg) as work:
        model_kind = work.served.model_kind
        max_len = int(work.task.feature_settings().get("max_length", work.qsl.lengths.max()))
        est = measure.loop_sps(work, cfg.sut_options().limits, 256, rng)
        ref_est = measure.loop_sps(work, cfg.sut_options().limits, 32, rng, pad_to=max_len)
        single_est = bare_single_p90_ms(work.backends[0], work.qsl, measure.draw(work, 50, rng))
    # Offline: LoadGen sizes the query as 1.1 x min_duration x target_qps; a target above the
    # estimate keeps the run long enough when the machine speeds up between estimate and run
    run = functools.partial(measure.child, cfg, runs_dir)
    reference = {"max_batch": 1, "token_budget": 0, "pad_to": max_len}
    runs = {
        "offline": run("offline", "Offline", "target_qps", 1.5 * est, retime=True),
        # the MLCommons reference design: batch 1, padded to the task's max length
        "reference": run("reference", "Offline", "target_qps", 1.5 * ref_est, **reference),
        "single": run(
            "singlestream", "SingleStream", "target_latency", max(single_est, 0.05), retime=True
        ),
    }
    offline, reference, single = (measure.results(r) for r in runs.values())
    off_sps = offline.samples_per_second or 0.0
    fractions = floats(args.server_fractions)
    server_runs = measure.server_search(cfg, off_sps, fractions, "server", runs_dir, runs)
    loop = offline.retimed.get("plain_loop_samples_per_second") or 0.0
    in_run_sps = offline.retimed.get("in_run_predict_samples_per_second")
    ref_sps = reference.samples_per_second or 0.0
    ss_p90_ms = single.latency_ms("p90") or 0.0
    bare_ms = single.retimed.get("bare_p90_ms") or 0.0
    in_run_ms = single.retimed.get("in_run_predict_p90_ms") or 0.0
    return {
        "encoder": encoder,
        "model_kind": model_kind,
        "plain_loop_sps": round(loop, 2),
        "in_run_predict_sps": in_run_sps,
        "offline_samples": offline.retimed.get("samples"),
        "offline_sps": round(off_sps, 2),
        "offline_valid": offline.result_valid,
        "reference_sps": round(ref_sps, 2),
        "server_runs": server_runs,
        "bare_single_p90_ms": round(bare_ms, 3),
        "in_run_predict_p90_ms": round(in_run_ms, 3),
        "singlestream_p90_ms": round(ss_p90_ms, 3),
        "singlestream_samples": single.retimed.get("samples"),
        "offline_efficiency": measure.ratio(off_sps, loop),
        "offline_vs_model_calls": measure.ratio(off_sps, in_run_sps),
        "vs_reference": measure.ratio(off_sps, ref_sps, 2),
        "server_vs_offline": measure.ratio(measure.best_valid(server_runs), off_sps),
        "singlestream_ratio": measure.ratio(ss_p90_ms, in_run_ms),
        "singlestream_vs_loop": measure.ratio(ss_p90_ms, bare_ms),
        "errors": measure.errors(runs),
    }


def render(rows: list[dict[str, Any]], command: str, notes: Path | None = None) -> str:
    """The sut section's report; `notes`, when that file exists, is linked at the end (the
    hand-written reading of the figures lives there, so a rerun does not erase it)."""
    lines = measure.header(
        "SUT benchmark: ratios measured side by side in one run",
        command,
        "Model kinds: `tiny` = the repository's tiny zoo model (4 layers x 128); `real` = "
        "multilingual-e5-small fine-tuned here (12 layers x 384, real pretrained weights); `random` = "
        "the real XLM-R shape with random weights (speed only, no accuracy meaning). Every kind but "
        "tiny tokenises with XLM-R's own tokenizer.",
        "",
    )
    table = []
    for r in rows:
        tag = f"{r['encoder']} ({r['model_kind']})"
        figs = {
            "offline_efficiency": f"LoadGen {r['offline_sps']} / plain loop {r['plain_loop_sps']} "
            f"samples/s (the query's {r['offline_samples']} samples)",
            "offline_vs_model_calls": f"LoadGen {r['offline_sps']} / model calls alone "
            f"{r['in_run_predict_sps']} samples/s",
            "vs_reference": f"{r['offline_sps']} / reference {r['reference_sps']} samples/s",
            "server_vs_offline": measure.server_text(r["server_runs"]),
            "singlestream_ratio": f"p90 {r['singlestream_p90_ms']} ms / model calls in the run "
            f"{r['in_run_predict_p90_ms']} ms ({r['singlestream_samples']} queries)",
            "singlestream_vs_loop": f"p90 {r['singlestream_p90_ms']} ms / back-to-back loop "
            f"{r['bare_single_p90_ms']} ms",
        }
        for name, (target, lower) in TARGETS.items():
            if name == "vs_reference":
                target = VS_REFERENCE_TARGET.get(r["encoder"], target)
            verdict = measure.verdict(r[name], target, lower)
            table.append(
                [tag, name, str(r[name]), f"{'<=' if lower else '>='} {target}", verdict, figs[name]]
            )
        if r["errors"]:
            table.append([tag, "errors", "; ".join(r["errors"]), "", "", ""])
    lines += markdown_table(["encoder (kind)", "ratio", "value", "target", "verdict", "figures"], table)
    if notes is not None and notes.is_file():
        lines += ["", f"How to read these figures: [{notes.name}]({notes.name})."]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    sections = names(args.sections)
    unknown = [x for x in sections if x not in SECTIONS]
    try:
        if unknown or not sections:
            raise ValueError(f"--sections: {', '.join(unknown) or 'none'} not in {', '.join(SECTIONS)}")
        if "peak" in sections:
            parse_forms(args.peak_forms)  # checked before any section spends minutes
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT
    command = ("python -m bench benchmark " + " ".join(sys.argv[2:])).strip()
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    errors = False
    if "sut" in sections:
        rows = [measure_encoder(e, args) for e in names(args.encoders)]
        out = Path(args.out) if args.out else None
        text = render(rows, command, out.with_name(f"{out.stem}_notes.md") if out else None)
        measure.publish(text, rows, runs_dir / "benchmark.json", out)
        errors |= any(r["errors"] for r in rows)
    if "ray" in sections:
        row = measure_ray(args, functools.partial(config, args))
        measure.publish(render_ray(row, command), row, runs_dir / "benchmark_ray.json", args.ray_out)
        errors |= bool(row["errors"])
    if "peak" in sections:
        rec = measure_peak_section(args, functools.partial(config, args))
        text = render_peak(rec, args, command)
        measure.publish(text, rec, runs_dir / "benchmark_peak.json", args.peak_out)
        errors |= bool(rec["errors"])
    return 1 if errors else 0
