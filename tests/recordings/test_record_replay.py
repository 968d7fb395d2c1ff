"""Tests for `inspector replay` (inspector.recordings.replay) and `inspector record` (from a folder and
live from a tap), with real recordings, real sockets and real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from recording_helpers import (TIMEOUT_S, killed_on_exit, make_header, make_verdict, mvtec_folder, random_image,
                               smooth_image, start_cli, write_frames)
from inspector.line import wire
from inspector.recordings.recording import RecordingWriter, open_recording
from inspector.recordings.replay import ReplayError, replay
from inspector.line.wire import FrameHeader

pytestmark = pytest.mark.e2e


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


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
                header = make_header(camera, seq, shape, pixel_format="bgr8" if k == 0 else "mono8",
                                 encoding="raw" if k == 0 else "jpeg", capture_ns=start + seq * 100_000_000 + k * 1000,
                                 deadline_offset_ns=(300 + 10 * seq) * 1_000_000, label="good" if seq % 2 else "dent")
                image = random_image(rng, shape) if k == 0 else smooth_image(shape, seq)
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
    write_frames(path, 5, chunk_size=100_000)  # capture times 100 ms apart
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
    write_frames(path, 8, chunk_size=100_000)
    with zmq.Context() as context:
        probe = context.socket(zmq.PULL)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(linger=0)  # a port nobody listens on any more
    started = time.monotonic()
    with pytest.raises(ReplayError, match="no receiver"):
        replay(path, f"tcp://127.0.0.1:{port}", max_rate=True, sndhwm=1, send_timeout_s=0.3)
    assert time.monotonic() - started < 5


def test_cli_record_from_folder_then_replay_one_camera(tmp_path: Path, ctx: zmq.Context) -> None:
    mvtec_folder(tmp_path / "ds")
    out = tmp_path / "cli.mcap"
    proc = start_cli("record", "--from-folder", str(tmp_path / "ds"), "--out", str(out), "--camera", "camX", "--jpeg")
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["n_frames"] == 4
    pull, endpoint = _pull(ctx)
    proc = start_cli("replay", str(out), "--connect", endpoint, "--max", "--deadline-ms", "250", "--cameras", "camX")
    headers = [wire.decode_frame(pull.recv_multipart())[0] for _ in range(4)]
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["sent"] == 4
    assert [h.label for h in headers] == ["crack", "good", "good", "scratch"]
    assert all(h.camera_id == "camX" and h.encoding == "jpeg" for h in headers)
    assert all(h.deadline_ns - h.capture_ns == 250_000_000 for h in headers)
    proc = start_cli("replay", str(tmp_path / "ds" / "test" / "good" / "000.png"), "--connect", endpoint, "--max")
    _, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2 and "not an MCAP file" in stderr


def test_cli_replay_of_a_truncated_recording_exits_non_zero_unless_allowed(tmp_path: Path, ctx: zmq.Context) -> None:
    whole, cut, stub = tmp_path / "whole.mcap", tmp_path / "cut.mcap", tmp_path / "stub.mcap"
    write_frames(whole, 12, chunk_size=3000)                    # ~1 frame per chunk: a cut keeps what is before it
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    stub.write_bytes(data[:200])                                # not even one complete chunk
    pull, endpoint = _pull(ctx)
    for args, status in (((), 1), (("--allow-truncated",), 0)):
        proc = start_cli("replay", str(cut), "--connect", endpoint, "--max", *args)
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        summary = json.loads(stdout)
        assert proc.returncode == status and summary["truncated"] is True and 0 < summary["sent"] < 12, stderr
        assert [wire.decode_frame(pull.recv_multipart())[0].seq for _ in range(summary["sent"])] == list(range(summary["sent"]))
    proc = start_cli("replay", str(stub), "--connect", endpoint, "--max", "--allow-truncated")
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 1 and json.loads(stdout)["sent"] == 0 and "nothing was sent" in stderr


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
    with killed_on_exit(start_cli("record", "--connect", tap_endpoint, "--verdicts", verdict_endpoint, "--out", str(out),
                                  "--max-frames", "6", "--verdict-grace", "5")) as proc:
        _wait_subscribed(tap, wire.TOPIC_FRAME, proc)
        _wait_subscribed(pub, wire.TOPIC_VERDICT, proc)
        rng = np.random.default_rng(3)
        tap.send_multipart([wire.TOPIC_FRAME, b"\x81\xa1x\x01", b"junk"])  # malformed: skipped, counted
        sent = []
        for seq in range(6):
            encoding = "jpeg" if seq % 2 else "raw"
            header = make_header("camL", seq, (8, 12, 3), encoding=encoding)
            image = random_image(rng, (8, 12, 3)) if encoding == "raw" else smooth_image((8, 12, 3), seq)
            parts = wire.encode_frame(header, image, encoding=encoding)
            tap.send_multipart(wire.encode_tap(parts))
            sent.append((wire.decode_header(parts[0]), bytes(parts[1])))
        verdicts = [make_verdict(h, "OK" if h.seq % 3 else "REJECT") for h, _ in sent]
        pub.send_multipart(wire.encode_heartbeat(wire.Heartbeat("d", 1, time.time_ns(), True)))  # not subscribed
        for verdict in verdicts:
            pub.send_multipart(wire.encode_verdict(verdict))
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
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
    with killed_on_exit(start_cli("record", "--connect", tap_endpoint, "--out", str(out))) as proc:
        _wait_subscribed(tap, wire.TOPIC_FRAME, proc)
        for seq in range(3):
            header = make_header("cam9", seq, (4, 4, 1), pixel_format="mono8")
            tap.send_multipart(wire.encode_tap(wire.encode_frame(header, np.full((4, 4, 1), seq, np.uint8))))
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["stopped_by"] == "signal"
    recording = open_recording(out)
    assert recording.truncated is False
    assert [int(f.image[0, 0, 0]) for f in recording.iter_frames()] == [0, 1, 2]
