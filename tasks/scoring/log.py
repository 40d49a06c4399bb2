"""Reading and validating an MLPerf accuracy log (`mlperf_log_accuracy.json`).

LoadGen writes a JSON list with one entry per logged sample:
    {"seq_id": int, "qsl_idx": int, "data": "<uppercase hex of the raw response bytes>"}
The bytes are the SUT's response: little-endian float32 (float16 where `--dtype float16` says so).
Every problem is raised as `LogError` whose message names the file: the scripts print it, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_MAX_IDX = np.iinfo(np.int64).max


class LogError(ValueError):
    """The accuracy log cannot be scored; the message names the file and says what is wrong."""


@dataclass
class AccuracyLog:
    """The logged responses, decoded to float32, sorted by qsl_idx and stored ragged.

    Entry j (qsl index `qsl_idx[j]`) is `values[offsets[j]:offsets[j + 1]]`.
    """

    path: Path
    qsl_idx: np.ndarray  # int64 [m], strictly increasing
    offsets: np.ndarray  # int64 [m + 1]
    values: np.ndarray  # float32 [total]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.qsl_idx)

    @property
    def sizes(self) -> np.ndarray:
        """int64 [m]: number of floats of each entry."""
        return np.diff(self.offsets)

    def entry(self, j: int) -> np.ndarray:
        return self.values[self.offsets[j] : self.offsets[j + 1]]

    def dense(self) -> np.ndarray:
        """float32 [m, width] when every entry has the same size (caller checks)."""
        return self.values.reshape(len(self), -1) if len(self) else self.values.reshape(0, 0)

    def shape_guess(self) -> str:
        """What task the entry sizes suggest, for 'this looks like a log from ...' messages."""
        sizes = np.unique(self.sizes)
        if len(sizes) > 1:
            return (
                "tydiqa (variable-length start/end logits)" if not (sizes % 2).any() else "no known task"
            )
        width = int(sizes[0]) if len(sizes) else 0
        guesses = {3: "xnli (3 logits per sample)", 2: "pawsx (2 logits per sample)"}
        if width in guesses:
            return guesses[width]
        if width >= 8:
            return f"a retrieval task, tatoeba or bucc ({width}-float embeddings)"
        return f"no known task ({width} floats per sample)"


def _load_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LogError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LogError(f"{path}: cannot be read as UTF-8 text ({e})") from None
    if not text.strip():
        raise LogError(f"{path}: the file is empty (did the accuracy run finish?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()) - 1 or (
            text.lstrip()[:1] == "[" and not text.rstrip().endswith("]")
        ):
            raise LogError(
                f"{path}: the JSON ends early (truncated at byte {e.pos}; was the run interrupted, or is this "
                "the submission checker's truncated copy? Score the full log)"
            ) from None
        raise LogError(f"{path}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def read_accuracy_log(path: str | Path, dtype: str = "float32") -> AccuracyLog:
    """Read and decode a LoadGen accuracy log. Raises LogError on any structural problem.

    Checks: valid JSON; a list of objects with an integer `qsl_idx` in [0, 2**63) and a hex string
    `data`; byte lengths that are a multiple of the dtype size; no qsl_idx logged twice; no NaN or
    Inf in any response (a model with damaged weights must not score as a coin toss).
    """
    path = Path(path)
    if dtype not in DTYPES:
        raise LogError(f"{path}: unknown --dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    dt = DTYPES[dtype]
    doc = _load_json(path)
    not_log = (
        f"{path}: not a LoadGen accuracy log (expected a JSON list of {{seq_id, qsl_idx, data}} objects"
    )
    if not isinstance(doc, list):
        raise LogError(f"{not_log}, found a JSON {type(doc).__name__})")
    idx = np.empty(len(doc), dtype=np.int64)
    chunks: list[bytes] = []
    for j, e in enumerate(doc):
        if not isinstance(e, dict) or "qsl_idx" not in e or "data" not in e:
            raise LogError(f"{not_log}; entry {j} is {json.dumps(e)[:80]})")
        q, data = e["qsl_idx"], e["data"]
        if not isinstance(q, int) or isinstance(q, bool) or not 0 <= q <= _MAX_IDX:
            raise LogError(f"{path}: entry {j} has qsl_idx {q!r}, expected an integer in 0..{_MAX_IDX}")
        if not isinstance(data, str):
            raise LogError(f"{path}: entry {j} (qsl_idx {q}) has non-string data")
        try:
            raw = bytes.fromhex(data)
        except ValueError:
            raise LogError(f"{path}: entry {j} (qsl_idx {q}) data is not hexadecimal") from None
        if len(raw) % dt.itemsize:
            raise LogError(
                f"{path}: entry {j} (qsl_idx {q}) has {len(raw)} bytes, not a whole number of {dtype} values "
                f"({dt.itemsize} bytes each): wrong --dtype, or not this harness's log"
            )
        idx[j] = q
        chunks.append(raw)
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    dup = idx[1:][idx[1:] == idx[:-1]]
    if len(dup):
        raise LogError(
            f"{path}: {len(np.unique(dup))} qsl_idx logged more than once (first: {int(dup[0])}); an accuracy "
            "log (AccuracyOnly mode) logs each sample exactly once: this looks like a performance-mode or "
            "audit (TEST01) log"
        )
    sizes = np.array([len(chunks[k]) // dt.itemsize for k in order], dtype=np.int64)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.frombuffer(b"".join(chunks[k] for k in order), dtype=dt).astype(np.float32)
    seen = np.concatenate([[0], np.cumsum(~np.isfinite(values))])  # non-finite values before each
    bad = np.flatnonzero(seen[offsets[1:]] > seen[offsets[:-1]])
    if len(bad):
        raise LogError(
            f"{path}: {len(bad)} of {len(idx)} responses hold NaN or Inf (first: qsl_idx "
            f"{int(idx[bad[0]])}); the model produced non-finite outputs (damaged weights?): "
            "nothing to score"
        )
    return AccuracyLog(path=path, qsl_idx=idx, offsets=offsets, values=values)


def check_coverage(log: AccuracyLog, n_samples: int, task: str) -> np.ndarray:
    """Validate qsl_idx against the task's sample count; return bool [n_samples] (True = logged).

    Out-of-range indices are an error (another task's log, or other languages); missing samples
    are a warning appended to `log.warnings`.
    """
    if len(log) == 0:
        raise LogError(f"{log.path}: the log has no entries")
    top = int(log.qsl_idx[-1])
    if top >= n_samples:
        raise LogError(
            f"{log.path}: qsl_idx {top} is out of range: {task} has {n_samples} samples (for the languages "
            f"and data selected); this looks like a log from {log.shape_guess()}, or from other --languages"
        )
    covered = np.zeros(n_samples, dtype=bool)
    covered[log.qsl_idx] = True
    if len(log) < n_samples:
        log.warnings.append(
            f"{log.path}: partial coverage: {len(log)} of {n_samples} samples logged "
            f"({n_samples - len(log)} missing); scoring the covered ones only"
        )
    return covered


def check_uniform_width(log: AccuracyLog, task: str, expected: int | None = None) -> int:
    """All entries must have one size (== expected when given); returns it, else raises LogError."""
    sizes = np.unique(log.sizes)
    if len(sizes) != 1 or (expected is not None and int(sizes[0]) != expected):
        want = (
            f"{expected} floats each" if expected is not None else "one embedding size for all entries"
        )
        found = ", ".join(str(int(s)) for s in sizes[:5]) + (" ..." if len(sizes) > 5 else "")
        raise LogError(
            f"{log.path}: {task} responses must have {want}; found sizes {found}: "
            f"this looks like a log from {log.shape_guess()}"
        )
    return int(sizes[0])
