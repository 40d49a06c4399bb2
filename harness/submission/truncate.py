"""`submission truncate`: MLCommons' accuracy-log truncation, applied to a staged package.

For every accuracy/ folder (main and TEST01) of every staged package whose mlperf_log_accuracy.json
is not yet truncated:
keep the full file under <root>_full_accuracy_logs/<same relative path> (beside the package), append
`hash=<sha256 of the full file>` to accuracy.txt, and keep only the first and last 4 KiB of the
json with a `...` marker between them (files under 4 KiB are kept whole, as upstream does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common.files import sha256_file
from harness.submission.layout import (
    MAX_ACCURACY_LOG_BYTES,
    VIEWABLE_BYTES,
    accuracy_dirs,
    full_logs_dir,
    read_hash,
    staged_packages,
)


def truncate_file(path: Path) -> None:
    """Keep the first and last VIEWABLE_BYTES bytes of `path` (the log is ASCII hex + JSON)."""
    size = path.stat().st_size
    if size < VIEWABLE_BYTES:
        return
    with open(path, "rb") as f:
        head = f.read(VIEWABLE_BYTES)
        f.seek(size - VIEWABLE_BYTES)
        tail = f.read(VIEWABLE_BYTES)
    path.write_bytes(head + b"\n\n...\n\n" + tail)


def truncate_dir(acc_dir: Path, backup_dir: Path) -> bool:
    """Truncate acc_dir/mlperf_log_accuracy.json once; returns False when it was already done."""
    log, txt = acc_dir / "mlperf_log_accuracy.json", acc_dir / "accuracy.txt"
    if read_hash(txt) and log.stat().st_size <= MAX_ACCURACY_LOG_BYTES:
        return False
    backup_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(log, backup_dir / log.name)
    digest = sha256_file(log)
    with open(txt, "a", encoding="utf-8") as f:
        f.write(f"\nhash={digest}\n")
    truncate_file(log)
    return True


def truncate(root: Path, submitter: str) -> list[Path]:
    """Truncate every accuracy log of root/<package>/open/<submitter>; returns the folders changed."""
    staged = staged_packages(root, submitter)
    if not staged:
        raise FileNotFoundError(
            f"no package for submitter {submitter!r} under {root}: run `make stage_results` first"
        )
    changed = []
    for _, sub in staged:
        for acc_dir in accuracy_dirs(sub):
            rel = acc_dir.relative_to(root)
            if truncate_dir(acc_dir, full_logs_dir(root) / rel):
                changed.append(acc_dir)
    return changed
