"""Merged LoRA's cost relative to full, round by round, pooled over several study grids.

Each grid's rounds are independent runs of every model back to back; per round the cost is the
geometric mean over that round's figures (research/collect.py `per_round_cost`, as the generated
answer's same-graph check takes it), and over all the grids' rounds a Student's t 95% interval
(`mean_interval`).

    python reports/scripts/same_graph_rounds.py build/study-e5 build/order-A build/order-B
"""

from __future__ import annotations

import sys
from pathlib import Path

from research.collect import collect_runs, mean_interval, per_round_cost, round_ratios

MODEL = "lora-squad"


def main(runs_dirs: list[str]) -> int:
    if not runs_dirs:
        print(__doc__)
        return 2
    pooled = []
    for d in runs_dirs:
        rows = [
            r for r in round_ratios(collect_runs(Path(d))) if r["model"] == MODEL and r["rounds"] > 1
        ]
        if not rows:
            print(f"{d}: no {MODEL} rounds", file=sys.stderr)
            return 1
        costs = list(per_round_cost(rows).values())
        mean, low, high = mean_interval(costs)
        print(f"{d}: {len(rows)} figures, {len(costs)} rounds: {', '.join(f'{c:.3f}' for c in costs)}"
              f" -> {mean:.3f}x [{low:.3f}-{high:.3f}]")  # fmt: skip
        pooled += costs
    mean, low, high = mean_interval(pooled)
    print(f"all {len(pooled)} rounds: {mean:.3f}x [{low:.3f}-{high:.3f}] (Student's t 95% interval)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
