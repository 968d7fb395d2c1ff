"""MCAP recordings of frame streams and verdicts: write, read, make from an MVTec folder.

A recording is a standard MCAP file (https://mcap.dev), so stock MCAP tools can list, cut and
merge it (see docs/recordings.md). Layout:

* one channel per camera, topic ``/camera/<camera_id>/frames``, message encoding ``msgpack``,
  no schema, channel metadata ``{"kind": "frames", "camera_id": <id>}``. Each message is a
  msgpack map ``{"header": <wire header map>, "payload": <bin>}``: the header exactly as
  ``wire.encode_header`` packs it, the payload exactly as it travelled (raw pixels, C-contiguous
  uint8 H x W x C, or the JPEG file as the camera sent it);
* one channel ``/verdicts`` (``{"kind": "verdicts"}``): each message is the verdict's msgpack map
  exactly as ``wire.encode_verdict`` packs it;
* a Metadata record named ``inspector``: format name/version, inspector version, creator command,
  creation time and whatever the caller adds (e.g. ``source``);
* MCAP log_time = when the recorder got the message (``time.time_ns()``), publish_time = the
  frame's capture_ns (verdicts: decided_ns), sequence = seq mod 2**32.

Crash safety: chunks are closed (compressed, written and flushed to the OS) every
``flush_interval_s`` and whenever they reach ``chunk_size``, so a crash loses at most the open
chunk. Reading never trusts the summary section: the file is read front to back, record by
record, so a file cut anywhere (a crashed recorder, a full disk, a copy in progress) yields every
message of its complete chunks and reports ``truncated=True``.

Reading validates everything: chunk CRCs, the data-section CRC, every message with the wire's own
strict decoders. A file that is not MCAP, is empty, or is damaged inside a complete record raises
:class:`RecordingError` naming the file, the byte offset and the problem. Only a file that simply
ends early is a (logged) truncation. A damaged record *length* that points past the end of the
file cannot be told apart from a cut and is therefore read as a truncation.

No torch here (line side).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import cv2
import msgpack
import numpy as np
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, DataEnd, Header, Message, Metadata
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer

from inspector import __version__
from inspector.line import wire
from inspector.core import dataset_layout
from inspector.core.images import DatasetError, read_image
from inspector.line.wire import FrameHeader, Verdict, WireError

log = logging.getLogger(__name__)

FORMAT_NAME = "inspector.recording"
FORMAT_VERSION = 1
METADATA_NAME = "inspector"
MESSAGE_ENCODING = "msgpack"
VERDICT_TOPIC = "/verdicts"
COMPRESSIONS = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
DEFAULT_CHUNK_SIZE = 4 * 2**20
DEFAULT_FLUSH_INTERVAL_S = 1.0

MCAP_MAGIC = b"\x89MCAP0\r\n"
_RECORD_PREFIX = struct.Struct("<BQ")  # opcode, body length
_FOOTER_BODY_BYTES = 8 + 8 + 4
# Larger than any record our writer makes (a chunk holds chunk_size bytes plus at most one frame
# of wire.MAX_PAYLOAD_BYTES); a bigger length can only be damage.
MAX_RECORD_BYTES = 2**30
_MAX_FRAME_MESSAGE_BYTES = wire.MAX_PAYLOAD_BYTES + wire.MAX_HEADER_BYTES + 64
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


class RecordingError(ValueError):
    """A recording that cannot be read or written: the message names the file and the problem."""


def frame_topic(camera_id: str) -> str:
    """MCAP topic of one camera's frames: ``/camera/<camera_id>/frames``."""
    return f"/camera/{camera_id}/frames"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _metadata_strings(metadata: dict[str, Any] | None) -> dict[str, str]:
    """The ``inspector`` metadata record: standard keys plus the caller's (values as strings;
    non-strings are JSON-encoded). The format keys cannot be overridden."""
    now_ns = time.time_ns()
    record = {
        "inspector_version": __version__,
        "created_ns": str(now_ns),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
        "creator": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python",
    }
    for key, value in (metadata or {}).items():
        record[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    record["format"] = FORMAT_NAME
    record["format_version"] = str(FORMAT_VERSION)
    return record


def _check_payload(header: FrameHeader, payload: bytes | memoryview) -> None:
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


class RecordingWriter:
    """Write frames and verdicts to an MCAP recording (a context manager; not thread-safe).

    ``path``: the file to create. An existing file is an error unless ``overwrite=True``.
    ``compression``: "zstd" (default), "lz4" or "none", per chunk. ``chunk_size``: bytes of
    uncompressed messages per chunk. ``flush_interval_s``: the open chunk is closed and flushed
    to the OS at least this often (a crash loses at most that much). ``metadata``: extra
    key/values for the ``inspector`` metadata record (e.g. ``{"source": "tcp://..."}``).
    The file is written in place, so a crash leaves a truncated but readable recording.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        compression: str = "zstd",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        metadata: dict[str, Any] | None = None,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        overwrite: bool = False,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {tuple(COMPRESSIONS)}, got {compression!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        self.path = Path(path)
        try:
            self._file: IO[bytes] = open(self.path, "wb" if overwrite else "xb")
        except FileExistsError:
            raise RecordingError(f"{self.path}: already exists (pass overwrite=True / --force to replace it)") from None
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot create the recording: {exc}") from exc
        try:
            self._mcap = Writer(self._file, chunk_size=chunk_size, compression=COMPRESSIONS[compression],
                                enable_data_crcs=True)
            self._mcap.start(profile="", library=f"inspector/{__version__}")
            self.metadata = _metadata_strings(metadata)
            self._mcap.add_metadata(METADATA_NAME, self.metadata)
            self._file.flush()
        except BaseException:
            self._file.close()
            self.path.unlink(missing_ok=True)
            raise
        self._flush_interval_ns = int(flush_interval_s * 1e9)
        self._last_flush_ns = time.monotonic_ns()
        self._last_tell = self._file.tell()
        self._frame_channels: dict[str, int] = {}
        self._verdict_channel: int | None = None
        self.n_frames = 0
        self.n_verdicts = 0
        self.closed = False

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def write_frame(
        self, header: FrameHeader, payload: bytes | memoryview | np.ndarray, log_time_ns: int | None = None,
        *, jpeg_quality: int = 95,
    ) -> None:
        """Append one frame.

        ``payload``: an image (uint8 H x W x C matching ``header.pixel_format``; encoded with
        ``header.encoding``, JPEG at ``jpeg_quality``) or the wire payload bytes as received
        (raw pixels or a JPEG file, stored unchanged after cheap size checks).
        ``log_time_ns``: receive time, default now. Raises WireError for an invalid header or
        payload (nothing is written), RecordingError after close.
        """
        self._check_open()
        if isinstance(payload, np.ndarray):
            header_bytes, payload = wire.encode_frame(header, payload, encoding=header.encoding, jpeg_quality=jpeg_quality)
            header = wire.decode_header(header_bytes)
        else:
            header_bytes = wire.encode_header(header)  # validates
            header = wire.decode_header(header_bytes)  # normalised (shape a tuple of ints, ...)
            _check_payload(header, payload)
        header_map = msgpack.unpackb(header_bytes, raw=False)
        data = msgpack.packb({"header": header_map, "payload": payload}, use_bin_type=True)
        self._add(self._frame_channel(header.camera_id), data, log_time_ns, header.capture_ns, header.seq)
        self.n_frames += 1

    def write_verdict(self, v: Verdict, log_time_ns: int | None = None) -> None:
        """Append one verdict (validated by ``wire.encode_verdict``; raises WireError)."""
        self._check_open()
        _, body = wire.encode_verdict(v)
        if self._verdict_channel is None:
            self._verdict_channel = self._mcap.register_channel(
                VERDICT_TOPIC, MESSAGE_ENCODING, 0, {"kind": "verdicts"}
            )
        self._add(self._verdict_channel, body, log_time_ns, v.decided_ns, v.seq)
        self.n_verdicts += 1

    def flush(self) -> None:
        """Close the open chunk and push everything to the OS (not fsync)."""
        self._check_open()
        self._mcap.flush()
        self._last_flush_ns = time.monotonic_ns()
        self._last_tell = self._file.tell()

    def flush_if_due(self) -> bool:
        """Flush when ``flush_interval_s`` has passed since the last flush (call it while idle
        too, so a quiet stream does not keep its last messages in memory). True if it flushed."""
        self._check_open()
        if time.monotonic_ns() - self._last_flush_ns < self._flush_interval_ns:
            return False
        self.flush()
        return True

    def close(self) -> None:
        """Write the summary and footer and close the file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._mcap.finish()
            self._file.flush()
        finally:
            self._file.close()

    def _check_open(self) -> None:
        if self.closed:
            raise RecordingError(f"{self.path}: recording already closed")

    def _frame_channel(self, camera_id: str) -> int:
        channel = self._frame_channels.get(camera_id)
        if channel is None:
            channel = self._mcap.register_channel(
                frame_topic(camera_id), MESSAGE_ENCODING, 0, {"kind": "frames", "camera_id": camera_id}
            )
            self._frame_channels[camera_id] = channel
        return channel

    def _add(self, channel: int, data: bytes, log_time_ns: int | None, publish_ns: int, seq: int) -> None:
        log_time = time.time_ns() if log_time_ns is None else int(log_time_ns)
        self._mcap.add_message(channel, log_time=log_time, data=data, publish_time=publish_ns, sequence=seq & 0xFFFFFFFF)
        if self.flush_if_due():
            return
        if self._file.tell() != self._last_tell:  # the writer closed a full chunk: hand it to the OS
            self._file.flush()
            self._last_tell = self._file.tell()


# --------------------------------------------------------------------------------------------
# Reading: a front-to-back record scanner that tells a cut file from a damaged one
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedFrame:
    """One recorded frame. ``image``: uint8 H x W x C (read-only for raw frames) in the header's
    pixel format, or None when read with ``decode_images=False``. ``payload``: the wire payload
    as stored (raw pixels or JPEG file). ``log_time_ns``: when the recorder got it."""

    header: FrameHeader
    image: np.ndarray | None
    log_time_ns: int
    payload: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class RecordedVerdict:
    """One recorded verdict and when the recorder got it."""

    verdict: Verdict
    log_time_ns: int


@dataclass
class _ScanState:
    """What a front-to-back pass found out about the file's end."""

    truncated: bool = False
    complete_bytes: int = 0  # bytes up to the end of the last complete record
    file_bytes: int = 0
    reason: str = ""


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode 0x{opcode:02X}"


class _Scanner:
    """Reads the top-level MCAP records of one file front to back.

    ``records()`` yields ``(offset, opcode, body)`` for complete records until the footer and
    trailing magic. A file that ends early ends the iteration with ``state.truncated = True``;
    anything malformed raises RecordingError.
    """

    def __init__(self, path: Path, stream: IO[bytes]) -> None:
        self.path = path
        self._stream = stream
        self._pos = 0
        self._crc = 0
        self.state = _ScanState()

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self._pos += len(data)
        return data

    def _truncated(self, reason: str) -> None:
        self.state.truncated = True
        self.state.reason = reason

    def read_magic(self) -> None:
        magic = self._read(len(MCAP_MAGIC))
        if not magic:
            raise RecordingError(f"{self.path}: empty file, not an MCAP recording")
        if magic != MCAP_MAGIC[: len(magic)]:
            raise RecordingError(f"{self.path}: not an MCAP file (bad magic bytes {magic[:8]!r})")
        if len(magic) < len(MCAP_MAGIC):
            raise RecordingError(f"{self.path}: only {len(magic)} bytes, too short to be an MCAP recording")
        self._crc = zlib.crc32(magic)
        self.state.complete_bytes = self._pos

    def records(self) -> Iterator[tuple[int, int, bytes]]:
        while True:
            offset = self._pos
            prefix = self._read(_RECORD_PREFIX.size)
            if len(prefix) < _RECORD_PREFIX.size:
                self._truncated(f"file ends at byte {self._pos} without an MCAP footer")
                return
            opcode, length = _RECORD_PREFIX.unpack(prefix)
            if opcode not in _KNOWN_OPCODES and opcode < 0x80:
                raise RecordingError(f"{self.path}: damaged file: invalid record opcode 0x{opcode:02X} at byte {offset}")
            if length > MAX_RECORD_BYTES:
                raise RecordingError(
                    f"{self.path}: damaged file: {_opcode_name(opcode)} record at byte {offset} claims {length} bytes"
                )
            body = self._read(length)
            if len(body) < length:
                self._truncated(
                    f"file ends at byte {self._pos} inside a {_opcode_name(opcode)} record of {length} bytes "
                    f"starting at byte {offset}"
                )
                return
            if opcode == Opcode.DATA_END:
                self._check_data_crc(offset, body)
            self._crc = zlib.crc32(body, zlib.crc32(prefix, self._crc))
            self.state.complete_bytes = self._pos
            yield offset, opcode, body
            if opcode == Opcode.FOOTER:
                self._read_trailing_magic()
                return

    def _check_data_crc(self, offset: int, body: bytes) -> None:
        try:
            expected = DataEnd.read(ReadDataStream(io.BytesIO(body))).data_section_crc
        except Exception as exc:
            raise RecordingError(f"{self.path}: damaged DATA_END record at byte {offset}: {exc}") from None
        if expected and expected != self._crc:
            raise RecordingError(
                f"{self.path}: damaged file: data section CRC mismatch (stored 0x{expected:08X}, "
                f"computed 0x{self._crc:08X})"
            )

    def _read_trailing_magic(self) -> None:
        magic = self._read(len(MCAP_MAGIC))
        if len(magic) < len(MCAP_MAGIC) and magic == MCAP_MAGIC[: len(magic)]:
            self._truncated(f"file ends at byte {self._pos} inside the closing magic")
        elif magic != MCAP_MAGIC:
            raise RecordingError(f"{self.path}: damaged file: bad closing magic after the footer")
        else:
            self.state.complete_bytes = self._pos


def _parse(path: Path, offset: int, opcode: int, body: bytes, reader: Any) -> Any:
    """Parse one complete record body with an mcap record class; damage -> RecordingError."""
    stream = ReadDataStream(io.BytesIO(body))
    try:
        return reader(stream, len(body)) if reader is Message.read else reader(stream)
    except Exception as exc:  # EndOfFile, struct.error, UnicodeDecodeError, ...
        raise RecordingError(f"{path}: damaged {_opcode_name(opcode)} record at byte {offset}: {exc!r}"[:400]) from None


def _chunk_records(path: Path, offset: int, body: bytes) -> list[Any]:
    """Decompress and split one chunk, checking its CRC. Damage -> RecordingError."""
    chunk: Chunk = _parse(path, offset, Opcode.CHUNK, body, Chunk.read)
    if chunk.compression not in ("", "zstd", "lz4"):
        raise RecordingError(f"{path}: chunk at byte {offset} uses unsupported compression {chunk.compression!r}")
    if chunk.uncompressed_size > MAX_RECORD_BYTES:
        raise RecordingError(f"{path}: damaged chunk at byte {offset}: claims {chunk.uncompressed_size} bytes uncompressed")
    try:
        return breakup_chunk(chunk, validate_crc=True)
    except Exception as exc:
        raise RecordingError(f"{path}: damaged chunk at byte {offset}: {type(exc).__name__}: {exc}"[:400]) from None


@dataclass
class _Channel:
    id: int
    topic: str
    kind: str  # "frames" | "verdicts" | "other"
    camera_id: str | None


def _classify_channel(path: Path, channel: Channel) -> _Channel:
    kind = channel.metadata.get("kind", "")
    camera_id = channel.metadata.get("camera_id")
    is_ours = kind in ("frames", "verdicts")
    if is_ours and channel.message_encoding != MESSAGE_ENCODING:
        raise RecordingError(
            f"{path}: channel {channel.topic!r} has message encoding {channel.message_encoding!r}, "
            f"expected {MESSAGE_ENCODING!r}"
        )
    if kind == "frames" and (not camera_id or channel.topic != frame_topic(camera_id)):
        raise RecordingError(f"{path}: frame channel {channel.topic!r} has a bad camera_id {camera_id!r}")
    if kind == "verdicts" and channel.topic != VERDICT_TOPIC:
        raise RecordingError(f"{path}: verdict channel has topic {channel.topic!r}, expected {VERDICT_TOPIC!r}")
    return _Channel(channel.id, channel.topic, kind if is_ours else "other", camera_id)


def _unpack_frame_message(data: bytes) -> tuple[bytes, bytes]:
    """Frame message bytes -> (wire header bytes, payload bytes). Raises WireError."""
    try:
        message = msgpack.unpackb(
            data, raw=False, strict_map_key=True, max_bin_len=wire.MAX_PAYLOAD_BYTES,
            max_str_len=wire.MAX_HEADER_BYTES, max_array_len=16, max_map_len=32, max_ext_len=0,
        )
    except Exception as exc:
        raise WireError("bad_header", f"frame message is not valid msgpack ({type(exc).__name__}: {exc})"[:300]) from None
    if not isinstance(message, dict) or set(message) != {"header", "payload"}:
        raise WireError("bad_header", "frame message must be a map with exactly 'header' and 'payload'")
    if not isinstance(message["payload"], bytes):
        raise WireError("bad_field", f"frame payload must be bin, got {type(message['payload']).__name__}")
    try:
        header_bytes = msgpack.packb(message["header"], use_bin_type=True)
    except Exception as exc:
        raise WireError("bad_header", f"frame header cannot be re-packed: {exc}") from None
    return header_bytes, message["payload"]


class Recording:
    """A recording opened for reading (see :func:`open_recording`).

    Every iteration re-reads the file from the start, so iterators are independent. Attributes:
    ``path``; ``metadata`` (the ``inspector`` metadata record, {} if absent); ``library`` (the
    writer named in the MCAP header); ``truncated`` (True when the file lacks a complete footer,
    known from its tail at open and confirmed by every full pass).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(f"{self.path}: no such recording file")
        self.library = ""
        self.metadata: dict[str, str] = {}
        self.truncated = not self._has_complete_tail()
        self._warned = False
        self._read_head()

    # -- public API ---------------------------------------------------------------------------

    def iter_frames(self, cameras: set[str] | list[str] | None = None, *, decode_images: bool = True) -> Iterator[RecordedFrame]:
        """Frames in file order (= arrival order), optionally only of ``cameras``.

        Each is validated with the wire's decoders: ``decode_images=True`` runs
        ``wire.decode_frame`` (JPEG decoded); ``False`` checks the header and the payload size /
        JPEG frame header only and leaves ``image=None`` (fast, for replay and info). Raises
        RecordingError on damage; a truncated file just ends early (with a logged warning).
        """
        wanted = None if cameras is None else set(cameras)
        for item in self._iter_messages(frames=True, verdicts=False, decode_images=decode_images, cameras=wanted):
            yield item  # type: ignore[misc]

    def iter_verdicts(self) -> Iterator[RecordedVerdict]:
        """Verdicts in file order, each validated with ``wire.decode_message``."""
        for item in self._iter_messages(frames=False, verdicts=True, decode_images=False, cameras=None):
            yield item  # type: ignore[misc]

    def iter_messages(self, *, decode_images: bool = True) -> Iterator[RecordedFrame | RecordedVerdict]:
        """Frames and verdicts interleaved, in file order."""
        yield from self._iter_messages(frames=True, verdicts=True, decode_images=decode_images, cameras=None)

    def info(self) -> dict[str, Any]:
        """Summary from a full validating pass (images not decoded): n_frames, n_verdicts,
        cameras {id: frames}, labels {label: frames} (unlabelled frames under "(none)"),
        decisions {decision: verdicts}, encodings, start_ns / end_ns / duration_s (log times; None
        when empty), truncated, truncation (why, or ""), complete_bytes, file_bytes, metadata,
        library, path. Raises RecordingError on damage."""
        cameras: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        decisions: Counter[str] = Counter()
        encodings: Counter[str] = Counter()
        times: list[int] = []
        state = _ScanState()
        for item in self._iter_messages(frames=True, verdicts=True, decode_images=False, cameras=None, state_out=state):
            times.append(item.log_time_ns)
            if isinstance(item, RecordedFrame):
                cameras[item.header.camera_id] += 1
                labels[item.header.label if item.header.label is not None else "(none)"] += 1
                encodings[item.header.encoding] += 1
            else:
                decisions[item.verdict.decision] += 1
        start, end = (min(times), max(times)) if times else (None, None)
        return {
            "path": str(self.path),
            "n_frames": sum(cameras.values()),
            "n_verdicts": sum(decisions.values()),
            "cameras": dict(sorted(cameras.items())),
            "labels": dict(sorted(labels.items())),
            "decisions": dict(sorted(decisions.items())),
            "encodings": dict(sorted(encodings.items())),
            "start_ns": start,
            "end_ns": end,
            "duration_s": (end - start) / 1e9 if times else None,
            "truncated": state.truncated,
            "truncation": state.reason,
            "complete_bytes": state.complete_bytes,
            "file_bytes": state.file_bytes,
            "metadata": dict(self.metadata),
            "library": self.library,
        }

    # -- internals ----------------------------------------------------------------------------

    def _has_complete_tail(self) -> bool:
        """True when the file ends with a FOOTER record and the closing magic."""
        size = self.path.stat().st_size
        tail_size = _RECORD_PREFIX.size + _FOOTER_BODY_BYTES + len(MCAP_MAGIC)
        if size < len(MCAP_MAGIC) + tail_size:
            return False
        with open(self.path, "rb") as f:
            f.seek(size - tail_size)
            tail = f.read(tail_size)
        opcode, length = _RECORD_PREFIX.unpack_from(tail)
        return opcode == Opcode.FOOTER and length == _FOOTER_BODY_BYTES and tail.endswith(MCAP_MAGIC)

    def _read_head(self) -> None:
        """Check the magic and the Header record; read the metadata records before the first
        chunk. Raises RecordingError for a non-MCAP or damaged start."""
        with open(self.path, "rb") as f:
            scanner = _Scanner(self.path, f)
            scanner.read_magic()
            for index, (offset, opcode, body) in enumerate(scanner.records()):
                if index == 0:
                    self._check_header(offset, opcode, body)
                elif opcode == Opcode.METADATA:
                    record = _parse(self.path, offset, opcode, body, Metadata.read)
                    if record.name == METADATA_NAME:
                        self.metadata = dict(record.metadata)
                elif opcode in (Opcode.CHUNK, Opcode.MESSAGE, Opcode.DATA_END):
                    break

    def _check_header(self, offset: int, opcode: int, body: bytes) -> None:
        if opcode != Opcode.HEADER:
            raise RecordingError(f"{self.path}: damaged file: first record is {_opcode_name(opcode)}, not HEADER")
        self.library = _parse(self.path, offset, opcode, body, Header.read).library

    def _warn_truncated(self, state: _ScanState) -> None:
        self.truncated = True
        if not self._warned:
            self._warned = True
            log.warning(
                "%s: recording is truncated (%s); read everything up to byte %d of %d",
                self.path, state.reason, state.complete_bytes, state.file_bytes,
            )

    def _iter_messages(
        self, *, frames: bool, verdicts: bool, decode_images: bool, cameras: set[str] | None,
        state_out: _ScanState | None = None,
    ) -> Iterator[RecordedFrame | RecordedVerdict]:
        channels: dict[int, _Channel] = {}
        with open(self.path, "rb") as f:
            scanner = _Scanner(self.path, f)
            scanner.read_magic()
            for offset, opcode, body in scanner.records():
                for record in self._records_in(offset, opcode, body):
                    if isinstance(record, Channel):
                        channels.setdefault(record.id, _classify_channel(self.path, record))
                    elif isinstance(record, Message):
                        item = self._decode(record, channels, offset, frames, verdicts, decode_images, cameras)
                        if item is not None:
                            yield item
            scanner.state.file_bytes = os.fstat(f.fileno()).st_size
        if scanner.state.truncated:
            self._warn_truncated(scanner.state)
        else:
            self.truncated = False
        if state_out is not None:
            state_out.__dict__.update(scanner.state.__dict__)

    def _records_in(self, offset: int, opcode: int, body: bytes) -> list[Any]:
        if opcode == Opcode.CHUNK:
            return _chunk_records(self.path, offset, body)
        if opcode == Opcode.CHANNEL:
            return [_parse(self.path, offset, opcode, body, Channel.read)]
        if opcode == Opcode.MESSAGE:
            return [_parse(self.path, offset, opcode, body, Message.read)]
        return []

    def _decode(
        self, message: Message, channels: dict[int, _Channel], offset: int, frames: bool, verdicts: bool,
        decode_images: bool, cameras: set[str] | None,
    ) -> RecordedFrame | RecordedVerdict | None:
        channel = channels.get(message.channel_id)
        if channel is None:
            raise RecordingError(
                f"{self.path}: damaged file: message in record at byte {offset} uses unknown channel {message.channel_id}"
            )
        if channel.kind == "frames" and frames and (cameras is None or channel.camera_id in cameras):
            return self._decode_frame(message, channel, offset, decode_images)
        if channel.kind == "verdicts" and verdicts:
            try:
                verdict = wire.decode_message([wire.TOPIC_VERDICT, message.data])
            except WireError as exc:
                raise self._bad_message(channel, message, offset, exc) from None
            return RecordedVerdict(verdict, message.log_time)  # type: ignore[arg-type]
        return None

    def _decode_frame(self, message: Message, channel: _Channel, offset: int, decode_images: bool) -> RecordedFrame:
        try:
            header_bytes, payload = _unpack_frame_message(message.data)
            if decode_images:
                header, image = wire.decode_frame([header_bytes, payload])
            else:
                header, image = wire.decode_header(header_bytes), None
                _check_payload(header, payload)
        except WireError as exc:
            raise self._bad_message(channel, message, offset, exc) from None
        if header.camera_id != channel.camera_id:
            raise self._bad_message(channel, message, offset, f"camera_id {header.camera_id!r} on another camera's channel")
        return RecordedFrame(header, image, message.log_time, payload)

    def _bad_message(self, channel: _Channel, message: Message, offset: int, problem: Any) -> RecordingError:
        return RecordingError(
            f"{self.path}: invalid message on {channel.topic} (record at byte {offset}, log time "
            f"{message.log_time}): {problem}"
        )


def open_recording(path: str | os.PathLike) -> Recording:
    """Open a recording for reading. Raises RecordingError if the file is missing, empty, not
    MCAP or damaged at its start; damage further in is reported when iteration reaches it."""
    return Recording(path)


# --------------------------------------------------------------------------------------------
# Making a labelled recording from an MVTec AD-layout folder
# --------------------------------------------------------------------------------------------


def _resize(image: np.ndarray, image_size: int | tuple[int, int] | None) -> np.ndarray:
    """Resize uint8 H x W x C to ``image_size`` ((height, width), or an int for square), keeping
    H x W x C (mono stays H x W x 1)."""
    if image_size is None:
        return image
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if (height, width) == image.shape[:2]:
        return image
    resized = cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA)
    return resized.reshape(int(height), int(width), image.shape[2])


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
