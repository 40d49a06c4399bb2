"""The repository's root, computed once; every other path of the project starts from here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"  # build outputs: models, caches, logs, ONNX exports (git-ignored)
DATA = REPO / "data"  # the bundled data sets
