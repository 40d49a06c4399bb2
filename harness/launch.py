"""The one launcher: a `RunConfig` -> the child `python -m harness run ...` that runs it, and its folder.

LoadGen allows one test per process (harness/settings.py), so every tool that needs several runs
(compliance, find_peak, the benchmark in bench/, and the research tools: the study, multitask)
starts each one as a child process here. `child_argv` is the only place a `harness run` command line
is built; the child's run folder comes from `harness.run_folder.RunFolder.plan`, the only owner of
that path; what the child left there is read back as a `RunRecord` (harness/run_record.py).

The command line holds only the flags whose values differ from what the child resolves by itself
(defaults < device < encoder, `RunConfig.layered`), so the child's RunConfig equals the parent's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from common.paths import REPO
from harness.config import RunConfig, add_run_arguments
from harness.run_folder import RunFolder
from harness.run_record import RunRecord
from harness.settings import user_conf_with


@cache
def _flags() -> dict[str, tuple[str, bool]]:
    """RunConfig field -> (its `harness run` flag, whether it is a switch), from add_run_arguments."""
    parser = argparse.ArgumentParser(add_help=False)
    add_run_arguments(parser)
    return {
        a.dest: (a.option_strings[0], isinstance(a, argparse._StoreTrueAction))
        for a in parser._actions
        if a.option_strings
    }


def _text(value: Any) -> str:
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def child_argv(
    cfg: RunConfig,
    command: str = "run",
    more_flags: Sequence[str] = (),
    python: str = sys.executable,
    program: Sequence[str] | None = None,
) -> list[str]:
    """The child command line that runs `cfg`: `python -m harness <command>` (or `program`, e.g. a
    test's fake runner), one flag per value that differs from the child's own resolution, then
    `more_flags` (flags of `command` beyond the run flags, or a user's pass-through)."""
    resolved = {f.name: f.default for f in fields(RunConfig)}
    resolved |= RunConfig.layered_defaults(cfg.device, cfg.encoder)
    flags = _flags()
    argv = list(program or (python, "-m", "harness", command))
    for f in fields(RunConfig):
        value = getattr(cfg, f.name)
        if value == resolved[f.name]:
            continue
        if f.name not in flags:
            raise ValueError(f"RunConfig.{f.name} has no `harness run` flag: cannot pass {value!r}")
        flag, switch = flags[f.name]
        if switch:
            if not value:
                raise ValueError(f"{flag} cannot be switched off on a command line")
            argv.append(flag)
        elif value is not None:
            argv += [flag, _text(value)]
    return argv + list(more_flags)


@dataclass(frozen=True)
class Launched:
    """A finished child run. rc: its exit status (-9 when killed at the timeout); record: what it
    left in its run folder (None when there is no run folder, e.g. it failed before making one);
    log: where its output went (None: this process's stdout)."""

    argv: list[str]
    rc: int
    run_dir: Path
    record: RunRecord | None
    log: Path | None = None

    @property
    def results(self):
        """The run's results.json (harness.run_record.Results), None when it wrote none."""
        return self.record.results if self.record else None


def launch(
    cfg: RunConfig,
    log: Path | None = None,
    *,
    command: str = "run",
    more_flags: Sequence[str] = (),
    python: str = sys.executable,
    program: Sequence[str] | None = None,
    cwd: Path = REPO,
    timeout_s: float | None = None,
) -> Launched:
    """Run `cfg` in a child process and wait for it. `cfg.output_dir` must be set (the run folder of a
    timestamped folder is known to the child only). `log`: the child's stdout and stderr go there,
    after its command line; None leaves them on this process's. The child imports this checkout
    (PYTHONPATH starts with the repository), whatever its working directory `cwd`."""
    if cfg.output_dir is None:
        raise ValueError("launch needs cfg.output_dir: the child's run folder must be known")
    argv = child_argv(cfg, command, more_flags, python, program)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    out = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "w")  # noqa: SIM115 - closed below
        out.write(" ".join(argv) + "\n\n")
        out.flush()
    try:
        stderr = subprocess.STDOUT if out else None
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=out, stderr=stderr, timeout=timeout_s, check=False
        )
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = -9
    finally:
        if out is not None:
            out.close()
    run_dir = RunFolder.plan(cfg).path
    try:
        record = RunRecord.load(run_dir)
    except FileNotFoundError:
        record = None
    return Launched(argv, rc, run_dir, record, log)


def launch_with_conf(
    cfg: RunConfig, conf_lines: list[str], name: str, runs_dir: Path, **changes: Any
) -> Launched:
    """One child run of `cfg` with `changes` (RunConfig fields), `conf_lines` appended to a copy of
    its user.conf, into runs_dir/name; INVALID results are kept (allow_invalid). The benchmarks'
    runs (bench/benchmark.py, bench/ray_bench.py)."""
    out = runs_dir / name
    conf = user_conf_with(cfg.user_conf, conf_lines, out / "user.conf", f"benchmark: {name}")
    child = replace(cfg, user_conf=conf, output_dir=out, allow_invalid=True, **changes)
    return launch(child, out / "benchmark.log")
