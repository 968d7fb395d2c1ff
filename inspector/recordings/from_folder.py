"""A labelled one-camera recording made from the test split of an MVTec AD-layout folder."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.line import wire
from inspector.core import dataset_layout
from inspector.core.preprocess import resize
from inspector.core.images import DatasetError, read_image
from inspector.line.wire import FrameHeader
from inspector.recordings.mcap_format import RecordingError
from inspector.recordings.recording_writer import RecordingWriter

log = logging.getLogger(__name__)


def _resize(image: np.ndarray, image_size: int | tuple[int, int] | None) -> np.ndarray:
    """Resize uint8 H x W x C to ``image_size`` ((height, width), or an int for square) with
    INTER_AREA, keeping H x W x C (mono stays H x W x 1); None keeps the image as it is."""
    if image_size is None:
        return image
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return resize(image, (int(height), int(width)), interpolation=cv2.INTER_AREA)


def _folder_samples(mvtec_dir: Path) -> list[tuple[str, Path]]:
    """(kind, image path) of ``mvtec_dir/test/<kind>/*``, sorted by kind then name."""
    if not dataset_layout.has_split(mvtec_dir):
        raise RecordingError(f"{mvtec_dir}: not an MVTec AD-layout folder (no test/ folder)")
    samples = [(kind, path) for kind, paths in dataset_layout.files_by_kind(mvtec_dir).items() for path in paths]
    if not samples:
        raise RecordingError(f"{mvtec_dir / dataset_layout.TEST}: no test images")
    return samples


def record_from_folder(
    mvtec_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    camera_id: str = "cam0",
    fps: float = 10.0,
    encoding: str = "raw",
    image_size: int | tuple[int, int] | None = None,
    jpeg_quality: int = 95,
    deadline_ms: float = 1000.0,
    start_ns: int | None = None,
    compression: str = "zstd",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the test split of an MVTec AD-layout folder as a labelled one-camera recording.

    Frames come in order of kind then file name; seq = 0, 1, ...; label = the kind ("good" or
    the defect); source = "<kind>/<file name>"; part_id = "<kind>/<file stem>"; capture_ns =
    start_ns (default now) + seq / fps; deadline_ns = capture + deadline_ms; log time = capture.
    Images are read as stored (uint8 BGR, or mono as H x W x 1, 16-bit >> 8), optionally resized
    to ``image_size`` ((height, width) or an int), and stored ``encoding`` "raw" or "jpeg".
    Unreadable images are skipped, counted and logged. Returns a summary dict (path, n_frames,
    labels, skipped [(file, reason)], camera_id, encoding). Raises RecordingError when the folder
    has no test images or none could be read (the partial file is removed).
    """
    if encoding not in wire.ENCODINGS:
        raise ValueError(f"encoding must be one of {wire.ENCODINGS}, got {encoding!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    mvtec_dir, out_path = Path(mvtec_dir), Path(out_path)
    samples = _folder_samples(mvtec_dir)
    period_ns = int(round(1e9 / fps))
    start = time.time_ns() if start_ns is None else int(start_ns)
    labels: Counter[str] = Counter()
    skipped: list[tuple[str, str]] = []
    metadata = {"source": str(mvtec_dir.resolve()), "source_kind": "mvtec_folder", "fps": fps, "camera_id": camera_id}
    with RecordingWriter(out_path, compression=compression, metadata=metadata, overwrite=overwrite) as writer:
        for kind, path in samples:
            try:
                image, pixel_format = read_image(path)
            except DatasetError as exc:
                log.warning("skipping %s: %s", path, exc)
                skipped.append((str(path), str(exc)))
                continue
            image = _resize(image, image_size)
            seq = writer.n_frames
            capture = start + seq * period_ns
            header = FrameHeader(
                camera_id=camera_id, seq=seq, part_id=f"{kind}/{path.stem}", capture_ns=capture,
                deadline_ns=capture + int(deadline_ms * 1e6), shape=image.shape, pixel_format=pixel_format,
                encoding=encoding, label=kind, source=f"{kind}/{path.name}",
            )
            writer.write_frame(header, image, log_time_ns=capture, jpeg_quality=jpeg_quality)
            labels[kind] += 1
    if not labels:
        out_path.unlink(missing_ok=True)
        raise RecordingError(f"{mvtec_dir}: none of the {len(samples)} test images could be read")
    return {
        "path": str(out_path), "camera_id": camera_id, "encoding": encoding, "n_frames": sum(labels.values()),
        "labels": dict(sorted(labels.items())), "skipped": skipped,
    }
