"""Shared by the station tests: verdicts, frames and maps as the daemon makes them, and an archive
filled through the same path the archiver takes (Pending -> entry_files -> Archive.add)."""

from __future__ import annotations

import time

import numpy as np

from inspector.line import wire
from inspector.station.archive import Archive
from inspector.station.entry import Pending, entry_files, verdict_fields


def verdict(camera: str = "cam0", seq: int = 0, decision: str = "REJECT", *, capture_ns: int | None = None,
            score: float | None = 0.9, threshold: float | None = 0.5) -> wire.Verdict:
    reason = {"OK": "", "REJECT": "score_above_threshold", "FAULT": "deadline_missed"}[decision]
    capture_ns = capture_ns if capture_ns is not None else time.time_ns()
    return wire.Verdict(camera, seq, f"part-{seq}", capture_ns, decision, reason, score, threshold, capture_ns + 5_000_000)


def frame(camera: str = "cam0", seq: int = 0, shape=(48, 64, 3), *, capture_ns: int = 0, seed: int = 0,
          pixel_format: str = "bgr8") -> tuple[wire.FrameHeader, np.ndarray]:
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    header = wire.FrameHeader(camera, seq, f"part-{seq}", capture_ns, 0, tuple(shape), pixel_format=pixel_format)
    return header, image


def hot_map(camera: str = "cam0", seq: int = 0, size=(32, 32), spot=(8, 20), *, fit: str = "squash",
            capture_ns: int = 0) -> wire.AnomalyMap:
    """A map at the inspection size: 0.1 everywhere, 1.0 on a 4 x 4 spot at ``spot`` (row, col)."""
    amap = np.full(size, 0.1, np.float32)
    amap[spot[0]:spot[0] + 4, spot[1]:spot[1] + 4] = 1.0
    return wire.AnomalyMap.quantise(camera, seq, capture_ns, amap, fit, pixel_threshold=0.5)


def store(archive: Archive, v: wire.Verdict, *, with_frame: bool = True, with_map: bool = True,
          shape=(48, 64, 3), thumbnail_px: int = 32) -> int:
    header, image = frame(v.camera_id, v.seq, shape, capture_ns=v.capture_ns, seed=v.seq) if with_frame else (None, None)
    amap = hot_map(v.camera_id, v.seq, capture_ns=v.capture_ns) if with_map else None
    files, made_by = entry_files(Pending(v, header, image, amap), thumbnail_px)
    return archive.add(verdict_fields(v), files, made_by)
