"""LoadGen TestSettings for one run: built-in mlperf.conf + user.conf, then development overrides.

`FromConfig` may run once per process (a second call drops the built-in mlperf.conf and its seeds),
so `make_test_settings` refuses a second call. Development mode (`duration_s`) overrides
min/max duration and lowers min_query_count; such runs are never submission grade.
"""

from __future__ import annotations

from pathlib import Path

import mlperf_loadgen as lg

_LOADED = False


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
        # SingleStream pre-generates min_duration / expected latency queries: make that plenty.
        ts.single_stream_expected_latency_ns = min(ts.single_stream_expected_latency_ns, 100_000)
    if count is not None and not accuracy:
        ts.min_query_count = min(ts.min_query_count, count) if duration_s is None else 1
    return ts


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
