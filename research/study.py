"""`python -m research study`: the full vs adapter efficiency study, one LoadGen test per subprocess.

Every cell of the grid (model x task x backend variant x scenario and mode) is one `python -m harness
run` (or `find_peak`) process writing its run folder under `--runs_dir`; a finished cell leaves
`study_cell.json` (its settings), so a rerun skips it. At the end research/report.py writes the
report. The grid, the presets and the planning figures are described in docs/study.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.measure import built
from common.exit_codes import BAD_INPUT, INVALID
from common.names import lookup
from common.paths import BUILD, REPO, repo_relative
from harness import find_peak
from harness.cli import floats, ints, names
from harness.config import RunConfig
from harness.launch import launch
from harness.run_folder import RunFolder
from harness.run_record import Results, RunRecord
from harness.settings import user_conf_with
from models import registry as model_registry
from models.encoders import get_encoder
from models.loaders import DONE
from models.zoo_layout import DEFAULT_TRAIN_DATA, check_train_data, data_models_dir, seed_models_dir
from research.datafiles import MARKER, DataFileError, load_preset, load_rates, preset_names
from sut import registry as sut_registry
from tasks.registry import get_task_class
from tasks.scoring.result import keep_gzipped
from zoo.choice import read_selections
from zoo.recipe import DATA_TASK, SELECTED_KEYS, SIZES, data_words, stages_for_run

# study backend label -> (runner --backend, --dtype). One lookup, no branching on names elsewhere.
BACKEND_VARIANTS: dict[str, tuple[str, str]] = {
    "pytorch": ("pytorch", "fp32"),
    "onnxruntime": ("onnxruntime", "fp32"),
    "onnxruntime-int8": ("onnxruntime", "int8"),
}
# the study's arms: the registry's DEFAULT_MODELS (its newer arms join when the study's design does)
MODELS = model_registry.DEFAULT_MODELS
TASKS = ("xnli", "tydiqa", "tatoeba", "bucc")  # the default tasks (PAWS-X only on request)
SCENARIOS = sut_registry.SCENARIOS
ROUND_DIR = "round-"  # runs_dir/round-<R>/...: round R of the performance cells (research/collect.py)
PEAK, RATES = load_rates()  # find_peak's search and each encoder's planning figures (rates.toml)
# a cell's process is killed after the longer of --cell_timeout and this many times its planned
# seconds: a hung run ends, and a slow cell on a busy machine is not (Tatoeba cells beside a test
# run were still going at a flat 900 s, over 5x their planned time, and were killed)
CELL_TIMEOUT_STRETCH = 8.0
COMMON_LOAD_MODEL = "full"  # --server_common offers every model a fraction of this one's Offline rate
REFERENCE_BACKEND = "pytorch"  # the fp32 backend every accuracy comparison is made on


def seed_tasks(text: str | None) -> list[tuple[str, int | None]]:
    """--seed_tasks: the tasks whose training noise the study measures with other seeds, a comma list
    of TASK or TASK:N (N: only the first N of --seeds, so a costly task can take fewer), e.g.
    "xnli,tydiqa:2". ValueError names a bad item (argparse and the presets report it)."""
    out: list[tuple[str, int | None]] = []
    for item in names(text):
        task, _, n = item.partition(":")
        get_task_class(task)  # ValueError listing the known tasks
        if n and not (n.isdigit() and int(n) >= 1):
            raise ValueError(f"{item!r}: N in TASK:N must be a whole number >= 1")
        out.append((task, int(n) if n else None))
    return out


def paths(text: str | None) -> tuple[Path, ...]:
    """--selected: a comma list of files (empty: none)."""
    return tuple(Path(p) for p in names(text))


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
    # the zoo every cell serves (None: the encoder's default folder), seed k's beside it
    # (models.zoo_layout.seed_models_dir); `selected`: selections' files (zoo/choice.py, one per
    # task), whose choices the stages a cell builds train with and the stages it finds built must
    # have been trained with
    models_dir: Path | None = None
    selected: tuple[Path, ...] = ()
    # the zoo's training data (models/zoo_layout.py TRAIN_DATA): other than the default, every cell
    # serves that option's zoo, `-<option>` beside the zoo above (data_models_dir), its seeds beside
    # it, and builds its XNLI target stages on that data
    train_data: str = DEFAULT_TRAIN_DATA


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
        """The runner's --output_dir (other seeds, rounds and Server loads get their own)."""
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
        """min_duration of the cell's runs: at least PEAK.trial_s for searches and common-load Server
        runs, --duration for other performance runs, None (one pass) for accuracy runs."""
        if self.mode != "performance":
            return None
        long = self.subcommand == "find_peak" or self.load_of is not None
        return max(s.duration_s, PEAK.trial_s) if long else s.duration_s

    def config(self, s: StudySettings, user_conf: Path | None = None) -> RunConfig:
        """The run of this cell (`cell_config` adds its user.conf); performance runs may be INVALID."""
        backend, dtype = BACKEND_VARIANTS[self.backend]
        perf = self.mode == "performance"
        moved = self.seed or s.train_data != DEFAULT_TRAIN_DATA  # not the encoder's default zoo
        base = s.models_dir or (get_encoder(s.encoder).default_models_dir(BUILD) if moved else None)
        base = data_models_dir(base, s.train_data) if base else None  # another training data's zoo
        zoo = str(seed_models_dir(base, self.seed)) if base else None  # another seed's zoo
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
            count=s.count if perf and self.subcommand == "run" else None,
            threads=s.threads,
            user_conf=user_conf or s.user_conf,
            languages=",".join(s.languages) or None,
            models_dir=zoo,
        )

    def run_folder(self, s: StudySettings) -> Path:
        """Where the runner writes this cell (harness.run_folder.RunFolder.plan)."""
        return RunFolder.plan(self.config(s)).path

    def settings_key(self, s: StudySettings) -> dict[str, Any]:
        """Everything that changes the result: a finished cell is reused only if this matches."""
        search = self.subcommand == "find_peak"
        fp = find_peak
        trials = [*PEAK.bounds, PEAK.trials, fp.EARLY_STOPPING_MARGIN, fp.LONGER_TRIALS, fp.MAX_TRIAL_S]
        cell = {k: v for k, v in asdict(self).items() if v is not None or k != "load_of"}
        offline = self.scenario == "Offline" and self.mode == "performance"
        return (
            ({"peak_search": trials} if search else {})
            | {
                "cell": cell,  # load_of only where set: markers written before it existed still match
                "duration_s": self.duration_s(s),
                "encoder": s.encoder,
                "count": s.count,
                "languages": list(s.languages),
                "threads": s.threads,
                "run_args": list(s.run_args),
                "server_qps": "peak" if search else None,
                "offline_qps": offline_qps(self, s) if offline else None,
            }
            | self.selection_key(s)
        )

    def selection_key(self, s: StudySettings) -> dict[str, Any]:
        """The zoo a cell serves, where not the encoder's default, its training data where not the
        default, and the selection's choice of its stage: a cell done on other weights is not done
        (none of this where none is set, so markers written before these flags existed still
        match). The zoo is named relative to the repository where it lies inside it, so a marker
        committed on one checkout matches on another."""
        key: dict[str, Any] = {"models_dir": repo_relative(s.models_dir)} if s.models_dir else {}
        if s.train_data != DEFAULT_TRAIN_DATA:
            key["train_data"] = s.train_data
        if s.selected:
            chosen = (choices(s) or {}).get(self.task, {}).get(self.model)
            key["selection"] = {k: chosen[k] for k in SELECTED_KEYS} if chosen else None
        return key


@dataclass(frozen=True)
class Grid:
    """Which cells a study runs (`plan_cells`): the command line's flags of the same names, None
    meaning every one (docs/study.md says what each selects)."""

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
    seed_models: Sequence[str] | None = None  # None: every model the task runs
    seed_tasks: Sequence[tuple[str, int | None]] = (("xnli", None),)
    rounds: int = 1
    perf_tasks: Sequence[str] | None = None
    retrieval_models: Sequence[str] | None = None
    other_accuracy_models: Sequence[str] | None = None
    server_common: float | None = None
    server_models: Sequence[str] | None = None


def plan_cells(g: Grid) -> list[Cell]:
    """The ordered cells of grid `g`: per task, per model, per backend: Offline, SingleStream,
    Server..., accuracy; then the task's other rounds (round r starts at the r-th model); then its
    seed cells."""
    for b in (*g.backends, *g.accuracy_backends):
        lookup("backend variant", b, BACKEND_VARIANTS)
    for sc in g.scenarios:
        lookup("scenario", sc, dict.fromkeys(SCENARIOS))
    for name in g.models:
        model_registry.get_model_spec(name)
    cells: list[Cell] = []
    for task in g.tasks:
        latency = g.latency_tasks is None or task in g.latency_tasks
        perf = g.perf_tasks is None or task in g.perf_tasks
        kind = get_task_class(task).kind
        retrieval = kind == "retrieval"
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
                if perf and ("Offline" in g.scenarios or server and g.server_qps == "fraction"):
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
        if task in (seeded := dict(g.seed_tasks)):
            chosen = [  # a model serving the pretrained encoder here: its one figure is every seed's
                m
                for m in task_models
                if (g.seed_models is None or m in g.seed_models)
                and not model_registry.get_model_spec(m).pretrained_for(kind)
            ]
            seeds = [k for k in list(g.seeds)[: seeded[task]] if k]  # seed 0: the cells above
            cells += [
                Cell(m, task, REFERENCE_BACKEND, "Offline", "accuracy", seed=k)
                for k in seeds
                for m in chosen
            ]
    return cells


def common_load_cells(
    model: str, task: str, backend: str, task_models: Sequence[str], fraction: float | None, round_: int
) -> list[Cell]:
    """The common-load Server cell of `model` in `round_` (none without a fraction, or when
    COMMON_LOAD_MODEL, whose Offline rate sets the load, is not among the task's models)."""
    if fraction is None or COMMON_LOAD_MODEL not in task_models:
        return []
    return [Cell(model, task, backend, "Server", "performance", fraction, 0, round_, COMMON_LOAD_MODEL)]


def estimate_seconds(cells: Sequence[Cell], s: StudySettings) -> float:
    """Expected wall time of `cells` from the encoder's rates (research/rates.toml; docs/study.md,
    "Planning"): a planning figure, not a promise."""
    rates = RATES.get(s.encoder, RATES["e5-small"])
    total = 0.0
    for c in cells:
        if c.mode == "accuracy":
            every = get_task_class(c.task).languages
            share = len(set(s.languages) & set(every)) / len(every) if s.languages else 1.0
            run = rates.accuracy_s.get(c.task, 300.0) * share
        else:
            trials = PEAK.trials if c.subcommand == "find_peak" else 1
            offline = c.scenario == "Offline"
            length = c.duration_s(s) * (1.1 * rates.offline_stretch.get(c.task, 1.0) if offline else 1.0)
            run = trials * (length + 1.0 + rates.start_s) - rates.start_s
            run += PEAK.longer_s if c.subcommand == "find_peak" else 0.0
        total += rates.start_s + run
    return total


def zoo_training(cells: Sequence[Cell], s: StudySettings) -> tuple[float, int, int]:
    """(minutes, stages, of which not measured) of the zoo training the cells need first: every
    stage they serve that is not built yet, once per zoo (a seed's SQuAD stage serves all its
    tasks), at the zoo's measured stage times (zoo/recipe.py `stages_for_run`), a target stage
    that trains with the selection's choice scaled by its epochs over the recipe's."""
    encoder = get_encoder(s.encoder)
    chosen, recipe = choices(s) or {}, dict(SIZES.get(encoder.name, SIZES["tiny"]).target_epochs)
    todo: dict[Path, float | None] = {}
    for c in cells:
        zoo = Path(c.config(s).models_dir or encoder.default_models_dir(BUILD))
        for stage in stages_for_run(c.model, c.task, encoder.name, s.train_data):
            folder = zoo / stage.folder
            if folder in todo or (folder / DONE).exists():
                continue
            choice = (
                chosen.get(c.task, {}).get(c.model) if stage.folder == f"{c.model}/{c.task}" else None
            )
            scale = choice["epochs"] / recipe[c.task] if choice and c.task in recipe else 1.0
            todo[folder] = stage.minutes * scale if stage.minutes is not None else None
    minutes = sum(m for m in todo.values() if m is not None)
    return minutes, len(todo), sum(m is None for m in todo.values())


def result_folder(cell: Cell, s: StudySettings) -> Path:
    """The run folder holding the cell's results (a search's: the newest trial find_peak wrote)."""
    if cell.subcommand == "find_peak":
        trials = find_peak.search_folder(cell.config(s)).glob(
            f"{find_peak.SERVER_TRIAL}*/**/results.json"
        )
        found = sorted(trials, key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1].parent
    return cell.run_folder(s)


def results_of(folder: Path) -> Results | None:
    """The results of the run folder `folder`; None when it holds no finished run."""
    try:
        return RunRecord.load(folder).results
    except (FileNotFoundError, ValueError):  # ValueError: a file cut short (JSON not readable)
        return None


def is_done(cell: Cell, s: StudySettings) -> bool:
    """A cell is done when its run folder has results and a marker with the same settings."""
    folder = result_folder(cell, s)
    if results_of(folder) is None or not (folder / MARKER).is_file():
        return False
    try:
        return json.loads((folder / MARKER).read_text()).get("settings") == cell.settings_key(s)
    except json.JSONDecodeError:
        return False


def choices(s: StudySettings) -> dict[str, dict[str, dict]] | None:
    """task -> model -> the choice of `s.selected`'s files (zoo/choice.py read_selections), None
    without one."""
    return read_selections(s.selected, s.encoder) if s.selected else None


def offline_throughput(cell: Cell, s: StudySettings) -> float | None:
    """samples/s of the round-0 Offline run of the cell's variant, or of its `load_of` model's."""
    off = Cell(cell.load_of or cell.model, cell.task, cell.backend, "Offline", "performance")
    res = results_of(off.run_folder(s))
    return float(res.samples_per_second) if res and res.samples_per_second else None


def cell_config(cell: Cell, s: StudySettings) -> RunConfig:
    """The run of `cell` with its derived user.conf (Server: a fraction of an Offline rate, or
    LookupError without one; Offline: offline_qps), a copy of the base one with one line appended."""
    if cell.qps_fraction is not None:
        if (sps := offline_throughput(cell, s)) is None:
            raise LookupError(f"{cell.name}: no Offline result to derive the Server target_qps from")
        qps, of = max(0.1, cell.qps_fraction * sps), f"{cell.load_of}'s " if cell.load_of else ""
        why = f"{cell.qps_fraction:g} x {of}Offline samples/s"
    elif cell.scenario == "Offline" and cell.mode == "performance" and offline_qps(cell, s):
        qps, why = offline_qps(cell, s), "offline_qps"
    else:
        return cell.config(s)
    line = f"{cell.config(s).loadgen_model_name}.{cell.scenario}.target_qps = {qps:.2f}"
    dest = s.runs_dir / "user_confs" / f"{cell.name}.conf"
    return cell.config(s, user_conf_with(s.user_conf, [line], dest, f"study: {why}"))


def offline_qps(cell: Cell, s: StudySettings) -> float:
    """The Offline target_qps the study sets for `cell` (0 = leave user.conf's)."""
    if s.offline_qps is not None:
        return s.offline_qps
    rates = RATES.get(s.encoder)
    return rates.offline_target(cell.task, cell.backend) if rates else 0.0


def peak_bounds(cell: Cell, s: StudySettings) -> list[str]:
    """find_peak's bisection bounds for a search cell: PEAK.bounds x the variant's Offline samples/s
    when that run exists, else none (find_peak's defaults)."""
    if cell.subcommand != "find_peak" or (sps := offline_throughput(cell, s)) is None:
        return []
    low, high = PEAK.bounds
    return ["--low", f"{low * sps:.2f}", "--high", f"{high * sps:.2f}", "--steps", str(PEAK.trials)]


def portable(argv: Sequence[str]) -> list[str]:
    """A command line as a committed marker keeps it: paths inside the repository relative to it
    (the same text on any checkout), the rest as given."""
    return [a.removeprefix(f"{REPO}/") for a in argv]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children waited for so far: a cell's
    cost in core-seconds, training included (a paused process spends none)."""
    own, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cell_timeout(cell: Cell, s: StudySettings) -> float:
    """Seconds of wall time before `cell`'s process is killed (CELL_TIMEOUT_STRETCH)."""
    return max(s.cell_timeout_s, CELL_TIMEOUT_STRETCH * estimate_seconds([cell], s))


def run_cell(cell: Cell, s: StudySettings) -> dict[str, Any]:
    """Run one cell as a subprocess; log its output; write the marker on success. Never raises for a
    failing cell: returns {"cell", "rc", "wall_s", "error"?} so the study goes on."""
    log = s.runs_dir / "logs" / f"{cell.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    record: dict[str, Any] = {"cell": cell.name}
    try:
        cfg = built(cell_config(cell, s), selected=choices(s))  # harness run only serves: stages first
    except (LookupError, ValueError) as exc:  # a name, or a stage that cannot be built
        return {**record, "rc": None, "wall_s": round(time.perf_counter() - t0, 1), "error": str(exc)}
    flags = [*peak_bounds(cell, s), *s.run_args]
    run = launch(
        cfg,
        log,
        command=cell.subcommand,
        more_flags=flags,
        python=s.python,
        timeout_s=cell_timeout(cell, s),
    )
    record.update(
        rc=run.rc, wall_s=round(time.perf_counter() - t0, 2), cpu_s=round(cpu_seconds() - cpu0, 2)
    )
    folder = result_folder(cell, s)
    # a search that finished without a VALID trial is a result (find_peak.json says so), not a failure
    searched = (
        run.rc == INVALID
        and cell.subcommand == "find_peak"
        and (find_peak.search_folder(cell.config(s)) / find_peak.RECORD).is_file()
    )
    if searched:
        record["note"] = "no VALID trial"
    if (run.rc == 0 or searched) and results_of(folder) is not None:
        keep_gzipped(folder)  # the per-sample scores a run folder kept in the repository holds
        times = {k: record[k] for k in ("wall_s", "cpu_s")}
        marker = {"settings": cell.settings_key(s), "argv": portable(run.argv), **times}
        (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    elif run.rc == 0:
        record["error"] = f"exit 0 but no results.json in {folder}"
    else:
        record["error"] = f"exit {run.rc}; see {log}"
    with open(s.runs_dir / "study_log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def run_study(cells: Sequence[Cell], s: StudySettings, progress: bool = True) -> list[dict[str, Any]]:
    """Run every cell not already done, in order (skipped cells: {"cell", "skipped": True})."""
    s.runs_dir.mkdir(parents=True, exist_ok=True)
    records = []
    bar = tqdm(cells, desc="study cells", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(cell.name, refresh=False)
        done = is_done(cell, s)
        records.append({"cell": cell.name, "skipped": True} if done else run_cell(cell, s))
    return records


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


# flag -> (type, default, help): every option of the study that takes a value
OPTIONS: dict[str, tuple[Any, Any, str]] = {
    "models": (names, list(MODELS), "comma list of MODEL= names (default: all)"),
    "tasks": (names, list(TASKS), "comma list (default: xnli,tydiqa,tatoeba,bucc)"),
    "backends": (names, list(BACKEND_VARIANTS), "comma list of backend variants"),
    "scenarios": (names, list(SCENARIOS), "comma list of LoadGen scenarios"),
    "latency_tasks": (names, ["xnli"], "tasks that also get SingleStream and Server ('all')"),
    "accuracy_backends": (names, ["pytorch", "onnxruntime-int8"], "accuracy backends ('all', 'none')"),
    "server_qps": (str, "fraction", "Server load: fractions of Offline, or 'peak'"),
    "server_fractions": (floats, [0.5, 0.9], "Server loads, x the variant's Offline rate"),
    "server_common": (float, None, "a Server load for all, x full's Offline rate"),
    "server_models": (names, None, "models with Server cells (default: all)"),
    "server_backends": (names, ["pytorch", "onnxruntime-int8"], "backends with Server cells ('all')"),
    "seeds": (
        ints,
        [0],
        "training seeds: other than 0, accuracy cells of --seed_models on --seed_tasks",
    ),
    "seed_tasks": (
        seed_tasks,
        [("xnli", None)],
        "tasks with seed cells, TASK or TASK:N (the first N seeds)",
    ),
    "seed_models": (names, None, "models trained with every seed (default: every model)"),
    "models_dir": (Path, None, "the zoo served (default: the encoder's; seed k's beside it, -seed<k>)"),
    "selected": (
        paths,
        (),
        "selections' selected.toml files, comma-separated, one per task: the zoo's stages train "
        "with their choices",
    ),
    "train_data": (
        str,
        None,
        "the zoo's training data: xnli (default), xnli+snli5k, xnli+snli (XNLI only); other than xnli, "
        "its zoo, runs_dir and out get a -<option> suffix",
    ),
    "perf_tasks": (names, None, "tasks with performance and non-PyTorch accuracy cells (default: all)"),
    "retrieval_models": (names, None, "models run on retrieval tasks (default: all)"),
    "other_accuracy_models": (names, None, "models with accuracy cells off PyTorch (default: all)"),
    "rounds": (int, 1, "interleaved repeats of the Offline/SingleStream performance cells"),
    "duration": (float, 3.0, "performance-run min_duration in seconds (600 official)"),
    "offline_qps": (float, None, "Offline target_qps (default: research/rates.toml's; 0: user.conf's)"),
    "count": (int, None, "passed to the runner as --count"),
    "languages": (names, [], "serve only these languages in every cell (default all)"),
    "threads": (int, 0, "intra-op threads (0 = library default)"),
    "encoder": (str, "tiny", "the encoder of the zoo served"),
    "runs_dir": (Path, BUILD / "study", "where the cells' run folders go"),
    "out": (Path, REPO / "reports", "where the report goes"),
    "cell_timeout": (
        float,
        900.0,
        f"seconds before a cell's process is killed (or {CELL_TIMEOUT_STRETCH:g}x its planned time)",
    ),
    "run_args": (str, "", "extra flags passed to every `harness run`, one string"),
    "from_runs_csv": (Path, None, "only write the report, from this study_runs.csv"),
}
SWITCHES = {
    "plan": "print the cells and the estimated wall time, run nothing",
    "report_only": "only collect runs_dir into the report",
    "no_progress": "no progress bar",
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        action=_Preset,
        choices=preset_names(),
        help="a named grid, research/grids/NAME.toml; put it first: flags after it override it",
    )
    for name, (kind, default, text) in OPTIONS.items():
        choices = ("fraction", "peak") if name == "server_qps" else None
        parser.add_argument(f"--{name}", type=kind, default=default, choices=choices, help=text)
    for name, text in SWITCHES.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)


def study_train_data(args: argparse.Namespace) -> str:
    """--train_data (default xnli), checked: ValueError for an unknown option, or for another option
    than the default with a task other than XNLI (SNLI pairs train XNLI's target stages only: such
    a cell would serve the default zoo's stage again, under the option's name) or with --selected
    (its choices were made on the default data)."""
    option = check_train_data(args.train_data or DEFAULT_TRAIN_DATA)
    if option != DEFAULT_TRAIN_DATA and args.selected:
        raise ValueError(
            f"--selected {','.join(map(str, args.selected))}: its choices were made on the "
            f"{DEFAULT_TRAIN_DATA} training data, not on --train_data {option}: run without --selected"
        )
    if option != DEFAULT_TRAIN_DATA and (others := [t for t in args.tasks if t != DATA_TASK]):
        raise ValueError(
            f"--train_data {option} adds SNLI pairs to {DATA_TASK}'s training rows only, not to "
            f"{', '.join(others)}'s: run those tasks without --train_data (here: --tasks {DATA_TASK})"
        )
    return option


def plan(args: argparse.Namespace) -> tuple[list[Cell], StudySettings]:
    """The cells and settings the parsed command line asks for (another training data than the
    default: its runs in <runs_dir>-<option>, models/zoo_layout.py data_models_dir)."""
    train_data = study_train_data(args)
    settings = StudySettings(
        runs_dir=data_models_dir(args.runs_dir, train_data),
        duration_s=args.duration,
        encoder=args.encoder,
        count=args.count,
        threads=args.threads,
        run_args=tuple(args.run_args.split()),
        cell_timeout_s=args.cell_timeout,
        offline_qps=args.offline_qps,
        languages=tuple(args.languages),
        models_dir=args.models_dir,
        selected=args.selected,
        train_data=train_data,
    )
    choices(settings)  # a selection file that does not match its schema: ValueError, before any cell
    grid = {f.name: getattr(args, f.name) for f in fields(Grid)}  # the flags of the same names
    for key in ("latency_tasks", "server_backends", "server_models"):
        grid[key] = None if grid[key] == ["all"] else grid[key]
    acc = ",".join(args.accuracy_backends)
    grid["accuracy_backends"] = {"none": [], "all": args.backends}.get(acc, args.accuracy_backends)
    return plan_cells(Grid(**grid)), settings


def print_plan(cells: Sequence[Cell], s: StudySettings) -> None:
    """The cells, those already done at these settings, and the estimate for the rest."""
    done = {c.name for c in cells if is_done(c, s)}
    for c in cells:
        print(" ", c.name, "(done)" if c.name in done else "")
    rest = estimate_seconds([c for c in cells if c.name not in done], s)
    print(f"study: {len(done)} of {len(cells)} cells done at these settings; {rest / 60:.0f} min to go")


def main(args: argparse.Namespace) -> int:
    try:
        cells, settings = plan(args)
    except ValueError as exc:  # an unknown name, a --selected file that does not match its schema
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    est = estimate_seconds(cells, settings)
    out = data_models_dir(args.out, settings.train_data)  # its report beside the default's
    if args.train_data is not None:
        print(
            f"study: training data {settings.train_data} ({data_words(settings.train_data)}): runs "
            f"in {settings.runs_dir}, report in {out}"
        )
    print(
        f"study: {len(cells)} cells, estimated {est / 60:.0f} min "
        f"(research/rates.toml for {settings.encoder}: process start + run time)"
    )
    minutes, stages, unmeasured = zoo_training(cells, settings)
    if stages:
        more = f", {unmeasured} of them not measured (counted as 0)" if unmeasured else ""
        print(
            f"study: first {stages} zoo stage(s) to train, about {minutes:.0f} min at the zoo's "
            f"measured stage times{more} (zoo/recipe.py STAGE_MINUTES)"
        )
    if args.plan:
        print_plan(cells, settings)
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
    label = settings.train_data if args.train_data is not None else None  # asked for: said
    try:
        scope = ({c.model for c in cells}, {c.task for c in cells})  # the plan's runs, not others'
        written = write_report(
            settings.runs_dir, out, title, command.strip(), args.from_runs_csv, label, scope
        )
    except ValueError as exc:  # runs of several training data in one runs_dir
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    for name, path in written.items():
        print(f"  {name:<24} {path}")
    return 1 if failed else 0
