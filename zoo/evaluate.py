"""Held-out dev figures of a built zoo (the recipe's last step: zoo/recipe.py) -> reports/zoo.md.

Runs the PyTorch backend over each task's features and scores them with the tasks' own metrics
(tasks/scoring) through an in-memory accuracy log. XNLI / PAWS-X: held-out rows only (every
language); TyDiQA: dev sets (training used train-en); Tatoeba: all pairs (nothing is trained on it).
These are tiny-model figures: they show the pipeline works end to end, not XLM-R's accuracy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.loadgen_log import LoadgenLog
from models.backends import create_backend
from models.loaders import read_manifest
from models.modules import WRAPPERS
from models.registry import resolve
from models.training_device import autocast_bf16_on
from tasks.data import pad_ragged
from tasks.registry import get_task, get_task_class
from tasks.scoring import score
from tasks.scoring.classification import HELDOUT_FIRST_ROW
from tasks.scoring.log import AccuracyLog

BATCH = 64


def predict_log(backend, fs, indices: np.ndarray, kind: str, pad_id: int = 1):
    """Run `indices` of FeatureSet `fs` through the backend (length-sorted batches) -> AccuracyLog."""
    order = indices[np.argsort(fs.lengths[indices], kind="stable")]
    outputs: dict[int, np.ndarray] = {}
    for lo in range(0, len(order), BATCH):
        rows = order[lo : lo + BATCH]
        ids, mask = pad_ragged(fs.input_ids, fs.offsets, rows, pad_id)
        out = backend.predict(ids, mask)
        for b, i in enumerate(rows):
            n = int(fs.lengths[i])
            outputs[int(i)] = out[b, :, :n].ravel() if kind == "qa" else out[b].ravel()
    qsl = np.array(sorted(outputs), dtype=np.int64)
    sizes = np.array([len(outputs[i]) for i in qsl], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    values = np.concatenate([outputs[i] for i in qsl]).astype(np.float32)
    return AccuracyLog(Path("<zoo-eval>"), qsl, offsets, values)


class _TrainingModule:
    """Backend-like view of a model being trained: the task kind's wrapper (models/modules.py)
    without freezing its parameters, on the device the model trains on; bf16 autocast where that
    device has native bf16 (a curve probe, not a reported figure). no_grad,
    not inference_mode: under inference_mode and autocast the adapters library's unfolded
    AdapterFusion forward runs 11-14x slower (docs/zoo.md); in the
    timed zoo build of 2026-11-30 (reports/zoo.md) each TyDiQA probe of adapter-squad took 11
    minutes, against 15 s for full's."""

    def __init__(self, kind: str, model) -> None:
        self.module = WRAPPERS[kind](model, 0)

    def predict(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        device = next(self.module.parameters()).device  # where the model trains
        bf16 = autocast_bf16_on(str(device))
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.module(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        return out.float().cpu().numpy()


def heldout_probe(task_name: str, tokenizer, rows: int = 300):
    """evaluate(model) -> the task's main metric on English held-out data, for training curves:
    XNLI/PAWS-X the first `rows` English held-out rows, TyDiQA the English dev set (F1)."""
    if task_name in HELDOUT_FIRST_ROW:
        first = HELDOUT_FIRST_ROW[task_name]
        return row_probe(task_name, tokenizer, range(first, first + rows), heldout_rows=True)
    return row_probe(task_name, tokenizer, None)


def row_probe(task_name: str, tokenizer, rows: Collection[int] | None, **score_kwargs):
    """evaluate(model) -> the task's main metric on English rows `rows` of the file its target stage
    trains from (all of the English evaluation file when None), scored by the task's own scorer with
    `score_kwargs`: the held-out probe above, and the selection's dev probe on English training data
    held out of its trials (zoo/recipe.py `dev_split`). XNLI/PAWS-X: rows of the English dev file;
    TyDiQA: questions of train-en.json (file order), all of each question's windows."""
    qa = get_task_class(task_name).kind == "qa"
    options = {"split": "train"} if qa and rows is not None else {}
    task = get_task(task_name, languages="en", **options)
    kind = task.kind
    fs = task.features(tokenizer, progress=False)
    indices = np.arange(len(fs))
    if rows is not None:
        unit = fs.extra["example_index" if qa else "row"]
        indices = indices[np.isin(unit, np.fromiter(rows, dtype=np.int64))]
    if qa:  # the scorer rebuilds the windows with the tokenizer
        score_kwargs.setdefault("tokenizer", tokenizer)
    metric = task.primary_metric

    def evaluate(model) -> float:
        log = predict_log(_TrainingModule(kind, model), fs, indices, kind, tokenizer.pad_token_id)
        return float(json.loads(score(task, log, **score_kwargs).final_line)[metric])

    return evaluate


def evaluate(served, languages: str | None = None, rows: int | None = None) -> dict[str, Any]:
    """Score one ServedModel on its task's held-out data (XNLI/PAWS-X: the first `rows` held-out rows
    of each language, all when None); returns the final-line metrics + details."""
    task = get_task(served.task, languages=languages, **served.task_options())
    tok = served.tokenizer()
    fs = task.features(tok, progress=False)
    indices = np.arange(len(fs))
    if served.task in HELDOUT_FIRST_ROW:  # the recipe's EVAL_ROWS start there
        first = HELDOUT_FIRST_ROW[served.task]
        row = fs.extra["row"]
        indices = indices[(row >= first) & (row < (first + rows if rows else np.inf))]
    backend = create_backend("pytorch", served)
    log = predict_log(backend, fs, indices, served.task_kind, tok.pad_token_id)
    kwargs = {"heldout_rows": True} if served.task in HELDOUT_FIRST_ROW else {}
    kwargs |= {"tokenizer": tok} if served.task_kind == "qa" else {}
    result = score(task, log, **kwargs)
    return {
        "final": json.loads(result.final_line),
        "per_language": result.metrics.get("per_language", {}),
        "languages": list(task.active_languages),
        "n": len(indices),
    }


def accuracy_sample_count(folder: Path) -> int | None:
    """The samples LoadGen issued in the accuracy run in `folder` (its detail log), the unit that
    in-process evaluation counts too; None without a readable detail log."""
    try:
        n = LoadgenLog.read(folder / "mlperf_log_detail.txt").get("effective_accuracy_sample_count")
    except OSError:
        return None
    return int(n) if n is not None else None


def runs_rows(runs_dir: Path, encoder: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, task) -> a report row from a LoadGen AccuracyOnly run folder under `runs_dir` (what
    the accuracy scripts wrote: accuracy.txt's final line, accuracy.json) of the encoder's default
    zoo (seed 0, no --models_dir) on PyTorch fp32; the newest such run of each pair wins."""
    found: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for cfg_path in sorted(Path(runs_dir).rglob("run_config.json")):
        folder = cfg_path.parent
        try:
            cfg = json.loads(cfg_path.read_text())
            metrics = json.loads((folder / "accuracy.json").read_text())
            final = json.loads((folder / "accuracy.txt").read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            continue  # not scored (or not finished)
        options = cfg.get("backend_options") or {}
        if (
            cfg.get("encoder") != encoder
            or cfg.get("mode") != "accuracy"
            or cfg.get("backend") != "pytorch"
            or options.get("dtype", "fp32") != "fp32"
            or (cfg.get("config") or {}).get("models_dir")
            or (cfg.get("config") or {}).get("weights")
        ):
            continue
        per = metrics.get("per_language") or {}
        n = accuracy_sample_count(folder)
        if n is None:  # no detail log: what the scoring counted (questions, sentence pairs)
            n = (
                metrics.get("samples_scored")
                or metrics.get("questions_scored")
                or sum((metrics.get("count") or {}).values())
            )
        row = {
            "model": cfg["model"],
            "task": cfg["task"],
            "final": final,
            "per_language": per,
            "languages": list(per),
            "n": n,
            "seconds": 0.0,
            "source": str(folder),
        }
        key = (cfg["model"], cfg["task"])
        if key not in found or cfg.get("started_at", "") >= found[key][0]:
            found[key] = (cfg.get("started_at", ""), row)
    return {k: row for k, (_, row) in found.items()}


def evaluate_zoo(
    models_dir: Path,
    encoder: str,
    models: list[str],
    tasks: list[str],
    sizes,
    progress=True,
    runs_dir: Path | None = None,
):
    """One row per (model, task) that the zoo has: model, task, metrics, languages, samples, seconds.
    runs_dir: take a (model, task)'s figures from its LoadGen accuracy run there when it has one
    (runs_rows); the others are evaluated in-process."""
    rows = []
    langs = sizes.eval_languages or {}
    from_runs = runs_rows(runs_dir, encoder) if runs_dir else {}
    for model in models:
        for task in tasks:
            if (model, task) in from_runs:
                rows.append(from_runs[(model, task)])
                continue
            t0 = time.perf_counter()
            try:
                served = resolve(model, task, encoder, models_dir=models_dir)
            except FileNotFoundError:
                continue
            res = evaluate(served, langs.get(task), sizes.eval_rows)
            rows.append({"model": model, "task": task, **res, "seconds": time.perf_counter() - t0})
            if progress:
                print(f"[models] eval {model} {task}: {res['final']} ({res['n']} samples)", flush=True)
    return rows


HEADERS = {
    "tiny": "**Tiny-model figures** (a 4-layer, 128-wide XLM-R pretrained here for minutes): they check "
    "the pipeline end to end; they are not XLM-R results.",
    "e5-small": "**multilingual-e5-small (4-bit weights dequantised to fp32)**: a real pretrained "
    "12-layer, 384-wide multilingual encoder with XLM-R's vocabulary and tokenizer (models/e5.py), "
    "fine-tuned here zero-shot (English data only). Not XLM-R base/large figures.",
}


def _figure(value: Any) -> str:
    if isinstance(value, dict):  # qa / bucc per-language entries
        keys = [k for k in ("f1", "exact_match", "precision", "recall") if k in value]
        return "/".join(f"{value[k]:.1f}" for k in keys[:2])
    return f"{value:.1f}" if isinstance(value, (int, float)) else str(value)


def report_section(
    rows: list[dict],
    encoder: str,
    sizes,
    train_s: float,
    total_s: float,
    models_dir: Path,
    timed_dir: Path | None = None,
    train_data: tuple[str, str] | None = None,
) -> str:
    """One encoder's section of reports/zoo.md: averages, per-language figures, training curves.
    timed_dir: a second build of the same zoo, made in one run for its time (`--timed_build`); its
    stages' recorded times are reported as the whole zoo's training time, stage by stage.
    train_data: (option, its words) of a zoo built with `--train_data` other than the default,
    named in the section's title and first lines (None: the default, as before the option)."""
    option, words = train_data or ("", "")
    lines = [
        f"## `{encoder}` zoo" + (f", training data `{option}`" if option else ""),
        "",
        HEADERS.get(encoder, f"Encoder `{encoder}`."),
        "",
        *([f"Its XNLI target stages trained on {words} ({models_dir}).", ""] if option else []),
        f"Built by `python -m zoo build --encoder {encoder}"
        + (f" --train_data {option}" if option else "")
        + "`: "
        + (
            f"training stages that ran in this call {train_s:.0f} s"
            if train_s >= 1
            else "no training stage ran in this call (all were built before)"
        )
        + f", total with evaluation {total_s:.0f} s on this machine (2 shared CPU "
        "cores). Held-out data only: XNLI rows from 1245 on and PAWS-X rows from 1000 on of every "
        "language"
        + (f", the first {sizes.eval_rows} of them per language" if sizes.eval_rows else "")
        + " (training used English rows before those), TyDiQA-GoldP dev (training used train-en), "
        "Tatoeba and BUCC (no training on them). Scored by the accuracy scripts' own code "
        "(tasks/scoring): from a LoadGen AccuracyOnly run's log (`--from_runs`), or in-process on the "
        "served module's outputs (column `scored from`).",
        "",
        "| model | task | score | samples | scored from |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        metric = ", ".join(f"{k} {v:.1f}" for k, v in r["final"].items() if isinstance(v, (int, float)))
        where = "LoadGen accuracy run" if r.get("source") else "in-process"
        lines.append(f"| {r['model']} | {r['task']} | {metric} | {r['n']} | {where} |")
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task and r.get("per_language")]
        if not task_rows:
            continue
        langs = list(task_rows[0]["per_language"])
        lines += ["", f"Per language, {task} (" + ("F1/EM" if task == "tydiqa" else "score") + "):", ""]
        lines += ["| model | " + " | ".join(langs) + " |", "| --- |" + " --- |" * len(langs)]
        for r in task_rows:
            cells = [_figure(r["per_language"].get(lang, "")) for lang in langs]
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    curves = training_curves(models_dir)
    timed_curves = dict(training_curves(timed_dir)) if timed_dir else {}
    if curves:
        lines += [
            "",
            "Training time recorded by the stages (zoo.json `training.train_s`, wall time with "
            "the held-out probes): "
            + _training_time(curves, "built before the stages recorded their time"),
        ]
    if timed_curves:
        one = [(stage, timed_curves.get(stage, {})) for stage, _ in curves]
        lines += [
            "",
            f'The whole zoo timed in one build, `make models ENCODER={encoder} RUN_ARGS="--models_dir '
            f'{timed_dir} --no_eval"` (column `one build`): '
            + _training_time(one, "not built there yet")
            + " Loading and saving between stages come on top.",
        ]
    if curves:
        one_build = " one build (min) |" if timed_curves else ""
        lines += [
            "",
            "Training curves (zoo.json `training`; held-out = English held-out figure after "
            "each epoch, a probe of the first 300 held-out rows / the English TyDiQA dev set in "
            "bf16, not the reported score):",
            "",
            f"| stage | lr | epochs | loss per epoch | held-out per epoch | training (min) |{one_build}",
            "| --- | --- | --- | --- | --- | --- |" + (" --- |" if timed_curves else ""),
        ]
        for stage, t in curves:
            loss = " ".join(f"{c['loss']:.3f}" for c in t["curve"])
            held = " ".join(f"{c['heldout']:.1f}" for c in t["curve"] if "heldout" in c) or "-"
            length = t["epochs"] or t["steps"]
            if t.get("schedule_epochs"):  # stopped early in a longer schedule (a selection's choice)
                length = f"{t['epochs']} of {t['schedule_epochs']}"
            row = f"| {stage} | {t['lr']:g} | {length} | {loss} | {held} | {_minutes(t)} |"
            lines.append(row + (f" {_minutes(timed_curves.get(stage, {}))} |" if timed_curves else ""))
    lines += ["", f"Sizes: `{sizes}`", ""]
    return "\n".join(lines)


def _minutes(training: dict) -> str:
    return f"{training['train_s'] / 60:.1f}" if "train_s" in training else "not recorded"


def _training_time(curves: list[tuple[str, dict]], why_missing: str) -> str:
    """The summed recorded time of trained stages, naming those without one (and why_missing)."""
    timed = [t["train_s"] for _, t in curves if "train_s" in t]
    missing = [stage for stage, t in curves if "train_s" not in t]
    text = f"{sum(timed) / 60:.0f} min over {len(timed)} of {len(curves)} trained stages"
    if not missing:
        return text + "."
    return text + f"; not {', '.join(missing) if timed else 'any'}: {why_missing}."


def training_curves(models_dir: Path) -> list[tuple[str, dict]]:
    """(stage, training record) for every built stage whose manifest has one, in path order."""
    out = []
    for manifest in sorted(Path(models_dir).glob("*/*/zoo.json")):
        training = read_manifest(manifest.parent).get("training")
        if training and training.get("curve"):
            out.append((f"{manifest.parent.parent.name}/{manifest.parent.name}", training))
    return out


def write_report(path: Path, section: str, encoder: str) -> None:
    """Replace (or add) `encoder`'s section of reports/zoo.md, keeping the other encoders' sections."""
    start, end = f"<!-- zoo:{encoder} -->", f"<!-- /zoo:{encoder} -->"
    text = path.read_text() if path.is_file() else ""
    if start not in text:
        text = text or "# Model zoo: held-out dev figures\n\n"
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1] if end in rest else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{start}\n{section}\n{end}{tail}")
