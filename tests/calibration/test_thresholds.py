"""Tests for inspector.calibration.thresholds: thresholds from good parts, CV FRR estimates, separation,
pixel / region rules. Scores are drawn from known distributions so the TRUE false-reject rate of
a threshold is the distribution's survival function."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from inspector.calibration import thresholds as th

DISTRIBUTIONS = {
    "gamma": stats.gamma(2.0),
    "lognormal": stats.lognorm(0.6),
    "normal": stats.norm(loc=1.0, scale=0.2),
}


def _true_frr_ratios(dist, n: int, target: float, seeds: range, **kwargs) -> tuple[np.ndarray, set]:
    ratios, methods = [], set()
    for seed in seeds:
        scores = dist.rvs(size=n, random_state=np.random.default_rng(seed))
        fit = th.fit_threshold(scores, target, **kwargs)
        ratios.append(dist.sf(fit.threshold) / target)
        methods.add(fit.method)
    return np.asarray(ratios), methods


# ----------------------------------------------------------------------------- fit_threshold


@pytest.mark.parametrize("dist_name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("n,target", [(100, 1e-2), (100, 1e-3), (300, 1e-3)])
def test_gpd_threshold_true_frr_is_near_target(dist_name, n, target):
    ratios, methods = _true_frr_ratios(DISTRIBUTIONS[dist_name], n, target, range(51))
    assert methods == {"gpd"}  # n * target < 5: the tail model, not a quantile
    assert 0.3 <= np.median(ratios) <= 3.0, np.quantile(ratios, [0.1, 0.5, 0.9])


def test_empirical_quantile_cannot_reach_low_frr_but_gpd_can():
    """The reason for the tail model: at FRR << 1/n the empirical quantile sits near the maximum
    and its true FRR is ~1/n, an order of magnitude above the target."""
    dist = DISTRIBUTIONS["gamma"]
    empirical, _ = _true_frr_ratios(dist, 100, 1e-3, range(31), method="empirical")
    gpd, _ = _true_frr_ratios(dist, 100, 1e-3, range(31), method="gpd")
    assert np.median(empirical) > 3.0
    assert abs(np.log(np.median(gpd))) < abs(np.log(np.median(empirical)))


def test_mle_tail_estimator_also_works():
    ratios, methods = _true_frr_ratios(
        DISTRIBUTIONS["gamma"], 300, 1e-2, range(31), tail_estimator="mle"
    )
    assert methods == {"gpd"}
    assert 0.3 <= np.median(ratios) <= 3.0


def test_auto_picks_empirical_when_enough_expected_rejects():
    rng = np.random.default_rng(1)
    scores = rng.gamma(2.0, size=200)
    fit = th.fit_threshold(scores, 0.05)  # 200 * 0.05 = 10 expected rejects
    assert fit.method == "empirical"
    assert fit.threshold == pytest.approx(np.quantile(scores, 0.95), rel=1e-12)
    assert np.mean(scores >= fit.threshold) == pytest.approx(0.05, abs=1.0 / 200)
    assert th.fit_threshold(scores[:100], 0.05).method == "empirical"  # exactly 5: boundary
    assert th.fit_threshold(scores, 0.02).method == "gpd"  # 4 < 5
    assert th.fit_threshold(scores, 0.05, method="gpd").method == "gpd"  # explicit wins


def test_empirical_path_true_frr_is_near_target():
    ratios, methods = _true_frr_ratios(DISTRIBUTIONS["lognormal"], 300, 0.05, range(31))
    assert methods == {"empirical"}
    assert 0.7 <= np.median(ratios) <= 1.4


def test_gpd_fit_params_and_predicted_frr():
    rng = np.random.default_rng(3)
    scores = rng.gamma(2.0, size=150)
    fit = th.fit_threshold(scores, 1e-3)
    p = fit.params
    assert fit.method == "gpd" and fit.n == 150 and fit.target_frr == 1e-3
    assert p["n_tail"] >= 30 and p["tail_fraction"] == p["n_tail"] / 150
    assert np.count_nonzero(scores > p["u"]) == p["n_tail"]
    assert p["tail_estimator"] in ("zhang-stephens", "moments", "exponential")
    assert fit.threshold > p["u"]
    assert fit.predicted_frr(fit.threshold) == pytest.approx(1e-3, rel=1e-6)
    # below the tail start: the empirical fraction of good scores >= t
    t = float(np.quantile(scores, 0.5))
    assert fit.predicted_frr(t) == pytest.approx(np.mean(scores >= t))
    assert fit.predicted_frr(math.inf) == 0.0
    assert fit.predicted_frr(scores.min()) == 1.0
    grid = np.linspace(scores.min() - 1, fit.threshold * 2, 400)
    curve = np.array([fit.predicted_frr(g) for g in grid])
    assert np.all(np.diff(curve) <= 1e-15) and curve[0] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        fit.predicted_frr(math.nan)


def test_fit_round_trips_through_json():
    scores = np.random.default_rng(4).lognormal(size=80)
    fit = th.fit_threshold(scores, 1e-3)
    restored = th.ThresholdFit.from_dict(json.loads(json.dumps(fit.as_dict())))
    assert restored == fit
    assert restored.predicted_frr(fit.threshold * 0.9) == fit.predicted_frr(fit.threshold * 0.9)
    bare = th.ThresholdFit.from_dict(json.loads(json.dumps(fit.as_dict(include_scores=False))))
    assert bare.predicted_frr(fit.threshold) == pytest.approx(1e-3)  # the tail needs no scores
    with pytest.raises(ValueError, match="reference_scores"):
        bare.predicted_frr(float(np.median(scores)))


def test_quantised_scores_with_ties():
    rng = np.random.default_rng(5)
    scores = np.round(rng.gamma(2.0, size=200), 1)  # many ties
    emp = th.fit_threshold(scores, 0.05)
    assert np.mean(scores >= emp.threshold) <= 0.05 + 1.0 / 200  # a tied group is not all rejected
    gpd = th.fit_threshold(scores, 1e-3)
    u = gpd.params["u"]
    assert u in scores and np.count_nonzero(scores > u) == gpd.params["n_tail"] >= 40
    assert math.isfinite(gpd.threshold) and gpd.threshold > u


def test_small_n_uses_min_tail():
    scores = np.random.default_rng(6).gamma(2.0, size=th.MIN_GOOD_SCORES)
    fit = th.fit_threshold(scores, 1e-2, min_tail=10)
    assert fit.method == "gpd" and fit.params["n_tail"] == 10


@pytest.mark.parametrize(
    "scores,target,kwargs,match",
    [
        ([1.0] * 10 + [math.nan] * 20, 0.01, {}, "non-finite"),
        (list(range(29)) + [math.inf], 0.01, {}, "non-finite"),
        (list(range(th.MIN_GOOD_SCORES - 1)), 0.01, {}, "at least 20"),
        ([], 0.01, {}, "at least"),
        (np.ones((10, 10)), 0.01, {}, "1-D"),
        (["a"] * 30, 0.01, {}, "numbers"),
        (list(range(50)), 0.0, {}, "target_frr"),
        (list(range(50)), 1.0, {}, "target_frr"),
        (list(range(50)), -0.1, {}, "target_frr"),
        (list(range(50)), math.nan, {}, "target_frr"),
        (list(range(50)), "x", {}, "target_frr"),
        (list(range(50)), 0.01, {"method": "magic"}, "method"),
        (list(range(50)), 0.01, {"tail_fraction": 1.5}, "tail_fraction"),
        (list(range(50)), 0.01, {"min_tail": 2}, "min_tail"),
        (list(range(50)), 0.01, {"tail_estimator": "x"}, "tail_estimator"),
        ([1.0] * 50, 0.001, {}, "tied"),
        (list(range(50)), 0.3, {"method": "gpd"}, "tail fraction"),
    ],
)
def test_fit_threshold_rejects_bad_input(scores, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        th.fit_threshold(scores, target, **kwargs)


def test_constant_scores_empirical_does_not_reject_everything():
    fit = th.fit_threshold([2.0] * 100, 0.1)
    assert fit.method == "empirical" and fit.threshold > 2.0


@pytest.mark.parametrize("estimator", th.TAIL_ESTIMATORS)
def test_fit_gpd_recovers_known_shape(estimator):
    rng = np.random.default_rng(7)
    for xi in (-0.2, 0.0, 0.3):
        y = stats.genpareto.rvs(xi, scale=2.0, size=3000, random_state=rng)
        got_xi, sigma, used = th.fit_gpd(y, estimator)
        assert used == estimator
        assert got_xi == pytest.approx(xi, abs=0.08)
        assert sigma == pytest.approx(2.0, rel=0.15)


def test_fit_gpd_falls_back_on_degenerate_tails():
    xi, sigma, used = th.fit_gpd(np.full(20, 0.5))  # no spread at all
    assert used == "exponential" and xi == 0.0 and sigma == pytest.approx(0.5)
    with pytest.raises(ValueError):
        th.fit_gpd([1.0, -1.0, 2.0])


# ----------------------------------------------------------------------------- CV estimate


def test_cv_interval_covers_true_frr_of_deployed_threshold():
    dist = DISTRIBUTIONS["gamma"]
    n, target, reps = 200, 0.02, 40
    covered, highs = 0, []
    for rep in range(reps):
        scores = dist.rvs(size=n, random_state=np.random.default_rng(1000 + rep))
        true_frr = dist.sf(th.fit_threshold(scores, target).threshold)
        est = th.estimate_frr_cv(scores, target, folds=5, repeats=3, seed=rep, model_resamples=10)
        assert est.ci_low <= est.estimated_frr <= est.ci_high
        covered += est.ci_low <= true_frr <= est.ci_high
        highs.append(est.ci_high)
    assert covered / reps >= 0.85  # a naive n*repeats interval covers ~0.8 here
    assert np.median(highs) < 0.08  # informative, not [0, 1]


def test_cv_model_frr_tracks_expected_frr_when_no_rejects_are_seen():
    dist = DISTRIBUTIONS["lognormal"]
    n, target = 100, 1e-3
    true_frr, model_frr, zero_reject_models = [], [], []
    for rep in range(30):
        scores = dist.rvs(size=n, random_state=np.random.default_rng(2000 + rep))
        true_frr.append(dist.sf(th.fit_threshold(scores, target).threshold))
        est = th.estimate_frr_cv(scores, target, folds=5, repeats=2, seed=rep, model_resamples=40)
        model_frr.append(est.model_frr)
        if est.n_rejected == 0:
            zero_reject_models.append(est.model_frr)
            assert est.estimated_frr == 0.0 and est.ci_low == 0.0
            assert est.ci_high == pytest.approx(1 - 0.025 ** (1 / n))  # CP upper bound, n parts
    assert zero_reject_models and min(zero_reject_models) > 0  # still informative
    ratio = np.mean(model_frr) / np.mean(true_frr)
    assert 1 / 3 <= ratio <= 3, (np.mean(model_frr), np.mean(true_frr))


def test_cv_bookkeeping_and_effective_count_interval():
    scores = np.random.default_rng(8).gamma(2.0, size=120)
    est = th.estimate_frr_cv(scores, 0.05, folds=4, repeats=3, confidence=0.9, seed=11)
    assert est.n_heldout == 120 * 3 and est.n_parts == 120
    assert est.folds == 4 and est.repeats == 3 and len(est.fold_thresholds) == 12
    assert est.estimated_frr == est.n_rejected / est.n_heldout
    # the interval treats the repeats' mean count as one binomial sample of the n distinct parts
    assert (est.ci_low, est.ci_high) == pytest.approx(
        th.clopper_pearson(est.n_rejected / 3, 120, 0.9)
    )
    assert est.confidence == 0.9 and "Clopper-Pearson" in est.method
    again = th.estimate_frr_cv(scores, 0.05, folds=4, repeats=3, confidence=0.9, seed=11)
    assert again == est and again.fold_thresholds == est.fold_thresholds


def test_cv_passes_fit_options_and_validates():
    scores = np.random.default_rng(9).gamma(2.0, size=100)
    est = th.estimate_frr_cv(scores, 0.05, method="gpd", repeats=1, model_resamples=5)
    assert "gpd" in est.method and "empirical" not in est.method.split(";")[0]
    with pytest.raises(ValueError, match="folds"):
        th.estimate_frr_cv(scores, 0.05, folds=1)
    with pytest.raises(ValueError, match="fewer folds"):
        th.estimate_frr_cv(scores[:24], 0.05, folds=5)
    with pytest.raises(ValueError, match="repeats"):
        th.estimate_frr_cv(scores, 0.05, repeats=0)
    with pytest.raises(ValueError, match="confidence"):
        th.estimate_frr_cv(scores, 0.05, confidence=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        th.estimate_frr_cv(np.append(scores, math.nan), 0.05)


def test_clopper_pearson_matches_exact_binomial():
    for x, n in ((0, 50), (3, 50), (50, 50), (7, 300)):
        ci = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="exact")
        assert th.clopper_pearson(x, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    low, high = th.clopper_pearson(1.5, 100)  # fractional (effective) count lies between
    assert th.clopper_pearson(1, 100)[0] < low < th.clopper_pearson(2, 100)[0]
    assert th.clopper_pearson(1, 100)[1] < high < th.clopper_pearson(2, 100)[1]
    with pytest.raises(ValueError):
        th.clopper_pearson(5, 3)


# ----------------------------------------------------------------------------- separation


def _brute_force_balanced_accuracy(good, defect, t):
    return 0.5 * (np.mean(defect >= t) + np.mean(good < t))


def test_separation_report_against_brute_force():
    rng = np.random.default_rng(10)
    good = np.round(rng.normal(0.0, 1.0, 60), 1)  # ties within and across the classes
    defect = np.round(rng.normal(1.2, 1.0, 25), 1)
    rep = th.separation_report(good, defect, 0.5)
    wins = (defect[:, None] > good[None, :]).sum() + 0.5 * (defect[:, None] == good[None, :]).sum()
    assert rep["auroc"] == pytest.approx(wins / (good.size * defect.size), abs=1e-12)
    assert rep["recall_at_threshold"] == np.count_nonzero(defect >= 0.5) / 25
    assert rep["escape_rate"] == pytest.approx(1 - rep["recall_at_threshold"])
    assert rep["frr_at_threshold"] == np.count_nonzero(good >= 0.5) / 60
    # best threshold: no cut does better, and the reported one achieves the reported accuracy
    values = np.unique(np.concatenate([good, defect]))
    cuts = np.concatenate([[values[0] - 1], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    best_possible = max(_brute_force_balanced_accuracy(good, defect, c) for c in cuts)
    assert rep["best_balanced_accuracy"] == pytest.approx(best_possible)
    assert _brute_force_balanced_accuracy(good, defect, rep["best_threshold"]) == pytest.approx(
        best_possible
    )
    assert rep["best_threshold"] not in values  # a midpoint between adjacent scores
    # ROC points are brute-force counts at each listed threshold
    roc = rep["roc"]
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert all(np.diff(roc["thresholds"]) < 0) and all(map(math.isfinite, roc["thresholds"]))
    for f, t, c in zip(roc["fpr"], roc["tpr"], roc["thresholds"]):
        assert f == np.mean(good >= c) and t == np.mean(defect >= c)
    json.dumps(rep)  # plain JSON types only


def test_separation_report_matches_sklearn_and_perfect_separation():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(11)
    good, defect = rng.normal(0, 1, 80), rng.normal(2, 1, 30)
    labels = np.r_[np.zeros(80), np.ones(30)]
    rep = th.separation_report(good, defect, 1.0)
    assert rep["auroc"] == pytest.approx(metrics.roc_auc_score(labels, np.r_[good, defect]))
    perfect = th.separation_report([0.1, 0.2, 0.3], [0.7, 0.9], 0.5)
    assert perfect["auroc"] == 1.0 and perfect["best_balanced_accuracy"] == 1.0
    assert perfect["best_threshold"] == pytest.approx(0.5)  # midway between 0.3 and 0.7
    assert perfect["recall_at_threshold"] == 1.0 and perfect["frr_at_threshold"] == 0.0


def test_separation_report_rejects_bad_input():
    with pytest.raises(ValueError, match="defect_scores"):
        th.separation_report([0.1, 0.2], [], 0.5)
    with pytest.raises(ValueError, match="non-finite"):
        th.separation_report([0.1, math.nan], [0.5], 0.5)
    with pytest.raises(ValueError, match="threshold"):
        th.separation_report([0.1], [0.5], math.nan)


# ----------------------------------------------------------------------------- pixel / region


def test_pixel_threshold_empirical_and_tail():
    rng = np.random.default_rng(12)
    maps = rng.gamma(2.0, 0.1, size=(30, 64, 64)).astype(np.float32)
    flat = maps.reshape(-1).astype(np.float64)
    emp = th.pixel_threshold(maps, 1e-3)  # 122880 * 1e-3 = 123 expected: empirical
    assert emp == pytest.approx(np.quantile(flat, 1 - 1e-3), rel=1e-9)
    tail = th.pixel_threshold(maps, 1e-5)  # 1.2 expected: tail model over the top pixels
    same = th.fit_threshold(flat, 1e-5, tail_fraction=1e-3, min_tail=100)
    assert same.method == "gpd" and tail == pytest.approx(same.threshold, rel=1e-12)
    true_fpr = stats.gamma(2.0, scale=0.1).sf(tail)
    assert 0.1 <= true_fpr / 1e-5 <= 10
    assert tail > emp
    with pytest.raises(ValueError, match="N x H x W"):
        th.pixel_threshold(maps[0], 1e-3)
    with pytest.raises(ValueError, match="at least"):
        th.pixel_threshold(maps[:5], 1e-3)
    bad = maps.copy()
    bad[3, 1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        th.pixel_threshold(bad, 1e-3)


def _good_map_with_specks(rng, size=64, cell=16):
    """Background < 0.3 plus 0-3 separated rectangles ('specks') >= 0.6 on a grid of cells, so
    regions never touch; returns (map, largest speck area)."""
    amap = rng.uniform(0.0, 0.3, (size, size)).astype(np.float32)
    cells = [(r, c) for r in range(0, size, cell) for c in range(0, size, cell)]
    largest = 0
    for k in rng.choice(len(cells), size=rng.integers(0, 4), replace=False):
        r, c = cells[k]
        h, w = _speck_dims(rng)
        amap[r + 1 : r + 1 + h, c + 1 : c + 1 + w] = rng.uniform(0.6, 0.9)
        largest = max(largest, h * w)
    return amap, largest


def _speck_dims(rng):
    return int(min(rng.geometric(0.35), 12)), int(min(rng.geometric(0.35), 12))


def test_largest_region_areas_and_min_defect_area_empirical():
    rng = np.random.default_rng(13)
    pairs = [_good_map_with_specks(rng) for _ in range(100)]
    maps = np.stack([m for m, _ in pairs])
    expected = np.array([a for _, a in pairs])
    assert np.array_equal(th.largest_region_areas(maps, 0.5), expected)
    min_area = th.min_defect_area(maps, 0.5, 0.05)  # 100 * 0.05 = 5: empirical
    assert np.count_nonzero(expected >= min_area) <= 5
    assert np.count_nonzero(expected >= min_area - 1) > 5 or min_area == 1  # the smallest such


def test_min_defect_area_tail_keeps_frr_near_target():
    rng = np.random.default_rng(14)
    maps = np.stack([_good_map_with_specks(rng)[0] for _ in range(60)])
    min_area = th.min_defect_area(maps, 0.5, 0.01)  # 60 * 0.01 < 5: tail model of areas
    # true FRR of the region rule: Monte-Carlo over the speck generator (no maps needed)
    sim = np.random.default_rng(15)
    largest = np.zeros(100_000, dtype=np.int64)
    counts = sim.integers(0, 4, size=largest.size)
    for k in range(3):
        h = np.minimum(sim.geometric(0.35, size=largest.size), 12)
        w = np.minimum(sim.geometric(0.35, size=largest.size), 12)
        largest = np.where(counts > k, np.maximum(largest, h * w), largest)
    true_frr = np.mean(largest >= min_area)
    assert 0.01 / 5 <= true_frr <= 0.01 * 5, (min_area, true_frr)


def test_min_defect_area_when_good_maps_have_no_hot_pixels():
    maps = np.random.default_rng(16).uniform(0, 0.3, size=(25, 32, 32))
    assert th.min_defect_area(maps, 0.5, 1e-3) == 1  # any region above pixel_thr is a defect
    with pytest.raises(ValueError, match="target_frr"):
        th.min_defect_area(maps, 0.5, 2.0)
    with pytest.raises(ValueError, match="pixel_thr"):
        th.min_defect_area(maps, math.inf, 0.01)


def test_defect_regions_find_planted_blobs():
    rng = np.random.default_rng(17)
    amap = rng.uniform(0.0, 0.3, (64, 80)).astype(np.float32)
    amap[10:18, 20:30] = 0.8  # 8 x 10 = 80 px
    amap[13, 24] = 1.7  # its peak
    amap[40:44, 50:53] = 0.6  # 4 x 3 = 12 px
    amap[60, 5] = amap[61, 6] = 0.9  # diagonal neighbours: one 8-connected region of 2 px
    regions = th.defect_regions(amap, 0.5, 1)
    assert [r["area"] for r in regions] == [80, 12, 2]
    assert regions[0] == {"x": 20, "y": 10, "w": 10, "h": 8, "area": 80, "peak": pytest.approx(1.7)}
    assert regions[1] == {"x": 50, "y": 40, "w": 3, "h": 4, "area": 12, "peak": pytest.approx(0.6)}
    assert regions[2]["w"] == 2 and regions[2]["h"] == 2
    assert [r["area"] for r in th.defect_regions(amap, 0.5, 12)] == [80, 12]  # area >= min_area
    assert [r["area"] for r in th.defect_regions(amap, 1.0, 1)] == [1]  # only the peak pixel
    assert th.defect_regions(amap, 2.0, 1) == []
    with pytest.raises(ValueError, match="min_area"):
        th.defect_regions(amap, 0.5, 0)
    nan_map = amap.copy()
    nan_map[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        th.defect_regions(nan_map, 0.5, 1)
    with pytest.raises(ValueError, match="H x W"):
        th.defect_regions(amap[None], 0.5, 1)
