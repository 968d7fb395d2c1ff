"""Tests of inspector.evaluation.metrics against brute-force reference implementations written here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from inspector.evaluation import metrics

# --------------------------------------------------------------------------------------------
# brute-force references (deliberately naive, independent of the module's code paths)
# --------------------------------------------------------------------------------------------


def brute_auroc(labels, scores) -> float:
    """Count all (defect, good) pairs: 1 when the defect scores higher, 1/2 on a tie."""
    positives = [s for l, s in zip(labels, scores) if l]
    negatives = [s for l, s in zip(labels, scores) if not l]
    total = 0.0
    for p in positives:
        for n in negatives:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(positives) * len(negatives))


def brute_regions(masks):
    """List of (image index, bool region mask) using scipy's 8-connected labelling."""
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        for k in range(1, count + 1):
            regions.append((index, labelled == k))
    return regions


def brute_pro_points(masks, maps, thresholds):
    """(fpr, pro) at each threshold by explicit loops; predicted defect = score >= threshold."""
    regions = brute_regions(masks)
    normal_scores = maps[~masks]
    points = []
    for t in thresholds:
        overlaps = [np.mean(maps[i][region] >= t) for i, region in regions]
        points.append((float(np.mean(normal_scores >= t)), float(np.mean(overlaps))))
    return points


def careful_trapezoid(points, x_max):
    """Area under the polyline (0,0) -> points -> (1,1) for x in [0, x_max], segment by segment."""
    polyline = [(0.0, 0.0)] + sorted(points) + [(1.0, 1.0)]
    area = 0.0
    for (x0, y0), (x1, y1) in zip(polyline[:-1], polyline[1:]):
        if x0 >= x_max:
            break
        if x1 <= x_max:
            area += 0.5 * (y0 + y1) * (x1 - x0)
        else:  # the segment crosses x_max: interpolate the end point
            y_end = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
            area += 0.5 * (y0 + y_end) * (x_max - x0)
    return area


def brute_aupro(masks, maps, fpr_limit=0.3, thresholds=None):
    if thresholds is None:  # every distinct score, high to low (the exact curve)
        thresholds = np.unique(maps)[::-1]
    points = brute_pro_points(masks, maps, thresholds)
    return careful_trapezoid(points, fpr_limit) / fpr_limit


def random_masks(rng, n, h, w, n_blobs=3):
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        for _ in range(int(rng.integers(0, n_blobs + 1))):
            y, x = rng.integers(0, h), rng.integers(0, w)
            dy, dx = rng.integers(1, 4, size=2)
            masks[i, y : y + dy, x : x + dx] = True
    masks[0, 1:3, 1:4] = True  # at least one region
    return masks


# --------------------------------------------------------------------------------------------
# AUROC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_image_auroc_matches_pair_counting_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    labels = rng.integers(0, 2, size=n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 6, size=n).astype(np.float64)  # many ties
    expected = brute_auroc(labels, scores)
    assert metrics.image_auroc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_image_auroc_continuous_matches_sklearn():
    rng = np.random.default_rng(7)
    labels = rng.random(300) < 0.3
    scores = rng.normal(size=300) + labels
    expected = roc_auc_score(labels, scores)
    assert metrics.image_auroc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_image_auroc_edge_cases():
    assert metrics.image_auroc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert metrics.image_auroc([True, True], [0.1, 0.2]) is None
    assert metrics.image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.image_auroc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert metrics.image_auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # labels given as 0/255 and as bool are the same thing
    assert metrics.image_auroc([0, 255, 0], [0.1, 0.9, 0.2]) == 1.0


def test_image_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        metrics.image_auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="equal length"):
        metrics.image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        metrics.image_auroc([], [])


@pytest.mark.parametrize("seed", range(4))
def test_pixel_auroc_pools_all_pixels(seed):
    rng = np.random.default_rng(100 + seed)
    masks = random_masks(rng, 4, 9, 11)
    maps = rng.integers(0, 8, size=masks.shape).astype(np.float32)  # ties
    expected = brute_auroc(masks.ravel(), maps.ravel())
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_edge_cases():
    maps = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    assert metrics.pixel_auroc(np.zeros((3, 8, 8), bool), maps) is None  # no defect pixel
    assert metrics.pixel_auroc(np.ones((3, 8, 8), bool), maps) is None  # no normal pixel
    masks = maps > 0.7
    assert metrics.pixel_auroc(masks, maps) == 1.0
    assert metrics.pixel_auroc(masks, np.full_like(maps, 0.25)) == 0.5
    assert metrics.pixel_auroc(masks.astype(np.uint8) * 255, maps) == 1.0
    with pytest.raises(ValueError, match="N x H x W"):
        metrics.pixel_auroc(masks[0], maps[0])
    with pytest.raises(ValueError, match="equal shapes"):
        metrics.pixel_auroc(masks[:, :4], maps)
    bad = maps.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        metrics.pixel_auroc(masks, bad)


# --------------------------------------------------------------------------------------------
# AU-PRO
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_exact_matches_brute_force_with_ties(seed, fpr_limit):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, 3, 10, 12)
    maps = rng.integers(0, 12, size=masks.shape).astype(np.float64)
    maps[masks] += rng.integers(0, 4, size=int(masks.sum()))  # defects score a bit higher
    expected = brute_aupro(masks, maps, fpr_limit)
    assert metrics.aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_aupro_exact_matches_brute_force_continuous(seed):
    rng = np.random.default_rng(50 + seed)
    masks = random_masks(rng, 4, 12, 10, n_blobs=4)
    maps = (rng.random(masks.shape) + 0.6 * masks).astype(np.float32)
    assert metrics.aupro(masks, maps) == pytest.approx(brute_aupro(masks, maps), abs=1e-9)


def test_aupro_threshold_grid_approximates_exact_value():
    rng = np.random.default_rng(3)
    masks = random_masks(rng, 4, 16, 16, n_blobs=4)
    maps = rng.random(masks.shape) + 0.5 * masks
    exact = metrics.aupro(masks, maps)
    grid = np.linspace(maps.max(), maps.min(), 200)
    assert metrics.aupro(masks, maps, num_thresholds=200) == pytest.approx(
        brute_aupro(masks, maps, thresholds=grid), abs=1e-9
    )
    assert metrics.aupro(masks, maps, num_thresholds=5000) == pytest.approx(exact, abs=5e-3)
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.aupro(masks, maps, num_thresholds=1)


def test_aupro_perfect_and_constant_maps():
    rng = np.random.default_rng(5)
    masks = random_masks(rng, 3, 12, 12)
    perfect = masks.astype(np.float32) + 0.1 * rng.random(masks.shape).astype(np.float32)
    assert metrics.aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    constant = np.full(masks.shape, 0.7, np.float32)  # curve (0,0) -> (1,1): area x^2/2
    assert metrics.aupro(masks, constant) == pytest.approx(0.15, abs=1e-12)
    assert metrics.aupro(masks, constant, fpr_limit=1.0) == pytest.approx(0.5, abs=1e-12)
    inverted = 1.0 - perfect  # every defect pixel below every normal pixel
    assert metrics.aupro(masks, inverted) == pytest.approx(0.0, abs=1e-12)


def test_aupro_averages_regions_not_pixels_within_one_image():
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 1:3, 1:3] = True  # region A: 4 px, found
    masks[0, 5:9, 5:9] = True  # region B: 16 px, missed
    maps = np.full(masks.shape, 0.5)
    maps[0, 1:3, 1:3] = 1.0
    maps[0, 5:9, 5:9] = 0.0
    # curve (0,0) -> (0,0.5) -> (1,0.5) -> (1,1): PRO 1/2 from FPR 0 (pixel-pooled would be 4/20)
    assert metrics.aupro(masks, maps) == pytest.approx(0.5, abs=1e-12)
    assert metrics.aupro(masks, maps) == pytest.approx(brute_aupro(masks, maps), abs=1e-12)


def test_aupro_uses_8_connectivity():
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2, 2] = masks[0, 3, 3] = True  # touch diagonally: one region of 2 px
    masks[0, 6, 6] = True  # a separate 1-px region
    maps = np.where(masks, 0.0, 0.5)  # normal pixels 0.5, defect pixels 0 (missed) ...
    maps[0, 2, 2] = 1.0  # ... except half of the diagonal region (found)
    # 8-connected: regions {2 px: 1/2 found, 1 px: missed} -> PRO 1/4 at FPR 0, then flat until
    # FPR 1. With 4-connectivity it would be 3 regions, PRO 1/3.
    assert metrics.aupro(masks, maps) == pytest.approx(0.25, abs=1e-12)


def test_aupro_pools_regions_over_images():
    masks = np.zeros((3, 6, 6), bool)
    masks[0, 1:3, 1:3] = True  # image 0: one region, found
    masks[1, 0:2, 0:2] = True  # image 1: two regions, both missed
    masks[1, 4:6, 4:6] = True
    maps = np.full(masks.shape, 0.5)
    maps[0][masks[0]] = 1.0
    maps[1][masks[1]] = 0.0
    # pooled over the set: 1 of 3 regions found -> 1/3 (a per-image mean would give 1/2)
    assert metrics.aupro(masks, maps) == pytest.approx(1 / 3, abs=1e-12)
    assert metrics.aupro(masks, maps) == pytest.approx(brute_aupro(masks, maps), abs=1e-12)


def test_aupro_edge_cases():
    maps = np.random.default_rng(2).random((2, 6, 6))
    assert metrics.aupro(np.zeros((2, 6, 6), bool), maps) is None  # no region
    assert metrics.aupro(np.ones((2, 6, 6), bool), maps) is None  # no normal pixel
    masks = np.zeros((2, 6, 6), bool)
    masks[1, 2:4, 2:4] = True
    for bad_limit in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fpr_limit"):
            metrics.aupro(masks, maps, fpr_limit=bad_limit)
    with pytest.raises(ValueError, match="NaN"):
        metrics.aupro(masks, np.where(masks, np.nan, maps))


def test_pro_curve_is_monotone_and_spans_unit_square():
    rng = np.random.default_rng(11)
    masks = random_masks(rng, 5, 20, 20, n_blobs=5)
    maps = rng.random(masks.shape).astype(np.float32) + masks
    fprs, pros = metrics.pro_curve(masks, maps)
    assert fprs[0] == 0.0 and pros[0] == 0.0 and fprs[-1] == 1.0 and pros[-1] == 1.0
    assert np.all(np.diff(fprs) >= 0) and np.all(np.diff(pros) >= -1e-12)


def test_large_set_is_fast_and_matches_sklearn():
    rng = np.random.default_rng(0)
    masks = np.zeros((24, 256, 768), bool)
    for i in range(12):
        y, x = rng.integers(10, 200), rng.integers(10, 700)
        masks[i, y : y + 30, x : x + 40] = True
    maps = rng.random(masks.shape, dtype=np.float32) + 0.3 * masks
    sample = np.s_[:, ::7, ::7]  # sklearn on a subsample keeps the test fast
    assert metrics.pixel_auroc(masks[sample], maps[sample]) == pytest.approx(
        roc_auc_score(masks[sample].ravel(), maps[sample].ravel()), abs=1e-12
    )
    assert 0.5 < metrics.pixel_auroc(masks, maps) < 1.0
    assert 0.0 < metrics.aupro(masks, maps) < 1.0


# --------------------------------------------------------------------------------------------
# evaluate_set
# --------------------------------------------------------------------------------------------


def make_set():
    """8 good, 3 scratch (clearly higher scores), 3 hole (scores like the good ones)."""
    rng = np.random.default_rng(9)
    kinds = ["good"] * 8 + ["scratch"] * 3 + ["hole"] * 3
    labels = np.array([kind != "good" for kind in kinds], dtype=int)
    scores = np.r_[np.linspace(0.1, 0.5, 8), [0.9, 0.95, 0.99], [0.1, 0.3, 0.5]]
    masks = np.zeros((14, 16, 16), bool)
    maps = rng.random(masks.shape).astype(np.float32)
    for i in range(8, 14):
        masks[i, 4:8, 5 + i % 3 : 9 + i % 3] = True
    maps[8:11][masks[8:11]] += 1.0  # scratch maps find their defects
    return kinds, labels, scores, masks, maps


def test_evaluate_set_overall_and_per_kind():
    kinds, labels, scores, masks, maps = make_set()
    result = metrics.evaluate_set(kinds, labels, scores, masks, maps)
    assert result["n_good"] == 8 and result["n_defect"] == 6
    assert result["image_auroc"] == pytest.approx(brute_auroc(labels, scores), abs=1e-12)
    expected_pixel = brute_auroc(masks.ravel(), maps.ravel())
    assert result["pixel_auroc"] == pytest.approx(expected_pixel, abs=1e-12)
    assert result["aupro"] == pytest.approx(brute_aupro(masks, maps), abs=1e-9)
    assert set(result["per_kind"]) == {"scratch", "hole"}
    scratch, hole = result["per_kind"]["scratch"], result["per_kind"]["hole"]
    assert scratch["n"] == 3 and hole["n"] == 3
    assert scratch["image_auroc"] == 1.0
    hole_subset = list(range(8)) + [11, 12, 13]
    assert hole["image_auroc"] == pytest.approx(
        brute_auroc(labels[hole_subset], scores[hole_subset]), abs=1e-12
    )
    assert hole["image_auroc"] < 0.7
    assert scratch["aupro"] == pytest.approx(1.0, abs=1e-12)
    expected_pro = brute_aupro(masks[hole_subset], maps[hole_subset])
    assert hole["aupro"] == pytest.approx(expected_pro, abs=1e-9)
    assert hole["pixel_auroc"] == pytest.approx(
        brute_auroc(masks[hole_subset].ravel(), maps[hole_subset].ravel()), abs=1e-12
    )


def test_evaluate_set_without_maps_and_bad_input():
    kinds, labels, scores, masks, maps = make_set()
    result = metrics.evaluate_set(kinds, labels, scores)
    assert result["pixel_auroc"] is None and result["aupro"] is None
    assert result["per_kind"]["scratch"]["pixel_auroc"] is None
    only_good = metrics.evaluate_set(["good"] * 3, [0, 0, 0], [0.1, 0.2, 0.3])
    assert only_good["image_auroc"] is None and only_good["per_kind"] == {}
    wrong = labels.copy()
    wrong[0] = 1
    with pytest.raises(ValueError, match="disagrees"):
        metrics.evaluate_set(kinds, wrong, scores)
    with pytest.raises(ValueError, match="both masks and maps"):
        metrics.evaluate_set(kinds, labels, scores, masks, None)
    with pytest.raises(ValueError, match="kinds"):
        metrics.evaluate_set(kinds[:-1], labels, scores)
    with pytest.raises(ValueError, match="masks/maps"):
        metrics.evaluate_set(kinds, labels, scores, masks[:5], maps[:5])
