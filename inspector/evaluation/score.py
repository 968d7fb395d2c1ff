"""`inspector score`: anomaly scores for individual images, with heatmap overlays.

Prints ``path score`` per image, or with ``--json`` one JSON object per line
(``{"path", "score", "width", "height"}``, + ``"threshold"`` and ``"decision"`` with
``--calibration``, + ``"heatmap"`` when written). Images are judged as the daemon judges them: the
engine fits each one to its inspection size (its own fit and geometry).

``--heatmaps DIR`` writes one overlay per image (:func:`inspector.core.overlay.render_overlay`):
the image at its full resolution (narrow ones enlarged by whole pixels) with the anomaly map as
JET colours (0 .. ``--vmax``, default the larger of the map's maximum and the threshold), the
region at or above the profile's pixel threshold (else the image threshold) outlined, and the
decision, score and threshold printed. File names are unique: the image's path relative to the
folder all given images share, its folders joined by ``__`` (``test/hole/000.png`` and
``test/scratch/000.png`` -> ``hole__000_heatmap.png``, ``scratch__000_heatmap.png``). An existing
file is never overwritten unless ``--overwrite`` is given: the image is reported and counted
instead. Unreadable images are reported on stderr and counted; the exit code is 1 if any image
could not be scored or its heatmap not written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from ..core.images import DatasetError, read_image
from ..core.overlay import render_overlay


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model checkpoint (.pt): torch reference backend")
    src.add_argument("--engine", help="exported engine (.onnx with manifest)")
    p.add_argument("--backend", default=None, help="torch | onnxruntime | tensorrt (default: by file)")
    p.add_argument("--teacher-weights", help="teacher weights file (resnet teachers)")
    p.add_argument("--calibration", help="calibration profile: its threshold is printed on the heatmaps and decides")
    p.add_argument("--heatmaps", help="write full-resolution heatmap overlays (PNG) into this folder")
    p.add_argument("--overwrite", action="store_true", help="replace heatmap files that already exist")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--vmax", type=float, help="anomaly value shown as full red in heatmaps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--trusted-keys", action="append", metavar="PATH",
                   help="--engine: public keys its manifest must be signed by (default $INSPECTOR_TRUSTED_KEYS)")
    p.add_argument("images", nargs="+", help="image files")


def heatmap_names(paths: list[str]) -> dict[str, str]:
    """Image path -> its overlay's file name, unique within ``paths``: the path relative to the
    images' common folder, parts joined by ``__``, + ``_heatmap.png`` (another suffix of the same
    stem adds the suffix; a repeated path keeps its one name)."""
    resolved = {p: Path(p).resolve() for p in paths}
    common = Path(os.path.commonpath([str(r.parent) for r in resolved.values()])) if resolved else Path()
    names: dict[str, str] = {}
    taken: dict[str, Path] = {}
    for original, path in resolved.items():
        stem = "__".join(path.relative_to(common).with_suffix("").parts)
        candidates = [f"{stem}_heatmap.png", f"{stem}_{path.suffix.lstrip('.')}_heatmap.png"]
        candidates += [f"{stem}_{path.suffix.lstrip('.')}_{n}_heatmap.png" for n in range(2, len(paths) + 2)]
        name = next(c for c in candidates if taken.get(c, path) == path)
        taken[name] = path
        names[original] = name
    return names


def write_new(path: Path, image: np.ndarray, overwrite: bool) -> None:
    """PNG-encode ``image`` into ``path``; FileExistsError when it exists and not ``overwrite``
    (exclusive create: never a silent replacement)."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not PNG-encode the heatmap for {path}")
    with open(path, "wb" if overwrite else "xb") as f:
        f.write(data.tobytes())


def _threshold(args) -> tuple[float | None, float | None]:
    """(image threshold, outline threshold) from ``--calibration``; (None, None) without."""
    if not args.calibration:
        return None, None
    from ..judge.profile import load_profile

    profile = load_profile(args.calibration)
    outline = profile.pixel_threshold if profile.pixel_threshold is not None else profile.image_threshold
    return profile.image_threshold, outline


def run(args) -> int:
    from .evaluate import open_from_args

    threshold, outline = _threshold(args)
    engine = open_from_args(args)
    heat_dir = Path(args.heatmaps) if args.heatmaps else None
    names = heatmap_names(args.images) if heat_dir else {}
    if heat_dir:
        heat_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for start in range(0, len(args.images), args.batch_size):
        paths, images, formats = [], [], []
        for name in args.images[start:start + args.batch_size]:
            try:
                image, fmt = read_image(name)
            except DatasetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failures += 1
                continue
            paths.append(name)
            images.append(image)
            formats.append(fmt)
        if not images:
            continue
        result = engine.infer(images, formats, want_maps=heat_dir is not None)
        for i, (path, score) in enumerate(zip(paths, result.scores)):
            record = {"path": path, "score": float(score), "width": images[i].shape[1], "height": images[i].shape[0]}
            decision = None
            if threshold is not None:
                decision = "REJECT" if float(score) >= threshold else "OK"
                record.update(threshold=threshold, decision=decision)
            if heat_dir:
                out = heat_dir / names[path]
                picture = render_overlay(images[i], result.maps[i], engine.inspection.fit, pixel_format=formats[i],
                                         threshold=threshold, outline_threshold=outline, score=float(score),
                                         decision=decision, vmax=args.vmax)
                try:
                    write_new(out, picture, args.overwrite)
                    record["heatmap"] = str(out)
                except FileExistsError:
                    print(f"error: {out} exists (from an earlier run?); not overwritten: use --overwrite or another "
                          "folder", file=sys.stderr)
                    failures += 1
            print(json.dumps(record) if args.json else f"{path}\t{float(score):.6f}", flush=True)
    return 1 if failures else 0
