"""The calibration's limits and the checks of its inputs (shared by every statistic in
:mod:`inspector.calibration.thresholds`). Bad input raises ValueError naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EMPIRICAL_MIN_EXPECTED_REJECTS", "METHODS", "MIN_GOOD_SCORES", "TAIL_ESTIMATORS", "XI_RANGE", "as_scores",
           "check_probability"]


EMPIRICAL_MIN_EXPECTED_REJECTS = 5.0
"""``method="auto"`` uses the empirical quantile when ``n * target_frr`` is at least this."""

MIN_GOOD_SCORES = 20
"""Fewest good parts (scores or maps) any calibration in this module accepts."""

XI_RANGE = (-1.0, 1.0)
"""GPD shapes outside this range are treated as a failed fit (xi < -1: unbounded likelihood;
xi > 1: infinite mean, which bounded anomaly scores cannot have)."""

METHODS = ("auto", "empirical", "gpd")
TAIL_ESTIMATORS = ("zhang-stephens", "mle")


def as_scores(values: Any, name: str, min_count: int = MIN_GOOD_SCORES) -> np.ndarray:
    """``values`` as a finite 1-D float64 array of >= ``min_count`` entries, else ValueError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_count:
        raise ValueError(f"{name} needs at least {min_count} values, got {arr.size}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/inf), "
            f"first at index {int(np.argmax(bad))}"
        )
    return arr


def check_probability(value: Any, name: str) -> float:
    """``value`` as a float strictly inside (0, 1), else ValueError."""
    try:
        p = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from exc
    if not (0.0 < p < 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return p
