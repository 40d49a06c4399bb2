"""`python -m research curve`: the learning curve's reports side by side, each figure its report's."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from common.paths import REPO
from research import accuracy, curve
from research.cli import main as research_main
from research.collect import CSV_COLUMNS, Run, frame, write_csv


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


LANGUAGES = ("en", "de")
ITEMS = 300  # XNLI rows: 100 premises of 3


def _report(folder, values, items: dict[str, np.ndarray] | None = None) -> accuracy.AccuracyStudy:
    """A report folder as `research study` writes it: verdicts.csv, accuracy_seeds.csv,
    study_runs.csv and the seed-0 runs' per-sample scores (per_sample/): `items[model]`, one 0/1
    score per XNLI row (0 or 100), the same in every language (all 100 where not given)."""
    runs = _runs(values)
    study = accuracy.accuracy_study(runs, n_boot=10)
    write_csv(
        pd.DataFrame(accuracy.verdict_rows(study)), folder / "verdicts.csv", accuracy.VERDICT_COLUMNS
    )
    seeds = pd.DataFrame(accuracy.seed_rows(study, runs))
    write_csv(seeds, folder / "accuracy_seeds.csv", ("task", "model", "seed", "metric", "value"))
    write_csv(frame(runs), folder / "study_runs.csv", CSV_COLUMNS)
    (folder / "per_sample").mkdir()
    for r in runs:
        if r.seed == 0:
            scores = (items or {}).get(r.model, np.full(ITEMS, 100.0)).tolist()
            per = {lang: {"ids": list(range(ITEMS)), "scores": scores} for lang in LANGUAGES}
            data = json.dumps({"statistic": "mean", "per_language": per}).encode()
            (folder / "per_sample" / accuracy.per_sample_name(r.path)).write_bytes(gzip.compress(data))
    return study


def _table(path, first_cell: str) -> dict[str, list[str]]:
    """The rows of curve.md whose first cell starts with `first_cell`, by that cell: their cells."""
    rows = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| ") and cells[0].startswith(first_cell):
            rows[cells[0]] = cells[1:]
    return rows


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
    assert list(rows)[:4] == ["xnli", "xnli+snli5k", "xnli+snli", "xnli, selected"]
    # the gap changes from the first row: lora's only where it has two or more seeds at both points
    changes = _table(base / "curve.md", "xnli")
    assert [c for c in changes if " vs " in c] == ["xnli+snli5k vs xnli", "xnli, selected vs xnli"]
    assert changes["xnli+snli5k vs xnli"][0].startswith("+4.0 [")  # (66 - 67) - (56 - 61)
    assert changes["xnli, selected vs xnli"][0].startswith("-1.0 [")  # (57 - 63) - (56 - 61)
    assert [c[2:] for c in changes.values() if len(c) == 4] == [["-", "-"]] * 2
    assert f"from `{selected}`" in (base / "curve.md").read_text()
    # without the selected report: its row says not run
    assert research_main(["curve", "--base", str(base), "--selected", str(tmp_path / "no")]) == 0
    assert capsys.readouterr().out == f"curve: 2 of 4 points read -> {base / 'curve.md'}\n"


def test_a_gap_change_is_the_difference_of_differences_with_the_seeds_welch_interval(tmp_path, capsys):
    """Every model right on every test item at both points: the test set adds no variance, so each
    change is the seed means' difference of differences with Welch's t interval over the four
    models' seeds (98/19 df here), at Holm's levels over the two changes."""
    base, more = tmp_path / "study-e5-curve", tmp_path / "study-e5-curve-xnli+snli5k"
    _report(
        base, {"full": (60.0, 61.0, 62.0), "adapter": (50.0, 52.0, 54.0), "lora": (58.0, 59.0, 60.0)}
    )
    _report(
        more, {"full": (66.0, 67.0, 68.0), "adapter": (64.0, 65.0, 66.0), "lora": (64.0, 66.0, 68.0)}
    )
    assert research_main(["curve", "--base", str(base), "--selected", str(tmp_path / "no")]) == 0
    capsys.readouterr()
    # (65 - 67) - (52 - 61) = +7 and (66 - 67) - (59 - 61) = +1; each variance 7/3 (sample variances
    # 1, 4, 1, 1 and 4, 1, 1, 1 over 3 seeds), Welch df (7/3)^2 / ((16 + 1 + 1 + 1) / 9 / 2) = 98/19
    se, df = math.sqrt(7 / 3), 98 / 19
    p_adapter, p_lora = (2 * stats.t.sf(d / se, df) for d in (7.0, 1.0))
    assert p_adapter < 0.05 / 2 and p_lora > 0.05  # Holm: the first rejected at 97.5%, then 95%
    expected = {}
    for key, d, level in (("adapter", 7.0, 0.975), ("lora", 1.0, 0.95)):
        half = stats.t.ppf(0.5 + level / 2, df) * se
        expected[key] = f"{d:+.1f} [{d - half:+.1f}, {d + half:+.1f}, {100 * level:.2f}%]"
    assert expected == {"adapter": "+7.0 [+2.2, +11.8, 97.50%]", "lora": "+1.0 [-2.9, +4.9, 95.00%]"}
    changes = _table(base / "curve.md", "xnli+snli5k vs")
    assert changes == {
        "xnli+snli5k vs xnli": [expected["adapter"], "rises", expected["lora"], "cannot tell"]
    }
    points = [(curve.read_point(f), f) for f in (base, more)]
    (interval, level, word), _ = curve.gap_changes(points[0], [("more", *points[1])]).values()
    half = stats.t.ppf(0.5 + 0.975 / 2, df) * se
    assert (interval.value, level, word) == (pytest.approx(7.0), 0.975, "rises")
    assert (interval.low, interval.high) == (pytest.approx(7.0 - half), pytest.approx(7.0 + half))


def test_a_gap_change_holds_the_test_sets_variance_resampled_by_premise(tmp_path):
    """No seed spread: a change's whole variance is the test set's. Only the later adapter misses
    items, each premise's three rows alike, so its standard error is a premise-level mean's: the
    population SD of the 100 premise scores over sqrt(100); and where the four runs score alike
    item by item (lora), it is 0, and a zero change is negligible."""
    rng = np.random.default_rng(1)
    premise_scores = 100.0 * rng.integers(0, 2, size=ITEMS // 3)
    missing = np.repeat(premise_scores, 3)
    base, more = tmp_path / "study-e5-curve", tmp_path / "study-e5-curve-xnli+snli5k"
    _report(base, {"full": (60.0, 60.0), "adapter": (55.0, 55.0), "lora": (58.0, 58.0)})
    _report(
        more, {"full": (62.0, 62.0), "adapter": (61.0, 61.0), "lora": (60.0, 60.0)}, {"adapter": missing}
    )
    points = [(curve.read_point(f), f) for f in (base, more)]
    judged = curve.gap_changes(points[0], [("more", *points[1])])
    (adapter, level, word), (lora, lora_level, lora_word) = judged.values()
    z = stats.norm.ppf(0.5 + level / 2)
    se = (adapter.high - adapter.low) / (2 * z)
    # 2,000 replicates estimate a variance to about 3% (sd sqrt(2 / 1999)): 8% on the SE is > 4 sd
    assert se == pytest.approx(premise_scores.std() / math.sqrt(ITEMS // 3), rel=0.08)
    assert premise_scores.std() / math.sqrt(ITEMS // 3) == pytest.approx(5.0, abs=0.1)
    assert adapter.value == pytest.approx(4.0) and word == "cannot tell"  # (61 - 62) - (55 - 60)
    assert (lora.value, lora.low, lora.high, lora_word) == (0.0, 0.0, 0.0, "negligible")
    assert level == lora_level == 0.975  # p(adapter) about 0.42: Holm stops at its first


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


def test_a_missing_per_sample_file_is_one_error_line_naming_it(tmp_path, capsys):
    """The gap changes need each point's seed-0 per-sample scores: a report without one is refused
    by name, and no curve.md is written."""
    base, more = tmp_path / "study-e5-curve", tmp_path / "study-e5-curve-xnli+snli5k"
    for folder in (base, more):
        _report(folder, {"full": (60.0, 61.0), "adapter": (55.0, 57.0)})
    gone = more / "per_sample" / accuracy.per_sample_name("/none/adapter-0")
    gone.unlink()
    assert research_main(["curve", "--base", str(base), "--selected", str(tmp_path / "no")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {gone}: missing; rescore the run (accuracy run, this version)"]
    assert not (base / "curve.md").exists()
