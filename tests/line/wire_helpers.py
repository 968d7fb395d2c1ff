"""Helpers shared by the wire tests (test_wire.py, test_wire_messages.py): real socket pairs,
headers, images and maps."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.wire import FrameHeader, Verdict, WireError

RECV_TIMEOUT_MS = 5000


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _endpoint(transport: str, tmp_path: Path) -> str:
    if transport == "inproc":
        return f"inproc://wire-{time.monotonic_ns()}"
    if transport == "tcp":
        return "tcp://127.0.0.1:*"
    path = tmp_path / "w.sock"
    if len(str(path)) > 90:  # ipc paths are limited to ~107 bytes (sun_path)
        path = Path(tempfile.mkdtemp(prefix="wire")) / "w.sock"
    return f"ipc://{path}"


def _pair(ctx: zmq.Context, kind_bind: int, kind_connect: int, transport: str, tmp_path: Path):
    """(bound socket, connected socket), both with linger 0 and bounded receive time."""
    bound = ctx.socket(kind_bind)
    connected = ctx.socket(kind_connect)
    for sock in (bound, connected):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
        sock.setsockopt(zmq.SNDTIMEO, RECV_TIMEOUT_MS)
    bound.bind(_endpoint(transport, tmp_path))
    connected.connect(bound.getsockopt(zmq.LAST_ENDPOINT).decode())
    return bound, connected


def _header(**overrides) -> FrameHeader:
    fields = dict(camera_id="cam0", seq=7, part_id="part-42", capture_ns=time.time_ns(), deadline_ns=0, shape=())
    fields.update(overrides)
    return FrameHeader(**fields)


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _smooth_image(height: int, width: int, channels: int) -> np.ndarray:
    """Gradients that JPEG keeps within a few grey levels; channel c has its own offset."""
    ys, xs = np.mgrid[0:height, 0:width]
    planes = [((ys * 2 + xs + 60 * c) % 200 + 20).astype(np.uint8) for c in range(channels)]
    return np.ascontiguousarray(np.stack(planes, axis=2))


def _header_map(**overrides) -> dict:
    fields = {
        "schema": 2, "camera_id": "cam0", "seq": 3, "session": 9, "part_id": "p", "capture_ns": 10, "deadline_ns": 0,
        "label": None, "source": None, "dtype": "uint8", "pixel_format": "bgr8", "encoding": "raw",
        "shape": [4, 5, 3],
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not _DROP}


_DROP = object()


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _expect(reason: str, fn, *args, **kwargs) -> WireError:
    with pytest.raises(WireError) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, str(info.value)
    assert info.value.reason in wire.WIRE_ERROR_REASONS
    return info.value


def _verdict(**overrides) -> Verdict:
    fields = dict(
        camera_id="cam0", seq=5, part_id="p5", capture_ns=1_000, decision="REJECT", reason="score_above_threshold",
        score=0.73, threshold=0.5, decided_ns=2_000, label="crack", defect_area_px=120,
    )
    fields.update(overrides)
    return Verdict(**fields)


def _verdict_map(**overrides) -> dict:
    fields = {
        "schema": 2, "camera_id": "cam0", "seq": 5, "part_id": "p5", "capture_ns": 1000, "decision": "OK",
        "reason": "", "score": 0.1, "threshold": 0.5, "decided_ns": 2000, "label": None, "defect_area_px": None,
        "session": 9, "epoch": 77,
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not _DROP}


def _jpeg_parts(height=16, width=24, pixel_format="bgr8", **header_overrides):
    channels = wire.PIXEL_FORMATS[pixel_format]
    header = _header(pixel_format=pixel_format, **header_overrides)
    header_bytes, jpeg = wire.encode_frame(header, _smooth_image(height, width, channels), encoding="jpeg")
    return header_bytes, jpeg


def _sof_offset(jpeg: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        index = jpeg.find(marker)
        if index >= 0:
            return index
    raise AssertionError("no SOF marker in test JPEG")
