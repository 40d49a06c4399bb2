"""`python -m research multitask`: how serving K tasks from one process scales, per serving form.

For K in --ks, XNLI's samples spread round-robin over K synthetic tasks (`xnli@K`, tasks/mixed.py:
randomly initialised task modules of the real shapes), served by each form of models/multitask.py:
  adapter  one backbone, K stacked adapters and heads, mixed batches (every batch holds rows of up
           to K tasks, each through its own adapter);
  full     K whole models (what full fine-tuning needs; merged LoRA is the same graph and memory),
           every batch split into one sub-batch per task present.
Measured, per form and K:
  * resident parameter bytes (each storage once) and peak RSS: one child process per (form, K),
    which builds the backend and nothing else (`--child`); RSS before building is printed too;
  * the time to add one more task to the running backend (median of 3 additions): the adapter form
    loads a saved adapter and head and appends them to every stack, the full form loads one more
    whole model (from the zoo; with --shape both initialise the new task randomly instead);
  * Offline-style throughput: the same length-sorted token-budget batches (sut/batching.py, the
    Offline SUT's plan) through every side, in interleaved rounds (research/speed.py `interleaved`:
    every batch runs on every side back to back, the order rotating), against the single-task
    backend of the same model (the ordinary `--task xnli` run's) in the same rounds.
Sides are grouped per form (each group with both single-task baselines) to bound resident memory.
Model kinds: the zoo in --models_dir (tiny), or --shape ENCODER: random weights of that encoder's
shapes, fed the zoo tokenizer's token ids (lengths of the tiny tokenizer, not XLM-R's).
"""

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

from common.paths import REPO
from harness.config import RunConfig
from harness.launch import launch_with_conf
from models.backends import create_backend
from models.base import BackendOptions
from models.multitask import MultiTaskBackend, resolve_tasks
from models.registry import resolve
from research.measure import built
from research.speed import interleaved
from research.tables import markdown_table
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
    """One (form, K): build the backend in this fresh process; memory and the time to add a task."""
    form, k = args.child.split(":")
    before = _rss_mib()
    t0 = time.perf_counter()
    backend = MultiTaskBackend(_multi(form, int(k), args), BackendOptions(threads=args.threads))
    built_s = time.perf_counter() - t0
    out = {
        "form": form,
        "k": int(k),
        "rss_before_mib": round(before, 1),
        "build_s": round(built_s, 3),
        **backend.memory(),
        "peak_rss_mib": round(_rss_mib(), 1),
    }
    served = backend.multi.models[0]
    adds = []
    with torch.inference_mode():
        for i in range(3):
            t0 = time.perf_counter()
            if form == "adapter":
                folder = None if args.shape else Path(served.checkpoint) / "adapters" / "xnli"
                backend.module.add_task(folder, f"added{i}", served.task_kind, served.num_labels)
            else:
                backend.module.add_task(served.torch_module(), served.task_kind)
            adds.append(time.perf_counter() - t0)
    out["add_task_s"] = round(statistics.median(adds), 4)
    return out


def memory_table(args: argparse.Namespace, forms: list[str], ks: list[int]) -> list[dict[str, Any]]:
    rows = []
    for form in forms:
        for k in ks:
            if form != "adapter" and k > args.max_full_k:
                continue
            cmd = [
                sys.executable,
                "-m",
                "research",
                "multitask",
                "--child",
                f"{form}:{k}",
                "--models_dir",
                args.models_dir,
                "--threads",
                str(args.threads),
                *(["--shape", args.shape] if args.shape else []),
            ]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"memory {form} K={k}: {rows[-1]}", flush=True)
    return rows


def throughput(args: argparse.Namespace, forms: list[str], ks: list[int]) -> dict[str, dict[str, Any]]:
    """samples/s of every (form, K) side and of the single-task baselines, per form group."""
    options = BackendOptions(threads=args.threads)
    tokenizer = tokenizer_for(resolve("adapter", "xnli", models_dir=args.models_dir))
    results: dict[str, dict[str, Any]] = {}
    for form in forms:
        singles = {}
        for model in FORMS:
            served = (
                resolve(model, "xnli", args.shape, "random", args.models_dir)
                if args.shape
                else resolve(model, "xnli", models_dir=args.models_dir)
            )
            singles[f"{model} single-task"] = create_backend("pytorch", served, options)
        sides = {}
        top = args.max_full_tput_k or args.max_full_k
        for k in ks:
            if form != "adapter" and k > top:
                continue
            fs = MixedTask.build(f"xnli@{k}", count=args.samples).features(tokenizer)
            qsl = QuerySampleLibrary(fs, pad_id=int(tokenizer.pad_token_id))
            qsl.load_query_samples(list(range(len(fs))))
            plan = plan_batches(qsl.lengths, SUTOptions().limits)  # a run's default batching
            batches = [qsl.batch(p) for p in plan]
            backend = MultiTaskBackend(_multi(form, k, args), options)
            sides[f"{form} K={k}"] = (
                lambda ids, rest, b=backend: b.predict(ids, *rest),
                [(b.input_ids, (b.attention_mask, b.tasks)) for b in batches],
            )
        plain = [(b.input_ids, b.attention_mask) for b in batches]
        for name, backend in singles.items():
            sides[name] = (backend.predict, plain)
        res = interleaved(sides, args.rounds)
        results[form] = res
        for name, r in res.items():
            print(f"throughput [{form} group] {name}: {r['samples_per_s']:.1f} samples/s", flush=True)
    return results


def loadgen_table(args: argparse.Namespace, forms: list[str], ks: list[int]) -> list[dict[str, Any]]:
    """Offline samples/s, Server p99 at --server_qps and SingleStream p90 through LoadGen (one child
    run each, `harness run --task xnli@K`, the first --samples XNLI samples), xnli alone as K=1."""
    rows = []
    for scenario in ("Offline", "Server", "SingleStream"):
        for form in forms:
            for task in ["xnli", *(f"xnli@{k}" for k in ks)]:
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
                row = {
                    "scenario": scenario,
                    "form": form,
                    "task": task,
                    "exit": done.rc,
                    "validity": res.validity if res else "-",
                    "samples_per_s": res.samples_per_second if res else None,
                    "p99_ms": res.latency_ms("p99") if res else None,
                    "p90_ms": res.latency_ms("p90") if res else None,
                }
                rows.append(row)
                print(f"loadgen {row}", flush=True)
    return rows


def _ratio(res: dict[str, Any], new: str, old: str) -> tuple[float, float, float]:
    """Median, min and max over rounds of new/old samples/s in the same round."""
    r = [a / b for a, b in zip(res[new]["rounds"], res[old]["rounds"], strict=True)]
    return statistics.median(r), min(r), max(r)


def report(args, memory: list[dict[str, Any]], tput: dict[str, Any], loadgen: list, command: str) -> str:
    """The markdown of a run: memory per (form, K), throughput ratios, the LoadGen runs."""
    kind = f"random weights, {args.shape} shapes" if args.shape else f"tiny zoo {args.models_dir}"
    full1 = next((m for m in memory if m["form"] == "full" and m["k"] == 1), None)
    lines = [f"Model kind: {kind}. Command: `{command}`.", ""]
    lines += markdown_table(
        ["form", "K", "parameter MB", "x one full model", "peak RSS MiB (before build)", "build s"]
        + ["add one task s"],
        (
            [m["form"], m["k"], f"{m['parameter_bytes'] / 1e6:.2f}"]
            + [f"{m['parameter_bytes'] / full1['parameter_bytes']:.3f}" if full1 else "-"]
            + [f"{m['peak_rss_mib']:.0f} ({m['rss_before_mib']:.0f})", f"{m['build_s']:.2f}"]
            + [m.get("add_task_s", "-")]
            for m in memory
        ),
    )
    lines += [
        "",
        "Offline-style throughput, interleaved rounds (median samples/s; ratio to the "
        "single-task backend of the same model in the same rounds: median [min, max] over "
        f"{args.rounds} rounds):",
        "",
    ]
    rows = []
    for form, res in tput.items():
        for name, r in res.items():
            cells = [
                "{:.3f} [{:.3f}, {:.3f}]".format(*_ratio(res, name, base))
                for base in ("adapter single-task", "full single-task")
            ]
            k = name.split("K=")[1] if "K=" in name else "1 (plain)"
            rows.append(
                [f"{name.split(' K=')[0]} ({form} group)", k, f"{r['samples_per_s']:.1f}", *cells]
            )
    header = ["form", "K", "samples/s", "/ adapter single-task", "/ full single-task"]
    lines += markdown_table(header, rows)
    if loadgen:
        lines += [
            "",
            f"Through LoadGen (`harness run --task xnli@K`, one run each, min duration "
            f"{args.loadgen_s:g} s, the first {args.samples} XNLI samples; Server at "
            f"target_qps {args.server_qps:g} for every side; task `xnli` = the single-task run):",
            "",
        ]
        lines += markdown_table(
            ["scenario", "form", "task", "validity", "samples/s", "p90 ms", "p99 ms"],
            (
                [r["scenario"], r["form"], r["task"], r["validity"]]
                + [r[k] for k in ("samples_per_s", "p90_ms", "p99_ms")]
                for r in loadgen
            ),
            digits=2,
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    ks = [int(k) for k in args.ks.split(",") if k]
    forms = [f for f in args.forms.split(",") if f]
    command = "python -m research multitask " + " ".join(sys.argv[2:])
    memory = memory_table(args, forms, ks)
    tput_ks = [int(k) for k in args.tput_ks.split(",") if k] if args.tput_ks else ks
    tput = throughput(args, forms, tput_ks)
    lg_ks = [int(k) for k in args.loadgen_ks.split(",") if k]
    loadgen = loadgen_table(args, forms, lg_ks) if lg_ks else []
    text = report(args, memory, tput, loadgen, command)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
