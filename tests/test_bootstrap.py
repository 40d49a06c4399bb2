"""Per-sample unit scores (tasks/scoring) and the paired bootstrap over them (research/bootstrap.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from research.bootstrap import BootstrapError, Interval, UnitScores, difference, resample
from tasks.registry import get_task
from tasks.scoring import score_log, write_outputs
from tasks.scoring.retrieval import source_counts
from tests.test_accuracy import write_log


def units(per: dict[str, np.ndarray], statistic: str = "mean", name: str = "") -> UnitScores:
    return UnitScores(
        statistic, {k: (list(range(len(v))), np.asarray(v, float)) for k, v in per.items()}, name
    )


def test_classification_unit_scores_reproduce_the_figures(tmp_path):
    task = get_task("xnli")
    ex = task.read()
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((len(ex), 3)).astype(np.float32)  # about a third right
    result = score_log("xnli", write_log(tmp_path / "log.json", list(logits)), heldout_rows=True)
    per = result.per_sample["per_language"]
    assert result.per_sample["statistic"] == "mean"
    assert set(per) == set(result.metrics["per_language"])
    for lang, entry in per.items():
        assert len(entry["ids"]) == result.metrics["count"][lang] == 1245  # held-out rows only
        assert min(entry["ids"]) == 1245
        assert set(entry["scores"]) <= {0.0, 100.0}
        assert np.mean(entry["scores"]) == pytest.approx(result.metrics["per_language"][lang])
    paths = write_outputs(result, tmp_path / "run")
    loaded = UnitScores.load(tmp_path / "run")
    assert paths["per_sample"].name == "per_sample.json"
    assert loaded.languages["de"][1].mean() == pytest.approx(result.metrics["per_language"]["de"])
    reps = resample([loaded], n_boot=10)
    assert reps.average()[0][0] == pytest.approx(result.metrics["accuracy"])


def test_tatoeba_unit_scores(tmp_path):
    task = get_task("tatoeba", languages="deu,fra")
    rng = np.random.default_rng(0)
    resp = []
    for p in task.read():
        e = rng.standard_normal((len(p.src_sents), 8)).astype(np.float32)
        en = e.copy()
        en[: len(en) // 4] = rng.standard_normal((len(en) // 4, 8))  # a quarter retrieves noise
        resp += [*e, *en]
    r = score_log("tatoeba", write_log(tmp_path / "log.json", resp), languages="deu,fra")
    for lang in ("deu", "fra"):
        scores = r.per_sample["per_language"][lang]["scores"]
        assert len(scores) == 1000
        assert np.mean(scores) == pytest.approx(r.metrics["per_language"][lang])


def test_bucc_source_counts_sum_to_the_figure():
    gold = [("z0", "e0"), ("z1", "e1"), ("z2", "e2")]
    predictions = [("z0", "e0", 3.0), ("z1", "e9", 2.0), ("z3", "e3", 1.5)]
    counts = source_counts(predictions, gold, ["z0", "z1", "z2", "z3", "z4"])
    assert counts == {
        "z0": [1, 1, 1],
        "z1": [0, 1, 1],
        "z2": [0, 0, 1],
        "z3": [0, 1, 0],
        "z4": [0, 0, 0],
    }
    reps = resample([units({"zh": np.array(list(counts.values()))}, "f1_counts")], n_boot=20)
    # 1 correct of 3 predicted and 3 gold: P = R = F1 = 33.3
    assert reps.average()[0][0] == pytest.approx(100 / 3)


def test_a_known_difference_is_recovered():
    rng = np.random.default_rng(0)
    n = 2000
    truth = rng.random((3, n)) < 0.6  # three languages, 60% right
    flips = rng.random((3, n)) < 0.05  # model b gets 5% of the samples wrong that a gets right
    a = {lang: 100.0 * truth[k] for k, lang in enumerate(("en", "de", "sw"))}
    b = {lang: 100.0 * (truth[k] & ~flips[k]) for k, lang in enumerate(("en", "de", "sw"))}
    diff = difference(units(a, name="a"), units(b, name="b"), n_boot=1000)
    expected = np.mean([a[x].mean() - b[x].mean() for x in a])
    avg = diff["average"]
    assert avg.value == pytest.approx(expected)
    # paired: a - b is 100 on the flipped samples and 0 elsewhere, so each language's difference has
    # the standard error 100 sqrt(q (1 - q) / n) of its flip share q, and the mean of 3 independent
    # languages sqrt(sum of their squares) / 3; the interval is about +-1.96 of that
    q = np.array([np.mean(a[x] - b[x] == 100.0) for x in a])
    se = np.sqrt(np.sum(100.0**2 * q * (1 - q) / n)) / 3
    assert (avg.high - avg.low) / 2 == pytest.approx(1.96 * se, rel=0.12)
    assert avg.low > 0 and avg.covers(expected)
    assert diff["n"] == 3 * n


def test_a_null_difference_covers_zero():
    rng = np.random.default_rng(3)
    hits = []
    for seed in range(20):
        r = np.random.default_rng(seed)
        base = r.random((2, 800)) < 0.5
        noise_a, noise_b = r.random((2, 2, 800)) < 0.1  # independent errors of the same rate
        a = {lang: 100.0 * (base[k] ^ noise_a[k]) for k, lang in enumerate(("en", "fr"))}
        b = {lang: 100.0 * (base[k] ^ noise_b[k]) for k, lang in enumerate(("en", "fr"))}
        hits.append(
            difference(units(a), units(b), n_boot=500, seed=int(rng.integers(1 << 30)))[
                "average"
            ].covers(0.0)
        )
    assert sum(hits) >= 17  # a 95% interval covers the true 0 in about 19 of 20


def test_samples_must_match():
    a = units({"en": np.ones(5) * 100}, name="a")
    b = UnitScores("mean", {"en": (["x", 1, 2, 3, 4], np.ones(5))}, "b")
    with pytest.raises(BootstrapError, match="b: the en samples differ from a's"):
        difference(a, b)
    with pytest.raises(BootstrapError, match="languages"):
        difference(a, units({"de": np.ones(5)}, name="c"))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(BootstrapError, match=f"{tmp_path}/per_sample.json: missing"):
        UnitScores.load(tmp_path)
    (tmp_path / "per_sample.json").write_text(json.dumps({"statistic": "mean"}))
    with pytest.raises(BootstrapError, match="not a per-sample score file"):
        UnitScores.load(tmp_path)


def test_transfer_gap_and_interval_text():
    reps = resample([units({"en": np.full(10, 80.0), "de": np.full(10, 60.0), "sw": np.full(10, 40.0)})])
    obs, rep = reps.transfer_gap()
    assert obs[0] == pytest.approx(30.0) and np.allclose(rep, 30.0)
    assert Interval(1.234, -0.5, 2.0).text() == "+1.2 [-0.5, +2.0]"


def test_the_interval_of_a_geometric_mean():
    """The interval of a geometric mean is the t interval of the logs (Student's t quantile of the
    printed tables), and covers about 95% of draws on simulated noise."""
    from research.collect import mean_interval

    mean, low, high = mean_interval([1.0, 1.1, 1.21])  # logs 0, l, 2l: mean l, sd l, t(0.975, 2)
    half = 4.3027 * math.log(1.1) / math.sqrt(3)
    assert (mean, low, high) == pytest.approx(
        (1.1, 1.1 * math.exp(-half), 1.1 * math.exp(half)), rel=1e-4
    )
    with pytest.raises(ValueError, match="at least 2 values"):
        mean_interval([1.0])
    rng = np.random.default_rng(0)
    draws = [mean_interval(np.exp(rng.normal(0.0, 0.05, size=5))) for _ in range(2000)]
    assert 0.93 <= np.mean([lo <= 1.0 <= hi for _, lo, hi in draws]) <= 0.97


def test_every_unit_is_drawn_the_last_one_too():
    """Two units scoring 0 and 100: each replicate draws two of them with replacement, so its mean is
    0, 50 or 100 with probabilities 1/4, 1/2, 1/4 (two fair coin flips), and the 95% interval is
    [0, 100]. A sampler that never draws the last unit gives 0 every time and [0, 0]."""
    for clusters in (None, lambda i: i):
        reps = resample([units({"en": np.array([0.0, 100.0])})], n_boot=4000, seed=0, clusters=clusters)
        r = reps.replicates[0, :, 0]
        shares = [float(np.mean(r == v)) for v in (0.0, 50.0, 100.0)]
        assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)  # binomial sd about 0.008
        assert (Interval.of(50.0, r).low, Interval.of(50.0, r).high) == (0.0, 100.0)
    a, b = units({"en": np.array([100.0, 0.0])}, name="a"), units({"en": np.zeros(2)}, name="b")
    d = difference(a, b, n_boot=4000)["average"]  # paired: a - b is a's own mean on the same draws
    assert (d.value, d.low, d.high) == (50.0, 0.0, 100.0)


def test_clustered_resampling_widens_the_interval_by_sqrt_languages():
    """16 languages whose units are the same items (row i right or wrong in every language): the
    language mean moves with the items, so the task figure's standard error is one language's,
    100 x sqrt(p (1 - p) / n) = 2.5 points for p = 0.5, n = 400. Resampling each language
    separately averages 16 independent draws: 2.5 / sqrt(16) = 0.625, four times too narrow."""
    n, langs = 400, [f"l{k}" for k in range(16)]
    item = np.tile([100.0, 0.0], n // 2)  # exactly half right
    scores = units(dict.fromkeys(langs, item))
    joint = resample([scores], n_boot=2000, seed=1, clusters=lambda i: i).average()[1][:, 0]
    apart = resample([scores], n_boot=2000, seed=1).average()[1][:, 0]
    assert joint.std() == pytest.approx(2.5, rel=0.08)
    assert apart.std() == pytest.approx(0.625, rel=0.08)
    width = Interval.of(50.0, joint).high - Interval.of(50.0, joint).low
    assert width == pytest.approx(2 * 1.96 * 2.5, rel=0.12)
    assert joint.std() / apart.std() == pytest.approx(4.0, rel=0.12)


def test_clusters_group_units_of_one_cluster_in_every_language():
    """Rows 0-1 form one cluster and rows 2-3 another: a replicate draws two clusters, so the
    figure is the mean of {0, 0}, {0, 100} or {100, 100} cluster means: 0, 50 or 100 with
    probabilities 1/4, 1/2, 1/4, the same in both languages on every replicate."""
    scores = units({"en": np.array([0.0, 0.0, 100.0, 100.0]), "de": np.array([0.0, 0.0, 100.0, 100.0])})
    reps = resample([scores], n_boot=4000, seed=2, clusters=lambda i: i // 2)
    en, de = reps.language("en")[1][:, 0], reps.language("de")[1][:, 0]
    assert np.array_equal(en, de)
    assert [float(np.mean(en == v)) for v in (0.0, 50.0, 100.0)] == pytest.approx(
        [0.25, 0.5, 0.25], abs=0.03
    )


def test_p_value_is_twice_the_smaller_tail():
    from research.bootstrap import p_value

    assert p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == 0.5  # one of four at or below 0
    assert p_value(np.array([1.0, 2.0, 3.0, 4.0])) == 0.0
    assert p_value(np.array([-1.0, 1.0])) == 1.0
