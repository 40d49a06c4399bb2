"""The mlperf.conf a run used, for the package (the sample packages keep one per scenario folder).

LoadGen 6.0.x compiles its mlperf.conf into the binary and reads no other, so the text is taken from
the installed mlperf_loadgen extension (a NUL-terminated string holding the `qsl_rng_seed` line):
exactly what the runs applied. For runs made with an earlier round's seeds (`--seeds`), the three
seed lines are replaced by the values the run set, under a comment saying so.
"""

from __future__ import annotations

from pathlib import Path

import mlperf_loadgen

from harness.seeds import SEEDS

SEED_KEYS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")


def builtin_mlperf_conf() -> str:
    """LoadGen's built-in mlperf.conf text; RuntimeError when the extension does not hold one."""
    binary = Path(mlperf_loadgen.__file__).read_bytes()
    at = binary.find(b"*.*.qsl_rng_seed = ")
    if at < 0:
        raise RuntimeError(f"{mlperf_loadgen.__file__}: no built-in mlperf.conf found")
    start = binary.rfind(b"\0", 0, at) + 1
    return binary[start : binary.index(b"\0", at)].decode("utf-8")


def mlperf_conf_for(seeds: str | None) -> str:
    """The mlperf.conf that applied to a run made with `harness run --seeds <seeds>` (None: none)."""
    text = builtin_mlperf_conf()
    if seeds is None:
        return text
    values = dict(zip(SEED_KEYS, SEEDS[seeds], strict=True))
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key.startswith("*.*.") and key[4:] in values:
            line = f"{key} = {values[key[4:]]}"
        lines.append(line)
    note = (
        f"# LoadGen's built-in mlperf.conf; the three seeds are round {seeds}'s "
        f"(harness run --seeds {seeds})"
    )
    return "\n".join([note, *lines]) + "\n"
