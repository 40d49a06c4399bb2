"""`python -m research find_peak`: the highest VALID Server target_qps, by bisection over short runs.

Each trial is a separate `python -m harness run --scenario Server` process (one LoadGen test per
process) with a temporary user.conf = the chosen user.conf plus one `<model>.Server.target_qps = Q`
line (later lines win in LoadGen's parser), so timing knobs still come from user.conf only.
Writes <output_dir>/find_peak.json and prints the user.conf line to use.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from common.paths import BUILD
from harness.config import RunConfig, add_run_arguments
from harness.launch import launch
from harness.settings import user_conf_with


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--low", type=float, default=1.0, help="a QPS assumed VALID")
    parser.add_argument("--high", type=float, default=0.0, help="a QPS assumed INVALID (0 = x2 search)")
    parser.add_argument("--steps", type=int, default=5, help="bisection steps")
    parser.set_defaults(duration_s=None)


def trial(cfg: RunConfig, qps: float, folder: Path) -> bool:
    """One Server run of `cfg` offered `qps` into `folder`; True if LoadGen reported VALID."""
    line = f"{cfg.loadgen_model_name}.Server.target_qps = {qps:.2f}"
    conf = user_conf_with(Path(cfg.user_conf), [line], folder / "user.conf", "find_peak trial")
    run = launch(replace(cfg, scenario="Server", user_conf=conf, output_dir=folder, allow_invalid=True))
    return run.record is not None and run.record.valid


def main(args: argparse.Namespace) -> int:
    args.scenario = "Server"
    cfg = RunConfig.from_args(args)
    out = Path(cfg.output_dir or BUILD / "peak") / cfg.model / cfg.task
    trials: list[dict] = []

    def is_valid_at(q: float) -> bool:
        ok = trial(cfg, q, out / f"trial_{len(trials):02d}_{q:.0f}")
        trials.append({"target_qps": q, "valid": ok})
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
    line = f"{cfg.loadgen_model_name}.Server.target_qps = {lo:.1f}"
    record = {"peak_valid_qps": lo, "first_invalid_qps": hi, "user_conf_line": line, "trials": trials}
    (out / "find_peak.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"highest VALID Server target_qps: {lo:.1f} (record: {out / 'find_peak.json'})\nuser.conf: {line}"
    )
    return 0
