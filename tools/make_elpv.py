#!/usr/bin/env python3
"""Write the ELPV solar-cell images (PyPI ``elpv-dataset``) as an MVTec AD-layout folder.

2,624 electroluminescence images of solar cells, 300 x 300 mono8, each labelled with a defect
probability (0, 1/3, 2/3, 1) by experts; no pixel masks. Good = probability 0, defect = probability
1 (the uncertain 1/3 and 2/3 are left out). One cell type at a time (``mono`` or ``poly``: they
look different). The split is deterministic for a seed::

    DIR/train/good/   --n-train good cells
    DIR/test/good/    --n-test-good good cells
    DIR/test/defect/  --n-defect defective cells (no ground_truth/: image metrics only)

    python tools/make_elpv.py --out runs/elpv_mono --type mono
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.core.dataset_layout import GOOD, TEST, TRAIN  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--type", choices=["mono", "poly"], default="mono")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-test-good", type=int, default=100)
    p.add_argument("--n-defect", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        print("needs the elpv-dataset package: pip install elpv-dataset (or '.[data]')", file=sys.stderr)
        return 2
    images, proba, types = load_dataset()
    rng = np.random.default_rng(args.seed)
    of_type = types == args.type
    good = rng.permutation(np.nonzero(of_type & (proba == 0.0))[0])
    bad = rng.permutation(np.nonzero(of_type & (proba == 1.0))[0])
    need_good = args.n_train + args.n_test_good
    if len(good) < need_good or len(bad) < args.n_defect:
        print(f"{args.type}: only {len(good)} good and {len(bad)} defective cells", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    splits = {(TRAIN, GOOD): good[:args.n_train], (TEST, GOOD): good[args.n_train:need_good],
              (TEST, "defect"): bad[:args.n_defect]}
    for (split, kind), idx in splits.items():
        folder = out / split / kind
        folder.mkdir(parents=True)
        for i in idx:
            cv2.imwrite(str(folder / f"{int(i):04d}.png"), images[i])
    print(f"wrote {out}: {args.n_train} train, {args.n_test_good} test good, {args.n_defect} defect ({args.type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
