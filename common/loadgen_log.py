"""Read LoadGen's `mlperf_log_detail.txt` (one `:::MLLOG {json}` record per line).

Only the keys the submission and compliance checks need are interpreted; everything else stays
available through `LoadgenLog.get`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Result that TEST01's performance comparison uses, per scenario (the figure LoadGen reports).
RESULT_KEY = {
    "Offline": "result_samples_per_second",
    "Server": "result_completed_samples_per_sec",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
}


@dataclass
class LoadgenLog:
    """Parsed detail log: the last value of every key, plus the error and warning records."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path) -> LoadgenLog:
        """Parse `path`; raises FileNotFoundError when absent. Malformed lines are skipped."""
        log = cls(Path(path))
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith(":::MLLOG"):
                continue
            try:
                rec = json.loads(line[len(":::MLLOG") :])
            except json.JSONDecodeError:
                continue
            key, value = rec.get("key"), rec.get("value")
            if key == "error":
                log.errors.append(str(value))
            elif key == "warning":
                log.warnings.append(str(value))
            elif key:
                log.values[key] = value
        return log

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def scenario(self) -> str | None:
        return self.get("effective_scenario")

    @property
    def valid(self) -> bool:
        return self.get("result_validity") == "VALID"

    def result(self) -> float | None:
        """The scenario's reported figure (samples/s for Offline/Server, ns for SingleStream)."""
        key = RESULT_KEY.get(self.scenario or "")
        value = self.get(key) if key else None
        return None if value is None else float(value)
