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

Modules: :mod:`~inspector.recordings.mcap_format` (names, limits, error, payload check),
:mod:`~inspector.recordings.recording_writer` (``RecordingWriter``),
:mod:`~inspector.recordings.recording_reader` (``open_recording``, ``Recording``, recorded items),
:mod:`~inspector.recordings.from_folder` (``record_from_folder``); their public names are
importable from here.

No torch here (line side).
"""

from __future__ import annotations

from inspector.recordings.from_folder import record_from_folder
from inspector.recordings.mcap_format import (COMPRESSIONS, DEFAULT_CHUNK_SIZE, DEFAULT_FLUSH_INTERVAL_S, FORMAT_NAME,
                                              FORMAT_VERSION, MAX_RECORD_BYTES, MCAP_MAGIC, MESSAGE_ENCODING,
                                              METADATA_NAME, VERDICT_TOPIC, RecordingError, frame_topic)
from inspector.recordings.recording_reader import RecordedFrame, RecordedVerdict, Recording, open_recording
from inspector.recordings.recording_writer import RecordingWriter

__all__ = ["COMPRESSIONS", "DEFAULT_CHUNK_SIZE", "DEFAULT_FLUSH_INTERVAL_S", "FORMAT_NAME", "FORMAT_VERSION",
           "MAX_RECORD_BYTES", "MCAP_MAGIC", "MESSAGE_ENCODING", "METADATA_NAME", "VERDICT_TOPIC", "RecordedFrame",
           "RecordedVerdict", "Recording", "RecordingError", "RecordingWriter", "frame_topic", "open_recording",
           "record_from_folder"]
