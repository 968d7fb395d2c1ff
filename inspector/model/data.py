"""MVTec AD-layout data sets: read, validate and fit to an inspection size.

The folders are found by :mod:`inspector.core.dataset_layout` (``train_samples``, ``test_samples``,
re-exported here) and every file is read by :func:`inspector.core.images.read_image`: images come
as stored, ``uint8`` H x W x 1 (grayscale) or H x W x 3 (BGR), with the pixel format named
alongside ("mono8" / "bgr8"). Unreadable or truncated images and masks of the wrong size raise
:class:`DatasetError` naming the file, unless the caller asks for a counted skip (``skip_bad=True``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.dataset_layout import (GOOD, IMAGE_EXTENSIONS, DatasetError, Sample, find_mask, list_images,
                                   test_samples, train_samples)
from ..core.images import read_image

__all__ = ["GOOD", "IMAGE_EXTENSIONS", "DatasetError", "FittedSet", "Sample", "SkipLog", "find_mask", "fit_read",
           "list_images", "load_fitted", "load_prepared", "read_image", "read_mask", "read_samples",
           "test_samples", "train_samples"]

log = logging.getLogger(__name__)


@dataclass
class SkipLog:
    """Files skipped with ``skip_bad=True``: ``(path, reason)`` pairs."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str) -> None:
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append((str(path), reason))

    def __len__(self) -> int:
        return len(self.skipped)


def read_mask(path: str | Path, shape_hw: tuple[int, int]) -> np.ndarray:
    """Read a mask -> bool H x W (non-zero = defect); it must match the image size ``shape_hw``."""
    image, _ = read_image(path)
    mask = image[:, :, 0] > 0 if image.shape[2] == 1 else image.max(axis=2) > 0
    if mask.shape != tuple(shape_hw):
        raise DatasetError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
                           f"{shape_hw[1]}x{shape_hw[0]}")
    return mask


@dataclass
class FittedSet:
    """Samples fitted to an inspection size: what training, evaluation and calibration consume."""

    images: np.ndarray               # uint8 N x H x W x 3 RGB
    valid: np.ndarray | None         # bool N x H x W (letterbox fill False) or None: all valid
    masks: np.ndarray | None         # bool N x H x W ground truth (when asked), fitted like the images
    samples: list[Sample]            # the kept samples, in order
    skips: SkipLog

    def subset(self, idx: np.ndarray) -> "FittedSet":
        """The samples at ``idx`` (same skips)."""
        pick = (lambda a: None if a is None else a[idx])
        return FittedSet(self.images[idx], pick(self.valid), pick(self.masks), [self.samples[i] for i in idx],
                         self.skips)


def read_samples(samples: list[Sample], *, skip_bad: bool = False, with_masks: bool = False
                 ) -> tuple[list[np.ndarray], list[str], list[np.ndarray] | None, list[Sample], SkipLog]:
    """Read samples as stored: (images uint8 h x w x C, pixel formats, masks bool h x w or None,
    kept samples, skips). Good images and defects without a mask file get an all-False mask. Bad
    files raise DatasetError, or are skipped and counted when ``skip_bad``."""
    images, formats, masks, kept, skips = [], [], [], [], SkipLog()
    for sample in samples:
        try:
            image, fmt = read_image(sample.path)
            mask = None
            if with_masks:
                mask = (read_mask(sample.mask_path, image.shape[:2]) if sample.mask_path
                        else np.zeros(image.shape[:2], bool))
        except DatasetError as exc:
            if not skip_bad:
                raise
            skips.add(sample.path, str(exc))
            continue
        images.append(image)
        formats.append(fmt)
        masks.append(mask)
        kept.append(sample)
    if not images:
        raise DatasetError("no usable images" + (f" ({len(skips)} skipped)" if len(skips) else ""))
    return images, formats, (masks if with_masks else None), kept, skips


def load_fitted(samples: list[Sample], size_hw: tuple[int, int], fit: str = "squash", *,
                skip_bad: bool = False, with_masks: bool = False) -> FittedSet:
    """Read samples and fit them to ``size_hw`` as an engine would (:func:`core.preprocess.prepare_fitted`)."""
    return fit_read(*read_samples(samples, skip_bad=skip_bad, with_masks=with_masks), size_hw, fit)


def fit_read(images: list[np.ndarray], formats: list[str], masks: list[np.ndarray] | None, kept: list[Sample],
             skips: SkipLog, size_hw: tuple[int, int], fit: str) -> FittedSet:
    """:func:`read_samples`' output fitted to ``size_hw``."""
    from ..core.preprocess import fit_mask, prepare_fitted

    batch, valid = prepare_fitted(images, size_hw, fit, formats)
    fitted_masks = np.stack([fit_mask(m, size_hw, fit) for m in masks]) if masks is not None else None
    return FittedSet(batch, valid, fitted_masks, kept, skips)


def load_prepared(samples: list[Sample], size_hw: tuple[int, int], *, skip_bad: bool = False,
                  with_masks: bool = False) -> tuple[np.ndarray, np.ndarray | None, list[Sample], SkipLog]:
    """Read and squash samples to ``size_hw``: ``(images uint8 N x h x w x 3 RGB, masks bool N x h x w
    or None, kept samples, skips)`` (masks resized with nearest neighbour). See :func:`load_fitted`."""
    fitted = load_fitted(samples, size_hw, "squash", skip_bad=skip_bad, with_masks=with_masks)
    return fitted.images, fitted.masks, fitted.samples, fitted.skips
