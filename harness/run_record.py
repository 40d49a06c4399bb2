"""What a run folder holds, read back through one typed record (the one reader of run folders).

The runner (harness/runner.py) writes each run folder: run_config.json before the test (what ran,
with which model, weights and code), results.json after it (`harness.results.Results`, which owns
its fields and its loader: what LoadGen measured, plus the harness's own fields) and, for scored
accuracy runs, accuracy.json (tasks/scoring: the task's metrics). `RunRecord.load(folder)` reads the
three back; report, staging, the study, the benchmark and find_peak ask it instead of
probing the JSON themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results import NS_PER_MS, Results
from models.zoo_layout import seed_of_models_dir, train_data_of_models_dir

__all__ = ["NS_PER_MS", "SUPERSEDED", "Results", "RunRecord", "find_records"]


def _json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when the file is absent (a run that ended before it)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return value


@dataclass(frozen=True)
class RunRecord:
    """One run folder: run_config.json's identity and provenance, results.json, accuracy.json."""

    path: Path
    model: str
    task: str
    scenario: str
    mode: str  # performance | accuracy
    backend: str
    dtype: str = "fp32"
    encoder: str = ""
    model_kind: str = ""  # tiny | real | random
    loadgen_model_name: str = ""
    duration_s: float | None = None  # development runs: the overridden duration
    count: int | None = None  # development runs: the QSL size
    submission_grade: bool = False
    git_sha: str | None = None
    git_dirty: bool | None = None
    started_at: str = ""
    command: tuple[str, ...] = ()
    seed: int = 0  # the training seed of the zoo served (models.zoo_layout.seed_of_models_dir)
    # the training data of the zoo served (models.zoo_layout.train_data_of_models_dir: "xnli" for
    # any folder not named for another option)
    train_data: str = "xnli"
    model_spec: dict[str, Any] = field(default_factory=dict)  # ServedModel.describe()
    backend_options: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)  # harness.info.device_info()
    versions: dict[str, Any] = field(default_factory=dict)  # harness.info.package_versions()
    executor: str = "thread"  # thread | ray (sut/ray_executor.py)
    cluster: dict[str, Any] = field(default_factory=dict)  # --executor ray: nodes, resources, actors
    results: Results | None = None  # None: the run left no results.json (it did not finish)
    metrics: dict[str, Any] = field(default_factory=dict)  # accuracy.json ({} when not scored)

    @classmethod
    def load(cls, folder: str | Path) -> RunRecord:
        """Read `folder`; FileNotFoundError when it has no run_config.json (not a run folder)."""
        folder = Path(folder)
        config = _json(folder / "run_config.json")
        if config is None:
            raise FileNotFoundError(f"{folder}: no run_config.json (not a run folder)")
        results = Results.load(folder)  # ValueError naming the file when malformed
        options = dict(config.get("backend_options") or {})
        return cls(
            path=folder,
            model=str(config["model"]),
            task=str(config["task"]),
            scenario=str(config["scenario"]),
            mode=str(config["mode"]),
            backend=str(config["backend"]),
            dtype=str(options.get("dtype") or "fp32"),
            encoder=str(config.get("encoder") or ""),
            model_kind=str(config.get("model_kind") or ""),
            loadgen_model_name=str(config.get("loadgen_model_name") or ""),
            duration_s=config.get("duration_s"),
            count=config.get("count"),
            submission_grade=bool(config.get("submission_grade")),
            git_sha=config.get("git_sha"),
            git_dirty=config.get("git_dirty"),
            started_at=str(config.get("started_at") or ""),
            command=tuple(config.get("command") or ()),
            seed=seed_of_models_dir((config.get("config") or {}).get("models_dir")),
            train_data=train_data_of_models_dir((config.get("config") or {}).get("models_dir")),
            model_spec=config.get("model_spec") or {},
            backend_options=options,
            device=config.get("device") or {},
            versions=config.get("versions") or {},
            executor=str(config.get("executor") or "thread"),
            cluster=config.get("ray") or {},
            results=results,
            metrics=_json(folder / "accuracy.json") or {},
        )

    @property
    def valid(self) -> bool:
        """LoadGen's verdict (accuracy runs: a complete log and no SUT failure); False without one."""
        return self.results is not None and self.results.result_valid

    @property
    def backend_label(self) -> str:
        """The study's name for backend + dtype: fp32 is implicit, anything else a suffix."""
        return self.backend if self.dtype == "fp32" else f"{self.backend}-{self.dtype}"

    def metric(self, name: str) -> float | None:
        """The task-level value of metric `name` in accuracy.json (None when not scored)."""
        value = self.metrics.get(name)
        return float(value) if isinstance(value, int | float) else None

    def per_language(self, name: str) -> dict[str, float]:
        """language -> metric `name`. accuracy.json keeps one number per language for one-metric
        tasks and {metric: value} for tasks with several (tasks/scoring)."""
        out = {}
        for lang, value in (self.metrics.get("per_language") or {}).items():
            value = value.get(name) if isinstance(value, dict) else value
            if isinstance(value, int | float):
                out[lang] = float(value)
        return out


# A folder of runs that a later measurement replaced (find_peak keeps an earlier search there): kept
# for the record, never collected.
SUPERSEDED = "superseded"


def find_records(root: str | Path) -> list[RunRecord]:
    """Every run folder under `root` (sorted by path, so callers' output is deterministic), except
    those inside a SUPERSEDED folder."""
    root = Path(root)
    configs = sorted(root.rglob("run_config.json"))
    return [RunRecord.load(p.parent) for p in configs if SUPERSEDED not in p.relative_to(root).parts]
