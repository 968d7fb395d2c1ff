"""One archive entry, made from what the line said about one frame: its verdict, its pixels (from
the daemon's tap) and its anomaly map (the tap's ``map`` topic). Pure functions, no I/O.

Files of an entry (each optional but the verdict):

    original.png   the camera's pixels, lossless: mono8 as 1-channel PNG, bgr8 / rgb8 as colour
    map.png        the anomaly map as the tap carried it: uint8 at the inspection size; the float
                   map is ``lo + byte / 255 * (hi - lo)`` (``map`` in the entry's made_by record)
    overlay.jpg    full resolution: the map in colour on the camera image, the defect region
                   outlined, decision, score and threshold printed above it (core.overlay.render_overlay;
                   images narrower than 480 px enlarged by whole pixels: ``overlay.scale``)
    thumb.jpg      the overlay (or, without a map, the original) shrunk to ``thumbnail_px``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspector import __version__
from inspector.core.overlay import as_bgr, overlay_scale, render_overlay, thumbnail
from inspector.line import wire

PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]   # level 1: ~3x faster than the default 3, ~10 % larger
JPEG_QUALITY = 90


@dataclass
class Pending:
    """A verdict with whatever arrived for it: the frame (header + uint8 H x W x C pixels) and the map."""

    verdict: wire.Verdict
    header: wire.FrameHeader | None = None
    image: np.ndarray | None = None
    amap: wire.AnomalyMap | None = None


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image, PNG_FAST)
    if not ok:
        raise ValueError("OpenCV could not PNG-encode the image")
    return data.tobytes()


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not JPEG-encode the image")
    return data.tobytes()


def verdict_fields(verdict: wire.Verdict) -> dict[str, Any]:
    """The index columns of a verdict (``archive.FIELDS``)."""
    return {"camera": verdict.camera_id, "seq": verdict.seq, "part_id": verdict.part_id,
            "capture_ns": verdict.capture_ns, "decided_ns": verdict.decided_ns, "decision": verdict.decision,
            "reason": verdict.reason, "score": verdict.score, "threshold": verdict.threshold,
            "defect_area_px": verdict.defect_area_px, "label": verdict.label}


def original_image(pending: Pending) -> np.ndarray | None:
    """The camera's pixels as they will be stored: uint8 H x W (mono) or H x W x 3 BGR."""
    if pending.image is None:
        return None
    if pending.header.pixel_format == "mono8":
        return np.ascontiguousarray(pending.image.reshape(pending.image.shape[:2]))
    return as_bgr(pending.image, pending.header.pixel_format)


def entry_files(pending: Pending, thumbnail_px: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files, made_by) of one entry. ``made_by`` records the producer (inspector version), the
    frame's format and source and the map's quantisation, so that a reader needs nothing else."""
    v = pending.verdict
    files: dict[str, bytes] = {}
    made_by: dict[str, Any] = {"inspector": __version__}
    original = original_image(pending)
    if original is not None:
        files["original.png"] = _png(original)
        h = pending.header
        made_by["frame"] = {"pixel_format": h.pixel_format, "shape": list(h.shape), "encoding_on_wire": h.encoding,
                            "source": h.source, "stored_as": "mono8" if original.ndim == 2 else "bgr8"}
    shown = None if original is None else as_bgr(original, "mono8" if original.ndim == 2 else "bgr8")
    m = pending.amap
    if m is not None:
        files["map.png"] = _png(np.ascontiguousarray(m.values))
        made_by["map"] = {"lo": m.lo, "hi": m.hi, "fit": m.fit, "height": int(m.values.shape[0]),
                          "width": int(m.values.shape[1]), "pixel_threshold": m.pixel_threshold,
                          "decode": "lo + byte / 255 * (hi - lo)"}
        if shown is not None:
            shown = render_overlay(shown, m.floats(), m.fit, threshold=v.threshold,
                                   outline_threshold=m.pixel_threshold if m.pixel_threshold is not None else v.threshold,
                                   score=v.score, decision=v.decision)
            files["overlay.jpg"] = _jpeg(shown)
            k = overlay_scale(original.shape[1])
            made_by["overlay"] = {"scale": k, "caption_px": shown.shape[0] - original.shape[0] * k,
                                  "layout": "caption band on top, then the image enlarged k times (k = 1: 1:1)"}
    if shown is not None:
        files["thumb.jpg"] = _jpeg(thumbnail(shown, thumbnail_px))
    return files, made_by
