"""Writing MCAP recordings of frames and verdicts, crash-safe (see :mod:`inspector.recordings.recording`)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import msgpack
import numpy as np
from mcap.writer import Writer

from inspector import __version__
from inspector.line import wire
from inspector.line.wire import FrameHeader, Verdict
from inspector.recordings.mcap_format import (COMPRESSIONS, DEFAULT_CHUNK_SIZE, DEFAULT_FLUSH_INTERVAL_S, FORMAT_NAME,
                                              FORMAT_VERSION, MESSAGE_ENCODING, METADATA_NAME, RecordingError,
                                              VERDICT_TOPIC, check_payload, frame_topic)


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
            check_payload(header, payload)
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
