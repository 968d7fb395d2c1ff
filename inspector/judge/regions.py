"""Defect regions of an anomaly map, as the daemon's region rule counts them.

A region is an 8-connected set of pixels with ``value >= pixel_thr`` (OpenCV connected
components). :func:`largest_region_areas` gives the largest region's area per map; the daemon
compares it with the calibration profile's ``min_defect_area``, and calibration
(:mod:`inspector.calibration.thresholds`) uses the same count to set that minimum. numpy + OpenCV
only.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np


def _check_finite(value: Any, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from exc
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_region_args(pixel_thr: Any, min_area: Any | None = None) -> tuple[float, int | None]:
    thr = _check_finite(pixel_thr, "pixel_thr")
    area = None if min_area is None else _check_int(min_area, "min_area", 1)
    return thr, area


def _components(anomaly_map: np.ndarray, pixel_thr: float) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of ``anomaly_map >= pixel_thr``: (count incl. background, labels,
    stats)."""
    mask = (anomaly_map >= pixel_thr).astype(np.uint8)
    count, labels, comp_stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return count, labels, comp_stats


def largest_region_areas(maps: Any, pixel_thr: float) -> np.ndarray:
    """Area (pixels) of the largest 8-connected region with ``value >= pixel_thr`` in each map.

    ``maps``: float N x H x W, finite (any N >= 1). Returns int64 (N,), 0 where no pixel reaches
    ``pixel_thr``. ValueError for bad shapes / values.
    """
    arr = np.asarray(maps)
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"maps must be N x H x W with N >= 1, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("maps contain non-finite values (NaN/inf)")
    thr, _ = _check_region_args(pixel_thr)
    areas = np.zeros(arr.shape[0], dtype=np.int64)
    for i, one in enumerate(arr):
        count, _, comp_stats = _components(one, thr)
        if count > 1:
            areas[i] = int(comp_stats[1:, cv2.CC_STAT_AREA].max())
    return areas
