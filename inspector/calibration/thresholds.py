"""Reject thresholds from GOOD parts only: the statistics behind ``inspector calibrate``.

Plain numpy / scipy / OpenCV; no torch, no I/O. Everything here is deterministic for a given input
(and ``seed`` where randomness is used).

Decision convention (used everywhere in this module and by the verdict step):

* image level: a part is **rejected when ``score >= threshold``**;
* pixel level: a pixel is anomalous when ``value >= pixel_thr``;
* region level: a connected region (8-connectivity) of anomalous pixels is a defect when
  ``area >= min_area`` (pixels); a part is rejected by the region rule when it has such a region.

The false-reject rate (FRR) of a threshold is the probability that a good part is rejected, i.e. the
survival function of the good-score distribution, ``P(score >= threshold)``.

Modules (all names are importable from here):

* :mod:`~inspector.calibration.score_checks`: limits (``MIN_GOOD_SCORES``, ``XI_RANGE``, ...) and
  input checks;
* :mod:`~inspector.calibration.tail_fit`: the GPD model of the upper tail (``TailModel``,
  ``fit_gpd``, ``fit_tail``);
* :mod:`~inspector.calibration.image_threshold`: ``ThresholdFit``, ``fit_threshold`` (the
  threshold model, and what a threshold for FRR << 1/n means);
* :mod:`~inspector.calibration.frr`: ``FrrEstimate``, ``clopper_pearson``, ``estimate_frr_cv``;
* :mod:`~inspector.calibration.separation`: ``separation_report``;
* :mod:`~inspector.calibration.region_thresholds`: ``pixel_threshold``, ``min_defect_area``,
  ``defect_regions``.
"""

from __future__ import annotations

from ..judge.regions import largest_region_areas
from .frr import FrrEstimate, clopper_pearson, estimate_frr_cv
from .image_threshold import ThresholdFit, fit_threshold
from .region_thresholds import defect_regions, min_defect_area, pixel_threshold
from .score_checks import EMPIRICAL_MIN_EXPECTED_REJECTS, METHODS, MIN_GOOD_SCORES, TAIL_ESTIMATORS, XI_RANGE
from .separation import separation_report
from .tail_fit import TailModel, fit_gpd, fit_tail

__all__ = ["EMPIRICAL_MIN_EXPECTED_REJECTS", "METHODS", "MIN_GOOD_SCORES", "TAIL_ESTIMATORS", "XI_RANGE",
           "FrrEstimate", "TailModel", "ThresholdFit", "clopper_pearson", "defect_regions", "estimate_frr_cv",
           "fit_gpd", "fit_tail", "fit_threshold", "largest_region_areas", "min_defect_area", "pixel_threshold",
           "separation_report"]
