"""LoadGen TestSettings for one run: built-in mlperf.conf + user.conf, then development overrides.

`FromConfig` may run once per process (a second call drops the built-in mlperf.conf and its seeds),
so `make_test_settings` refuses a second call. Development mode (`duration_s`) overrides
min/max duration and lowers min_query_count; such runs are never submission grade.

`check_user_conf` reads a user.conf (or audit.config) the way LoadGen's parser does, before
anything runs: what LoadGen would refuse (or silently ignore) is an error naming the line, and an
unknown key or scenario in a line for the run's model is a warning with a "did you mean".
`sizing_fix` turns a run that ended INVALID because its queries ran out too early into the
user.conf line that sizes it for this machine.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg

# Keys LoadGen 6.0.x's FromConfig reads (test_settings_internal.cc), and the scenario names.
LOADGEN_KEYS = frozenset(
    "mode min_duration max_duration min_query_count max_query_count qsl_rng_seed "
    "sample_index_rng_seed schedule_rng_seed accuracy_log_rng_seed accuracy_log_probability "
    "accuracy_log_sampling_target print_timestamps performance_issue_unique performance_issue_same "
    "performance_issue_same_index performance_sample_count_override accuracy_sample_count_override "
    "target_latency_percentile target_latency target_qps samples_per_query max_async_queries "
    "coalesce_queries sample_concatenate_permutation use_token_latencies ttft_latency tpot_latency "
    "infer_token_latencies token_latency_scaling_factor test05 test05_qsl_rng_seed "
    "test05_sample_index_rng_seed test05_schedule_rng_seed".split()
)
LOADGEN_SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
# Keys whose value must be > 0 (the others >= 0): a zero target or latency cannot size a run.
_POSITIVE = frozenset({"target_qps", "target_latency"})


def _closest(word: str, known) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
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


def check_user_conf(path: Path, model: str, scenario: str) -> list[str]:
    """Check a user.conf for a run of `model` (LoadGen model name) in `scenario`.

    Raises ValueError naming the file and line for what LoadGen's parser refuses or would silently
    ignore: a line that is not `model.scenario.key = value`, a value that is not one number (a
    comment after a value is a syntax error to LoadGen), and, in lines that apply to this run, a
    value that is negative or not finite (or zero for target_qps / target_latency). Returns
    warnings for lines of this model (or `*`) with an unknown key or scenario."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None
    warnings = []
    for n, line in enumerate(lines, 1):
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
        m, s, key = parts
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
        if s in (scenario, "*") and (
            not math.isfinite(value) or value < 0 or (value == 0 and key in _POSITIVE)
        ):
            raise ValueError(f"{where}: {tokens[0]} = {tokens[2]} is not a usable value")
    return warnings


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
    return ts


# Scenario -> (user.conf key, its value from the run's results.json, format): a run whose pre-generated
# queries ran out before min duration is sized from the rate it measured x 1.1 (Offline: the query is
# 1.1 x min_duration x target_qps samples; SingleStream: 2 x min_duration / target_latency queries).
_SIZING: dict[str, tuple[str, Callable[[dict[str, Any]], float | None], str]] = {
    "Offline": ("target_qps", lambda r: 1.1 * r["samples_per_second"], "{:.1f}"),
    "SingleStream": ("target_latency", lambda r: r["latency_ns"]["mean"] / 1e6 / 1.1, "{:.3f}"),
}


def sizing_line(model: str, scenario: str, results: dict[str, Any]) -> str | None:
    """The user.conf line that sizes `scenario`'s pre-generated queries to the rate `results`
    measured x 1.1 (None where LoadGen's schedule does not depend on it, e.g. Server)."""
    if scenario not in _SIZING:
        return None
    key, value_of, fmt = _SIZING[scenario]
    try:
        value = value_of(results)
    except (KeyError, TypeError):
        return None
    if not value or not math.isfinite(value):
        return None
    return f"{model}.{scenario}.{key} = {fmt.format(value)}"


def sizing_fix(model: str, scenario: str, results: dict[str, Any]) -> str | None:
    """For a run INVALID for "min duration" / "min queries": the user.conf line that sizes it to
    this machine (`sizing_line`); None for other reasons."""
    failed = set(results.get("constraints_failed") or ())
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
