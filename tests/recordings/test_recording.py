"""Tests for the MCAP recording format (inspector.recordings.recording: writer, reader, truncation and
damage, record_from_folder), with real files. Replay and `inspector record` are in test_record_replay.py."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

from recording_helpers import (REPO, TIMEOUT_S, chunk_spans, make_header, make_verdict, mvtec_folder, random_image,
                               smooth_image, write_frames)
from inspector.line import wire
from inspector.recordings.recording import (RecordingError, RecordingWriter, frame_topic, open_recording,
                                            record_from_folder)
from inspector.line.wire import FrameHeader, Verdict, WireError

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------------------------------
# format: round trip
# ------------------------------------------------------------------------------------------


def test_round_trip_raw_jpeg_mono_colour_cameras_and_verdicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "rt.mcap"
    cases = [  # camera, shape, pixel format, encoding
        ("cam0", (20, 30, 3), "bgr8", "raw"),
        ("cam1", (16, 24, 1), "mono8", "raw"),
        ("cam2", (32, 40, 3), "bgr8", "jpeg"),
        ("cam3", (32, 32, 1), "mono8", "jpeg"),
    ]
    written: list[tuple[FrameHeader, np.ndarray, bytes | None]] = []
    verdicts: list[Verdict] = []
    with RecordingWriter(path, chunk_size=4096, metadata={"source": "unit-test", "line": 7}) as writer:
        for seq in range(3):
            for camera, shape, pixel_format, encoding in cases:
                header = make_header(camera, seq, shape, pixel_format=pixel_format, encoding=encoding,
                                 label="good" if seq else "crack")
                image = random_image(rng, shape) if encoding == "raw" else smooth_image(shape, seq)
                if encoding == "jpeg" and seq == 1:  # JPEG bytes as they came off the wire
                    header_bytes, jpeg = wire.encode_frame(header, image, encoding="jpeg", jpeg_quality=90)
                    writer.write_frame(header, jpeg)
                    written.append((header, image, jpeg))
                else:
                    writer.write_frame(header, image)
                    written.append((header, image, None))
                verdict = make_verdict(header, "REJECT" if seq == 0 else "OK")
                writer.write_verdict(verdict)
                verdicts.append(verdict)
        assert (writer.n_frames, writer.n_verdicts) == (12, 12)

    recording = open_recording(path)
    assert recording.truncated is False
    assert recording.metadata["source"] == "unit-test"
    assert json.loads(recording.metadata["line"]) == 7
    assert recording.metadata["format"] == "inspector.recording"
    assert recording.metadata["inspector_version"]
    frames = list(recording.iter_frames())
    assert len(frames) == len(written)
    for frame, (header, image, jpeg) in zip(frames, written):
        assert frame.header == replace(header, shape=tuple(header.shape))
        assert frame.image.shape == header.shape and frame.image.dtype == np.uint8
        if header.encoding == "raw":
            np.testing.assert_array_equal(frame.image, image)
            assert frame.payload == image.tobytes()
        else:
            assert frame.payload[:2] == b"\xff\xd8"
            assert np.abs(frame.image.astype(int) - image.astype(int)).mean() < 8
            if jpeg is not None:
                assert frame.payload == bytes(jpeg)  # stored as it came, not re-encoded
    assert [v.verdict for v in recording.iter_verdicts()] == verdicts

    only = list(recording.iter_frames(["cam1", "cam3"], decode_images=False))
    assert [f.header.camera_id for f in only] == ["cam1", "cam3"] * 3
    assert all(f.image is None for f in only)

    info = recording.info()
    assert info["n_frames"] == 12 and info["n_verdicts"] == 12
    assert info["cameras"] == {"cam0": 3, "cam1": 3, "cam2": 3, "cam3": 3}
    assert info["labels"] == {"crack": 4, "good": 8}
    assert info["decisions"] == {"OK": 8, "REJECT": 4}
    assert info["encodings"] == {"jpeg": 6, "raw": 6}
    assert info["truncated"] is False and info["complete_bytes"] == info["file_bytes"] == path.stat().st_size
    assert info["start_ns"] <= info["end_ns"]


def test_standard_mcap_reader_sees_channels_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "std.mcap"
    headers = write_frames(path, 5, chunk_size=2000)
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        topics = {c.topic: c for c in summary.channels.values()}
        assert set(topics) == {frame_topic("cam0")}
        assert topics[frame_topic("cam0")].message_encoding == "msgpack"
        assert summary.statistics.message_count == 5
        messages = [m for _, _, m in reader.iter_messages()]
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    assert [msgpack.unpackb(m.data)["header"]["seq"] for m in messages] == [h.seq for h in headers]
    assert [m.publish_time for m in messages] == [h.capture_ns for h in headers]
    assert metadata["inspector"]["format_version"] == "1"


def test_writer_rejects_bad_input_and_keeps_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "bad.mcap"
    header = make_header("cam0", 0, (4, 5, 3))
    with RecordingWriter(path) as writer:
        with pytest.raises(WireError, match="size_mismatch"):
            writer.write_frame(header, b"\x00" * 59)
        with pytest.raises(WireError):
            writer.write_frame(replace(header, camera_id=""), b"\x00" * 60)
        with pytest.raises(WireError, match="not a JPEG"):
            writer.write_frame(replace(header, encoding="jpeg"), b"\x00" * 60)
        with pytest.raises(WireError):
            writer.write_verdict(replace(make_verdict(header), decision="MAYBE"))
        writer.write_frame(header, bytes(range(60)))
    with pytest.raises(RecordingError, match="closed"):
        writer.write_frame(header, bytes(60))
    with pytest.raises(RecordingError, match="already exists"):
        RecordingWriter(path)
    assert [f.payload for f in open_recording(path).iter_frames()] == [bytes(range(60))]
    with RecordingWriter(path, overwrite=True):
        pass
    assert open_recording(path).info()["n_frames"] == 0


# ------------------------------------------------------------------------------------------
# truncation and crash safety
# ------------------------------------------------------------------------------------------


def test_truncated_files_yield_exactly_the_complete_chunks(tmp_path: Path, caplog) -> None:
    full = tmp_path / "full.mcap"
    headers = write_frames(full, 14, chunk_size=6000, shape=(24, 32, 3))  # ~2.3 kB per frame
    data = full.read_bytes()
    spans = chunk_spans(full)
    assert len(spans) >= 4 and sum(n for _, _, n in spans) == 14

    def expected_frames(cut: int) -> int:
        return sum(n for _, end, n in spans if end <= cut)

    first_chunk = spans[0][0]
    footer_start = len(data) - 8 - (9 + 20)
    cuts = {8, 12, first_chunk - 3, first_chunk + 1, footer_start, footer_start + 10, len(data) - 1, len(data) - 8,
            len(data) - 40}
    for start, end, _ in spans:
        cuts |= {(start + end) // 2, end, end + 1, end + 15}
    for cut in sorted(cuts):
        path = tmp_path / f"cut_{cut}.mcap"
        path.write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="inspector.recordings.recording"):
            recording = open_recording(path)
            assert recording.truncated is True
            seqs = [f.header.seq for f in recording.iter_frames()]
            info = recording.info()
        assert seqs == [h.seq for h in headers[: expected_frames(cut)]], f"cut at {cut}"
        assert info["truncated"] is True and info["n_frames"] == len(seqs)
        assert info["truncation"] and info["complete_bytes"] <= cut
        assert any("truncated" in r.getMessage() for r in caplog.records)


CRASHING_WRITER = """
import sys, time, numpy as np
from inspector.recordings.recording import RecordingWriter
from inspector.line.wire import FrameHeader
rng = np.random.default_rng(0)
w = RecordingWriter(sys.argv[1], chunk_size=1 << 30, flush_interval_s=3600)
for seq in range(25):
    if seq == 20:
        w.flush()
        print("flushed", flush=True)
    w.write_frame(FrameHeader("cam0", seq, "p", time.time_ns(), 0, (8, 8, 3)), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
time.sleep(60)
"""


def test_killed_writer_loses_only_the_open_chunk(tmp_path: Path) -> None:
    path = tmp_path / "crash.mcap"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        time.sleep(0.2)  # let it write the 5 frames of the open chunk
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT_S)
    recording = open_recording(path)
    assert [f.header.seq for f in recording.iter_frames()] == list(range(20))
    assert recording.truncated is True


def test_open_chunk_reaches_the_disk_after_the_flush_interval(tmp_path: Path) -> None:
    """A quiet stream: flush_if_due() pushes the open chunk out, so a copy taken without close
    (what a crash leaves) holds every frame written so far."""
    path = tmp_path / "quiet.mcap"
    writer = RecordingWriter(path, chunk_size=1 << 30, flush_interval_s=0.2)
    for seq in range(3):
        writer.write_frame(make_header("cam0", seq, (4, 4, 1), pixel_format="mono8"), bytes(16))
    assert writer.flush_if_due() is False
    before = tmp_path / "before.mcap"
    before.write_bytes(path.read_bytes())
    time.sleep(0.25)
    assert writer.flush_if_due() is True
    after = tmp_path / "after.mcap"
    after.write_bytes(path.read_bytes())
    writer.close()
    assert open_recording(before).info()["n_frames"] == 0
    crashed = open_recording(after)
    assert [f.header.seq for f in crashed.iter_frames()] == [0, 1, 2] and crashed.truncated is True
    assert open_recording(path).info()["n_frames"] == 3


# ------------------------------------------------------------------------------------------
# corrupt files
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (os.urandom(4096), "not an MCAP file"),
        (b"hello, this is not a recording\n", "not an MCAP file"),
        (b"\x89MCA", "too short"),
    ],
)
def test_non_mcap_files_raise_recording_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk.mcap"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message) as error:
        open_recording(path)
    assert str(path) in str(error.value)


def test_missing_file_raises_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such recording"):
        open_recording(tmp_path / "nope.mcap")


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_flipped_bytes_inside_a_chunk_raise_recording_error(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "flip.mcap"
    write_frames(path, 8, chunk_size=5000, compression=compression)
    spans = chunk_spans(path)
    start = spans[1][0]
    data = bytearray(path.read_bytes())
    for offset in range(start + 80, start + 90):  # inside the chunk's (compressed) data
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    recording = open_recording(path)  # the start of the file is fine
    seen = []
    with pytest.raises(RecordingError, match=rf"chunk at byte {start}") as error:
        for frame in recording.iter_frames():
            seen.append(frame.header.seq)
    assert str(path) in str(error.value)
    assert seen == list(range(spans[0][2]))  # the frames before the damage came out
    with pytest.raises(RecordingError, match="damaged chunk"):
        recording.info()


def test_damaged_record_opcode_and_closing_magic_raise(tmp_path: Path) -> None:
    path = tmp_path / "op.mcap"
    write_frames(path, 6, chunk_size=3000)
    good = path.read_bytes()
    start = chunk_spans(path)[1][0]
    bad_opcode = bytearray(good)
    bad_opcode[start] = 0x42
    path.write_bytes(bytes(bad_opcode))
    with pytest.raises(RecordingError, match=rf"invalid record opcode 0x42 at byte {start}"):
        list(open_recording(path).iter_frames())
    bad_magic = bytearray(good)
    bad_magic[-3] ^= 0xFF
    path.write_bytes(bytes(bad_magic))
    with pytest.raises(RecordingError, match="closing magic"):
        open_recording(path).info()


def test_invalid_frame_message_raises_recording_error(tmp_path: Path) -> None:
    """A well-formed MCAP whose frame message fails the wire's checks (raw size mismatch)."""
    path = tmp_path / "msg.mcap"
    header_map = msgpack.unpackb(wire.encode_header(make_header("cam0", 0, (4, 4, 3))))
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start()
        channel = writer.register_channel(frame_topic("cam0"), "msgpack", 0, {"kind": "frames", "camera_id": "cam0"})
        writer.add_message(channel, 1, msgpack.packb({"header": header_map, "payload": b"\x00" * 47}), 1)
        writer.finish()
    with pytest.raises(RecordingError, match=r"/camera/cam0/frames.*size_mismatch"):
        list(open_recording(path).iter_frames())


# ------------------------------------------------------------------------------------------
# record_from_folder
# ------------------------------------------------------------------------------------------



def test_record_from_folder_labels_sources_and_timing(tmp_path: Path) -> None:
    images = mvtec_folder(tmp_path / "ds")
    out = tmp_path / "folder.mcap"
    summary = record_from_folder(tmp_path / "ds", out, camera_id="line1", fps=20.0, start_ns=10**18)
    assert summary["n_frames"] == 4 and summary["labels"] == {"crack": 1, "good": 2, "scratch": 1}
    assert len(summary["skipped"]) == 1 and summary["skipped"][0][0].endswith("crack/001.png")
    frames = list(open_recording(out).iter_frames())
    assert [f.header.source for f in frames] == ["crack/000.png", "good/000.png", "good/001.png", "scratch/007.png"]
    assert [f.header.label for f in frames] == ["crack", "good", "good", "scratch"]
    assert [f.header.seq for f in frames] == [0, 1, 2, 3]
    assert [f.header.capture_ns for f in frames] == [10**18 + i * 50_000_000 for i in range(4)]
    assert all(f.header.camera_id == "line1" for f in frames)
    for frame in frames:
        expected = images[frame.header.source]
        expected = expected[:, :, None] if expected.ndim == 2 else expected
        np.testing.assert_array_equal(frame.image, expected)
        assert frame.header.pixel_format == ("mono8" if expected.shape[2] == 1 else "bgr8")
        assert frame.header.deadline_ns - frame.header.capture_ns == 1_000_000_000


def test_record_from_folder_jpeg_resized_and_errors(tmp_path: Path) -> None:
    mvtec_folder(tmp_path / "ds")
    out = tmp_path / "folder_jpeg.mcap"
    record_from_folder(tmp_path / "ds", out, encoding="jpeg", image_size=(16, 12))
    frames = list(open_recording(out).iter_frames())
    assert {f.header.encoding for f in frames} == {"jpeg"}
    assert [f.image.shape for f in frames] == [(16, 12, 1), (16, 12, 3), (16, 12, 3), (16, 12, 3)]
    with pytest.raises(RecordingError, match="no test/ folder"):
        record_from_folder(tmp_path / "ds" / "train", tmp_path / "x.mcap")
    with pytest.raises(RecordingError, match="already exists"):
        record_from_folder(tmp_path / "ds", out)
