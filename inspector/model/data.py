"""MVTec AD-layout data sets: discover, read and validate.

Layout::

    ROOT/train/good/*.png|jpg|jpeg|bmp|tif|tiff          good parts for training
    ROOT/test/<kind>/*                                    'good' and one folder per defect kind
    ROOT/ground_truth/<kind>/<stem>_mask.png              optional pixel masks (non-zero = defect)

Images are returned as they are stored: ``uint8`` H x W x 1 (grayscale) or H x W x 3 (BGR), with
the pixel format named alongside ("mono8" / "bgr8"). 16-bit images are reduced to 8 bits (>> 8).
Unreadable or truncated images and masks of the wrong size raise :class:`DatasetError` naming the
file, unless the caller asks for a counted skip (``skip_bad=True``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.images import IMAGE_EXTENSIONS, DatasetError, read_image

log = logging.getLogger(__name__)

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a data set. ``kind`` is 'good' or the defect kind; ``mask_path`` may be None."""

    path: Path
    kind: str
    mask_path: Path | None = None

    @property
    def is_defect(self) -> bool:
        return self.kind != GOOD


@dataclass
class SkipLog:
    """Files skipped with ``skip_bad=True``: ``(path, reason)`` pairs."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str) -> None:
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append((str(path), reason))

    def __len__(self) -> int:
        return len(self.skipped)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name. Raises DatasetError if it is missing."""
    if not folder.is_dir():
        raise DatasetError(f"missing folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def train_samples(root: str | Path) -> list[Sample]:
    """Good training images under ``root/train/good``; at least one is required."""
    root = Path(root)
    files = list_images(root / "train" / GOOD)
    if not files:
        raise DatasetError(f"no images in {root / 'train' / GOOD} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return [Sample(p, GOOD) for p in files]


def test_samples(root: str | Path) -> list[Sample]:
    """Test images under ``root/test/<kind>``, with mask paths where ``ground_truth`` has them.

    A defect image whose mask is missing while its kind has a ground-truth folder is an error
    (a half-annotated set would silently distort pixel metrics).
    """
    root = Path(root)
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"missing folder: {test_dir}")
    samples: list[Sample] = []
    for kind_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        kind = kind_dir.name
        gt_dir = root / "ground_truth" / kind
        for path in list_images(kind_dir):
            mask = None
            if kind != GOOD and gt_dir.is_dir():
                mask = find_mask(gt_dir, path)
                if mask is None:
                    raise DatasetError(f"no mask for {path} in {gt_dir} (expected {path.stem}_mask.png)")
            samples.append(Sample(path, kind, mask))
    if not samples:
        raise DatasetError(f"no test images under {test_dir}")
    return samples


def find_mask(gt_dir: Path, image_path: Path) -> Path | None:
    """``<stem>_mask.<ext>`` (png preferred) in ``gt_dir``, or None."""
    for ext in (".png",) + IMAGE_EXTENSIONS:
        candidate = gt_dir / f"{image_path.stem}_mask{ext}"
        if candidate.is_file():
            return candidate
    return None


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
