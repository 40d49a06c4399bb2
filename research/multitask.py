"""`python -m research multitask`: how serving K tasks (`xnli@K`) from one process scales, per serving
form of models/multitask.py: resident parameter bytes and peak RSS (one child process per form and
K), the time to add one more task, Offline-style throughput against the single-task backends in
interleaved rounds, and optionally LoadGen runs. docs/multitask.md says how each is measured."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.measure import built, interleaved, round_ratios
from common.paths import REPO
from common.tables import markdown_table
from harness.cli import ints, names
from harness.config import RunConfig
from harness.launch import launch_with_conf
from models.backends import create_backend
from models.base import BackendOptions
from models.multitask import MultiTaskBackend, resolve_tasks
from models.registry import resolve
from sut.base import SUTOptions
from sut.batching import plan_batches
from tasks.mixed import MixedTask, parse_task_list
from tasks.qsl import QuerySampleLibrary
from zoo.recipe import tokenizer_for

FORMS = ("adapter", "full")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--models_dir", required=True, help="a zoo with adapter and full for xnli (its tokenizer too)")
    a("--shape", default=None, help="random weights of this encoder's shapes (e5-small, base)")
    a("--ks", default="1,2,4,8,16,32", help="numbers of tasks (memory and add-a-task)")
    a("--tput_ks", default=None, help="numbers of tasks for throughput (default: --ks)")
    a("--forms", default=",".join(FORMS), help="MODEL names: adapter (mixed batches), full")
    a("--max_full_k", type=int, default=32, help="largest K for the full form (K whole models)")
    a("--max_full_tput_k", type=int, default=None, help="largest K of the full form's throughput side")
    a("--samples", type=int, default=256, help="XNLI samples per pass")
    a("--rounds", type=int, default=5, help="interleaved rounds")
    a("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    a("--out", default=None, help="write the markdown report here (default: print only)")
    a("--loadgen_ks", default="", help="K values run through LoadGen (xnli alone is always run)")
    a("--loadgen_s", type=float, default=10.0, help="LoadGen runs: min duration in seconds")
    a("--server_qps", type=float, default=50.0, help="LoadGen Server runs: the common target_qps")
    a("--offline_qps", type=float, default=200.0, help="LoadGen Offline runs: target_qps (query size)")
    a("--runs_dir", default="build/multitask", help="where the LoadGen runs' folders go")
    a("--child", default=None, help=argparse.SUPPRESS)  # FORM:K, one memory measurement


def _multi(form: str, k: int, args: argparse.Namespace):
    encoder, weights = (args.shape, "random") if args.shape else ("tiny", None)
    return resolve_tasks(form, parse_task_list(f"xnli@{k}"), encoder, weights, args.models_dir)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One (form, K): build the backend in this fresh process; memory and the time to add a task
    (median of 3: a saved adapter and head, or one more whole model; random ones with --shape)."""
    form, k = args.child.split(":")
    before, t0 = _rss_mib(), time.perf_counter()
    backend = MultiTaskBackend(_multi(form, int(k), args), BackendOptions(threads=args.threads))
    built_s = round(time.perf_counter() - t0, 3)
    out = {"form": form, "k": int(k), "rss_before_mib": round(before, 1), "build_s": built_s}
    out |= backend.memory() | {"peak_rss_mib": round(_rss_mib(), 1)}
    served, adds = backend.multi.models[0], []
    with torch.inference_mode():
        for i in range(3):
            t0 = time.perf_counter()
            if form == "adapter":
                folder = None if args.shape else Path(served.checkpoint) / "adapters" / "xnli"
                backend.module.add_task(folder, f"added{i}", served.task_kind, served.num_labels)
            else:
                backend.module.add_task(served.torch_module(), served.task_kind)
            adds.append(time.perf_counter() - t0)
    return out | {"add_task_s": round(statistics.median(adds), 4)}


def memory_table(args: argparse.Namespace, forms: list[str], ks: list[int]) -> list[dict[str, Any]]:
    """One child process per (form, K): its `child` figures."""
    rows = []
    for form, k in ((f, k) for f in forms for k in ks if f == "adapter" or k <= args.max_full_k):
        cmd = [sys.executable, "-m", "research", "multitask", "--child", f"{form}:{k}"]
        cmd += ["--models_dir", args.models_dir, "--threads", str(args.threads)]
        cmd += ["--shape", args.shape] if args.shape else []
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"memory {form} K={k}: {rows[-1]}", flush=True)
    return rows


def throughput(args: argparse.Namespace, forms: list[str], ks: list[int]) -> dict[str, dict[str, Any]]:
    """samples/s of every (form, K) side and of the single-task baselines, per form group: the
    Offline SUT's default batch plan, every batch through every side back to back."""
    options = BackendOptions(threads=args.threads)
    tokenizer = tokenizer_for(resolve("adapter", "xnli", models_dir=args.models_dir))
    shape = (args.shape, "random") if args.shape else ("tiny", None)
    results: dict[str, dict[str, Any]] = {}
    for form in forms:
        singles = {f"{m} single-task": resolve(m, "xnli", *shape, args.models_dir) for m in FORMS}
        sides = {}
        for k in [k for k in ks if form == "adapter" or k <= (args.max_full_tput_k or args.max_full_k)]:
            fs = MixedTask.build(f"xnli@{k}", count=args.samples).features(tokenizer)
            qsl = QuerySampleLibrary(fs, pad_id=int(tokenizer.pad_token_id))
            qsl.load_query_samples(list(range(len(fs))))
            batches = [qsl.batch(p) for p in plan_batches(qsl.lengths, SUTOptions().limits)]
            backend = MultiTaskBackend(_multi(form, k, args), options)
            sides[f"{form} K={k}"] = (
                backend.predict,
                [(b.input_ids, b.attention_mask, b.tasks) for b in batches],
            )
        plain = [(b.input_ids, b.attention_mask) for b in batches]
        for name, served in singles.items():
            sides[name] = (create_backend("pytorch", served, options).predict, plain)
        results[form] = interleaved(sides, args.rounds)
        for name, r in results[form].items():
            print(f"throughput [{form} group] {name}: {r['samples_per_s']:.1f} samples/s", flush=True)
    return results


def loadgen_table(args: argparse.Namespace, forms: list[str], ks: list[int]) -> list[dict[str, Any]]:
    """Offline samples/s, Server p99 at --server_qps and SingleStream p90 through LoadGen (one child
    run each, `harness run --task xnli@K`, the first --samples XNLI samples), xnli alone as K=1."""
    rows = []
    for scenario in ("Offline", "Server", "SingleStream"):
        for form, task in ((f, t) for f in forms for t in ["xnli", *(f"xnli@{k}" for k in ks)]):
            cfg = RunConfig.layered(
                model=form,
                task=task,
                scenario=scenario,
                models_dir=args.models_dir,
                count=args.samples,
                duration_s=args.loadgen_s,
            )
            lines = [
                f"{cfg.loadgen_model_name}.Server.target_qps = {args.server_qps}",
                f"{cfg.loadgen_model_name}.Offline.target_qps = {args.offline_qps}",
            ]
            name = f"{scenario}-{form}-{task.replace('@', 'x')}"
            done = launch_with_conf(built(cfg), lines, name, Path(args.runs_dir))
            res = done.results
            rows.append({"scenario": scenario, "form": form, "task": task, "exit": done.rc})
            rows[-1]["validity"] = res.validity if res else "-"
            rows[-1]["samples_per_s"] = res.samples_per_second if res else None
            for p in ("p90", "p99"):
                rows[-1][f"{p}_ms"] = res.latency_ms(p) if res else None
            print(f"loadgen {rows[-1]}", flush=True)
    return rows


def report(args, memory: list[dict[str, Any]], tput: dict[str, Any], loadgen: list, command: str) -> str:
    """The markdown of a run: memory per (form, K), throughput ratios, the LoadGen runs."""
    kind = f"random weights, {args.shape} shapes" if args.shape else f"tiny zoo {args.models_dir}"
    full1 = next((m["parameter_bytes"] for m in memory if m["form"] == "full" and m["k"] == 1), None)
    lines = [f"Model kind: {kind}. Command: `{command}`.", ""]
    header = ["form", "K", "parameter MB", "x one full model", "peak RSS MiB (before build)"]
    table = []
    for m in memory:
        size = (
            f"{m['parameter_bytes'] / 1e6:.2f}",
            f"{m['parameter_bytes'] / full1:.3f}" if full1 else "-",
        )
        rss = f"{m['peak_rss_mib']:.0f} ({m['rss_before_mib']:.0f})"
        add = f"{m['add_task_s']:.4f}" if "add_task_s" in m else "-"  # markdown_table keeps 1 digit
        table.append([m["form"], m["k"], *size, rss, f"{m['build_s']:.2f}", add])
    lines += markdown_table([*header, "build s", "add one task s"], table)
    lines += [
        "",
        "Offline-style throughput, interleaved rounds (median samples/s; ratio to the single-task "
        "backend of the same model in the same rounds: median [min, max] over "
        f"{args.rounds} rounds):",
        "",
    ]
    rows = []
    for form, res in tput.items():
        for name, r in res.items():
            spans = (
                round_ratios(res, name, base) for base in ("adapter single-task", "full single-task")
            )
            cells = [f"{statistics.median(x):.3f} [{min(x):.3f}, {max(x):.3f}]" for x in spans]
            k = name.split("K=")[1] if "K=" in name else "1 (plain)"
            rows.append(
                [f"{name.split(' K=')[0]} ({form} group)", k, f"{r['samples_per_s']:.1f}", *cells]
            )
    lines += markdown_table(
        ["form", "K", "samples/s", "/ adapter single-task", "/ full single-task"], rows
    )
    if loadgen:
        lines += [
            "",
            f"Through LoadGen (`harness run --task xnli@K`, one run each, min duration "
            f"{args.loadgen_s:g} s, the first {args.samples} XNLI samples; Server at target_qps "
            f"{args.server_qps:g} for every side; task `xnli` = the single-task run):",
            "",
        ]
        keys = ("scenario", "form", "task", "validity", "samples_per_s", "p90_ms", "p99_ms")
        lines += markdown_table(
            ["scenario", "form", "task", "validity", "samples/s", "p90 ms", "p99 ms"],
            ([r[k] for k in keys] for r in loadgen),
            digits=2,
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    ks, forms = ints(args.ks), names(args.forms)
    command = "python -m research multitask " + " ".join(sys.argv[2:])
    memory = memory_table(args, forms, ks)
    tput = throughput(args, forms, ints(args.tput_ks) or ks)
    loadgen = loadgen_table(args, forms, ints(args.loadgen_ks)) if args.loadgen_ks else []
    text = report(args, memory, tput, loadgen, command)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
