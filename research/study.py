"""`python -m research study`: the full vs adapter efficiency study, one LoadGen test per subprocess.

Grid: model x task x backend variant x (scenario, mode). Every cell is one `python -m harness run`
process (LoadGen allows one test per process: docs/architecture.md) writing the runner's run folder
`<runs_dir>/<backend>[/qps-F]/<MODEL>/<TASK>/<Scenario>/<mode>/`. Cells run in an order where each
Server cell comes after the Offline cell of its variant (its offered load is a fraction of that
Offline throughput, or the peak found by `find_peak` with `--server_qps peak`).

Resumable: a finished cell leaves `study_cell.json` (its settings) beside results.json; a later study
with the same settings skips it. Each cell's stdout/stderr goes to `<runs_dir>/logs/<cell>.log` and one
line per finished cell (rc, wall seconds) to `<runs_dir>/study_log.jsonl`.
At the end the runs are collected into `<out>/study.{csv,md}` and PNG figures (research/report.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.exit_codes import BAD_INPUT, INVALID
from common.names import lookup
from common.paths import BUILD, REPO
from harness.config import RunConfig
from harness.find_peak import (
    EARLY_STOPPING_MARGIN,
    LONGER_TRIALS,
    MAX_TRIAL_S,
    SERVER_TRIAL,
    search_folder,
)
from harness.find_peak import RECORD as PEAK_RECORD
from harness.launch import launch
from harness.run_folder import RunFolder
from harness.run_record import Results, RunRecord
from harness.settings import user_conf_with
from models import registry as model_registry
from models.encoders import get_encoder
from models.zoo_layout import seed_models_dir
from research.datafiles import DataFileError, load_preset, load_rates, preset_names
from research.measure import built
from sut import registry as sut_registry
from tasks.registry import get_task_class

MARKER = "study_cell.json"

# study backend label -> (runner --backend, --dtype). One lookup, no branching on names elsewhere.
BACKEND_VARIANTS: dict[str, tuple[str, str]] = {
    "pytorch": ("pytorch", "fp32"),
    "onnxruntime": ("onnxruntime", "fp32"),
    "onnxruntime-int8": ("onnxruntime", "int8"),
}
MODELS = tuple(model_registry.MODELS)  # every MODEL= name
# The default tasks: the ones `make models` builds (PAWS-X only on request) and the retrieval tasks.
TASKS = ("xnli", "tydiqa", "tatoeba", "bucc")
SCENARIOS = sut_registry.SCENARIOS
ROUND_DIR = "round-"  # runs_dir/round-<R>/...: round R of the performance cells (research/collect.py)
# find_peak's search for a Server cell and each encoder's planning figures: measured, with the
# command and date that measured them, in research/rates.toml.
PEAK, RATES = load_rates()
# Server at a common load (--server_common F): every model offered the same F x COMMON_LOAD_MODEL's
# Offline samples/s (round 0, same task and backend), in every round, for PEAK.trial_s. One find_peak
# per model cannot rank the forms on these 2 cores (its VALID/INVALID edge moves with one short run's
# p99 tail); p99 at one shared load, in interleaved rotated rounds, is a paired ratio with a range.
COMMON_LOAD_MODEL = "full"
REFERENCE_BACKEND = "pytorch"  # the fp32 backend every accuracy comparison is made on
SEED_TASK = "xnli"  # the task whose training noise the study measures with other seeds (--seeds)


@dataclass(frozen=True)
class StudySettings:
    """What every cell shares. duration_s: LoadGen min_duration of performance runs (seconds)."""

    runs_dir: Path
    duration_s: float = 3.0
    encoder: str = "tiny"
    count: int | None = None
    threads: int = 0
    run_args: tuple[str, ...] = ()
    cell_timeout_s: float = 900.0
    python: str = sys.executable
    user_conf: Path = REPO / "user.conf"  # base user.conf; Server/Offline cells get a copy
    offline_qps: float | None = None  # None = rates.toml's per task; 0 = user.conf's value
    languages: tuple[str, ...] = ()  # every cell serves only these languages (empty: all)


@dataclass(frozen=True)
class Cell:
    """One LoadGen test. qps_fraction: Server only, the offered load as a fraction of Offline."""

    model: str
    task: str
    backend: str  # a key of BACKEND_VARIANTS
    scenario: str
    mode: str  # performance | accuracy
    qps_fraction: float | None = None
    seed: int = 0  # training seed of the zoo served (> 0: models.zoo_layout.seed_models_dir)
    round: int = 0  # repeat of a performance cell (> 0: --rounds; research/collect.py reads it back)
    load_of: str | None = None  # Server: qps_fraction is of this model's Offline rate (common load)

    @property
    def name(self) -> str:
        q = f"-qps{self.qps_fraction:.2f}" if self.qps_fraction is not None else ""
        q += f"-of-{self.load_of}" if self.load_of else ""
        seed = f".seed{self.seed}" if self.seed else ""
        rnd = f".round{self.round}" if self.round else ""
        return f"{self.model}.{self.task}.{self.backend}.{self.scenario}.{self.mode}{q}{seed}{rnd}"

    def output_dir(self, s: StudySettings) -> Path:
        """The --output_dir given to the runner (Server points, other seeds and other rounds get
        their own, so they do not collide)."""
        base = s.runs_dir / (f"seed-{self.seed}" if self.seed else "")
        base = base / (f"{ROUND_DIR}{self.round}" if self.round else "") / self.backend
        if self.qps_fraction is None:
            return base
        return base / f"qps-{self.qps_fraction:.2f}{f'-of-{self.load_of}' if self.load_of else ''}"

    @property
    def subcommand(self) -> str:
        """`run`, or `find_peak` for a Server cell without a given load (Grid.server_qps "peak")."""
        return "find_peak" if self.scenario == "Server" and self.qps_fraction is None else "run"

    def duration_s(self, s: StudySettings) -> float | None:
        """min_duration of each of the cell's runs: --duration for performance runs, at least
        PEAK.trial_s for find_peak's Server trials and common-load Server runs; None (one pass) for
        accuracy runs."""
        if self.mode != "performance":
            return None
        long = self.subcommand == "find_peak" or self.load_of is not None
        return max(s.duration_s, PEAK.trial_s) if long else s.duration_s

    def config(self, s: StudySettings, user_conf: Path | None = None) -> RunConfig:
        """The run of this cell (`cell_config` adds the user.conf derived for it). Performance runs
        may be INVALID (short runs): their numbers are kept, and flagged."""
        backend, dtype = BACKEND_VARIANTS[self.backend]
        perf = self.mode == "performance"
        timed = perf and self.subcommand == "run"
        return RunConfig.layered(
            scenario=self.scenario,
            model=self.model,
            task=self.task,
            backend=backend,
            dtype=dtype,
            encoder=s.encoder,
            output_dir=self.output_dir(s),
            accuracy=not perf,
            allow_invalid=perf,
            duration_s=self.duration_s(s),
            count=s.count if timed else None,
            threads=s.threads,
            user_conf=user_conf or s.user_conf,
            languages=",".join(s.languages) or None,
            models_dir=str(seed_models_dir(get_encoder(s.encoder).default_models_dir(BUILD), self.seed))
            if self.seed
            else None,
        )

    def run_folder(self, s: StudySettings) -> Path:
        """Where the runner writes this cell (harness.run_folder.RunFolder.plan)."""
        return RunFolder.plan(self.config(s)).path

    def settings_key(self, s: StudySettings) -> dict[str, Any]:
        """Everything that changes the result: a finished cell is reused only if this matches
        (an accuracy run is one pass over the task: duration and target_qps do not change it)."""
        perf = self.mode == "performance"
        peak = (
            {
                "peak_search": [
                    *PEAK.bounds,
                    PEAK.trials,
                    EARLY_STOPPING_MARGIN,
                    LONGER_TRIALS,
                    MAX_TRIAL_S,
                ]
            }
            if self.subcommand == "find_peak"
            else {}
        )
        cell = {k: v for k, v in asdict(self).items() if v is not None or k != "load_of"}
        return peak | {
            "cell": cell,  # load_of only where set: markers written before it existed still match
            "duration_s": self.duration_s(s),
            "encoder": s.encoder,
            "count": s.count,
            "languages": list(s.languages),
            "threads": s.threads,
            "run_args": list(s.run_args),
            "server_qps": "peak" if self.subcommand == "find_peak" else None,
            "offline_qps": offline_qps(self, s) if self.scenario == "Offline" and perf else None,
        }


@dataclass(frozen=True)
class Grid:
    """Which cells a study runs (`plan_cells`; the command line's flags of the same names).

    SingleStream and Server only for `latency_tasks` (None = every task); accuracy runs only for
    `accuracy_backends`; Server only for `server_backends` and `server_models` (None = all; full-squad
    serves full's graph, as lora-squad does, which already checks that a same-graph model measures
    1.00), one cell per fraction of the variant's Offline samples/s in `server_fractions`, or one
    find_peak search when `server_qps` is "peak".
    `seeds` (other than 0): PyTorch accuracy cells of `seed_models` on XNLI served from that seed's
    zoo (training noise), after the task's cells.
    `rounds` > 1: the Offline and SingleStream performance cells again, rounds - 1 more times,
    interleaved (every model and backend of a round before the next round), so that each ratio to
    full can be taken within a round and shown with its spread over rounds; round r starts at the
    r-th model (rotated), so that a drift within a round does not favour one model in every round.
    `perf_tasks` (None = all): the tasks with performance cells and with accuracy cells on backends
    other than REFERENCE_BACKEND (those only for `other_accuracy_models`, None = all).
    `retrieval_models` (None = all): the models served for retrieval tasks (models that serve the
    same encoder would repeat the same figures).
    `server_common` (a fraction; None = none): on every Server backend, each model is also offered
    that fraction of COMMON_LOAD_MODEL's Offline samples/s, in every round (round 0 right after its
    other Server cells): the Server ratios with a range."""

    models: Sequence[str]
    tasks: Sequence[str]
    backends: Sequence[str]
    scenarios: Sequence[str]
    latency_tasks: Sequence[str] | None = None
    accuracy_backends: Sequence[str] = ()
    server_fractions: Sequence[float] = ()
    server_qps: str = "fraction"  # "fraction" or "peak"
    server_backends: Sequence[str] | None = None
    seeds: Sequence[int] = ()
    seed_models: Sequence[str] = ("full", "adapter")
    rounds: int = 1
    perf_tasks: Sequence[str] | None = None
    retrieval_models: Sequence[str] | None = None
    other_accuracy_models: Sequence[str] | None = None
    server_common: float | None = None
    server_models: Sequence[str] | None = None


def plan_cells(g: Grid) -> list[Cell]:
    """The ordered cells of grid `g`. Order: per task, per model, per backend: Offline, SingleStream,
    Server..., accuracy; then the task's other rounds; then its seed cells."""
    for b in (*g.backends, *g.accuracy_backends):
        lookup("backend variant", b, BACKEND_VARIANTS)
    for sc in g.scenarios:
        lookup("scenario", sc, dict.fromkeys(SCENARIOS))
    for name in g.models:
        model_registry.get_model_spec(name)
    for name in g.tasks:
        get_task_class(name)
    cells: list[Cell] = []
    for task in g.tasks:
        latency = g.latency_tasks is None or task in g.latency_tasks
        perf = g.perf_tasks is None or task in g.perf_tasks
        retrieval = get_task_class(task).kind == "retrieval"
        task_models = [
            m for m in g.models if not retrieval or g.retrieval_models is None or m in g.retrieval_models
        ]

        serves = {  # (model, backend) pairs with Server cells on this task
            (m, b)
            for m in task_models
            for b in g.backends
            if perf
            and latency
            and "Server" in g.scenarios
            and (g.server_backends is None or b in g.server_backends)
            and (g.server_models is None or m in g.server_models)
        }
        for model in task_models:
            for backend in g.backends:
                server = (model, backend) in serves
                needs_offline = server and g.server_qps == "fraction"
                if perf and ("Offline" in g.scenarios or needs_offline):
                    cells.append(Cell(model, task, backend, "Offline", "performance"))
                if perf and "SingleStream" in g.scenarios and latency:
                    cells.append(Cell(model, task, backend, "SingleStream", "performance"))
                if server:
                    fractions = [None] if g.server_qps == "peak" else list(g.server_fractions)
                    cells += [Cell(model, task, backend, "Server", "performance", f) for f in fractions]
                    cells += common_load_cells(model, task, backend, task_models, g.server_common, 0)
                other_ok = perf and (g.other_accuracy_models is None or model in g.other_accuracy_models)
                if backend in g.accuracy_backends and (backend == REFERENCE_BACKEND or other_ok):
                    cells.append(Cell(model, task, backend, "Offline", "accuracy"))
        for r in range(1, g.rounds if perf else 1):
            k = r % max(len(task_models), 1)  # round r starts at the r-th model: none always first
            for model in task_models[k:] + task_models[:k]:
                for backend in g.backends:
                    cells += [
                        Cell(model, task, backend, sc, "performance", round=r)
                        for sc in ("Offline", "SingleStream")
                        if sc in g.scenarios and (sc == "Offline" or latency)
                    ]
                    if (model, backend) in serves:
                        cells += common_load_cells(model, task, backend, task_models, g.server_common, r)
        if task == SEED_TASK:
            cells += [
                Cell(m, task, REFERENCE_BACKEND, "Offline", "accuracy", seed=seed)
                for seed in g.seeds
                if seed
                for m in g.seed_models
                if m in g.models
            ]
    return cells


def common_load_cells(
    model: str, task: str, backend: str, task_models: Sequence[str], fraction: float | None, round_: int
) -> list[Cell]:
    """The common-load Server cell of `model` in `round_` (none without a fraction, or when
    COMMON_LOAD_MODEL, whose Offline rate sets the load, is not among the task's models)."""
    if fraction is None or COMMON_LOAD_MODEL not in task_models:
        return []
    return [
        Cell(
            model,
            task,
            backend,
            "Server",
            "performance",
            fraction,
            round=round_,
            load_of=COMMON_LOAD_MODEL,
        )
    ]


def estimate_seconds(cells: Sequence[Cell], s: StudySettings) -> float:
    """Expected wall time of `cells` from the encoder's rates (research/rates.toml): a planning
    figure, not a promise. A find_peak Server cell counts as PEAK.trials runs plus PEAK.longer_s
    of longer trials. An Offline query is sized to 1.1 x duration x target_qps and lasts
    `offline_stretch` times 1.1 x duration; SingleStream and Server runs last their duration (a
    60 s common-load cell took 66 s)."""
    rates = RATES.get(s.encoder, RATES["e5-small"])
    total = 0.0
    for c in cells:
        if c.mode == "accuracy":
            run = rates.accuracy_s.get(c.task, 300.0) * language_share(c.task, s.languages)
            run += rates.seed_training_s if c.seed else 0.0
        else:
            trials = PEAK.trials if c.subcommand == "find_peak" else 1
            offline = c.scenario == "Offline"
            length = c.duration_s(s) * (1.1 * rates.offline_stretch.get(c.task, 1.0) if offline else 1.0)
            run = trials * (length + 1.0 + rates.start_s) - rates.start_s
            run += PEAK.longer_s if c.subcommand == "find_peak" else 0.0
        total += rates.start_s + run
    return total


def measured_seconds(cell: Cell, s: StudySettings) -> float | None:
    """The wall time a finished `cell` took, from its marker (None when the marker predates it)."""
    wall = json.loads((result_folder(cell, s) / MARKER).read_text()).get("wall_s")
    return float(wall) if isinstance(wall, int | float) else None


def time_by_group(
    cells: Sequence[Cell], done: dict[str, float | None], s: StudySettings
) -> dict[str, tuple[int, float, float, float, float]]:
    """Per kind of cell (task, scenario, mode; find_peak, common load and seed cells apart), over
    the timed finished ones in `done` (name -> wall seconds): count, measured seconds, planned
    seconds, the median and the longest cell's seconds, the largest measured first."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for c in cells:
        if done.get(c.name) is None:
            continue
        kind = "find_peak" if c.subcommand == "find_peak" else "common load" if c.load_of else ""
        label = " ".join(filter(None, (c.task, c.scenario, c.mode, kind, "seeds" if c.seed else "")))
        groups.setdefault(label, []).append((done[c.name], estimate_seconds([c], s)))
    rows = {}
    for g, v in groups.items():
        walls = [w for w, _ in v]
        rows[g] = (len(v), sum(walls), sum(e for _, e in v), statistics.median(walls), max(walls))
    return dict(sorted(rows.items(), key=lambda kv: -kv[1][1]))


def language_share(task: str, languages: Sequence[str]) -> float:
    """The share of `task`'s languages among `languages` (1 when empty): an accuracy pass scales
    with it."""
    every = get_task_class(task).languages
    return len(set(languages) & set(every)) / len(every) if languages else 1.0


def result_folder(cell: Cell, s: StudySettings) -> Path:
    """The run folder holding the cell's results: the contract's, or for a find_peak Server cell the
    newest trial run folder find_peak wrote for the cell's model and task."""
    if cell.subcommand == "find_peak":
        trials = peak_folder(cell, s).glob(f"{SERVER_TRIAL}*/**/results.json")
        found = sorted(trials, key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1].parent
    return cell.run_folder(s)


def peak_folder(cell: Cell, s: StudySettings) -> Path:
    """Where find_peak keeps a Server cell's trials and find_peak.json."""
    return search_folder(cell.config(s))


def results_of(folder: Path) -> Results | None:
    """The results of the run folder `folder`; None when it holds no finished run."""
    try:
        return RunRecord.load(folder).results
    except (FileNotFoundError, ValueError):  # ValueError: a file cut short (JSON not readable)
        return None


def is_done(cell: Cell, s: StudySettings) -> bool:
    """A cell is done when its run folder has results and a marker with the same settings."""
    folder = result_folder(cell, s)
    marker = folder / MARKER
    if results_of(folder) is None or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("settings") == cell.settings_key(s)
    except json.JSONDecodeError:
        return False


def offline_throughput(cell: Cell, s: StudySettings) -> float | None:
    """samples/s of the Offline performance run (round 0) of the cell's variant, or of its `load_of`
    model's (None if missing/unreadable)."""
    off = Cell(cell.load_of or cell.model, cell.task, cell.backend, "Offline", "performance")
    res = results_of(off.run_folder(s))
    return float(res.samples_per_second) if res and res.samples_per_second else None


def cell_config(cell: Cell, s: StudySettings) -> RunConfig:
    """The run of `cell` with its derived user.conf (Server: a fraction of the variant's Offline
    samples/s; Offline: the study's offline_qps). LookupError when a Server cell's Offline
    throughput is not available."""
    if cell.qps_fraction is not None:
        sps = offline_throughput(cell, s)
        if sps is None:
            raise LookupError(f"{cell.name}: no Offline result to derive the Server target_qps from")
        return cell.config(s, cell_user_conf(cell, s, max(0.1, cell.qps_fraction * sps)))
    if cell.scenario == "Offline" and cell.mode == "performance" and offline_qps(cell, s):
        return cell.config(s, cell_user_conf(cell, s, offline_qps(cell, s)))
    return cell.config(s)


def offline_qps(cell: Cell, s: StudySettings) -> float:
    """The Offline target_qps the study sets for `cell` (0 = leave user.conf's)."""
    if s.offline_qps is not None:
        return s.offline_qps
    rates = RATES.get(s.encoder)
    return rates.offline_target(cell.task, cell.backend) if rates else 0.0


def cell_user_conf(cell: Cell, s: StudySettings, target_qps: float) -> Path:
    """A copy of the base user.conf with the cell's target_qps appended (LoadGen timing knobs live in
    user.conf only; a later line overrides an earlier one). Written under runs_dir/user_confs."""
    of = f"{cell.load_of}'s " if cell.load_of else ""
    why = (
        f"{cell.qps_fraction:g} x {of}Offline samples/s"
        if cell.qps_fraction is not None
        else "offline_qps"
    )
    line = f"{cell.config(s).loadgen_model_name}.{cell.scenario}.target_qps = {target_qps:.2f}"
    dest = s.runs_dir / "user_confs" / f"{cell.name}.conf"
    return user_conf_with(s.user_conf, [line], dest, f"study: {why}")


def peak_bounds(cell: Cell, s: StudySettings) -> list[str]:
    """find_peak's bisection bounds for a Server cell: PEAK.bounds x the variant's Offline samples/s
    (no doubling search from 1 QPS), when that Offline run exists; else none (find_peak's defaults)."""
    if cell.subcommand != "find_peak" or (sps := offline_throughput(cell, s)) is None:
        return []
    low, high = PEAK.bounds
    return ["--low", f"{low * sps:.2f}", "--high", f"{high * sps:.2f}", "--steps", str(PEAK.trials)]


def run_cell(cell: Cell, s: StudySettings) -> dict[str, Any]:
    """Run one cell as a subprocess; log its output; write the marker on success. Never raises for a
    failing cell: returns {"cell", "rc", "wall_s", "error"?} so the study goes on."""
    log_dir = s.runs_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    record: dict[str, Any] = {"cell": cell.name}
    try:
        cfg = built(cell_config(cell, s))  # harness run only serves: the cell's zoo stages first
    except (LookupError, ValueError) as exc:  # a name, or a stage that cannot be built
        return {**record, "rc": None, "wall_s": round(time.perf_counter() - t0, 1), "error": str(exc)}
    run = launch(
        cfg,
        log_dir / f"{cell.name}.log",
        command=cell.subcommand,
        more_flags=[*peak_bounds(cell, s), *s.run_args],
        python=s.python,
        timeout_s=s.cell_timeout_s,
    )
    rc = run.rc
    record.update(rc=rc, wall_s=round(time.perf_counter() - t0, 2))
    folder = result_folder(cell, s)
    # a search that finished without a VALID trial is a result (find_peak.json says so), not a failure
    searched = (
        rc == INVALID
        and cell.subcommand == "find_peak"
        and (peak_folder(cell, s) / PEAK_RECORD).is_file()
    )
    if searched:
        record["note"] = "no VALID trial"
    if (rc == 0 or searched) and results_of(folder) is not None:
        marker = {"settings": cell.settings_key(s), "argv": run.argv, "wall_s": record["wall_s"]}
        (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    elif rc == 0:
        record["error"] = f"exit 0 but no results.json in {folder}"
    else:
        record["error"] = f"exit {rc}; see {log_dir / (cell.name + '.log')}"
    with open(s.runs_dir / "study_log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def run_study(cells: Sequence[Cell], s: StudySettings, progress: bool = True) -> list[dict[str, Any]]:
    """Run every cell not already done, in order, with a tqdm bar over cells. Returns the records of
    the cells run (skipped cells get {"cell", "skipped": True})."""
    s.runs_dir.mkdir(parents=True, exist_ok=True)
    records = []
    bar = tqdm(cells, desc="study cells", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(cell.name, refresh=False)
        if is_done(cell, s):
            records.append({"cell": cell.name, "skipped": True})
            continue
        records.append(run_cell(cell, s))
    return records


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _Preset(argparse.Action):
    """--preset NAME: the flags of research/grids/NAME.toml, where --preset appears (flags after it
    override them); a file that does not match the study's flags is one `error:` line, exit 3."""

    def __call__(self, parser, namespace, value, option_string=None):
        try:
            flags = load_preset(value, parser)
        except DataFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            parser.exit(BAD_INPUT)
        for key, preset_value in flags.items():
            setattr(namespace, key, preset_value)
        setattr(namespace, self.dest, value)


def preset(name: str) -> dict[str, Any]:
    """The flag values of preset `name` (research/grids/NAME.toml), checked against this parser."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return load_preset(name, parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--preset",
        action=_Preset,
        choices=preset_names(),
        default=None,
        help="a named grid, research/grids/NAME.toml (e5-small: the whole study, about 3 h 4 min; "
        "e5-small-quick: under 20 min); put it first: flags after it override it",
    )
    a("--models", type=_csv, default=list(MODELS), help=f"comma list (default: all, {','.join(MODELS)})")
    a("--tasks", type=_csv, default=list(TASKS), help="comma list (default: xnli,tydiqa,tatoeba,bucc)")
    a("--backends", type=_csv, default=list(BACKEND_VARIANTS), help="comma list of backend variants")
    a("--scenarios", type=_csv, default=list(SCENARIOS), help="comma list of LoadGen scenarios")
    a(
        "--latency_tasks",
        type=_csv,
        default=["xnli"],
        help="tasks that also get SingleStream and Server ('all' = every task); default xnli",
    )
    a(
        "--accuracy_backends",
        type=_csv,
        default=["pytorch", "onnxruntime-int8"],
        help="backend variants that get an accuracy run ('all', or 'none' = no accuracy runs)",
    )
    a(
        "--server_qps",
        choices=("fraction", "peak"),
        default="fraction",
        help="Server offered load: fractions of Offline samples/s, or find_peak's search",
    )
    a(
        "--server_fractions",
        type=lambda v: [float(x) for x in _csv(v)],
        default=[0.5, 0.9],
        help="Server offered loads as fractions of the variant's Offline samples/s",
    )
    a(
        "--server_common",
        type=float,
        default=None,
        help="also offer every model this fraction of full's Offline samples/s in Server, in every "
        "round (a common load: p99 ratios to full with a range)",
    )
    a(
        "--server_models",
        type=_csv,
        default=None,
        help="models with Server cells ('all' = every one, the default)",
    )
    a(
        "--server_backends",
        type=_csv,
        default=["pytorch", "onnxruntime-int8"],
        help="backend variants that get Server runs ('all' = every one)",
    )
    a(
        "--seeds",
        type=lambda v: [int(x) for x in _csv(v)],
        default=[0],
        help="training seeds: seeds other than 0 add PyTorch accuracy cells of --seed_models on XNLI, "
        "served from that seed's zoo (built on first use; training noise)",
    )
    a("--seed_models", type=_csv, default=["full", "adapter"], help="models trained with every seed")
    a(
        "--perf_tasks",
        type=_csv,
        default=None,
        help="tasks with performance cells and non-PyTorch accuracy cells (default: all)",
    )
    a(
        "--retrieval_models",
        type=_csv,
        default=None,
        help="models run on retrieval tasks (default: all; models serving one encoder repeat a figure)",
    )
    a(
        "--other_accuracy_models",
        type=_csv,
        default=None,
        help="models with accuracy cells on backends other than pytorch (default: all)",
    )
    a(
        "--rounds",
        type=int,
        default=1,
        help="interleaved repeats of the Offline/SingleStream performance cells (ratios with spread)",
    )
    a(
        "--duration",
        type=float,
        default=3.0,
        help="performance-run min_duration in seconds (600 official)",
    )
    a(
        "--offline_qps",
        type=float,
        default=None,
        help="Offline target_qps written to each Offline cell's user.conf (default: per task for tiny, "
        "research/rates.toml; 0 = user.conf's)",
    )
    a("--count", type=int, default=None, help="passed to the runner as --count")
    a(
        "--languages",
        type=_csv,
        default=[],
        help="serve only these languages in every cell (default all)",
    )
    a("--threads", type=int, default=0, help="intra-op threads (0 = library default)")
    a("--encoder", default="tiny")
    a("--runs_dir", type=Path, default=BUILD / "study")
    a("--out", type=Path, default=REPO / "reports")
    a("--cell_timeout", type=float, default=900.0, help="seconds before a cell's process is killed")
    a("--run_args", default="", help="extra flags passed to every `harness run`, one string")
    a("--plan", action="store_true", help="print the cells and the estimated wall time, run nothing")
    a("--report_only", action="store_true", help="only collect runs_dir into the report")
    a(
        "--from_runs_csv",
        type=Path,
        default=None,
        help="only write the report, from this study_runs.csv instead of runs_dir (the committed "
        "record: no per-sample scores, so no bootstrap intervals)",
    )
    a("--no_progress", action="store_true")


def plan(args: argparse.Namespace) -> tuple[list[Cell], StudySettings]:
    """The cells and settings the parsed command line asks for."""
    settings = StudySettings(
        runs_dir=args.runs_dir,
        duration_s=args.duration,
        encoder=args.encoder,
        count=args.count,
        threads=args.threads,
        run_args=tuple(args.run_args.split()),
        cell_timeout_s=args.cell_timeout,
        offline_qps=args.offline_qps,
        languages=tuple(args.languages),
    )
    grid = {f.name: getattr(args, f.name) for f in fields(Grid)}  # the flags of the same names
    for key in ("latency_tasks", "server_backends", "server_models"):
        grid[key] = None if grid[key] == ["all"] else grid[key]
    acc = ",".join(args.accuracy_backends)
    grid["accuracy_backends"] = {"none": [], "all": args.backends}.get(acc, args.accuracy_backends)
    return plan_cells(Grid(**grid)), settings


def main(args: argparse.Namespace) -> int:
    cells, settings = plan(args)
    est = estimate_seconds(cells, settings)
    print(
        f"study: {len(cells)} cells, estimated {est / 60:.0f} min "
        f"(research/rates.toml for {settings.encoder}: process start + run time)"
    )
    if args.plan:
        done = {c.name: measured_seconds(c, settings) for c in cells if is_done(c, settings)}
        for c in cells:
            wall = done.get(c.name)
            state = "" if c.name not in done else "(done)" if wall is None else f"(done: {wall:.0f} s)"
            print(" ", c.name, state)
        timed = [w for w in done.values() if w is not None]
        rest = estimate_seconds([c for c in cells if c.name not in done], settings)
        print(
            f"study: {len(done)} of {len(cells)} cells done at these settings ({len(timed)} timed, "
            f"{sum(timed) / 60:.0f} min by the wall times in their {MARKER}); estimated "
            f"{rest / 60:.0f} min for the rest"
        )
        for group, (n, wall, est, median, longest) in time_by_group(cells, done, settings).items():
            print(
                f"  {group:<40} {n:>3} cells: measured {wall / 60:5.1f} min (cells: median "
                f"{median:.0f} s, longest {longest:.0f} s), planned {est / 60:5.1f} min"
            )
        return 0
    failed = []
    if not args.report_only and args.from_runs_csv is None:
        t0 = time.perf_counter()
        records = run_study(cells, settings, progress=not args.no_progress)
        failed = [r for r in records if r.get("error")]
        done = sum(1 for r in records if r.get("skipped"))
        print(
            f"study: ran {len(records) - done} cells ({done} already done) in "
            f"{(time.perf_counter() - t0) / 60:.1f} min; {len(failed)} failed"
        )
        for r in failed:
            print(f"  FAILED {r['cell']}: {r['error']}")
    # lazy: the report's pandas, scipy and matplotlib add 2.4 s to the start of every `study`
    # command, --plan included (python -X importtime -c "import research.study", 2 busy cores)
    from research.report import write_report  # noqa: PLC0415

    command = "python -m research study " + " ".join(a for a in sys.argv[2:] if a != "--report_only")
    title = f"Study: full fine-tuning vs adapters, encoder {settings.encoder}"
    written = write_report(settings.runs_dir, args.out, title, command.strip(), args.from_runs_csv)
    for name, path in written.items():
        print(f"  {name:<24} {path}")
    return 1 if failed else 0
