"""Pictures of a judgement at the camera's full resolution: the anomaly map put back on the
camera image, the defect region outlined, score and threshold printed on it.

Used by the reject archive (:mod:`inspector.station`) and ``inspector score --heatmaps``.

Shapes and ranges:

* camera image: uint8 H x W x C, C = 1 (mono) or 3 (**BGR**, OpenCV's order); H x W allowed for mono;
* anomaly map: float h x w at the engine's inspection size, made from the camera image by
  ``core.preprocess.fit_image`` with ``fit`` (``squash``: the whole image resized; ``letterbox``:
  resized keeping its aspect ratio, centred; the border is not part of the image);
* outputs: uint8 BGR: the overlay is the camera image at its resolution (whole-pixel enlarged when
  narrower than ``MIN_CAPTION_WIDTH``) under a caption band.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .preprocess import FITS, letterbox_box

OUTLINE_BGR = (255, 0, 255)          # magenta: visible on the JET colours and on grey parts
TEXT_BGR = (255, 255, 255)
IMAGE_WEIGHT = 0.6                   # the overlay: 60 % camera image, 40 % map colours
MIN_CAPTION_WIDTH = 480              # narrower images are enlarged (whole pixels) in their overlay


def map_to_image(amap: np.ndarray, image_hw: tuple[int, int], fit: str) -> np.ndarray:
    """float h x w map at the inspection size -> float32 H x W on the camera image's pixels (the
    inverse of ``fit_image``: a letterbox border is cut off first). Bilinear."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; expected one of {FITS}")
    amap = np.asarray(amap, dtype=np.float32)
    height, width = int(image_hw[0]), int(image_hw[1])
    if fit == "letterbox" and amap.shape != (height, width):
        top, left, nh, nw = letterbox_box((height, width), amap.shape)
        amap = amap[top:top + nh, left:left + nw]
    if amap.shape == (height, width):
        return np.ascontiguousarray(amap)
    return cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)


def defect_contours(full_map: np.ndarray, threshold: float | None) -> list[np.ndarray]:
    """Outlines (OpenCV contours, int32 K x 1 x 2, x/y in image pixels) of the regions where
    ``full_map >= threshold``; [] without a threshold or when no pixel reaches it."""
    if threshold is None or not np.isfinite(threshold):
        return []
    mask = (np.asarray(full_map) >= threshold).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


def as_bgr(image: np.ndarray, pixel_format: str = "bgr8") -> np.ndarray:
    """uint8 camera image (mono8 H x W [x 1], bgr8 or rgb8 H x W x 3) -> uint8 H x W x 3 BGR."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"camera images are uint8, got {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if pixel_format == "rgb8":
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image)


def _caption(score: float | None, threshold: float | None, decision: str | None) -> str:
    number = lambda v: "-" if v is None else f"{v:.4g}"
    head = f"{decision}  " if decision else ""
    return f"{head}score {number(score)}  threshold {number(threshold)}"


def overlay_scale(width: int) -> int:
    """The whole-pixel enlargement of an overlay of an image ``width`` pixels wide: 1 from
    :data:`MIN_CAPTION_WIDTH` on (the camera's resolution), else enough for a legible caption."""
    return 1 if width >= MIN_CAPTION_WIDTH else math.ceil(MIN_CAPTION_WIDTH / width)


def caption_band(width: int, text: str) -> np.ndarray:
    """uint8 h x ``width`` x 3: ``text`` in white on black, scaled to the width."""
    scale = max(0.5, min(2.0, width / 640.0))
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(3, int(5 * scale))
    band = np.zeros((th + base + 2 * pad, width, 3), np.uint8)
    cv2.putText(band, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_BGR, thickness, cv2.LINE_AA)
    return band


def render_overlay(image: np.ndarray, amap: np.ndarray, fit: str, *, pixel_format: str = "bgr8",
                   threshold: float | None = None, outline_threshold: float | None = None,
                   score: float | None = None, decision: str | None = None,
                   vmax: float | None = None) -> np.ndarray:
    """The camera image with the map as JET colours (from the map's minimum to ``vmax``, default
    the larger of the map's maximum and ``threshold``) and the region at or above
    ``outline_threshold`` (default ``threshold``) outlined, under a caption band "DECISION score S
    threshold T". Returns uint8 (band + H * k) x (W * k) x 3 BGR: k = :func:`overlay_scale` (W), 1 for
    images at least :data:`MIN_CAPTION_WIDTH` wide (the camera's full resolution), a whole-pixel
    enlargement of narrower ones so that the caption stays legible."""
    bgr = as_bgr(image, pixel_format)
    full = map_to_image(amap, bgr.shape[:2], fit)
    lo = float(full.min())
    top = vmax if vmax is not None else max(float(full.max()), threshold if threshold is not None else -np.inf)
    norm = np.clip((full - lo) / max(top - lo, 1e-12), 0.0, 1.0)
    colours = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(bgr, IMAGE_WEIGHT, colours, 1.0 - IMAGE_WEIGHT, 0)
    k = overlay_scale(out.shape[1])
    if k > 1:
        out = cv2.resize(out, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    contours = [c * k + k // 2 for c in defect_contours(full, threshold if outline_threshold is None else outline_threshold)]
    cv2.drawContours(out, contours, -1, OUTLINE_BGR, max(1, int(round(max(out.shape[:2]) / 300))), cv2.LINE_AA)
    return np.vstack([caption_band(out.shape[1], _caption(score, threshold, decision)), out])


def thumbnail(bgr: np.ndarray, longest_px: int) -> np.ndarray:
    """``bgr`` shrunk (area interpolation) so that its longest side is at most ``longest_px``."""
    height, width = bgr.shape[:2]
    scale = longest_px / max(height, width)
    if scale >= 1.0:
        return bgr
    return cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
