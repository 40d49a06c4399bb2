"""Hand-computed cases for the paired bootstrap (mutation testing): tiny inputs whose figures,
draws and intervals can be worked out by hand."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from scipy import stats

from research.accuracy import (
    _t_interval,
    accuracy_study,
    contrast_verdicts,
    effect_verdict,
    holm_levels,
    keeps_verdict,
)
from research.bootstrap import (
    BootstrapError,
    Interval,
    UnitScores,
    aligned,
    difference,
    language_figure,
    p_value,
    resample,
)
from research.collect import mean_interval
from tests.test_study_accuracy import _figure_run, flip
from tests.test_study_accuracy import run as sample_run


def test_f1_of_summed_counts():
    # counts [correct, predicted, gold] summed: [1, 2, 2] -> P = 1/2, R = 1/2, F1 = 50
    counts = np.array([[1, 2, 1], [0, 0, 1]], dtype=np.float64)
    assert language_figure("f1_counts", counts) == 50.0
    assert language_figure("mean", np.array([0.0, 100.0, 100.0, 0.0])) == 50.0
    # nothing predicted and nothing gold: F1 0 (not NaN); predicted but none right: 0
    assert language_figure("f1_counts", np.zeros((2, 3))) == 0.0
    assert language_figure("f1_counts", np.array([[0.0, 1.0, 0.0]])) == 0.0


def _counts(units: list[list[float]]) -> UnitScores:
    return UnitScores("f1_counts", {"de": (list(range(len(units))), np.array(units, float))}, "c")


@pytest.mark.parametrize("clusters", [None, lambda i: i])
def test_f1_count_replicates_take_the_three_possible_values(clusters):
    """Units [1, 1, 1] (one right pair) and [0, 1, 0] (one wrong prediction): a replicate draws
    two units with replacement: both the first (sums [2, 2, 2], F1 100), one of each ([1, 2, 1]:
    200 x 1 / 3 = 66.67) or both the second ([0, 2, 0]: F1 0), with probabilities 1/4, 1/2, 1/4.
    260 replicates: a last batch of 10 after the first 250 is filled too."""
    reps = resample([_counts([[1, 1, 1], [0, 1, 0]])], n_boot=4000, seed=5, clusters=clusters)
    assert reps.observed.tolist() == [[pytest.approx(200 / 3)]]
    r = reps.replicates[0, :, 0]
    values = (0.0, 200 / 3, 100.0)
    assert np.all(np.isclose(r[:, None], values).any(axis=1))
    shares = [float(np.mean(np.isclose(r, v))) for v in values]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    small = resample([_counts([[1, 1, 1], [0, 1, 0]])], n_boot=260, seed=5, clusters=clusters)
    assert small.replicates.shape == (1, 260, 1)
    assert np.all(np.isclose(small.replicates[0, :, 0][:, None], values).any(axis=1))


def test_aligned_puts_every_run_in_the_first_runs_unit_order():
    a = UnitScores("mean", {"en": ([0, 1, 2], np.array([100.0, 0.0, 0.0]))}, "a")
    b = UnitScores("mean", {"en": ([2, 0, 1], np.array([0.0, 100.0, 50.0]))}, "b")
    statistic, langs, per = aligned([a, b])
    assert (statistic, langs) == ("mean", ["en"])
    assert [x.tolist() for x in per[0]] == [[100.0, 0.0, 0.0], [100.0, 50.0, 0.0]]
    c = UnitScores("f1_counts", {"en": ([0, 1, 2], np.zeros((3, 3)))}, "c")
    with pytest.raises(BootstrapError) as e:
        aligned([a, c])
    assert str(e.value) == "runs mix statistics ['f1_counts', 'mean']: ['a', 'c']"
    d = UnitScores("mean", {"en": ([0, 1], np.zeros(2))}, "d")  # a subset of a's units
    with pytest.raises(BootstrapError) as e:
        aligned([a, d])
    assert str(e.value) == "d: the en samples differ from a's: not comparable"
    f = UnitScores("mean", {"en": ([0, 1, 2], np.zeros(3)), "fr": ([0], np.zeros(1))}, "f")
    with pytest.raises(BootstrapError) as e:
        aligned([a, f])
    assert str(e.value) == "f: languages ['en', 'fr'] differ from a's ['en']"


def test_difference_per_language_count_and_p_value():
    """a is right on every unit, b on none: every replicate's difference is 100 in each language."""
    a = UnitScores("mean", {"en": ([0, 1], np.full(2, 100.0)), "sw": ([0, 1, 2], np.full(3, 100.0))})
    b = UnitScores("mean", {"en": ([0, 1], np.zeros(2)), "sw": ([0, 1, 2], np.zeros(3))})
    d = difference(a, b, n_boot=300)
    assert d["n"] == 5 and d["p"] == 0.0
    assert d["average"] == Interval(100.0, 100.0, 100.0)
    assert d["per_language"] == {
        "en": Interval(100.0, 100.0, 100.0),
        "sw": Interval(100.0, 100.0, 100.0),
    }
    assert d["replicates"].shape == (300,) and np.all(d["replicates"] == 100.0)
    # b - a: the same, negated
    assert difference(b, a, n_boot=300)["average"] == Interval(-100.0, -100.0, -100.0)


def test_language_and_transfer_gap_pick_the_right_rows():
    reps = resample(
        [
            UnitScores(
                "mean",
                {
                    "de": ([0], np.array([20.0])),
                    "en": ([0], np.array([90.0])),
                    "sw": ([0], np.array([40.0])),
                },
            )
        ],
        n_boot=10,
    )
    assert reps.language("sw")[0].tolist() == [40.0]
    assert reps.language("en")[1][:, 0].tolist() == [90.0] * 10
    obs, rep = reps.transfer_gap()  # 90 - (20 + 40) / 2 = 60
    assert obs.tolist() == [60.0] and rep[:, 0].tolist() == [60.0] * 10
    message = "the transfer gap needs English and at least one other language"
    for per in ({"en": ([0], np.ones(1))}, {"de": ([0], np.ones(1)), "sw": ([0], np.ones(1))}):
        with pytest.raises(BootstrapError) as e:
            resample([UnitScores("mean", per)], n_boot=2).transfer_gap()
        assert str(e.value) == message


def test_interval_level_and_unsigned_text():
    r = np.arange(101, dtype=float)  # percentile p of 0..100 is p itself
    assert Interval.of(5.0, r) == Interval(5.0, pytest.approx(2.5), 97.5)
    assert Interval.of(5.0, r, level=0.5) == Interval(5.0, 25.0, 75.0)
    assert Interval(1.25, -0.5, 2.0).text(signed=False) == "1.2 [-0.5, 2.0]"
    assert Interval(1.0, 1.0, 2.0).covers(1.0) and Interval(1.0, 1.0, 2.0).covers(2.0)
    assert not Interval(1.0, 1.0, 2.0).covers(2.5)


def test_unit_scores_read_plain_and_gzip_and_name_a_bad_file(tmp_path):
    data = {"statistic": "mean", "per_language": {"en": {"ids": ["a", "b"], "scores": [100, 0]}}}
    plain, packed = tmp_path / "s.json", tmp_path / "s.json.gz"
    plain.write_text(json.dumps(data), encoding="utf-8")
    packed.write_bytes(gzip.compress(json.dumps(data).encode("utf-8")))
    for path in (plain, packed):
        u = UnitScores.read(path)
        assert u.statistic == "mean" and u.source == str(path)
        assert u.languages["en"][0] == ["a", "b"] and u.languages["en"][1].tolist() == [100.0, 0.0]
    broken = tmp_path / "b.json.gz"
    broken.write_bytes(gzip.compress(b"{}")[:10])  # a gzip stream cut short
    with pytest.raises(BootstrapError) as e:
        UnitScores.read(broken)
    assert str(e.value).startswith(f"{broken}: not a per-sample score file (")


@pytest.mark.parametrize("clusters", [None, lambda i: i])
def test_a_replicate_with_nothing_predicted_and_nothing_gold_has_f1_zero(clusters):
    """Units [1, 1, 1] and [0, 0, 0]: a replicate that draws the second unit twice sums to [0, 0, 0]
    (nothing predicted, nothing gold): F1 0, not 100 or NaN; every other replicate has F1 100. The
    shares are 1/4 and 3/4."""
    reps = resample([_counts([[1, 1, 1], [0, 0, 0]])], n_boot=2000, seed=2, clusters=clusters)
    r = reps.replicates[0, :, 0].astype(np.float64)
    assert set(np.unique(r).tolist()) == {0.0, 100.0}
    assert float(np.mean(r == 0.0)) == pytest.approx(0.25, abs=0.03)


def _three_languages() -> list[UnitScores]:
    rng = np.random.default_rng(11)
    langs = {lang: (list(range(20)), rng.integers(0, 2, 20) * 100.0) for lang in ("de", "en", "fr")}
    return [UnitScores("mean", langs, "a")]


def test_transfer_gap_is_english_minus_the_mean_of_the_others_in_every_replicate():
    reps = resample(_three_languages(), n_boot=50, seed=0)
    observed, replicates = reps.transfer_gap()
    de, en, fr = (reps.languages.index(x) for x in ("de", "en", "fr"))
    want = reps.replicates[en] - (reps.replicates[de] + reps.replicates[fr]) / 2
    assert replicates.shape == (50, 1)
    assert np.allclose(replicates, want)
    assert observed.tolist() == pytest.approx(
        [reps.observed[en, 0] - (reps.observed[de, 0] + reps.observed[fr, 0]) / 2]
    )


def test_transfer_gap_of_english_and_one_other_language():
    two = UnitScores(
        "mean", {"en": ([0, 1], np.array([100.0, 100.0])), "sw": ([0, 1], np.array([0.0, 100.0]))}
    )
    observed, _ = resample([two], n_boot=10).transfer_gap()
    assert observed.tolist() == [50.0]
    with pytest.raises(BootstrapError, match="needs English and at least one other language"):
        resample([UnitScores("mean", {"en": ([0], np.array([1.0]))})], n_boot=10).transfer_gap()


def test_resample_default_seed_is_zero_so_committed_intervals_reproduce():
    runs = _three_languages()
    default = resample(runs, n_boot=40).replicates
    assert np.array_equal(default, resample(runs, n_boot=40).replicates)
    assert np.array_equal(default, resample(runs, n_boot=40, seed=0).replicates)
    assert not np.array_equal(default, resample(runs, n_boot=40, seed=1).replicates)


@pytest.mark.parametrize(
    "replicates, p",
    [
        ([0.0, 0.0, 0.0, 0.0], 1.0),  # all at 0: both sides hold every replicate; capped at 1
        ([0.0, 0.0, 1.0, 2.0], 1.0),  # ties at 0 count on both sides: 2 x min(2/4, 4/4)
        ([-1.0, 0.5, 0.5, 0.5], 0.5),  # 2 x min(1/4, 3/4): a side is >= 0, not >= 1
        ([0.0, 0.0, -1.0, -2.0], 1.0),  # 2 x min(4/4, 2/4)
        ([1.0, 2.0, 3.0, 4.0], 0.0),
    ],
)
def test_p_value_counts_ties_at_zero_on_both_sides(replicates, p):
    assert p_value(np.array(replicates)) == p


def test_difference_per_language_and_average_are_a_minus_b_on_paired_draws():
    """Every unit of run a scores 100 and of run b 0 in German, both 50 (the same units) in French:
    a - b is +100 in German and 0 in French on every replicate, +50 on average, p = 0."""
    a = UnitScores(
        "mean", {"de": ([0, 1, 2], np.full(3, 100.0)), "fr": ([0, 1], np.array([0.0, 100.0]))}
    )
    b = UnitScores("mean", {"de": ([0, 1, 2], np.zeros(3)), "fr": ([0, 1], np.array([0.0, 100.0]))})
    d = difference(a, b, n_boot=200)
    assert d["per_language"]["de"] == Interval(100.0, 100.0, 100.0)
    assert d["per_language"]["fr"] == Interval(0.0, 0.0, 0.0)  # paired: the same draws for a and b
    assert d["average"] == Interval(50.0, 50.0, 50.0)
    assert (d["n"], d["p"], d["replicates"].shape) == (5, 0.0, (200,))


def test_difference_passes_its_seed_and_clusters_to_the_resampling():
    rng = np.random.default_rng(4)
    a, b = (UnitScores("mean", {"de": (list(range(30)), rng.integers(0, 2, 30) * 100.0)}) for _ in "ab")
    pairs = lambda i: i // 2  # noqa: E731 -- units 2k and 2k+1 form one cluster
    d = difference(a, b, n_boot=300, seed=7, clusters=pairs)
    reps = resample([a, b], 300, seed=7, clusters=pairs).replicates[0]
    assert np.array_equal(d["replicates"], reps[:, 0] - reps[:, 1])
    assert 0.0 < d["p"] == p_value(d["replicates"])  # two independent runs: replicates on both sides
    default = resample([a, b], 300).replicates[0]
    assert np.array_equal(difference(a, b, n_boot=300)["replicates"], default[:, 0] - default[:, 1])


def test_transfer_gap_of_two_runs_is_each_runs_own():
    """Two runs (k = 2): run a's gap is 100 - 50 = 50, run b's 0 - 0 = 0; the mean over the other
    languages is taken per run, never over both runs together (that would give 75 and -25)."""
    a = UnitScores("mean", {"en": ([0, 1], np.full(2, 100.0)), "sw": ([0, 1], np.full(2, 50.0))})
    b = UnitScores("mean", {"en": ([0, 1], np.zeros(2)), "sw": ([0, 1], np.zeros(2))})
    observed, replicates = resample([a, b], n_boot=20).transfer_gap()
    assert observed.tolist() == [50.0, 0.0]
    assert replicates.tolist() == [[50.0, 0.0]] * 20


# --- the study's statistics (research/accuracy.py, research/collect.py) ------------------------------
# t quantiles from the closed form of Student's t with 2 degrees of freedom, F(t) = 1/2 + t / (2
# sqrt(2 + t^2)): the two-sided level q has t = q sqrt(2 / (1 - q^2)).
T2_95 = 0.95 * math.sqrt(2 / (1 - 0.95**2))  # 4.3027
T2_90 = 0.90 * math.sqrt(2 / (1 - 0.90**2))  # 2.9200


def test_holm_stops_at_a_p_value_equal_to_its_level():
    # sorted: 0.025 meets alpha / 2 = 0.025 (not below it): it and every later one get 1 - 0.025
    assert holm_levels([0.025, 0.05]) == pytest.approx([0.975, 0.975])
    # 0.01 < 0.05 / 2 is rejected; 0.02 < 0.05 / 1 then gets the last level, 0.95
    assert holm_levels([0.02, 0.01]) == pytest.approx([0.95, 0.975])
    assert holm_levels([0.001], alpha=0.01) == pytest.approx([0.99])
    assert holm_levels([]) == []


def test_t_interval_is_the_t_quantile_times_the_standard_error():
    i95, i90 = _t_interval(1.0, 0.5, 2, 0.95), _t_interval(1.0, 0.5, 2, 0.90)
    assert (i95.value, i95.low, i95.high) == pytest.approx((1.0, 1 - 0.5 * T2_95, 1 + 0.5 * T2_95))
    assert (i90.low, i90.high) == pytest.approx((1 - 0.5 * T2_90, 1 + 0.5 * T2_90))


@pytest.mark.parametrize(
    ("low", "high", "keeps", "effect"),
    [
        (0.0, 1.0, "keeps", "negligible"),  # 0 is not above 0; a gain of exactly the margin is ruled in
        (0.0, 1.000001, "keeps", "cannot tell"),
        (1e-9, 1.0, "exceeds", "adds"),
        (-1.0, 0.5, "keeps", "negligible"),  # a loss of exactly the margin is ruled in
        (-1.000001, 0.5, "cannot tell", "cannot tell"),
        (-3.0, 0.0, "cannot tell", "cannot tell"),  # 0 is not below 0
        (-3.0, -1e-9, "loses", "costs"),
    ],
)
def test_verdict_words_at_their_boundaries(low, high, keeps, effect):
    d = Interval((low + high) / 2, low, high)
    assert (keeps_verdict(d), effect_verdict(d)) == (keeps, effect)
    assert keeps_verdict(Interval(-1.4, -1.5, 0.5), margin=1.5) == "keeps"
    assert effect_verdict(Interval(0.0, -1.5, 1.5), margin=1.5) == "negligible"


def test_welch_with_one_side_without_seed_variance():
    """adapter 50, 52, 54 (variance 4: 4/3 for its mean); full 55 four times (variance 0). The
    difference -3 has variance 4/3, Welch's df (4/3)^2 / ((4/3)^2 / 2) = 2, t = 3 / sqrt(4/3) =
    sqrt(6.75), and with df 2 the two-sided p is 1 - t / sqrt(2 + t^2) = 1 - sqrt(27 / 35)."""
    runs = [_figure_run("adapter", v, s) for s, v in enumerate((50.0, 52.0, 54.0))]
    runs += [_figure_run("full", 55.0, s) for s in range(4)]
    (v,) = accuracy_study(runs, n_boot=10).verdicts
    se = math.sqrt(4 / 3)
    assert (v.basis, v.seeds, v.observed, v.df, v.level) == (
        "seeds",
        (3, 4),
        -3.0,
        pytest.approx(2.0),
        0.95,
    )
    assert v.p == pytest.approx(1 - math.sqrt(27 / 35))
    assert (v.interval.low, v.interval.high) == pytest.approx((-3 - T2_95 * se, -3 + T2_95 * se))
    assert (v.interval95.low, v.interval95.high) == pytest.approx((v.interval.low, v.interval.high))
    assert v.word == "cannot tell" and not v.test_set


@pytest.mark.parametrize(("full", "p", "word"), [(50.0, 0.0, "exceeds"), (55.0, 1.0, "keeps")])
def test_seeds_that_agree_exactly_give_a_point_interval(full, p, word):
    """No seed variance on either side: the standard error is 0, the interval the observed
    difference itself, and p is 0 unless the difference is 0 too."""
    runs = [_figure_run("adapter", 55.0, s) for s in range(2)]
    runs += [_figure_run("full", full, s) for s in range(2)]
    (v,) = accuracy_study(runs, n_boot=10).verdicts
    assert (v.observed, v.p, v.interval.low, v.interval.high, v.word) == (
        55.0 - full,
        p,
        55.0 - full,
        55.0 - full,
        word,
    )
    assert v.df == 1e6


def test_mean_interval_of_ratios_by_hand():
    """Ratios 1, e, e^2: logs 0, 1, 2 (mean 1, sd 1), so the geometric mean is e and the 95% interval
    e^(1 -+ T2_95 / sqrt(3))."""
    mean, low, high = mean_interval([1.0, math.e, math.e**2])
    half = T2_95 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((math.e, math.exp(1 - half), math.exp(1 + half)))
    # two ratios, 1 and e^2: logs 0 and 2 (mean 1, sd sqrt 2); t with 1 df at 0.975 is tan(0.475 pi)
    mean, low, high = mean_interval([1.0, math.e**2])
    half = math.tan(0.475 * math.pi) * math.sqrt(2) / math.sqrt(2)
    assert (mean, low, high) == pytest.approx((math.e, math.exp(1 - half), math.exp(1 + half)))
    with pytest.raises(ValueError, match="^an interval needs at least 2 values, got 1$"):
        mean_interval([2.0])


def _welch(a: list[float], b: list[float], extra_var: float = 0.0) -> tuple[float, float, float]:
    """(difference of means, its variance, Welch-Satterthwaite df) from seed figures, written out
    from the definitions: each mean's variance s^2 / n; extra_var (the test set's bootstrap
    variance, infinite df) joins the variance, so df = (va + vb + extra)^2 / (va^2 / (na - 1) +
    vb^2 / (nb - 1))."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb + extra_var) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(np.mean(a) - np.mean(b)), float(va + vb + extra_var), float(df)


def test_seed_verdicts_with_unequal_variances_and_an_untested_contrast():
    """adapter and full with three seeds each (unequal spreads), full-squad with one: adapter - full is
    judged over the seeds; full-squad - full has too few seeds and no per-sample scores: untested, its
    p counted as 1 in Holm's family of two. adapter - full's p (about 0.01) is below 0.05 / 2, so it
    is judged at 97.5% and the untested one at 95%; the missing contrasts in between are skipped."""
    a_seeds, f_seeds = [50.0, 50.5, 51.5], [55.0, 56.0, 58.0]
    runs = [_figure_run("adapter", v, s) for s, v in enumerate(a_seeds)]
    runs += [_figure_run("full", v, s) for s, v in enumerate(f_seeds)]
    runs.append(_figure_run("full-squad", 58.0))
    seeded, untested = accuracy_study(runs, n_boot=10).verdicts
    mean, var, df = _welch(a_seeds, f_seeds)
    p = 2 * stats.t.sf(abs(mean) / math.sqrt(var), df)
    half = stats.t.ppf(1 - 0.025 / 2, df) * math.sqrt(var)
    assert (seeded.task, seeded.a, seeded.b, seeded.basis, seeded.seeds) == (
        "xnli",
        "adapter",
        "full",
        "seeds",
        (3, 3),
    )
    assert (seeded.observed, seeded.df, seeded.p) == pytest.approx((mean, df, p))
    assert 0.005 < p < 0.025 and seeded.level == 0.975 and not seeded.test_set
    assert (seeded.interval.low, seeded.interval.high) == pytest.approx((mean - half, mean + half))
    assert seeded.word == "loses"
    assert (untested.task, untested.a, untested.b, untested.basis) == (
        "xnli",
        "full-squad",
        "full",
        "untested",
    )
    assert (untested.observed, untested.seeds, untested.p, untested.level) == (3.0, (1, 3), None, 0.95)


def test_a_contrast_whose_second_model_has_no_run_is_skipped():
    runs = [_figure_run("adapter", v, s) for s, v in enumerate((50.0, 51.0))]
    assert accuracy_study(runs, n_boot=10).verdicts == []


def _per_sample_runs(tmp_path, seeds: dict[str, list[float]] | None = None):
    """full, adapter (about 9 points worse) and full-squad (about 4 better) with per-sample scores
    for seed 0, and optionally more seeds known by their figures only."""
    base = np.random.default_rng(0).random((3, 1500)) < np.array([[0.7], [0.6], [0.5]])
    runs = [
        sample_run(tmp_path, "full", base),
        sample_run(tmp_path, "adapter", flip(base, 0.15, 3)),
        sample_run(tmp_path, "full-squad", base | (np.random.default_rng(2).random(base.shape) < 0.1)),
    ]
    for model, values in (seeds or {}).items():
        runs += [_figure_run(model, v, s) for s, v in enumerate(values, start=1)]
    return runs


def test_one_seed_verdicts_are_the_bootstrap_of_the_test_set(tmp_path):
    """One seed each: each verdict is the paired bootstrap's (basis 'one seed', the test set's
    variance only): its observed value the difference of the two runs' task figures, its p and its
    interval the bootstrap's, at Holm's level. adapter - full is judged by the keeps/loses words;
    full-squad - full, an intermediate-task contrast, by adds/costs."""
    runs = _per_sample_runs(tmp_path)
    figure = {r.model: r.metric_value for r in runs}
    study = accuracy_study(runs, n_boot=200)
    verdicts = {(v.a, v.b): v for v in study.verdicts}
    assert set(verdicts) == {("adapter", "full"), ("full-squad", "full")}
    for (a, b), v in verdicts.items():
        boot = study.differences[("xnli", a, b)]
        lo, hi = np.percentile(boot["replicates"], [2.5, 97.5])
        assert (v.task, v.basis, v.seeds, v.test_set, v.p) == (
            "xnli",
            "one seed",
            (1, 1),
            True,
            boot["p"],
        )
        assert v.observed == pytest.approx(figure[a] - figure[b])
        assert (v.interval95.low, v.interval95.high) == pytest.approx((lo, hi))
        tail = 100 * (1 - v.level) / 2
        assert (v.interval.low, v.interval.high) == pytest.approx(
            tuple(np.percentile(boot["replicates"], [tail, 100 - tail]))
        )
    # Holm, both p far below 0.05 / 2: the first rejected at 1 - 0.05 / 2, the second at 1 - 0.05
    assert sorted(v.level for v in verdicts.values()) == pytest.approx([0.95, 0.975])
    assert (verdicts[("adapter", "full")].word, verdicts[("full-squad", "full")].word) == (
        "loses",
        "adds",
    )
    # alpha 0.10: Holm's levels 1 - 0.10 / 2 and 1 - 0.10
    levels = sorted(v.level for v in contrast_verdicts(study, runs, alpha=0.10))
    assert levels == pytest.approx([0.90, 0.95])


def test_seeds_that_agree_leave_the_interval_near_the_test_sets_not_ten_times_wider(tmp_path):
    """Two seeds per model whose figures agree to 0.05 points: the seeds add almost no variance, so
    the seeded 95% interval is about the one-seed (test-set) one, t near the normal. With the df of
    the seed part alone (about 1 here) the same variance would give t(1) = 12.7: an interval ten
    times wider than the one seed's, for having trained a second seed."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = accuracy_study(_per_sample_runs(tmp_path / "one"), n_boot=400)
    runs = _per_sample_runs(tmp_path / "two")
    seed0 = {r.model: r.metric_value for r in runs}
    runs += [_figure_run(m, seed0[m] + d, 1) for m, d in (("adapter", 0.05), ("full", -0.05))]
    two = accuracy_study(runs, n_boot=400)
    (single,) = [v for v in one.verdicts if (v.a, v.b) == ("adapter", "full")]
    (seeded,) = [v for v in two.verdicts if (v.a, v.b) == ("adapter", "full")]
    assert (single.basis, seeded.basis, seeded.seeds) == ("one seed", "seeds", (2, 2))
    width = seeded.interval95.high - seeded.interval95.low
    single_width = single.interval95.high - single.interval95.low
    assert seeded.df > 1000 and 0.9 < width / single_width < 1.2


def test_seed_verdicts_add_the_test_sets_bootstrap_variance(tmp_path):
    """Seeds 1 and 2 beside the per-sample seed 0: the variance is the seeds' (Welch) plus the
    bootstrap replicates' (ddof 1); the df is Welch-Satterthwaite's over both parts, the test
    set's with infinite df."""
    runs = _per_sample_runs(tmp_path, {"adapter": [52.0, 50.0], "full": [60.0, 61.5]})
    figure = {(r.model, r.seed): r.metric_value for r in runs}
    study = accuracy_study(runs, n_boot=200)
    (v,) = [v for v in study.verdicts if (v.a, v.b) == ("adapter", "full")]
    boot = study.differences[("xnli", "adapter", "full")]
    a_seeds = [figure[("adapter", s)] for s in range(3)]
    f_seeds = [figure[("full", s)] for s in range(3)]
    mean, var, df = _welch(a_seeds, f_seeds, extra_var=np.var(boot["replicates"], ddof=1))
    half = stats.t.ppf(1 - (1 - v.level) / 2, df) * math.sqrt(var)
    assert (v.basis, v.seeds, v.test_set) == ("seeds", (3, 3), True)
    assert (v.observed, v.df) == pytest.approx((mean, df))
    assert v.p == pytest.approx(2 * stats.t.sf(abs(mean) / math.sqrt(var), df))
    assert (v.interval.low, v.interval.high) == pytest.approx((mean - half, mean + half))


def test_a_retrieval_contrast_with_the_pretrained_encoder_counts_only_the_trained_sides_seeds():
    """Tatoeba serves `full` as the pretrained encoder untouched (no intermediate stage): its one
    figure, 80, is every seed's, so full-squad (70, 72, 74: variance 4, 4/3 for the mean) - full is
    judged over the seeds with the encoder exact: -8 +- t(2) sqrt(4/3), df 2 as in the one-sided
    Welch case. On XNLI the same figures leave `full` one seed short: untested. A model with an
    intermediate stage is never exact (full-squad with one seed: untested)."""
    squad = [70.0, 72.0, 74.0]
    runs = [_figure_run("full-squad", v, s, task="tatoeba") for s, v in enumerate(squad)]
    runs.append(_figure_run("full", 80.0, task="tatoeba"))
    (v,) = accuracy_study(runs, n_boot=10).verdicts
    se = math.sqrt(4 / 3)
    assert (v.task, v.a, v.b, v.basis, v.seeds, v.level) == (
        "tatoeba", "full-squad", "full", "seeds", (3, 1), 0.95,
    )  # fmt: skip
    assert (v.observed, v.df) == pytest.approx((-8.0, 2.0))
    assert (v.interval.low, v.interval.high) == pytest.approx((-8 - T2_95 * se, -8 + T2_95 * se))
    assert v.word == "retrieves worse"
    xnli = [_figure_run("full-squad", v, s) for s, v in enumerate(squad)] + [_figure_run("full", 80.0)]
    assert [v.basis for v in accuracy_study(xnli, n_boot=10).verdicts] == ["untested"]
    one = [_figure_run("full-squad", 70.0, task="tatoeba")]
    one += [_figure_run("full", 80.0, s, task="tatoeba") for s in range(3)]
    assert [v.basis for v in accuracy_study(one, n_boot=10).verdicts] == ["untested"]
