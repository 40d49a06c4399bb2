"""`python -m harness find_peak` (`make find_peak`): the user.conf target that fits this machine, per
scenario.

Server (the default): the highest VALID Server target_qps, by bisection over short runs. Each trial
is a separate `python -m harness run --scenario Server` process (one LoadGen test per process,
started through harness.launch) with a temporary user.conf = the chosen user.conf plus one
`<model>.Server.target_qps = Q` line (later lines win in LoadGen's parser), so timing knobs still
come from user.conf only. A development trial (`--duration`) that met its latency bound but not
LoadGen's early stopping is run again at the same load for as long as LoadGen said it needed
(`longer_trial_s`), while each such trial leaves fewer queries short (at most LONGER_TRIALS times):
otherwise a search would call loads INVALID for being low.
Offline: a development run (`--duration`, default OFFLINE_TRIAL_S) measures samples/s; the line
is target_qps = 1.1 x that rate (harness.settings.sizing_line), so an official run's query of
1.1 x 600 s x target_qps samples lasts past min duration even on a quicker day. LoadGen sizes the
trial's query from user.conf's target: when that is far too low (no line for the model yet), the
query ends before min duration and its rate is mostly start-up, so the trial is INVALID; it is then
run again with the query sized from OFFLINE_RESIZE x the rate just measured, up to OFFLINE_TRIALS
times, until a trial lasts min duration.
A trial that measured nothing (its run failed: bad input, a SUT failure, a signal) stops the search
with that run's exit status: it says nothing about the load.
Writes <output_dir>/<MODEL>/<TASK>/find_peak.json (the trials' run folders beside it) and prints the
user.conf line to use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.exit_codes import BAD_INPUT, INVALID, SUT_FAILURE, describe
from common.paths import BUILD
from harness.config import RunConfig, add_run_arguments
from harness.launch import launch
from harness.run_record import SUPERSEDED, Results
from harness.settings import sizing_line, user_conf_with

# What a search writes in its folder (search_folder): the record, and one folder per trial
RECORD = "find_peak.json"
SERVER_TRIAL, OFFLINE_TRIAL = "trial_", "offline_trial_"
OFFLINE_TRIAL_S = 60.0
# A development Server trial that met its latency bound but failed only LoadGen's early stopping
# (too few queries to show the bound at its confidence: the lower the offered load, the fewer queries
# a fixed duration holds) is run once more at the same load, lasting long enough for the queries
# LoadGen said it still needed, x this margin. Measured: e5-small adapter at 19.2 QPS, 60 s: p99
# 111 ms under the 130 ms bound, INVALID, "Would need to run at least 517 more queries".
EARLY_STOPPING_MARGIN = 1.2
# LoadGen's shortfall assumes the extra queries all meet the bound, so one longer trial can still
# fall short (e5-small adapter at 19-23 QPS: 110 and 173 queries short after the first). The trial is
# repeated while the shortfall shrinks, at most this many times, and never past an official run's
# min duration: a load still short then is INVALID for this search.
LONGER_TRIALS = 3
MAX_TRIAL_S = 600.0
OFFLINE_TRIALS = 3
# an INVALID (too short) trial's rate underestimates: the next query is sized above it
OFFLINE_RESIZE = 2.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--low", type=float, default=1.0, help="a QPS assumed VALID")
    parser.add_argument("--high", type=float, default=0.0, help="a QPS assumed INVALID (0 = x2 search)")
    parser.add_argument("--steps", type=int, default=5, help="bisection steps")
    parser.set_defaults(duration_s=None)


class TrialFailed(Exception):
    """A trial that measured nothing: its run exited with a SUT failure, bad input or a signal (with
    --allow_invalid a measured run exits 0, VALID or not). Such a trial says nothing about the load,
    so the search stops rather than bisect on it."""

    def __init__(self, rc: int, folder: Path):
        super().__init__(
            f"find_peak: the trial in {folder} ended with exit status {rc} ({describe(rc)}) without "
            "a measurement (its output above says why); the search stops, no target derived"
        )
        self.rc = rc


def trial(cfg: RunConfig, lines: list[str], folder: Path) -> Results | None:
    """One run of `cfg` with `lines` added to user.conf, into `folder`; its results (None if none).
    TrialFailed when the run did not end with a measurement."""
    conf = user_conf_with(Path(cfg.user_conf), lines, folder / "user.conf", "find_peak trial")
    launched = launch(replace(cfg, user_conf=conf, output_dir=folder, allow_invalid=True))
    if launched.rc != 0:
        raise TrialFailed(launched.rc, folder)
    return launched.results


def search_folder(cfg: RunConfig) -> Path:
    """Where a search of `cfg` keeps its trials (trial_NN/, each holding a run folder) and
    find_peak.json: its own folder, not a run folder."""
    return Path(cfg.output_dir or BUILD / "peak") / cfg.model / cfg.task


def main(args: argparse.Namespace) -> int:
    args.scenario = args.scenario or "Server"
    modes = {"Server": server_peak, "Offline": offline_peak}
    if args.scenario not in modes:
        print(
            f"find_peak: measures {' and '.join(modes)}; for SingleStream a development run's "
            "INVALID report prints the target_latency line",
            file=sys.stderr,
        )
        return BAD_INPUT
    cfg = RunConfig.from_args(args)
    out = search_folder(cfg)
    set_aside_earlier_search(out)
    try:
        return modes[args.scenario](cfg, args, out)
    except TrialFailed as failed:
        print(failed, file=sys.stderr)
        return failed.rc if failed.rc in (SUT_FAILURE, BAD_INPUT) or failed.rc > 128 else SUT_FAILURE


def set_aside_earlier_search(out: Path) -> Path | None:
    """Move what an earlier search left in `out` (its trial_NN_Q/ or offline_trial_K/ folders and
    find_peak.json; nothing else: other runs' folders may share `out`) into out/superseded/<when it
    ended>/, where nothing collects it: the new search's trials, at other loads, must not mix with
    the old ones. Returns that folder (None when there was no earlier search)."""
    ours = (RECORD, SERVER_TRIAL, OFFLINE_TRIAL)  # str.startswith: the file, or a folder's prefix
    earlier = sorted(p for p in out.iterdir() if p.name.startswith(ours)) if out.is_dir() else []
    if not earlier:
        return None
    ended = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime for p in earlier)))
    dest, k = out / SUPERSEDED / ended, 1
    while dest.exists():
        k += 1
        dest = out / SUPERSEDED / f"{ended}-{k}"
    dest.mkdir(parents=True)
    for p in earlier:
        p.rename(dest / p.name)
    print(f"find_peak: the earlier search in {out} is kept in {dest} (never collected)", flush=True)
    return dest


def offline_peak(cfg: RunConfig, args: argparse.Namespace, out: Path) -> int:
    """Development Offline runs until one lasts min duration; the target_qps line from the
    samples/s of the last one x 1.1."""
    if cfg.duration_s is None:
        cfg = replace(cfg, duration_s=OFFLINE_TRIAL_S)
    lines: list[str] = []
    trials: list[dict] = []
    for k in range(OFFLINE_TRIALS):
        folder = out / f"{OFFLINE_TRIAL}{k}"
        res = trial(cfg, lines, folder)
        sps = res.samples_per_second if res else None
        trials.append(
            {
                "trial": str(folder),
                "user_conf": lines,
                "samples_per_second": sps,
                "valid": bool(res and res.result_valid),
            }
        )
        if not sps or "min duration" not in res.constraints_failed:
            break
        print(
            f"find_peak: Offline trial {k} INVALID at {sps:.1f} samples/s (a query too small for "
            "min duration); sizing the next from it",
            flush=True,
        )
        lines = [f"{cfg.loadgen_model_name}.Offline.target_qps = {OFFLINE_RESIZE * sps:.2f}"]
    line = sizing_line(cfg.loadgen_model_name, "Offline", res) if res and sps else None
    if line is None:
        print(f"find_peak: the Offline trial measured nothing (see {folder})")
        return (res.exit_status if res else None) or SUT_FAILURE
    record = {
        "samples_per_second": sps,
        "user_conf_line": line,
        "valid": trials[-1]["valid"],
        "trials": trials,
    }
    (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    print(f"Offline: {sps:.1f} samples/s measured (record: {out / RECORD})\nuser.conf: {line}")
    return 0


def longer_trial_s(duration_s: float | None, res: Results | None, qps: float) -> float | None:
    """The duration a development Server trial of `duration_s` at `qps` needs again when early
    stopping was the only constraint it failed (see EARLY_STOPPING_MARGIN), capped at MAX_TRIAL_S;
    None for any other outcome, an official run (None), or a trial that already lasted MAX_TRIAL_S."""
    if res is None or res.result_valid or duration_s is None or duration_s >= MAX_TRIAL_S:
        return None
    if tuple(res.constraints_failed) != ("early stopping",) or not res.early_stopping_queries_short:
        return None
    return min(MAX_TRIAL_S, duration_s + EARLY_STOPPING_MARGIN * res.early_stopping_queries_short / qps)


def server_peak(cfg: RunConfig, args: argparse.Namespace, out: Path) -> int:
    """Bisection over Server trials for the highest VALID target_qps."""
    trials: list[dict] = []

    def is_valid_at(q: float) -> bool:
        line = f"{cfg.loadgen_model_name}.Server.target_qps = {q:.2f}"
        folder = out / f"{SERVER_TRIAL}{len(trials):02d}_{q:.0f}"
        res = trial(cfg, [line], folder)
        record: dict[str, Any] = {"target_qps": q}
        durations: list[float] = []  # of the longer trials
        short = None  # queries the last trial was short of early stopping
        while len(durations) < LONGER_TRIALS:
            longer = longer_trial_s(durations[-1] if durations else cfg.duration_s, res, q)
            if longer is None or (short is not None and res.early_stopping_queries_short >= short):
                break  # decided, or the last longer trial came no closer
            short = res.early_stopping_queries_short
            print(
                f"find_peak: target_qps {q:.2f} met its latency bound {short} queries short of "
                f"early stopping; again for {longer:.0f} s",
                flush=True,
            )
            durations.append(longer)
            suffix = "_longer" + (str(len(durations)) if len(durations) > 1 else "")
            res = trial(replace(cfg, duration_s=longer), [line], folder.with_name(folder.name + suffix))
        if durations:
            record["longer_s"] = [round(d, 1) for d in durations]
        ok = res is not None and res.result_valid
        if res is not None and (p99 := res.latency_ms("p99")) is not None:  # the last run's tail
            record |= {"p99_ms": round(p99, 1), "constraints_failed": list(res.constraints_failed)}
        trials.append(record | {"valid": ok})
        print(f"find_peak: target_qps {q:.2f} -> {'VALID' if ok else 'INVALID'}", flush=True)
        return ok

    lo, hi = args.low, args.high
    if hi <= 0:
        hi = max(lo * 2, 2.0)
        while is_valid_at(hi):
            lo, hi = hi, hi * 2
    for _ in range(args.steps):
        mid = (lo + hi) / 2
        if is_valid_at(mid):
            lo = mid
        else:
            hi = mid
    # --low is assumed VALID, never run: a peak is reported only if some trial was VALID
    found = any(t["valid"] for t in trials)
    line = f"{cfg.loadgen_model_name}.Server.target_qps = {lo:.1f}" if found else None
    record = {
        "peak_valid_qps": lo if found else None,
        "first_invalid_qps": hi,
        "user_conf_line": line,
        "trials": trials,
    }
    (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if not found:
        print(
            f"find_peak: no trial was VALID; the peak lies below {hi:.2f} QPS (the lowest tried): "
            f"run again with a lower --low (record: {out / RECORD})",
            file=sys.stderr,
        )
        return INVALID
    print(f"highest VALID Server target_qps: {lo:.1f} (record: {out / RECORD})\nuser.conf: {line}")
    return 0
