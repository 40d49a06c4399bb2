"""`submission pack`: tar.gz of open/<submitter>/ (after our check passes) and its sha256."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from harness.submission.layout import DIVISION, NOT_FOR_SUBMISSION, submitter_dir


def pack(root: Path, submitter: str) -> Path:
    """Write <root>/../<submitter>-open[-NOT_FOR_SUBMISSION].tar.gz (+ .sha256); returns its path."""
    sub = submitter_dir(root, submitter)
    suffix = "-NOT_FOR_SUBMISSION" if (sub / NOT_FOR_SUBMISSION).is_file() else ""
    out = root.parent / f"{submitter}-{DIVISION}{suffix}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(sub, arcname=f"{DIVISION}/{submitter}")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    return out
