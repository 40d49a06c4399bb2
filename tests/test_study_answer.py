"""docs/study.md's answer is prose written by people; its numbers are the generated reports'.

Each `<!-- figures: REPORT -->` ... `<!-- /figures -->` block of docs/study.md quotes one report,
and every number in the block is one of that report's numbers, written the same way. The study's
report (reports/study-e5/study.md, tables only, real e5-small figures) is what `python -m research
study --preset e5-small --from_runs_csv reports/study-e5/study_runs.csv` writes from the committed
runs; reports/multitask.md's tables are `python -m bench multitask` outputs (random weights at the
e5-small shapes, the tiny zoo), each under the command that wrote it."""

from __future__ import annotations

import re
import shutil

import pytest

from common.paths import REPO
from research.report import write_report

REPORT = REPO / "reports" / "study-e5"
DOC = REPO / "docs" / "study.md"
BLOCK = re.compile(r"<!-- figures: (\S+) -->(.*?)<!-- /figures -->", re.S)
# a number as written: a sign only where it does not join a range (0.852-1.005), thousands commas,
# never part of a word (e5, p99, int8) or of a longer number
NUMBER = re.compile(r"(?<![\w.-])[+-]?\d+(?:,\d{3})*(?:\.\d+)?(?![\w])|(?<=\d-)\d+(?:\.\d+)?")


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def unquoted(prose: str, report: str) -> list[str]:
    """The numbers of `prose` that `report` does not hold, written the same way."""
    held = set(numbers(report))
    return [n for n in numbers(prose) if n not in held]


def blocks() -> dict[str, str]:
    """report path -> the prose of docs/study.md that quotes it (one block per report)."""
    found = BLOCK.findall(DOC.read_text())
    assert len({path for path, _ in found}) == len(found), "one block per report"
    return dict(found)


def answer() -> str:
    return blocks()["reports/study-e5/study.md"]


def test_numbers_are_read_as_written():
    assert numbers("-5.3 [-20.2, +9.6] at 99.69%, 0.852-1.005, e5-small p99 int8 373,920 x 2.0") == [
        "-5.3",
        "-20.2",
        "+9.6",
        "99.69",
        "0.852",
        "1.005",
        "373,920",
        "2.0",
    ]


def test_every_number_the_answer_quotes_is_in_the_generated_report():
    prose, report = answer(), (REPORT / "study.md").read_text()
    assert len(numbers(prose)) >= 40  # the answer quotes its figures: the check is not empty
    assert unquoted(prose, report) == []
    # a figure changed in the prose, or rounded differently, is caught
    assert unquoted(prose.replace("0.881 (0.852", "0.88 (0.852"), report) == ["0.88"]
    assert unquoted(prose.replace("[-9.0, -1.7]", "[-9.0, -1.6]"), report) == ["-1.6"]


def test_every_number_the_selection_line_quotes_is_in_its_report():
    path = "reports/select-e5-small/selection.md"
    prose, report = blocks()[path], (REPO / path).read_text()
    assert len(numbers(prose)) >= 20
    assert unquoted(prose, report) == []
    assert unquoted(prose.replace("LoRA 69.1", "LoRA 69.2"), report) == ["69.2"]


@pytest.mark.parametrize("path", sorted(blocks()))
def test_every_block_quotes_only_the_report_its_marker_names(path):
    """Every block, one added later included: its numbers are its own report's, not another's."""
    prose, report = blocks()[path], (REPO / path).read_text()
    assert len(numbers(prose)) >= 10
    assert unquoted(prose, report) == []


@pytest.mark.parametrize(
    ("folder", "cells", "train_data"),
    [
        ("study-e5-xnli-seeds", 24, None),
        ("study-e5-v2", 62, None),
        ("study-e5-curve", 9, "xnli"),
        ("study-e5-curve-xnli+snli5k", 9, "xnli+snli5k"),
    ],
)
def test_each_quoted_study_report_is_what_its_committed_record_writes(
    tmp_path, folder, cells, train_data
):
    """The second design's and the learning curve's quoted reports (the evening preset's 24 XNLI
    cells; the whole design's 62 on XNLI, Tatoeba and BUCC; each curve point's 9, asked with its
    --train_data): each one's own committed record (study_runs.csv and per_sample/), without the
    run folders, rewrites the same per-seed figures and verdicts, byte for byte, with
    `--from_runs_csv`."""
    report = REPO / "reports" / folder
    out = tmp_path / folder
    shutil.copytree(report / "per_sample", out / "per_sample")
    shutil.copy(report / "study.md", out / "study.md")  # the machine the runs were measured on
    title = "Study: full fine-tuning vs adapters, encoder e5-small"
    write_report(
        tmp_path / "no-runs", out, title, "cmd", report / "study_runs.csv", train_data=train_data
    )
    for name in ("accuracy_seeds.csv", "verdicts.csv"):
        assert (out / name).read_bytes() == (report / name).read_bytes(), name
    assert len((report / "accuracy_seeds.csv").read_text().splitlines()) == 1 + cells


def test_the_committed_report_is_what_the_command_writes(tmp_path):
    """The report the prose is checked against is the command's output from the committed runs, not
    a file edited by hand: study.md, study.csv, accuracy_seeds.csv and verdicts.csv, byte for byte."""
    out = tmp_path / "study-e5"
    out.mkdir()
    shutil.copy(REPORT / "study.md", out / "study.md")  # the machine the runs were measured on
    command = (
        "python -m research study --preset e5-small --from_runs_csv reports/study-e5/study_runs.csv"
    )
    title = "Study: full fine-tuning vs adapters, encoder e5-small"
    written = write_report(tmp_path / "no-runs", out, title, command, REPORT / "study_runs.csv")
    for name in ("study.md", "study.csv", "accuracy_seeds.csv", "verdicts.csv"):
        assert (out / name).read_bytes() == (REPORT / name).read_bytes(), name
    tables = ("csv", "runs_csv", "md", "seeds_csv", "verdicts_csv")
    assert sorted(p.name for k, p in written.items() if k not in tables) == [
        "accuracy_vs_throughput.png",
        "adapter_cost.png",
        "latency.png",
        "pareto.png",
        "server_latency.png",
        "throughput.png",
    ]


def test_every_number_the_readme_summary_quotes_is_in_a_quoted_report():
    """README's "What the study has found" rounds nothing: each of its numbers (ratios written
    `0.881x` included) is one of the reports docs/study.md quotes, with its sign where README
    writes one (a number written without one, "costs 4.32 F1", may be a signed figure's
    magnitude). MLPerf's 99% rule is the one number that is not a measurement."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## What the study has found")
    section = readme[start : readme.index("\n## ", start + 1)]
    section = re.sub(r"(\d)x\b", r"\1 x", section).replace("99% rule", "rule")
    held = {n for path in blocks() for n in numbers((REPO / path).read_text())}

    def unheld(text: str) -> list[str]:
        return [n for n in numbers(text) if not ({n} if n[0] in "+-" else {n, f"-{n}", f"+{n}"}) & held]

    assert len(numbers(section)) >= 40
    assert unheld(section) == []
    assert unheld(section.replace("0.881 x", "0.88 x")) == ["0.88"]
    assert unheld(section.replace("[+1.3, +6.1]", "[+1.3, -6.1]")) == ["-6.1"]  # a flipped sign
