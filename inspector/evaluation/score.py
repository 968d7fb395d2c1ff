"""`inspector score`: anomaly scores for individual images, with heatmap overlays.

Prints ``path score`` per image, or with ``--json`` one JSON object per line
(``{"path", "score", "width", "height"}`` + ``"heatmap"`` when written). ``--heatmaps DIR`` writes
``<stem>_heatmap.png``: the image at the model's size with the anomaly map as a JET overlay (colour
range fixed from 0 to ``--vmax``, default the calibration threshold if ``--calibration`` is given,
else the image's own maximum). Unreadable images are reported on stderr and counted; the exit
code is 1 if any image could not be scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from ..core.images import DatasetError, read_image
from ..core.preprocess import prepare


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model checkpoint (.pt): torch reference backend")
    src.add_argument("--engine", help="exported engine (.onnx with manifest)")
    p.add_argument("--backend", default=None, help="torch | onnxruntime | tensorrt (default: by file)")
    p.add_argument("--teacher-weights", help="teacher weights file (resnet teachers)")
    p.add_argument("--heatmaps", help="write heatmap overlays (PNG) into this folder")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--vmax", type=float, help="anomaly value shown as full red in heatmaps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--trusted-keys", action="append", metavar="PATH",
                   help="--engine: public keys its manifest must be signed by (default $INSPECTOR_TRUSTED_KEYS)")
    p.add_argument("images", nargs="+", help="image files")


def overlay(rgb: np.ndarray, amap: np.ndarray, vmax: float) -> np.ndarray:
    """uint8 h x w x 3 RGB + float h x w map -> uint8 BGR overlay (60 % image, 40 % JET colours)."""
    norm = np.clip(amap / max(vmax, 1e-12), 0.0, 1.0)
    colours = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 0.6, colours, 0.4, 0)


def run(args) -> int:
    from .evaluate import open_from_args

    engine = open_from_args(args)
    heat_dir = Path(args.heatmaps) if args.heatmaps else None
    if heat_dir:
        heat_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for start in range(0, len(args.images), args.batch_size):
        paths, batch, sizes = [], [], []
        for name in args.images[start:start + args.batch_size]:
            try:
                image, fmt = read_image(name)
            except DatasetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failures += 1
                continue
            paths.append(name)
            batch.append(prepare(image, engine.image_size, fmt))
            sizes.append(image.shape[:2])
        if not batch:
            continue
        prepared = np.stack(batch)
        result = engine.infer_prepared(prepared, want_maps=heat_dir is not None)
        for i, (path, score) in enumerate(zip(paths, result.scores)):
            record = {"path": path, "score": float(score), "width": sizes[i][1], "height": sizes[i][0]}
            if heat_dir:
                out = heat_dir / f"{Path(path).stem}_heatmap.png"
                vmax = args.vmax if args.vmax else float(result.maps[i].max())
                cv2.imwrite(str(out), overlay(prepared[i], result.maps[i], vmax))
                record["heatmap"] = str(out)
            print(json.dumps(record) if args.json else f"{path}\t{float(score):.6f}", flush=True)
    return 1 if failures else 0
