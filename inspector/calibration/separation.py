"""How well scores separate good from defect parts: ROC, AUROC, the best (Youden) threshold, and how
a given threshold performs (rule: reject when ``score >= threshold``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..judge.regions import _check_finite
from .score_checks import as_scores

__all__ = ["separation_report"]


def _roc_points(good: np.ndarray, defect: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC with rule ``score >= t``: thresholds = [just above the max] + distinct scores descending;
    returns (fpr, tpr, thresholds), starting at (0, 0) and ending at (1, 1)."""
    levels = np.unique(np.concatenate([good, defect]))[::-1]
    good_sorted, defect_sorted = np.sort(good), np.sort(defect)
    at_or_above = lambda arr, t: arr.size - np.searchsorted(arr, t, side="left")  # noqa: E731
    thresholds = np.concatenate([[np.nextafter(levels[0], np.inf)], levels])
    fpr = at_or_above(good_sorted, thresholds) / good.size
    tpr = at_or_above(defect_sorted, thresholds) / defect.size
    return fpr.astype(np.float64), tpr.astype(np.float64), thresholds


def _midpoint_below(levels_desc: np.ndarray, j: int) -> float:
    """A threshold equivalent to ``>= levels_desc[j]`` halfway to the next lower level."""
    hi = float(levels_desc[j])
    if j + 1 >= levels_desc.size:
        return hi
    lo = float(levels_desc[j + 1])
    mid = lo + (hi - lo) / 2.0
    return mid if lo < mid <= hi else hi


def separation_report(good_scores: Any, defect_scores: Any, threshold: float) -> dict[str, Any]:
    """How well scores separate good from defect parts, and how ``threshold`` performs.

    Inputs: 1-D finite scores (at least one of each); rule ``score >= threshold`` rejects.
    Returns a JSON-friendly dict:
      ``auroc`` (P(defect > good) + 0.5 P(tie)), ``recall_at_threshold`` (defects rejected),
      ``escape_rate`` (1 - recall), ``frr_at_threshold`` (good parts rejected),
      ``best_threshold`` (maximises Youden's J = TPR - FPR; placed midway between the lowest
      rejected score and the next lower score; among equal J the highest threshold, i.e. fewest
      rejects), ``best_balanced_accuracy`` (= (1 + J_max) / 2 at best_threshold), ``best_recall``,
      ``best_frr``, ``n_good``, ``n_defect``, ``threshold``, and ``roc``: ``{"fpr", "tpr",
      "thresholds"}`` lists (thresholds descending, all finite; first point rejects nothing).
    ValueError for empty / non-finite inputs or a non-finite threshold.
    """
    good = as_scores(good_scores, "good_scores", min_count=1)
    defect = as_scores(defect_scores, "defect_scores", min_count=1)
    thr = _check_finite(threshold, "threshold")
    fpr, tpr, thresholds = _roc_points(good, defect)
    auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    youden = tpr - fpr
    best = int(np.argmax(youden))  # first max = highest threshold
    if best == 0:
        best_threshold = float(thresholds[0])
    else:
        best_threshold = _midpoint_below(thresholds[1:], best - 1)
    recall = float(np.mean(defect >= thr))
    return {
        "auroc": auroc,
        "recall_at_threshold": recall,
        "escape_rate": 1.0 - recall,
        "frr_at_threshold": float(np.mean(good >= thr)),
        "best_threshold": best_threshold,
        "best_balanced_accuracy": float((1.0 + youden[best]) / 2.0),
        "best_recall": float(tpr[best]),
        "best_frr": float(fpr[best]),
        "threshold": thr,
        "n_good": int(good.size),
        "n_defect": int(defect.size),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()},
    }
