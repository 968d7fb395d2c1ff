"""The report of `inspector calibrate --report DIR`: score histograms and the fitted tail
(``report.png``), the summary (``summary.json``) and heatmaps of the highest-scoring good parts.

Reads a :class:`inspector.calibration.calibrate.Calibration`; writes files only (matplotlib and
OpenCV are imported when a report is written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import thresholds as th
from ..model.data import read_image

if TYPE_CHECKING:
    from .calibrate import Calibration

N_HEATMAPS = 4   # good parts shown as heatmaps: the highest-scoring ones


def write_report(out_dir: str | Path, cal: Calibration, image_size: tuple[int, int]) -> list[Path]:
    """``report.png`` (score histograms, threshold, fitted tail), ``summary.json`` and heatmaps of
    the highest-scoring good parts with their defect regions. Returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_plot_report(out_dir / "report.png", cal)]
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(cal.summary, indent=2, allow_nan=False) + "\n")
    written.append(summary_path)
    written += _write_heatmaps(out_dir, cal, image_size)
    return written


def _plot_report(path: Path, cal: Calibration) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr, target = cal.fit.threshold, cal.fit.target_frr
    groups = [("good (fit)", cal.fit_scores, "tab:blue"), ("good (held out)", cal.holdout_scores, "tab:green")]
    if cal.defect_scores is not None:
        groups.append(("defect", cal.defect_scores, "tab:red"))
    every = np.concatenate([g[1] for g in groups if len(g[1])] + [[thr]])
    bins = np.linspace(every.min(), every.max(), 40)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, values, color in groups:
        if len(values):
            left.hist(values, bins=bins, alpha=0.55, color=color, label=f"{label} (n={len(values)})")
    left.axvline(thr, color="k", linestyle="--", label=f"threshold {thr:.4g}")
    left.set(xlabel="image score", ylabel="parts", title="score histograms")
    left.legend(fontsize=8)
    # survival: empirical FRR of the fit scores vs the fitted model
    ordered = np.sort(cal.fit_scores)
    empirical = 1.0 - np.arange(ordered.size) / ordered.size
    right.step(ordered, empirical, where="pre", color="tab:blue", label="good scores: P(score >= t)")
    t_grid = np.linspace(ordered[0], max(thr, ordered[-1]) + 0.15 * (ordered[-1] - ordered[0] + 1e-9), 200)
    model = [cal.fit.predicted_frr(t) for t in t_grid]
    right.plot(t_grid, np.maximum(model, 1e-12), color="tab:orange",
               label="fitted model" + (" (GPD tail)" if cal.fit.tail is not None else ""))
    right.axhline(target, color="gray", linestyle=":", label=f"target FRR {target:g}")
    right.axvline(thr, color="k", linestyle="--", label="threshold")
    right.set_yscale("log")
    right.set_ylim(max(min(target, 1.0 / ordered.size) / 20, 1e-9), 1.2)
    right.set(xlabel="threshold t", ylabel="false-reject rate", title="FRR vs threshold (tail)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _write_heatmaps(out_dir: Path, cal: Calibration, image_size: tuple[int, int]) -> list[Path]:
    """Overlay PNGs of the ``N_HEATMAPS`` highest-scoring good (fit) parts over the prepared image:
    JET colour scale from the median good pixel (blue) to the image threshold (red); regions at or
    above the pixel threshold boxed, white when the region rule counts them as defects (area >=
    min_defect_area), grey when smaller; the score written top left."""
    import cv2
    from ..core.preprocess import prepare

    thr = cal.fit.threshold
    pixel_thr = cal.profile["thresholds"]["pixel"]
    min_area = cal.profile["thresholds"]["min_defect_area"]
    low = float(np.median(cal.fit_maps))
    span = max(thr - low, 1e-6)
    written = []
    for rank, i in enumerate(np.argsort(-cal.fit_scores)[:N_HEATMAPS], start=1):
        image, fmt = read_image(cal.fit_paths[i])
        bgr = cv2.cvtColor(prepare(image, image_size, fmt), cv2.COLOR_RGB2BGR)
        anomaly = cal.fit_maps[i]
        level = np.clip((anomaly - low) / span, 0.0, 1.0)
        colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
        overlay = cv2.addWeighted(bgr, 0.5, colour, 0.5, 0.0)
        if pixel_thr is not None:
            for region in th.defect_regions(anomaly, pixel_thr, 1):
                x, y, w, h = region["x"], region["y"], region["w"], region["h"]
                is_defect = region["area"] >= min_area
                colour_box = (255, 255, 255) if is_defect else (150, 150, 150)
                cv2.rectangle(overlay, (x, y), (x + w - 1, y + h - 1), colour_box, 1)
        scale = max(1, 256 // max(image_size))
        if scale > 1:
            overlay = cv2.resize(overlay, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.putText(overlay, f"{cal.fit_scores[i]:.4g}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
        path = out_dir / f"heatmap_{rank:02d}_{cal.fit_paths[i].stem}.png"
        cv2.imwrite(str(path), overlay)
        written.append(path)
    return written
