"""The pixel and region rule from good anomaly maps: a pixel is anomalous when ``value >= pixel_thr``;
an 8-connected region of anomalous pixels is a defect when ``area >= min_area``. ``pixel_threshold``
places the pixel threshold, ``min_defect_area`` the area, ``defect_regions`` lists one map's defects."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from ..judge.regions import _check_region_args, _components, largest_region_areas
from .image_threshold import check_fit_options, fit_sorted
from .score_checks import EMPIRICAL_MIN_EXPECTED_REJECTS, MIN_GOOD_SCORES, check_probability

__all__ = ["pixel_threshold", "min_defect_area", "defect_regions"]


def as_maps(maps: Any, name: str = "good_maps") -> np.ndarray:
    """``maps`` as a finite float N x H x W array with N >= MIN_GOOD_SCORES, else ValueError."""
    arr = np.asarray(maps)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be N x H x W, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if arr.shape[0] < MIN_GOOD_SCORES:
        raise ValueError(f"{name} needs at least {MIN_GOOD_SCORES} maps, got {arr.shape[0]}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name} has empty maps, shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN/inf)")
    return arr


def pixel_threshold(
    good_pixel_maps: Any,
    target_fpr: float = 1e-4,
    *,
    method: str = "auto",
    tail_fraction: float = 1e-3,
    min_tail: int = 100,
    tail_estimator: str = "zhang-stephens",
) -> float:
    """Pixel threshold with false-positive rate ``target_fpr`` over the pixels of good maps.

    ``good_pixel_maps``: float N x H x W anomaly maps of GOOD parts (N >= MIN_GOOD_SCORES, finite).
    A pixel is anomalous when ``value >= threshold``; the returned threshold makes the fraction of
    good pixels at or above it ~``target_fpr`` (a marginal rate: pixels of one map are correlated,
    so the *image*-level effect of a pixel threshold is set by ``min_defect_area``).
    Same estimator as ``fit_threshold`` on the pooled pixels (empirical quantile when
    ``N*H*W*target_fpr >= EMPIRICAL_MIN_EXPECTED_REJECTS``, else a GPD tail over the top
    ``max(min_tail, tail_fraction * N*H*W)`` pixels). Only the needed top pixels are sorted.
    ValueError for bad maps / target, or a tail that cannot be formed.
    """
    maps = as_maps(good_pixel_maps, "good_pixel_maps")
    target = check_probability(target_fpr, "target_fpr")
    check_fit_options(method, tail_fraction, min_tail, tail_estimator)
    flat = maps.reshape(-1)
    n_total = flat.size
    needed = max(
        math.ceil(n_total * target) + 3,  # empirical quantile and its tie check
        max(min_tail, math.ceil(tail_fraction * n_total)) + 1,  # tail start and exceedances
    )
    # extra head-room below the tail start in case ties move it down
    keep = min(n_total, 2 * needed + 1000)
    top = np.partition(flat, n_total - keep)[n_total - keep :] if keep < n_total else flat.copy()
    top = np.sort(top.astype(np.float64))
    threshold, _, _ = fit_sorted(
        top, n_total, target, method, tail_fraction, min_tail, tail_estimator
    )
    return float(threshold)


def min_defect_area(
    good_maps: Any,
    pixel_thr: float,
    target_frr: float,
    *,
    tail_fraction: float = 0.2,
    min_tail: int = 10,
    tail_estimator: str = "zhang-stephens",
) -> int:
    """Smallest region area (pixels) that counts as a defect, so the region rule alone rejects
    ~``target_frr`` of good parts.

    Region rule: reject a part when its largest 8-connected region with ``value >= pixel_thr`` has
    ``area >= min_area``. From the largest-region areas A_i of the N good maps:
      * ``N * target_frr >= EMPIRICAL_MIN_EXPECTED_REJECTS``: the smallest integer with at most
        ``floor(N * target_frr)`` good parts at or above it;
      * otherwise: the GPD tail threshold of the areas (as ``fit_threshold``, method "gpd"),
        rounded up (areas are integers, so ``A >= ceil(t)`` iff ``A >= t``);
      * when the areas have too few distinct values for a tail (e.g. nearly all 0): ``max(A) + 1``,
        so no good part of the calibration set is rejected by the region rule.
    The result is at least 1. The combined FRR of the score rule and the region rule is at most the
    sum of the two. ValueError for bad maps / thresholds / target.
    """
    maps = as_maps(good_maps, "good_maps")
    thr, _ = _check_region_args(pixel_thr)
    target = check_probability(target_frr, "target_frr")
    check_fit_options("auto", tail_fraction, min_tail, tail_estimator)
    areas = largest_region_areas(maps, thr)
    n = areas.size
    if n * target >= EMPIRICAL_MIN_EXPECTED_REJECTS:
        allowed = math.floor(n * target)
        return max(1, int(np.sort(areas)[::-1][allowed]) + 1)
    try:
        ordered = np.sort(areas.astype(np.float64))
        tail_thr, _, _ = fit_sorted(
            ordered, n, target, "gpd", tail_fraction, min_tail, tail_estimator
        )
    except ValueError:
        return int(areas.max()) + 1
    return max(1, int(math.ceil(tail_thr)))


def defect_regions(anomaly_map: Any, pixel_thr: float, min_area: int) -> list[dict[str, Any]]:
    """Defect regions of one anomaly map: 8-connected regions of ``value >= pixel_thr`` with
    ``area >= min_area``.

    ``anomaly_map``: float H x W, finite. Returns dicts ``{x, y, w, h, area, peak}`` (bounding box
    in pixels, x = column of the left edge, y = row of the top edge; area in pixels; peak = max map
    value in the region, float), largest area first (ties: higher peak first). Empty list when none.
    ValueError for a non-2-D / non-finite map, non-finite pixel_thr or min_area < 1.
    """
    arr = np.asarray(anomaly_map)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"anomaly_map must be a non-empty H x W array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("anomaly_map contains non-finite values (NaN/inf)")
    thr, area_min = _check_region_args(pixel_thr, min_area)
    count, labels, comp_stats = _components(arr, thr)
    keep = [i for i in range(1, count) if comp_stats[i, cv2.CC_STAT_AREA] >= area_min]
    if not keep:
        return []
    peaks = ndimage.maximum(arr, labels=labels, index=keep)
    regions = [
        {
            "x": int(comp_stats[i, cv2.CC_STAT_LEFT]),
            "y": int(comp_stats[i, cv2.CC_STAT_TOP]),
            "w": int(comp_stats[i, cv2.CC_STAT_WIDTH]),
            "h": int(comp_stats[i, cv2.CC_STAT_HEIGHT]),
            "area": int(comp_stats[i, cv2.CC_STAT_AREA]),
            "peak": float(peak),
        }
        for i, peak in zip(keep, np.atleast_1d(peaks))
    ]
    regions.sort(key=lambda r: (-r["area"], -r["peak"]))
    return regions
