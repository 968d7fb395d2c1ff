"""The image-level reject threshold from good scores (rule: reject when ``score >= threshold``).

Threshold model (``fit_threshold``)
    * ``"empirical"``: the (1 - target) quantile of the good scores (linear interpolation). Used
      when ``n * target_frr >= EMPIRICAL_MIN_EXPECTED_REJECTS`` (enough good parts above it).
    * ``"gpd"``: peaks over threshold. ``u`` is the empirical (1 - tail_fraction) quantile (at least
      ``min_tail`` scores strictly above it); the exceedances ``score - u`` follow a generalized
      Pareto distribution GPD(xi, sigma) (Pickands-Balkema-de Haan), so
      ``P(score >= t) = (k / n) * GPD.sf(t - u)`` for ``t > u`` and the threshold is
      ``u + GPD.isf(target / (k / n))``. The GPD is fitted with the Zhang & Stephens (2009)
      empirical-Bayes estimator by default: in simulations (gamma / lognormal / normal / Gumbel / t
      scores, n = 100..300, FRR 1e-2..1e-3, 20 % tail) its thresholds had a median true FRR within
      a factor ~1.5 of the target (~0.5x for beta scores, which have a hard upper end), whereas
      scipy's maximum-likelihood fit (``tail_estimator="mle"``, also available) is biased towards
      thin tails at these sample sizes (median true FRR 3-5x the target at n = 100, FRR = 1e-3)
      and ~100x slower. Fallbacks when an estimate is not finite or xi is outside ``XI_RANGE``:
      method of moments, then an exponential tail (xi = 0).

    With n good parts, a threshold for FRR << 1/n is an extrapolation: its *median* true FRR is
    close to the target but its spread is wide (a factor of ~10 either way at n = 100,
    FRR = 1e-3) and its *mean* true FRR is above the target. Use ``estimate_frr_cv`` to report
    what the data support.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..judge.regions import _check_int
from .score_checks import EMPIRICAL_MIN_EXPECTED_REJECTS, METHODS, TAIL_ESTIMATORS, as_scores, check_probability
from .tail_fit import TailModel, empirical_quantile, fit_tail

__all__ = ["ThresholdFit", "check_fit_options", "fit_sorted", "fit_threshold"]


@dataclass(frozen=True)
class ThresholdFit:
    """A calibrated image-score threshold. Runtime rule: reject when ``score >= threshold``.

    ``method``: "empirical" or "gpd" (how ``threshold`` was placed). ``params``: JSON-friendly;
    for "gpd" (and for "empirical" when a tail model could be fitted, for ``predicted_frr`` curves)
    it holds the tail model ``u, xi, sigma, tail_fraction, n_tail, tail_estimator``; for "empirical"
    also ``quantile_level``. ``reference_scores``: the good scores, ascending (for the empirical
    part of ``predicted_frr``); may be empty for a fit restored without them.
    """

    threshold: float
    method: str
    target_frr: float
    n: int
    params: dict[str, Any]
    reference_scores: tuple[float, ...] = field(default=(), repr=False)

    @property
    def tail(self) -> TailModel | None:
        """The tail model in ``params``, or None when there is none."""
        p = self.params
        if "xi" not in p:
            return None
        return TailModel(
            u=float(p["u"]),
            xi=float(p["xi"]),
            sigma=float(p["sigma"]),
            tail_fraction=float(p["tail_fraction"]),
            n_tail=int(p["n_tail"]),
            estimator=str(p["tail_estimator"]),
        )

    def predicted_frr(self, threshold: float) -> float:
        """Modelled FRR ``P(good score >= threshold)`` in [0, 1], non-increasing in ``threshold``.

        Above the tail start ``u``: the GPD tail model; at or below it (or with no tail model): the
        fraction of reference scores ``>= threshold``. ValueError for NaN, or when the empirical
        part is needed but ``reference_scores`` is empty.
        """
        t = float(threshold)
        if math.isnan(t):
            raise ValueError("threshold must not be NaN")
        tail = self.tail
        if tail is not None and t > tail.u:
            return tail.sf(t)
        if not self.reference_scores:
            if t == math.inf:
                return 0.0
            raise ValueError("predicted_frr below the tail start needs reference_scores")
        ref = np.asarray(self.reference_scores)
        return float((ref.size - np.searchsorted(ref, t, side="left")) / ref.size)

    def as_dict(self, include_scores: bool = True) -> dict[str, Any]:
        """JSON-friendly dict; ``ThresholdFit.from_dict`` restores it."""
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "method": self.method,
            "target_frr": self.target_frr,
            "n": self.n,
            "params": dict(self.params),
        }
        if include_scores:
            out["reference_scores"] = list(self.reference_scores)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdFit:
        return cls(
            threshold=float(data["threshold"]),
            method=str(data["method"]),
            target_frr=float(data["target_frr"]),
            n=int(data["n"]),
            params=dict(data["params"]),
            reference_scores=tuple(float(v) for v in data.get("reference_scores", ())),
        )


def check_fit_options(
    method: str, tail_fraction: float, min_tail: int, tail_estimator: str
) -> None:
    """ValueError unless ``method`` / ``tail_estimator`` are known, ``tail_fraction`` is in (0, 1)
    and ``min_tail`` is an int >= 5."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_probability(tail_fraction, "tail_fraction")
    _check_int(min_tail, "min_tail", 5)
    if tail_estimator not in TAIL_ESTIMATORS:
        raise ValueError(f"tail_estimator must be one of {TAIL_ESTIMATORS}, got {tail_estimator!r}")


def fit_sorted(
    sorted_top: np.ndarray,
    n_total: int,
    target: float,
    method: str,
    tail_fraction: float,
    min_tail: int,
    tail_estimator: str,
) -> tuple[float, str, dict[str, Any]]:
    """Core of ``fit_threshold`` on the ascending largest values of ``n_total`` scores.
    Returns (threshold, method used, params)."""
    if method == "auto":
        use_empirical = n_total * target >= EMPIRICAL_MIN_EXPECTED_REJECTS
        method = "empirical" if use_empirical else "gpd"
    try:
        tail: TailModel | None = fit_tail(
            sorted_top, n_total, tail_fraction=tail_fraction, min_tail=min_tail,
            estimator=tail_estimator,
        )
    except ValueError:
        if method == "gpd":
            raise
        tail = None  # the empirical threshold does not need it
    params: dict[str, Any] = tail.as_params() if tail is not None else {}
    if method == "empirical":
        params["quantile_level"] = 1.0 - target
        return empirical_quantile(sorted_top, n_total, target), method, params
    assert tail is not None
    if target >= tail.tail_fraction:
        raise ValueError(
            f"target_frr {target} is not below the modelled tail fraction "
            f"{tail.tail_fraction:.4g}; use method='empirical' (or 'auto') or a larger "
            "tail_fraction"
        )
    threshold = tail.isf(target)
    if not math.isfinite(threshold):
        raise ValueError(f"the tail model gave a non-finite threshold ({tail.as_params()})")
    return threshold, method, params


def fit_threshold(
    good_scores: Any,
    target_frr: float,
    *,
    method: str = "auto",
    tail_fraction: float = 0.2,
    min_tail: int = 10,
    tail_estimator: str = "zhang-stephens",
) -> ThresholdFit:
    """Threshold with false-reject rate ``target_frr`` on good parts (reject if score >= threshold).

    ``good_scores``: 1-D, finite, at least ``MIN_GOOD_SCORES`` image scores of GOOD parts (higher =
    more anomalous). ``method``: "auto" (empirical when ``n * target_frr >=
    EMPIRICAL_MIN_EXPECTED_REJECTS``, else "gpd"), "empirical" or "gpd" (see module docstring).
    ``tail_fraction``: nominal fraction of scores in the modelled tail; at least ``min_tail`` (>= 5)
    scores are used. ``tail_estimator``: "zhang-stephens" (default) or "mle".

    Raises ValueError for non-finite / non-1-D / too few scores, target_frr outside (0, 1), unknown
    options, a tail that cannot be formed (too many ties) for "gpd", or a "gpd" target_frr not below
    the tail fraction.
    """
    scores = as_scores(good_scores, "good_scores")
    target = check_probability(target_frr, "target_frr")
    check_fit_options(method, tail_fraction, min_tail, tail_estimator)
    ordered = np.sort(scores)
    threshold, used, params = fit_sorted(
        ordered, ordered.size, target, method, tail_fraction, min_tail, tail_estimator
    )
    return ThresholdFit(
        threshold=threshold,
        method=used,
        target_frr=target,
        n=int(ordered.size),
        params=params,
        reference_scores=tuple(ordered.tolist()),
    )
