"""Bounded resources and hostile input at the daemon (issue 9), in process with the scripted engine
double of test_daemon_failures: JPEG bombs, oversized messages, endless deadlines, a crafted seq
jump, unknown camera ids and a queue bounded in bytes. Each would have cost memory, time or
production before; each is refused cheaply and counted now."""

from __future__ import annotations

import re
import time

import cv2
import numpy as np
import pytest
import zmq

from inspector.line import wire
from daemon_helpers import InProcess, by_key, coded, make_push, send
from conftest import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def peak_rss_mb() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024


def jpeg_bomb(camera: str, seq: int, side: int = 9000) -> list[bytes]:
    """A few hundred bytes of JPEG whose frame header says side x side x 3 (decoding it would take
    side*side*3 bytes), under a wire header that agrees with it."""
    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    jpeg = bytearray(data.tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = side.to_bytes(2, "big") + side.to_bytes(2, "big")
    now = time.time_ns()
    header = wire.FrameHeader(camera_id=camera, seq=seq, part_id="bomb", capture_ns=now, deadline_ns=now + 10**10,
                              shape=(side, side, 3), encoding="jpeg")
    return [wire.encode_header(header), bytes(jpeg)]


def test_jpeg_bombs_are_refused_before_decoding_and_the_line_keeps_going(tmp_path):
    line = InProcess(tmp_path)
    try:
        bomb = jpeg_bomb("cam0", 1)
        assert len(bomb[1]) < 1000
        try:
            open("/proc/self/clear_refs", "w").write("5")        # reset the peak RSS (VmHWM)
        except OSError:
            pytest.skip("cannot reset the peak RSS here")
        before = peak_rss_mb()
        send(line.push, "cam0", 0, coded(10))
        for seq in (1, 2, 3, 4):
            line.push.send_multipart(jpeg_bomb("cam0", seq))
        send(line.push, "cam0", 5, coded(10))
        verdicts = by_key(line.listener.wait_verdicts(6))
        assert [verdicts[("cam0", s)].reason for s in range(6)] == ["", *["decode_error"] * 4, ""]
        assert peak_rss_mb() - before < 50
        beats = [h.sent_ns for h in line.listener.snapshot()[1]]
        assert max(b - a for a, b in zip(beats, beats[1:])) < 500_000_000   # heartbeats every 50 ms went on
        summary = line.stop()
        assert summary["decode_errors"] == 4 and summary["frames_without_verdict"] == 0
        assert line.daemon.metrics.decode_errors.labels("too_large")._value.get() == 4
    finally:
        line.close()


def test_a_message_part_over_the_frame_limit_is_never_received(tmp_path):
    """The frame socket's ZMQ_MAXMSGSIZE follows the cameras' pixel budget: a peer that sends more is
    disconnected before the daemon holds the bytes (before: 256 MiB, received whole, then refused)."""
    frames = f"tcp://127.0.0.1:{free_port()}"
    line = InProcess(tmp_path, daemon={"frames": frames}, defaults={"max_pixels": 64 * 64})
    hostile = make_push(line.context, frames)
    try:
        header = wire.encode_header(wire.FrameHeader("cam0", 0, "x", time.time_ns(), 0, (64, 64, 3)))
        hostile.send_multipart([header, bytes(4 * 2**20)])                   # 4 MiB: more than any allowed frame
        time.sleep(0.5)
        send(line.push, "cam1", 0, coded(10))
        verdicts = line.listener.wait_verdicts(1)
        time.sleep(0.3)
        assert [(v.camera_id, v.reason) for v in line.listener.snapshot()[0]] == [("cam1", "")]
        assert line.stop()["messages_received"] == 1
    finally:
        hostile.close(0)
        line.close()


def test_deadlines_are_clamped_to_the_longest_allowed(tmp_path):
    line = InProcess(tmp_path, defaults={"deadline_ms": 500.0, "max_deadline_ms": 800.0},
                     engine={"max_batch": 1, "max_wait_ms": 0.0})
    try:
        send(line.push, "cam0", 0, coded(253))                               # the engine blocks on it
        assert line.engine.entered.wait(5)
        send(line.push, "cam1", 0, coded(10), deadline_ns=2**63 - 1)          # "never expires"
        verdict = by_key(line.listener.wait_verdicts(1, timeout=5))[("cam1", 0)]
        assert (verdict.decision, verdict.reason) == ("FAULT", "deadline_missed")
        assert verdict.decided_ns - verdict.capture_ns < 1_500_000_000
    finally:
        line.close()


def test_one_crafted_seq_jump_gives_one_fault_not_one_per_made_up_frame(tmp_path):
    line = InProcess(tmp_path, defaults={"fps": 10.0})
    try:
        send(line.push, "cam0", 0, coded(10), session=7)
        line.listener.wait_verdicts(1)
        send(line.push, "cam0", 65, coded(10), session=7)                    # 64 "missing" frames in no time
        verdicts = line.listener.wait_verdicts(3)
        time.sleep(0.3)
        gaps = [v for v in line.listener.snapshot()[0] if v.reason == "sequence_gap"]
        assert [v.seq for v in gaps] == [64]                                 # one FAULT stands for the gap
        send(line.push, "cam0", 1, coded(10), session=7)                     # below the jump: a replay
        replayed = by_key(line.listener.wait_verdicts(4))[("cam0", 1)]
        assert (replayed.decision, replayed.reason) == ("FAULT", "sequence_replayed")
        assert line.stop()["missing_frames"] == 64
    finally:
        line.close()


def test_unknown_cameras_are_refused_and_counted_while_declared_ones_are_judged(tmp_path):
    line = InProcess(tmp_path, cameras={"cam0": {}})
    try:
        send(line.push, "cam9", 0, coded(10))
        send(line.push, "cam0", 0, coded(10))
        verdicts = by_key(line.listener.wait_verdicts(2))
        assert (verdicts[("cam9", 0)].decision, verdicts[("cam9", 0)].reason) == ("FAULT", "unknown_camera")
        assert (verdicts[("cam0", 0)].decision, verdicts[("cam0", 0)].reason) == ("OK", "")
        summary = line.stop()
        assert summary["unknown_camera_frames"] == 1 and summary["frames_without_verdict"] == 0
        assert "cam9" not in line.daemon.sequences.tracks                    # nothing kept for it
    finally:
        line.close()


def test_the_queue_is_bounded_in_bytes(tmp_path):
    line = InProcess(tmp_path, overload={"max_queue": 64, "max_queue_bytes": 2**20},
                     engine={"max_batch": 1, "max_wait_ms": 0.0})
    try:
        send(line.push, "cam0", 0, coded(253))                               # the engine blocks on it
        assert line.engine.entered.wait(5)
        big = np.full((400, 500, 3), 10, np.uint8)                           # 600 kB each: one fits in 1 MiB
        send(line.push, "cam1", 0, big)
        send(line.push, "cam2", 0, big)
        dropped = by_key(line.listener.wait_verdicts(1))
        assert {k: v.reason for k, v in dropped.items()} == {("cam1", 0): "overload_dropped"}
        assert line.daemon.batcher.queued_bytes == big.nbytes
    finally:
        line.close()
