"""LoadGen TestSettings for one run: built-in mlperf.conf + user.conf, then development overrides.

`FromConfig` may run once per process (a second call drops the built-in mlperf.conf and its seeds),
so `make_test_settings` refuses a second call. Development mode (`duration_s`) overrides
min/max duration and lowers min_query_count; such runs are never submission grade.

`check_user_conf` reads a user.conf (or audit.config) the way LoadGen's parser does, before
anything runs: what LoadGen would refuse, misread (`1e3` for an integer key) or crash on (a value
out of its key's range in `LOADGEN_KEYS`, the one table of keys) is an error naming the line, and an
unknown key or scenario in a line for the run's model, or no line for it at all, is a warning with a
"did you mean". `check_schedule` bounds what LoadGen would pre-generate from the settings it would
take (`target_qps = 1e12` made it die with std::bad_alloc).
`sizing_fix` turns a run that ended INVALID because its queries ran out too early into the
user.conf line that sizes it for this machine.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlperf_loadgen as lg

from harness.results import Results

LOADGEN_SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
MAX_MS = 10**9  # durations and latencies above this (11.6 days) are typos, not settings
U64 = 2**64 - 1
MLPERF_CONF_ONLY = "LoadGen reads it from its built-in mlperf.conf only: this line has no effect"


@dataclass(frozen=True)
class Key:
    """How LoadGen 6.0.17's `TestSettings::FromConfig` (loadgen/test_settings_internal.cc) reads one
    user.conf key. integer: read with strtoull (so `1e3` is 1, `1.5` is 1, `010` is 8: only a decimal
    integer literal means what it says); else strtod. scenarios: the scenarios whose settings it sets
    (None = every scenario). low/high: the accepted range, `low` excluded when `positive`.
    note: why a line with this key has no effect (a warning), or ''."""

    integer: bool
    scenarios: tuple[str, ...] | None
    low: float
    high: float
    unit: str = ""
    positive: bool = False
    note: str = ""


_SEED = Key(True, None, 0, U64, note=MLPERF_CONF_ONLY)
_FLAG = Key(True, None, 0, 1)
_COUNT = Key(True, None, 0, 2**63)
_LATENCY = (("SingleStream", "MultiStream"), ("Server",))
# THE table of user.conf keys: name -> one Key per group of scenarios that reads it differently
# (target_latency: milliseconds as a double in SingleStream/MultiStream, an integer in Server).
# Values in the unit of the line (ms for durations and latencies, percent for percentiles).
LOADGEN_KEYS: dict[str, tuple[Key, ...]] = {
    "mode": (Key(True, None, 0, 3),),  # user.conf: the harness then sets it from --accuracy
    "qsl_rng_seed": (_SEED,),
    "sample_index_rng_seed": (_SEED,),
    "schedule_rng_seed": (_SEED,),
    "accuracy_log_probability": (Key(False, None, 0, 100, "%", note=MLPERF_CONF_ONLY),),
    "test05": (Key(True, None, 0, 1, note=MLPERF_CONF_ONLY),),
    "test05_qsl_rng_seed": (_SEED,),
    "test05_sample_index_rng_seed": (_SEED,),
    "test05_schedule_rng_seed": (_SEED,),
    "use_token_latencies": (_FLAG,),
    "ttft_latency": (Key(True, ("Server",), 0, MAX_MS, "ms", positive=True),),
    "tpot_latency": (Key(True, ("Server",), 0, MAX_MS, "ms", positive=True),),
    "infer_token_latencies": (_FLAG,),
    "token_latency_scaling_factor": (Key(True, None, 1, 2**32),),
    "target_latency_percentile": (
        Key(False, ("SingleStream", "MultiStream", "Server"), 0, 100, "%", positive=True),
    ),
    "samples_per_query": (Key(True, ("MultiStream",), 1, 2**32),),
    "target_latency": (
        Key(False, _LATENCY[0], 0, MAX_MS, "ms", positive=True),
        Key(True, _LATENCY[1], 0, MAX_MS, "ms", positive=True),
    ),
    "performance_issue_unique": (_FLAG,),
    "performance_issue_same": (_FLAG,),
    "performance_issue_same_index": (_COUNT,),
    "sample_concatenate_permutation": (_FLAG,),
    "coalesce_queries": (Key(True, ("Server",), 0, 1),),
    "max_async_queries": (Key(True, ("Server",), 0, 2**31 - 1),),
    "min_duration": (Key(True, None, 0, MAX_MS, "ms"),),
    "max_duration": (Key(True, None, 0, MAX_MS, "ms"),),
    "min_query_count": (_COUNT,),
    "max_query_count": (_COUNT,),
    "performance_sample_count_override": (_COUNT,),
    "accuracy_sample_count_override": (_COUNT,),
    "target_qps": (Key(False, ("Offline", "Server"), 0, 1e9, "QPS", positive=True),),
    "print_timestamps": (_FLAG,),
    "accuracy_log_rng_seed": (Key(True, None, 0, U64),),
    "accuracy_log_sampling_target": (_COUNT,),
}
# Memory LoadGen and its Python binding take per pre-generated sample (LoadGen 6.0.17, a SUT that
# completes at once, peak RSS: an Offline query of 1.1 million samples took 506 MiB, about 480 bytes a
# sample; a Server schedule of 500,000 queries 194 MiB: docs/configuration.md). A schedule above half
# the machine's memory is refused.
BYTES_PER_SAMPLE = 512


def _closest(word: str, known, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _number(text: str) -> float | None:
    """The value as LoadGen's strtoul/strtod would take it (None when neither reads all of it)."""
    if "_" in text:  # Python reads 1_000; C does not
        return None
    try:
        return float(int(text, 0))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _strtoull(text: str) -> int:
    """What C's strtoull(text, NULL, 0) returns: the longest integer prefix (0x hex, 0 octal)."""
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        return 0
    value = int(m.group(2), 0) if not re.fullmatch(r"0[0-7]+", m.group(2)) else int(m.group(2), 8)
    return (-value if m.group(1) == "-" else value) % 2**64


def _keys_for(key: str, scenario: str) -> tuple[Key, ...]:
    """The readings of `key` that a line of `scenario` (or `*`) sets."""
    return tuple(
        k for k in LOADGEN_KEYS[key] if scenario == "*" or k.scenarios is None or scenario in k.scenarios
    )


@dataclass(frozen=True)
class Line:
    """One setting line of a user.conf: `model.scenario.key = value` at line `n`."""

    n: int
    model: str
    scenario: str
    key: str
    text: str
    value: float


def parse_user_conf(path: Path) -> list[Line]:
    """The setting lines of a user.conf (or audit.config) as LoadGen's parser splits them.

    ValueError naming the file and line for what LoadGen refuses or would silently misread: a line
    that is not `model.scenario.key = value`, a value that is not one number (a comment after a value
    is a syntax error to LoadGen), and, for a known key, a value its type does not take (an integer
    key takes a decimal integer literal)."""
    try:
        text = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    lines = []
    for n, line in enumerate(text, 1):
        tokens = line.split()
        where = f"{path}: line {n}"
        if not tokens or tokens[0] == "#" or (tokens[0].startswith("#") and len(tokens) == 1):
            continue
        if tokens[0].startswith("#") and tokens[1] != "=":
            raise ValueError(f"{where}: LoadGen reads a comment only when '#' stands alone: '# ...'")
        if len(tokens) < 3 or tokens[1] != "=":
            hint = " (write spaces around '=')" if "=" in tokens[0] else ""
            raise ValueError(f"{where}: expected `model.scenario.key = value`{hint}: {line.strip()!r}")
        if len(tokens) > 3:
            raise ValueError(
                f"{where}: one value per line, and comments only on lines of their own: {line.strip()!r}"
            )
        value = _number(tokens[2])
        if value is None:
            raise ValueError(f"{where}: value {tokens[2]!r} is not a number")
        parts = tokens[0].split(".")
        if len(parts) != 3:
            raise ValueError(f"{where}: key {tokens[0]!r} is not `model.scenario.key`")
        entry = Line(n, *parts, tokens[2], value)
        if entry.key in LOADGEN_KEYS and entry.scenario in (*LOADGEN_SCENARIOS, "*"):
            integer = any(k.integer for k in _keys_for(entry.key, entry.scenario))
            if integer and not re.fullmatch(r"0|[1-9][0-9]*", entry.text):
                read = _strtoull(entry.text)
                raise ValueError(
                    f"{where}: {tokens[0]} = {entry.text} is not a usable value: {entry.key} is an "
                    f"integer key and takes a decimal integer literal (LoadGen would read "
                    f"{entry.text} as {read})"
                )
        lines.append(entry)
    return lines


def check_user_conf(path: Path, model: str, scenario: str) -> list[str]:
    """Check a user.conf for a run of `model` (LoadGen model name) in `scenario`.

    Raises ValueError naming the file and line for what `parse_user_conf` refuses, and, in lines that
    apply to this run (this model or `*`, this scenario or `*`), a value outside its key's range
    (`LOADGEN_KEYS`). Returns warnings: lines of this model (or `*`) with an unknown key or scenario,
    or a key that has no effect there; and no line at all for this model in a file that has lines
    for other models (only the `*` lines and mlperf.conf's defaults then apply)."""
    warnings = []
    lines = parse_user_conf(path)
    for line in lines:
        where = f"{path}: line {line.n}"
        m, s, key = line.model, line.scenario, line.key
        if m not in (model, "*"):
            continue  # another model's line
        if s != "*" and s not in LOADGEN_SCENARIOS:
            warnings.append(f"{where}: unknown scenario {s!r}{_closest(s, LOADGEN_SCENARIOS)}; ignored")
            continue
        if key not in LOADGEN_KEYS:
            warnings.append(
                f"{where}: unknown key {key!r}{_closest(key, LOADGEN_KEYS)}; LoadGen ignores it"
            )
            continue
        readings = _keys_for(key, s)
        if not readings:
            where_read = sorted({x for k in LOADGEN_KEYS[key] for x in k.scenarios or LOADGEN_SCENARIOS})
            warnings.append(
                f"{where}: LoadGen reads {key} only in {', '.join(where_read)}; ignored here"
            )
            continue
        notes = {k.note for k in readings if k.note}
        warnings.extend(f"{where}: {key}: {note}" for note in sorted(notes))
        if s in (scenario, "*"):
            _check_range(line, readings, where)
    named = sorted({line.model for line in lines} - {"*"})
    if named and model not in named:
        warnings.append(
            f"{path}: no line is for LoadGen model {model!r}{_closest(model, named, 0.5)}: only its "
            "`*` lines and LoadGen's mlperf.conf defaults apply (a Server latency bound of 10 ms); "
            f"add lines `{model}.<Scenario>.<key> = <value>` or pick another name with --loadgen_model"
        )
    return warnings


def _check_range(line: Line, readings: tuple[Key, ...], where: str) -> None:
    for k in readings:
        low_ok = line.value > k.low if k.positive else line.value >= k.low
        if not (math.isfinite(line.value) and low_ok and line.value <= k.high):
            lo = f"> {k.low:g}" if k.positive else f">= {k.low:g}"
            unit = f" {k.unit}" if k.unit else ""
            raise ValueError(
                f"{where}: {line.model}.{line.scenario}.{line.key} = {line.text} is not a usable value "
                f"({line.key} must be {lo} and <= {k.high:g}{unit})"
            )


def _source(lines: list[Line], model: str, scenario: str, key: str) -> Line | None:
    """The line LoadGen takes `key` from for (model, scenario): the exact name, then `*.scenario`,
    `model.*`, `*.*`; the last of equal names wins (None: mlperf.conf's value or the default)."""
    for m, s in ((model, scenario), ("*", scenario), (model, "*"), ("*", "*")):
        found = [x for x in lines if (x.model, x.scenario, x.key) == (m, s, key)]
        if found:
            return found[-1]
    return None


def pregenerated(ts: lg.TestSettings, scenario: str) -> tuple[float, str]:
    """How many samples LoadGen generates before a performance test (loadgen.cc GenerateQueries), and
    the key that sets their number: Offline one query of 1.1 x min duration x target_qps samples,
    Server min duration x target_qps queries, SingleStream / MultiStream 2 x min duration / target
    latency queries (MultiStream: of samples_per_query samples); never fewer than min_query_count."""
    duration_s = ts.min_duration_ms / 1000
    if scenario == "Offline":
        by_target = 1.1 * duration_s * ts.offline_expected_qps
    elif scenario == "Server":
        by_target = duration_s * ts.server_target_qps
    else:
        ns = (
            ts.single_stream_expected_latency_ns
            if scenario == "SingleStream"
            else ts.multi_stream_expected_latency_ns
        )
        by_target = 2 * duration_s * 1e9 / max(ns, 1)
    per_query = ts.multi_stream_samples_per_query if scenario == "MultiStream" else 1
    key = "target_qps" if scenario in ("Offline", "Server") else "target_latency"
    if ts.min_query_count > by_target:
        by_target, key = float(ts.min_query_count), "min_query_count"
    return by_target * per_query, key


def check_schedule(
    user_conf: Path,
    loadgen_model: str,
    scenario: str,
    accuracy: bool = False,
    duration_s: float | None = None,
    count: int | None = None,
    audit_conf: Path | None = None,
    memory_bytes: int | None = None,
) -> None:
    """ValueError naming the file, line and key when the settings LoadGen would take for this run
    (its mlperf.conf, then user.conf, then audit.config, as LoadGen itself reads them, then the
    harness's development overrides) make it pre-generate a schedule that would not fit in half of
    `memory_bytes` (default: this machine's memory), e.g. `target_qps = 1e12`. Reads the files through
    LoadGen without the one-FromConfig-per-process limit (conf_type 0 and 2 do not count)."""
    if accuracy:
        return  # an accuracy run issues each QSL sample once, whatever the settings
    ts = lg.TestSettings()
    ts.FromConfig("", loadgen_model, scenario, 0)  # the built-in mlperf.conf alone
    if ts.FromConfig(str(user_conf), loadgen_model, scenario, 2) != 0:
        raise ValueError(f"LoadGen could not read {user_conf} for {loadgen_model}.{scenario}")
    if audit_conf is not None:
        ts.FromConfig(str(audit_conf), "*", scenario, 2)  # as LoadGen applies it at StartTest
    ts.scenario = getattr(lg.TestScenario, scenario)
    development_overrides(ts, accuracy, duration_s, count)
    samples, key = pregenerated(ts, scenario)
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = samples * BYTES_PER_SAMPLE
    if need <= memory_bytes / 2:
        return
    confs = [(user_conf, loadgen_model)] + ([(audit_conf, "*")] if audit_conf is not None else [])
    sources = [(p, _source(parse_user_conf(p), m, scenario, key)) for p, m in confs]
    named = [(p, line) for p, line in sources if line is not None]
    if named:
        path, line = named[-1]
        where = f"{path}: line {line.n}: {line.model}.{line.scenario}.{key} = {line.text}"
    else:
        where = f"{user_conf}: no line sets {key} for {loadgen_model}.{scenario} (mlperf.conf's value)"
    raise ValueError(
        f"{where}: LoadGen would pre-generate {samples:.3g} samples for this {scenario} run, about "
        f"{need / 2**30:.3g} GiB, more than half of this machine's {memory_bytes / 2**30:.3g} GiB"
    )


_LOADED = False


# SingleStream pre-generates 2 x min_duration / expected latency queries, and once a run is ended
# early (a signal) every query left in that schedule is still issued and completed, empty, one at a
# time (about 15 us each here). A development run (--duration) therefore plans for a model 8x faster
# than user.conf's target_latency, capped at 1 ms (room for models down to 0.5 ms) and never below
# 0.1 ms: a 30 s run of a 7 ms model gets 68,573 queries, not the 600,001 a flat 0.1 ms gave, which
# took 8.6 s to complete empty after SIGTERM on a busy 2-core machine.
DEV_SS_LATENCY_NS = (100_000, 1_000_000)  # (floor, cap)


def dev_single_stream_latency_ns(conf_ns: int) -> int:
    """The expected SingleStream latency a --duration run plans its query schedule with."""
    floor, cap = DEV_SS_LATENCY_NS
    return max(floor, min(conf_ns // 8, cap))


def make_test_settings(
    user_conf: Path,
    loadgen_model: str,
    scenario: str,
    accuracy: bool,
    total_count: int,
    duration_s: float | None = None,
    count: int | None = None,
) -> lg.TestSettings:
    """TestSettings for (model, scenario). Performance sample count is capped at the QSL size."""
    global _LOADED
    if _LOADED:
        raise RuntimeError(
            "TestSettings.FromConfig already ran in this process: one LoadGen test per process"
        )
    _LOADED = True
    ts = lg.TestSettings()
    if ts.FromConfig(str(user_conf), loadgen_model, scenario) != 0:
        raise ValueError(f"LoadGen could not read {user_conf} for {loadgen_model}.{scenario}")
    ts.scenario = getattr(lg.TestScenario, scenario)
    ts.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    psc = ts.performance_sample_count_override or total_count
    ts.performance_sample_count_override = min(psc, total_count)
    development_overrides(ts, accuracy, duration_s, count)
    return ts


def development_overrides(
    ts: lg.TestSettings, accuracy: bool, duration_s: float | None, count: int | None
) -> None:
    """A development run's changes to the settings read from the conf files (never submission grade):
    `duration_s` sets min and max duration, `count` lowers min_query_count."""
    if duration_s is not None:
        ms = int(duration_s * 1000)
        ts.min_duration_ms = ms
        ts.max_duration_ms = ms
        ts.min_query_count = 1
        ts.single_stream_expected_latency_ns = dev_single_stream_latency_ns(
            ts.single_stream_expected_latency_ns
        )
    if count is not None and not accuracy:
        ts.min_query_count = min(ts.min_query_count, count) if duration_s is None else 1


# Scenario -> (user.conf key, its value from the run's results.json, format): a run whose pre-generated
# queries ran out before min duration is sized from the rate it measured x 1.1 (Offline: the query is
# 1.1 x min_duration x target_qps samples; SingleStream: 2 x min_duration / target_latency queries).
_SIZING: dict[str, tuple[str, Callable[[Results], float | None], str]] = {
    "Offline": ("target_qps", lambda r: 1.1 * r.samples_per_second, "{:.1f}"),
    "SingleStream": ("target_latency", lambda r: r.latency_ms("mean") / 1.1, "{:.3f}"),
}


def sizing_line(model: str, scenario: str, results: Results | None) -> str | None:
    """The user.conf line that sizes `scenario`'s pre-generated queries to the rate `results`
    measured x 1.1 (None where LoadGen's schedule does not depend on it, e.g. Server, or where
    `results` holds no rate)."""
    if scenario not in _SIZING or results is None:
        return None
    key, value_of, fmt = _SIZING[scenario]
    try:
        value = value_of(results)
    except TypeError:  # the rate is None: not measured
        return None
    if not value or not math.isfinite(value):
        return None
    return f"{model}.{scenario}.{key} = {fmt.format(value)}"


def sizing_fix(model: str, scenario: str, results: Results) -> str | None:
    """For a run INVALID for "min duration" / "min queries": the user.conf line that sizes it to
    this machine (`sizing_line`); None for other reasons."""
    failed = set(results.constraints_failed)
    if not failed & {"min duration", "min queries"}:
        return None
    return sizing_line(model, scenario, results)


def user_conf_with(base: Path, lines: list[str], dest: Path, why: str = "") -> Path:
    """Write `dest` = `base` user.conf plus `lines` (e.g. `full.Server.target_qps = 120.00`).

    LoadGen timing knobs live in user.conf only; a later line overrides an earlier one, so derived
    runs (find_peak trials, study cells, benchmark runs) append their target here instead of using
    flags. Returns `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = Path(base).read_text() if Path(base).is_file() else ""
    note = f"# {why}\n" if why else ""
    dest.write_text(f"{text.rstrip()}\n{note}" + "".join(f"{line}\n" for line in lines))
    return dest
