"""`submission pack`: one tar.gz per staged package (after our check passes) and its sha256."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from harness.submission.layout import DIVISION, NOT_FOR_SUBMISSION, staged_packages


def pack(root: Path, submitter: str) -> list[Path]:
    """Write <root>/../<submitter>-open-<package>[-NOT_FOR_SUBMISSION].tar.gz (+ .sha256) for every
    staged package; returns their paths."""
    out = []
    for pkg, sub in staged_packages(root, submitter):
        suffix = "-NOT_FOR_SUBMISSION" if (sub / NOT_FOR_SUBMISSION).is_file() else ""
        tar_path = root.parent / f"{submitter}-{DIVISION}-{pkg.name}{suffix}.tar.gz"
        with tarfile.open(tar_path, "w:gz") as tar:
            tar.add(sub, arcname=f"{DIVISION}/{submitter}")
        digest = hashlib.sha256(tar_path.read_bytes()).hexdigest()
        tar_path.with_name(tar_path.name + ".sha256").write_text(f"{digest}  {tar_path.name}\n")
        out.append(tar_path)
    return out
