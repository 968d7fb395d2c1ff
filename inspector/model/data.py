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


def load_prepared(samples: list[Sample], size_hw: tuple[int, int], *, skip_bad: bool = False,
                  with_masks: bool = False) -> tuple[np.ndarray, np.ndarray | None, list[Sample], SkipLog]:
    """Read and prepare samples for the model.

    Returns ``(images uint8 N x h x w x 3 RGB, masks bool N x h x w or None, kept samples, skips)``.
    Masks (when asked) are resized with nearest neighbour; good images and defects without a mask
    file get an all-False mask. Bad files raise DatasetError, or are skipped and counted when
    ``skip_bad``.
    """
    from ..core.preprocess import prepare, resize_mask

    images, masks, kept, skips = [], [], [], SkipLog()
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
        images.append(prepare(image, size_hw, fmt))
        if with_masks:
            masks.append(resize_mask(mask, size_hw))
        kept.append(sample)
    if not images:
        raise DatasetError("no usable images" + (f" ({len(skips)} skipped)" if len(skips) else ""))
    return (np.stack(images), np.stack(masks) if with_masks else None, kept, skips)
