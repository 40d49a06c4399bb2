"""`python -m research mutation`: the kill-rate table of reports/mutation.md from mutmut's results."""

import json
import subprocess
import sys

from common.paths import REPO
from research.mutation import SCOPE, count, row, status


def write_meta(path, codes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exit_code_by_key": codes}), encoding="utf-8")


def test_exit_codes_map_to_mutmut_statuses():
    assert [status(c) for c in (1, 3, 0, 5, 33, 24, 255, -24, -11, 7, None)] == [
        "killed",
        "killed",
        "survived",
        "no tests",
        "no tests",
        "timeout",
        "timeout",
        "timeout",
        "crashed",
        "exit 7",
        "not run",
    ]


def test_counts_per_module_in_scope_and_rates_over_every_mutant(tmp_path):
    mutants = tmp_path / "mutants"
    write_meta(
        mutants / "sut" / "base.py.meta",
        {
            "sut.base.x_respond__mutmut_1": 1,
            "sut.base.x_respond__mutmut_2": 0,
            "sut.base.xǁWorkerǁrun__mutmut_3": -24,
            "sut.base.x_respond__mutmut_4": None,
        },
    )
    write_meta(
        mutants / "models" / "e5.py.meta",
        {
            "models.e5.x_dequantize_q4_0__mutmut_1": 3,
            "models.e5.x_other__mutmut_1": 0,  # out of scope
        },
    )
    by_module, survivors = count(mutants, SCOPE)
    assert set(by_module) == {"sut.base", "models.e5"}
    # sut.base: 4 mutants, 1 killed, 1 timeout (detected), 1 survived, 1 not run -> 2 / 4 = 50.0%
    assert row("sut.base", by_module["sut.base"]) == ["sut.base", 4, 1, 1, 1, 0, 1, "50.0%"]
    assert row("models.e5", by_module["models.e5"]) == ["models.e5", 1, 1, 0, 0, 0, 0, "100.0%"]
    assert survivors == [
        "sut.base.x_respond__mutmut_2: survived",
        "sut.base.x_respond__mutmut_4: not run",
    ]


def test_command_prints_the_table_then_the_survivors(tmp_path):
    write_meta(tmp_path / "mutants" / "t.py.meta", {"tasks.scoring.log.x_f__mutmut_1": 0})
    argv = [sys.executable, "-m", "research", "mutation", "--mutants", str(tmp_path / "mutants")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2:] == [
        "| tasks.scoring.log | 1 | 0 | 0 | 1 | 0 | 0 | 0.0% |",
        "| **all** | 1 | 0 | 0 | 1 | 0 | 0 | 0.0% |",
        "",
        "tasks.scoring.log.x_f__mutmut_1: survived",
    ]
