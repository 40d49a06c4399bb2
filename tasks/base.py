"""The Task contract: data -> pre-tokenised features in a fixed `qsl_idx` order -> scored responses.

A task owns four things and nothing else:
  * reading its data files (bundled under data/ by default, or the user's official files by path);
  * turning them into a FeatureSet once, before any LoadGen test (cached under build/cache/);
  * the response encoding: what bytes the SUT returns for one sample (always float32, little endian);
  * the metric (in tasks/scoring/), which reads an accuracy log back through the same FeatureSet.

Kinds and what a backend must output for a batch of B samples padded to length L:
  "classification": logits,                 float32 [B, num_labels]
  "qa":             start/end logits,       float32 [B, 2, L]
                    (response = [2, len_i] trimmed, row-major: len_i start logits then len_i end logits)
  "retrieval":      mean-pooled embedding,  float32 [B, hidden]
"""

from __future__ import annotations

import hashlib
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tasks.data import cache_root, default_data_dir, resolve_languages

KINDS = ("classification", "qa", "retrieval")


@dataclass
class FeatureSet:
    """Pre-tokenised samples of one task in `qsl_idx` order, stored ragged (no padding).

    Sample i is `input_ids[offsets[i]:offsets[i + 1]]` (already with <s> ... </s>).
    `language[i]` indexes `languages`. `extra` holds task-specific per-sample or per-token arrays
    (e.g. for QA: the example each window belongs to and token -> character offsets).
    """

    task: str
    languages: tuple[str, ...]
    input_ids: np.ndarray  # int32 [total_tokens]
    offsets: np.ndarray  # int64 [n + 1]
    language: np.ndarray  # int16 [n]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable (cache key, settings...)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """int64 [n]: number of tokens of each sample."""
        return np.diff(self.offsets)

    def ids(self, i: int) -> np.ndarray:
        return self.input_ids[self.offsets[i] : self.offsets[i + 1]]

    def language_slices(self) -> dict[str, np.ndarray]:
        """language code -> the qsl indices of that language (in qsl order)."""
        return {lang: np.flatnonzero(self.language == k) for k, lang in enumerate(self.languages)}

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename) so an interrupted run never leaves half a cache."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        arrays = {f"extra.{k}": v for k, v in self.extra.items()}
        header = json.dumps({"task": self.task, "languages": list(self.languages), "meta": self.meta})
        with open(tmp, "wb") as f:
            np.savez(
                f,
                header=np.array(header),
                input_ids=self.input_ids,
                offsets=self.offsets,
                language=self.language,
                **arrays,
            )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        """Read a saved FeatureSet; ValueError (or the reader's own error) if it is inconsistent."""
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            extra = {k[len("extra.") :]: z[k] for k in z.files if k.startswith("extra.")}
            fs = cls(
                task=header["task"],
                languages=tuple(header["languages"]),
                input_ids=z["input_ids"],
                offsets=z["offsets"],
                language=z["language"],
                extra=extra,
                meta=header["meta"],
            )
        n = len(fs)
        if (
            n < 0
            or fs.offsets[0] != 0
            or fs.offsets[-1] != len(fs.input_ids)
            or len(fs.language) != n
            or (np.diff(fs.offsets) < 0).any()
        ):
            raise ValueError("inconsistent arrays (offsets, ids and languages do not agree)")
        return fs


def tokenizer_fingerprint(tokenizer) -> str:
    """A short stable hash of a tokenizer's full definition (vocab, normaliser, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        text = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    else:
        # truncation/padding are call-time state left behind by the last encode: not the definition
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over the bytes of the given files (in order): the cache key's data part."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


class Task(ABC):
    """One XTREME task. Subclasses are registered in tasks/registry.py under `name`.

    Class attributes (the one place each fact about a task is written; models, scoring and the study
    read them from here):
      name:           registry key (`TASK=` on the command line)
      title:          how reports name the task ("XNLI")
      kind:           one of KINDS (decides the model head and the response encoding)
      languages:      every language of the task, in qsl order
      label_names:    classification: the label of each logit, in order (num_labels = their count)
      scoring:        the scoring method in tasks/scoring (`tasks.scoring.cli.SCORERS`)
      metrics:        the metrics of the accuracy script's final line, in that line's order
      primary_metric: the one metric a study reports for the task
    """

    name: ClassVar[str]
    title: ClassVar[str]
    kind: ClassVar[str]
    languages: ClassVar[tuple[str, ...]]
    label_names: ClassVar[tuple[str, ...]] = ()
    num_labels: ClassVar[int] = 0  # len(label_names), set for every subclass
    scoring: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.num_labels = len(cls.label_names)

    def __init__(self, data_dir: str | Path | None = None, languages: Sequence[str] | None = None):
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir(self.name)
        self.active_languages = resolve_languages(self.name, self.languages, languages)

    # --- data ---------------------------------------------------------------------------------
    @abstractmethod
    def data_files(self) -> list[Path]:
        """The files this task reads for its active languages, in a fixed order (cache key)."""

    @abstractmethod
    def featurize(self, tokenizer, settings: dict[str, Any]) -> FeatureSet:
        """Read the data and tokenise every sample in qsl order (no caching here)."""

    def feature_settings(self) -> dict[str, Any]:
        """Settings that change the features (max length, stride...): part of the cache key."""
        return {}

    # --- responses ----------------------------------------------------------------------------
    def response_floats(self, length: int, output_width: int) -> int:
        """Number of float32 values in one sample's response (length = its token count)."""
        if self.kind == "qa":
            return 2 * length
        return output_width

    # --- features, cached -----------------------------------------------------------------------
    def features(
        self, tokenizer, cache_dir: str | Path | None = None, progress: bool = True
    ) -> FeatureSet:
        """Features for this task, from build/cache/ when the key (tokenizer, settings, data) matches."""
        settings = self.feature_settings()
        key_src = {
            "task": self.name,
            "languages": list(self.active_languages),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "settings": settings,
            "data": files_fingerprint(self.data_files()),
        }
        key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
        path = Path(cache_dir or cache_root()) / self.name / f"{key}.npz"
        if path.exists():
            try:
                return FeatureSet.load(path)
            except Exception as e:  # noqa: BLE001 - any unreadable entry is rebuilt, never trusted
                print(
                    f"warning: feature cache {path} cannot be read ({type(e).__name__}: {e}); "
                    "deleted, featurising again",
                    file=sys.stderr,
                    flush=True,
                )
                path.unlink(missing_ok=True)
        fs = self.featurize(tokenizer, settings)
        fs.meta.update({"cache_key": key, **key_src})
        fs.save(path)
        return fs
