"""The study's report: `<out>/study.csv` (one row per variant), `<out>/study_runs.csv` (one row per
run folder), PNG figures (research/plots.py) and `<out>/study.md`, every figure a table with its
interval or range where it has one. No sentence here says what the figures mean: docs/study.md does,
written by people, and tests/test_study_answer.py checks each number it quotes against the tables.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from common.tables import cell, markdown_table, table_block
from harness.info import device_info
from models.registry import MODELS
from research import accuracy as acc
from research.collect import (
    CSV_COLUMNS,
    REFERENCE,
    VARIANT_COLUMNS,
    Run,
    collect_runs,
    frame,
    int8_language_deltas,
    mean_interval,
    memory_rows,
    overhead_rows,
    per_round_cost,
    records,
    round_ratios,
    runs_from_csv,
    variant_rows,
    write_csv,
)
from research.plots import write_plots
from tasks.registry import TASKS
from tasks.scoring.result import PER_SAMPLE, PER_SAMPLE_GZ, gzip_fixed
from zoo.recipe import DEFAULT_TRAIN_DATA, data_words

# Models whose served graph is the reference's (plain weights, or LoRA merged): their ratio to it is
# the harness's noise, and their per-round cost must hold 1.00 (the same-graph check).
SAME_GRAPH = tuple(n for n, s in MODELS.items() if n != REFERENCE and s.serving in ("plain", "merged"))
PER_SAMPLE_DIR = "per_sample"  # a report's copy of its accuracy runs' per-sample scores
MACHINE_LINE = re.compile(
    r"^Machine: (?P<cpu_model>.+), (?P<cpu_cores>\d+) cores, (?P<memory_gib>[\d.]+) GiB\.$"
)
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


def section(title: str, lead: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A '## title' section: a lead paragraph (none when empty) and a table; nothing without rows."""
    block = table_block(lead, header, rows)
    return ["", f"## {title}", *block] if block else []


def ratio_cells(r: dict[str, Any]) -> list[str]:
    return [f"{r['median']:.3f}", f"{r['min']:.3f}-{r['max']:.3f}", str(r["rounds"])]


def variant_table(rows: pd.DataFrame) -> list[str]:
    """The variants' table: one row per model, task and backend."""
    body = []
    for r in records(rows):
        flags = [
            r[k] for k in ("offline_valid", "singlestream_valid", "server_valid") if r[k] is not None
        ]
        body.append(
            [r["model"], r["task"], r["backend"], cell(r["offline_samples_per_s"])]
            + [cell(r["singlestream_p90_ms"], 2), cell(r["singlestream_p99_ms"], 2)]
            + [cell(r["server_completed_qps"]), cell(r["server_p99_ms"], 2), cell(r["metric"])]
            + [cell(r["metric_value"], 2), cell(all(flags)) if flags else "-"]
        )
    header = ["model", "task", "backend", "Offline samples/s", "SS p90 ms", "SS p99 ms", "Server QPS"]
    return markdown_table([*header, "Server p99 ms", "metric", "value", "all valid"], body)


def same_graph_rows(ratios: list[dict[str, Any]]) -> list[list[str]]:
    """Per same-graph model with rounds: in how many figures its range holds 1.00, how many would
    miss it by chance alone (all of a figure's rounds on one side: 2 x 0.5^rounds each), each round's
    cost over the figures (collect.per_round_cost) and their geometric mean with Student's t 95%."""
    out = []
    for model in SAME_GRAPH:
        if not (same := [r for r in ratios if r["model"] == model]):
            continue
        inside = sum(r["min"] <= 1.0 <= r["max"] for r in same)
        chance = len(same) * 2.0 * 0.5 ** min(r["rounds"] for r in same)
        costs = per_round_cost(same)
        mean, low, high = mean_interval(costs.values())
        per_round = ", ".join(f"{c:.3f}" for c in costs.values())
        out.append([model, f"{inside} of {len(same)}", f"{chance:.1f}", per_round, f"{mean:.3f}"])
        out[-1].append(f"{low:.3f}-{high:.3f}")
    return out


def common_load_rows(runs: pd.DataFrame) -> list[list[Any]]:
    """The offered loads of the common-load Server cells, per task and backend."""
    out = []
    common = runs[runs["load_of"].notna() & (runs["mode"] == "performance")]
    for (task, backend, of), g in common.groupby(["task", "backend", "load_of"]):
        low, high = f"{g['target_qps'].min():.1f}", f"{g['target_qps'].max():.1f}"
        out.append([task, backend, of, low if low == high else f"{low}-{high}"])
        out[-1] += [g["model"].nunique(), g["round"].nunique()]
    return out


def run_kind_rows(runs: pd.DataFrame) -> list[list[Any]]:
    """How many runs of each scenario and mode, in how many rounds, with which min_duration."""
    out = []
    for (scenario, mode), g in runs.groupby(["scenario", "mode"]):
        d = g["duration_s"].dropna()
        length = "-" if d.empty else f"{d.min():g}" if d.min() == d.max() else f"{d.min():g}-{d.max():g}"
        out.append([scenario, mode, len(g), g["round"].nunique(), g["seed"].nunique(), length])
    return out


def time_rows(runs: pd.DataFrame, cores: int) -> list[list[Any]]:
    """The study cells' time (their markers) per task, mode and training seed, then in all: cells,
    wall hours, wall hours x `cores` (the machine's bound), CPU core-hours measured (user + system of
    every process of the cell; a pause spends none) and how many cells' markers record it ('-' where
    none does); [] when no run has a marker."""
    timed = runs[runs["cell_wall_s"].notna()]
    out = []
    for key, g in [*timed.groupby(["task", "mode", "seed"]), (("all", "", ""), timed)]:
        hours, cpu = g["cell_wall_s"].sum() / 3600, g["cell_cpu_s"].dropna()
        cpu_h = f"{cpu.sum() / 3600:.2f}" if len(cpu) else "-"
        out.append([*key, len(g), f"{hours:.2f}", f"{hours * cores:.2f}", cpu_h, len(cpu)])
    return out if len(timed) else []


def markdown(
    runs: pd.DataFrame,
    rows: pd.DataFrame,
    study: acc.AccuracyStudy | None,
    title: str = "Efficiency study",
    figures: Sequence[str] = (),
    command: str | None = None,
    device: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    speed: bool = False,
    data_line: str = "",
) -> str:
    """The study.md text: how it was made and every table (`device`: the machine the runs were
    measured on, default this one; `notes`: paragraphs under the machine line; `speed`: whether a
    speed.md lies beside it; `data_line`: the runs' training data, under the command)."""
    dev = device or device_info()
    lines = [f"# {title}", "", *([f"Command: `{command}`  "] if command else [])]
    lines += [f"{data_line}  "] if data_line else []
    lines += [f"Machine: {dev['cpu_model']}, {dev['cpu_cores']} cores, {dev['memory_gib']} GiB.", ""]
    lines += [line for note in notes for line in (note, "")]
    if kinds := sorted({k for k in rows["model_kind"] if k}):
        lines += [
            f"Model kind(s): {', '.join(kinds)} (tiny = the offline zoo; random = speed only).",
            "",
        ]
    lines += variant_table(rows)
    lines += section(
        "Runs",
        "The run folders read, per scenario and mode: rounds and training seeds among them, and the "
        "LoadGen min_duration of their runs (seconds; accuracy runs are one pass).",
        ["scenario", "mode", "runs", "rounds", "seeds", "min_duration s"],
        run_kind_rows(runs),
    )
    lines += section(
        "Time spent",
        "Wall time of the study's cells (each cell's marker), training included: a cell's time "
        "holds the zoo stages it was the first to need (the encoder, an intermediate stage, its "
        "own target stage), so one model's figure depends on the order the cells ran in; compare "
        f"the totals. Wall x cores: the bound, wall hours x the machine's {dev['cpu_cores']} cores; "
        "CPU h: the core-hours the cell's processes spent (user + system), measured by markers "
        "written since they record it (the last column counts them), and not inflated by a pause.",
        ["task", "mode", "seed", "cells", "wall h", "wall x cores h", "CPU h", "CPU-timed cells"],
        time_rows(runs, int(dev["cpu_cores"])),
    )
    lines += section(
        "Offline throughput relative to `full` (same task and backend)",
        "",
        ["model", "task", "backend", "ratio", "cost %"],
        (
            [r["model"], r["task"], r["backend"], f"{r['ratio_vs_full']:.3f}", f"{r['cost_pct']:+.1f}"]
            for r in records(overhead_rows(rows))
        ),
    )
    ratios = [r for r in round_ratios(runs) if r["rounds"] > 1]
    lines += section(
        "Ratios to `full` over interleaved rounds (same task, backend and round)",
        "Each round runs every model back to back; a ratio is taken within one round, so the "
        "machine's drift between rounds cancels. Offline: samples/s (below 1 = slower); "
        "SingleStream: p90 latency (above 1 = slower); Server: p99 latency at one offered load "
        "common to every model (above 1 = slower).",
        ["figure", "task", "backend", "model", "median", "min-max", "rounds"],
        ([r["figure"], r["task"], r["backend"], r["model"], *ratio_cells(r)] for r in ratios),
    )
    lines += section(
        "Server at a common load",
        "The load offered to every model in the common-load Server cells: a fraction of `of`'s "
        "Offline samples/s (round 0).",
        ["task", "backend", "of", "offered QPS", "models", "rounds"],
        common_load_rows(runs),
    )
    lines += section(
        "Same graph as `full`: the harness's bias",
        "These models serve full's very graph, so each ratio should hold 1.00. Per figure: in how "
        "many its min-max range holds 1.00, and how many would miss it by chance alone (a figure's "
        "rounds all on one side). Per round: the cost relative to full over the figures (geometric "
        "mean of time per sample or latency), the round being the independent unit; over the rounds "
        "their geometric mean with Student's t 95% interval.",
        ["model", "figures holding 1.00", "missing by chance", "cost per round", "mean", "95% interval"],
        same_graph_rows(ratios),
    )
    backends = [r for r in round_ratios(runs, reference="pytorch", across="backend") if r["rounds"] > 1]
    lines += section(
        "Backends relative to PyTorch over interleaved rounds (same task, model and round)",
        "",
        ["figure", "task", "model", "backend", "median", "min-max", "rounds"],
        ([r["figure"], r["task"], r["model"], r["backend"], *ratio_cells(r)] for r in backends),
    )
    lines += section(
        "Server searches (find_peak)",
        "One search per model: the highest VALID offered load and the lowest INVALID one above it "
        "(the peak lies between); a single search ranks nothing (a short run's p99 tail moves more "
        "than the models differ), which the common-load ratios above do.",
        ["task", "backend", "model", "VALID", "offered QPS", "INVALID above QPS", "p99 ms"],
        (
            [r["task"], r["backend"], r["model"], cell(r["server_valid"]), cell(r["server_target_qps"])]
            + [cell(r["server_invalid_above_qps"]), cell(r["server_p99_ms"], 2)]
            for r in records(rows[rows["server_target_qps"].notna()])
        ),
    )
    memory = memory_rows(runs)
    memory = memory[memory["parameters"].fillna(0).gt(0) | memory["peak_rss_mib"].fillna(0).gt(0)]
    lines += section(
        "Memory (round-0 Offline runs)",
        "Parameters of the served module (PyTorch; adapters and fusion layers included where they "
        "are served), extra against `full`, and the run process's peak resident memory (model, "
        "features, runtime, LoadGen).",
        ["task", "model", "backend", "parameters", "extra vs full", "parameters MiB", "peak RSS MiB"],
        (
            [m["task"], m["model"], m["backend"], cell(m["parameters"] and int(m["parameters"]))]
            + ["-" if m["extra_parameters"] is None else f"{int(m['extra_parameters']):+,}"]
            + [cell(m["parameter_mib"]), cell(m["peak_rss_mib"])]
            for m in records(memory)
        ),
    )
    deltas = int8_language_deltas(runs)
    lines += section(
        "XNLI accuracy per language: ONNX Runtime int8 minus an fp32 reference",
        "Reference: the model's ONNX Runtime fp32 accuracy run where there is one, else its PyTorch "
        "fp32 run (the same fp32 math) of the same training seed; the `reference` column names it.",
        ["model", "seed", "reference", "language", "fp32", "int8", "delta"],
        (
            [d["model"], d["seed"], d["reference"], d["language"]]
            + [f"{d['fp32']:.2f}", f"{d['int8']:.2f}", f"{d['delta']:+.2f}"]
            for d in records(deltas)
        ),
    )
    if len(deltas):
        lines += ["", f"Mean change over models and languages: {deltas['delta'].mean():+.2f}."]
    if study is not None and (study.figures or study.verdicts or study.refused):
        lines += [""] + acc.markdown(study, {k: c.title for k, c in TASKS.items()})
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    if speed:
        lines += ["", "Side-by-side ratios measured in one process: [speed.md](speed.md)."]
    return "\n".join(lines) + "\n"


def data_of(table: pd.DataFrame, source: Path, train_data: str | None) -> str | None:
    """The one training data option of the runs in `table` (and `train_data`, where given) when the
    report must say it: given, or not the default; None for the default's runs when not given.
    ValueError when there are several (`source`: where the runs were read)."""
    found = set(table["train_data"].dropna()) | ({train_data} if train_data else set())
    if len(found) > 1:
        raise ValueError(
            f"{source}: runs of several training data ({', '.join(sorted(found))}"
            + (f"; asked --train_data {train_data}" if train_data else "")
            + "): one report per training data, each in the runs_dir the study gives it "
            "(<runs_dir>-<option>)"
        )
    data = found.pop() if found else None
    return data if train_data or data != DEFAULT_TRAIN_DATA else None


def recorded_device(md: Path) -> dict[str, Any] | None:
    """The machine a previous study.md names on its "Machine:" line, or None: a report rebuilt from
    study_runs.csv elsewhere keeps the machine the runs were measured on."""
    lines = md.read_text().splitlines() if md.is_file() else []
    for m in filter(None, (MACHINE_LINE.match(line.strip()) for line in lines)):
        return {
            "cpu_model": m["cpu_model"],
            "cpu_cores": int(m["cpu_cores"]),
            "memory_gib": float(m["memory_gib"]),
        }
    return None


def keep_per_sample(runs: Sequence[Run], runs_root: Path, kept: Path) -> None:
    """Copy each accuracy run's per_sample.json, gzip-compressed with no timestamp (the same bytes for
    the same scores), into `kept` under research.accuracy.per_sample_name of its relative path (a
    run folder that keeps only the gzip copy: that copy)."""
    for r in runs:
        plain, gz = Path(r.path) / PER_SAMPLE, Path(r.path) / PER_SAMPLE_GZ
        if r.mode != "accuracy" or not (plain.is_file() or gz.is_file()):
            continue
        kept.mkdir(parents=True, exist_ok=True)
        target = kept / acc.per_sample_name(str(Path(r.path).relative_to(runs_root)))
        target.write_bytes(gzip_fixed(plain.read_bytes()) if plain.is_file() else gz.read_bytes())


def write_report(
    runs_root: str | Path,
    out: str | Path,
    title: str = "Efficiency study",
    command: str | None = None,
    runs_csv: Path | None = None,
    train_data: str | None = None,
    scope: tuple[Collection[str], Collection[str]] | None = None,
) -> dict[str, Path]:
    """Collect `runs_root`, write csv/md/png under `out` (and keep the per-sample scores in
    `out`/per_sample/); returns {name: path} of what was written. runs_csv: read the runs from this
    study_runs.csv instead (the committed record), with `out`/per_sample/ where it exists; the
    machine is then the one the previous `out`/study.md names. train_data: the study's
    --train_data where given. The runs' training data (their zoo folders' names, `Run.train_data`)
    must be one option, that one where given (ValueError otherwise: one report per training data);
    where given or not the default, study.md says it under its command and accuracy_seeds.csv
    gets a `train_data` column (a report of the default zoo's runs, not asked for, is as before).
    scope: (models, tasks): only the runs of those models on those tasks (a study's plan: presets
    share a runs_dir, and each report holds its own grid's runs); None: every run."""
    out, runs_root = Path(out), Path(runs_root)
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": out / "study.csv", "runs_csv": out / "study_runs.csv", "md": out / "study.md"}
    device = recorded_device(written["md"]) if runs_csv is not None else None
    runs = runs_from_csv(runs_csv) if runs_csv is not None else collect_runs(runs_root)
    if scope is not None:
        runs = [r for r in runs if r.model in scope[0] and r.task in scope[1]]
    table = frame(runs)  # the one table; everything below is a view of it
    data = data_of(table, runs_root if runs_csv is None else runs_csv, train_data)
    rows = variant_rows(table)
    write_csv(rows, written["csv"], VARIANT_COLUMNS)
    kept = out / PER_SAMPLE_DIR
    if runs_csv is not None:
        written["runs_csv"] = Path(runs_csv)  # the record read stays as it is
    else:  # run folders relative to runs_root: the csv reads the same on any checkout
        paths = table["path"].map(lambda p: str(Path(p).relative_to(runs_root)))
        write_csv(table.assign(path=paths), written["runs_csv"], CSV_COLUMNS)
        keep_per_sample(runs, runs_root, kept)
    study = acc.accuracy_study(runs, kept=kept if runs_csv is not None and kept.is_dir() else None)
    if seeds := acc.seed_rows(study, runs):  # the per-seed figures the verdicts use
        written["seeds_csv"] = out / "accuracy_seeds.csv"
        columns = ("task", "model", "seed", "metric", "value", *(["train_data"] if data else []))
        write_csv(pd.DataFrame(seeds).assign(train_data=data), written["seeds_csv"], columns)
    if verdicts := acc.verdict_rows(study):  # the verdicts as data (`python -m research curve`)
        written["verdicts_csv"] = out / "verdicts.csv"
        write_csv(pd.DataFrame(verdicts), written["verdicts_csv"], acc.VERDICT_COLUMNS)
    figures = write_plots(records(rows), runs, study, round_ratios(table), out)
    names = sorted(path.name for path in figures.values())
    notes = (
        [FROM_CSV_NOTE + (PER_SAMPLE_NOTE if kept.is_dir() else NO_PER_SAMPLE_NOTE)] if runs_csv else []
    )
    speed = (out / "speed.json").is_file()  # the retired speed command's output (reports/speed.md)
    data_line = (
        f"Training data: `{data}`, {data_words(data)} (docs/zoo.md, `--train_data`)." if data else ""
    )
    text = markdown(table, rows, study, title, names, command, device, notes, speed, data_line)
    written["md"].write_text(text)
    return written | figures
