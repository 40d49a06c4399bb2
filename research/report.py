"""The study's report: `write_report` collects a tree of run folders (research/collect.py) and writes
`<out>/study.csv` (one row per variant = model x task x backend label), `<out>/study_runs.csv` (one
row per run folder), PNG figures (research/plots.py) and `<out>/study.md`: how it was made, the
tables, the figures written, and the answer in words (research/answer.py).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from research.accuracy import accuracy_study, per_sample_name, seed_rows
from research.answer import answer_lines
from research.collect import (
    VARIANT_COLUMNS,
    Run,
    collect_runs,
    int8_language_deltas,
    memory_rows,
    overhead_rows,
    round_ratios,
    runs_from_csv,
    variant_rows,
    write_csv,
)
from tasks.scoring.result import PER_SAMPLE


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(
    rows: list[dict[str, Any]],
    runs: list[Run],
    title: str = "Efficiency study",
    figures: Sequence[str] = (),
    command: str | None = None,
    speed: dict[str, Any] | None = None,
    accuracy=None,
    device: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The study.md text: how it was made, the variant table, the overhead table, the int8
    per-language table, the figures that were actually written, and the answer in words
    (`speed`: the parsed speed.json beside study.md, None if there is none; `device`: the machine
    the runs were measured on, default this one: harness.info.device_info; `notes`: paragraphs
    printed under the machine line)."""
    from harness.info import device_info

    dev = device or device_info()
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`  "]
    lines += [f"Machine: {dev['cpu_model']}, {dev['cpu_cores']} cores, {dev['memory_gib']} GiB.", ""]
    for note in notes:
        lines += [note, ""]
    kinds = sorted({r["model_kind"] for r in rows if r["model_kind"]})
    if kinds:
        lines += [
            f"Model kind(s): {', '.join(kinds)} (tiny = the offline zoo; random = speed only).",
            "",
        ]
    head = [
        "model",
        "task",
        "backend",
        "Offline samples/s",
        "SS p90 ms",
        "SS p99 ms",
        "Server QPS",
        "Server p99 ms",
        "metric",
        "value",
        "all valid",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        flags = [
            r[k] for k in ("offline_valid", "singlestream_valid", "server_valid") if r[k] is not None
        ]
        cells = [
            r["model"],
            r["task"],
            r["backend"],
            _fmt(r["offline_samples_per_s"]),
            _fmt(r["singlestream_p90_ms"], 2),
            _fmt(r["singlestream_p99_ms"], 2),
            _fmt(r["server_completed_qps"]),
            _fmt(r["server_p99_ms"], 2),
            _fmt(r["metric"]),
            _fmt(r["metric_value"], 2),
            _fmt(all(flags)) if flags else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    over = overhead_rows(rows)
    if over:
        lines += [
            "",
            "## Offline throughput relative to `full` (same task and backend)",
            "",
            "| model | task | backend | ratio | cost % |",
            "|---|---|---|---|---|",
        ]
        for r in over:
            lines.append(
                f"| {r['model']} | {r['task']} | {r['backend']} | {r['ratio_vs_full']:.3f} | "
                f"{r['cost_pct']:+.1f} |"
            )
    rounds = [r for r in round_ratios(runs) if r["rounds"] > 1]
    if rounds:
        lines += [
            "",
            "## Ratios to `full` over interleaved rounds (same task, backend and round)",
            "",
            "Each round runs every model back to back; a ratio is taken within one round, so "
            "the machine's drift between rounds cancels. Offline: samples/s (below 1 = slower); "
            "SingleStream: p90 latency (above 1 = slower); Server: p99 latency at one offered load "
            "common to every model (above 1 = slower).",
            "",
            "| figure | task | backend | model | median | min-max | rounds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rounds:
            lines.append(
                f"| {r['figure']} | {r['task']} | {r['backend']} | {r['model']} | "
                f"{r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {r['rounds']} |"
            )
    memory = [m for m in memory_rows(runs) if m["parameters"] or m["peak_rss_mib"]]
    if memory:
        lines += [
            "",
            "## Memory (round-0 Offline runs)",
            "",
            "Parameters of the served module (PyTorch; adapters and fusion layers included where "
            "they are served), extra against `full`, and the run process's peak resident memory "
            "(model, features, runtime, LoadGen).",
            "",
            "| task | model | backend | parameters | extra vs full | parameters MiB | peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in memory:
            extra = f"{m['extra_parameters']:+,}" if m["extra_parameters"] is not None else "-"
            lines.append(
                f"| {m['task']} | {m['model']} | {m['backend']} | {_fmt(m['parameters'])} | {extra} | "
                f"{_fmt(m['parameter_mib'])} | {_fmt(m['peak_rss_mib'])} |"
            )
    deltas = int8_language_deltas(runs)
    if deltas:
        lines += [
            "",
            "## XNLI accuracy per language: ONNX Runtime int8 minus an fp32 reference",
            "",
            "Reference: the model's ONNX Runtime fp32 accuracy run where there is one, else its "
            "PyTorch fp32 run (the same fp32 math) of the same training seed; the `reference` "
            "column names it.",
            "",
            "| model | seed | reference | language | fp32 | int8 | delta |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in deltas:
            lines.append(
                f"| {d['model']} | {d['seed']} | {d['reference']} | {d['language']} | "
                f"{d['fp32']:.2f} | {d['int8']:.2f} | {d['delta']:+.2f} |"
            )
        mean = statistics.fmean(d["delta"] for d in deltas)
        lines += ["", f"Mean change over models and languages: {mean:+.2f}."]
    if accuracy is not None and (accuracy.figures or accuracy.verdicts or accuracy.refused):
        from research.accuracy import markdown as accuracy_markdown
        from tasks.registry import TASKS

        lines += [""] + accuracy_markdown(accuracy, {k: c.title for k, c in TASKS.items()})
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    machine = f"{dev['cpu_cores']}-core CPU ({dev['cpu_model']})"
    lines += [""] + answer_lines(rows, runs, machine=machine, speed=speed, accuracy=accuracy)
    return "\n".join(lines) + "\n"


ANSWER_START, ANSWER_END = "<!-- answer: generated by research/report.py -->", "<!-- /answer -->"
MODEL_STATEMENT = (
    "Model: multilingual-e5-small (12 layers x 384, XLM-R's vocabulary and tokenizer; its 4-bit "
    "published weights dequantised to fp32), fine-tuned here zero-shot from English only: the first "
    "1,245 English XNLI dev rows, the 3,696 TyDiQA-GoldP train-en questions, and XQuAD-en's 1,190 "
    "questions as the SQuAD intermediate task. Phang et al. 2020 used XLM-R large and full-size "
    "intermediate tasks: the directions of the effects are comparable, their sizes are not."
)


def write_answer(
    doc: Path, answer: list[str], command: str | None, accuracy, report: Path | None = None
) -> bool:
    """Replace the generated answer block of `doc` (between ANSWER_START and ANSWER_END, added
    after the title when missing) with `answer`, linking to `report` (the study.md it came from).
    Only for a study with accuracy figures or verdicts of trained checkpoints (research.accuracy
    refuses tiny and random models); returns whether it wrote."""
    if accuracy is None or not (accuracy.figures or accuracy.verdicts):
        return False
    text = doc.read_text() if doc.is_file() else "# The study\n"
    if ANSWER_START not in text:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{ANSWER_START}\n{ANSWER_END}\n{rest}"
    head, rest = text.split(ANSWER_START, 1)
    tail = rest.split(ANSWER_END, 1)[1] if ANSWER_END in rest else rest
    made = ""
    if command:
        source = "the study's report"
        if report is not None:
            link = os.path.relpath(Path(report).resolve(), Path(doc).resolve().parent)
            source = f"[{Path(report).name}]({link})"
        made = f"Generated from the figures in {source} by `{command}`."
    block = [MODEL_STATEMENT, "", *answer[2:], "", made]  # answer[:2]: its own heading
    doc.write_text(f"{head}{ANSWER_START}\n" + "\n".join(block).strip() + f"\n{ANSWER_END}{tail}")
    return True


MACHINE_LINE = re.compile(
    r"^Machine: (?P<cpu_model>.+), (?P<cpu_cores>\d+) cores, (?P<memory_gib>[\d.]+) GiB\.$"
)


def recorded_device(md: Path) -> dict[str, Any] | None:
    """The machine a previous study.md names on its "Machine:" line (markdown writes it), or None:
    a report rebuilt from study_runs.csv elsewhere keeps the machine the runs were measured on."""
    if not md.is_file():
        return None
    for line in md.read_text().splitlines():
        if m := MACHINE_LINE.match(line.strip()):
            cores, memory = int(m["cpu_cores"]), float(m["memory_gib"])
            return {"cpu_model": m["cpu_model"], "cpu_cores": cores, "memory_gib": memory}
    return None


PER_SAMPLE_DIR = "per_sample"  # a report's copy of its accuracy runs' per-sample scores


def keep_per_sample(runs: Sequence[Run], runs_root: Path, kept: Path) -> list[Path]:
    """Copy each accuracy run's per_sample.json, gzip-compressed (no timestamp: the same bytes for
    the same scores), into `kept` under research.accuracy.per_sample_name of its path relative to
    `runs_root`: the committed report then holds what its bootstrap intervals are computed from."""
    written = []
    for r in runs:
        source = Path(r.path) / PER_SAMPLE
        if r.mode != "accuracy" or not source.is_file():
            continue
        kept.mkdir(parents=True, exist_ok=True)
        target = kept / per_sample_name(str(Path(r.path).relative_to(runs_root)))
        target.write_bytes(gzip.compress(source.read_bytes(), compresslevel=9, mtime=0))
        written.append(target)
    return written


FROM_CSV_NOTE = (
    "Rebuilt from study_runs.csv, the committed record of the run folders: it holds each run's task "
    "figure, seed and timings, not its per-language figures or latency percentiles, so this report "
    "has no per-language table and no per-language or latency-distribution figure (the run folders, "
    "`--runs_dir` without `--from_runs_csv`, give them). "
)
NO_PER_SAMPLE_NOTE = (
    "Nor does this report's folder hold the runs' per-sample scores (`per_sample/`, written by a "
    "report made from the run folders): no bootstrap interval, and the verdicts rest on the "
    "training seeds where there are several."
)
PER_SAMPLE_NOTE = "The bootstrap intervals come from the per-sample scores kept in `per_sample/`."


def write_report(
    runs_root: str | Path,
    out: str | Path,
    title: str = "Efficiency study",
    command: str | None = None,
    answer_doc: Path | None = None,
    runs_csv: Path | None = None,
) -> dict[str, Path]:
    """Collect `runs_root`, write csv/md/png under `out`; returns {name: path} of what was written.
    answer_doc: a document (docs/study.md) whose generated answer block is rewritten (write_answer).
    From run folders, each accuracy run's per-sample scores are kept in `out`/per_sample/
    (keep_per_sample). runs_csv: read the runs from this study_runs.csv instead of run folders (the
    committed record), with the per-sample scores of `out`/per_sample/ where it exists; no
    per-language figures or latency percentiles, so the per-language tables and the figures that
    need them are left out; the machine is the one the previous `out`/study.md names."""
    from research.plots import write_plots, write_study_plots

    out, runs_root = Path(out), Path(runs_root)
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": out / "study.csv", "runs_csv": out / "study_runs.csv", "md": out / "study.md"}
    device = recorded_device(written["md"]) if runs_csv is not None else None
    runs = runs_from_csv(runs_csv) if runs_csv is not None else collect_runs(runs_root)
    rows = variant_rows(runs)
    write_csv(rows, written["csv"], VARIANT_COLUMNS)
    if runs_csv is not None:
        written["runs_csv"] = Path(runs_csv)  # the record read stays as it is
    else:  # run folders relative to runs_root: the csv reads the same on any checkout
        run_dicts = [asdict(r) | {"path": str(Path(r.path).relative_to(runs_root))} for r in runs]
        write_csv(
            run_dicts,
            written["runs_csv"],
            [k for k in Run.__dataclass_fields__ if k not in ("per_language", "latency_pct_ms")],
        )
    kept = out / PER_SAMPLE_DIR
    if runs_csv is None:
        keep_per_sample(runs, runs_root, kept)
    accuracy = accuracy_study(runs, kept=kept if runs_csv is not None and kept.is_dir() else None)
    seeds = seed_rows(accuracy, runs)  # the per-seed figures the verdicts use, to recompute them
    if seeds:
        written["seeds_csv"] = out / "accuracy_seeds.csv"
        write_csv(seeds, written["seeds_csv"], ("task", "model", "seed", "metric", "value"))
    figures = write_plots(rows, runs, out)
    figures.update(write_study_plots(accuracy, runs, round_ratios(runs), out))
    names = sorted(path.name for path in figures.values())
    # speed.json and speed.md are written together by `python -m research study --speed`
    speed = json.loads((out / "speed.json").read_text()) if (out / "speed.json").is_file() else None
    if runs_csv is None:
        notes = []
    else:
        notes = [FROM_CSV_NOTE + (PER_SAMPLE_NOTE if kept.is_dir() else NO_PER_SAMPLE_NOTE)]
    written["md"].write_text(markdown(rows, runs, title, names, command, speed, accuracy, device, notes))
    if answer_doc is not None:
        from harness.info import device_info

        dev = device or device_info()
        machine = f"{dev['cpu_cores']}-core CPU ({dev['cpu_model']})"
        answer = answer_lines(rows, runs, machine=machine, speed=speed, accuracy=accuracy)
        if write_answer(Path(answer_doc), answer, command, accuracy, written["md"]):
            written["answer"] = Path(answer_doc)
    written.update(figures)
    return written
