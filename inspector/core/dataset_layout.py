"""The MVTec AD folder layout, found on disk: the one place that knows its folder and file names.

Layout::

    ROOT/train/good/*.png|jpg|jpeg|bmp|tif|tiff          good parts for training
    ROOT/test/<kind>/*                                    'good' and one folder per defect kind
    ROOT/ground_truth/<kind>/<stem>_mask.png              optional pixel masks (non-zero = defect)

Only paths are handled here (standard library only: no image decoding, no numpy), so the line
side (sources, recordings), training, evaluation, calibration and the tools all discover a data
set the same way. Image files are recognised by suffix (:data:`IMAGE_EXTENSIONS`, case-insensitive)
and listed in name order. Problems raise :class:`DatasetError` naming the folder or file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
TRAIN = "train"
TEST = "test"
GROUND_TRUTH = "ground_truth"
MASK_SUFFIX = "_mask"


class DatasetError(ValueError):
    """A data set problem, with the offending path in the message."""


@dataclass(frozen=True)
class Sample:
    """One image of a data set. ``kind`` is 'good' or the defect kind; ``mask_path`` may be None."""

    path: Path
    kind: str
    mask_path: Path | None = None

    @property
    def is_defect(self) -> bool:
        return self.kind != GOOD


def is_image_file(path: Path) -> bool:
    """True for a regular file whose suffix is one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name. Raises DatasetError if it is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"missing folder: {folder}")
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def has_split(root: str | Path, split: str = TEST) -> bool:
    """True when ``root/<split>`` is a folder (``root`` looks like an MVTec AD-layout category)."""
    return (Path(root) / split).is_dir()


def is_layout_root(folder: str | Path) -> bool:
    """True when ``folder`` has a ``test/`` or a ``train/`` folder."""
    return has_split(folder, TEST) or has_split(folder, TRAIN)


def is_training_folder(folder: str | Path) -> bool:
    """True when ``folder`` (resolved) is some root's ``train/good``."""
    resolved = Path(folder).resolve()
    return resolved.name == GOOD and resolved.parent.name == TRAIN


def train_good_dir(root: str | Path) -> Path:
    """``root/train/good`` (not checked)."""
    return Path(root) / TRAIN / GOOD


def test_good_dir(root: str | Path) -> Path:
    """``root/test/good`` (not checked)."""
    return Path(root) / TEST / GOOD


def mask_dir(root: str | Path, kind: str) -> Path:
    """``root/ground_truth/<kind>`` (not checked)."""
    return Path(root) / GROUND_TRUTH / kind


def mask_name(image_path: Path, ext: str = ".png") -> str:
    """The file name of ``image_path``'s mask: ``<stem>_mask<ext>``."""
    return f"{image_path.stem}{MASK_SUFFIX}{ext}"


def find_mask(gt_dir: Path, image_path: Path) -> Path | None:
    """``<stem>_mask.<ext>`` (png preferred) in ``gt_dir``, or None."""
    for ext in (".png",) + IMAGE_EXTENSIONS:
        candidate = gt_dir / mask_name(image_path, ext)
        if candidate.is_file():
            return candidate
    return None


def files_by_kind(root: str | Path, split: str = TEST) -> dict[str, list[Path]]:
    """``{kind: image paths}`` of ``root/<split>/<kind>/``, kinds and files sorted by name; kinds
    without images are left out (the result may be empty). Raises DatasetError when
    ``root/<split>`` is not a folder."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DatasetError(f"missing folder: {split_dir}")
    found = {kind_dir.name: list_images(kind_dir) for kind_dir in sorted(split_dir.iterdir()) if kind_dir.is_dir()}
    return {kind: files for kind, files in found.items() if files}


def train_samples(root: str | Path) -> list[Sample]:
    """Good training images under ``root/train/good``; at least one is required."""
    folder = train_good_dir(root)
    files = list_images(folder)
    if not files:
        raise DatasetError(f"no images in {folder} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return [Sample(p, GOOD) for p in files]


def test_samples(root: str | Path) -> list[Sample]:
    """Test images under ``root/test/<kind>``, with mask paths where ``ground_truth`` has them.

    A defect image whose mask is missing while its kind has a ground-truth folder is an error
    (a half-annotated set would silently distort pixel metrics). Raises DatasetError when
    ``root/test`` is missing or holds no images.
    """
    samples: list[Sample] = []
    for kind, paths in files_by_kind(root, TEST).items():
        gt_dir = mask_dir(root, kind)
        annotated = kind != GOOD and gt_dir.is_dir()
        for path in paths:
            mask = find_mask(gt_dir, path) if annotated else None
            if annotated and mask is None:
                raise DatasetError(f"no mask for {path} in {gt_dir} (expected {mask_name(path)})")
            samples.append(Sample(path, kind, mask))
    if not samples:
        raise DatasetError(f"no test images under {Path(root) / TEST}")
    return samples
