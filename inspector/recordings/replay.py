"""`inspector replay`: push a recording to a daemon as the original cameras.

    inspector replay FILE --connect tcp://daemon:5555 [--speed X | --max] [--deadline-ms D]
                     [--cameras cam0,cam1] [--max-frames N] [--allow-truncated]

Frames go out over one ZeroMQ PUSH socket (connect, small send HWM, bounded linger), exactly as
recorded (camera_id, seq, part_id, label, source, pixel format, encoding and payload bytes: a
JPEG is re-sent as it was, never re-encoded) except for the times: capture_ns is re-stamped to
now and deadline_ns = the new capture_ns + the original deadline offset (deadline_ns -
capture_ns; a recorded deadline of 0, "none", stays 0), or + ``--deadline-ms``, and the grabber
session: each recorded (camera, session) is sent under a session of this replay's own (a replay
is a new run of the cameras, so the daemon takes its ``seq`` as new, not as a repeat). Frames keep the
recording's timing (capture_ns differences) divided by ``--speed``, or go as fast as the
receiver takes them with ``--max``. A send that cannot complete within ``--send-timeout``
seconds (no receiver, or one that stopped reading) aborts the replay with an error.

Exit status: 0 when the frames were sent; 1 when the recording is truncated (its frames before the
cut are sent; ``--allow-truncated`` makes that 0) or held no complete frame; 2 when it cannot be
read at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import zmq

from inspector.line import keys, transport, wire
from inspector.recordings.recording import RecordedFrame, open_recording

log = logging.getLogger(__name__)

LATE_AFTER_S = 0.05  # a frame sent more than this after its scheduled time counts as late
SLEEP_SLICE_S = 0.05  # waits are cut into slices so a stop request is seen promptly
SEND_SLICE_S = 0.1  # a blocked send looks at the stop request this often


class ReplayError(RuntimeError):
    """The replay could not deliver its frames (e.g. no receiver within the send timeout)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the MCAP recording to replay")
    parser.add_argument("--connect", required=True, metavar="ENDPOINT", help="the daemon's frame PULL endpoint")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="time scale: 2 = twice as fast (default 1)")
    pace.add_argument("--max", action="store_true", help="send as fast as the receiver takes frames")
    parser.add_argument("--deadline-ms", type=float, metavar="D",
                        help="deadline = capture + D ms (default: each frame's recorded deadline offset)")
    parser.add_argument("--cameras", metavar="IDS", help="comma-separated camera ids to replay (default all)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--send-timeout", type=float, default=10.0, metavar="S",
                        help="give up when a frame cannot be sent for S seconds (default 10)")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="exit 0 for a truncated recording too (its frames before the cut are sent)")
    keys.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = replay(
            args.file, args.connect, speed=args.speed, max_rate=args.max, deadline_ms=args.deadline_ms,
            cameras=cameras, max_frames=args.max_frames, send_timeout_s=args.send_timeout, stop=stop,
            curve=keys.from_arguments(args),
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(json.dumps(summary, indent=2))
    return exit_status(summary, allow_truncated=args.allow_truncated)


def exit_status(summary: dict[str, Any], *, allow_truncated: bool = False) -> int:
    """0 when frames were sent and the recording was complete (or ``allow_truncated``); 1 when it
    was truncated or nothing was sent (an unreadable file is an error before that: exit 2)."""
    if summary["sent"] == 0 and not summary["stopped_early"]:
        log.error("nothing was sent: the recording holds no complete frame (truncated: %s)", summary["truncated"])
        return 1
    if summary["truncated"] and not allow_truncated:
        log.error("the recording is truncated: only the frames before the cut were sent (--allow-truncated: exit 0)")
        return 1
    return 0


def _restamp(header: wire.FrameHeader, now_ns: int, deadline_ms: float | None, session: int) -> wire.FrameHeader:
    """The header with capture_ns = now, the deadline moved along and this replay's ``session``
    (see module doc)."""
    if deadline_ms is not None:
        deadline = now_ns + int(round(deadline_ms * 1e6))
    elif header.deadline_ns == 0:
        deadline = 0
    else:
        deadline = max(0, now_ns + header.deadline_ns - header.capture_ns)
    return replace(header, capture_ns=now_ns, deadline_ns=deadline, session=session)


def _wait_until(target: float, stop: threading.Event) -> None:
    """Sleep until monotonic time ``target`` or until ``stop`` is set."""
    while not stop.is_set():
        remaining = target - time.monotonic()
        if remaining <= 0:
            return
        stop.wait(min(remaining, SLEEP_SLICE_S))


def _push_socket(context: zmq.Context, endpoint: str, sndhwm: int, send_timeout_s: float, linger_ms: int,
                 curve: transport.ClientCurve | None = None) -> zmq.Socket:
    slice_ms = int(min(send_timeout_s, SEND_SLICE_S) * 1000)
    return transport.frame_push(context, endpoint, hwm=sndhwm, send_timeout_ms=slice_ms, linger_ms=linger_ms,
                                curve=curve)


def replay(
    path: str | Path,
    endpoint: str,
    *,
    speed: float = 1.0,
    max_rate: bool = False,
    deadline_ms: float | None = None,
    cameras: list[str] | set[str] | None = None,
    max_frames: int | None = None,
    sndhwm: int = 4,
    send_timeout_s: float = 10.0,
    linger_ms: int = 2000,
    stop: threading.Event | None = None,
    context: zmq.Context | None = None,
    credits: Credits | None = None,
    curve: transport.ClientCurve | None = None,
) -> dict[str, Any]:
    """Push the frames of recording ``path`` to ``endpoint`` (see module doc); a CURVE client
    with ``curve`` (docs/security.md).

    ``speed`` > 0 scales the recorded timing (ignored with ``max_rate``). ``cameras``: only
    these. ``max_frames``: stop after that many. ``stop``: an Event that ends the replay early.
    ``context``: a zmq Context to use (default: a private one, terminated at the end). ``credits``:
    credit-based pacing (:class:`Credits`): one credit is taken before each frame (waiting at most
    ``send_timeout_s``) and the caller gives it back when the frame's verdict arrives
    (``inspector validate``). Returns a summary dict: path, endpoint, sent, cameras {id: sent},
    duration_s, rate_fps, late (frames sent > 50 ms after their slot), max_lag_ms, truncated (the
    recording ended early), stopped_early (with credits also credit_window and max_outstanding).
    Raises RecordingError for a bad recording, ReplayError when a frame cannot be sent (or no
    credit came back) within ``send_timeout_s``, ValueError for bad arguments.
    """
    if not max_rate and not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if not send_timeout_s > 0:
        raise ValueError(f"send_timeout_s must be > 0, got {send_timeout_s!r}")
    recording = open_recording(path)
    stop = stop or threading.Event()
    own_context = context is None
    context = context or zmq.Context()
    sock = _push_socket(context, endpoint, sndhwm, send_timeout_s, linger_ms, curve)
    sent: dict[str, int] = {}
    sessions: dict[tuple[str, int], int] = {}  # recorded (camera, session) -> this replay's session
    late, max_lag = 0, 0.0
    started = time.monotonic()
    first_capture: int | None = None
    frames = recording.iter_frames(cameras, decode_images=False)
    try:
        for frame in frames:
            if stop.is_set() or (max_frames is not None and sum(sent.values()) >= max_frames):
                break
            if first_capture is None:
                first_capture = frame.header.capture_ns
            if not max_rate:
                target = started + max(0, frame.header.capture_ns - first_capture) / 1e9 / speed
                _wait_until(target, stop)
                if stop.is_set():
                    break
                lag = time.monotonic() - target
                max_lag = max(max_lag, lag)
                late += lag > LATE_AFTER_S
            key = (frame.header.camera_id, frame.header.session)
            session = sessions.get(key) or sessions.setdefault(key, wire.new_session())
            if credits is not None and not credits.take(send_timeout_s, stop):
                break
            if not _send(sock, frame, deadline_ms, session, endpoint, send_timeout_s, stop):
                break
            sent[frame.header.camera_id] = sent.get(frame.header.camera_id, 0) + 1
    except BaseException:
        sock.close(linger=0)  # failing: do not wait for frames nobody takes
        raise
    finally:
        frames.close()
        if not sock.closed:
            sock.close()  # with the bounded linger: queued frames get linger_ms to leave
        if own_context:
            context.term()
    duration = time.monotonic() - started
    total = sum(sent.values())
    return {
        "path": str(path), "endpoint": endpoint, "sent": total, "cameras": dict(sorted(sent.items())),
        "duration_s": round(duration, 3), "rate_fps": round(total / duration, 2) if duration > 0 else None,
        "late": int(late), "max_lag_ms": round(max_lag * 1e3, 1), "truncated": recording.truncated,
        "stopped_early": stop.is_set(),
        **({} if credits is None else {"credit_window": credits.window, "max_outstanding": credits.max_outstanding}),
    }


class Credits:
    """Credit-based pacing: at most ``window`` frames out without their verdict. The replay
    :meth:`take` s one before each frame; whoever collects the verdicts :meth:`give` s one back per
    frame answered. Thread safe. ``max_outstanding``: the most frames that were ever out at once."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.outstanding = 0
        self.max_outstanding = 0
        self._cond = threading.Condition()

    def take(self, timeout_s: float, stop: threading.Event) -> bool:
        """One credit (True), or False when ``stop`` was set first. Raises ReplayError when no
        verdict gave a credit back within ``timeout_s``."""
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while self.outstanding >= self.window:
                if stop.is_set():
                    return False
                if time.monotonic() >= give_up:
                    raise ReplayError(f"no verdict came back for {timeout_s:g} s (credit-based pacing)")
                self._cond.wait(SEND_SLICE_S)
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
            return not stop.is_set()

    def give(self) -> None:
        with self._cond:
            self.outstanding = max(0, self.outstanding - 1)
            self._cond.notify()


def _send(sock: zmq.Socket, frame: RecordedFrame, deadline_ms: float | None, session: int, endpoint: str, timeout_s: float,
          stop: threading.Event) -> bool:
    """Send one frame, blocking at most ``timeout_s`` in slices of SEND_SLICE_S (the socket's
    SNDTIMEO) so that ``stop`` ends a blocked send. True = sent, False = stopped first. Raises
    ReplayError when no receiver took it in time."""
    header = _restamp(frame.header, time.time_ns(), deadline_ms, session)
    parts = [wire.encode_header(header), frame.payload]
    give_up = time.monotonic() + timeout_s
    while not stop.is_set():
        try:
            sock.send_multipart(parts, copy=False)
            return True
        except zmq.Again:
            if time.monotonic() >= give_up:
                raise ReplayError(
                    f"no receiver at {endpoint} took frame {header.camera_id}#{header.seq} within {timeout_s:g} s"
                ) from None
    return False
