"""Reading and validating an MLPerf accuracy log (`mlperf_log_accuracy.json`).

LoadGen writes a JSON list with one entry per logged sample:
    {"seq_id": int, "qsl_idx": int, "data": "<uppercase hex of the raw response bytes>"}
The bytes are the SUT's response: little-endian float32 (float16 where `--dtype float16` says so).
Every problem is raised as `LogError` whose message names the file: the scripts print it, never a
traceback.
Hostile input is bounded: only a regular file (not a FIFO, a device or a directory) of at most
MAX_LOG_BYTES is read, in chunks; entries are flat objects (nesting deeper than the format's two
levels is refused before any recursive parsing), and memory stays proportional to the log's size.
"""

from __future__ import annotations

import json
import os
import re
import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_MAX_IDX = np.iinfo(np.int64).max
# The largest log the scripts read: Tatoeba's 72,000 sentences as XLM-R large's 1024-float
# embeddings take 0.6 GB of hex; 4 GiB leaves room, and refuses /dev/zero-like inputs at once.
MAX_LOG_BYTES = 4 << 30
CHUNK_BYTES = 1 << 20  # read this much of a log at a time
RUN_CONFIG = "run_config.json"  # what `harness run` writes beside the log: the run's settings
MAX_RUN_CONFIG_BYTES = 1 << 20  # a run_config.json is a few kB
_WHITESPACE = re.compile(rb"[ \t\r\n]*")


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


def open_log(path: Path, limit: int) -> BinaryIO:
    """`path` opened for reading, refused unless it is a regular file of at most `limit` bytes
    (a FIFO would block, /dev/zero never ends, a directory cannot be read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise LogError(f"{path}: no such file") from None
    except OSError as e:
        raise LogError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise LogError(f"{path}: not a regular file ({_file_kind(st.st_mode)}); pass the run's log file")
    if st.st_size > limit:
        raise LogError(
            f"{path}: {st.st_size:,} bytes, more than the {limit:,} bytes an accuracy log of these "
            "tasks can hold: not a LoadGen accuracy log of this harness"
        )
    if st.st_size == 0:
        raise LogError(f"{path}: the file is empty (did the accuracy run finish?)")
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller's `with`
    except OSError as e:
        raise LogError(f"{path}: cannot be read ({e.strerror})") from None


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _file_kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")


class _Scanner:
    """The log's bytes, read in chunks: at most one chunk (plus one entry) is held at a time."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f, self.path = f, path
        self.buf, self.pos, self.base = b"", 0, 0  # base: file offset of buf[0]

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _more(self) -> bool:
        """Append the next chunk to the buffer, dropping what was consumed; False at the end of the
        file (a regular file: reading past its end returns nothing again)."""
        chunk = self.f.read(CHUNK_BYTES)
        if not chunk:
            return False
        self.base += self.pos
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return True

    def peek(self) -> int | None:
        """The next non-whitespace byte (not consumed), None at the end of the file."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return None

    def until(self, byte: bytes) -> bytes | None:
        """The bytes from here to the next `byte`, inclusive (consumed); None if the file ends first."""
        while (end := self.buf.find(byte, self.pos)) < 0:
            if not self._more():
                return None
        out = self.buf[self.pos : end + 1]
        self.pos = end + 1
        return out

    def rest(self, n: int) -> bytes:
        """Up to n bytes from here (not consumed), for messages."""
        while len(self.buf) - self.pos < n and self._more():
            pass
        return self.buf[self.pos : self.pos + n]

    def truncated(self) -> LogError:
        return LogError(
            f"{self.path}: the JSON ends early (truncated at byte {self.base + len(self.buf)}; was the "
            "run interrupted, "
            "or is this the submission checker's truncated copy? Score the full log)"
        )

    def not_json(self, what: str) -> LogError:
        return LogError(f"{self.path}: not JSON ({what} at byte {self.offset})")


def _top_level(scan: _Scanner, not_log: str) -> None:
    """Consume the opening `[`, or raise what the file is instead."""
    first = scan.peek()
    if first is None:
        raise LogError(f"{scan.path}: the file is empty (did the accuracy run finish?)")
    if first == ord("["):
        scan.pos += 1
        return
    if first == ord("{"):
        raise LogError(f"{not_log}, found a JSON object)")
    try:  # a scalar (number, string, true...) cannot nest: decoding a prefix of it is safe
        value, _ = json.JSONDecoder().raw_decode(scan.rest(4096).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise scan.not_json("expected '[' of a JSON list") from None
    raise LogError(f"{not_log}, found a JSON {type(value).__name__})")


def _entries(scan: _Scanner, not_log: str) -> Iterator[tuple[int, dict]]:
    """(j, entry j) of the log's list, each a flat JSON object, parsed one at a time.

    An entry is everything from its `{` to the first `}`: LoadGen's entries hold three scalars, so
    an entry with a nested list or object (or a `}` inside a string) is refused rather than parsed,
    and nesting, however deep, never reaches the recursive JSON parser."""
    j = 0
    while True:
        c = scan.peek()
        if c is None:
            raise scan.truncated()
        if c == ord("]") and j == 0:
            scan.pos += 1
            return
        if c != ord("{"):
            try:
                text = scan.rest(80).decode("utf-8")
            except UnicodeDecodeError as e:
                at = scan.offset + e.start
                raise LogError(f"{scan.path}: cannot be read as UTF-8 text (byte {at})") from None
            try:  # at most 80 characters: decoding them cannot nest deeply
                shown = json.dumps(json.JSONDecoder().raw_decode(text)[0])[:80]
            except ValueError:
                shown = text.split(",")[0].split("]")[0]
            raise LogError(f"{not_log}; entry {j} is {shown})")
        at = scan.offset
        raw = scan.until(b"}")
        if raw is None:
            raise scan.truncated()
        if b"{" in raw[1:] or b"[" in raw:
            raise LogError(
                f"{not_log}; entry {j} at byte {at} holds a nested list or object, deeper than a "
                "LoadGen log's two levels)"
            )
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise LogError(f"{scan.path}: not JSON (entry {j} at byte {at}: {e})") from None
        yield j, entry
        j += 1
        c = scan.peek()
        if c is None:
            raise scan.truncated()
        scan.pos += 1
        if c == ord("]"):
            return
        if c != ord(","):
            raise scan.not_json("expected ',' or ']' after an entry")


def read_accuracy_log(
    path: str | Path, dtype: str = "float32", max_bytes: int | None = None
) -> AccuracyLog:
    """Read and decode a LoadGen accuracy log. Raises LogError on any structural problem.

    Checks: a regular file of at most `max_bytes` (MAX_LOG_BYTES); valid JSON; a list of flat
    objects with an integer `qsl_idx` in [0, 2**63) and a hex string `data`; byte lengths that are
    a multiple of the dtype size; no qsl_idx logged twice; no NaN or Inf in any response (a model
    with damaged weights must not score as a coin toss).

    Memory: the file is read in CHUNK_BYTES pieces; the responses' bytes (half the log's size: two
    hex digits a byte) are held once as read and once in qsl order, so the peak is about the log's
    size plus one chunk (docs/real_weights.md has the measurement).
    """
    path = Path(path)
    if dtype not in DTYPES:
        raise LogError(f"{path}: unknown --dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    dt = DTYPES[dtype]
    not_log = (
        f"{path}: not a LoadGen accuracy log (expected a JSON list of {{seq_id, qsl_idx, data}} objects"
    )
    idx, starts = array("q"), array("q")  # per entry: qsl_idx, start of its bytes in `raw`
    with open_log(path, MAX_LOG_BYTES if max_bytes is None else max_bytes) as f:
        # two hex digits a byte: the responses fit in half the file. np.empty reserves the space
        # without touching it, so only the part written becomes resident.
        raw, used = np.empty(os.fstat(f.fileno()).st_size // 2, np.uint8), 0
        scan = _Scanner(f, path)
        _top_level(scan, not_log)
        for j, e in _entries(scan, not_log):
            if "qsl_idx" not in e or "data" not in e:
                raise LogError(f"{not_log}; entry {j} is {json.dumps(e)[:80]})")
            q, data = e["qsl_idx"], e["data"]
            if not isinstance(q, int) or isinstance(q, bool) or not 0 <= q <= _MAX_IDX:
                raise LogError(
                    f"{path}: entry {j} has qsl_idx {q!r}, expected an integer in 0..{_MAX_IDX}"
                )
            if not isinstance(data, str):
                raise LogError(f"{path}: entry {j} (qsl_idx {q}) has non-string data")
            try:
                value = bytes.fromhex(data)
            except ValueError:
                raise LogError(f"{path}: entry {j} (qsl_idx {q}) data is not hexadecimal") from None
            if len(value) % dt.itemsize:
                raise LogError(
                    f"{path}: entry {j} (qsl_idx {q}) has {len(value)} bytes, not a whole number of "
                    f"{dtype} values ({dt.itemsize} bytes each): wrong --dtype, or not this "
                    "harness's log"
                )
            idx.append(q)
            starts.append(used)
            raw[used : used + len(value)] = np.frombuffer(value, np.uint8)
            used += len(value)
        if scan.peek() is not None:
            raise scan.not_json("extra data after the list")
    return _decode(path, np.frombuffer(idx, np.int64), np.frombuffer(starts, np.int64), raw[:used], dt)


def _decode(
    path: Path, idx: np.ndarray, starts: np.ndarray, raw: np.ndarray, dt: np.dtype
) -> AccuracyLog:
    """The entries sorted by qsl_idx, their responses copied once into one float32 array."""
    order = np.argsort(idx)  # any order of equal indices: a repeated one is refused below
    idx = idx[order]
    dup = idx[1:][idx[1:] == idx[:-1]]
    if len(dup):
        raise LogError(
            f"{path}: {len(np.unique(dup))} qsl_idx logged more than once (first: {int(dup[0])}); "
            "an accuracy log (AccuracyOnly mode) logs each sample exactly once: this looks like a "
            "performance-mode or audit (TEST01) log"
        )
    ends = np.append(starts[1:], len(raw))
    sizes = ((ends - starts) // dt.itemsize)[order]
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.empty(int(offsets[-1]), dtype=np.float32)
    data = raw.view(dt)
    for j, k in enumerate(order.tolist()):  # entry by entry: no index array as large as the data
        lo = int(starts[k]) // dt.itemsize
        values[offsets[j] : offsets[j + 1]] = data[lo : lo + sizes[j]]
    del data
    bad_entries = []  # checked a block at a time: no mask as large as the data
    for lo in range(0, len(values), CHUNK_BYTES):
        finite = np.isfinite(values[lo : lo + CHUNK_BYTES])
        if not finite.all():
            bad_values = lo + np.flatnonzero(~finite)
            bad_entries.append(np.searchsorted(offsets, bad_values, side="right") - 1)
    if bad_entries:
        bad = np.unique(np.concatenate(bad_entries))
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
            f"{log.path}: qsl_idx {top} is out of range: {task} has {n_samples} samples (for the "
            f"languages and data selected); this looks like a log from {log.shape_guess()}, or from "
            "other --languages"
        )
    covered = np.zeros(n_samples, dtype=bool)
    covered[log.qsl_idx] = True
    if len(log) < n_samples:
        log.warnings.append(
            f"{log.path}: partial coverage: {len(log)} of {n_samples} samples logged "
            f"({n_samples - len(log)} missing); scoring the covered ones only"
        )
    return covered


def read_run_config(cfg: Path, needed_for: str) -> dict:
    """The run_config.json `cfg` as a dict, or LogError naming the file and what it was `needed_for`."""
    try:
        size = cfg.stat().st_size
    except OSError as e:
        raise LogError(f"{cfg}: cannot be read ({e.strerror})") from None
    if size > MAX_RUN_CONFIG_BYTES:
        raise LogError(
            f"{cfg}: {size} bytes, more than a run_config.json can be ({MAX_RUN_CONFIG_BYTES})"
        )
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError):  # bad JSON or UTF-8, unreadable, nested too deep
        config = None
    if not isinstance(config, dict):
        raise LogError(f"{cfg}: not a JSON object ({needed_for})")
    return config


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
