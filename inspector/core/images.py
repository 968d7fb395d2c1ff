"""Reading images: the one way an image file (or a decoded array) becomes mono8 / bgr8 pixels.

Every reader of image files (data sets :mod:`inspector.model.data`, frame sources
:mod:`inspector.line.sources`, calibration, scoring, recordings, regions of interest) goes through
:func:`read_image`, so the rules are the same everywhere:

* the file is read whole and refused when it is cut off: a PNG without its ``IEND`` chunk or a
  JPEG without its ``EOI`` marker in the last 64 bytes (decoders often return a partial image
  for those, silently);
* it is decoded with ``cv2.IMREAD_UNCHANGED``: no colour or bit-depth conversion, no EXIF rotation;
* the pixels then follow :func:`to_mono8_or_bgr8`: ``uint8`` kept, ``uint16`` reduced to 8 bits
  by ``value >> 8``; H x W and H x W x 1 -> H x W x 1 ``"mono8"``; H x W x 2 (gray + alpha) ->
  ``"mono8"`` (alpha dropped); H x W x 3 (BGR) -> ``"bgr8"``; H x W x 4 (BGRA) -> ``"bgr8"``
  (alpha dropped). Values 0..255, result C-contiguous.

Anything else (a missing file, not an image, float pixels, 5+ channels) raises
:class:`ImageReadError`, a :class:`DatasetError`, whose message names the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .dataset_layout import IMAGE_EXTENSIONS, DatasetError

__all__ = ["IMAGE_EXTENSIONS", "DatasetError", "ImageReadError", "is_truncated", "read_image", "to_mono8_or_bgr8"]

PIXEL_FORMATS = ("mono8", "bgr8")  # what reading an image produces (core.preprocess also takes rgb8)
_TAIL_BYTES = 64  # where a complete file's end marker must be


class ImageReadError(DatasetError):
    """An image that cannot be read, is cut off, or has no defined conversion to mono8/bgr8."""


def is_truncated(path: Path, data: bytes) -> bool:
    """True when ``data`` (the bytes of ``path``) is a PNG lacking its IEND chunk or a JPEG its EOI
    marker near the end (a cut-off file). Other formats are not checked (False)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return b"IEND" not in data[-_TAIL_BYTES:]
    if suffix in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in data[-_TAIL_BYTES:]
    return False


def to_mono8_or_bgr8(image: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Decoded pixels (as ``cv2.IMREAD_UNCHANGED`` gives them) -> (uint8 H x W x C, pixel format).

    C = 1 for "mono8", 3 (BGR order) for "bgr8"; see the module docstring for the rules. The
    result is C-contiguous and owns or views ``image``'s data. Raises :class:`ImageReadError` for
    None, an empty image, a sample type other than uint8/uint16 or another channel count.
    """
    if image is None or image.size == 0:
        raise ImageReadError("empty image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"unsupported sample type {image.dtype} (only 8- and 16-bit unsigned)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ImageReadError(f"unsupported image shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):
        return np.ascontiguousarray(image[:, :, :1]), "mono8"
    if channels in (3, 4):
        return np.ascontiguousarray(image[:, :, :3]), "bgr8"
    raise ImageReadError(f"unsupported channel count {channels} (shape {image.shape})")


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read an image file -> (uint8 H x W x C, pixel format "mono8" (C = 1) or "bgr8" (C = 3, BGR)).

    Raises :class:`ImageReadError` (a DatasetError) naming the file when it cannot be read, is
    truncated, does not decode, or has pixels without a mono8/bgr8 conversion.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc}") from exc
    if is_truncated(path, data):
        raise ImageReadError(f"truncated image file: {path}")
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(f"not a readable image: {path} ({exc})") from exc
    if decoded is None or decoded.size == 0:
        raise ImageReadError(f"not a readable image: {path}")
    try:
        return to_mono8_or_bgr8(decoded)
    except ImageReadError as exc:
        raise ImageReadError(f"{exc} in {path}") from None
