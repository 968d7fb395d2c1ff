"""The recording format's definitions, shared by the writer and the reader: names, limits, the
error type, topics and the payload check (see :mod:`inspector.recordings.recording` for the layout)."""

from __future__ import annotations

import math
import struct

from mcap.opcode import Opcode
from mcap.writer import CompressionType

from inspector.line import wire
from inspector.line.wire import FrameHeader, WireError

FORMAT_NAME = "inspector.recording"
FORMAT_VERSION = 1
METADATA_NAME = "inspector"
MESSAGE_ENCODING = "msgpack"
VERDICT_TOPIC = "/verdicts"
COMPRESSIONS = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
DEFAULT_CHUNK_SIZE = 4 * 2**20
DEFAULT_FLUSH_INTERVAL_S = 1.0

MCAP_MAGIC = b"\x89MCAP0\r\n"
RECORD_PREFIX = struct.Struct("<BQ")  # opcode, body length
FOOTER_BODY_BYTES = 8 + 8 + 4
# Larger than any record our writer makes (a chunk holds chunk_size bytes plus at most one frame
# of wire.MAX_PAYLOAD_BYTES); a bigger length can only be damage.
MAX_RECORD_BYTES = 2**30
_MAX_FRAME_MESSAGE_BYTES = wire.MAX_PAYLOAD_BYTES + wire.MAX_HEADER_BYTES + 64
KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


class RecordingError(ValueError):
    """A recording that cannot be read or written: the message names the file and the problem."""


def frame_topic(camera_id: str) -> str:
    """MCAP topic of one camera's frames: ``/camera/<camera_id>/frames``."""
    return f"/camera/{camera_id}/frames"


def check_payload(header: FrameHeader, payload: bytes | memoryview) -> None:
    """Cheap payload checks without decoding: raw size == prod(shape); a JPEG's own frame
    header matches the header's shape. Raises WireError."""
    view = memoryview(payload).cast("B") if not isinstance(payload, bytes) else memoryview(payload)
    if view.nbytes > wire.MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"payload is {view.nbytes} bytes, more than {wire.MAX_PAYLOAD_BYTES}")
    if header.encoding == "raw":
        expected = math.prod(header.shape)
        if view.nbytes != expected:
            raise WireError("size_mismatch", f"raw payload is {view.nbytes} bytes, shape {header.shape} needs {expected}")
        return
    height, width, components, precision = wire.jpeg_frame_info(view)
    if (height, width, components) != tuple(header.shape) or precision != 8:
        raise WireError("size_mismatch", f"JPEG is {height} x {width} x {components} ({precision} bit), header says {header.shape}")
