"""ZeroMQ wire protocol: frames (grabber -> daemon), verdicts and heartbeats (daemon -> gateways).

Frames travel as two-part messages, imagezmq style, without copies:

    part 0: msgpack map, the header (``FrameHeader``; at most ``MAX_HEADER_BYTES``)
    part 1: the pixels; ``encoding == "raw"``: the C-contiguous uint8 H x W x C buffer
            (exactly prod(shape) bytes); ``encoding == "jpeg"``: a baseline JPEG file.

Verdicts and heartbeats travel on a PUB socket as ``[topic, msgpack map]``; a frame "tap" (a daemon
mirroring the frames it received) as ``[TOPIC_FRAME, header, payload]``.

Every decoder here is strict and fails closed: anything malformed raises ``WireError`` (a
``ValueError``) with a short ``reason`` code, never another exception type, never a huge
allocation driven by an unchecked length. Unknown keys in any map are rejected (a new field means
a new ``SCHEMA_VERSION``). The encoders validate with the same rules, so whatever they emit decodes.
See docs/protocol.md for the full schema. The limits, :class:`WireError` and the field rules are
in :mod:`inspector.line.wire_fields` (re-exported here).

This module must not import torch.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from typing import Any, Callable

import cv2
import numpy as np
import zmq

from inspector.judge.reasons import DECISIONS, REASON_CODES  # noqa: F401 (re-exported)
from inspector.line.wire_fields import (  # noqa: F401 (the limits and WireError are re-exported)
    DTYPES, ENCODINGS, MAX_DIM, MAX_HEADER_BYTES, MAX_INT, MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES, MAX_STR,
    PIXEL_FORMATS, SCHEMA_VERSION, TOPIC_FRAME, TOPIC_HEARTBEAT, TOPIC_MAP, TOPIC_VERDICT, WIRE_ERROR_REASONS,
    WireError, _as_buffer, _Check, _check_fields, _encoding, _FieldError, _HEADER_FIELDS, _HEARTBEAT_FIELDS,
    _MAP_FIELDS, _packb, _pixel_format, _unpack_map, _VERDICT_FIELDS, upgrade_legacy)




# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameHeader:
    """Header of one frame. The dataclass itself does not validate; encode/decode do."""

    camera_id: str
    seq: int  # per camera, starts at 0, +1 per frame (gaps = lost frames)
    part_id: str
    capture_ns: int  # time.time_ns() at capture
    deadline_ns: int  # absolute time.time_ns() by which a verdict is needed; 0 = none
    shape: tuple[int, ...]  # (H, W, C) of the decoded image, C in {1, 3}
    dtype: str = "uint8"  # only uint8 accepted in schema 1
    pixel_format: str = "bgr8"
    encoding: str = "raw"
    label: str | None = None  # ground-truth kind for labelled sources ("good", "crack", ...)
    source: str | None = None  # e.g. file name
    session: int = 0  # the grabber run that sent it (random per start); seq counts within it
    schema: int = SCHEMA_VERSION


def new_session() -> int:
    """A grabber session id: random in 1 .. 2**63 - 1, drawn anew by every sender run (a grabber
    start, a replay), so that a restart is told apart from a repeated ``seq``."""
    return secrets.randbits(63) or 1


@dataclass(frozen=True)
class Verdict:
    """Decision on one frame, published by the daemon on ``TOPIC_VERDICT``."""

    camera_id: str
    seq: int
    part_id: str
    capture_ns: int
    decision: str  # "OK" | "REJECT" | "FAULT"
    reason: str  # "" for OK; a snake_case code otherwise (see REASON_CODES)
    score: float | None  # finite or None (never NaN on the wire)
    threshold: float | None  # finite or None
    decided_ns: int
    label: str | None = None
    defect_area_px: int | None = None
    session: int = 0  # the frame's grabber session (0: unknown)
    epoch: int = 0  # the publishing daemon's epoch (its start time, time.time_ns())
    schema: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Heartbeat:
    """Liveness message, published by the daemon on ``TOPIC_HEARTBEAT``."""

    daemon_id: str
    counter: int
    sent_ns: int
    ready: bool
    epoch: int = 0  # the daemon's start time (time.time_ns()): a new epoch = a restarted daemon


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _header_to_map(header: FrameHeader) -> dict[str, Any]:
    return {
        "schema": header.schema,
        "camera_id": header.camera_id,
        "seq": header.seq,
        "session": header.session,
        "part_id": header.part_id,
        "capture_ns": header.capture_ns,
        "deadline_ns": header.deadline_ns,
        "label": header.label,
        "source": header.source,
        "dtype": header.dtype,
        "pixel_format": header.pixel_format,
        "encoding": header.encoding,
        "shape": list(header.shape) if isinstance(header.shape, (list, tuple)) else header.shape,
    }


def _header_from_map(fields: dict[str, Any]) -> FrameHeader:
    return FrameHeader(**{**fields, "shape": tuple(fields["shape"])})


def encode_header(header: FrameHeader) -> bytes:
    """Validate ``header`` and pack it to msgpack bytes (raises WireError if invalid)."""
    if not isinstance(header, FrameHeader):
        raise WireError("bad_header", f"expected a FrameHeader, got {type(header).__name__}")
    fields = _check_fields("frame header", _header_to_map(header), _HEADER_FIELDS)
    fields["shape"] = list(fields["shape"])
    data = _packb(fields)
    if len(data) > MAX_HEADER_BYTES:
        raise WireError("too_large", f"header is {len(data)} bytes, more than {MAX_HEADER_BYTES}", header=header)
    return data


def decode_header(data: bytes | memoryview) -> FrameHeader:
    """Strictly decode a msgpack header: types, bounds, known schema/format/encoding/dtype,
    shape (H, W, C) with C matching the pixel format. Raises WireError."""
    raw = _unpack_map("frame header", data, MAX_HEADER_BYTES)
    fields = _check_fields("frame header", raw, _HEADER_FIELDS)
    channels = PIXEL_FORMATS[fields["pixel_format"]]
    if fields["shape"][2] != channels:
        raise WireError(
            "bad_shape",
            f"shape {list(fields['shape'])} has C={fields['shape'][2]} but {fields['pixel_format']} has {channels}",
            header={key: value for key, value in fields.items() if key != "shape"},
        )
    return _header_from_map(fields)


def _image_shape(image: np.ndarray, pixel_format: str) -> tuple[int, int, int]:
    """(H, W, C) of ``image`` checked against ``pixel_format``; 2-D allowed for mono8."""
    if not isinstance(image, np.ndarray):
        raise WireError("bad_field", f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise WireError("bad_dtype", f"image dtype must be uint8, got {image.dtype}")
    channels = PIXEL_FORMATS[pixel_format]
    if image.ndim == 2 and channels == 1:
        return image.shape[0], image.shape[1], 1
    if image.ndim != 3 or image.shape[2] != channels:
        raise WireError("bad_shape", f"image shape {image.shape} does not fit {pixel_format} (H x W x {channels})")
    return image.shape[0], image.shape[1], image.shape[2]


def encode_frame(
    header: FrameHeader, image: np.ndarray, *, encoding: str = "raw", jpeg_quality: int = 95
) -> list:
    """Build ``[header_bytes, payload]`` for one frame.

    ``image``: uint8 H x W x C, C matching ``header.pixel_format`` (H x W also accepted for mono8).
    ``header.shape`` may be empty (filled from the image) or must equal the image's (H, W, C);
    ``header.encoding`` is overwritten by ``encoding``. Raw payload: a memoryview of the image (no
    copy if it is C-contiguous; the caller must not modify the array until it has been sent).
    JPEG payload: bytes (rgb8 is swapped to BGR for OpenCV's encoder and back on decode).
    Raises WireError on any mismatch (dtype, shape, pixel format, bounds), ValueError on a bad
    ``jpeg_quality``.
    """
    if not isinstance(header, FrameHeader):
        raise WireError("bad_header", f"expected a FrameHeader, got {type(header).__name__}")
    pixel_format = _field_or_wire_error(_pixel_format, "pixel_format", header.pixel_format, header)
    _field_or_wire_error(_encoding, "encoding", encoding, header)
    shape = _image_shape(image, pixel_format)
    if header.shape and tuple(header.shape) not in (shape, shape[:2] if shape[2] == 1 else shape):
        raise WireError("bad_shape", f"header shape {tuple(header.shape)} != image shape {shape}", header=header)
    header = replace(header, shape=shape, encoding=encoding)
    header_bytes = encode_header(header)
    pixels = np.ascontiguousarray(image).reshape(shape)
    if encoding == "raw":
        return [header_bytes, memoryview(pixels).cast("B")]
    return [header_bytes, _encode_jpeg(pixels, pixel_format, jpeg_quality)]


def _field_or_wire_error(check: _Check, name: str, value: Any, header: Any) -> Any:
    try:
        return check(name, value)
    except _FieldError as error:
        raise WireError(error.reason, error.message, header=header) from None


def _encode_jpeg(pixels: np.ndarray, pixel_format: str, quality: int) -> bytes:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg_quality must be an int in [1, 100], got {quality!r}")
    if pixel_format == "rgb8":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif pixel_format == "mono8":
        pixels = pixels[:, :, 0]
    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise WireError("decode_failed", "OpenCV could not JPEG-encode the image")
    return buffer.tobytes()


def send_frame(
    sock: zmq.Socket, header: FrameHeader, image: np.ndarray, *, encoding: str = "raw",
    jpeg_quality: int = 95, flags: int = 0,
) -> None:
    """Encode and send one frame with ``send_multipart(copy=False)``.

    Blocks at the socket's HWM unless ``flags`` has ``zmq.NOBLOCK`` (then ``zmq.Again``
    propagates). Raw frames are not copied: do not modify ``image`` after the call.
    """
    sock.send_multipart(encode_frame(header, image, encoding=encoding, jpeg_quality=jpeg_quality), flags=flags, copy=False)


def _split_parts(parts: Any, count: int, what: str) -> list:
    if not isinstance(parts, (list, tuple)):
        raise WireError("bad_parts", f"{what} must be a list of {count} parts, got {type(parts).__name__}")
    if len(parts) != count:
        raise WireError("bad_parts", f"{what} must have {count} parts, got {len(parts)}")
    return list(parts)


def decode_frame(parts: list) -> tuple[FrameHeader, np.ndarray]:
    """Decode ``[header, payload]`` (bytes or zmq.Frame) into (header, image): :func:`open_frame`
    then :meth:`EncodedFrame.decode`.

    Raw: the image is a read-only ``np.frombuffer`` view of the payload (no copy; it keeps the
    frame alive; copy it to edit), after checking its length equals prod(shape). JPEG: decoded with OpenCV after
    checking the JPEG's own frame header (size, components, 8-bit) against the header, so a
    crafted JPEG cannot make it allocate more than the header allows. The image is uint8 H x W x C
    (mono8 -> H x W x 1) in the header's pixel format. Raises WireError; when only the payload is
    bad, ``error.header`` is the decoded FrameHeader.
    """
    frame = open_frame(parts)
    return frame.header, frame.decode()


@dataclass(frozen=True)
class EncodedFrame:
    """A received frame checked as far as it can be without decoding it: the header is valid, the
    image is within the pixel budget, a raw payload has exactly H*W*C bytes, a JPEG's own frame
    header (SOFn) says the header's H, W, C at 8 bits. ``payload`` keeps the received buffer alive."""

    header: FrameHeader
    payload: memoryview

    @property
    def nbytes(self) -> int:
        """Bytes held while the frame waits (the payload as received)."""
        return self.payload.nbytes

    def decode(self) -> np.ndarray:
        """The image, uint8 H x W x C in the header's pixel format: a read-only view for raw frames
        (no copy), OpenCV's decoding for JPEG (the costly step: run it off the receive thread).
        Raises WireError (``decode_failed``, ``size_mismatch``) with ``error.header`` set."""
        if self.header.encoding == "raw":
            return _view_raw(self.header, self.payload)
        return _decode_jpeg(self.header, self.payload)


def frame_receive_limit(max_pixels: int) -> int:
    """The largest message part a frame of at most ``max_pixels`` (H x W) can need: its bgr8 raw
    payload, or a JPEG of it (at most twice that plus 64 KiB of headers), capped at
    ``MAX_PAYLOAD_BYTES``. The daemon's frame socket refuses bigger parts (``ZMQ_MAXMSGSIZE``)."""
    return min(MAX_PAYLOAD_BYTES, max(MAX_HEADER_BYTES, 2 * 3 * max_pixels + 65536))


def open_frame(parts: list, *, max_pixels: int | Callable[[str], int] | None = None) -> EncodedFrame:
    """Check ``[header, payload]`` without decoding the image (see :class:`EncodedFrame`).
    ``max_pixels``: the pixel budget (H x W), or a function camera id -> the camera's budget;
    checked before anything is allocated for the image (``too_large``). Raises WireError; when only
    the payload is bad, ``error.header`` is the decoded FrameHeader."""
    header_part, payload_part = _split_parts(parts, 2, "frame message")
    header = decode_header(_as_buffer(header_part, "header part"))
    payload = _as_buffer(payload_part, "payload part")
    if payload.nbytes > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"payload is {payload.nbytes} bytes, more than {MAX_PAYLOAD_BYTES}", header=header)
    height, width, _ = header.shape
    if callable(max_pixels):
        max_pixels = max_pixels(header.camera_id)
    if max_pixels is not None and height * width > max_pixels:
        raise WireError("too_large", f"{height} x {width} pixels is over the camera's budget of {max_pixels}",
                        header=header)
    if header.encoding == "raw":
        _check_raw_size(header, payload)
    else:
        _check_jpeg(header, payload)
    return EncodedFrame(header, payload)


def _check_raw_size(header: FrameHeader, payload: memoryview) -> None:
    expected = math.prod(header.shape)
    if payload.nbytes != expected:
        raise WireError(
            "size_mismatch", f"raw payload is {payload.nbytes} bytes, shape {header.shape} needs {expected}", header=header
        )


def _view_raw(header: FrameHeader, payload: memoryview) -> np.ndarray:
    _check_raw_size(header, payload)
    image = np.frombuffer(payload, dtype=np.uint8).reshape(header.shape)
    image.flags.writeable = False  # the buffer may be re-sent (tap) or shared: never edit in place
    return image


_MAX_JPEG_HEADER_STEPS = 4096
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG, CC DAC


def jpeg_frame_info(data: memoryview) -> tuple[int, int, int, int]:
    """(height, width, components, precision) from a JPEG's SOFn segment, without decoding.

    Walks the marker segments from SOI, every length checked against the buffer. Raises
    WireError('decode_failed') if the data is not a JPEG or has no frame header before the scan.
    """
    size = data.nbytes
    if size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise WireError("decode_failed", "payload is not a JPEG (no SOI marker)")
    pos = 2
    steps = 0  # bounds the Python-level work on crafted input (runs of fill bytes, tiny segments)
    while pos < size:
        if data[pos] != 0xFF:
            raise WireError("decode_failed", f"JPEG marker expected at byte {pos}")
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
            steps += 1
            if steps > _MAX_JPEG_HEADER_STEPS:
                raise WireError("decode_failed", "JPEG has too many segments or fill bytes before its frame header")
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise WireError("decode_failed", f"JPEG has no frame header before marker 0x{marker:02X}")
        if pos + 2 > size:
            break
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > size:
            raise WireError("decode_failed", f"JPEG segment 0x{marker:02X} length {length} runs past the data")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise WireError("decode_failed", "JPEG frame header too short")
            precision = data[pos + 2]
            height = (data[pos + 3] << 8) | data[pos + 4]
            width = (data[pos + 5] << 8) | data[pos + 6]
            components = data[pos + 7]
            return height, width, components, precision
        pos += length
    raise WireError("decode_failed", "JPEG ends before its frame header")


def _check_jpeg(header: FrameHeader, payload: memoryview) -> None:
    """The JPEG's own frame header (SOFn) must say 8 bits and the header's H, W, C."""
    height, width, channels = header.shape
    try:
        jpeg_h, jpeg_w, jpeg_c, precision = jpeg_frame_info(payload)
    except WireError as error:
        raise WireError(error.reason, error.message, header=header) from None
    if precision != 8:
        raise WireError("decode_failed", f"JPEG precision {precision} bits, only 8 accepted", header=header)
    if (jpeg_h, jpeg_w, jpeg_c) != (height, width, channels):
        raise WireError(
            "size_mismatch", f"JPEG is {jpeg_h} x {jpeg_w} x {jpeg_c}, header says {header.shape}", header=header
        )


def _decode_jpeg(header: FrameHeader, payload: memoryview) -> np.ndarray:
    height, width, channels = header.shape
    _check_jpeg(header, payload)
    try:
        image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise WireError("decode_failed", f"OpenCV could not decode the JPEG: {error}"[:300], header=header) from None
    if image is None:
        raise WireError("decode_failed", "OpenCV could not decode the JPEG", header=header)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.dtype != np.uint8 or image.shape != (height, width, channels):
        raise WireError(
            "size_mismatch", f"JPEG decoded to {image.shape} {image.dtype}, header says {header.shape}", header=header
        )
    if header.pixel_format == "rgb8":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def recv_frame(sock: zmq.Socket, flags: int = 0) -> tuple[FrameHeader, np.ndarray]:
    """``recv_multipart(copy=False)`` + ``decode_frame``. zmq errors (e.g. ``zmq.Again`` with
    NOBLOCK) propagate unchanged; malformed messages raise WireError (the message is consumed)."""
    return decode_frame(sock.recv_multipart(flags=flags, copy=False))


# --------------------------------------------------------------------------------------------
# Frame taps
# --------------------------------------------------------------------------------------------


def encode_tap(parts: list) -> list:
    """``[header, payload]`` as received -> ``[TOPIC_FRAME, header, payload]`` for a PUB socket.

    The parts are passed through unchanged (zmq.Frame objects are re-sent without copying when
    sent with ``copy=False``); only the part count is checked.
    """
    header_part, payload_part = _split_parts(parts, 2, "frame message")
    return [TOPIC_FRAME, header_part, payload_part]


def decode_tap(parts: list) -> tuple[FrameHeader, np.ndarray]:
    """``[TOPIC_FRAME, header, payload]`` -> (header, image), with decode_frame's checks."""
    topic, header_part, payload_part = _split_parts(parts, 3, "tap message")
    if bytes(_as_buffer(topic, "topic part")) != TOPIC_FRAME:
        raise WireError("bad_parts", f"tap topic must be {TOPIC_FRAME!r}")
    return decode_frame([header_part, payload_part])


# --------------------------------------------------------------------------------------------
# Verdicts and heartbeats
# --------------------------------------------------------------------------------------------


def _check_verdict_rules(fields: dict[str, Any]) -> None:
    if fields["decision"] == "OK" and fields["reason"] != "":
        raise WireError("bad_field", f"an OK verdict must have reason '', got {fields['reason']!r}", header=fields)
    if fields["decision"] != "OK" and fields["reason"] == "":
        raise WireError("bad_field", f"a {fields['decision']} verdict needs a reason code", header=fields)


def _verdict_to_map(v: Verdict) -> dict[str, Any]:
    return {
        "schema": v.schema,
        "camera_id": v.camera_id,
        "seq": v.seq,
        "part_id": v.part_id,
        "capture_ns": v.capture_ns,
        "decision": v.decision,
        "reason": v.reason,
        "score": v.score,
        "threshold": v.threshold,
        "decided_ns": v.decided_ns,
        "label": v.label,
        "defect_area_px": v.defect_area_px,
        "session": v.session,
        "epoch": v.epoch,
    }


def encode_verdict(v: Verdict) -> list[bytes]:
    """``[TOPIC_VERDICT, msgpack]``. Validates like decode_message (decision known, OK has reason
    "" and others a snake_case code, scores finite or None, ints non-negative); numpy scalars
    are normalised to Python numbers. Raises WireError."""
    if not isinstance(v, Verdict):
        raise WireError("bad_header", f"expected a Verdict, got {type(v).__name__}")
    fields = _check_fields("verdict", _verdict_to_map(v), _VERDICT_FIELDS)
    _check_verdict_rules(fields)
    return [TOPIC_VERDICT, _packb(fields)]


def encode_heartbeat(h: Heartbeat) -> list[bytes]:
    """``[TOPIC_HEARTBEAT, msgpack]`` (the map also carries ``schema``). Raises WireError."""
    if not isinstance(h, Heartbeat):
        raise WireError("bad_header", f"expected a Heartbeat, got {type(h).__name__}")
    raw = {"schema": SCHEMA_VERSION, "daemon_id": h.daemon_id, "counter": h.counter, "sent_ns": h.sent_ns, "ready": h.ready,
           "epoch": h.epoch}
    return [TOPIC_HEARTBEAT, _packb(_check_fields("heartbeat", raw, _HEARTBEAT_FIELDS))]


def decode_message(parts: list, *, legacy: bool = False) -> Verdict | Heartbeat:
    """``[topic, msgpack]`` from the daemon's PUB socket -> Verdict or Heartbeat.

    Strict: exact topic, map with exactly the known keys, every field checked. Raises WireError
    ('bad_parts' for a wrong part count or unknown topic). ``legacy``: also read a schema-1
    verdict (recordings made before schema 2) as session 0, epoch 0.
    """
    topic_part, body_part = _split_parts(parts, 2, "daemon message")
    topic = bytes(_as_buffer(topic_part, "topic part")[:32])
    if topic == TOPIC_VERDICT:
        raw = _unpack_map("verdict", _as_buffer(body_part, "verdict"), MAX_MESSAGE_BYTES)
        if legacy:
            raw = upgrade_legacy(raw, {"session": 0, "epoch": 0})
        fields = _check_fields("verdict", raw, _VERDICT_FIELDS)
        _check_verdict_rules(fields)
        return Verdict(**fields)
    if topic == TOPIC_HEARTBEAT:
        raw = _unpack_map("heartbeat", _as_buffer(body_part, "heartbeat"), MAX_MESSAGE_BYTES)
        fields = _check_fields("heartbeat", raw, _HEARTBEAT_FIELDS)
        del fields["schema"]
        return Heartbeat(**fields)
    raise WireError("bad_parts", f"unknown topic {topic!r}")


# --------------------------------------------------------------------------------------------
# Anomaly maps (on the tap, for REJECT / FAULT frames)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnomalyMap:
    """A judged frame's anomaly map, quantised to uint8: ``[TOPIC_MAP, msgpack header, pixels]``.

    ``values``: uint8 height x width (C-contiguous) at the engine's inspection size; the float map
    is ``lo + values / 255 * (hi - lo)`` (:meth:`floats`). ``fit``: how the camera image was fitted
    to that size (``core.preprocess.FITS``), so the map can be put back on the camera's pixels.
    ``pixel_threshold``: the profile's region-rule threshold (None without a region rule)."""

    camera_id: str
    seq: int
    capture_ns: int
    fit: str
    lo: float
    hi: float
    values: np.ndarray
    pixel_threshold: float | None = None
    schema: int = SCHEMA_VERSION

    @classmethod
    def quantise(cls, camera_id: str, seq: int, capture_ns: int, amap: np.ndarray, fit: str,
                 pixel_threshold: float | None = None) -> "AnomalyMap":
        """float H x W map -> uint8 codes over [min, max] (resolution (max - min) / 255). Raises
        WireError for a map that is not 2-D and finite."""
        amap = np.asarray(amap, dtype=np.float32)
        if amap.ndim != 2 or amap.size == 0 or not np.isfinite(amap).all():
            raise WireError("bad_shape", f"an anomaly map must be a finite 2-D array, got shape {amap.shape}")
        lo, hi = float(amap.min()), float(amap.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        values = np.ascontiguousarray(np.rint((amap - lo) * scale), dtype=np.uint8)
        return cls(camera_id, seq, capture_ns, fit, lo, hi, values, pixel_threshold)

    def floats(self) -> np.ndarray:
        """float32 height x width: the map as the engine made it, within (hi - lo) / 510."""
        return (self.lo + self.values.astype(np.float32) * np.float32((self.hi - self.lo) / 255.0)).astype(np.float32)


def encode_map(m: AnomalyMap) -> list:
    """``[TOPIC_MAP, msgpack header, uint8 pixels]``. Raises WireError (fields as decode_map checks them)."""
    if not isinstance(m, AnomalyMap) or not isinstance(m.values, np.ndarray) or m.values.dtype != np.uint8 \
            or m.values.ndim != 2:
        raise WireError("bad_header", "expected an AnomalyMap with uint8 2-D values")
    raw = {"schema": m.schema, "camera_id": m.camera_id, "seq": m.seq, "capture_ns": m.capture_ns,
           "height": m.values.shape[0], "width": m.values.shape[1], "fit": m.fit, "lo": m.lo, "hi": m.hi,
           "pixel_threshold": m.pixel_threshold}
    fields = _check_fields("anomaly map", raw, _MAP_FIELDS)
    _check_map_range(fields)
    return [TOPIC_MAP, _packb(fields), memoryview(np.ascontiguousarray(m.values)).cast("B")]


def _check_map_range(fields: dict[str, Any]) -> None:
    if fields["lo"] > fields["hi"]:
        raise WireError("bad_field", f"anomaly map lo {fields['lo']} > hi {fields['hi']}", header=fields)


def decode_map(parts: list) -> AnomalyMap:
    """``[TOPIC_MAP, header, pixels]`` -> AnomalyMap (values: a read-only view of the payload).
    Strict: topic, known keys only, every field checked, payload exactly height * width bytes.
    Raises WireError."""
    topic, header_part, payload_part = _split_parts(parts, 3, "anomaly map message")
    if bytes(_as_buffer(topic, "topic part")[:32]) != TOPIC_MAP:
        raise WireError("bad_parts", f"anomaly map topic must be {TOPIC_MAP!r}")
    raw = _unpack_map("anomaly map", _as_buffer(header_part, "anomaly map header"), MAX_HEADER_BYTES)
    fields = _check_fields("anomaly map", raw, _MAP_FIELDS)
    _check_map_range(fields)
    payload = _as_buffer(payload_part, "anomaly map payload")
    height, width = fields["height"], fields["width"]
    if payload.nbytes != height * width:
        raise WireError("size_mismatch", f"anomaly map payload is {payload.nbytes} bytes, {height} x {width} "
                        f"needs {height * width}", header=fields)
    values = np.frombuffer(payload, dtype=np.uint8).reshape(height, width)
    values.flags.writeable = False
    return AnomalyMap(fields["camera_id"], fields["seq"], fields["capture_ns"], fields["fit"], fields["lo"],
                      fields["hi"], values, fields["pixel_threshold"])
