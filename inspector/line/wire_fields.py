"""The wire's limits, errors and field rules: what :mod:`inspector.line.wire` checks every map
against (msgpack decoding with every size limit set, one check per field type, one table per
message). Everything here is re-exported by ``wire``; import it from there.

Fail closed: every check raises :class:`WireError` with a short ``reason`` code (one of
:data:`WIRE_ERROR_REASONS`), never another exception type.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Callable

import msgpack
import numpy as np
import zmq

from inspector.core.preprocess import FITS
from inspector.judge.reasons import DECISIONS

SCHEMA_VERSION = 2  # 2: frame headers carry the grabber session; verdicts session + daemon epoch; heartbeats the epoch
PIXEL_FORMATS: dict[str, int] = {"mono8": 1, "bgr8": 3, "rgb8": 3}  # name -> channels
ENCODINGS = ("raw", "jpeg")
DTYPES = ("uint8",)
MAX_DIM = 16384
MAX_PAYLOAD_BYTES = 256 * 2**20
MAX_STR = 128  # bytes of UTF-8
MAX_HEADER_BYTES = 4096
MAX_MESSAGE_BYTES = 4096  # verdict / heartbeat msgpack body
MAX_INT = 2**63 - 1  # every integer field is a non-negative int64

TOPIC_FRAME = b"frame"
TOPIC_VERDICT = b"verdict"
TOPIC_HEARTBEAT = b"heartbeat"
TOPIC_MAP = b"map"      # the tap's anomaly maps of REJECT / FAULT frames (see wire.AnomalyMap)

# DECISIONS and REASON_CODES: the one table, inspector.judge.reasons. Any other lower-case
# snake_case reason code up to MAX_STR bytes is accepted too (see there).

WIRE_ERROR_REASONS = (
    "bad_parts",
    "bad_header",
    "bad_version",
    "bad_field",
    "bad_shape",
    "bad_dtype",
    "size_mismatch",
    "decode_failed",
    "too_large",
)


class WireError(ValueError):
    """Malformed message.

    ``reason``: short code, one of ``WIRE_ERROR_REASONS`` ('bad_parts', 'bad_header',
    'bad_version', 'bad_field', 'bad_shape', 'bad_dtype', 'size_mismatch', 'decode_failed',
    'too_large').
    ``header``: the ``FrameHeader`` if the header itself decoded fine (so the daemon can still
    attribute a FAULT verdict to camera/seq), else a dict of whatever fields could be read and
    passed their own checks (possibly empty), or None when nothing could be read.
    """

    def __init__(self, reason: str, message: str, header: Any = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.header = header


# --------------------------------------------------------------------------------------------
# Field checks. Each takes (name, value) and returns the normalised value or raises
# _FieldError(reason, message). They are shared by encoders (values from Python callers, so
# numpy scalars are accepted and normalised) and decoders (values from msgpack).
# --------------------------------------------------------------------------------------------


class _FieldError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _int(name: str, value: Any) -> int:
    """Non-negative int64; bools (Python or numpy) are not ints."""
    if isinstance(value, (bool, np.bool_)):
        raise _FieldError("bad_field", f"{name} must be an int, got a bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise _FieldError("bad_field", f"{name} must be an int, got {type(value).__name__}") from None
    if not 0 <= number <= MAX_INT:
        raise _FieldError("bad_field", f"{name} must be in [0, 2**63), got {number}")
    return number


def _optional_int(name: str, value: Any) -> int | None:
    return None if value is None else _int(name, value)


def _str(name: str, value: Any, *, allow_empty: bool = True) -> str:
    """Printable str of at most MAX_STR UTF-8 bytes."""
    if not isinstance(value, str):
        raise _FieldError("bad_field", f"{name} must be a str, got {type(value).__name__}")
    if not allow_empty and not value:
        raise _FieldError("bad_field", f"{name} must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _FieldError("bad_field", f"{name} is not valid UTF-8 text") from None
    if size > MAX_STR:
        raise _FieldError("bad_field", f"{name} is {size} bytes, more than MAX_STR={MAX_STR}")
    if not value.isprintable():
        raise _FieldError("bad_field", f"{name} contains control characters")
    return value


def _nonempty_str(name: str, value: Any) -> str:
    return _str(name, value, allow_empty=False)


def _optional_str(name: str, value: Any) -> str | None:
    return None if value is None else _str(name, value)


def _optional_finite_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise _FieldError("bad_field", f"{name} must be a float or None, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _FieldError("bad_field", f"{name} must be finite, got {number}")
    return number


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _FieldError("bad_field", f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _schema(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _FieldError("bad_version", f"{name} must be an int, got {type(value).__name__}")
    if int(value) != SCHEMA_VERSION:
        raise _FieldError("bad_version", f"schema {value} not supported (this side speaks {SCHEMA_VERSION})")
    return int(value)


def _dtype(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in DTYPES:
        raise _FieldError("bad_dtype", f"{name} must be one of {DTYPES}, got {value!r:.60}")
    return value


def _pixel_format(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in PIXEL_FORMATS:
        raise _FieldError("bad_field", f"{name} must be one of {tuple(PIXEL_FORMATS)}, got {value!r:.60}")
    return value


def _encoding(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in ENCODINGS:
        raise _FieldError("bad_field", f"{name} must be one of {ENCODINGS}, got {value!r:.60}")
    return value


def _decision(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in DECISIONS:
        raise _FieldError("bad_field", f"{name} must be one of {DECISIONS}, got {value!r:.60}")
    return value


_REASON_CODE = re.compile(r"[a-z][a-z0-9_]*")


def _reason_code(name: str, value: Any) -> str:
    """"" or a lower-case snake_case code ([a-z][a-z0-9_]*)."""
    text = _str(name, value)
    if text and not _REASON_CODE.fullmatch(text):
        raise _FieldError("bad_field", f"{name} must be a snake_case code, got {text!r}")
    return text


def _shape(name: str, value: Any) -> tuple[int, int, int]:
    """(H, W, C): 1 <= H, W <= MAX_DIM, C in {1, 3}, H*W*C <= MAX_PAYLOAD_BYTES."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _FieldError("bad_shape", f"{name} must be a list [H, W, C], got {value!r:.60}")
    dims = []
    for dim in value:
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
            raise _FieldError("bad_shape", f"{name} entries must be ints, got {type(dim).__name__}")
        dims.append(int(dim))
    height, width, channels = dims
    if not (1 <= height <= MAX_DIM and 1 <= width <= MAX_DIM):
        raise _FieldError("bad_shape", f"{name} H and W must be in [1, {MAX_DIM}], got {dims}")
    if channels not in (1, 3):
        raise _FieldError("bad_shape", f"{name} C must be 1 or 3, got {channels}")
    if height * width * channels > MAX_PAYLOAD_BYTES:
        raise _FieldError("too_large", f"{name} {dims} is over MAX_PAYLOAD_BYTES={MAX_PAYLOAD_BYTES}")
    return height, width, channels


_Check = Callable[[str, Any], Any]

# field -> (check, required). Order matters: the checks run in this order and the first failure
# is the one reported; the schema goes first since it decides how to read the rest.
_HEADER_FIELDS: dict[str, tuple[_Check, bool]] = {
    "schema": (_schema, True),
    "camera_id": (_nonempty_str, True),
    "seq": (_int, True),
    "session": (_int, True),
    "part_id": (_str, True),
    "capture_ns": (_int, True),
    "deadline_ns": (_int, True),
    "label": (_optional_str, False),
    "source": (_optional_str, False),
    "dtype": (_dtype, True),
    "pixel_format": (_pixel_format, True),
    "encoding": (_encoding, True),
    "shape": (_shape, True),
}

_VERDICT_FIELDS: dict[str, tuple[_Check, bool]] = {
    "schema": (_schema, True),
    "camera_id": (_nonempty_str, True),
    "seq": (_int, True),
    "part_id": (_str, True),
    "capture_ns": (_int, True),
    "decision": (_decision, True),
    "reason": (_reason_code, True),
    "score": (_optional_finite_float, True),
    "threshold": (_optional_finite_float, True),
    "decided_ns": (_int, True),
    "label": (_optional_str, False),
    "defect_area_px": (_optional_int, False),
    "session": (_int, True),
    "epoch": (_int, True),
}

_HEARTBEAT_FIELDS: dict[str, tuple[_Check, bool]] = {
    "schema": (_schema, True),
    "daemon_id": (_nonempty_str, True),
    "counter": (_int, True),
    "sent_ns": (_int, True),
    "ready": (_bool, True),
    "epoch": (_int, True),
}


def _fit(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in FITS:
        raise _FieldError("bad_field", f"{name} must be one of {FITS}, got {value!r:.60}")
    return value


def _finite_float(name: str, value: Any) -> float:
    number = _optional_finite_float(name, value)
    if number is None:
        raise _FieldError("bad_field", f"{name} must be a finite float, got None")
    return number


def _dim(name: str, value: Any) -> int:
    number = _int(name, value)
    if not 1 <= number <= MAX_DIM:
        raise _FieldError("bad_shape", f"{name} must be in [1, {MAX_DIM}], got {number}")
    return number


_MAP_FIELDS: dict[str, tuple[_Check, bool]] = {
    "schema": (_schema, True),
    "camera_id": (_nonempty_str, True),
    "seq": (_int, True),
    "capture_ns": (_int, True),
    "height": (_dim, True),              # the map's own size (the engine's inspection size)
    "width": (_dim, True),
    "fit": (_fit, True),                 # how the camera image was fitted to it (core.preprocess.FITS)
    "lo": (_finite_float, True),         # byte 0 -> lo, byte 255 -> hi (linear)
    "hi": (_finite_float, True),
    "pixel_threshold": (_optional_finite_float, True),  # the profile's region rule (None: none)
}


def _check_fields(what: str, raw: Any, fields: dict[str, tuple[_Check, bool]]) -> dict[str, Any]:
    """Validate a decoded/encodable map against a field table; returns the normalised values.

    Every field is checked (so the error can carry all readable fields); the first failure in
    table order is raised as WireError with ``header`` = dict of the fields that passed.
    """
    if not isinstance(raw, dict):
        raise WireError("bad_header", f"{what} must be a map, got {type(raw).__name__}")
    good: dict[str, Any] = {}
    first: _FieldError | None = None
    for key, (check, required) in fields.items():
        if key not in raw:
            if required and first is None:
                first = _FieldError("bad_version" if key == "schema" else "bad_field", f"{what} lacks {key!r}")
            continue
        try:
            good[key] = check(key, raw[key])
        except _FieldError as error:
            if first is None:
                first = error
    unknown = [key for key in raw if key not in fields]
    if first is None and unknown:
        first = _FieldError("bad_field", f"{what} has unknown keys {[repr(k)[:40] for k in unknown[:5]]}")
    if first is not None:
        raise WireError(first.reason, first.message, header=good)
    return {key: good.get(key) for key in fields}  # absent optional fields -> None


def _unpack_map(what: str, data: Any, max_bytes: int) -> Any:
    """msgpack-decode untrusted bytes with every size limit set; any failure -> WireError."""
    view = _as_buffer(data, what)
    if view.nbytes > max_bytes:
        raise WireError("too_large", f"{what} is {view.nbytes} bytes, more than {max_bytes}")
    if view.nbytes == 0:
        raise WireError("bad_header", f"{what} is empty")
    try:
        return msgpack.unpackb(
            view,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=max_bytes,
            max_bin_len=0,
            max_array_len=16,
            max_map_len=32,
            max_ext_len=0,
        )
    except Exception as error:  # msgpack raises ValueError, TypeError, its own classes...
        raise WireError("bad_header", f"{what} is not valid msgpack ({type(error).__name__}: {error})"[:300]) from None


LEGACY_SCHEMA = 1  # read only from recordings (decode_header / decode_message with legacy=True)


def upgrade_legacy(raw: Any, added: dict[str, Any]) -> Any:
    """A schema-1 map as schema 2: the keys schema 2 added get the values in ``added`` (keys the
    map already has are kept, so the strict checks still refuse them). Anything else unchanged."""
    if isinstance(raw, dict) and raw.get("schema") == LEGACY_SCHEMA and not isinstance(raw.get("schema"), bool):
        return {**added, **raw, "schema": SCHEMA_VERSION}
    return raw


def _packb(payload: dict[str, Any]) -> bytes:
    return msgpack.packb(payload, use_bin_type=True)


def _as_buffer(part: Any, what: str) -> memoryview:
    """bytes / bytearray / memoryview / zmq.Frame -> 1-D unsigned-byte memoryview (no copy)."""
    if isinstance(part, zmq.Frame):
        part = part.buffer
    try:
        view = memoryview(part)
    except TypeError:
        raise WireError("bad_parts", f"{what} is a {type(part).__name__}, not a buffer") from None
    if view.ndim != 1 or view.format != "B":
        try:
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        except TypeError:
            view = memoryview(view.tobytes())
    return view
