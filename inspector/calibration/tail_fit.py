"""Peaks over threshold: the generalized Pareto (GPD) model of the upper tail of the good scores.

``fit_tail`` places the tail start ``u`` (the empirical (1 - tail_fraction) quantile, at least
``min_tail`` scores strictly above it) and fits GPD(xi, sigma) to the exceedances with
``fit_gpd``: Zhang & Stephens (2009) by default, scipy's maximum likelihood on request; method of
moments, then an exponential tail (xi = 0), when an estimate is not finite or xi is outside
``XI_RANGE`` (see :mod:`inspector.calibration.image_threshold` for why). Deterministic."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .score_checks import TAIL_ESTIMATORS, XI_RANGE

__all__ = ["TailModel", "empirical_quantile", "fit_gpd", "fit_tail"]


@dataclass(frozen=True)
class TailModel:
    """Peaks-over-threshold model of the upper tail: for t > u,
    ``P(score >= t) = tail_fraction * GPD(xi, sigma).sf(t - u)``.

    ``tail_fraction = n_tail / n`` is the fraction of scores strictly above ``u``;
    ``estimator`` names the fit that produced (xi, sigma) after any fallback.
    """

    u: float
    xi: float
    sigma: float
    tail_fraction: float
    n_tail: int
    estimator: str

    def sf(self, t: float) -> float:
        """Modelled ``P(score >= t)`` for ``t >= u`` (equals ``tail_fraction`` at ``t = u``)."""
        return float(self.tail_fraction * stats.genpareto.sf(t - self.u, self.xi, scale=self.sigma))

    def isf(self, frr: float) -> float:
        """The t > u with ``sf(t) = frr``; needs ``0 < frr < tail_fraction``."""
        excess = stats.genpareto.isf(frr / self.tail_fraction, self.xi, scale=self.sigma)
        return float(self.u + excess)

    def as_params(self) -> dict[str, Any]:
        return {
            "u": self.u,
            "xi": self.xi,
            "sigma": self.sigma,
            "tail_fraction": self.tail_fraction,
            "n_tail": self.n_tail,
            "tail_estimator": self.estimator,
        }


def _gpd_zhang_stephens(y: np.ndarray) -> tuple[float, float]:
    """Zhang & Stephens (2009, Technometrics 51:316) posterior-mean GPD fit of exceedances y > 0.

    Parameterisation: b = -xi / sigma; for each b on a quadrature grid the profile likelihood gives
    xi(b) = mean(log1p(-b y)); the posterior mean of b (flat-ish prior on the grid) gives the
    estimate. Grid values satisfy b < 1 / max(y), so every log1p argument is positive.
    Returns (xi, sigma); may be non-finite in degenerate cases (caller falls back).
    """
    x = np.sort(y)
    n = x.size
    m = 30 + int(math.sqrt(n))
    grid = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    b = grid / (3.0 * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    xi_b = np.mean(np.log1p(-b[:, None] * x[None, :]), axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lik = n * (np.log(-b / xi_b) - xi_b - 1.0)
        weights = 1.0 / np.sum(np.exp(log_lik[None, :] - log_lik[:, None]), axis=1)
    weights = np.where(np.isfinite(weights), weights, 0.0)
    if weights.sum() <= 0:
        return math.nan, math.nan
    b_hat = float(np.sum(b * weights) / weights.sum())
    if abs(b_hat) < 1e-12 / x[-1]:  # exponential limit
        return 0.0, float(x.mean())
    xi = float(np.mean(np.log1p(-b_hat * x)))
    return xi, -xi / b_hat


def _gpd_mle(y: np.ndarray) -> tuple[float, float]:
    """scipy maximum-likelihood GPD fit with location fixed at 0. Returns (xi, sigma)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xi, _, sigma = stats.genpareto.fit(y, floc=0)
    return float(xi), float(sigma)


def _gpd_moments(y: np.ndarray) -> tuple[float, float]:
    """Method-of-moments GPD fit (valid for xi < 1/2). Returns (xi, sigma), NaN when var == 0."""
    mean, var = float(y.mean()), float(y.var(ddof=1))
    if var <= 0:
        return math.nan, math.nan
    ratio = mean * mean / var
    return 0.5 * (1.0 - ratio), 0.5 * mean * (ratio + 1.0)


def _plausible(xi: float, sigma: float) -> bool:
    finite = math.isfinite(xi) and math.isfinite(sigma)
    return finite and sigma > 0 and XI_RANGE[0] <= xi <= XI_RANGE[1]


def fit_gpd(exceedances: Any, estimator: str = "zhang-stephens") -> tuple[float, float, str]:
    """Fit GPD(xi, sigma) (location 0) to exceedances > 0, with fallbacks.

    Tries ``estimator`` ("zhang-stephens" or "mle"), then the method of moments, then an
    exponential tail (xi = 0, sigma = mean); the first result with finite sigma > 0 and xi inside
    ``XI_RANGE`` wins. Exceedances are rescaled by their mean for numerical stability.
    Returns (xi, sigma, name of the estimator used). ValueError for an empty/non-positive input.
    """
    if estimator not in TAIL_ESTIMATORS:
        raise ValueError(f"tail_estimator must be one of {TAIL_ESTIMATORS}, got {estimator!r}")
    y = np.asarray(exceedances, dtype=np.float64)
    if y.ndim != 1 or y.size < 2 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("exceedances must be a 1-D array of at least 2 finite values > 0")
    scale = float(y.mean())
    z = y / scale
    primary = _gpd_zhang_stephens if estimator == "zhang-stephens" else _gpd_mle
    for name, fitter in ((estimator, primary), ("moments", _gpd_moments)):
        try:
            xi, sigma = fitter(z)
        except (ValueError, FloatingPointError, RuntimeError, ZeroDivisionError):
            continue
        if _plausible(xi, sigma):
            return xi, sigma * scale, name
    return 0.0, scale, "exponential"


def _tail_start(sorted_top: np.ndarray, n_total: int, wanted: int) -> tuple[float, int]:
    """Tail start ``u`` and the count of values strictly above it.

    ``sorted_top``: ascending, the largest ``len(sorted_top)`` of the ``n_total`` values.
    ``u`` is the largest data value with at least ``wanted`` values strictly above it (so ties at
    the nominal quantile move ``u`` down). ValueError when no such value is in ``sorted_top``.
    """
    m = sorted_top.size
    idx = m - wanted - 1
    while idx >= 0:
        u = sorted_top[idx]
        above = m - int(np.searchsorted(sorted_top, u, side="right"))
        if above >= wanted:
            return float(u), above
        idx = int(np.searchsorted(sorted_top, u, side="left")) - 1
    raise ValueError(
        f"cannot model the upper tail: fewer than {wanted} of {n_total} values lie strictly above "
        "any tail start (too many tied scores); use more or less-quantised scores"
    )


def fit_tail(
    sorted_top: np.ndarray,
    n_total: int,
    *,
    tail_fraction: float,
    min_tail: int,
    estimator: str = "zhang-stephens",
) -> TailModel:
    """Peaks-over-threshold fit on the largest values of a sample.

    ``sorted_top``: ascending float64, the largest values (or all) of ``n_total`` values. The tail
    uses ``max(min_tail, ceil(tail_fraction * n_total))`` exceedances (fewer is an error, more
    when ties force ``u`` down). ValueError when the tail cannot be formed.
    """
    wanted = max(min_tail, math.ceil(tail_fraction * n_total))
    if wanted >= n_total:
        raise ValueError(
            f"the tail needs {wanted} values above its start but there are only {n_total} values"
        )
    u, n_tail = _tail_start(sorted_top, n_total, wanted)
    exceedances = sorted_top[sorted_top.size - n_tail :] - u
    xi, sigma, used = fit_gpd(exceedances, estimator)
    return TailModel(
        u=u, xi=xi, sigma=sigma, tail_fraction=n_tail / n_total, n_tail=n_tail, estimator=used
    )


def empirical_quantile(sorted_top: np.ndarray, n_total: int, target: float) -> float:
    """(1 - target) quantile (linear interpolation, numpy's default) of ``n_total`` values of which
    ``sorted_top`` (ascending) are the largest; nudged just above a tied value when the ``>=`` rule
    would reject a tied group (more than target + 1/n of the values)."""
    m = sorted_top.size
    h = (n_total - 1) * (1.0 - target)
    lo = int(math.floor(h))
    i_lo = lo - (n_total - m)
    if i_lo < 0:
        raise ValueError("internal: not enough top values for the empirical quantile")
    x_lo = sorted_top[i_lo]
    x_hi = sorted_top[min(i_lo + 1, m - 1)]
    q = float(x_lo + (h - lo) * (x_hi - x_lo))
    rejected = m - int(np.searchsorted(sorted_top, q, side="left"))
    if rejected / n_total > target + 1.0 / n_total:
        q = float(np.nextafter(q, np.inf))
    return q
