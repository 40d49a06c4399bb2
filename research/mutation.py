"""`python -m research mutation [GLOB ...]`: per-module kill rates of the last mutmut run
(docs/mutation_testing.md), as markdown, then every survivor by name.

Reads mutants/**/*.py.meta (mutmut's result files: mutant name -> the exit code of its test run),
from the working directory or `--mutants`. Only mutants matching the globs count (default: SCOPE,
the scope of docs/mutation_testing.md). Detected = killed (a test failed) + timeout (a loop or wait
the mutant made endless) + crash; the rate is detected / every mutant in scope, so a mutant that no
test reaches counts against its module.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from common.tables import markdown_table

SCOPE = [
    "tasks.scoring.*",
    "sut.base.*",
    "models.e5.x_dequantize_q4_0*",
    "models.e5.x_read_e5s1*",
    "models.e5.xǁ_Readerǁ*",
    "harness.submission.compliance.*",
    "harness.submission.truncate.*",
    "harness.submission.stage.*",
    "research.bootstrap.*",
    *(f"research.accuracy.x_{f}*" for f in ("holm_levels", "contrast_verdicts", "_t_interval")),
    *(f"research.accuracy.x_{f}*" for f in ("seed_combination", "keeps_verdict", "effect_verdict")),
    "research.accuracy.xǁSeedEstimateǁ*",
    "research.collect.x_mean_interval*",
    "research.curve.x_gap_changes*",
]
# mutmut's exit codes (mutmut/stats.py): 1, 3 killed; 0 survived; 5, 33 no tests; 24, 36, 152, 255,
# -24 timeout; negative signals other than SIGXCPU: the test process crashed (detected)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS |= dict.fromkeys((24, 36, 152, 255, -24), "timeout")
UNDETECTED = ("survived", "no tests", "not run")


def status(code: int | None) -> str:
    if code is None:
        return "not run"
    return STATUS.get(code) or ("crashed" if code < 0 else f"exit {code}")


def count(mutants: Path, globs: list[str]) -> tuple[dict[str, Counter], list[str]]:
    """Per module, how many of its mutants in scope ended in each status; the undetected by name."""
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        for name, code in codes.items():
            if any(fnmatch.fnmatch(name, g) for g in globs):
                by_module[re.sub(r"\.x[_ǁ].*$", "", name)][status(code)] += 1
                if status(code) in UNDETECTED:
                    survivors.append(f"{name}: {status(code)}")
    return by_module, survivors


def row(module: str, c: Counter) -> list:
    n = sum(c.values())
    other = c["timeout"] + c["crashed"] + sum(v for k, v in c.items() if k.startswith("exit "))
    rate = f"{100 * (c['killed'] + c['timeout'] + c['crashed']) / max(n, 1):.1f}%"
    return [module, n, c["killed"], other, c["survived"], c["no tests"], c["not run"], rate]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("globs", nargs="*", help="mutant names to count (default: SCOPE)")
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder")


def main(args: argparse.Namespace) -> int:
    by_module, survivors = count(args.mutants, args.globs or SCOPE)
    header = [
        "module",
        "mutants",
        "killed",
        "timeout/crash",
        "survived",
        "no tests",
        "not run",
        "detected",
    ]
    rows = [row(m, c) for m, c in sorted(by_module.items())]
    rows.append(row("**all**", sum(by_module.values(), Counter())))
    print("\n".join([*markdown_table(header, rows), "", *survivors]))
    return 0
