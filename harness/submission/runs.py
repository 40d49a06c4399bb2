"""Run folders of the run-folder contract, found under one or more log directories.

A run folder holds mlperf_log_*.txt, run_config.json and results.json (accuracy runs also
accuracy.txt), read through harness.run_record.RunRecord. TEST01 folders are D/<MODEL>/<TASK>/<Scenario>/TEST01/.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from common.loadgen_log import LoadgenLog
from harness.run_record import RunRecord
from harness.submission.layout import benchmark_name, test01_dir_of


class Run(RunRecord):
    """A run folder as staging sees it: its record, plus the benchmark it belongs to and LoadGen's
    detail log."""

    @property
    def benchmark(self) -> str:
        return benchmark_name(self.encoder, self.model, self.task)

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


def find_runs(log_dirs: list[Path]) -> dict[tuple[str, str, str], Run]:
    """(benchmark, scenario, mode) -> the latest run (by started_at) under `log_dirs`.

    Folders below a TEST01/ folder are audit runs and are skipped here.
    """
    found: dict[tuple[str, str, str], Run] = {}
    for log_dir in log_dirs:
        for cfg in sorted(Path(log_dir).resolve().rglob("run_config.json")):
            if "TEST01" in cfg.parent.parts:
                continue
            run = Run.load(cfg.parent)
            key = (run.benchmark, run.scenario, run.mode)
            if key not in found or run.started_at >= found[key].started_at:
                found[key] = run
    return found


def test01_dir(run: Run) -> Path | None:
    """The TEST01 folder next to `run` (<Scenario>/TEST01) when compliance has produced one."""
    d = test01_dir_of(run.path)
    return d if (d / "verify_accuracy.txt").is_file() else None
