#!/usr/bin/env python3
"""Turn an MVTec AD-layout folder into one whose images have varying sizes and aspect ratios.

Each image (and its mask) is cropped to a random rectangle: sides between ``--min-side`` and the
image's own, aspect ratio between 1/``--max-aspect`` and ``--max-aspect``; a defect image's crop
always contains the centre of its defect. This mimics sets of cut-out tiles of different sizes
(e.g. magnetic tiles), where squashing every image to one square distorts the texture differently
per image.

    python tools/make_varied.py --src runs/synth_tex --out runs/synth_tex_varied --seed 3
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.core import dataset_layout as layout  # noqa: E402
from inspector.core.images import read_image  # noqa: E402


def random_crop_box(rng, h, w, min_side, max_aspect, must_contain=None):
    for _ in range(100):
        ch = int(rng.integers(min(min_side, h), h + 1))
        cw = int(rng.integers(min(min_side, w), w + 1))
        if not 1 / max_aspect <= cw / ch <= max_aspect:
            continue
        if must_contain is None:
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        else:
            cy, cx = must_contain
            y_lo, y_hi = max(0, cy - ch + 1), min(h - ch, cy)
            x_lo, x_hi = max(0, cx - cw + 1), min(w - cw, cx)
            if y_lo > y_hi or x_lo > x_hi:
                continue
            y, x = int(rng.integers(y_lo, y_hi + 1)), int(rng.integers(x_lo, x_hi + 1))
        return y, x, ch, cw
    return 0, 0, h, w


def _read_mask(mask_path: Path) -> np.ndarray | None:
    """The mask at ``mask_path`` as uint8 H x W (channels reduced by max), or None if there is none."""
    if not mask_path.is_file():
        return None
    mask, _ = read_image(mask_path)
    return mask.max(axis=2)


def crop_one(rng, img_path: Path, dst_dir: Path, src: Path, out: Path, kind: str, args) -> None:
    """Crop one image (and its mask, if any) to a random box that holds a defect pixel; written
    to ``dst_dir`` and ``out``'s ground_truth/<kind>."""
    image, _ = read_image(img_path)
    h, w = image.shape[:2]
    mask_name = layout.mask_name(img_path)
    mask = _read_mask(layout.mask_dir(src, kind) / mask_name)
    centre = None
    if mask is not None and (mask > 0).any():
        ys, xs = np.nonzero(mask > 0)
        k = int(rng.integers(len(ys)))
        centre = (int(ys[k]), int(xs[k]))
    y, x, ch, cw = random_crop_box(rng, h, w, args.min_side, args.max_aspect, centre)
    dst_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst_dir / img_path.name), image[y:y + ch, x:x + cw])
    if mask is not None:
        mdst = layout.mask_dir(out, kind) / mask_name
        mdst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mdst), mask[y:y + ch, x:x + cw])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min-side", type=int, default=128)
    p.add_argument("--max-aspect", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(args.seed)
    for split in (layout.TEST, layout.TRAIN):  # name order, as the crops' random draws always came
        if not layout.has_split(src, split):
            continue
        for kind, paths in layout.files_by_kind(src, split).items():
            for img_path in paths:
                crop_one(rng, img_path, out / split / kind, src, out, kind, args)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
