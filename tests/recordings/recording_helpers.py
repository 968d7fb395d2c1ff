"""Shared helpers of the recording tests (test_recording.py, test_record_replay.py): frames, verdicts,
recordings and MVTec folders made on disk, and the CLI started as a real process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk

from inspector.line.wire import FrameHeader, Verdict
from inspector.recordings.recording import RecordingWriter

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 15.0


def make_header(camera: str, seq: int, shape: tuple, *, pixel_format: str = "bgr8", encoding: str = "raw",
            capture_ns: int | None = None, deadline_offset_ns: int = 200_000_000, label: str | None = "good") -> FrameHeader:
    capture = time.time_ns() if capture_ns is None else capture_ns
    return FrameHeader(
        camera_id=camera, seq=seq, part_id=f"{camera}-part-{seq}", capture_ns=capture,
        deadline_ns=capture + deadline_offset_ns, shape=shape, pixel_format=pixel_format, encoding=encoding,
        label=label, source=f"{camera}/{seq:04d}.png",
    )


def random_image(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def smooth_image(shape: tuple, seed: int) -> np.ndarray:
    """A smooth gradient image (JPEG-friendly), uint8 H x W x C."""
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w]
    planes = [((x * (3 + k + seed) + y * (2 + k)) % 256) for k in range(c)]
    return np.stack(planes, axis=2).astype(np.uint8)


def make_verdict(header: FrameHeader, decision: str = "OK") -> Verdict:
    reason = "" if decision == "OK" else "score_above_threshold"
    return Verdict(header.camera_id, header.seq, header.part_id, header.capture_ns, decision, reason,
                   0.25 if decision == "OK" else 0.9, 0.5, time.time_ns(), label=header.label)


def write_frames(path: Path, n: int, *, chunk_size: int, compression: str = "zstd", shape=(24, 32, 3),
                  seed: int = 0) -> list[FrameHeader]:
    """n random (incompressible) raw frames on cam0, capture times 0.1 s apart. Returns headers."""
    rng = np.random.default_rng(seed)
    start = time.time_ns()
    headers = []
    with RecordingWriter(path, chunk_size=chunk_size, compression=compression, flush_interval_s=3600) as writer:
        for seq in range(n):
            header = make_header("cam0", seq, shape, capture_ns=start + seq * 100_000_000)
            writer.write_frame(header, random_image(rng, shape), log_time_ns=header.capture_ns)
            headers.append(header)
    return headers


def chunk_spans(path: Path) -> list[tuple[int, int, int]]:
    """(start, end, frame messages) of every chunk, from the file's own summary (mcap library)."""
    spans = []
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
        assert summary is not None
        for index in sorted(summary.chunk_indexes, key=lambda i: i.chunk_start_offset):
            f.seek(index.chunk_start_offset)
            chunk = next(StreamReader(f, skip_magic=True, emit_chunks=True).records)
            assert isinstance(chunk, Chunk)
            _, messages = count_messages(chunk)
            spans.append((index.chunk_start_offset, index.chunk_start_offset + index.chunk_length, messages))
    return spans


def count_messages(chunk: Chunk) -> tuple[int, int]:
    records = breakup_chunk(chunk)
    return len(records), sum(isinstance(r, Message) for r in records)


def start_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **kwargs,
    )


def mvtec_folder(root: Path) -> dict[str, np.ndarray]:
    """A tiny MVTec layout: test/good (2 colour), test/crack (1 mono + 1 unreadable), test/scratch."""
    images = {
        "good/000.png": smooth_image((20, 28, 3), 1),
        "good/001.png": smooth_image((20, 28, 3), 2),
        "crack/000.png": smooth_image((20, 28, 1), 3)[:, :, 0],
        "scratch/007.png": smooth_image((20, 28, 3), 4),
    }
    for name, image in images.items():
        (root / "test" / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "test" / name), image)
    (root / "test" / "crack" / "001.png").write_bytes(b"not a png at all")
    (root / "train" / "good").mkdir(parents=True)
    assert cv2.imwrite(str(root / "train" / "good" / "999.png"), smooth_image((20, 28, 3), 9))
    return images


@contextlib.contextmanager
def killed_on_exit(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``proc`` inside the block; killed (and reaped) on leaving it if it is still running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
