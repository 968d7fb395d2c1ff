"""Pre-processing, defined once: any camera image -> the model's input.

Input: ``numpy.uint8`` image, H x W x C (C = 1 mono, C = 3 BGR or RGB as ``pixel_format`` says) or
H x W (mono), values 0..255, any size.
Output: ``numpy.uint8`` array ``size_h x size_w x 3`` in RGB order, C-contiguous. The model (and
every engine built from it) casts to float, scales by 1/255 and applies the teacher's mean/std in
its own graph, so no float scaling ever happens outside the model and nothing is guessed.

Resizing: cv2.INTER_AREA when shrinking (anti-aliased), cv2.INTER_LINEAR when enlarging.

Fitting to the inspection size (``fit``, a model property recorded in checkpoints and manifests):

* ``"squash"``: resize to ``H x W`` (the aspect ratio changes when it differs);
* ``"letterbox"``: keep the aspect ratio, scale to fit inside ``H x W``, centre, and fill the rest by
  mirroring the image; the filled area is *not valid* (never scored, never in pixel metrics).

A region of interest is a bool mask at the camera image's own size (True = judge); it is fitted
with the image (nearest neighbour) and combined with the letterbox's valid area.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

PIXEL_FORMATS = ("mono8", "bgr8", "rgb8")
FITS = ("squash", "letterbox")


def parse_image_size(text: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse an image size into ``(height, width)``.

    Accepts ``256`` (square), ``"256"`` or ``"WIDTHxHEIGHT"`` such as ``"320x768"`` (width first,
    as screen resolutions are written: 320 wide, 768 tall), or a ``(height, width)`` tuple/list.
    Both sides must be multiples of 32 (the teacher's stride-16 features and the one-class embedding
    at stride 32 need them) and within 32..4096.
    """
    if isinstance(text, (tuple, list)):
        h, w = (int(v) for v in text)
    elif isinstance(text, int):
        h = w = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
        if not m:
            raise ValueError(f"image size {text!r}: expected N or WIDTHxHEIGHT, e.g. 256 or 320x768")
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
    for side in (h, w):
        if side % 32 or not 32 <= side <= 4096:
            raise ValueError(f"image size {w}x{h} (WxH): each side must be a multiple of 32 in 32..4096")
    return h, w


def format_image_size(size_hw: tuple[int, int]) -> str:
    """``(h, w)`` -> ``"WxH"``."""
    return f"{size_hw[1]}x{size_hw[0]}"


def to_rgb(image: np.ndarray, pixel_format: str = "bgr8") -> np.ndarray:
    """uint8 H x W [x C] image -> uint8 H x W x 3 RGB. Raises ValueError on a dtype/shape mismatch."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"unknown pixel format {pixel_format!r}; expected one of {PIXEL_FORMATS}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected H x W x C with C in (1, 3), got shape {image.shape}")
    channels = image.shape[2]
    if pixel_format == "mono8":
        if channels != 1:
            raise ValueError(f"mono8 image must have 1 channel, got {channels}")
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels != 3:
        raise ValueError(f"{pixel_format} image must have 3 channels, got {channels}")
    if pixel_format == "bgr8":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def resize(image: np.ndarray, size_hw: tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """Resize a uint8 image to ``(h, w)``; INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    if interpolation is None:
        shrinking = image.shape[0] * image.shape[1] > h * w
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(image, (w, h), interpolation=interpolation)
    return out if out.ndim == image.ndim else out[:, :, None]


def prepare(image: np.ndarray, size_hw: tuple[int, int], pixel_format: str = "bgr8") -> np.ndarray:
    """One camera image -> model input: uint8 ``h x w x 3`` RGB (see module docstring)."""
    return resize(to_rgb(image, pixel_format), size_hw)


def prepare_batch(images: list[np.ndarray], size_hw: tuple[int, int],
                  pixel_formats: list[str] | str = "bgr8") -> np.ndarray:
    """Images (any sizes) -> uint8 ``N x h x w x 3`` RGB batch."""
    if isinstance(pixel_formats, str):
        pixel_formats = [pixel_formats] * len(images)
    out = np.empty((len(images), size_hw[0], size_hw[1], 3), dtype=np.uint8)
    for i, (image, fmt) in enumerate(zip(images, pixel_formats)):
        out[i] = prepare(image, size_hw, fmt)
    return out


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """bool H x W mask -> bool ``h x w`` (nearest neighbour, so masks stay binary)."""
    h, w = size_hw
    m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return m.astype(bool)


# ---------------------------------------------------------------------- fitting to the inspection size
def letterbox_box(shape_hw: tuple[int, int], size_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a ``shape_hw`` image lands in ``size_hw`` when letterboxed: (top, left, height, width)."""
    (h, w), (H, W) = shape_hw, size_hw
    scale = min(H / h, W / w)
    nh, nw = max(1, min(H, round(h * scale))), max(1, min(W, round(w * scale)))
    return (H - nh) // 2, (W - nw) // 2, nh, nw


def fit_image(image: np.ndarray, size_hw: tuple[int, int], fit: str) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 h x w x C -> (uint8 H x W x C, valid bool H x W or None when every pixel is valid)."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; expected one of {FITS}")
    H, W = size_hw
    if fit == "squash" or image.shape[:2] == (H, W):
        return resize(image, (H, W)), None
    top, left, nh, nw = letterbox_box(image.shape[:2], size_hw)
    inner = resize(image, (nh, nw))
    out = np.pad(inner, ((top, H - nh - top), (left, W - nw - left)) + ((0, 0),) * (inner.ndim - 2),
                 mode="symmetric")
    valid = np.zeros((H, W), bool)
    valid[top:top + nh, left:left + nw] = True
    return np.ascontiguousarray(out), valid


def fit_mask(mask: np.ndarray, size_hw: tuple[int, int], fit: str) -> np.ndarray:
    """bool h x w ground-truth or ROI mask -> bool H x W with the same transform as the image
    (nearest neighbour; the letterbox fill is False)."""
    if fit == "squash" or mask.shape == tuple(size_hw):
        return resize_mask(mask, size_hw)
    top, left, nh, nw = letterbox_box(mask.shape, size_hw)
    out = np.zeros(size_hw, bool)
    out[top:top + nh, left:left + nw] = resize_mask(mask, (nh, nw))
    return out


def prepare_fitted(images: list[np.ndarray], size_hw: tuple[int, int], fit: str,
                   pixel_formats: list[str] | str = "bgr8", rois: list[np.ndarray | None] | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Camera images (any sizes) -> (uint8 N x H x W x 3 RGB, bool N x H x W valid region or None).

    The valid region is None when every pixel of every image is judged (squash, no ROI)."""
    if isinstance(pixel_formats, str):
        pixel_formats = [pixel_formats] * len(images)
    if rois is not None and len(rois) != len(images):
        raise ValueError(f"{len(rois)} regions of interest for {len(images)} images")
    out = np.empty((len(images), size_hw[0], size_hw[1], 3), dtype=np.uint8)
    valids: list[np.ndarray | None] = []
    for i, (image, fmt) in enumerate(zip(images, pixel_formats)):
        out[i], valid = fit_image(to_rgb(image, fmt), size_hw, fit)
        roi = rois[i] if rois is not None else None
        if roi is not None:
            if roi.shape != image.shape[:2]:
                raise ValueError(f"region of interest {roi.shape[1]}x{roi.shape[0]} (WxH) does not match "
                                 f"the image {image.shape[1]}x{image.shape[0]}")
            fitted = fit_mask(roi, size_hw, fit)
            valid = fitted if valid is None else valid & fitted
        valids.append(valid)
    if all(v is None for v in valids):
        return out, None
    return out, np.stack([np.ones(size_hw, bool) if v is None else v for v in valids])
