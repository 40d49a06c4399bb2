"""The repository's root, computed once; every other path of the project starts from here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"  # build outputs: models, caches, logs, ONNX exports (git-ignored)
DATA = REPO / "data"  # the bundled data sets


def repo_relative(path: str | Path) -> str:
    """`path` relative to the repository where it lies inside it (the same text on any checkout),
    else as given: for records that are committed and compared later."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)
