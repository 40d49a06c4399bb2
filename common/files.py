"""File helpers shared by every layer."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def locked(lock_file: Path, waiting: str = "") -> Iterator[None]:
    """Hold an exclusive advisory lock (fcntl.flock) on `lock_file` (created if missing) for the
    `with` block. If another process holds it, print `waiting` (when given) and block until it is
    released: the kernel releases it when its holder exits, even by SIGKILL, so a lock is never stale.
    OSError if the file cannot be created (e.g. a read-only folder)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
