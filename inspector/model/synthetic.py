"""Synthetic defect data sets in the MVTec AD folder layout, with exact ground-truth masks.

Layout written by :func:`generate_dataset` (names ``000.png``, ``001.png``, ...)::

    DIR/train/good/*.png                  defect-free training images
    DIR/test/good/*.png                   defect-free test images
    DIR/test/<kind>/*.png                 test images with one defect of <kind>
    DIR/ground_truth/<kind>/<name>_mask.png   uint8 mask, 0 or 255, same H x W as the image

Images are uint8, H x W x 3 **BGR** (``color=True``) or H x W mono8 (``color=False``).

Products (normal appearance):

- ``texture``: a woven material (basket weave) with a fresh random grain per image, a small random
  shift/rotation of the weave, slow shading and brightness/colour jitter.
- ``part``: a round machined washer (concentric chamfers, a groove, turning marks, four bolt holes)
  on a conveyor belt, with small pose (centre, radius, rotation) and lighting jitter.

Defect kinds: ``scratch`` (thin bright or dark curved line), ``hole`` (dark irregular blob with a
burr rim), ``stain`` (soft colour/brightness blob), ``missing`` (a piece cut out, showing the
background). Each defect's mask is exact: it holds every pixel the defect changed, and no other.

Modules: :mod:`~inspector.model.synthetic_products` (normal products), :mod:`~inspector.model.synthetic_defects`
(defects and their masks) and this one (data sets in the MVTec AD layout of :mod:`inspector.core.dataset_layout`,
``inspector synth``); the public names of the other two are importable from here.

Everything is deterministic given the seed: image ``i`` of a split uses its own generator seeded
with ``(seed, split, i)``, so changing one count does not change the other splits' images.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..core import dataset_layout as layout
from .synthetic_defects import DEFECT_KINDS, add_defect
from .synthetic_products import (MAX_SIZE, MIN_SIZE, PRODUCTS, Rendered, check_size, make_normal, parse_size,
                                 render_normal)

__all__ = ["DEFECT_KINDS", "GOOD_KIND", "MAX_SIZE", "MIN_SIZE", "PRODUCTS", "Rendered", "add_arguments", "add_defect",
           "generate_dataset", "make_normal", "parse_size", "render_normal", "run"]

GOOD_KIND = layout.GOOD
_SPLIT_STREAMS = {"train": 0, "test_good": 1}  # defect kinds use 2 + their DEFECT_KINDS index


# --------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------


def _image_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse (FileExistsError) to mix with an earlier set unless overwrite."""
    ours = [out_dir / name for name in (layout.TRAIN, layout.TEST, layout.GROUND_TRUTH)]
    existing = [path for path in ours if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a data set ({existing[0].name}/); use overwrite"
        )
    for path in existing:
        shutil.rmtree(path)
    out_dir.mkdir(parents=True, exist_ok=True)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def generate_dataset(
    out_dir: str | Path,
    *,
    product: str = "texture",
    n_train: int = 60,
    n_test_good: int = 20,
    n_test_defect_per_kind: int = 10,
    kinds: tuple[str, ...] | list[str] = DEFECT_KINDS,
    size: tuple[int, int] = (128, 128),
    color: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic MVTec AD-layout data set to ``out_dir`` (see the module docstring).

    size is (H, W). Deterministic for a given seed and arguments. Refuses (FileExistsError) to
    write into a folder that already holds train/, test/ or ground_truth/ unless ``overwrite``,
    which deletes those three folders first. Raises ValueError for bad arguments.
    Returns a JSON-serialisable summary: out_dir, product, size [H, W], color, seed, n_train,
    n_test_good, n_test_defect {kind: count}, kinds.
    """
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}; choose from {', '.join(PRODUCTS)}")
    kinds = list(kinds)
    unknown = [kind for kind in kinds if kind not in DEFECT_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct names from {', '.join(DEFECT_KINDS)}: {kinds}")
    _check_counts(
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect_per_kind=n_test_defect_per_kind,
        seed=seed,
    )
    size = check_size(size)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    good_splits = (
        ("train", layout.train_good_dir(out), n_train),
        ("test_good", layout.test_good_dir(out), n_test_good),
    )
    for stream_name, folder, count in good_splits:
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            rng = _image_rng(seed, _SPLIT_STREAMS[stream_name], index)
            _write_png(folder / f"{index:03d}.png", make_normal(rng, product, size, color))

    for kind in kinds:
        image_folder = out / layout.TEST / kind
        mask_folder = layout.mask_dir(out, kind)
        image_folder.mkdir(parents=True, exist_ok=True)
        mask_folder.mkdir(parents=True, exist_ok=True)
        for index in range(n_test_defect_per_kind):
            rng = _image_rng(seed, 2 + DEFECT_KINDS.index(kind), index)
            normal = render_normal(rng, product, size, color)
            image, mask = add_defect(
                rng, normal.image, kind, background=normal.background, foreground=normal.foreground
            )
            image_path = image_folder / f"{index:03d}.png"
            _write_png(image_path, image)
            _write_png(mask_folder / layout.mask_name(image_path), mask.astype(np.uint8) * 255)

    return {
        "out_dir": str(out),
        "product": product,
        "size": list(size),
        "color": bool(color),
        "seed": int(seed),
        "n_train": int(n_train),
        "n_test_good": int(n_test_good),
        "n_test_defect": {kind: int(n_test_defect_per_kind) for kind in kinds},
        "kinds": kinds,
    }


# --------------------------------------------------------------------------------------------
# command line: `inspector synth`
# --------------------------------------------------------------------------------------------


def _size_argument(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kinds_argument(text: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in DEFECT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"kinds must be a comma list of {', '.join(DEFECT_KINDS)}")
    return kinds


def _count_argument(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `inspector synth` (also used by tools/make_synthetic.py)."""
    parser.add_argument("--out", required=True, type=Path, help="output folder (MVTec AD layout)")
    parser.add_argument("--product", choices=PRODUCTS, default="texture", help="normal appearance")
    parser.add_argument("--n-train", type=_count_argument, default=60, help="good training images")
    parser.add_argument("--n-test-good", type=_count_argument, default=20, help="good test images")
    parser.add_argument(
        "--n-defect", type=_count_argument, default=10, help="test images per defect kind"
    )
    parser.add_argument(
        "--kinds",
        type=_kinds_argument,
        default=DEFECT_KINDS,
        help=f"comma list, default {','.join(DEFECT_KINDS)}",
    )
    parser.add_argument(
        "--size", type=_size_argument, default=(128, 128), help="128 (square) or WIDTHxHEIGHT, e.g. 256x128"
    )
    parser.add_argument("--gray", action="store_true", help="mono8 images instead of BGR")
    parser.add_argument("--seed", type=_count_argument, default=0, help="random seed (>= 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing data set in --out"
    )


def run(args: argparse.Namespace) -> int:
    """Write the data set and print its summary as JSON on stdout; 0 on success."""
    summary = generate_dataset(
        args.out,
        product=args.product,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect_per_kind=args.n_defect,
        kinds=args.kinds,
        size=args.size,
        color=not args.gray,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))
    return 0
