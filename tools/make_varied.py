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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min-side", type=int, default=128)
    p.add_argument("--max-aspect", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from inspector.core.images import IMAGE_EXTENSIONS  # noqa: E402

    src, out = Path(args.src), Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(args.seed)
    for img_path in sorted(src.glob("*/*/*")):
        split, kind = img_path.parts[-3], img_path.parts[-2]
        if split not in ("train", "test") or img_path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        image = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
        h, w = image.shape[:2]
        mask_path = src / "ground_truth" / kind / f"{img_path.stem}_mask.png"
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
        centre = None
        if mask is not None and (mask > 0).any():
            ys, xs = np.nonzero(mask > 0)
            k = int(rng.integers(len(ys)))
            centre = (int(ys[k]), int(xs[k]))
        y, x, ch, cw = random_crop_box(rng, h, w, args.min_side, args.max_aspect, centre)
        dst = out / split / kind / img_path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), image[y:y + ch, x:x + cw])
        if mask is not None:
            mdst = out / "ground_truth" / kind / mask_path.name
            mdst.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mdst), mask[y:y + ch, x:x + cw])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
