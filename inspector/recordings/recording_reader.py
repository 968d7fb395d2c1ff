"""Reading MCAP recordings front to back: every record validated, a cut file told apart from a
damaged one (see :mod:`inspector.recordings.recording`)."""

from __future__ import annotations

import io
import logging
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import msgpack
import numpy as np
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, DataEnd, Header, Message, Metadata
from mcap.stream_reader import breakup_chunk

from inspector.line import wire
from inspector.line.wire import FrameHeader, Verdict, WireError
from inspector.recordings.mcap_format import (FOOTER_BODY_BYTES, KNOWN_OPCODES, MAX_RECORD_BYTES, MCAP_MAGIC,
                                              MESSAGE_ENCODING, METADATA_NAME, RECORD_PREFIX, RecordingError,
                                              VERDICT_TOPIC, check_payload, frame_topic)

log = logging.getLogger(__name__)


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
            prefix = self._read(RECORD_PREFIX.size)
            if len(prefix) < RECORD_PREFIX.size:
                self._truncated(f"file ends at byte {self._pos} without an MCAP footer")
                return
            opcode, length = RECORD_PREFIX.unpack(prefix)
            if opcode not in KNOWN_OPCODES and opcode < 0x80:
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
        header_bytes = msgpack.packb(wire.upgrade_legacy(message["header"], {"session": 0}), use_bin_type=True)
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
        tail_size = RECORD_PREFIX.size + FOOTER_BODY_BYTES + len(MCAP_MAGIC)
        if size < len(MCAP_MAGIC) + tail_size:
            return False
        with open(self.path, "rb") as f:
            f.seek(size - tail_size)
            tail = f.read(tail_size)
        opcode, length = RECORD_PREFIX.unpack_from(tail)
        return opcode == Opcode.FOOTER and length == FOOTER_BODY_BYTES and tail.endswith(MCAP_MAGIC)

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
                verdict = wire.decode_message([wire.TOPIC_VERDICT, message.data], legacy=True)
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
                check_payload(header, payload)
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
