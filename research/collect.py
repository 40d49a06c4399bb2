"""The study's figures: one `Run` per run folder, gathered into ONE pandas DataFrame (`frame`: a row
per run, a column per Run field), of which every table is a view (a groupby, a merge or a pivot).

Input: any tree of the runner's run folders (read through harness.run_record.RunRecord), or the
study_runs.csv a report wrote of them. Latencies in ms; throughput in samples/s (Offline) or
queries/s (Server). research/report.py writes the tables; docs/study.md says what each shows.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from harness.run_record import NS_PER_MS, Results, RunRecord, find_records
from research.datafiles import MARKER
from tasks.registry import TASKS

REFERENCE = "full"  # the model every other one is compared with


@dataclass
class Run:
    """One run folder, flattened. Latencies in ms; None where the run does not report the value."""

    path: str
    model: str
    task: str
    scenario: str
    mode: str
    backend: str  # label: pytorch | onnxruntime | onnxruntime-int8 | <backend>-<dtype>
    encoder: str = ""
    model_kind: str = ""
    result_valid: bool | None = None
    samples_per_second: float | None = None
    target_qps: float | None = None
    completed_qps: float | None = None
    scheduled_qps: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    early_stopping_p90_ms: float | None = None
    duration_s: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    per_language: dict[str, float] = field(default_factory=dict)
    seed: int = 0  # training seed of the zoo served
    round: int = 0  # the study's repeat of a performance cell (a `round-<R>` folder on its path)
    load_of: str | None = None  # Server at a common load: the model whose Offline rate set it
    latency_pct_ms: dict[str, float] = field(default_factory=dict)  # min, p50 ... p99.9, max
    parameters: int | None = None  # the served module's (PyTorch backend)
    parameter_bytes: int | None = None
    peak_rss_mib: float | None = None  # the run process's peak resident memory
    # training data of the zoo served (models/zoo_layout.py TRAIN_DATA; "xnli": the default zoo, and
    # every run of a study_runs.csv written before the column existed)
    train_data: str = "xnli"
    # the study cell's wall time and CPU time (its marker): the run, and the zoo stages the cell was
    # first to need; CPU seconds (user + system, every process of the cell) do not count a pause
    cell_wall_s: float | None = None
    cell_cpu_s: float | None = None


def round_of(path: str | Path) -> int:
    """R when a component of `path` is `round-<R>` (research/study.py ROUND_DIR), else 0."""
    for part in Path(path).parts:
        if part.startswith("round-") and part[6:].isdigit():
            return int(part[6:])
    return 0


def load_of_path(path: str | Path) -> str | None:
    """M when a component of `path` is `qps-<F>-of-<M>` (a Server cell offered F x model M's Offline
    samples/s, the same load for every model), else None."""
    for part in Path(path).parts:
        head, sep, model = part.partition("-of-")
        if sep and head.startswith("qps-") and model:
            return model
    return None


def cell_seconds(folder: str | Path, key: str = "wall_s") -> float | None:
    """The seconds (`key`: wall_s or cpu_s) the study's marker in `folder` records; None without
    one (not a study cell, a marker not readable, or one written before it recorded `key`)."""
    try:
        return float(json.loads((Path(folder) / MARKER).read_text())[key])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def load_run(record: RunRecord) -> Run:
    """Flatten one run folder's record into the study's row (latencies in ms)."""
    res = record.results or Results()
    metric = TASKS[record.task].primary_metric if record.task in TASKS else None
    value = record.metric(metric) if metric else None
    es = res.early_stopping_latency_ns
    # the fields of the same name in the record and in its results
    named = ("model", "task", "scenario", "mode", "encoder", "model_kind")
    same = ("result_valid", "samples_per_second", "target_qps", "completed_qps", "scheduled_qps")
    return Run(
        **{k: getattr(record, k) for k in named},
        **{k: getattr(res, k) for k in same},
        path=str(record.path),
        backend=record.backend_label,
        **{f"{p}_ms": res.latency_ms(p) for p in ("p50", "p90", "p99")},
        early_stopping_p90_ms=None if es is None else float(es) / NS_PER_MS,
        duration_s=record.duration_s,
        metric=metric if value is not None else None,
        metric_value=value,
        per_language=record.per_language(metric) if metric else {},
        seed=record.seed,
        round=round_of(record.path),
        load_of=load_of_path(record.path),
        latency_pct_ms={k: float(v) / NS_PER_MS for k, v in res.latency_ns.items() if k != "mean"},
        parameters=record.backend_options.get("parameters"),
        parameter_bytes=record.backend_options.get("parameter_bytes"),
        peak_rss_mib=res.peak_rss_mib,
        train_data=record.train_data,
        cell_wall_s=cell_seconds(record.path),
        cell_cpu_s=cell_seconds(record.path, "cpu_s"),
    )


def collect_runs(root: str | Path) -> list[Run]:
    """Every finished run folder under `root` (sorted by path, so the output is deterministic)."""
    return [load_run(r) for r in find_records(root) if r.results is not None]


RUN_COLUMNS = tuple(f.name for f in fields(Run))
# study_runs.csv holds every Run field but the per-language figures and latency percentiles
CSV_COLUMNS = tuple(c for c in RUN_COLUMNS if c not in ("per_language", "latency_pct_ms"))


def frame(runs: pd.DataFrame | Iterable[Run]) -> pd.DataFrame:
    """THE table of the study: one row per run, a column per Run field (a DataFrame is returned as
    it is). Missing figures are NaN (numbers) or None (text, flags)."""
    if isinstance(runs, pd.DataFrame):
        return runs
    return pd.DataFrame([asdict(r) for r in runs], columns=list(RUN_COLUMNS))


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a view as dicts, None where the figure is missing (NaN)."""
    return table.astype(object).where(table.notna(), None).to_dict("records")


def runs_from_csv(path: str | Path) -> list[Run]:
    """The runs of a study_runs.csv (the committed record of a study's run folders): no per-language
    figures, latency percentiles or per-sample scores."""
    text = ("path", "model", "task", "metric", "load_of", "train_data")
    table = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    out = []
    for row in records(table[[c for c in RUN_COLUMNS if c in table.columns]]):
        values = {k: v for k, v in row.items() if v is not None}
        for name in ("seed", "round", "parameters", "parameter_bytes"):
            if name in values:
                values[name] = int(values[name])
        if "result_valid" in values:
            values["result_valid"] = values["result_valid"] in (True, "True")
        out.append(Run(**values))
    return out


def write_csv(table: pd.DataFrame, path: Path, columns: Iterable[str]) -> None:
    """`table`'s `columns` as a CSV (missing figures empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # \r\n as the csv module writes: the committed CSVs keep their bytes
    table.reindex(columns=list(columns)).to_csv(path, index=False, lineterminator="\r\n")


# ----------------------------------------------------------------------------------------------
# Views of the run table
# ----------------------------------------------------------------------------------------------
KEYS = ["model", "task", "backend"]
VARIANT_COLUMNS = tuple(
    "model task backend encoder model_kind offline_samples_per_s offline_valid singlestream_p90_ms "
    "singlestream_p99_ms singlestream_valid server_target_qps server_completed_qps server_p99_ms "
    "server_valid server_invalid_above_qps metric metric_value".split()
)


def _search(trials: pd.DataFrame) -> pd.Series:
    """One model's Server search: the highest VALID offered load (else the lowest offered, to show
    failure), and the lowest INVALID load above a VALID one (with it, the search brackets the peak)."""
    load = trials["target_qps"].fillna(0.0)
    valid = trials["result_valid"] == True  # noqa: E712 (None is not VALID)
    best = trials.loc[load[valid].idxmax()] if valid.any() else trials.loc[load.idxmin()]
    above = load[~valid & (load > best["target_qps"])] if valid.any() else load[[]]
    row = best[["target_qps", "completed_qps", "p99_ms", "result_valid"]]
    row.index = ["server_target_qps", "server_completed_qps", "server_p99_ms", "server_valid"]
    return pd.concat([row, pd.Series({"server_invalid_above_qps": above.min() if len(above) else None})])


def variant_rows(runs: pd.DataFrame | Iterable[Run]) -> pd.DataFrame:
    """One row per (model, task, backend) of the seed-0, round-0 runs, sorted."""
    t = frame(runs)
    t = t[(t["seed"] == 0) & (t["round"] == 0)]
    out = t.groupby(KEYS)[["encoder", "model_kind"]].first()
    perf = t[t["mode"] == "performance"]

    def last(scenario: str) -> pd.DataFrame:
        return perf[perf["scenario"] == scenario].drop_duplicates(KEYS, keep="last").set_index(KEYS)

    off, ss = last("Offline"), last("SingleStream")
    out["offline_samples_per_s"], out["offline_valid"] = off["samples_per_second"], off["result_valid"]
    es = ss["early_stopping_p90_ms"]
    out["singlestream_p90_ms"] = es.where(es.fillna(0.0) != 0.0, ss["p90_ms"])
    out["singlestream_p99_ms"], out["singlestream_valid"] = ss["p99_ms"], ss["result_valid"]
    searched = perf[(perf["scenario"] == "Server") & perf["load_of"].isna()]
    if len(searched):
        out = out.join(searched.groupby(KEYS)[list(searched.columns)].apply(_search))
    acc = t[(t["mode"] == "accuracy") & t["metric_value"].notna()]
    acc = acc.drop_duplicates(KEYS, keep="first").set_index(KEYS)
    out["metric"], out["metric_value"] = acc["metric"], acc["metric_value"]
    out = out.reset_index().reindex(columns=list(VARIANT_COLUMNS))
    for flag in ("offline_valid", "singlestream_valid", "server_valid"):
        out[flag] = out[flag].astype(object).where(out[flag].notna(), None)
    return out


def overhead_rows(rows: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Offline throughput of each model relative to `reference` on the same task and backend."""
    ref = rows.loc[rows["model"] == reference, ["task", "backend", "offline_samples_per_s"]]
    out = rows.merge(ref.rename(columns={"offline_samples_per_s": "ref"}), on=["task", "backend"])
    out = out[(out["model"] != reference) & (out["ref"] > 0) & (out["offline_samples_per_s"] > 0)]
    out = out.assign(ratio_vs_full=out["offline_samples_per_s"] / out["ref"])
    return out.assign(cost_pct=100.0 * (1.0 - out["ratio_vs_full"])).drop(columns="ref")


def int8_language_deltas(runs: pd.DataFrame | Iterable[Run], task: str = "xnli") -> pd.DataFrame:
    """Per-language accuracy of onnxruntime-int8 minus an fp32 reference of the same model and
    training seed (points): its onnxruntime fp32 run where there is one, else its pytorch one."""
    t = frame(runs)
    t = t[(t["task"] == task) & (t["mode"] == "accuracy")]
    t = t[t["per_language"].map(bool).astype(bool)]
    per = t.drop_duplicates(["model", "backend", "seed"], keep="last")
    per = per.set_index(["model", "backend", "seed"])["per_language"]
    out = []
    for (model, backend, seed), int8 in per.sort_index().items():
        reference = next((b for b in ("onnxruntime", "pytorch") if (model, b, seed) in per.index), None)
        if backend != "onnxruntime-int8" or reference is None:
            continue
        fp32 = per[(model, reference, seed)]
        out += [
            (model, seed, reference, lang, fp32[lang], int8[lang], int8[lang] - fp32[lang])
            for lang in sorted(set(int8) & set(fp32))
        ]
    return pd.DataFrame(out, columns=["model", "seed", "reference", "language", "fp32", "int8", "delta"])


# figure -> (scenario, column) of the per-round ratios; Server: only the runs at the common load
ROUND_FIGURES = {
    "offline": ("Offline", "samples_per_second"),
    "singlestream_p90": ("SingleStream", "p90_ms"),
    "server_p99": ("Server", "p99_ms"),
}


def round_ratios(
    runs: pd.DataFrame | Iterable[Run], reference: str = REFERENCE, across: str = "model"
) -> list[dict[str, Any]]:
    """One row per (figure, task, backend, model other than reference): the ratio model / reference
    in every round where both ran (`ratios`, `round_numbers`), its median, min, max and number of
    rounds (for latency a ratio above 1 is a cost). across="backend": each backend / `reference`."""
    other = {"model": "backend", "backend": "model"}[across]
    key = ["figure", "task", other, across]
    t = frame(runs)
    t = t[(t["mode"] == "performance") & (t["seed"] == 0)]
    parts = []
    for fig, (scenario, column) in ROUND_FIGURES.items():
        sub = t[(t["scenario"] == scenario) & (t[column].fillna(0.0) != 0.0)]
        sub = sub[sub["load_of"].notna()] if scenario == "Server" else sub
        parts.append(sub.assign(figure=fig, value=sub[column].astype(float)))
    long = pd.concat(parts)[[*key, "round", "value"]].drop_duplicates([*key, "round"], keep="last")
    ref = long[long[across] == reference].drop(columns=across).rename(columns={"value": "ref"})
    pairs = long[long[across] != reference].merge(ref, on=["figure", "task", other, "round"])
    pairs = pairs.assign(ratio=pairs["value"] / pairs["ref"]).sort_values([*key, "round"])
    out = pairs.groupby(key).agg(
        ratios=("ratio", list),
        round_numbers=("round", list),
        median=("ratio", "median"),
        min=("ratio", "min"),
        max=("ratio", "max"),
        rounds=("ratio", "size"),
    )
    return out.reset_index().to_dict("records")


def per_round_cost(rows: Iterable[dict[str, Any]]) -> dict[int, float]:
    """Round number -> the geometric mean of the rows' costs in that round (above 1: slower than the
    reference; Offline ratios inverted). The round is the independent unit of the interleaved design."""
    logs: dict[int, list[float]] = {}
    for row in rows:
        costs = [1.0 / r for r in row["ratios"]] if row["figure"] == "offline" else row["ratios"]
        for n, cost in zip(row["round_numbers"], costs, strict=True):
            logs.setdefault(n, []).append(math.log(cost))
    return {n: math.exp(statistics.fmean(v)) for n, v in sorted(logs.items())}


def mean_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """The geometric mean of positive `values` (ratios) with Student's t interval on their logs
    (ValueError with fewer than 2 values)."""
    logs = [math.log(v) for v in values]
    if len(logs) < 2:
        raise ValueError(f"an interval needs at least 2 values, got {len(logs)}")
    mean = statistics.fmean(logs)
    half = stats.t.ppf(0.5 + level / 2, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def memory_rows(runs: pd.DataFrame | Iterable[Run], reference: str = REFERENCE) -> pd.DataFrame:
    """Per (task, model, backend), from the round-0 Offline performance run: parameters (PyTorch),
    extra parameters against `reference` on the same task, and the process's peak resident MiB."""
    t = frame(runs)
    t = t[(t["scenario"] == "Offline") & (t["mode"] == "performance") & (t["round"] == 0)]
    t = t[t["seed"] == 0].drop_duplicates(["task", "model", "backend"], keep="last")
    t = t.sort_values(["task", "model", "backend"])
    ref = t.loc[t["model"] == reference, ["task", "backend", "parameters"]]
    t = t.merge(ref.rename(columns={"parameters": "ref"}), on=["task", "backend"], how="left")
    mib = t["parameter_bytes"].astype(float) / 2**20
    t = t.assign(
        extra_parameters=(t["parameters"] - t["ref"]).where((t["parameters"] > 0) & (t["ref"] > 0)),
        parameter_mib=mib.where(mib > 0),
    )
    return t[
        ["task", "model", "backend", "parameters", "extra_parameters", "parameter_mib", "peak_rss_mib"]
    ]
