"""`python -m bench multitask`: how serving K tasks (`xnli@K`) from one process scales, per serving
form of models/multitask.py (`FORMS`: adapter, full, lora-merged, lora-unmerged): resident parameter
bytes and peak RSS (one child process per form and K), the time to add one more task, Offline-style
throughput against the single-task backends in interleaved rounds, and optionally LoadGen runs.
docs/multitask.md says how each is measured."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.measure import built, interleaved, round_ratios
from common.exit_codes import BAD_INPUT
from common.names import lookup
from common.paths import REPO
from common.tables import markdown_table
from harness.cli import ints, names
from harness.config import RunConfig
from harness.launch import launch_with_conf
from models.backends import create_backend
from models.base import BackendOptions
from models.multitask import (
    MIXED_BATCH_FORMS,
    MixedAdapterForm,
    MixedLoRAForm,
    MultiTaskBackend,
    one_more_lora_task,
    resolve_tasks,
    serving_form,
)
from models.registry import resolve
from sut.base import SUTOptions
from sut.batching import plan_batches
from tasks.mixed import MixedTask, is_mixed, parse_task_list
from tasks.qsl import QuerySampleLibrary


@dataclass(frozen=True)
class Form:
    """A serving form as the command line names it: MODEL= and --lora_form (harness run's flags)."""

    model: str
    lora_form: str = "merged"

    @property
    def whole_models(self) -> bool:
        """One whole model per task (a per-task form): K of them are bounded by --max_full_k."""
        return serving_form(self.model, self.lora_form) not in MIXED_BATCH_FORMS


FORMS = {
    "adapter": Form("adapter"),  # one backbone, per-task adapters and heads, mixed batches
    "full": Form("full"),  # one whole model per task
    "lora-merged": Form("lora-squad"),  # one merged LoRA copy per task
    "lora-unmerged": Form("lora-squad", "unmerged"),  # one backbone, per-task updates, mixed batches
}
DEFAULT_FORMS = ("adapter", "full")
# the throughput groups' single-task sides (`<name> single-task`): name -> MODEL served alone; adapter
# and full always, lora (merged LoRA alone: full's graph) when a form serves lora-squad
BASELINES = {"adapter": "adapter", "full": "full", "lora": "lora-squad"}
ALWAYS = ("adapter", "full")


def baselines(forms: list[str]) -> dict[str, str]:
    """The single-task sides of every throughput group for these forms: name -> MODEL."""
    served = {FORMS[f].model for f in forms}
    return {b: m for b, m in BASELINES.items() if b in ALWAYS or m in served}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--models_dir",
        required=True,
        help="a zoo with xnli's checkpoint of every form's MODEL (adapter, full, lora-squad; with "
        "--shape only its tokenizer is used)",
    )
    a("--shape", default=None, help="random weights of this encoder's shapes (e5-small, base)")
    a("--ks", default="1,2,4,8,16,32", help="numbers of tasks (memory and add-a-task)")
    a("--tput_ks", default=None, help="numbers of tasks for throughput (default: --ks)")
    a(
        "--forms",
        default=",".join(DEFAULT_FORMS),
        help="serving forms: adapter, lora-unmerged (mixed batches), full, lora-merged (one whole "
        "model per task)",
    )
    a("--max_full_k", type=int, default=32, help="largest K for full and lora-merged (K whole models)")
    a("--max_full_tput_k", type=int, default=None, help="the same for their throughput sides")
    a("--samples", type=int, default=256, help="XNLI samples per pass")
    a("--rounds", type=int, default=5, help="interleaved rounds")
    a("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    a("--out", default=None, help="write the markdown report here (default: print only)")
    a("--loadgen_ks", default="", help="K values run through LoadGen (xnli alone is always run)")
    a("--loadgen_s", type=float, default=10.0, help="LoadGen runs: min duration in seconds")
    a("--loadgen_rounds", type=int, default=1, help="LoadGen runs: rounds (every run once each)")
    a("--scenarios", default="Offline,Server,SingleStream", help="LoadGen runs: the scenarios")
    a("--server_qps", type=float, default=50.0, help="LoadGen Server runs: the common target_qps")
    a("--offline_qps", type=float, default=200.0, help="LoadGen Offline runs: target_qps (query size)")
    a("--runs_dir", default="build/multitask", help="where the LoadGen runs' folders go")
    a("--child", default=None, help=argparse.SUPPRESS)  # FORM:K, one memory measurement


def _shape(args: argparse.Namespace) -> tuple[str, str | None]:
    """(encoder, weights): random weights at --shape, else the tiny zoo's."""
    return (args.shape, "random") if args.shape else ("tiny", None)


def _multi(form: str, k: int, args: argparse.Namespace):
    f = FORMS[form]
    task_list = parse_task_list(f"xnli@{k}")
    return resolve_tasks(f.model, task_list, *_shape(args), args.models_dir, lora_form=f.lora_form)


def _ks(form: str, ks: list[int], largest: int | None) -> list[int]:
    """The Ks a form is measured at: every K for the mixed-batch forms, up to `largest` for K whole
    models."""
    return [k for k in ks if not FORMS[form].whole_models or largest is None or k <= largest]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_one_task(module: Any, served: Any, i: int) -> None:
    """Serve one more task of `served`'s (the real task behind xnli@K) in the backend's module, as a
    running backend would: the adapter form loads its saved adapter and head (random weights: a new
    seq_bn adapter and head), unmerged LoRA reads its update back from its merged checkpoint against
    the backbone and takes its head (random weights: a random update and a copy of a head), the
    per-task forms build one more whole model (loaded, or randomly initialised)."""
    if isinstance(module, MixedAdapterForm):
        folder = None if served.checkpoint is None else Path(served.checkpoint) / "adapters" / "xnli"
        module.add_task(folder, f"added{i}", served.task_kind, served.num_labels)
    elif isinstance(module, MixedLoRAForm):
        module.add_task(*one_more_lora_task(module, served, seed=1000 + i), served.task_kind)
    else:
        module.add_task(served.torch_module(), served.task_kind)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One (form, K): build the backend in this fresh process; memory and the time to add a task
    (median of 3, `add_one_task`)."""
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
            add_one_task(backend.module, served, i)
            adds.append(time.perf_counter() - t0)
    return out | {"add_task_s": round(statistics.median(adds), 4)}


def memory_table(args: argparse.Namespace, forms: list[str], ks: list[int]) -> list[dict[str, Any]]:
    """One child process per (form, K): its `child` figures."""
    rows = []
    for form, k in ((f, k) for f in forms for k in _ks(f, ks, args.max_full_k)):
        cmd = [sys.executable, "-m", "bench", "multitask", "--child", f"{form}:{k}"]
        cmd += ["--models_dir", args.models_dir, "--threads", str(args.threads)]
        cmd += ["--shape", args.shape] if args.shape else []
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"memory {form} K={k}: {rows[-1]}", flush=True)
    return rows


def throughput(args: argparse.Namespace, forms: list[str], ks: list[int]) -> dict[str, dict[str, Any]]:
    """samples/s of every (form, K) side and of the single-task baselines, all in one interleaved
    group (a ratio between any two sides pairs rates of the same round): the Offline SUT's default
    batch plan, every batch through every side back to back. Token ids: the served tokenizer (with
    --shape, XLM-R's for the real shapes, as a run tokenises)."""
    options = BackendOptions(threads=args.threads)
    tokenizer = _multi(forms[0], 1, args).models[0].tokenizer()
    singles = {
        f"{name} single-task": resolve(model, "xnli", *_shape(args), args.models_dir)
        for name, model in baselines(forms).items()
    }
    measured = {f: _ks(f, ks, args.max_full_tput_k or args.max_full_k) for f in forms}
    batches = {}  # K -> the batch plan of xnli@K: the same samples and rows for every K and form
    for k in sorted({k for f_ks in measured.values() for k in f_ks}):
        fs = MixedTask.build(f"xnli@{k}", count=args.samples).features(tokenizer)
        qsl = QuerySampleLibrary(fs, pad_id=int(tokenizer.pad_token_id))
        qsl.load_query_samples(list(range(len(fs))))
        batches[k] = [qsl.batch(p) for p in plan_batches(qsl.lengths, SUTOptions().limits)]
    sides: dict[str, tuple] = {}
    for form, f_ks in measured.items():
        for k in f_ks:
            backend = MultiTaskBackend(_multi(form, k, args), options)
            args_k = [(b.input_ids, b.attention_mask, b.tasks) for b in batches[k]]
            sides[f"{form} K={k}"] = (backend.predict, args_k)
    # xnli@K only reassigns the samples' tasks: any K's batches, without the tasks, are the plain ones
    plain = [(b.input_ids, b.attention_mask) for b in next(iter(batches.values()))]
    for name, served in singles.items():
        sides[name] = (create_backend("pytorch", served, options).predict, plain)
    results = interleaved(sides, args.rounds)
    for name, r in results.items():
        print(f"throughput {name}: {r['samples_per_s']:.1f} samples/s", flush=True)
    return results


def loadgen_table(args: argparse.Namespace, forms: list[str], ks: list[int]) -> list[dict[str, Any]]:
    """Offline samples/s, Server p99 at --server_qps and SingleStream p90 through LoadGen (one child
    run each, `harness run --task xnli@K --model MODEL [--lora_form F]`, the first --samples XNLI
    samples; random weights at --shape), xnli alone as K=1 (one task is served merged), in
    --loadgen_rounds rounds: every run once per round, the order rotating from round to round."""
    encoder, weights = _shape(args)
    runs = [
        (scenario, form, task)
        for scenario in names(args.scenarios)
        for form in forms
        for task in ["xnli", *(f"xnli@{k}" for k in ks)]
    ]
    rows = []
    for r in range(args.loadgen_rounds):
        shift = r % len(runs)
        for scenario, form, task in runs[shift:] + runs[:shift]:
            cfg = RunConfig.layered(
                model=FORMS[form].model,
                lora_form=FORMS[form].lora_form if is_mixed(task) else None,
                task=task,
                scenario=scenario,
                encoder=encoder,
                weights=weights,
                models_dir=args.models_dir,
                count=args.samples,
                duration_s=args.loadgen_s,
            )
            lines = [
                f"{cfg.loadgen_model_name}.Server.target_qps = {args.server_qps}",
                f"{cfg.loadgen_model_name}.Offline.target_qps = {args.offline_qps}",
            ]
            name = f"{scenario}-{form}-{task.replace('@', 'x')}" + (f"-r{r}" if r else "")
            done = launch_with_conf(built(cfg), lines, name, Path(args.runs_dir))
            res = done.results
            row = {"scenario": scenario, "form": form, "task": task, "round": r, "exit": done.rc}
            row["validity"] = res.validity if res else "-"
            row["samples_per_s"] = res.samples_per_second if res else None
            for p in ("p90", "p99"):
                row[f"{p}_ms"] = res.latency_ms(p) if res else None
            rows.append(row)
            print(f"loadgen {row}", flush=True)
    return sorted(rows, key=lambda x: (runs.index((x["scenario"], x["form"], x["task"])), x["round"]))


def per_added_task(memory: list[dict[str, Any]], row: dict[str, Any]) -> str:
    """Parameter bytes a form's K-task row holds beyond its K=1 row, per task added ("-" at K=1 or
    without a K=1 row): one adapter and head, one LoRA update and head, one whole model."""
    one = next((m["parameter_bytes"] for m in memory if m["form"] == row["form"] and m["k"] == 1), None)
    if one is None or row["k"] == 1:
        return "-"
    grown, added = row["parameter_bytes"] - one, row["k"] - 1
    return str(grown // added) if grown % added == 0 else f"{grown / added:.1f}"


def report(args, memory: list[dict[str, Any]], tput: dict[str, Any], loadgen: list, command: str) -> str:
    """The markdown of a run: memory per (form, K), throughput ratios, the LoadGen runs."""
    kind = f"random weights, {args.shape} shapes" if args.shape else f"tiny zoo {args.models_dir}"
    full1 = next((m["parameter_bytes"] for m in memory if m["form"] == "full" and m["k"] == 1), None)
    lines = [f"Model kind: {kind}. Command: `{command}`.", ""]
    header = ["form", "K", "parameter MB", "x one full model", "bytes per added task"]
    table = []
    for m in memory:
        size = (
            f"{m['parameter_bytes'] / 1e6:.2f}",
            f"{m['parameter_bytes'] / full1:.3f}" if full1 else "-",
            per_added_task(memory, m),
        )
        rss = f"{m['peak_rss_mib']:.0f} ({m['rss_before_mib']:.0f})"
        add = f"{m['add_task_s']:.4f}" if "add_task_s" in m else "-"  # markdown_table keeps 1 digit
        table.append([m["form"], m["k"], *size, rss, f"{m['build_s']:.2f}", add])
    lines += markdown_table([*header, "peak RSS MiB (before build)", "build s", "add one task s"], table)
    lines += [
        "",
        "Offline-style throughput, every side in the same interleaved rounds (median samples/s; "
        "ratio to each single-task backend in the same rounds: median [min, max] over "
        f"{args.rounds} rounds):",
        "",
    ]
    bases = [f"{b} single-task" for b in baselines(names(args.forms))]
    rows = []
    for name, r in tput.items():
        cells = [span(round_ratios(tput, name, base)) for base in bases]
        k = name.split("K=")[1] if "K=" in name else "1 (plain)"
        rows.append([name.split(" K=")[0], k, f"{r['samples_per_s']:.1f}", *cells])
    lines += markdown_table(["form", "K", "samples/s", *(f"/ {b}" for b in bases)], rows)
    if loadgen:
        n = args.loadgen_rounds
        lines += [
            "",
            f"Through LoadGen (`harness run --task xnli@K`, each run once per round, {n} round(s), "
            f"median [min, max] over rounds; min duration {args.loadgen_s:g} s, the first "
            f"{args.samples} XNLI samples; Server at target_qps {args.server_qps:g} for every side; "
            "task `xnli` = the single-task run):",
            "",
        ]
        table = []
        for key in dict.fromkeys((r["scenario"], r["form"], r["task"]) for r in loadgen):
            runs = [r for r in loadgen if (r["scenario"], r["form"], r["task"]) == key]
            valid = sum(r["validity"] == "VALID" for r in runs)
            figures = [span([r[f] for r in runs if r[f] is not None], 2) for f in LOADGEN_FIGURES]
            table.append([*key, f"{valid}/{len(runs)}", *figures])
        lines += markdown_table(
            ["scenario", "form", "task", "VALID", "samples/s", "p90 ms", "p99 ms"], table
        )
    lines += overtaking(memory, tput, loadgen)
    return "\n".join(lines) + "\n"


LOADGEN_FIGURES = ("samples_per_s", "p90_ms", "p99_ms")


def span(values: list[float], digits: int = 3) -> str:
    """median [min, max] of `values` ("-" for none; one value alone)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def verdict(ratios: list[float], form: str) -> str:
    """Who is ahead on per-round ratios form/full (> 1: the form): the whole range must agree."""
    if not ratios:
        return "-"
    if min(ratios) > 1:
        return f"{form} ahead"
    return "full ahead" if max(ratios) < 1 else "not separated"


def server_p99_ratios(loadgen: list[dict[str, Any]], form: str, task: str) -> list[float]:
    """full's Server p99 / the form's, round by round (> 1: the form's p99 is lower); a round counts
    when both runs measured a p99 (a development run too short for LoadGen's early-stopping
    estimate is INVALID yet measured; the table says how many runs were VALID)."""

    def p99s(f: str) -> dict[int, float]:
        return {
            r["round"]: r["p99_ms"]
            for r in loadgen
            if (r["scenario"], r["form"], r["task"]) == ("Server", f, task) and r["p99_ms"] is not None
        }

    mine, full = p99s(form), p99s("full")
    return [full[r] / mine[r] for r in sorted(mine.keys() & full.keys())]


def overtaking(memory: list[dict[str, Any]], tput: dict, loadgen: list[dict[str, Any]]) -> list[str]:
    """The table of where each one-backbone form overtakes full fine-tuning with K tasks: samples/s
    per GB of resident parameters (round ratios x the exact bytes) and Server p99 at the common
    load (`server_p99_ratios`), each with its range over rounds and who is ahead. A K is compared
    where both forms have a memory row (full fine-tuning's stop at --max_full_k)."""
    nbytes = {(m["form"], m["k"]): m["parameter_bytes"] for m in memory}
    rows = []
    for form in dict.fromkeys(m["form"] for m in memory):
        if FORMS[form].whole_models:
            continue
        ks = sorted({k for f, k in nbytes if f == form and (("full", k) in nbytes)})
        for k in ks:
            side, full = f"{form} K={k}", f"full K={k}"
            ratios = round_ratios(tput, side, full) if side in tput and full in tput else []
            per_gb = [x * nbytes["full", k] / nbytes[form, k] for x in ratios]
            server = server_p99_ratios(loadgen, form, "xnli" if k == 1 else f"xnli@{k}")
            if not ratios and not server:
                continue  # memory only at this K: nothing to set against full fine-tuning
            cells = [span(ratios), span(per_gb), verdict(per_gb, form), span(server)]
            rows.append([form, k, *cells, verdict(server, form)])
    if not rows:
        return []
    head = ["form", "K", "samples/s / full's", "per GB / full's", "per GB", "full p99 / its p99"]
    return [
        "",
        "Against full fine-tuning with the same K (median [min, max] of per-round ratios; "
        "per GB = samples/s per byte of resident parameters; a verdict needs the whole range on "
        "one side of 1):",
        "",
        *markdown_table([*head, "Server p99"], rows),
    ]


def main(args: argparse.Namespace) -> int:
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    ks, forms = ints(args.ks), names(args.forms)
    try:
        for form in forms:
            lookup("form", form, FORMS)
    except ValueError as e:
        print(f"error: --forms: {e}", file=sys.stderr)
        return BAD_INPUT
    command = "python -m bench multitask " + " ".join(sys.argv[2:])
    memory = memory_table(args, forms, ks)
    tput = throughput(args, forms, ints(args.tput_ks) or ks)
    loadgen = loadgen_table(args, forms, ints(args.loadgen_ks)) if args.loadgen_ks else []
    text = report(args, memory, tput, loadgen, command)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
