"""`python -m harness find_peak`: the user.conf target that fits this machine, per scenario.

Server (the default): the highest VALID Server target_qps, by bisection over short runs. Each trial
is a separate `python -m harness run --scenario Server` process (one LoadGen test per process) with
a temporary user.conf = the chosen user.conf plus one `<model>.Server.target_qps = Q` line (later
lines win in LoadGen's parser), so timing knobs still come from user.conf only.
Offline: one development run (`--duration`, default OFFLINE_TRIAL_S) measures samples/s; the line
is target_qps = 1.1 x that rate (harness.settings.sizing_line), so an official run's query of
1.1 x 600 s x target_qps samples lasts past min duration even on a quicker day.
Writes <output_dir>/find_peak.json and prints the user.conf line to use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from harness.config import REPO, RunConfig, add_run_arguments
from harness.exit_codes import BAD_INPUT
from harness.settings import sizing_line, user_conf_with

OFFLINE_TRIAL_S = 60.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--low", type=float, default=1.0, help="a QPS assumed VALID")
    parser.add_argument("--high", type=float, default=0.0, help="a QPS assumed INVALID (0 = x2 search)")
    parser.add_argument("--steps", type=int, default=5, help="bisection steps")
    parser.set_defaults(duration_s=None)


def trial(
    cfg: RunConfig, argv: list[str], lines: list[str], folder: Path, scenario: str = "Server"
) -> dict:
    """One `scenario` run with `lines` added to user.conf, into `folder`; its results.json ({} if none)."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = user_conf_with(Path(cfg.user_conf), lines, folder / "user.conf", "find_peak trial")
    cmd = [sys.executable, "-m", "harness", "run", *argv, "--scenario", scenario, "--user_conf", str(conf),
           "--output_dir", str(folder), "--allow_invalid"]  # fmt: skip
    subprocess.run(cmd, cwd=REPO, check=False)
    res = folder / cfg.model / cfg.task / scenario / "performance" / "results.json"
    return json.loads(res.read_text()) if res.is_file() else {}


def main(args: argparse.Namespace) -> int:
    args.scenario = args.scenario or "Server"
    modes = {"Server": server_peak, "Offline": offline_peak}
    if args.scenario not in modes:
        print(f"find_peak: measures {' and '.join(modes)}; for SingleStream a development run's "
              "INVALID report prints the target_latency line", file=sys.stderr)  # fmt: skip
        return BAD_INPUT
    cfg = RunConfig.from_args(args)
    out = Path(cfg.output_dir or REPO / "build" / "peak") / cfg.model / cfg.task
    argv = _drop(
        sys.argv[2:], ("--scenario", "--low", "--high", "--steps", "--output_dir", "--user_conf")
    )
    return modes[args.scenario](cfg, args, argv, out)


def offline_peak(cfg: RunConfig, args: argparse.Namespace, argv: list[str], out: Path) -> int:
    """One development Offline run; the target_qps line from the samples/s it measured x 1.1."""
    if cfg.duration_s is None:
        argv = [*argv, "--duration", f"{OFFLINE_TRIAL_S:g}"]
    res = trial(cfg, argv, [], out / "offline_trial", "Offline")
    sps = res.get("samples_per_second")
    line = sizing_line(cfg.loadgen_model_name, "Offline", res) if sps else None
    if line is None:
        print(f"find_peak: the Offline trial measured nothing (see {out / 'offline_trial'})")
        return res.get("exit_status") or 2
    record = {"samples_per_second": sps, "user_conf_line": line, "trial": str(out / "offline_trial")}
    (out / "find_peak.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"Offline: {sps:.1f} samples/s measured (record: {out / 'find_peak.json'})\nuser.conf: {line}")
    return 0


def server_peak(cfg: RunConfig, args: argparse.Namespace, argv: list[str], out: Path) -> int:
    """Bisection over Server trials for the highest VALID target_qps."""
    trials: list[dict] = []

    def probe(q: float) -> bool:
        line = f"{cfg.loadgen_model_name}.Server.target_qps = {q:.2f}"
        ok = bool(trial(cfg, argv, [line], out / f"trial_{len(trials):02d}_{q:.0f}").get("result_valid"))
        trials.append({"target_qps": q, "valid": ok})
        print(f"find_peak: target_qps {q:.2f} -> {'VALID' if ok else 'INVALID'}", flush=True)
        return ok

    lo, hi = args.low, args.high
    if hi <= 0:
        hi = max(lo * 2, 2.0)
        while probe(hi):
            lo, hi = hi, hi * 2
    for _ in range(args.steps):
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    line = f"{cfg.loadgen_model_name}.Server.target_qps = {lo:.1f}"
    record = {"peak_valid_qps": lo, "first_invalid_qps": hi, "user_conf_line": line, "trials": trials}
    (out / "find_peak.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"highest VALID Server target_qps: {lo:.1f} (record: {out / 'find_peak.json'})\nuser.conf: {line}"
    )
    return 0


def _drop(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """argv without the given `--flag value` pairs (`--flag=value` too)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        elif a.split("=", 1)[0] in flags:
            continue
        else:
            out.append(a)
    return out
