"""Tests for inspector.line.wire: frames, taps, verdicts and heartbeats over real ZeroMQ sockets,
strict validation of every malformed case, and a seeded fuzz loop."""

from __future__ import annotations

import math
import random
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.wire import FrameHeader, Heartbeat, Verdict, WireError

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
        "schema": 1, "camera_id": "cam0", "seq": 3, "part_id": "p", "capture_ns": 10, "deadline_ns": 0,
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
        "schema": 1, "camera_id": "cam0", "seq": 5, "part_id": "p5", "capture_ns": 1000, "decision": "OK",
        "reason": "", "score": 0.1, "threshold": 0.5, "decided_ns": 2000, "label": None, "defect_area_px": None,
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not _DROP}


# ------------------------------------------------------------------------------------------
# round trips over real sockets
# ------------------------------------------------------------------------------------------

CASES = [("bgr8", (48, 64, 3)), ("rgb8", (48, 64, 3)), ("mono8", (48, 64, 1)), ("mono8", (48, 64))]


@pytest.mark.parametrize("transport", ["inproc", "tcp", "ipc"])
@pytest.mark.parametrize("pixel_format,shape", CASES)
def test_raw_round_trip_over_sockets(ctx, tmp_path, transport, pixel_format, shape):
    pull, push = _pair(ctx, zmq.PULL, zmq.PUSH, transport, tmp_path)
    image = _image(shape, seed=len(shape))
    sent = _header(pixel_format=pixel_format, label="good", source="img_001.png", deadline_ns=time.time_ns() + 10**9)
    wire.send_frame(push, sent, image)
    header, decoded = wire.recv_frame(pull)

    expected_shape = shape if len(shape) == 3 else (*shape, 1)
    assert header == replace(sent, shape=expected_shape, encoding="raw")
    assert decoded.dtype == np.uint8 and decoded.shape == expected_shape and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded.reshape(shape), image)


@pytest.mark.parametrize("transport", ["inproc", "tcp", "ipc"])
@pytest.mark.parametrize("pixel_format,channels", [("bgr8", 3), ("rgb8", 3), ("mono8", 1)])
def test_jpeg_round_trip_over_sockets(ctx, tmp_path, transport, pixel_format, channels):
    pull, push = _pair(ctx, zmq.PULL, zmq.PUSH, transport, tmp_path)
    image = _smooth_image(40, 56, channels)
    wire.send_frame(push, _header(pixel_format=pixel_format), image, encoding="jpeg", jpeg_quality=95)
    frames = pull.recv_multipart(copy=False)
    assert len(frames[1].bytes) < image.nbytes  # it really was compressed
    header, decoded = wire.decode_frame(frames)

    assert header.encoding == "jpeg" and header.shape == (40, 56, channels)
    assert decoded.dtype == np.uint8 and decoded.shape == (40, 56, channels)
    error = np.abs(decoded.astype(np.int16) - image.astype(np.int16))
    assert error.mean() < 3.0, error.mean()


def test_jpeg_keeps_rgb_channel_order():
    """A red RGB image must come back red in channel 0 (the encoder works in BGR)."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 250  # R
    for pixel_format, red_channel in (("rgb8", 0), ("bgr8", 2)):
        source = image if pixel_format == "rgb8" else image[..., ::-1].copy()
        _, decoded = wire.decode_frame(wire.encode_frame(_header(pixel_format=pixel_format), source, encoding="jpeg"))
        assert decoded[..., red_channel].mean() > 240
        assert decoded[..., 2 - red_channel].mean() < 15


def test_raw_is_zero_copy_on_both_ends(ctx, tmp_path):
    image = _image((256, 320, 3), seed=1)  # larger than zmq.COPY_THRESHOLD
    parts = wire.encode_frame(_header(), image)
    assert np.shares_memory(np.frombuffer(parts[1], np.uint8), image)

    pull, push = _pair(ctx, zmq.PULL, zmq.PUSH, "tcp", tmp_path)
    push.send_multipart(parts, copy=False)
    frames = pull.recv_multipart(copy=False)
    _, decoded = wire.decode_frame(frames)
    assert np.shares_memory(decoded, np.frombuffer(frames[1].buffer, np.uint8))
    assert not decoded.flags.writeable
    np.testing.assert_array_equal(decoded, image)


def test_decode_frame_accepts_all_buffer_kinds():
    image = _image((6, 7, 3))
    header_bytes, payload = wire.encode_frame(_header(), image)
    for kind in (bytes, bytearray, memoryview):
        header, decoded = wire.decode_frame([kind(header_bytes), kind(bytes(payload))])
        assert header.shape == (6, 7, 3)
        np.testing.assert_array_equal(decoded, image)
    assert wire.decode_header(memoryview(header_bytes)) == header


def test_non_contiguous_image_round_trips():
    image = _image((20, 30, 3))[:, ::2]  # strided view
    _, decoded = wire.decode_frame([bytes(p) for p in wire.encode_frame(_header(), image)])
    np.testing.assert_array_equal(decoded, image)


def test_numpy_scalars_in_header_are_normalised():
    header = _header(seq=np.int64(11), capture_ns=np.uint64(123), deadline_ns=np.int32(0))
    decoded, _ = wire.decode_frame(wire.encode_frame(header, _image((2, 2, 3))))
    assert decoded.seq == 11 and type(decoded.seq) is int and decoded.capture_ns == 123


# ------------------------------------------------------------------------------------------
# encoder-side validation
# ------------------------------------------------------------------------------------------


def test_encode_frame_rejects_bad_images_and_headers():
    _expect("bad_dtype", wire.encode_frame, _header(), np.zeros((4, 4, 3), np.float32))
    _expect("bad_shape", wire.encode_frame, _header(), np.zeros((4, 4), np.uint8))  # bgr8 needs 3 channels
    _expect("bad_shape", wire.encode_frame, _header(pixel_format="mono8"), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_shape", wire.encode_frame, _header(shape=(5, 4, 3)), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_shape", wire.encode_frame, _header(), np.zeros((0, 4, 3), np.uint8))
    _expect("bad_shape", wire.encode_frame, _header(), np.zeros((2, wire.MAX_DIM + 1, 3), np.uint8))
    _expect("bad_field", wire.encode_frame, _header(pixel_format="yuyv"), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_field", wire.encode_frame, _header(), np.zeros((4, 4, 3), np.uint8), encoding="png")
    _expect("bad_field", wire.encode_frame, _header(seq=True), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_field", wire.encode_frame, _header(seq=-1), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_field", wire.encode_frame, _header(camera_id=""), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_field", wire.encode_frame, _header(part_id="x" * (wire.MAX_STR + 1)), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_version", wire.encode_frame, _header(schema=2), np.zeros((4, 4, 3), np.uint8))
    _expect("bad_dtype", wire.encode_frame, _header(dtype="uint16"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="jpeg_quality"):
        wire.encode_frame(_header(), np.zeros((4, 4, 3), np.uint8), encoding="jpeg", jpeg_quality=0)
    # a matching explicit shape is fine, (H, W) accepted for mono8
    header, _ = wire.decode_frame(wire.encode_frame(_header(shape=(4, 5, 3)), np.zeros((4, 5, 3), np.uint8)))
    assert header.shape == (4, 5, 3)
    header, _ = wire.decode_frame(wire.encode_frame(_header(pixel_format="mono8", shape=(4, 5)), np.zeros((4, 5), np.uint8)))
    assert header.shape == (4, 5, 1)


# ------------------------------------------------------------------------------------------
# malformed frames
# ------------------------------------------------------------------------------------------


def test_wrong_part_count():
    header_bytes, payload = wire.encode_frame(_header(), _image((4, 5, 3)))
    _expect("bad_parts", wire.decode_frame, [header_bytes])
    _expect("bad_parts", wire.decode_frame, [header_bytes, payload, b""])
    _expect("bad_parts", wire.decode_frame, [])
    _expect("bad_parts", wire.decode_frame, b"not a list")
    _expect("bad_parts", wire.decode_frame, [header_bytes, 12345])


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x8c\xa6sch", b"\xde\xff\xff", b"\x81\x93\x01\x02\x03\x01", b"\x81\xc4\x01a\x01", bytes(range(256))],
    ids=["empty", "reserved_byte", "truncated", "huge_map_claim", "list_key", "bin_key", "bytes"],
)
def test_garbage_header(data):
    error = _expect("bad_header", wire.decode_frame, [data, b"\x00" * 60])
    assert error.header in (None, {})


@pytest.mark.parametrize("obj", [[1, 2, 3], 5, "hello", None, 1.5])
def test_header_not_a_map(obj):
    _expect("bad_header", wire.decode_header, _pack(obj))


def test_header_trailing_bytes_rejected():
    _expect("bad_header", wire.decode_header, _pack(_header_map()) + b"\x00")


def test_header_too_large():
    data = _pack(_header_map(source="s" * 5000))
    assert len(data) > wire.MAX_HEADER_BYTES
    _expect("too_large", wire.decode_header, data)


@pytest.mark.parametrize(
    "overrides,reason",
    [
        ({"schema": 2}, "bad_version"),
        ({"schema": 0}, "bad_version"),
        ({"schema": "1"}, "bad_version"),
        ({"schema": True}, "bad_version"),
        ({"schema": _DROP}, "bad_version"),
        ({"seq": -1}, "bad_field"),
        ({"seq": True}, "bad_field"),
        ({"seq": 1.0}, "bad_field"),
        ({"seq": 2**64 - 1}, "bad_field"),
        ({"seq": _DROP}, "bad_field"),
        ({"capture_ns": -5}, "bad_field"),
        ({"deadline_ns": "soon"}, "bad_field"),
        ({"camera_id": ""}, "bad_field"),
        ({"camera_id": 7}, "bad_field"),
        ({"camera_id": "c" * (wire.MAX_STR + 1)}, "bad_field"),
        ({"camera_id": "é" * (wire.MAX_STR // 2 + 1)}, "bad_field"),  # bytes, not characters, count
        ({"camera_id": "cam\n0"}, "bad_field"),
        ({"part_id": None}, "bad_field"),
        ({"label": 3}, "bad_field"),
        ({"source": ["x"]}, "bad_field"),
        ({"extra": 1}, "bad_field"),
        ({"dtype": "float32"}, "bad_dtype"),
        ({"dtype": 8}, "bad_dtype"),
        ({"pixel_format": "yuv422"}, "bad_field"),
        ({"pixel_format": None}, "bad_field"),
        ({"encoding": "png"}, "bad_field"),
        ({"shape": [wire.MAX_DIM + 1, 10, 3]}, "bad_shape"),
        ({"shape": [10, 2**40, 3]}, "bad_shape"),
        ({"shape": [0, 10, 3]}, "bad_shape"),
        ({"shape": [-4, 10, 3]}, "bad_shape"),
        ({"shape": [10, 10]}, "bad_shape"),
        ({"shape": [10, 10, 3, 1]}, "bad_shape"),
        ({"shape": [10, 10, 4]}, "bad_shape"),
        ({"shape": [10, 10, True]}, "bad_shape"),
        ({"shape": [10.0, 10, 3]}, "bad_shape"),
        ({"shape": "10x10"}, "bad_shape"),
        ({"shape": [10, 10, 3], "pixel_format": "mono8"}, "bad_shape"),
        ({"shape": [10, 10, 1], "pixel_format": "rgb8"}, "bad_shape"),
        ({"shape": [wire.MAX_DIM, wire.MAX_DIM, 3]}, "too_large"),
    ],
)
def test_malformed_header_fields(overrides, reason):
    data = _pack(_header_map(**overrides))
    error = _expect(reason, wire.decode_frame, [data, b"\x00" * 60])
    # the fields that were fine are still reported, so the daemon can attribute a FAULT
    assert isinstance(error.header, dict)
    for key in ("camera_id", "seq"):
        if key not in overrides:
            assert error.header[key] == _header_map()[key]
        else:
            assert key not in error.header or error.header[key] == overrides[key]


def test_raw_payload_length_mismatch_keeps_the_header():
    header_bytes, payload = wire.encode_frame(_header(seq=99), _image((4, 5, 3)))
    payload = bytes(payload)
    for bad in (payload[:-1], payload + b"\x00", b""):
        error = _expect("size_mismatch", wire.decode_frame, [header_bytes, bad])
        assert isinstance(error.header, FrameHeader)
        assert error.header.camera_id == "cam0" and error.header.seq == 99 and error.header.shape == (4, 5, 3)


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


def test_corrupt_jpeg_payloads():
    header_bytes, jpeg = _jpeg_parts(seq=4)
    for bad in (b"", b"\xff\xd8", b"not a jpeg at all", jpeg[:20], b"\xff\xd8" + b"\xff" * 10000,
                b"\xff\xd8\xff\xe0\xff\xff" + b"\x00" * 100, b"\xff\xd8\xff\xd9"):
        error = _expect("decode_failed", wire.decode_frame, [header_bytes, bad])
        assert isinstance(error.header, FrameHeader) and error.header.seq == 4
    # a valid frame header followed by garbage instead of the entropy-coded data
    sof = _sof_offset(jpeg)
    garbage = jpeg[: sof + 19] + bytes(random.Random(1).randrange(256) for _ in range(200))
    _expect("decode_failed", wire.decode_frame, [header_bytes, garbage[: sof + 19]])
    try:  # libjpeg may "recover" from garbage scans: then the shape must still be right
        _, image = wire.decode_frame([header_bytes, garbage])
        assert image.shape == (16, 24, 3)
    except WireError as error:
        assert error.reason == "decode_failed"


def test_jpeg_whose_size_differs_from_header():
    _, jpeg = _jpeg_parts(16, 24)
    for shape in ((16, 20, 3), (12, 24, 3)):
        header_bytes = _pack(_header_map(encoding="jpeg", shape=list(shape)))
        error = _expect("size_mismatch", wire.decode_frame, [header_bytes, jpeg])
        assert isinstance(error.header, FrameHeader) and error.header.shape == shape
    # colour JPEG announced as mono8 and mono JPEG announced as bgr8
    mono_header = _pack(_header_map(encoding="jpeg", pixel_format="mono8", shape=[16, 24, 1]))
    _expect("size_mismatch", wire.decode_frame, [mono_header, jpeg])
    _, mono_jpeg = _jpeg_parts(16, 24, "mono8")
    _expect("size_mismatch", wire.decode_frame, [_pack(_header_map(encoding="jpeg", shape=[16, 24, 3])), mono_jpeg])


def test_jpeg_claiming_huge_size_is_refused_before_decoding():
    header_bytes, jpeg = _jpeg_parts(16, 24)
    sof = _sof_offset(jpeg)
    bomb = bytearray(jpeg)
    bomb[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    started = time.perf_counter()
    _expect("size_mismatch", wire.decode_frame, [header_bytes, bytes(bomb)])
    assert time.perf_counter() - started < 0.5
    twelve_bit = bytearray(jpeg)
    twelve_bit[sof + 4] = 12
    _expect("decode_failed", wire.decode_frame, [header_bytes, bytes(twelve_bit)])


def test_jpeg_header_walk_is_bounded():
    """Crafted JPEGs (endless fill bytes, millions of empty segments) are refused quickly."""
    header_bytes, _ = _jpeg_parts(16, 24)
    for crafted in (b"\xff\xd8" + b"\xff" * (8 * 2**20), b"\xff\xd8" + b"\xff\xe0\x00\x02" * (2 * 2**20)):
        started = time.perf_counter()
        _expect("decode_failed", wire.decode_frame, [header_bytes, crafted])
        assert time.perf_counter() - started < 0.5


def test_jpeg_frame_info_reads_the_real_size():
    _, jpeg = _jpeg_parts(33, 47)
    assert wire.jpeg_frame_info(memoryview(jpeg)) == (33, 47, 3, 8)
    ok, progressive = cv2.imencode(".jpg", _smooth_image(21, 13, 3), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and wire.jpeg_frame_info(memoryview(progressive.tobytes())) == (21, 13, 3, 8)


def test_recv_frame_reports_malformed_and_continues(ctx, tmp_path):
    pull, push = _pair(ctx, zmq.PULL, zmq.PUSH, "tcp", tmp_path)
    push.send_multipart([b"\xc1", b"junk"])
    wire.send_frame(push, _header(seq=1), _image((3, 3, 3)))
    _expect("bad_header", wire.recv_frame, pull)
    header, _ = wire.recv_frame(pull)
    assert header.seq == 1


# ------------------------------------------------------------------------------------------
# taps
# ------------------------------------------------------------------------------------------


def _wait_subscribed(pub: zmq.Socket, sub: zmq.Socket, parts: list, timeout_s: float = 5.0) -> list:
    """Publish ``parts`` until the subscriber gets a message (PUB/SUB slow-joiner)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.send_multipart(parts)
        if sub.poll(50):
            return sub.recv_multipart(copy=False)
    raise AssertionError("subscriber never received anything")


def test_tap_mirrors_received_frames(ctx, tmp_path):
    pull, push = _pair(ctx, zmq.PULL, zmq.PUSH, "tcp", tmp_path)
    tap_pub, recorder = _pair(ctx, zmq.PUB, zmq.SUB, "ipc", tmp_path)
    recorder.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_FRAME)

    probe = wire.encode_tap(wire.encode_frame(_header(seq=0), _image((2, 2, 3))))
    _wait_subscribed(tap_pub, recorder, probe)
    while recorder.poll(100):  # drain extra probes
        recorder.recv_multipart()

    image = _image((30, 40, 3), seed=3)
    wire.send_frame(push, _header(seq=1, label="crack"), image)
    frames = pull.recv_multipart(copy=False)
    wire.decode_frame(frames)  # the daemon decodes, then mirrors the very same frames
    tap_pub.send_multipart(wire.encode_tap(frames), copy=False)
    header, mirrored = wire.decode_tap(recorder.recv_multipart(copy=False))
    assert header.seq == 1 and header.label == "crack"
    np.testing.assert_array_equal(mirrored, image)


def test_malformed_taps():
    header_bytes, payload = wire.encode_frame(_header(), _image((2, 2, 3)))
    _expect("bad_parts", wire.encode_tap, [header_bytes])
    _expect("bad_parts", wire.decode_tap, [header_bytes, payload])
    _expect("bad_parts", wire.decode_tap, [b"verdict", header_bytes, payload])
    _expect("size_mismatch", wire.decode_tap, [wire.TOPIC_FRAME, header_bytes, b"\x00"])


# ------------------------------------------------------------------------------------------
# verdicts and heartbeats
# ------------------------------------------------------------------------------------------


def test_verdict_and_heartbeat_over_pub_sub(ctx, tmp_path):
    pub, sub = _pair(ctx, zmq.PUB, zmq.SUB, "tcp", tmp_path)
    sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_VERDICT)
    sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_HEARTBEAT)
    beat = Heartbeat(daemon_id="daemon-a", counter=3, sent_ns=time.time_ns(), ready=True)
    assert wire.decode_message(_wait_subscribed(pub, sub, wire.encode_heartbeat(beat))) == beat
    while sub.poll(100):
        sub.recv_multipart()

    sent = [
        _verdict(),
        _verdict(seq=6, decision="OK", reason="", score=0.1, label=None, defect_area_px=None),
        _verdict(seq=7, decision="FAULT", reason="deadline_missed", score=None, threshold=None),
    ]
    for verdict in sent:
        pub.send_multipart(wire.encode_verdict(verdict))
    received = [wire.decode_message(sub.recv_multipart()) for _ in sent]
    assert received == sent


def test_verdict_encoding_normalises_numpy_values():
    verdict = _verdict(score=np.float32(0.25), threshold=np.float64(0.5), seq=np.int64(9), defect_area_px=np.int32(4))
    decoded = wire.decode_message(wire.encode_verdict(verdict))
    assert decoded.score == 0.25 and type(decoded.score) is float and decoded.seq == 9 and decoded.defect_area_px == 4
    assert type(decoded.seq) is int and type(decoded.defect_area_px) is int
    beat = wire.decode_message(wire.encode_heartbeat(Heartbeat("d", np.int64(1), 2, np.bool_(False))))
    assert beat.ready is False and beat.counter == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"decision": "MAYBE"},
        {"decision": "ok"},
        {"decision": "OK", "reason": "score_above_threshold"},
        {"decision": "REJECT", "reason": ""},
        {"reason": "Not A Code"},
        {"score": math.nan},
        {"threshold": math.inf},
        {"score": True},
        {"score": "0.5"},
        {"seq": -1},
        {"seq": False},
        {"decided_ns": 1.5},
        {"defect_area_px": -3},
        {"camera_id": ""},
        {"label": "l" * 200},
        {"schema": 2},
    ],
)
def test_malformed_verdicts_are_refused_on_both_sides(overrides):
    reason = "bad_version" if "schema" in overrides else "bad_field"
    decision = overrides.get("decision", "REJECT")
    base = {"decision": decision, "reason": "" if decision == "OK" and "reason" not in overrides else "defect_area"}
    fields = {**base, **overrides}
    _expect(reason, wire.encode_verdict, _verdict(**fields))
    error = _expect(reason, wire.decode_message, [wire.TOPIC_VERDICT, _pack(_verdict_map(**fields))])
    assert isinstance(error.header, dict)


def test_malformed_messages():
    good = wire.encode_verdict(_verdict())
    _expect("bad_parts", wire.decode_message, good[:1])
    _expect("bad_parts", wire.decode_message, good + [b""])
    _expect("bad_parts", wire.decode_message, [b"verdicts", good[1]])
    _expect("bad_parts", wire.decode_message, [wire.TOPIC_FRAME, good[1]])
    _expect("bad_header", wire.decode_message, [wire.TOPIC_VERDICT, b"\xc1\xc1"])
    _expect("bad_header", wire.decode_message, [wire.TOPIC_VERDICT, _pack([1, 2])])
    _expect("bad_header", wire.decode_message, [wire.TOPIC_VERDICT, good[1] + b"\x01"])
    _expect("bad_field", wire.decode_message, [wire.TOPIC_VERDICT, _pack(_verdict_map(extra=1))])
    _expect("bad_field", wire.decode_message, [wire.TOPIC_VERDICT, _pack(_verdict_map(decided_ns=_DROP))])
    _expect("too_large", wire.decode_message, [wire.TOPIC_VERDICT, b"\x00" * (wire.MAX_MESSAGE_BYTES + 1)])
    # optional fields may be absent
    minimal = wire.decode_message([wire.TOPIC_VERDICT, _pack(_verdict_map(label=_DROP, defect_area_px=_DROP))])
    assert minimal.label is None and minimal.defect_area_px is None and minimal.decision == "OK"

    beat = {"schema": 1, "daemon_id": "d", "counter": 1, "sent_ns": 5, "ready": True}
    assert wire.decode_message([wire.TOPIC_HEARTBEAT, _pack(beat)]) == Heartbeat("d", 1, 5, True)
    for overrides, reason in (({"ready": 1}, "bad_field"), ({"counter": True}, "bad_field"),
                              ({"counter": -1}, "bad_field"), ({"daemon_id": ""}, "bad_field"),
                              ({"schema": 3}, "bad_version"), ({"x": 1}, "bad_field")):
        _expect(reason, wire.decode_message, [wire.TOPIC_HEARTBEAT, _pack({**beat, **overrides})])
    _expect("bad_field", wire.encode_heartbeat, Heartbeat("d", 1, 5, "yes"))
    _expect("bad_header", wire.encode_verdict, beat)


# ------------------------------------------------------------------------------------------
# fuzz: decoders raise WireError and nothing else
# ------------------------------------------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.random()
        if action < 0.5 and buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        elif action < 0.7 and buffer:
            del buffer[rng.randrange(len(buffer)) :]
        elif action < 0.85:
            buffer.insert(rng.randrange(len(buffer) + 1), rng.randrange(256))
        elif buffer:
            del buffer[rng.randrange(len(buffer))]
    return bytes(buffer)


_FUZZ_VALUES = [None, True, False, 0, -1, 1, 2**63, 2**64 - 1, 1.5, math.nan, "", "x", "bgr8", "jpeg", "uint8",
                [], [1, 2, 3], [16, 16, 3], [16, 16, 1], {}, {"a": 1}, "é" * 70]


def _random_map(rng: random.Random, good: dict) -> dict:
    """Keys of ``good``, mostly with their good value, some random or missing, sometimes an extra."""
    result = {}
    for key, value in good.items():
        roll = rng.random()
        if roll < 0.6:
            result[key] = value
        elif roll < 0.95:
            result[key] = rng.choice(_FUZZ_VALUES)
    if rng.random() < 0.05:
        result["extra"] = 1
    return result


def _assert_only_wire_errors(fn, *args):
    try:
        return fn(*args)
    except WireError as error:
        assert error.reason in wire.WIRE_ERROR_REASONS
        return None


def test_fuzz_decoders_raise_only_wire_error():
    rng = random.Random(20240517)
    raw_parts = [bytes(p) for p in wire.encode_frame(_header(), _image((16, 16, 3)))]
    jpeg_parts = list(_jpeg_parts(16, 16))
    message = wire.encode_verdict(_verdict())[1]
    beat = wire.encode_heartbeat(Heartbeat("d", 1, 2, True))[1]
    decoded_ok = 0
    for _ in range(3000):
        junk = rng.randbytes(rng.randrange(64))
        _assert_only_wire_errors(wire.decode_frame, [junk, rng.randbytes(rng.randrange(1024))])
        _assert_only_wire_errors(wire.decode_message, [rng.choice([wire.TOPIC_VERDICT, wire.TOPIC_HEARTBEAT]), junk])

        header_bytes, payload = rng.choice([raw_parts, jpeg_parts])
        result = _assert_only_wire_errors(wire.decode_frame, [_mutate(header_bytes, rng), payload])
        if result is not None:
            header, image = result
            assert image.dtype == np.uint8 and image.shape == header.shape
            decoded_ok += 1
        _assert_only_wire_errors(wire.decode_frame, [header_bytes, _mutate(payload, rng)])
        _assert_only_wire_errors(wire.decode_frame, [_pack(_random_map(rng, _header_map(shape=[16, 16, 3]))), raw_parts[1]])

        _assert_only_wire_errors(wire.decode_message, [wire.TOPIC_VERDICT, _mutate(message, rng)])
        _assert_only_wire_errors(wire.decode_message, [wire.TOPIC_HEARTBEAT, _mutate(beat, rng)])
        _assert_only_wire_errors(wire.decode_message, [wire.TOPIC_VERDICT, _pack(_random_map(rng, _verdict_map()))])
    assert decoded_ok > 0  # some mutations (e.g. in string contents) still decode


def test_protocol_doc_example_runs(tmp_path):
    """The Python example in docs/protocol.md runs as written (on an ipc endpoint instead of the
    fixed TCP port)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/protocol.md lost its Python example"
    endpoint = _endpoint("ipc", tmp_path)
    code = blocks[0].replace("tcp://127.0.0.1:5555", endpoint)
    assert endpoint in code
    namespace: dict = {}
    try:
        exec(compile(code, "docs/protocol.md", "exec"), namespace)
        assert namespace["received"].camera_id == "cam0" and namespace["frame"].shape == (480, 640, 3)
    finally:
        if "ctx" in namespace:
            namespace["ctx"].destroy(linger=0)
