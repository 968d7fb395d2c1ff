"""Tests for MCAP recordings: inspector.recordings.recording (format), inspector.recordings.record (`inspector record`)
and inspector.recordings.replay (`inspector replay`), with real files, real sockets and real processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
import zmq
from mcap.reader import make_reader
from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from mcap.writer import Writer

from inspector.line import wire
from inspector.recordings.recording import (
    RecordingError,
    RecordingWriter,
    frame_topic,
    open_recording,
    record_from_folder,
)
from inspector.recordings.replay import ReplayError, replay
from inspector.line.wire import FrameHeader, Verdict, WireError

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 15.0


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _header(camera: str, seq: int, shape: tuple, *, pixel_format: str = "bgr8", encoding: str = "raw",
            capture_ns: int | None = None, deadline_offset_ns: int = 200_000_000, label: str | None = "good") -> FrameHeader:
    capture = time.time_ns() if capture_ns is None else capture_ns
    return FrameHeader(
        camera_id=camera, seq=seq, part_id=f"{camera}-part-{seq}", capture_ns=capture,
        deadline_ns=capture + deadline_offset_ns, shape=shape, pixel_format=pixel_format, encoding=encoding,
        label=label, source=f"{camera}/{seq:04d}.png",
    )


def _image(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _smooth_image(shape: tuple, seed: int) -> np.ndarray:
    """A smooth gradient image (JPEG-friendly), uint8 H x W x C."""
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w]
    planes = [((x * (3 + k + seed) + y * (2 + k)) % 256) for k in range(c)]
    return np.stack(planes, axis=2).astype(np.uint8)


def _verdict(header: FrameHeader, decision: str = "OK") -> Verdict:
    reason = "" if decision == "OK" else "score_above_threshold"
    return Verdict(header.camera_id, header.seq, header.part_id, header.capture_ns, decision, reason,
                   0.25 if decision == "OK" else 0.9, 0.5, time.time_ns(), label=header.label)


def _write_frames(path: Path, n: int, *, chunk_size: int, compression: str = "zstd", shape=(24, 32, 3),
                  seed: int = 0) -> list[FrameHeader]:
    """n random (incompressible) raw frames on cam0, capture times 0.1 s apart. Returns headers."""
    rng = np.random.default_rng(seed)
    start = time.time_ns()
    headers = []
    with RecordingWriter(path, chunk_size=chunk_size, compression=compression, flush_interval_s=3600) as writer:
        for seq in range(n):
            header = _header("cam0", seq, shape, capture_ns=start + seq * 100_000_000)
            writer.write_frame(header, _image(rng, shape), log_time_ns=header.capture_ns)
            headers.append(header)
    return headers


def _chunk_spans(path: Path) -> list[tuple[int, int, int]]:
    """(start, end, frame messages) of every chunk, from the file's own summary (mcap library)."""
    spans = []
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
        assert summary is not None
        for index in sorted(summary.chunk_indexes, key=lambda i: i.chunk_start_offset):
            f.seek(index.chunk_start_offset)
            chunk = next(StreamReader(f, skip_magic=True, emit_chunks=True).records)
            assert isinstance(chunk, Chunk)
            _, messages = _count_messages(chunk)
            spans.append((index.chunk_start_offset, index.chunk_start_offset + index.chunk_length, messages))
    return spans


def _count_messages(chunk: Chunk) -> tuple[int, int]:
    from mcap.records import Message
    from mcap.stream_reader import breakup_chunk

    records = breakup_chunk(chunk)
    return len(records), sum(isinstance(r, Message) for r in records)


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inspector.cli", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **kwargs,
    )


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


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
                header = _header(camera, seq, shape, pixel_format=pixel_format, encoding=encoding,
                                 label="good" if seq else "crack")
                image = _image(rng, shape) if encoding == "raw" else _smooth_image(shape, seq)
                if encoding == "jpeg" and seq == 1:  # JPEG bytes as they came off the wire
                    header_bytes, jpeg = wire.encode_frame(header, image, encoding="jpeg", jpeg_quality=90)
                    writer.write_frame(header, jpeg)
                    written.append((header, image, jpeg))
                else:
                    writer.write_frame(header, image)
                    written.append((header, image, None))
                verdict = _verdict(header, "REJECT" if seq == 0 else "OK")
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
    headers = _write_frames(path, 5, chunk_size=2000)
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
    header = _header("cam0", 0, (4, 5, 3))
    with RecordingWriter(path) as writer:
        with pytest.raises(WireError, match="size_mismatch"):
            writer.write_frame(header, b"\x00" * 59)
        with pytest.raises(WireError):
            writer.write_frame(replace(header, camera_id=""), b"\x00" * 60)
        with pytest.raises(WireError, match="not a JPEG"):
            writer.write_frame(replace(header, encoding="jpeg"), b"\x00" * 60)
        with pytest.raises(WireError):
            writer.write_verdict(replace(_verdict(header), decision="MAYBE"))
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
    headers = _write_frames(full, 14, chunk_size=6000, shape=(24, 32, 3))  # ~2.3 kB per frame
    data = full.read_bytes()
    spans = _chunk_spans(full)
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
        writer.write_frame(_header("cam0", seq, (4, 4, 1), pixel_format="mono8"), bytes(16))
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
    _write_frames(path, 8, chunk_size=5000, compression=compression)
    spans = _chunk_spans(path)
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
    _write_frames(path, 6, chunk_size=3000)
    good = path.read_bytes()
    start = _chunk_spans(path)[1][0]
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
    header_map = msgpack.unpackb(wire.encode_header(_header("cam0", 0, (4, 4, 3))))
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


def _mvtec_folder(root: Path) -> dict[str, np.ndarray]:
    """A tiny MVTec layout: test/good (2 colour), test/crack (1 mono + 1 unreadable), test/scratch."""
    images = {
        "good/000.png": _smooth_image((20, 28, 3), 1),
        "good/001.png": _smooth_image((20, 28, 3), 2),
        "crack/000.png": _smooth_image((20, 28, 1), 3)[:, :, 0],
        "scratch/007.png": _smooth_image((20, 28, 3), 4),
    }
    for name, image in images.items():
        (root / "test" / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "test" / name), image)
    (root / "test" / "crack" / "001.png").write_bytes(b"not a png at all")
    (root / "train" / "good").mkdir(parents=True)
    assert cv2.imwrite(str(root / "train" / "good" / "999.png"), _smooth_image((20, 28, 3), 9))
    return images


def test_record_from_folder_labels_sources_and_timing(tmp_path: Path) -> None:
    images = _mvtec_folder(tmp_path / "ds")
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
    _mvtec_folder(tmp_path / "ds")
    out = tmp_path / "folder_jpeg.mcap"
    record_from_folder(tmp_path / "ds", out, encoding="jpeg", image_size=(16, 12))
    frames = list(open_recording(out).iter_frames())
    assert {f.header.encoding for f in frames} == {"jpeg"}
    assert [f.image.shape for f in frames] == [(16, 12, 1), (16, 12, 3), (16, 12, 3), (16, 12, 3)]
    with pytest.raises(RecordingError, match="no test/ folder"):
        record_from_folder(tmp_path / "ds" / "train", tmp_path / "x.mcap")
    with pytest.raises(RecordingError, match="already exists"):
        record_from_folder(tmp_path / "ds", out)


# ------------------------------------------------------------------------------------------
# replay
# ------------------------------------------------------------------------------------------


def _pull(context: zmq.Context) -> tuple[zmq.Socket, str]:
    sock = context.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVTIMEO, int(TIMEOUT_S * 1000))
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"


def _two_camera_recording(path: Path) -> list[tuple[FrameHeader, np.ndarray]]:
    rng = np.random.default_rng(5)
    start = time.time_ns() - 10**9
    written = []
    with RecordingWriter(path, chunk_size=3000) as writer:
        for seq in range(6):
            for k, camera in enumerate(("cam0", "cam1")):
                shape = (12, 16, 3) if camera == "cam0" else (10, 10, 1)
                header = _header(camera, seq, shape, pixel_format="bgr8" if k == 0 else "mono8",
                                 encoding="raw" if k == 0 else "jpeg", capture_ns=start + seq * 100_000_000 + k * 1000,
                                 deadline_offset_ns=(300 + 10 * seq) * 1_000_000, label="good" if seq % 2 else "dent")
                image = _image(rng, shape) if k == 0 else _smooth_image(shape, seq)
                writer.write_frame(header, image, log_time_ns=header.capture_ns)
                written.append((header, image))
    return written


def test_replay_max_rate_delivers_every_frame_restamped(tmp_path: Path, ctx: zmq.Context) -> None:
    path = tmp_path / "rp.mcap"
    written = _two_camera_recording(path)
    stored = {(f.header.camera_id, f.header.seq): f for f in open_recording(path).iter_frames()}
    pull, endpoint = _pull(ctx)
    result: dict = {}
    before = time.time_ns()
    thread = threading.Thread(target=lambda: result.update(replay(path, endpoint, max_rate=True, sndhwm=2)))
    thread.start()
    received = [wire.decode_frame(pull.recv_multipart()) for _ in written]
    thread.join(TIMEOUT_S)
    after = time.time_ns()
    assert not thread.is_alive()
    assert result["sent"] == len(written) and result["cameras"] == {"cam0": 6, "cam1": 6}
    for (orig, image), (header, got) in zip(written, received):
        assert (header.camera_id, header.seq, header.part_id, header.label, header.source) == (
            orig.camera_id, orig.seq, orig.part_id, orig.label, orig.source)
        assert (header.pixel_format, header.encoding, header.shape) == (orig.pixel_format, orig.encoding, orig.shape)
        assert before <= header.capture_ns <= after
        assert header.deadline_ns - header.capture_ns == orig.deadline_ns - orig.capture_ns
        np.testing.assert_array_equal(got, stored[(orig.camera_id, orig.seq)].image)
    assert pull.poll(200) == 0  # nothing more


def test_replay_keeps_timing_scaled_by_speed(tmp_path: Path, ctx: zmq.Context) -> None:
    path = tmp_path / "timed.mcap"
    _write_frames(path, 5, chunk_size=100_000)  # capture times 100 ms apart
    pull, endpoint = _pull(ctx)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(replay(path, endpoint, speed=2.0, deadline_ms=40)))
    thread.start()
    headers = [wire.decode_frame(pull.recv_multipart())[0] for _ in range(5)]
    thread.join(TIMEOUT_S)
    gaps_ms = np.diff([h.capture_ns for h in headers]) / 1e6
    assert gaps_ms.min() >= 45, gaps_ms  # 100 ms / speed 2, never early
    assert result["duration_s"] >= 0.19
    assert all(h.deadline_ns - h.capture_ns == 40_000_000 for h in headers)


def test_replay_without_receiver_fails_within_send_timeout(tmp_path: Path) -> None:
    path = tmp_path / "nobody.mcap"
    _write_frames(path, 8, chunk_size=100_000)
    with zmq.Context() as context:
        probe = context.socket(zmq.PULL)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(linger=0)  # a port nobody listens on any more
    started = time.monotonic()
    with pytest.raises(ReplayError, match="no receiver"):
        replay(path, f"tcp://127.0.0.1:{port}", max_rate=True, sndhwm=1, send_timeout_s=0.3)
    assert time.monotonic() - started < 5


def test_cli_record_from_folder_then_replay_one_camera(tmp_path: Path, ctx: zmq.Context) -> None:
    _mvtec_folder(tmp_path / "ds")
    out = tmp_path / "cli.mcap"
    proc = _cli("record", "--from-folder", str(tmp_path / "ds"), "--out", str(out), "--camera", "camX", "--jpeg")
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["n_frames"] == 4
    pull, endpoint = _pull(ctx)
    proc = _cli("replay", str(out), "--connect", endpoint, "--max", "--deadline-ms", "250", "--cameras", "camX")
    headers = [wire.decode_frame(pull.recv_multipart())[0] for _ in range(4)]
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["sent"] == 4
    assert [h.label for h in headers] == ["crack", "good", "good", "scratch"]
    assert all(h.camera_id == "camX" and h.encoding == "jpeg" for h in headers)
    assert all(h.deadline_ns - h.capture_ns == 250_000_000 for h in headers)
    proc = _cli("replay", str(tmp_path / "ds" / "test" / "good" / "000.png"), "--connect", endpoint, "--max")
    _, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2 and "not an MCAP file" in stderr


# ------------------------------------------------------------------------------------------
# live recording (`inspector record --connect`) against a tap the test drives
# ------------------------------------------------------------------------------------------


def _xpub(context: zmq.Context) -> tuple[zmq.Socket, str]:
    sock = context.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"


def _wait_subscribed(sock: zmq.Socket, topic: bytes, proc: subprocess.Popen) -> None:
    """Wait for the recorder's SUB to subscribe (XPUB hands us the subscription)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if sock.poll(100) and sock.recv() == b"\x01" + topic:
            return
    raise AssertionError(f"recorder never subscribed to {topic!r}")


def test_cli_record_live_frames_and_verdicts(tmp_path: Path, ctx: zmq.Context) -> None:
    tap, tap_endpoint = _xpub(ctx)
    pub, verdict_endpoint = _xpub(ctx)
    out = tmp_path / "live.mcap"
    proc = _cli("record", "--connect", tap_endpoint, "--verdicts", verdict_endpoint, "--out", str(out),
                "--max-frames", "6", "--verdict-grace", "5")
    try:
        _wait_subscribed(tap, wire.TOPIC_FRAME, proc)
        _wait_subscribed(pub, wire.TOPIC_VERDICT, proc)
        rng = np.random.default_rng(3)
        tap.send_multipart([wire.TOPIC_FRAME, b"\x81\xa1x\x01", b"junk"])  # malformed: skipped, counted
        sent = []
        for seq in range(6):
            encoding = "jpeg" if seq % 2 else "raw"
            header = _header("camL", seq, (8, 12, 3), encoding=encoding)
            image = _image(rng, (8, 12, 3)) if encoding == "raw" else _smooth_image((8, 12, 3), seq)
            parts = wire.encode_frame(header, image, encoding=encoding)
            tap.send_multipart(wire.encode_tap(parts))
            sent.append((wire.decode_header(parts[0]), bytes(parts[1])))
        verdicts = [_verdict(h, "OK" if h.seq % 3 else "REJECT") for h, _ in sent]
        pub.send_multipart(wire.encode_heartbeat(wire.Heartbeat("d", 1, time.time_ns(), True)))  # not subscribed
        for verdict in verdicts:
            pub.send_multipart(wire.encode_verdict(verdict))
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["n_frames"] == 6 and summary["n_verdicts"] == 6 and summary["bad_messages"] == 1
    assert summary["stopped_by"] == "max_frames"
    recording = open_recording(out)
    frames = list(recording.iter_frames())
    assert [(f.header, f.payload) for f in frames] == sent
    assert [v.verdict for v in recording.iter_verdicts()] == verdicts
    info = recording.info()
    assert info["truncated"] is False and info["metadata"]["source"] == tap_endpoint


def test_cli_record_live_stops_cleanly_on_sigterm(tmp_path: Path, ctx: zmq.Context) -> None:
    tap, tap_endpoint = _xpub(ctx)
    out = tmp_path / "term.mcap"
    proc = _cli("record", "--connect", tap_endpoint, "--out", str(out))
    try:
        _wait_subscribed(tap, wire.TOPIC_FRAME, proc)
        for seq in range(3):
            header = _header("cam9", seq, (4, 4, 1), pixel_format="mono8")
            tap.send_multipart(wire.encode_tap(wire.encode_frame(header, np.full((4, 4, 1), seq, np.uint8))))
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["stopped_by"] == "signal"
    recording = open_recording(out)
    assert recording.truncated is False
    assert [int(f.image[0, 0, 0]) for f in recording.iter_frames()] == [0, 1, 2]
