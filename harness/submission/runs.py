"""Run folders of the run-folder contract, found under one or more log directories.

A run folder holds mlperf_log_*.txt, run_config.json and results.json (accuracy runs also
accuracy.txt), read through harness.run_record.RunRecord. A benchmark's TEST01 folder is
<Scenario>/TEST01/, beside its performance/ and accuracy/ run folders.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any

from common.loadgen_log import LoadgenLog
from harness.run_folder import variant_name
from harness.run_record import SUPERSEDED, RunRecord
from harness.submission.layout import benchmark_name, test01_dir_of


class Run(RunRecord):
    """A run folder as staging sees it: its record, plus the benchmark it belongs to, LoadGen's
    detail log and the identity fields that only run_config.json holds."""

    @property
    def benchmark(self) -> str:
        return benchmark_name(self.encoder, self.model, self.task)

    @cached_property
    def config(self) -> dict[str, Any]:
        """run_config.json as written (RunRecord keeps only some of its fields)."""
        return json.loads((self.path / "run_config.json").read_text())

    @property
    def settings(self) -> dict[str, Any]:
        """The run's RunConfig values (run_config.json "config")."""
        return self.config.get("config") or {}

    @property
    def variant(self) -> str:
        """The run folder's backend component (harness.run_folder.variant): backend, dtype, device,
        executor."""
        device = str(self.settings.get("device") or "cpu")
        executor = str(self.settings.get("executor") or self.executor)
        return variant_name(self.backend, self.dtype, device, executor)

    @property
    def seeds(self) -> str | None:
        return self.settings.get("seeds")

    def identity(self) -> dict[str, Any]:
        """What must agree between the runs staged together (performance, accuracy, TEST01 audit)."""
        s = self.settings
        return {
            "encoder": self.encoder,
            "backend": self.backend,
            "dtype": self.dtype,
            "device": s.get("device") or "cpu",
            "executor": s.get("executor") or self.executor,
            "model kind": self.model_kind,
            "checkpoint sha256": self.config.get("checkpoint_sha256"),
            "task options": self.config.get("task_options") or {},
            "languages": s.get("languages"),
            "count": self.count,
            "seeds": self.seeds,
        }

    def user_conf_digest(self) -> str | None:
        conf = self.path / "user.conf"
        return hashlib.sha256(conf.read_bytes()).hexdigest() if conf.is_file() else None

    def detail(self) -> LoadgenLog | None:
        f = self.path / "mlperf_log_detail.txt"
        return LoadgenLog.read(f) if f.is_file() else None

    def loadgen_errors(self) -> list[str]:
        """The error records of LoadGen's detail log (results.json only counts them)."""
        log = self.detail()
        return log.errors if log else []


Key = tuple[str, str, str, str | None]  # (benchmark, scenario, mode, seeds)


def find_runs(log_dirs: list[Path]) -> tuple[dict[Key, Run], list[str]]:
    """((benchmark, scenario, mode, seeds) -> the run, problems). Folders below a TEST01/ folder (audit
    runs) and SUPERSEDED folders are skipped. Runs of one key from several backend variants are a
    problem (a package's system description names one framework); of one variant, the latest (by
    started_at) is taken."""
    found: dict[Key, Run] = {}
    variants: dict[Key, dict[str, Path]] = {}
    for log_dir in log_dirs:
        for cfg in sorted(Path(log_dir).resolve().rglob("run_config.json")):
            if "TEST01" in cfg.parent.parts or SUPERSEDED in cfg.parent.parts:
                continue
            run = Run.load(cfg.parent)
            key = (run.benchmark, run.scenario, run.mode, run.seeds)
            variants.setdefault(key, {})[run.variant] = run.path
            if key not in found or run.started_at >= found[key].started_at:
                found[key] = run
    problems = [
        f"{bench}/{scen} {mode}: runs of {len(v)} backend variants ({', '.join(sorted(v))}: "
        f"{', '.join(str(p) for p in v.values())}); a package describes one system: stage one "
        "variant at a time (--log_dir LOG_DIR/<encoder>/<variant>)"
        for (bench, scen, mode, _), v in sorted(variants.items(), key=lambda kv: str(kv[0]))
        if len(v) > 1
    ]
    return found, problems


def test01_dir(run: Run) -> Path | None:
    """The TEST01 folder next to `run` (<Scenario>/TEST01) when compliance has produced one."""
    d = test01_dir_of(run.path)
    return d if (d / "verify_accuracy.txt").is_file() else None
