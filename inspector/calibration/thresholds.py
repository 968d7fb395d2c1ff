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
import warnings
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import ndimage, stats

from ..judge.regions import _check_finite, _check_int, _check_region_args, _components, largest_region_areas

EMPIRICAL_MIN_EXPECTED_REJECTS = 5.0
"""``method="auto"`` uses the empirical quantile when ``n * target_frr`` is at least this."""

MIN_GOOD_SCORES = 20
"""Fewest good parts (scores or maps) any calibration in this module accepts."""

XI_RANGE = (-1.0, 1.0)
"""GPD shapes outside this range are treated as a failed fit (xi < -1: unbounded likelihood;
xi > 1: infinite mean, which bounded anomaly scores cannot have)."""

METHODS = ("auto", "empirical", "gpd")
TAIL_ESTIMATORS = ("zhang-stephens", "mle")


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _as_scores(values: Any, name: str, min_count: int = MIN_GOOD_SCORES) -> np.ndarray:
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


def _check_probability(value: Any, name: str) -> float:
    """``value`` as a float strictly inside (0, 1), else ValueError."""
    try:
        p = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from exc
    if not (0.0 < p < 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return p


# --------------------------------------------------------------------------------------------
# GPD tail fitting
# --------------------------------------------------------------------------------------------


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


def _empirical_quantile(sorted_top: np.ndarray, n_total: int, target: float) -> float:
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


# --------------------------------------------------------------------------------------------
# image-level threshold
# --------------------------------------------------------------------------------------------


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


def _check_fit_options(
    method: str, tail_fraction: float, min_tail: int, tail_estimator: str
) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_probability(tail_fraction, "tail_fraction")
    _check_int(min_tail, "min_tail", 5)
    if tail_estimator not in TAIL_ESTIMATORS:
        raise ValueError(f"tail_estimator must be one of {TAIL_ESTIMATORS}, got {tail_estimator!r}")


def _fit_sorted(
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
        return _empirical_quantile(sorted_top, n_total, target), method, params
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
    scores = _as_scores(good_scores, "good_scores")
    target = _check_probability(target_frr, "target_frr")
    _check_fit_options(method, tail_fraction, min_tail, tail_estimator)
    ordered = np.sort(scores)
    threshold, used, params = _fit_sorted(
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


# --------------------------------------------------------------------------------------------
# cross-validated FRR estimate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrrEstimate:
    """Cross-validated false-reject rate of the ``fit_threshold`` procedure on these good parts.

    ``estimated_frr = n_rejected / n_heldout`` (pooled over folds and repeats; every part is held
    out ``repeats`` times, so ``n_heldout = n * repeats``). ``[ci_low, ci_high]``: two-sided
    ``confidence`` Clopper-Pearson interval on the effective count (see ``estimate_frr_cv``).
    ``model_frr``: bootstrap / tail-model estimate of the procedure's expected FRR, informative when
    no held-out part was rejected (see ``estimate_frr_cv``). ``fold_thresholds``: the threshold of
    every fold fit (their spread shows how stable the threshold is).
    """

    estimated_frr: float
    ci_low: float
    ci_high: float
    confidence: float
    n_heldout: int
    n_rejected: int
    method: str
    model_frr: float
    n_parts: int
    folds: int
    repeats: int
    fold_thresholds: tuple[float, ...] = field(default=(), repr=False)


def clopper_pearson(
    successes: float, trials: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Two-sided Clopper-Pearson (exact binomial) interval for a proportion, as (low, high).

    ``successes`` may be fractional (an effective count); 0 <= successes <= trials, trials > 0.
    """
    if not (trials > 0 and 0 <= successes <= trials):
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}, {trials}")
    alpha = 1.0 - _check_probability(confidence, "confidence")
    low, high = 0.0, 1.0
    if successes > 0:
        low = float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    if successes < trials:
        high = float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def estimate_frr_cv(
    good_scores: Any,
    target_frr: float,
    *,
    folds: int = 5,
    repeats: int = 5,
    confidence: float = 0.95,
    seed: int = 0,
    model_resamples: int = 50,
    **fit_kwargs: Any,
) -> FrrEstimate:
    """Estimate the FRR that ``fit_threshold(good_scores, target_frr, **fit_kwargs)`` achieves.

    Procedure: ``repeats`` times, shuffle the parts (``numpy.random.default_rng(seed)``) into
    ``folds`` folds; for each fold fit a threshold on the other folds and count the held-out good
    parts with ``score >= threshold``. ``estimated_frr`` pools the counts: rejects / (n * repeats).

    Confidence interval - Clopper-Pearson on an effective binomial count: x = rejects / repeats
    (the mean count per repeat, each repeat holding out each of the n parts once) out of n trials.
    Why: repeats reuse the same n parts, so their counts are strongly correlated; treating the
    n * repeats held-out decisions as independent would shrink the interval by ~sqrt(repeats) with
    no new information. The data hold at most n independent decisions, and averaging the repeats
    only removes fold-assignment noise, so (mean count, n) is the honest sample; Clopper-Pearson
    (beta quantiles, valid for a fractional count) keeps its coverage for counts near 0, where the
    Wald interval collapses. Threshold-estimation noise is inside the count, because each held-out
    part is judged by a threshold fitted without it. The interval is for the FRR of a threshold
    fitted on (folds-1)/folds of the parts - slightly pessimistic for the final fit on all n.

    ``model_frr`` - the informative point estimate when few or no held-out parts are rejected: the
    expected FRR of the procedure under the tail model of ALL n parts. ``model_resamples`` bootstrap
    resamples of the parts are each given to ``fit_threshold(**fit_kwargs)``; the reference model of
    all n parts (GPD tail above u, empirical survival function below; empirical only when no tail
    can be fitted) prices each resample's threshold; ``model_frr`` is the mean.
    It thus includes the threshold's sampling spread, which is why it exceeds ``target_frr`` at
    small n (in simulations, n = 100..300, FRR 1e-3..1e-2, gamma / lognormal / normal scores, its
    average was within ~50 % of the average true FRR; the reference model's value at its own
    threshold would be the target by construction). It is a model extrapolation: report it next to
    the interval, never instead of it. Resamples whose fit fails (ties) are skipped; if all fail,
    the fold thresholds are priced instead.

    ``fit_kwargs`` go to ``fit_threshold`` (method, tail_fraction, min_tail, tail_estimator).
    Raises ValueError for bad inputs (as ``fit_threshold``), folds < 2, repeats < 1,
    model_resamples < 1, or folds so many that a training split has fewer than
    ``MIN_GOOD_SCORES`` scores.
    """
    scores = _as_scores(good_scores, "good_scores")
    target = _check_probability(target_frr, "target_frr")
    conf = _check_probability(confidence, "confidence")
    folds = _check_int(folds, "folds", 2)
    repeats = _check_int(repeats, "repeats", 1)
    model_resamples = _check_int(model_resamples, "model_resamples", 1)
    n = scores.size
    smallest_train = n - math.ceil(n / folds)
    if smallest_train < MIN_GOOD_SCORES:
        raise ValueError(
            f"{folds} folds of {n} scores leave {smallest_train} to fit on; "
            f"need at least {MIN_GOOD_SCORES}: use fewer folds or more good parts"
        )
    rng = np.random.default_rng(seed)
    rejected = 0
    fold_thresholds: list[float] = []
    methods_used: set[str] = set()
    for _ in range(repeats):
        for held in np.array_split(rng.permutation(n), folds):
            train = np.delete(scores, held)
            fit = fit_threshold(train, target, **fit_kwargs)
            fold_thresholds.append(fit.threshold)
            methods_used.add(fit.method)
            rejected += int(np.count_nonzero(scores[held] >= fit.threshold))
    n_heldout = n * repeats
    ci_low, ci_high = clopper_pearson(rejected / repeats, n, conf)
    reference = _reference_model(scores, target, fit_kwargs)
    reference_name = "GPD-tail" if reference.tail is not None else "empirical"
    priced = _bootstrap_thresholds(scores, target, model_resamples, rng, fit_kwargs)
    priced_name = "bootstrap"
    if not priced:
        priced, priced_name = fold_thresholds, "fold"
    model_frr = float(np.mean([reference.predicted_frr(t) for t in priced]))
    fit_names = "+".join(sorted(methods_used))
    return FrrEstimate(
        estimated_frr=rejected / n_heldout,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=conf,
        n_heldout=n_heldout,
        n_rejected=rejected,
        method=(
            f"{folds}-fold x{repeats} cross-validation of {fit_names} thresholds; "
            f"Clopper-Pearson on mean count per repeat / {n} parts; "
            f"model_frr: {reference_name} model of all {n} parts at {len(priced)} "
            f"{priced_name} thresholds"
        ),
        model_frr=model_frr,
        n_parts=n,
        folds=folds,
        repeats=repeats,
        fold_thresholds=tuple(fold_thresholds),
    )


def _bootstrap_thresholds(
    scores: np.ndarray,
    target: float,
    resamples: int,
    rng: np.random.Generator,
    fit_kwargs: dict[str, Any],
) -> list[float]:
    """Thresholds ``fit_threshold`` gives on bootstrap resamples (failed fits skipped)."""
    out: list[float] = []
    for _ in range(resamples):
        sample = scores[rng.integers(0, scores.size, scores.size)]
        try:
            out.append(fit_threshold(sample, target, **fit_kwargs).threshold)
        except ValueError:
            continue
    return out


def _reference_model(scores: np.ndarray, target: float, fit_kwargs: dict[str, Any]) -> ThresholdFit:
    """Best model of all scores for ``model_frr``: GPD tail above u and empirical survival function
    below it (a fit's ``predicted_frr``); purely empirical when no tail can be fitted. Only its
    ``predicted_frr`` is used, so the method that places its own threshold does not matter."""
    tail_kwargs = {k: v for k, v in fit_kwargs.items() if k != "method"}
    return fit_threshold(scores, target, method="empirical", **tail_kwargs)


# --------------------------------------------------------------------------------------------
# separation of good and defect scores
# --------------------------------------------------------------------------------------------


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
    good = _as_scores(good_scores, "good_scores", min_count=1)
    defect = _as_scores(defect_scores, "defect_scores", min_count=1)
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


# --------------------------------------------------------------------------------------------
# pixel and region level
# --------------------------------------------------------------------------------------------


def _as_maps(maps: Any, name: str = "good_maps") -> np.ndarray:
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
    maps = _as_maps(good_pixel_maps, "good_pixel_maps")
    target = _check_probability(target_fpr, "target_fpr")
    _check_fit_options(method, tail_fraction, min_tail, tail_estimator)
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
    threshold, _, _ = _fit_sorted(
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
    maps = _as_maps(good_maps, "good_maps")
    thr, _ = _check_region_args(pixel_thr)
    target = _check_probability(target_frr, "target_frr")
    _check_fit_options("auto", tail_fraction, min_tail, tail_estimator)
    areas = largest_region_areas(maps, thr)
    n = areas.size
    if n * target >= EMPIRICAL_MIN_EXPECTED_REJECTS:
        allowed = math.floor(n * target)
        return max(1, int(np.sort(areas)[::-1][allowed]) + 1)
    try:
        ordered = np.sort(areas.astype(np.float64))
        tail_thr, _, _ = _fit_sorted(
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
