"""Per-module kill rates of the last mutmut run (docs/mutation_testing.md), as markdown.

python reports/scripts/mutation_summary.py [GLOB ...]   (from the repository root, after `mutmut run`)

Reads mutants/**/*.meta (mutmut's result files: mutant name -> the exit code of its test run). Only
mutants matching the globs are counted (default: the scope of docs/mutation_testing.md). Detected =
killed (a test failed) + timeout (a loop or wait the mutant made endless) + crash; the rate is
detected / every mutant in scope, so a mutant that no test reaches counts against its module.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

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
]
# mutmut's exit codes (mutmut/stats.py): 1, 3 killed; 0 survived; 5, 33 no tests; 24, 36, 152, 255,
# -24 timeout; negative signals other than SIGXCPU: the test process crashed (detected)
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {5, 33}, {24, 36, 152, 255, -24}


def status(code: int | None) -> str:
    if code is None:
        return "not run"
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code in TIMEOUT:
        return "timeout"
    return "crashed" if code < 0 else f"exit {code}"


def main(argv: list[str]) -> int:
    globs = argv or SCOPE
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors: list[str] = []
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        for name, code in codes.items():
            if not any(fnmatch.fnmatch(name, g) for g in globs):
                continue
            module = re.sub(r"\.x[_ǁ].*$", "", name)
            s = status(code)
            by_module[module][s] += 1
            if s in ("survived", "no tests", "not run"):
                survivors.append(f"{name}: {s}")
    print("| module | mutants | killed | timeout/crash | survived | no tests | not run | detected |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    total: Counter = Counter()
    for module, c in sorted(by_module.items()):
        total += c
        print(row(module, c))
    print(row("**all**", total))
    print()
    print("\n".join(survivors))
    return 0


def row(module: str, c: Counter) -> str:
    n = sum(c.values())
    detected = c["killed"] + c["timeout"] + c["crashed"]
    other = sum(v for k, v in c.items() if k.startswith("exit "))
    return (
        f"| {module} | {n} | {c['killed']} | {c['timeout'] + c['crashed'] + other} | {c['survived']} "
        f"| {c['no tests']} | {c['not run']} | {100 * detected / max(n, 1):.1f}% |"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
