"""Regions of interest: where on a camera's image the part is judged.

A camera's ROI keeps background, fixtures and part edges that are not to be inspected out of the
image score (they are still seen by the network, so the features around them stay real). Two forms,
written as one string in configs and on the command line:

* a rectangle ``"x,y,w,h"`` in camera pixels (x right, y down, from the top-left corner);
* a mask image file (any format :func:`inspector.core.images.read_image` reads): non-zero = judge.
  A mask must have the camera's resolution.

:meth:`Roi.mask_for` gives the bool H x W mask for an image of a given size (a rectangle is clipped
to it; a mask of another size is refused). The engine fits it to the inspection size together
with the image (:func:`inspector.core.preprocess.prepare_fitted`). :meth:`Roi.identity` is what
calibration profiles record, so the daemon refuses a profile calibrated with another ROI.

Failure behaviour: a malformed spec, an empty rectangle, an unreadable or empty mask raise
:class:`RoiError`; a mask/image size mismatch raises it at :meth:`mask_for`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import DatasetError, read_image

_RECT = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*")


class RoiError(ValueError):
    """A region of interest that cannot be used."""


@dataclass(frozen=True)
class Roi:
    spec: str
    rect: tuple[int, int, int, int] | None = None   # x, y, w, h
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)  # bool H x W
    mask_sha256: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "Roi":
        """``"x,y,w,h"`` or a mask image path."""
        text = str(spec).strip()
        m = _RECT.fullmatch(text)
        if m:
            x, y, w, h = (int(v) for v in m.groups())
            if w < 1 or h < 1:
                raise RoiError(f"ROI rectangle {text!r}: width and height must be >= 1")
            return cls(text, rect=(x, y, w, h))
        path = Path(text)
        if not path.is_file():
            raise RoiError(f"ROI {text!r} is neither a rectangle 'x,y,w,h' nor an existing mask file")
        try:
            image, _ = read_image(path)
        except DatasetError as exc:
            raise RoiError(f"ROI mask {path}: {exc}") from exc
        mask = image.max(axis=2) > 0
        if not mask.any():
            raise RoiError(f"ROI mask {path} selects no pixel")
        sha = hashlib.sha256(np.packbits(mask).tobytes() + str(mask.shape).encode()).hexdigest()
        return cls(text, mask=mask, mask_sha256=sha)

    def mask_for(self, shape_hw: tuple[int, int]) -> np.ndarray:
        """bool H x W mask for an image of ``shape_hw`` (True = judged)."""
        h, w = int(shape_hw[0]), int(shape_hw[1])
        if self.mask is not None:
            if self.mask.shape != (h, w):
                raise RoiError(f"ROI mask {self.spec} is {self.mask.shape[1]}x{self.mask.shape[0]} (WxH), "
                               f"the image {w}x{h}")
            return self.mask
        x, y, rw, rh = self.rect
        out = np.zeros((h, w), bool)
        out[min(y, h):min(y + rh, h), min(x, w):min(x + rw, w)] = True
        if not out.any():
            raise RoiError(f"ROI rectangle {self.spec} lies outside the {w}x{h} image")
        return out

    def identity(self) -> dict:
        """What a calibration profile records about the ROI."""
        if self.rect is not None:
            return {"rect": list(self.rect)}
        return {"mask_sha256": self.mask_sha256, "shape": list(self.mask.shape)}


def roi_identity(roi: Roi | None) -> dict | None:
    return None if roi is None else roi.identity()
