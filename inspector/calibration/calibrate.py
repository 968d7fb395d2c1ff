"""`inspector calibrate`: thresholds from GOOD parts, written as a calibration profile.

    inspector calibrate (--engine FILE [--backend onnxruntime] | --model MODEL) --good DIR
        [--defects DIR] --target-frr F --out calibration/NAME.json [--camera ID] [--report DIR]
        [--holdout FRACTION] [--seed N] [--skip-bad]

Steps (statistics in :mod:`inspector.calibration.thresholds`; method and profile format in docs/calibration.md):

1. Score every good part with the engine the daemon will run (same pre-processing, through
   ``Engine.infer`` in chunks) -> float32 scores (N,) and anomaly maps N x h x w.
2. ``--holdout F``: a random fraction of the good parts (``--seed``) is set aside and used for
   nothing but measuring the false-reject rate (FRR) of the final thresholds.
3. Image threshold: ``fit_threshold`` (empirical quantile, or a GPD tail model when
   n * target < 5). FRR estimate: ``estimate_frr_cv`` (cross-validated count + Clopper-Pearson
   interval + tail-model value).
4. Region rule: pixel threshold at ``--pixel-fpr`` of the good pixels; min defect area so that the
   region rule alone rejects ~``--region-frr`` of the good parts (default target / 10; the combined
   FRR is at most the sum).
5. ``--defects``: separation report (AUROC, recall / escape rate at the threshold, best threshold).

Bad input (too few good parts, a training folder, unreadable images without ``--skip-bad``) raises
:class:`CalibrationError`; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from . import thresholds as th
from ..model.data import GOOD, DatasetError, list_images, read_image
from ..core.roi import Roi, roi_identity
from .report import write_report
from ..judge.profile import check_profile_matches, engine_block, new_profile, profile_from_dict, save_profile
from ..core.signing import SigningKey, TrustedKeys, signing_key_from, trust_paths

log = logging.getLogger(__name__)

MIN_FIT_PARTS = th.MIN_GOOD_SCORES + 1
"""Fewest good parts the thresholds may be fitted on (after the hold-out): cross-validation needs
``MIN_GOOD_SCORES`` parts in every training split, so leave-one-out needs one more."""

CV_FOLDS = 5
CV_REPEATS = 5
DEFAULT_PIXEL_FPR = 1e-4


class CalibrationError(ValueError):
    """Calibration cannot proceed (bad folders, too few usable good parts, bad options)."""


# --------------------------------------------------------------------------------------------
# finding the images
# --------------------------------------------------------------------------------------------


def _is_mvtec_root(folder: Path) -> bool:
    return (folder / "test").is_dir() or (folder / "train").is_dir()


def resolve_good_images(folder: str | Path) -> list[Path]:
    """Good images for calibration: ``folder/test/good`` of an MVTec-layout root, or the images
    directly in a plain folder. Refuses a training folder (``train/good`` or a root without
    ``test/good``): the model has seen those parts, their scores are optimistic."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"--good: no such folder: {folder}")
    resolved = folder.resolve()
    if resolved.name == GOOD and resolved.parent.name == "train":
        raise CalibrationError(f"--good {folder} is a training folder: calibrate on good parts the model "
                               "did not train on (e.g. test/good)")
    if _is_mvtec_root(folder):
        test_good = folder / "test" / GOOD
        if not test_good.is_dir():
            raise CalibrationError(f"--good {folder} is an MVTec-layout root without test/good; train/good "
                                   "cannot be used (the model trained on it)")
        folder = test_good
    return list_images(folder)


def resolve_defect_images(folder: str | Path) -> list[Path]:
    """Defect images: ``test/<kind != good>`` of an MVTec-layout root, the ``<kind != good>``
    sub-folders of a folder like ``ROOT/test``, or the images directly in a plain folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"--defects: no such folder: {folder}")
    if (folder / "test").is_dir():
        folder = folder / "test"
    direct = list_images(folder)
    if direct:
        return direct
    kinds = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != GOOD)
    return [path for kind in kinds for path in list_images(kind)]


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def score_images(engine, paths: list[Path], *, chunk: int = 16, skip_bad: bool = False,
                 want_maps: bool = True, roi=None) -> tuple[np.ndarray, np.ndarray | None, list[Path], list[tuple[str, str]]]:
    """Score image files with ``engine`` exactly as the daemon would (``engine.infer``: the
    engine's own pre-processing of the stored uint8 image, mono8 or bgr8).

    Reads and runs ``chunk`` images at a time, so memory holds at most ``chunk`` decoded images
    (plus the maps when ``want_maps``). Returns ``(scores float32 (N,), maps float32 N x h x w at
    the model's size or None, kept paths, skipped [(path, reason)])``. An unreadable / truncated
    file raises DatasetError naming it, or is skipped (and listed) with ``skip_bad``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    scores: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    kept: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(paths), chunk):
        images, formats = [], []
        for path in paths[start:start + chunk]:
            try:
                image, fmt = read_image(path)
            except DatasetError as exc:
                if not skip_bad:
                    raise
                log.warning("skipping %s: %s", path, exc)
                skipped.append((str(path), str(exc)))
                continue
            images.append(image)
            formats.append(fmt)
            kept.append(Path(path))
        if not images:
            continue
        rois = None if roi is None else [roi.mask_for(im.shape[:2]) for im in images]
        result = engine.infer(images, formats, want_maps=want_maps, rois=rois)
        scores.append(np.asarray(result.scores, dtype=np.float32))
        if want_maps:
            maps.append(np.asarray(result.maps, dtype=np.float32))
    h, w = engine.image_size
    all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    all_maps = None
    if want_maps:
        all_maps = np.concatenate(maps) if maps else np.zeros((0, h, w), np.float32)
    return all_scores, all_maps, kept, skipped


# --------------------------------------------------------------------------------------------
# the calibration itself (in-process API)
# --------------------------------------------------------------------------------------------


@dataclass
class Calibration:
    """Everything ``calibrate`` computed. ``profile``: the profile dict (JSON-ready);
    ``summary``: the report's summary dict; arrays for plots and heatmaps."""

    profile: dict
    summary: dict
    fit: th.ThresholdFit
    fit_scores: np.ndarray
    fit_maps: np.ndarray
    fit_paths: list[Path]
    holdout_scores: np.ndarray
    defect_scores: np.ndarray | None


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, holdout) of ``n`` parts; ``round(fraction * n)`` (at least 1 when
    fraction > 0) random parts are held out. Both sorted."""
    if not 0.0 <= fraction < 1.0:
        raise CalibrationError(f"--holdout must be in [0, 1), got {fraction}")
    n_hold = 0 if fraction == 0 else max(1, int(round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def cv_folds(n: int) -> int:
    """``CV_FOLDS``, or fewer-left-out folds when a training split would get < MIN_GOOD_SCORES."""
    for folds in range(CV_FOLDS, n + 1):
        if n - math.ceil(n / folds) >= th.MIN_GOOD_SCORES:
            return folds
    raise CalibrationError(f"{n} good parts are too few to cross-validate; need at least {MIN_FIT_PARTS}")


def score_statistics(scores: np.ndarray) -> dict[str, float]:
    s = np.asarray(scores, dtype=np.float64)
    p50, p90, p99 = np.percentile(s, [50, 90, 99])
    return {"min": float(s.min()), "mean": float(s.mean()), "std": float(s.std(ddof=1)) if s.size > 1 else 0.0,
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(s.max())}


def region_rejects(maps: np.ndarray, pixel_thr: float | None, min_area: int | None) -> np.ndarray:
    """bool (N,): the region rule rejects the part (all False without a region rule)."""
    if pixel_thr is None or min_area is None or len(maps) == 0:
        return np.zeros(len(maps), dtype=bool)
    return th.largest_region_areas(maps, pixel_thr) >= min_area


def holdout_result(scores: np.ndarray, maps: np.ndarray, image_thr: float, pixel_thr: float | None,
                   min_area: int | None, estimate: th.FrrEstimate) -> dict[str, Any]:
    """FRR measured on the held-out good parts (image rule, and image OR region rule), with the
    measured value's own Clopper-Pearson interval and whether the estimate's CI contains it."""
    n = int(scores.size)
    image_rejects = scores >= image_thr
    combined = image_rejects | region_rejects(maps, pixel_thr, min_area)
    rejected = int(image_rejects.sum())
    low, high = th.clopper_pearson(rejected, n, estimate.confidence)
    frr = rejected / n
    return {
        "n": n, "rejected": rejected, "frr": frr, "ci_low": low, "ci_high": high,
        "rejected_combined": int(combined.sum()), "frr_combined": float(combined.mean()),
        "within_estimate_ci": bool(estimate.ci_low <= frr <= estimate.ci_high),
    }


def separation_block(good_scores: np.ndarray, defect_scores: np.ndarray, defect_maps: np.ndarray,
                     image_thr: float, pixel_thr: float | None, min_area: int | None) -> dict[str, Any]:
    """``thresholds.separation_report`` plus the recall of the combined (image OR region) rule."""
    report = th.separation_report(good_scores, defect_scores, image_thr)
    combined = (defect_scores >= image_thr) | region_rejects(defect_maps, pixel_thr, min_area)
    report["recall_combined"] = float(combined.mean())
    report["escape_rate_combined"] = 1.0 - report["recall_combined"]
    return report


def engine_record(engine, engine_path: str | Path) -> dict[str, Any]:
    """The profile's ``engine`` block for an open engine."""
    return engine_block(engine.manifest, engine.backend, engine_file=engine_path, image_size=engine.image_size)


def _versions() -> dict[str, str]:
    import scipy
    out = {"inspector": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__}
    for name in ("onnxruntime", "torch", "tensorrt"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "?"))
    return out


@dataclass(frozen=True)
class RegionRule:
    """Region rule thresholds (both None: no region rule) and the targets they were fitted for."""

    pixel_threshold: float | None = None
    min_defect_area: int | None = None
    pixel_fpr: float | None = None
    region_frr: float | None = None


def fit_region_rule(good_maps: np.ndarray, pixel_fpr: float, region_frr: float) -> RegionRule:
    """Pixel threshold at ``pixel_fpr`` of the good pixels, then the min defect area so that the
    region rule alone rejects ~``region_frr`` of the good parts (``thresholds`` module)."""
    pixel_thr = th.pixel_threshold(good_maps, pixel_fpr)
    min_area = th.min_defect_area(good_maps, pixel_thr, region_frr)
    return RegionRule(pixel_thr, min_area, pixel_fpr, region_frr)


def _frr_record(estimate: th.FrrEstimate) -> dict[str, Any]:
    return {
        "estimated_frr": estimate.estimated_frr, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
        "confidence": estimate.confidence, "model_frr": estimate.model_frr, "method": estimate.method,
        "n_heldout": estimate.n_heldout, "n_rejected": estimate.n_rejected, "folds": estimate.folds,
        "repeats": estimate.repeats,
    }


def _score_defects(engine, defect_paths: list[Path], *, chunk: int, skip_bad: bool, roi=None
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, maps, number skipped) of the defect images; CalibrationError when none is usable."""
    if not defect_paths:
        raise CalibrationError("--defects: no defect images found")
    scores, maps, _, skipped = score_images(engine, defect_paths, chunk=chunk, skip_bad=skip_bad, roi=roi)
    if scores.size == 0:
        raise CalibrationError("--defects: no usable defect images")
    return scores, maps, len(skipped)


def calibrate(engine, good_paths: list[Path], target_frr: float, *, engine_path: str | Path,
              defect_paths: list[Path] | None = None, camera: str | None = None, holdout: float = 0.0,
              seed: int = 0, skip_bad: bool = False, chunk: int = 16, pixel_fpr: float = DEFAULT_PIXEL_FPR,
              region_frr: float | None = None, region_rule: bool = True,
              command: str | None = None, sources: dict | None = None, roi=None) -> Calibration:
    """Calibrate ``engine`` on good image files; returns the profile dict and report data.

    ``target_frr`` in (0, 1): wanted false-reject rate of the image rule. ``region_frr``: for the
    region rule (default ``target_frr / 10``). Raises CalibrationError for too few usable parts or
    bad options, DatasetError for bad images (unless ``skip_bad``), ValueError from the statistics.
    """
    target = _probability(target_frr, "--target-frr")
    region_target = _probability(target / 10 if region_frr is None else region_frr, "--region-frr")
    pixel_target = _probability(pixel_fpr, "--pixel-fpr")
    scores, maps, kept, skipped = score_images(engine, good_paths, chunk=chunk, skip_bad=skip_bad, roi=roi)
    fit_idx, hold_idx = split_holdout(len(kept), holdout, seed)
    if fit_idx.size < MIN_FIT_PARTS:
        raise CalibrationError(
            f"too few good images: {fit_idx.size} left to fit on ({len(kept)} usable, {hold_idx.size} held out, "
            f"{len(skipped)} skipped); need at least {MIN_FIT_PARTS} (better: several / target FRR)")
    fit_scores, fit_maps = scores[fit_idx], maps[fit_idx]
    fit = th.fit_threshold(fit_scores, target)
    estimate = th.estimate_frr_cv(fit_scores, target, folds=cv_folds(fit_idx.size), repeats=CV_REPEATS, seed=seed)
    rule = fit_region_rule(fit_maps, pixel_target, region_target) if region_rule else RegionRule()
    rule_args = (rule.pixel_threshold, rule.min_defect_area)
    holdout_block = None
    if hold_idx.size:
        holdout_block = holdout_result(scores[hold_idx], maps[hold_idx], fit.threshold, *rule_args, estimate)
    separation = defect_scores = None
    n_defect_skipped = 0
    if defect_paths is not None:
        defect_scores, defect_maps, n_defect_skipped = _score_defects(engine, defect_paths, chunk=chunk,
                                                                      skip_bad=skip_bad, roi=roi)
        separation = separation_block(fit_scores, defect_scores, defect_maps, fit.threshold, *rule_args)
    fit_rejects = fit_scores >= fit.threshold
    profile = new_profile(
        engine_record(engine, engine_path),
        {"image": fit.threshold, "pixel": rule.pixel_threshold, "min_defect_area": rule.min_defect_area,
         "pixel_fpr": rule.pixel_fpr, "region_frr": rule.region_frr},
        camera=camera,
        roi=roi_identity(roi),
        method=fit.method,
        params=dict(fit.params),
        target_frr=target,
        n_good=len(kept),
        n_fit=int(fit_idx.size),
        n_heldout=int(hold_idx.size),
        n_skipped=len(skipped) + n_defect_skipped,
        score_stats=score_statistics(fit_scores),
        estimated_frr=_frr_record(estimate),
        calibration_set_frr={
            "image": float(np.mean(fit_rejects)),
            "combined": float(np.mean(fit_rejects | region_rejects(fit_maps, *rule_args)))},
        holdout=holdout_block,
        separation=_without_roc(separation),
        sources=sources or {},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(),
        command=command,
    )
    summary = _summary(profile, estimate, separation, kept, scores, set(hold_idx.tolist()), skipped, defect_scores)
    return Calibration(profile=profile, summary=summary, fit=fit, fit_scores=fit_scores, fit_maps=fit_maps,
                       fit_paths=[kept[i] for i in fit_idx], holdout_scores=scores[hold_idx],
                       defect_scores=defect_scores)


def _summary(profile: dict, estimate: th.FrrEstimate, separation: dict | None, paths: list[Path],
             scores: np.ndarray, held: set[int], skipped: list, defect_scores: np.ndarray | None) -> dict:
    """The report's ``summary.json``: the headline numbers, plus every score (for re-analysis)."""
    thresholds = profile["thresholds"]
    summary = {
        "threshold": thresholds["image"], "method": profile["method"], "target_frr": profile["target_frr"],
        **{k: profile["estimated_frr"][k] for k in ("estimated_frr", "ci_low", "ci_high", "confidence",
                                                    "model_frr")},
        **{k: profile[k] for k in ("n_good", "n_fit", "n_heldout", "score_stats", "calibration_set_frr",
                                   "holdout")},
        "pixel_threshold": thresholds["pixel"], "min_defect_area": thresholds["min_defect_area"],
        "separation": separation,  # with its ROC curve
        "fold_thresholds": list(estimate.fold_thresholds),
        "skipped": skipped,
        "scores": [{"path": str(path), "score": float(score), "set": "holdout" if i in held else "fit"}
                   for i, (path, score) in enumerate(zip(paths, scores))],
    }
    if defect_scores is not None:
        summary["defect_scores"] = [float(v) for v in defect_scores]
    return summary


def _without_roc(separation: dict | None) -> dict | None:
    if separation is None:
        return None
    return {k: v for k, v in separation.items() if k != "roc"}


def _probability(value: float, name: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < p < 1.0:
        raise CalibrationError(f"{name} must be in (0, 1), got {value!r}")
    return p


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _probability_arg(text: str) -> float:
    try:
        return _probability(text, "value")
    except CalibrationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--engine", help="exported engine (.onnx with its manifest): what the daemon runs")
    src.add_argument("--model", help="model checkpoint (.pt): torch reference backend")
    p.add_argument("--backend", help="torch | onnxruntime | tensorrt (default: torch for --model, "
                                     "onnxruntime for --engine)")
    p.add_argument("--good", required=True, help="good parts the model did not train on: a folder of images "
                                                 "or an MVTec-layout root (uses test/good)")
    p.add_argument("--defects", help="defect images (folder, or MVTec-layout root: test/<kind != good>) "
                                     "for a separation report")
    p.add_argument("--target-frr", type=_probability_arg, required=True,
                   help="wanted false-reject rate of good parts, e.g. 0.001")
    p.add_argument("--out", required=True, help="profile to write, e.g. calibration/cam0.json")
    p.add_argument("--camera", help="camera id this profile is for (default: any camera)")
    p.add_argument("--roi", help="region of interest of this camera: 'x,y,w,h' in camera pixels or a mask image "
                   "(non-zero = judge); the daemon's camera must declare the same")
    p.add_argument("--report", help="folder for report.png, summary.json and heatmaps")
    p.add_argument("--from-archive", metavar="ARCHIVE", help="also use the false rejects operators marked in this "
                   "reject archive as good parts (of --camera only, when given; docs/station.md)")
    p.add_argument("--holdout", type=_fraction_arg, default=0.0,
                   help="fraction of good parts kept out of calibration to measure the FRR (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed for the hold-out split and cross-validation")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable images")
    p.add_argument("--pixel-fpr", type=_probability_arg, default=DEFAULT_PIXEL_FPR,
                   help=f"pixel threshold: rate of good pixels at or above it (default {DEFAULT_PIXEL_FPR:g})")
    p.add_argument("--region-frr", type=_probability_arg, default=None,
                   help="FRR allowed to the region rule alone (default target / 10)")
    p.add_argument("--no-region-rule", action="store_true", help="image threshold only")
    p.add_argument("--batch-size", type=_positive_int_arg, default=16, help="images per inference chunk")
    p.add_argument("--teacher-weights", help="teacher weights file (torch backend, resnet teachers)")
    p.add_argument("--threads", type=_positive_int_arg, help="onnxruntime intra-op threads")
    p.add_argument("--sign-key", help="the site's signing key (NAME.signing; default $INSPECTOR_SIGNING_KEY): signs "
                                      "the profile; --engine's manifest must be signed by it or a --trusted-keys key")
    p.add_argument("--trusted-keys", action="append", metavar="PATH",
                   help="more public keys (.pub files or folders) an engine may be signed by (default $INSPECTOR_TRUSTED_KEYS)")


def _open_engine(args, key: SigningKey):
    """The engine to calibrate; an exported engine's manifest must be signed by ``key`` or a
    trusted key (a profile signed for an unverified engine would vouch for it)."""
    from ..engine import open_engine
    if args.model:
        return open_engine(args.backend or "torch", args.model, teacher_weights=args.teacher_weights,
                           max_batch=min(args.batch_size, 8)), args.model
    paths = trust_paths(args.trusted_keys)   # none: engines signed by this very key only
    trusted = (TrustedKeys.load(paths) if paths else TrustedKeys({}, {})).with_key(key.public_pem())
    kwargs = {"max_batch": min(args.batch_size, 8), "trusted": trusted}
    if args.threads and (args.backend or "onnxruntime") == "onnxruntime":
        kwargs["threads"] = args.threads
    return open_engine(args.backend or "onnxruntime", args.engine, **kwargs), args.engine


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def format_summary(cal: Calibration, out: Path) -> str:
    """Human-readable summary for stdout."""
    p, s = cal.profile, cal.summary
    eng, thr, est = p["engine"], p["thresholds"], p["estimated_frr"]
    h, w = eng["image_size"]
    stats_ = p["score_stats"]
    lines = [
        f"calibrated {('camera ' + p['camera']) if p['camera'] else 'any camera'} on engine "
        f"{eng['sha256'][:12]}... ({eng['backend']} {eng['precision']}, {w}x{h} WxH)",
        f"good parts: {p['n_fit']} fitted, {p['n_heldout']} held out, {p['n_skipped']} skipped",
        f"good scores: min {stats_['min']:.4g}  median {stats_['p50']:.4g}  p99 {stats_['p99']:.4g}  "
        f"max {stats_['max']:.4g}",
        f"image threshold: {thr['image']:.6g}  (reject when score >= threshold; {p['method']}, "
        f"target FRR {_pct(p['target_frr'])})",
        f"estimated FRR: {_pct(est['estimated_frr'])}  [{round(100 * est['confidence'])}% CI "
        f"{_pct(est['ci_low'])} .. {_pct(est['ci_high'])}]  tail model {_pct(est['model_frr'])}  "
        f"({est['folds']}-fold x{est['repeats']} cross-validation)",
    ]
    if thr["pixel"] is not None:
        lines.append(f"region rule: reject a region of >= {thr['min_defect_area']} px with map >= "
                     f"{thr['pixel']:.6g}  (good parts rejected here: image rule "
                     f"{_pct(p['calibration_set_frr']['image'])}, image or region "
                     f"{_pct(p['calibration_set_frr']['combined'])})")
    if p["n_fit"] * p["target_frr"] < 1:
        lines.append(f"note: {p['n_fit']} parts x target {p['target_frr']:g} < 1 expected reject: the threshold "
                     "extrapolates the tail beyond the data; trust the CI, and calibrate on more parts")
    hold = p["holdout"]
    if hold:
        verdict = "inside" if hold["within_estimate_ci"] else "OUTSIDE"
        lines.append(f"held out: {hold['rejected']}/{hold['n']} rejected = {_pct(hold['frr'])} "
                     f"({verdict} the estimate's CI; image or region {_pct(hold['frr_combined'])})")
    sep = s["separation"]
    if sep:
        lines.append(f"defects: {sep['n_defect']}  AUROC {sep['auroc']:.4f}  recall at threshold "
                     f"{_pct(sep['recall_at_threshold'])} (escape {_pct(sep['escape_rate'])}; with region rule "
                     f"{_pct(sep['recall_combined'])})  best threshold {sep['best_threshold']:.6g}")
    lines.append(f"wrote {out}")
    return "\n".join(lines)


def run(args) -> int:
    good_paths = resolve_good_images(args.good)
    if args.from_archive:
        from ..station.feedback import false_reject_images

        feedback = false_reject_images(args.from_archive, args.camera)
        print(feedback.describe(args.from_archive))
        good_paths = good_paths + feedback.paths
    if len(good_paths) < MIN_FIT_PARTS:
        raise CalibrationError(f"too few good images in {args.good}: {len(good_paths)}; need at least "
                               f"{MIN_FIT_PARTS} (plus any hold-out)")
    fit_idx, hold_idx = split_holdout(len(good_paths), args.holdout, args.seed)
    if fit_idx.size < MIN_FIT_PARTS:
        raise CalibrationError(f"too few good images: --holdout {args.holdout} of {len(good_paths)} leaves "
                               f"{fit_idx.size} to fit on; need at least {MIN_FIT_PARTS}")
    defect_paths = resolve_defect_images(args.defects) if args.defects else None
    if defect_paths is not None and not defect_paths:
        raise CalibrationError(f"--defects {args.defects}: no defect images found")
    roi = Roi.parse(args.roi) if args.roi else None
    key = signing_key_from(args.sign_key, "inspector calibrate")
    engine, engine_path = _open_engine(args, key)
    command = "inspector " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None
    sources = {"good": str(Path(args.good).resolve()),
               "defects": str(Path(args.defects).resolve()) if args.defects else None,
               "from_archive": str(Path(args.from_archive).resolve()) if args.from_archive else None}
    cal = calibrate(engine, good_paths, args.target_frr, engine_path=engine_path, defect_paths=defect_paths,
                    camera=args.camera, holdout=args.holdout, seed=args.seed, skip_bad=args.skip_bad,
                    chunk=args.batch_size, pixel_fpr=args.pixel_fpr, region_frr=args.region_frr,
                    region_rule=not args.no_region_rule, command=command, sources=sources, roi=roi)
    out = save_profile(args.out, cal.profile, signing_key=key)
    check_profile_matches(profile_from_dict(cal.profile, out), {**engine.manifest, "backend": engine.backend},
                          backend=engine.backend, camera=args.camera, roi=roi_identity(roi))
    print(format_summary(cal, out))
    if args.report:
        written = write_report(args.report, cal, tuple(engine.image_size))
        print(f"report: {', '.join(str(p) for p in written[:2])} + {len(written) - 2} heatmap(s)")
    engine.close()
    return 0
