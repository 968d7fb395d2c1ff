"""Tests for inspector.line.wire, frames: round trips over real ZeroMQ sockets, encoder-side
validation and every malformed frame. Taps, verdicts, heartbeats and the fuzz loop are in
test_wire_messages.py."""

from __future__ import annotations

import random
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.wire import FrameHeader, WireError
from wire_helpers import (_DROP, _expect, _header, _header_map, _image, _jpeg_parts,
                          _pack, _pair, _smooth_image, _sof_offset)
from wire_helpers import ctx  # noqa: F401 (the fixture)


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
    _expect("bad_version", wire.encode_frame, _header(schema=3), np.zeros((4, 4, 3), np.uint8))
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
        ({"schema": 3}, "bad_version"),
        ({"schema": 1}, "bad_version"),             # schema 1 (no session) is refused on the line
        ({"schema": 0}, "bad_version"),
        ({"schema": "2"}, "bad_version"),
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
