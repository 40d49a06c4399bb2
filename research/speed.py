"""`python -m research speed` (or `study --speed`): in-process micro-benchmarks, before/after side by
side, interleaved in one process over the same samples, all weights random (speed only). Parts a-g,
each a function below whose docstring's first line is its title in speed.md; docs/benchmark.md says
what each measures. Writes `<out>/speed.json` and `<out>/speed.md` and prints the ratios."""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from common.names import lookup
from common.paths import REPO
from harness.info import device_info, git_state, package_versions
from models.backends import create_backend
from models.base import Backend, BackendOptions
from models.fusion import fold_fusion_layers
from models.registry import MODELS, resolve
from research.tables import markdown_table
from sut.batching import BatchLimits, plan_batches
from tasks.registry import get_task

Predict = Callable[[np.ndarray, np.ndarray], Any]


def xnli_lengths(n: int, models_dir: str | None, seed: int = 0) -> tuple[np.ndarray, str]:
    """n XNLI token lengths (seeded sample over all languages) and where they came from."""
    rng = np.random.default_rng(seed)
    try:
        tok = resolve("full", "xnli", "tiny", weights="random", models_dir=models_dir).tokenizer()
        lengths = get_task("xnli").features(tok, progress=False).lengths
        return rng.choice(lengths, size=n, replace=len(lengths) < n), "XNLI dev, tiny tokenizer"
    except (FileNotFoundError, OSError, ValueError) as exc:
        synthetic = np.clip(rng.lognormal(np.log(55), 0.35, size=n), 8, 128).astype(np.int64)
        return synthetic, f"SYNTHETIC lognormal (median 55, no tokenizer: {type(exc).__name__})"


def make_batches(lengths: np.ndarray, sorted_budget: bool, vocab: int, seed: int = 0) -> list[tuple]:
    """Padded (input_ids, attention_mask) batches. sorted_budget: sut/batching.plan_batches with
    BatchLimits(32, 4096); else fixed 32-sample batches in order, padded to 128 (naive reference)."""
    rng = np.random.default_rng(seed)
    if sorted_budget:
        groups = plan_batches(lengths, BatchLimits(max_batch=32, token_budget=4096))
    else:
        groups = [np.arange(i, min(i + 32, len(lengths))) for i in range(0, len(lengths), 32)]
    batches = []
    for g in groups:
        width = int(lengths[g].max()) if sorted_budget else 128
        ids = np.ones((len(g), width), dtype=np.int64)  # pad id 1
        mask = np.zeros_like(ids)
        for row, k in enumerate(g):
            n = int(lengths[k])
            ids[row, :n] = rng.integers(5, vocab, size=n)
            ids[row, 0], ids[row, n - 1] = 0, 2  # <s> ... </s>
            mask[row, :n] = 1
        batches.append((ids, mask))
    return batches


def interleaved(
    sides: dict[str, tuple[Predict, list[tuple]]],
    repeats: int,
    per_batch: bool = True,
    settle_s: float = 0.02,
) -> dict[str, dict[str, Any]]:
    """Samples/s of each side, paired within rounds. per_batch: in every round each batch runs on
    every side back to back (the side order rotating from batch to batch and round to round), so a
    drift in machine speed hits all sides alike; else each side runs its whole pass in turn (the
    order rotating per round), for sides on different runtimes, which slow each other down when
    they alternate call by call (PyTorch at 0.7x its speed between ONNX Runtime calls:
    docs/study.md).
    Each timed unit is preceded by an untimed `settle_s` sleep, so the previous side's thread pool
    has stopped spin-waiting (a precaution: it did not cure the mixed-runtime slowdown). One warm-up
    call per side first. Per side: the median over rounds, the rounds' spread, and the per-round
    rates (`rounds`) that `_ratio` pairs."""
    names = list(sides)
    for predict, batches in sides.values():
        predict(*batches[0])
    rounds: dict[str, list[float]] = {name: [] for name in names}
    units = max(len(batches) for _, batches in sides.values()) if per_batch else 1
    for r in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for i in range(units):
            k = (r + i) % len(names)
            for name in names[k:] + names[:k]:
                predict, batches = sides[name]
                todo = batches[i : i + 1] if per_batch else batches
                if todo:
                    time.sleep(settle_s)
                    t0 = time.perf_counter()
                    for ids, mask in todo:
                        predict(ids, mask)
                    spent[name] += time.perf_counter() - t0
        for name, (_, batches) in sides.items():
            rounds[name].append(sum(len(b[0]) for b in batches) / spent[name])
    return {
        n: {"samples_per_s": statistics.median(r), "spread": max(r) / min(r) - 1, "rounds": r}
        for n, r in rounds.items()
    }


def torch_predict(module) -> Predict:
    def predict(ids: np.ndarray, mask: np.ndarray):
        with torch.inference_mode():
            return module(torch.from_numpy(ids), torch.from_numpy(mask))

    return predict


def _served(model: str, encoder: str, models_dir: str | None):
    return resolve(model, "xnli", encoder, weights="random", models_dir=models_dir)


def vocab(served: Any) -> int:
    """The served encoder's vocabulary size: random ids are drawn below it."""
    return int(served.encoder_config["vocab_size"])


def _ratio(result: dict[str, dict[str, Any]], new: str, old: str) -> float:
    """new/old throughput: the median over rounds of the two sides' rates in the same round."""
    pairs = zip(result[new]["rounds"], result[old]["rounds"], strict=True)
    return statistics.median(a / b for a, b in pairs)


def batching(lengths, args) -> dict[str, Any]:
    """Batching: length-sorted token-budget batches vs 32 padded to 128 (tiny shape, PyTorch)"""
    served = _served("full", "tiny", args.models_dir)
    predict = torch_predict(served.torch_module())
    res = interleaved(
        {
            "naive_fixed32_pad128": (predict, make_batches(lengths, False, vocab(served))),
            "sorted_token_budget": (predict, make_batches(lengths, True, vocab(served))),
        },
        args.repeats,
    )
    return {"results": res, "ratio": _ratio(res, "sorted_token_budget", "naive_fixed32_pad128")}


def _backend_sides(encoder: str, lengths, args, unfused: bool) -> dict[str, Any]:
    """PyTorch eager vs ONNX Runtime fp32 (fused; also unfused if asked) and int8, model full, in
    whole passes interleaved round by round (mixed runtimes, see `interleaved`)."""
    served = _served("full", encoder, args.models_dir)
    batches = make_batches(lengths, True, vocab(served))

    def make(**options: Any) -> Backend:
        return create_backend("onnxruntime", served, BackendOptions(threads=args.threads, **options))

    sides = {"fp32_unfused": make(optimize=False)} if unfused else {}
    sides |= {"fp32_fused": make(optimize=True), "int8_fused": make(optimize=True, dtype="int8")}
    predicts = {k: b.predict for k, b in sides.items()} | {
        "pytorch": torch_predict(served.torch_module())
    }
    res = interleaved({k: (p, batches) for k, p in predicts.items()}, args.repeats, per_batch=False)
    for backend in sides.values():
        backend.close()
    return {
        "samples": len(lengths),
        "results": res,
        "fp32_vs_pytorch": _ratio(res, "fp32_fused", "pytorch"),
        "int8_vs_pytorch": _ratio(res, "int8_fused", "pytorch"),
    }


def onnxruntime_vs_pytorch(lengths, args) -> dict[str, Any]:
    """ONNX Runtime: transformer fusions, int8 dynamic quantisation, vs PyTorch eager"""
    out = _backend_sides("tiny", lengths, args, unfused=True)
    res = out["results"]
    out |= {
        "fusions_ratio": _ratio(res, "fp32_fused", "fp32_unfused"),
        "int8_ratio": _ratio(res, "int8_fused", "fp32_fused"),
        "accuracy_note": "int8 accuracy change per XNLI language: see study.md (accuracy runs)",
    }
    if "base" in args.b_shapes.split(","):
        out["base"] = _backend_sides(
            "base", lengths[: min(args.real_samples, len(lengths))], args, unfused=False
        )
    return out


def fusion_fold(lengths, args) -> dict[str, Any]:
    """AdapterFusion: the library's layer vs the exact fold (tiny adapter-squad)"""
    served = _served("adapter-squad", "tiny", args.models_dir)
    library = served.torch_module(lean=False)
    with torch.no_grad():  # non-trivial adapter and fusion weights (the library's init is near identity)
        torch.manual_seed(0)
        for name, p in library.named_parameters():
            if "adapter" in name:
                p.normal_(0, 0.05)
    folded = copy.deepcopy(library)
    replaced = fold_fusion_layers(folded)
    batches = make_batches(lengths, True, vocab(served))
    a, b = torch_predict(library), torch_predict(folded)
    diff = max(float((a(*x) - b(*x)).abs().max()) for x in batches[:4])
    scale = max(float(a(*x).abs().max()) for x in batches[:4])
    res = interleaved({"library_fusion": (a, batches), "folded_fusion": (b, batches)}, args.repeats)
    return {
        "results": res,
        "ratio": _ratio(res, "folded_fusion", "library_fusion"),
        "max_abs_diff": diff,
        "output_max_abs": scale,
        "equal_within_1e-4": diff < 1e-4,
        "layers_replaced": replaced,
    }


# Parts d, f, g: full, and every model served otherwise (adapter forms also as `<model>-library`).
VARIANTS = (
    "full",
    *(
        v
        for n, spec in MODELS.items()
        if spec.serving != "plain"
        for v in ((n, f"{n}-library") if spec.serving in ("adapter", "fusion") else (n,))
    ),
)


def _variants(encoder: str, models_dir: str | None) -> dict[str, Any]:
    """Parts d, f, g: the served modules (adapter models lean, AdapterFusion folded) and, as
    `<model>-library`, the two adapter models in the adapters library's own form (lean=False)."""
    return {
        v: _served(v.removesuffix("-library"), encoder, models_dir).torch_module(
            lean=not v.endswith("-library")
        )
        for v in VARIANTS
    }


def adapter_cost(lengths, args, encoder: str = "tiny") -> dict[str, Any]:
    """Adapters vs full, PyTorch fp32 (tiny shape)"""
    modules = _variants(encoder, args.models_dir)
    batches = make_batches(lengths, True, vocab(_served("full", encoder, args.models_dir)))
    res = interleaved({k: (torch_predict(m), batches) for k, m in modules.items()}, args.repeats)
    cost = {k: 1 - _ratio(res, k, "full") for k in res if k != "full"}
    return {
        "encoder": encoder,
        "samples": len(lengths),
        "results": res,
        "cost_vs_full": cost,
        "targets": {
            "adapter_cost_le_10pct": cost["adapter"] <= 0.10,
            "merged_lora_within_2pct": abs(cost["lora-squad"]) <= 0.02,
        },
    }


def adapter_cost_base(lengths, args) -> dict[str, Any]:
    """Adapters vs full at the XLM-R base shape, RANDOM weights, PyTorch fp32

    Part d at that shape, --real_samples samples per pass."""
    return adapter_cost(lengths[: min(args.real_samples, len(lengths))], args, encoder="base")


def real_shapes(lengths, args) -> dict[str, Any]:
    """Real shapes, RANDOM weights: Offline throughput and batch-1 latency"""
    out: dict[str, Any] = {"weights": "RANDOM (speed only)"}
    n = min(args.real_samples, len(lengths))
    for encoder in ("base", "large"):
        served = _served("full", encoder, args.models_dir)
        batches = make_batches(lengths[:n], True, vocab(served))
        singles = make_batches(lengths[: max(4, n // 2)], True, vocab(served))
        singles = [
            (ids[i : i + 1, : int(m[i].sum())], m[i : i + 1, : int(m[i].sum())])
            for ids, m in singles
            for i in range(len(ids))
        ]
        for backend in [b for b in args.real_backends.split(",") if b]:
            b = create_backend(backend, served, BackendOptions(threads=args.threads))
            thr = interleaved({"offline": (b.predict, batches)}, max(1, args.repeats // 2))
            lat = []
            for ids, m in singles:
                t0 = time.perf_counter()
                b.predict(ids, m)
                lat.append(1000 * (time.perf_counter() - t0))
            out[f"{encoder}/{backend}"] = {
                "samples_per_s": thr["offline"]["samples_per_s"],
                "batch1_p50_ms": float(np.percentile(lat, 50)),
                "batch1_p90_ms": float(np.percentile(lat, 90)),
            }
            b.close()
    return out


def forward_flops(module, ids: np.ndarray, mask: np.ndarray) -> int:
    """FLOPs of one forward pass as PyTorch's FlopCounterMode counts them (matmuls and attention)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(torch.from_numpy(ids), torch.from_numpy(mask))
    return int(counter.get_total_flops())


def flop_counts(lengths, args, encoders: tuple[str, ...] = ("tiny", "base")) -> dict[str, Any]:
    """FLOPs of each variant relative to full, one batch of 8 (a count: no timing noise)

    Tiny and base shapes, each variant on the same batch."""
    out: dict[str, Any] = {}
    for encoder in encoders:
        ids, mask = make_batches(lengths[:8], True, vocab(_served("full", encoder, args.models_dir)))[0]
        modules = _variants(encoder, args.models_dir)
        flops = {m: forward_flops(mod, ids, mask) for m, mod in modules.items()}
        out[encoder] = {
            "batch": list(ids.shape),
            "gflops_full": flops["full"] / 1e9,
            "extra_vs_full": {m: f / flops["full"] - 1 for m, f in flops.items() if m != "full"},
        }
    return out


@dataclass(frozen=True)
class Part:
    """One micro-benchmark. letter: its key in speed.json and its --parts letter; name: what it
    measures (--parts takes it too); title: its speed.md heading."""

    letter: str
    name: str
    title: str
    measure: Callable[[np.ndarray, argparse.Namespace], dict[str, Any]]


MEASURES = (
    batching,
    onnxruntime_vs_pytorch,
    fusion_fold,
    adapter_cost,
    real_shapes,
    adapter_cost_base,
    flop_counts,
)
# a part's name is its function's, its title the first line of that function's docstring
PARTS: dict[str, Part] = {
    letter: Part(letter, f.__name__, f.__doc__.splitlines()[0], f)
    for letter, f in zip("abcdefg", MEASURES, strict=True)
}


def selected(parts: str) -> list[str]:
    """--parts -> part letters: letters ("abd") or comma-separated names ("batching,flop_counts")."""
    by_name = {p.name: letter for letter, p in PARTS.items()}
    words = [w for w in parts.split(",") if w]
    if all(w in by_name for w in words):
        return [by_name[w] for w in words]
    return [lookup("speed part", letter, PARTS).letter for letter in parts]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """`python -m research speed`: the speed flags plus where to write and how many threads."""
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = library default)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "reports", help="speed.json / speed.md go here"
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The speed flags of their own (`study --speed` adds them to the study's)."""
    a = parser.add_argument
    letters = "".join(PARTS)
    a(
        "--parts",
        default=letters,
        help=f"which micro-benchmarks: letters ('abd', default {letters}) or "
        f"comma-separated names ({','.join(p.name for p in PARTS.values())})",
    )
    a("--repeats", type=int, default=5, help="interleaved rounds per comparison (medians reported)")
    a("--samples", type=int, default=512, help="XNLI samples per pass (tiny shape)")
    a("--real_samples", type=int, default=32, help="samples per pass, base/large shapes (parts e, f)")
    a("--real_backends", default="pytorch,onnxruntime", help="backends of part e (comma list)")
    a(
        "--b_shapes",
        default="tiny,base",
        help="part b: 'tiny' alone skips the base shape (RANDOM weights)",
    )
    a("--models_dir", default=None, help="zoo folder whose encoder/ tokenizer gives XNLI lengths")


def main(args: argparse.Namespace) -> int:
    """Run the selected parts; print ratios; write speed.json / speed.md under args.out."""
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = selected(args.parts)
    lengths, source = xnli_lengths(args.samples, args.models_dir)
    command = f"python -m research {' '.join(sys.argv[1:])}"
    report: dict[str, Any] = {
        "command": command.strip(),
        "lengths": source,
        "mean_tokens": float(lengths.mean()),
        "repeats": args.repeats,
        "device": device_info(),
        "versions": package_versions(),
        **git_state(),
    }
    out = Path(args.out)
    previous = out / "speed.json"
    if previous.is_file():  # parts not run now keep their earlier figures (each part says when/how)
        old = json.loads(previous.read_text())
        report |= {p: old[p] for p in PARTS if p in old and p not in chosen}
    for part in chosen:
        t0 = time.perf_counter()
        print(f"speed part {part} ({PARTS[part].name}) ...", flush=True)
        report[part] = PARTS[part].measure(lengths, args)
        report[part]["wall_s"] = round(time.perf_counter() - t0, 1)
        report[part]["measured"] = {
            "at": time.strftime("%Y-%m-%d %H:%M"),
            "command": command.strip(),
            "git_sha": report.get("git_sha"),
            "git_dirty": report.get("git_dirty"),
        }
        print(
            json.dumps({k: v for k, v in report[part].items() if k != "results"}, indent=1, default=str)
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "speed.md").write_text(markdown(report))
    print(f"speed: wrote {out / 'speed.md'}")
    return 0


def _short(value: Any) -> Any:
    """Floats to 4 significant digits, recursively (for the markdown only; speed.json keeps all)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def _section(result: dict[str, Any]) -> list[str]:
    """One part's (or one shape's) medians table, then its other figures; a nested figure set
    with its own `results` (part b's base shape) becomes a subsection."""
    nested = {k: v for k, v in result.items() if isinstance(v, dict) and "results" in v}
    shapes = {k: v for k, v in result.items() if isinstance(v, dict) and "batch1_p50_ms" in v}
    if shapes:
        header = ["shape/backend", "samples/s", "batch-1 p50 ms", "batch-1 p90 ms"]
        keys = ("samples_per_s", "batch1_p50_ms", "batch1_p90_ms")
        lines = markdown_table(header, ([k, *(v[x] for x in keys)] for k, v in shapes.items()), digits=2)
    else:
        rows = [
            [k, v["samples_per_s"], f"{100 * v['spread']:.0f}%"]
            for k, v in result.get("results", {}).items()
        ]
        lines = markdown_table(["variant", "samples/s (median)", "spread"], rows)
    lines.append("")
    lines += [
        f"- {key}: {json.dumps(_short(value), default=str)}"
        for key, value in result.items()
        if key != "results" and key not in shapes and key not in nested
    ]
    for key, value in nested.items():
        lines += ["", f"### {key} shape", "", *_section(value)]
    return lines


def markdown(r: dict[str, Any]) -> str:
    """speed.md: one section per part: its medians table (or, for part e, one row per shape and
    backend), then its ratios and when and how it was measured."""
    dirty = " (uncommitted changes)" if r.get("git_dirty") else ""
    lines = [
        "# Speed micro-benchmarks (random weights, in-process, interleaved medians)",
        "",
        f"Command: `{r.get('command', 'python -m research study --speed')}`  ",
        f"Lengths: {r['lengths']}, mean {r['mean_tokens']:.1f} tokens; {r['repeats']} rounds; "
        f"CPU {r['device']['cpu_model']} x{r['device']['cpu_cores']}; git {r['git_sha'][:12]}{dirty}.",
        "",
        "Within a part every variant runs on the same batches, interleaved batch by batch (part b, "
        "whose sides are different runtimes, by whole passes); ratios are medians of per-round "
        "ratios; `spread` is max/min - 1 of a variant's rounds, the noise its median sits in. "
        "Each part says when, how and at which commit it was measured.",
        "",
    ]
    for letter, part in PARTS.items():
        if letter in r:
            lines += [f"## Part {letter}: {part.title}", "", *_section(r[letter]), ""]
    return "\n".join(lines)
