"""Where one run's files go: the run folder, checked before anything is created, held exclusively.

Contract: with --output_dir D the run writes D/<MODEL>/<TASK>/<Scenario>/<mode>/; without it
build/logs/<YYYYmmdd-HHMMSS>/<MODEL>/<TASK>/<Scenario>/<mode>/, and build/logs/latest -> <stamp>
moves only once the run's LoadGen test starts (`mark_started`).

  * `RunFolder.plan(cfg)`: the path, with nothing created. The names are registry names (RunConfig
    checks them) and must each be one plain path component, the result lies inside the output
    directory, and the output directory (or its nearest existing parent) must be a writable folder.
  * `claim()`: create it and take an exclusive lock (`.lock`, flock: released by the kernel however
    the process ends). A folder in use by another run is refused, naming that process. The previous
    run's files in the folder are then removed, so no stale result sits beside the new stdout.txt.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from common.paths import BUILD
from harness.config import RunConfig

LOGS = BUILD / "logs"
LOCK = ".lock"


def _component(kind: str, name: str) -> str:
    """`name` if it is a single plain path component (no separators, not '.' or '..')."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"{kind} {name!r} cannot name a folder")
    return name


def _writable_folder(path: Path, flag: str) -> None:
    """ValueError unless `path` is a writable folder or can be created as one."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise ValueError(f"{flag} {path}: {probe} is a dangling symlink")
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{flag} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {probe} is not writable")


@dataclass
class RunFolder:
    path: Path
    stamp: str | None = None  # build/logs/<stamp> when the run has no --output_dir
    _lock: IO[str] | None = field(default=None, repr=False)

    @classmethod
    def plan(cls, cfg: RunConfig, now: float | None = None) -> RunFolder:
        """The run folder of `cfg` (see the module doc); creates nothing. ValueError if unusable."""
        tail = Path(*(_component(k, v) for k, v in (("model", cfg.model), ("task", cfg.task),
                                                     ("scenario", cfg.scenario), ("mode", cfg.mode))))  # fmt: skip
        if cfg.output_dir is not None:
            base, stamp = Path(cfg.output_dir), None
            flag = "--output_dir"
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
            base, flag = LOGS / stamp, "build/logs"
        _writable_folder(base, flag)
        path = base / tail
        if not path.resolve().is_relative_to(base.resolve()):  # a symlinked sub-folder, say
            raise ValueError(f"run folder {path} resolves outside {base}")
        return cls(path, stamp)

    def claim(self, command: list[str]) -> None:
        """Create the folder, lock it (ValueError naming the holder when busy), clear the last run."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = open(self.path / LOCK, "a+")  # noqa: SIM115 - held until release()
        except OSError as e:
            raise ValueError(f"cannot create the run folder {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = _holder(lock.read())
            lock.close()
            raise ValueError(
                f"run folder {self.path} is in use by {holder}; wait for it to end, or choose "
                "another --output_dir (LOG_DIR)"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps({"pid": os.getpid(), "command": command, "since": time.ctime()}))
        lock.flush()
        self._lock = lock
        for old in self.path.iterdir():  # the previous run's files (never folders)
            if old.name != LOCK and (old.is_file() or old.is_symlink()):
                old.unlink()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None

    def mark_started(self) -> None:
        """The run's test starts: point build/logs/latest at its timestamp folder (atomic swap)."""
        if self.stamp is None:
            return
        tmp = LOGS / f".latest-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.stamp)
        tmp.replace(LOGS / "latest")

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(text: str) -> str:
    try:
        info: dict[str, Any] = json.loads(text)
        command = " ".join(map(str, info.get("command") or []))
        return f"process {info['pid']} (`{command}`, since {info.get('since')})"
    except (ValueError, KeyError, TypeError):
        return "another process"
