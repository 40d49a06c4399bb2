"""`python -m research benchmark`: the SUT's speed targets, as ratios measured side by side in one run.

For each encoder (default: the tiny zoo model, the e5-small zoo model and the XLM-R base shape with
random weights and XLM-R's tokenizer), on one
task/model/backend, it runs LoadGen and prints one table of ratios:

  offline_efficiency   LoadGen Offline samples/s / a plain loop over the very samples of that query,
                       with the same batching (sut.batching.plan_batches), timed in the same
                       process right after the test (`run --retime`)               target >= 0.95
  offline_vs_model_calls  LoadGen Offline samples/s / the same samples over the time of the model
                       calls alone, timed inside the SUT during that run: the harness's own overhead,
                       free of the drift between two passes                       target >= 0.95
  vs_reference         our Offline samples/s / the MLCommons reference design run through LoadGen
                       (batch 1, padded to the task's max length, one QuerySamplesComplete per
                       sample)                                          target >= 2 (tiny), >= 3 (base)
  server_vs_offline    highest VALID Server target_qps tried / Offline samples/s   target >= 0.75
  singlestream_ratio   LoadGen SingleStream p90 / p90 of the model calls themselves, timed inside the
                       SUT during that run: the harness's own overhead        target <= 1.10
  singlestream_vs_loop LoadGen SingleStream p90 / p90 of back-to-back single-sample forwards over the
                       very samples LoadGen issued, same process, right after (`run --retime`). Also
                       held to 1.10; it includes what the gaps between queries cost the model call
                       itself (caches, idle cores), which no SingleStream harness avoids entirely.

The re-timing (harness/retime.py) puts both sides of a ratio in one process, on the same samples,
minutes apart at most: on a shared machine whose speed drifts by tens of percent between minutes, that
is what makes the ratio mean something.

Every LoadGen run is a separate `python -m harness run` process (one LoadGen test per process) with
a user.conf derived from the repository's (target_qps appended), and lands in --runs_dir.

Sections (`--sections`, default all three): `sut`, the ratios above, into --out
(reports/benchmark.md); `ray`, the Ray executor's figures (research/ray_bench.py), into --ray_out
(reports/benchmark_ray.md); `peak`, each serving form (PyTorch fp32 / bf16, ONNX Runtime fp32 / int8)
against the machine's measured GEMM peaks (research/peak_bench.py), into --peak_out
(reports/benchmark_peak.md). `--sections ray` runs the Ray section alone (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.exit_codes import BAD_INPUT
from common.paths import BUILD, REPO
from harness.config import RunConfig
from harness.info import device_info
from harness.launch import Launched
from harness.launch import launch_with_conf as loadgen_run
from harness.retime import bare_single_p90_ms, plain_loop_sps
from harness.run_record import Results
from sut.batching import BatchLimits
from zoo.recipe import SIZES

TARGETS = {
    "offline_efficiency": 0.95,
    "offline_vs_model_calls": 0.95,
    "server_vs_offline": 0.75,
    "singlestream_ratio": 1.10,
    "singlestream_vs_loop": 1.10,
}
LOWER_IS_BETTER = ("singlestream_ratio", "singlestream_vs_loop")
RATIOS = (
    "offline_efficiency",
    "offline_vs_model_calls",
    "vs_reference",
    "server_vs_offline",
    *LOWER_IS_BETTER,
)
VS_REFERENCE_TARGET = {"tiny": 2.0, "e5-small": 3.0, "base": 3.0, "large": 3.0}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--encoders", default="tiny,e5-small,base",
      help="comma-separated: tiny and e5-small (their zoos, built on first use), base/large (random "
           "weights, XLM-R's tokenizer)")  # fmt: skip
    a("--model", default="full")
    a("--task", default="xnli")
    a("--backend", default="pytorch")
    a("--threads", type=int, default=0, help="backend intra-op threads (0 = library default)")
    a("--duration", type=float, default=10.0, help="seconds per LoadGen run (Server needs >= 10)")
    a(
        "--server_fractions",
        default="0.9,0.75,0.6,0.5",
        help="Server loads tried (x Offline samples/s), until one is VALID",
    )
    a("--runs_dir", default=str(BUILD / "benchmark"))
    a("--out", default=str(REPO / "reports" / "benchmark.md"), help="markdown report ('' = none)")
    a(
        "--sections",
        default="sut,ray,peak",
        help="comma-separated: sut (the ratios above), ray (the Ray executor), peak (each serving form "
        "against the machine's GEMM peaks)",
    )
    a("--ray_out", default=str(REPO / "reports" / "benchmark_ray.md"), help="the ray section's report")
    a("--peak_encoder", default="e5-small", help="peak section: the encoder of its Offline runs")
    a(
        "--peak_weights",
        default="random",
        help="peak section: 'random' (the shape, speed only) or 'zoo' (the encoder's trained zoo model)",
    )
    a(
        "--peak_forms",
        default="pytorch,pytorch-bf16,onnxruntime,onnxruntime-int8",
        help="peak section: serving forms (backend[-dtype]); PyTorch fp32 is measured beside them",
    )
    a("--peak_repeats", type=int, default=10, help="peak section: timed calls per GEMM peak (best kept)")
    a("--peak_estimate_samples", type=int, default=128, help="peak section: samples of the sizing loop")
    a(
        "--peak_out",
        default=str(REPO / "reports" / "benchmark_peak.md"),
        help="the peak section's report",
    )
    a("--ray_actors", default="1,2", help="ray section: actor counts of the no-op dispatch-ceiling runs")
    a("--noop_duration", type=float, default=5.0, help="ray section: seconds per no-op run")
    a(
        "--ray_server_fractions",
        default="0.9,0.8,0.7,0.6,0.5",
        help="ray section: Server loads tried (x Ray Offline samples/s), until one is VALID",
    )


# --- LoadGen runs (child processes) -------------------------------------------------------------
def _error(run: Launched) -> str | None:
    """Why a run gave no figures (None when it did)."""
    if run.rc != 0 or run.results is None:
        return f"exit {run.rc}, see {run.log}"
    return None


def measure_encoder(encoder: str, args: argparse.Namespace) -> dict[str, Any]:
    """All four ratios for one encoder; every figure measured in this call."""
    from harness.runner import prepare, warm_up

    weights = None if encoder in SIZES else "random"  # the recipe's own zoos serve trained weights
    cfg = RunConfig.layered(model=args.model, task=args.task, backend=args.backend, encoder=encoder,
                            weights=weights, threads=args.threads, duration_s=args.duration)  # fmt: skip
    runs_dir = Path(args.runs_dir) / encoder
    work = prepare(cfg)
    warm_up(work)
    model_kind = work.served.model_kind
    max_len = int(work.task.feature_settings().get("max_length", work.qsl.lengths.max()))
    rng = np.random.default_rng(0)
    pool = work.qsl.total_sample_count
    # estimates that only size the LoadGen runs (target_qps, target_latency); the ratios come from
    # each run's own re-timing
    backend, qsl = work.backends[0], work.qsl
    limits = BatchLimits(cfg.max_batch, cfg.token_budget)
    est = plain_loop_sps(backend, qsl, rng.choice(pool, 256), limits)
    ref_est = plain_loop_sps(backend, qsl, rng.choice(pool, 32), limits, pad_to=max_len)
    single_est = bare_single_p90_ms(backend, qsl, rng.choice(pool, 50))
    for b in work.backends:
        b.close()

    m = cfg.loadgen_model_name  # the user.conf name of this model on this encoder
    # Offline: LoadGen sizes the query as 1.1 x min_duration x target_qps; a target above the
    # estimate keeps the run long enough when the machine speeds up between estimate and run
    runs = {
        "offline": loadgen_run(cfg, [f"{m}.Offline.target_qps = {1.5 * est:.2f}"], "offline", runs_dir,
                               scenario="Offline", retime=True),
        "reference": loadgen_run(cfg, [f"{m}.Offline.target_qps = {1.5 * ref_est:.2f}"], "reference",
                                 runs_dir, scenario="Offline", max_batch=1, token_budget=0, pad_to=max_len),
        "single": loadgen_run(cfg, [f"{m}.SingleStream.target_latency = {max(single_est, 0.05):.3f}"],
                              "singlestream", runs_dir, scenario="SingleStream", retime=True),
    }  # fmt: skip
    offline, reference, single = (run.results or Results() for run in runs.values())
    off_sps = offline.samples_per_second or 0.0
    loop = offline.retimed.get("plain_loop_samples_per_second") or 0.0

    server_runs = []
    for frac in [float(x) for x in args.server_fractions.split(",") if x]:
        qps = frac * off_sps
        res = loadgen_run(cfg, [f"{m}.Server.target_qps = {qps:.2f}"], f"server_{frac:g}", runs_dir,
                          scenario="Server").results or Results()  # fmt: skip
        server_runs.append({"fraction": frac, "target_qps": round(qps, 2), "valid": res.result_valid,
                            "p99_ms": (res.latency_ms("p99") or 0.0)})  # fmt: skip
        if res.result_valid:
            break
    best = max((r["target_qps"] for r in server_runs if r["valid"]), default=0.0)
    ss_p90_ms = single.latency_ms("p90") or 0.0
    bare_ms = single.retimed.get("bare_p90_ms") or 0.0
    in_run_ms = single.retimed.get("in_run_predict_p90_ms") or 0.0
    in_run_sps = offline.retimed.get("in_run_predict_samples_per_second")
    ref_sps = reference.samples_per_second or 0.0
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
        "offline_efficiency": round(off_sps / loop, 3) if loop else None,
        "offline_vs_model_calls": round(off_sps / in_run_sps, 3) if in_run_sps else None,
        "vs_reference": round(off_sps / ref_sps, 2) if ref_sps else None,
        "server_vs_offline": round(best / off_sps, 3) if off_sps else None,
        "singlestream_ratio": round(ss_p90_ms / in_run_ms, 3) if ss_p90_ms and in_run_ms else None,
        "singlestream_vs_loop": round(ss_p90_ms / bare_ms, 3) if ss_p90_ms and bare_ms else None,
        "errors": [e for e in map(_error, runs.values()) if e],
    }


def _verdict(name: str, value: float | None, encoder: str) -> str:
    if value is None:
        return "n/a"
    if name == "vs_reference":
        return "met" if value >= VS_REFERENCE_TARGET.get(encoder, 3.0) else "MISSED"
    if name in LOWER_IS_BETTER:
        return "met" if value <= TARGETS[name] else "MISSED"
    return "met" if value >= TARGETS[name] else "MISSED"


def render(rows: list[dict[str, Any]], command: str, notes: Path | None = None) -> str:
    """The report's markdown; `notes`, when that file exists, is linked at the end (the hand-written
    reading of the figures lives there, so a rerun does not erase it)."""
    dev = device_info()
    lines = [
        "# SUT benchmark: ratios measured side by side in one run",
        "",
        f"Command: `{command}`  ",
        f"Machine: {dev['cpu_model']}, {dev['cpu_cores']} cores, {dev['memory_gib']} GiB; "
        f"measured {time.strftime('%Y-%m-%d %H:%M')}.  ",
        "Model kinds: `tiny` = the repository's tiny zoo model (4 layers x 128); `real` = "
        "multilingual-e5-small fine-tuned here (12 layers x 384, real pretrained weights); `random` = "
        "the real XLM-R shape with random weights (speed only, no accuracy meaning). Every kind but "
        "tiny tokenises with XLM-R's own tokenizer.",
        "",
        "| encoder (kind) | ratio | value | target | verdict | figures |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        tag = f"{r['encoder']} ({r['model_kind']})"
        figs = {
            "offline_efficiency": f"LoadGen {r['offline_sps']} / plain loop {r['plain_loop_sps']} "
            f"samples/s (the query's {r['offline_samples']} samples)",
            "offline_vs_model_calls": f"LoadGen {r['offline_sps']} / model calls alone "
            f"{r['in_run_predict_sps']} samples/s",
            "vs_reference": f"{r['offline_sps']} / reference {r['reference_sps']} samples/s",
            "server_vs_offline": "; ".join(
                f"{s['target_qps']} QPS {'VALID' if s['valid'] else 'INVALID'} p99 {s['p99_ms']:.1f} ms"
                for s in r["server_runs"]
            ),
            "singlestream_ratio": f"p90 {r['singlestream_p90_ms']} ms / model calls in the run "
            f"{r['in_run_predict_p90_ms']} ms ({r['singlestream_samples']} queries)",
            "singlestream_vs_loop": f"p90 {r['singlestream_p90_ms']} ms / back-to-back loop "
            f"{r['bare_single_p90_ms']} ms",
        }
        for name in RATIOS:
            target = VS_REFERENCE_TARGET.get(r["encoder"]) if name == "vs_reference" else TARGETS[name]
            op = "<=" if name in LOWER_IS_BETTER else ">="
            lines.append(f"| {tag} | {name} | {r[name]} | {op} {target} | "
                         f"{_verdict(name, r[name], r['encoder'])} | {figs[name]} |")  # fmt: skip
        if r["errors"]:
            lines.append(f"| {tag} | errors | {'; '.join(r['errors'])} | | | |")
    if notes is not None and notes.is_file():
        lines += ["", f"How to read these figures: [{notes.name}]({notes.name})."]
    return "\n".join(lines) + "\n"


SECTIONS = ("sut", "ray", "peak")


def _publish(text: str, record: Any, json_path: Path, out: str | Path | None) -> None:
    """Print a section's report, keep its record as JSON, and write the report to `out` ('' = no)."""
    print(text)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


def main(args: argparse.Namespace) -> int:
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown or not sections:
        print(f"error: --sections: {', '.join(unknown) or 'none'} not in {', '.join(SECTIONS)}",
              file=sys.stderr)  # fmt: skip
        return BAD_INPUT
    if "peak" in sections:
        from research.peak_bench import parse_forms

        try:
            parse_forms(args.peak_forms)  # checked before any section spends minutes
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return BAD_INPUT
    command = ("python -m research benchmark " + " ".join(sys.argv[2:])).strip()
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    errors = False
    if "sut" in sections:
        rows = [measure_encoder(e.strip(), args) for e in args.encoders.split(",") if e.strip()]
        out = Path(args.out) if args.out else None
        text = render(rows, command, out.with_name(f"{out.stem}_notes.md") if out else None)
        _publish(text, rows, Path(args.runs_dir) / "benchmark.json", out)
        errors |= any(r["errors"] for r in rows)
    if "ray" in sections:
        from research.ray_bench import measure_ray, render_ray

        row = measure_ray(args)
        _publish(render_ray(row, command), row, Path(args.runs_dir) / "benchmark_ray.json", args.ray_out)
        errors |= bool(row["errors"])
    if "peak" in sections:
        from research.peak_bench import measure_peak_section, render_peak

        rec = measure_peak_section(args)
        text = render_peak(rec, args, command)
        _publish(text, rec, Path(args.runs_dir) / "benchmark_peak.json", args.peak_out)
        errors |= bool(rec["errors"])
    return 1 if errors else 0
