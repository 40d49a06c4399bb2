"""`python -m research curve`: the learning curve's reports side by side, each figure its report's."""

from __future__ import annotations

import pandas as pd
import pytest

from common.paths import REPO
from research import accuracy
from research.cli import main as research_main
from research.collect import Run, write_csv


def _runs(values: dict[str, tuple[float, ...]]) -> list[Run]:
    """PyTorch fp32 accuracy runs of trained checkpoints known by their task figure, one per seed."""
    return [
        Run(
            f"/none/{m}-{k}",
            m,
            "xnli",
            "Offline",
            "accuracy",
            "pytorch",
            model_kind="real",
            metric="accuracy",
            metric_value=v,
            seed=k,
        )  # fmt: skip
        for m, vs in values.items()
        for k, v in enumerate(vs)
    ]


def _report(folder, values) -> accuracy.AccuracyStudy:
    """A report folder's verdicts.csv and accuracy_seeds.csv, as `research study` writes them."""
    runs = _runs(values)
    study = accuracy.accuracy_study(runs, n_boot=10)
    write_csv(
        pd.DataFrame(accuracy.verdict_rows(study)), folder / "verdicts.csv", accuracy.VERDICT_COLUMNS
    )
    seeds = pd.DataFrame(accuracy.seed_rows(study, runs))
    write_csv(seeds, folder / "accuracy_seeds.csv", ("task", "model", "seed", "metric", "value"))
    return study


def test_each_point_is_its_reports_figures_and_a_missing_point_says_not_run(tmp_path, capsys):
    base = tmp_path / "study-e5-curve"
    small = _report(
        base, {"full": (60.0, 61.0, 62.0), "adapter": (54.0, 56.0, 58.0), "lora": (59.0, 60.0, 61.0)}
    )
    more = tmp_path / "study-e5-curve-xnli+snli5k"
    _report(more, {"full": (66.0, 67.0, 68.0), "adapter": (65.0, 66.0, 67.0)})  # lora not run there
    selected = tmp_path / "study-e5-xnli-seeds"
    _report(selected, {"full": (62.0, 63.0, 64.0), "adapter": (56.0, 57.0, 58.0), "lora": (61.0,)})
    assert research_main(["curve", "--base", str(base), "--selected", str(selected)]) == 0
    assert capsys.readouterr().out == f"curve: 3 of 4 points read -> {base / 'curve.md'}\n"
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in (base / "curve.md").read_text().splitlines()
        if line.startswith("| xnli")
    }
    by = {(v.a, v.b): v for v in small.verdicts}
    ad, lo = by[("adapter", "full")], by[("lora", "full")]
    assert ad.observed == pytest.approx(-5.0) and lo.observed == pytest.approx(-1.0)
    assert rows["xnli"] == (
        "| xnli | the 1,245 English XNLI training rows alone | 61.00 (3) | 56.00 (3) | 60.00 (3) | "
        f"-5.0 [{ad.interval.low:+.1f}, {ad.interval.high:+.1f}, {100 * ad.level:.2f}%] | {ad.word} | "
        f"-1.0 [{lo.interval.low:+.1f}, {lo.interval.high:+.1f}, {100 * lo.level:.2f}%] | {lo.word} |"
    )
    assert rows["xnli+snli5k"].startswith(
        "| xnli+snli5k | the 1,245 English XNLI training rows and the first 5,000 SNLI pairs | "
        "67.00 (3) | 66.00 (3) | - | -1.0 ["
    )
    assert rows["xnli+snli5k"].endswith("| - | - |")  # no lora there: no contrast
    assert rows["xnli+snli"].endswith("| not run | not run | not run | - | - | - | - |")
    # the last row: the 1,245 rows as the dev split tuned them (lora: one seed, its seed-0 difference)
    assert rows["xnli, selected"].startswith(
        "| xnli, selected | the 1,245 English XNLI training rows alone, each arm's learning rate "
        "and epochs selected on the English dev split (the second design) | 63.00 (3) | 57.00 (3) | "
        "61.00 (1) | -6.0 ["
    )
    assert rows["xnli, selected"].endswith("| -1.0 (no interval: untested) | not tested |")
    assert list(rows) == ["xnli", "xnli+snli5k", "xnli+snli", "xnli, selected"]
    assert f"from `{selected}`" in (base / "curve.md").read_text()
    # without the selected report: its row says not run
    assert research_main(["curve", "--base", str(base), "--selected", str(tmp_path / "no")]) == 0
    assert capsys.readouterr().out == f"curve: 2 of 4 points read -> {base / 'curve.md'}\n"


def test_a_report_that_cannot_be_read_is_one_error_line(tmp_path, capsys):
    base = tmp_path / "study-e5-curve"
    base.mkdir()
    (base / "verdicts.csv").write_text("task,a\nxnli\n")  # no accuracy_seeds.csv beside it
    assert research_main(["curve", "--base", str(base)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {base}: not a study report's verdicts.csv")
    assert not (base / "curve.md").exists()


def test_the_committed_curve_is_what_the_command_writes_from_the_committed_reports(tmp_path, capsys):
    """reports/study-e5-curve/curve.md, which docs/study.md quotes, is the command's output from
    the reports committed beside it, byte for byte (a point run since makes it stale: rerun it)."""
    out = tmp_path / "curve.md"
    assert research_main(["curve", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("curve: ")
    assert out.read_bytes() == (REPO / "reports" / "study-e5-curve" / "curve.md").read_bytes()
