"""Where one run's files go: the run folder, checked before anything is created, held exclusively.

Contract: with --output_dir D the run writes D/<ENCODER>/<VARIANT>/<MODEL>/<TASK>/<Scenario>/<mode>/;
without it build/logs/<YYYYmmdd-HHMMSS>/ takes D's place, and build/logs/latest -> <stamp> moves only
once the run's LoadGen test starts (`mark_started`). VARIANT is the backend with what else changes the
measurement: `-<dtype>` unless fp32, `-<device>` unless cpu (cuda:1 -> cuda1), `-ray` with the Ray
executor (`variant`), e.g. pytorch, onnxruntime-int8, pytorch-cuda-ray. So runs of other encoders,
backends, dtypes, devices or executors into one LOG_DIR never meet. What else tells runs apart and
is not in the path (the weights, the zoo folder, the languages) is checked when a run claims a
folder that an earlier run left: a difference is refused, naming the field (`claim`).

  * `RunFolder.plan(cfg)`: the path, with nothing created. The names are registry names (RunConfig
    checks them) and must each be one plain path component, the result lies inside the output
    directory, and the output directory (or its nearest existing parent) must be a writable folder.
  * `claim()`: create it and take an exclusive lock (`.lock`, flock: released by the kernel however
    the process ends). A folder in use by another run is refused, naming that process; so is a folder
    whose earlier run differs in a field of IDENTITY. The previous run's files in the folder are then
    removed, so no stale result sits beside the new stdout.txt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from common.files import sha256_file
from common.paths import BUILD
from harness.config import RunConfig

LOGS = BUILD / "logs"
LOCK = ".lock"
# RunConfig fields that make another measurement but are not in the path: a run into a folder whose
# earlier run (its run_config.json "config") differs in one of them is refused. (Scheduling knobs
# such as max_batch or threads tune the same measurement: a rerun with other values replaces it.)
IDENTITY = (
    "weights",
    "models_dir",
    "languages",
    "loadgen_model",
    "pooling_layer",
    "seeds",
    "lora_form",
)


def variant(cfg: RunConfig) -> str:
    """The path component after the encoder: backend, then -dtype, -device and -ray where they are
    not the defaults (fp32, cpu, threads)."""
    return variant_name(cfg.backend, cfg.dtype, cfg.device, cfg.executor)


def variant_name(backend: str, dtype: str, device: str, executor: str) -> str:
    """`variant` from the four values (staging reads them back from run_config.json)."""
    parts = [backend]
    if dtype != "fp32":
        parts.append(dtype)
    if device != "cpu":
        parts.append(device.replace(":", ""))
    if executor != "thread":
        parts.append(executor)
    return "-".join(parts)


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
    identity: dict[str, Any] = field(default_factory=dict)  # IDENTITY values of the run planned here

    @classmethod
    def plan(cls, cfg: RunConfig, now: float | None = None) -> RunFolder:
        """The run folder of `cfg` (see the module doc); creates nothing. ValueError if unusable."""
        names = (
            ("encoder", cfg.encoder),
            ("backend", variant(cfg)),
            ("model", cfg.model),
            ("task", cfg.task),
            ("scenario", cfg.scenario),
            ("mode", cfg.mode),
        )
        tail = Path(*(_component(kind, name) for kind, name in names))
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
        config = cfg.to_dict()
        return cls(path, stamp, identity={k: config.get(k) for k in IDENTITY})

    def earlier_run_differs(self) -> str | None:
        """Why the run this folder holds (its run_config.json) is another measurement than the one
        planned here (the first IDENTITY field that differs), or None."""
        try:
            earlier = json.loads((self.path / "run_config.json").read_text()).get("config") or {}
        except (OSError, ValueError, AttributeError):
            return None  # no earlier run (or a damaged record: nothing to compare)
        defaults = {f.name: f.default for f in fields(RunConfig)}  # a field newer than that record
        for key in IDENTITY:
            before, now = earlier.get(key, defaults[key]), self.identity.get(key)
            if key in self.identity and before != now:
                return f"{key} was {before!r}, this run's is {now!r}"
        return None

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
        differs = self.earlier_run_differs()
        if differs:
            lock.close()
            raise ValueError(
                f"run folder {self.path} holds another measurement ({differs}); a run would replace "
                "it: choose another --output_dir (LOG_DIR), or delete that folder first"
            )
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


def checkpoint_sha256(folder: str | Path | None) -> str | None:
    """One sha256 for the weights a run served (run_config.json "checkpoint_sha256"; staging pairs
    only runs whose digests agree): over the per-file sha256s that the zoo's manifest (zoo.json)
    records, plus the digest of the base encoder it names when that is a local folder; for a folder
    without a manifest (a --weights checkpoint), over every file's sha256. None without a folder
    (random weights)."""
    if folder is None or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "zoo.json").read_text())
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        files = manifest["files"]
        base = manifest.get("base")
        base_dir = (folder / base) if isinstance(base, str) else None
        base_digest = checkpoint_sha256(base_dir) if base_dir and base_dir.is_dir() else base
    else:
        files = {
            p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        base_digest = None
    text = json.dumps({"files": files, "base": base_digest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _holder(text: str) -> str:
    try:
        info: dict[str, Any] = json.loads(text)
        command = " ".join(map(str, info.get("command") or []))
        return f"process {info['pid']} (`{command}`, since {info.get('since')})"
    except (ValueError, KeyError, TypeError):
        return "another process"
