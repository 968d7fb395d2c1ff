"""Evaluation metrics for anomaly detection: image AUROC, pixel AUROC and AU-PRO.

numpy + OpenCV only (no torch, no per-pixel Python loops). The definitions follow the MVTec AD
evaluation protocol:

- image AUROC: ROC AUC of the image scores against the image labels (defect = positive).
- pixel AUROC: ROC AUC of all pixels of the test set pooled together (defect pixel = positive).
- AU-PRO: area under the per-region-overlap curve up to a false-positive rate of ``fpr_limit``
  (0.3 by default), divided by ``fpr_limit``. Regions are the 8-connected components of the ground
  truth masks of the whole set; PRO(t) is the mean over *all regions of the set* of the fraction of
  the region's pixels with score >= t; FPR(t) is the fraction of *all* normal pixels of the set with
  score >= t. Every distinct score value is a threshold (exact curve, as the official MVTec AD code
  computes it), the curve is integrated with the trapezoid rule and the point at exactly
  ``fpr_limit`` is linearly interpolated.

Ties count 1/2 in the AUROCs (Mann-Whitney). Metrics that are undefined for the given data (only
one class present, no defect region, no normal pixel) are ``None``. Malformed input (wrong shapes,
NaN/inf scores, empty arrays) raises ``ValueError``.

Memory: the pixel metrics copy the normal and the defect pixel scores once (in the maps' float
dtype; float32 maps stay float32) and sort one of the two copies, so ~120 maps of 256 x 768 float32
(23.6 M pixels) need a few hundred MB at most.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..core.dataset_layout import GOOD

GOOD_KIND = GOOD  # the kind name of defect-free images (MVTec AD convention)

# searchsorted queries are processed in chunks of this many values to bound temporary memory
_CHUNK = 1 << 22


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _as_scores(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    """Return ``values`` as a finite floating array (float32/float64 kept, others -> float64)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_bool(values: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    """Return ``values`` as a bool array: nonzero = defect (accepts bool, 0/1, 0/255)."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be bool or numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array if array.dtype == bool else array != 0


def _check_image_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = _as_bool(labels, "labels")
    scores = _as_scores(scores, "scores")
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must be 1-D of equal length, got {labels.shape} and {scores.shape}"
        )
    return labels, scores


def _check_pixel_inputs(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    masks = _as_bool(masks, "masks")
    maps = _as_scores(maps, "maps")
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            f"masks and maps must both be N x H x W with equal shapes, got {masks.shape} and "
            f"{maps.shape}"
        )
    return masks, maps


# --------------------------------------------------------------------------------------------
# AUROC
# --------------------------------------------------------------------------------------------


def _count_below(sorted_values: np.ndarray, sorted_queries: np.ndarray) -> tuple[int, int]:
    """Return (sum over queries of #values < q, sum over queries of #values <= q) as Python ints.

    Both arrays sorted ascending (sorted queries keep the binary searches cache-friendly).
    """
    below = 0
    below_or_equal = 0
    for start in range(0, sorted_queries.size, _CHUNK):
        chunk = sorted_queries[start : start + _CHUNK]
        below += int(np.searchsorted(sorted_values, chunk, side="left").sum(dtype=np.int64))
        at_most = np.searchsorted(sorted_values, chunk, side="right")
        below_or_equal += int(at_most.sum(dtype=np.int64))
    return below, below_or_equal


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Exact ROC AUC = P(pos > neg) + P(pos == neg) / 2; None when either class is empty.

    ``positive`` and ``negative`` are 1-D score arrays owned by the caller's temporary copies:
    they are sorted in place (no further copies; a few chunk-sized temporaries only).
    """
    n_pos, n_neg = positive.size, negative.size
    if n_pos == 0 or n_neg == 0:
        return None
    positive.sort()
    negative.sort()
    below, below_or_equal = _count_below(negative, positive)
    twice_wins = below + below_or_equal  # 2 * #(neg < pos) + #(neg == pos), over all pos
    return twice_wins / (2 * n_pos * n_neg)  # Python ints: exact until the final division


def image_auroc(
    labels: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float]
) -> float | None:
    """Image-level ROC AUC.

    labels: (N,) bool or int, nonzero = defect (positive). scores: (N,) finite floats, higher =
    more anomalous. Returns a float in [0, 1], or None when only one class is present.
    Raises ValueError on mismatched shapes or non-finite scores.
    """
    labels, scores = _check_image_inputs(labels, scores)
    return _auroc(scores[labels], scores[~labels])


def _normal_pixels(masks: np.ndarray, maps: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Map values of the normal pixels (outside the masks; inside ``valid`` when given), a copy."""
    if valid is None:
        return maps[~masks]
    valid = np.asarray(valid, bool)
    if valid.shape != maps.shape:
        raise ValueError(f"valid region {valid.shape} does not match the maps {maps.shape}")
    return maps[~masks & valid]


def pixel_auroc(masks: np.ndarray, maps: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """Pixel-level ROC AUC with all pixels of the set pooled (MVTec AD style).

    masks: (N, H, W) bool (or 0/1, 0/255), True = defect pixel. maps: (N, H, W) finite float
    anomaly maps (float32 recommended). Returns a float in [0, 1], or None when the set has no
    defect pixel or no normal pixel. Raises ValueError on mismatched shapes or non-finite maps.
    ``valid`` (N, H, W) bool: only these pixels count as normal pixels (e.g. not the letterbox fill).
    """
    masks, maps = _check_pixel_inputs(masks, maps)
    return _auroc(maps[masks], _normal_pixels(masks, maps, valid))


# --------------------------------------------------------------------------------------------
# AU-PRO
# --------------------------------------------------------------------------------------------


def _region_pixels(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Collect the defect pixels of all images with their per-region weights.

    Returns (scores, weights, n_regions): ``scores`` are the map values of all defect pixels,
    ``weights`` (float64) are 1 / (size of the pixel's 8-connected region) / n_regions, so the
    weights of one region sum to 1 / n_regions and all weights sum to 1.
    """
    score_parts: list[np.ndarray] = []
    weight_parts: list[np.ndarray] = []
    n_regions = 0
    for mask, score_map in zip(masks, maps):
        if not mask.any():
            continue
        n_labels, labels = cv2.connectedComponents(
            np.ascontiguousarray(mask).view(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )
        inside = labels > 0
        region_of_pixel = labels[inside]
        sizes = np.bincount(region_of_pixel, minlength=n_labels)
        score_parts.append(score_map[inside])
        weight_parts.append(1.0 / sizes[region_of_pixel])
        n_regions += n_labels - 1
    if n_regions == 0:
        return np.empty(0, maps.dtype), np.empty(0, np.float64), 0
    weights = np.concatenate(weight_parts)
    weights /= n_regions
    return np.concatenate(score_parts), weights, n_regions


def _exact_pro_curve(
    normal_sorted: np.ndarray, defect_scores: np.ndarray, defect_weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact PRO curve with every distinct score as a threshold (predicted positive: score >= t).

    Between two consecutive distinct defect scores the curve is horizontal (only normal pixels
    cross the threshold), so it is fully described by two points per distinct defect score a:
    (FPR(> a), PRO before a) and (FPR(>= a), PRO(>= a)), plus (0, 0) and (1, 1). These are exactly
    the corners of the official MVTec AD curve (its other points are collinear with them).
    Returns (fprs, pros), float64, fprs non-decreasing from 0 to 1.
    """
    order = np.argsort(defect_scores, kind="stable")[::-1]
    scores_desc = defect_scores[order]
    pro_cumulative = np.cumsum(defect_weights[order])
    last_of_run = np.append(scores_desc[1:] != scores_desc[:-1], True)
    thresholds = scores_desc[last_of_run]
    pro_at = np.minimum(pro_cumulative[last_of_run], 1.0)
    pro_before = np.concatenate(([0.0], pro_at[:-1]))

    n_normal = normal_sorted.size
    fpr_above = (n_normal - np.searchsorted(normal_sorted, thresholds, side="right")) / n_normal
    fpr_at = (n_normal - np.searchsorted(normal_sorted, thresholds, side="left")) / n_normal

    fprs = np.concatenate(([0.0], np.column_stack((fpr_above, fpr_at)).ravel(), [1.0]))
    pros = np.concatenate(([0.0], np.column_stack((pro_before, pro_at)).ravel(), [1.0]))
    return fprs, pros


def _grid_pro_curve(
    normal_sorted: np.ndarray,
    defect_scores: np.ndarray,
    defect_weights: np.ndarray,
    num_thresholds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """PRO curve on ``num_thresholds`` thresholds evenly spaced from the max to the min score."""
    order = np.argsort(defect_scores, kind="stable")
    defect_sorted = defect_scores[order]
    weight_prefix = np.concatenate(([0.0], np.cumsum(defect_weights[order])))
    high = max(float(normal_sorted[-1]), float(defect_sorted[-1]))
    low = min(float(normal_sorted[0]), float(defect_sorted[0]))
    thresholds = np.linspace(high, low, num_thresholds)
    n_normal = normal_sorted.size
    fpr = (n_normal - np.searchsorted(normal_sorted, thresholds, side="left")) / n_normal
    pro = weight_prefix[-1] - weight_prefix[np.searchsorted(defect_sorted, thresholds, side="left")]
    fprs = np.concatenate(([0.0], fpr, [1.0]))
    pros = np.concatenate(([0.0], np.clip(pro, 0.0, 1.0), [1.0]))
    return fprs, pros


def pro_curve(
    masks: np.ndarray, maps: np.ndarray, num_thresholds: int | None = None, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The PRO curve of a set: (fprs, pros), float64, fprs non-decreasing from 0 to 1.

    ``num_thresholds=None`` gives the exact curve (every distinct score a threshold); an int >= 2
    gives a coarse curve on that many evenly spaced thresholds. Returns None when the set has no
    defect region or no normal pixel. Raises ValueError on malformed input.
    """
    masks, maps = _check_pixel_inputs(masks, maps)
    if num_thresholds is not None and (isinstance(num_thresholds, bool) or int(num_thresholds) < 2):
        raise ValueError(f"num_thresholds must be None or an int >= 2, got {num_thresholds!r}")
    defect_scores, defect_weights, n_regions = _region_pixels(masks, maps)
    if n_regions == 0:
        return None
    normal_sorted = _normal_pixels(masks, maps, valid)  # a copy, sorted in place below
    if normal_sorted.size == 0:
        return None
    normal_sorted.sort()
    if num_thresholds is None:
        return _exact_pro_curve(normal_sorted, defect_scores, defect_weights)
    return _grid_pro_curve(normal_sorted, defect_scores, defect_weights, int(num_thresholds))


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) for x in [x[0], x_max], interpolating the point at x_max.

    x must be non-decreasing with x[0] <= x_max <= x[-1] (as the official ``trapezoid`` does).
    """
    n_inside = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:n_inside], y[:n_inside]
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
    if xs[-1] < x_max and n_inside < x.size:
        x0, y0, x1, y1 = xs[-1], ys[-1], x[n_inside], y[n_inside]
        y_at_max = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_at_max) * (x_max - x0)
    return area


def aupro(
    masks: np.ndarray,
    maps: np.ndarray,
    fpr_limit: float = 0.3,
    num_thresholds: int | None = None,
    valid: np.ndarray | None = None,
) -> float | None:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD's AU-PRO).

    masks: (N, H, W) bool (or 0/1, 0/255) ground truth; maps: (N, H, W) finite float anomaly maps.
    fpr_limit: in (0, 1]. num_thresholds: None = exact curve (default, as the official code);
    an int >= 2 = coarse evenly spaced threshold grid. Returns a float in [0, 1] (a perfect map
    gives 1, a constant map fpr_limit / 2), or None when the set has no defect region or no normal
    pixel. Raises ValueError on malformed input or a bad ``fpr_limit``.
    """
    if not 0.0 < float(fpr_limit) <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    curve = pro_curve(masks, maps, num_thresholds, valid)
    if curve is None:
        return None
    fprs, pros = curve
    return _area_up_to(fprs, pros, float(fpr_limit)) / float(fpr_limit)


# --------------------------------------------------------------------------------------------
# a whole test set, overall and per defect kind
# --------------------------------------------------------------------------------------------


def _pixel_metrics(
    masks: np.ndarray | None, maps: np.ndarray | None, valid: np.ndarray | None = None
) -> tuple[float | None, float | None]:
    if masks is None or maps is None:
        return None, None
    return pixel_auroc(masks, maps, valid), aupro(masks, maps, valid=valid)


def evaluate_set(
    kinds: Sequence[str],
    labels: np.ndarray | Sequence[int],
    scores: np.ndarray | Sequence[float],
    masks: np.ndarray | None = None,
    maps: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> dict:
    """Evaluate a test set overall and per defect kind.

    kinds: (N,) kind name per image, ``"good"`` for defect-free images; labels: (N,) nonzero =
    defect, must agree with the kinds (label 0 exactly for kind "good"); scores: (N,) image scores;
    masks, maps: (N, H, W) ground truth and anomaly maps, or None (pixel metrics are then None);
    valid: (N, H, W) bool, the pixels that count (None: all).

    Returns ``{"image_auroc", "pixel_auroc", "aupro", "n_good", "n_defect", "per_kind"}`` where
    ``per_kind`` maps each defect kind (sorted by name) to ``{"image_auroc", "pixel_auroc",
    "aupro", "n"}`` computed on that kind's images together with all good images. Metrics are
    floats or None (undefined). Raises ValueError on inconsistent lengths, shapes or labels.
    """
    labels, scores = _check_image_inputs(labels, scores)
    kinds = [str(kind) for kind in kinds]
    if len(kinds) != labels.size:
        raise ValueError(f"got {len(kinds)} kinds for {labels.size} labels")
    kind_is_good = np.array([kind == GOOD_KIND for kind in kinds], dtype=bool)
    mismatched = np.flatnonzero(kind_is_good == labels)
    if mismatched.size:
        first = int(mismatched[0])
        raise ValueError(
            f"label {int(labels[first])} disagrees with kind {kinds[first]!r} (image {first}); "
            f"images of kind {GOOD_KIND!r} must have label 0 and all others label 1"
        )
    if (masks is None) != (maps is None):
        raise ValueError("give both masks and maps, or neither")
    if masks is not None:
        masks, maps = _check_pixel_inputs(masks, maps)
        if masks.shape[0] != labels.size:
            raise ValueError(f"got {masks.shape[0]} masks/maps for {labels.size} images")

    pixel_auc, pro = _pixel_metrics(masks, maps, valid)
    result: dict = {
        "image_auroc": image_auroc(labels, scores),
        "pixel_auroc": pixel_auc,
        "aupro": pro,
        "n_good": int(kind_is_good.sum()),
        "n_defect": int((~kind_is_good).sum()),
        "per_kind": {},
    }
    kind_array = np.array(kinds, dtype=object)
    for kind in sorted(set(kinds) - {GOOD_KIND}):
        of_kind = kind_array == kind
        subset = np.flatnonzero(of_kind | kind_is_good)
        sub_masks = None if masks is None else masks[subset]
        sub_maps = None if maps is None else maps[subset]
        sub_valid = None if valid is None else valid[subset]
        kind_pixel_auc, kind_pro = _pixel_metrics(sub_masks, sub_maps, sub_valid)
        result["per_kind"][kind] = {
            "image_auroc": image_auroc(labels[subset], scores[subset]),
            "pixel_auroc": kind_pixel_auc,
            "aupro": kind_pro,
            "n": int(of_kind.sum()),
        }
    return result
