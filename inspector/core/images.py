"""Reading image files: any PNG/JPEG/BMP/TIFF on disk -> uint8 H x W x C and its pixel format.

Images are returned as they are stored: ``uint8`` H x W x 1 (grayscale) or H x W x 3 (BGR), with
the pixel format named alongside ("mono8" / "bgr8"). 16-bit images are reduced to 8 bits (>> 8).
Unreadable or truncated files raise :class:`DatasetError` naming the file. Used by data sets
(:mod:`inspector.model.data`), calibration, scoring and recordings.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DatasetError(ValueError):
    """A data set problem, with the offending path in the message."""


def _is_truncated(path: Path, data: bytes) -> bool:
    """True when a PNG lacks its IEND chunk or a JPEG its EOI marker (a cut-off file)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return b"IEND" not in data[-64:]
    if suffix in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in data[-64:]
    return False


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read an image file -> (uint8 H x W x C, pixel format "mono8" or "bgr8").

    Raises DatasetError (naming the file) when it is unreadable, truncated, empty or has an
    unsupported channel count. 16-bit data is reduced to 8 bits by ``>> 8``; BGRA drops alpha.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if _is_truncated(path, data):
        raise DatasetError(f"truncated image file: {path}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DatasetError(f"not a readable image: {path}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise DatasetError(f"unsupported pixel type {image.dtype} in {path}")
    if image.ndim == 2:
        return image[:, :, None], "mono8"
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] != 3:
        raise DatasetError(f"unsupported channel count {image.shape[2]} in {path}")
    return image, "bgr8"
