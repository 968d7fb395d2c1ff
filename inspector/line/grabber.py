"""`inspector grab`: one camera grabber process, frame source -> ZeroMQ PUSH -> daemon.

One process per camera. Each frame goes out as a two-part wire frame (``inspector.line.wire``) with
``session`` = a random id drawn at start (so that the daemon tells this run's ``seq`` from an
earlier run's), ``seq`` counting from 0 (+1 per frame sent; no gaps are made here), ``part_id`` = str(part-id-start
+ seq), ``capture_ns`` = ``time.time_ns()`` at grab, ``deadline_ns`` = capture + deadline (0 when
no deadline is set).

Flow control: the PUSH socket *connects* (the daemon binds) with a small send high-water mark
(``--hwm``, default 4) and ``ZMQ_IMMEDIATE``, so when the daemon is slow or down the send blocks
(back-pressure: the grabber waits, frames are not dropped or queued without bound). ZeroMQ
reconnects by itself when the daemon restarts; frames that were already inside the dead daemon
are lost with it, everything after flows again. While blocked, the grabber still answers
SIGTERM/SIGINT: it keeps trying the current frame for up to ``--linger-ms`` and then gives it up
(counted as ``dropped_on_stop``); it never sends half a message.

Pacing (``--fps``): frame i is grabbed at t0 + i / fps on the monotonic clock (absolute schedule,
no drift). When the grabber is more than one period behind (slow daemon or source), it logs a
warning (rate-limited), counts it in ``late`` and restarts the schedule from now instead of
bursting to catch up. Without ``--fps`` frames go as fast as the source and the daemon allow.

On exit (end of a non-looping source, ``--max-frames``, SIGTERM/SIGINT) the sockets are closed
with a bounded linger and a one-line JSON summary is printed on stdout, e.g.
``{"camera_id": "cam0", "frames_sent": 20, "skipped": 1, "elapsed_s": 0.41, ...}``; exit status
0, or 1 if the source failed mid-stream (the summary then has an ``"error"``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from inspector.line import keys, transport
from inspector.line.config import Config, connectable, load_config
from inspector.line.sources import FrameSource, SourceError, SourceFrame, open_source, parse_node_value
from inspector.line.wire import MAX_STR, FrameHeader, WireError, encode_header, new_session, send_frame

log = logging.getLogger(__name__)

SEND_POLL_S = 0.1  # SNDTIMEO slice: how often a blocked send checks for a stop request
SLEEP_SLICE_S = 0.05  # pacing sleeps in slices so that a stop request is seen quickly
WARN_EVERY_S = 10.0  # at most one "behind schedule" / "daemon not accepting" warning per this


class GrabberError(ValueError):
    """Bad grabber settings (camera id, endpoint, numbers out of range)."""


class _RateLimitedWarning:
    """Logs the first occurrence, then at most once per ``every_s`` with the count since."""

    def __init__(self, every_s: float = WARN_EVERY_S) -> None:
        self.every_s = every_s
        self.last = -math.inf
        self.pending = 0

    def __call__(self, message: str, *args: Any) -> None:
        self.pending += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            log.warning(message + " (%d time(s) since the last warning)", *args, self.pending)
            self.last, self.pending = now, 0


class Pacer:
    """Absolute-schedule pacing at ``fps`` on the monotonic clock.

    ``wait()`` sleeps until the next slot (in slices, returning False early if ``stop`` is set) and
    returns True when it is time to grab. Being more than one period late re-anchors the schedule
    at now and counts ``late``.
    """

    def __init__(self, fps: float, stop: threading.Event) -> None:
        self.period = 1.0 / fps
        self.stop = stop
        self.next_slot: float | None = None
        self.late = 0
        self._warn = _RateLimitedWarning()

    def wait(self) -> bool:
        now = time.monotonic()
        if self.next_slot is None:
            self.next_slot = now
        elif now - self.next_slot > self.period:
            self.late += 1
            self._warn("behind schedule by %.1f ms at %.3g fps (slow daemon or source)",
                       (now - self.next_slot) * 1e3, 1.0 / self.period)
            self.next_slot = now
        while not self.stop.is_set():
            remaining = self.next_slot - time.monotonic()
            if remaining <= 0:
                self.next_slot += self.period
                return True
            time.sleep(min(remaining, SLEEP_SLICE_S))
        return False


def fit_wire_str(text: str | None, limit: int = MAX_STR) -> str | None:
    """Make a label/source string acceptable on the wire: printable, at most ``limit`` UTF-8 bytes
    (long strings keep their tail, prefixed with "...")."""
    if text is None:
        return None
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(text.encode("utf-8")) <= limit:
        return text
    tail = text.encode("utf-8")[-(limit - 3):].decode("utf-8", errors="ignore")
    return "..." + tail


def _check_settings(camera_id: str, fps: float | None, max_frames: int | None, deadline_ms: float | None,
                    hwm: int, part_id_start: int, jpeg_quality: int, linger_ms: int) -> None:
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise GrabberError(f"fps must be a positive number, got {fps}")
    if max_frames is not None and max_frames < 0:
        raise GrabberError(f"max_frames must be >= 0, got {max_frames}")
    if deadline_ms is not None and not (math.isfinite(deadline_ms) and deadline_ms > 0):
        raise GrabberError(f"deadline_ms must be a positive number, got {deadline_ms}")
    if hwm < 1:
        raise GrabberError(f"hwm must be >= 1, got {hwm}")
    if part_id_start < 0:
        raise GrabberError(f"part_id_start must be >= 0, got {part_id_start}")
    if not 1 <= jpeg_quality <= 100:
        raise GrabberError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if linger_ms < 0:
        raise GrabberError(f"linger_ms must be >= 0, got {linger_ms}")
    probe = FrameHeader(camera_id=camera_id, seq=0, part_id="0", capture_ns=0, deadline_ns=0, shape=(1, 1, 3))
    try:
        encode_header(probe)
    except WireError as exc:
        raise GrabberError(f"camera id {camera_id!r} is not valid on the wire: {exc.message}") from None


def _open_push(context: zmq.Context, endpoint: str, hwm: int, linger_ms: int,
               curve: transport.ClientCurve | None) -> zmq.Socket:
    try:
        return transport.frame_push(context, endpoint, hwm=hwm, send_timeout_ms=int(SEND_POLL_S * 1000),
                                    linger_ms=linger_ms, curve=curve)
    except zmq.ZMQError as exc:
        raise GrabberError(f"cannot connect to {endpoint!r}: {exc}") from None


class _Sender:
    """Sends frames, blocking at the HWM but answering a stop request within ``grace_s``."""

    def __init__(self, sock: zmq.Socket, endpoint: str, stop: threading.Event, grace_s: float,
                 encoding: str, jpeg_quality: int) -> None:
        self.sock, self.endpoint, self.stop, self.grace_s = sock, endpoint, stop, grace_s
        self.encoding, self.jpeg_quality = encoding, jpeg_quality
        self.blocked_s = 0.0
        self._warn = _RateLimitedWarning()

    def send(self, header: FrameHeader, frame: SourceFrame) -> bool:
        """True once the frame is queued; False if a stop request outlasted the grace period.

        Raises WireError for a frame the wire refuses (nothing is sent then).
        """
        started = time.monotonic()
        stop_seen: float | None = None
        while True:
            try:
                send_frame(self.sock, header, frame.image, encoding=self.encoding, jpeg_quality=self.jpeg_quality)
                self.blocked_s += time.monotonic() - started
                return True
            except zmq.Again:
                pass
            now = time.monotonic()
            if self.stop.is_set():
                stop_seen = now if stop_seen is None else stop_seen
                if now - stop_seen >= self.grace_s:
                    return False
            elif now - started > 2.0:
                self._warn("daemon at %s is not accepting frames (back-pressure; waiting)", self.endpoint)


def _handshake_failed(socket: str, reason: str) -> None:
    log.error("the daemon's %s socket failed the CURVE handshake (%s): a key it does not allow, or not the "
              "daemon whose key is pinned; nothing is sent to it", socket, reason)


def _make_header(camera_id: str, session: int, seq: int, part_id_start: int, deadline_ms: float | None,
                 frame: SourceFrame) -> FrameHeader:
    deadline_ns = frame.capture_ns + round(deadline_ms * 1e6) if deadline_ms else 0
    return FrameHeader(
        camera_id=camera_id, seq=seq, part_id=str(part_id_start + seq), capture_ns=frame.capture_ns,
        deadline_ns=deadline_ns, shape=tuple(frame.image.shape), pixel_format=frame.pixel_format,
        label=fit_wire_str(frame.label), source=fit_wire_str(frame.source), session=session)


def run_grabber(source: str | FrameSource, camera_id: str, endpoint: str, *, fps: float | None = None,
                max_frames: int | None = None, deadline_ms: float | None = None, loop: bool = False,
                jpeg: bool = False, jpeg_quality: int = 95, hwm: int = 4, part_id_start: int = 0,
                linger_ms: int = 1000, source_options: dict[str, Any] | None = None,
                stop_event: threading.Event | None = None, context: zmq.Context | None = None,
                capture_log: str | Path | None = None, curve: transport.ClientCurve | None = None) -> dict:
    """Push frames from ``source`` (spec string or an open FrameSource) to ``endpoint``.

    Runs until the source ends, ``max_frames`` frames are sent or ``stop_event`` is set; then closes
    the socket (linger ``linger_ms``) and the source (only if opened here) and returns the summary
    dict: camera_id, session, frames_sent, skipped (source skips + frames the wire refused), elapsed_s,
    late (behind-schedule events), dropped_on_stop, blocked_s (time spent waiting on the daemon),
    stopped_by ("end_of_source" | "max_frames" | "stop" | "error") and, after a source failure,
    error. ``capture_log``: append one JSON line per frame sent (camera_id, session, seq, part_id,
    capture_ns) to this file, flushed per frame: what ``tools/soak.py`` checks the PLC against.
    Raises GrabberError for bad settings and SourceError when the source cannot be opened.
    Call it from one thread; ``stop_event`` may be set from any thread or a signal handler.
    ``curve``: send as this CURVE client, pinning the daemon's key (docs/security.md); a daemon
    that refuses the key, or a process posing as the daemon, fails the handshake (logged, counted
    in ``refused_handshakes``) and nothing is sent to it.
    """
    _check_settings(camera_id, fps, max_frames, deadline_ms, hwm, part_id_start, jpeg_quality, linger_ms)
    stop = stop_event if stop_event is not None else threading.Event()
    own_source = isinstance(source, str)
    frame_source = (open_source(source, loop=loop, stop_event=stop, **(source_options or {}))
                    if own_source else source)
    own_context = context is None
    ctx = zmq.Context() if own_context else context
    session = new_session()
    summary: dict[str, Any] = {"camera_id": camera_id, "session": session, "frames_sent": 0, "skipped": 0,
                               "elapsed_s": 0.0, "late": 0, "dropped_on_stop": 0, "blocked_s": 0.0, "stopped_by": "stop"}
    wire_rejected = 0
    started = time.monotonic()
    sock = watch = None
    pacer = Pacer(fps, stop) if fps else None
    frames = iter(frame_source)
    log_file = open(capture_log, "a", encoding="utf-8") if capture_log else None
    try:
        sock = _open_push(ctx, endpoint, hwm, linger_ms, curve)
        watch = transport.HandshakeWatch(sock, "frames", _handshake_failed) if curve is not None else None
        sender = _Sender(sock, endpoint, stop, linger_ms / 1000, "jpeg" if jpeg else "raw", jpeg_quality)
        log.info("grabbing %s as camera %r -> %s", getattr(frame_source, "description", frame_source),
                 camera_id, endpoint)
        while not stop.is_set():
            if max_frames is not None and summary["frames_sent"] >= max_frames:
                summary["stopped_by"] = "max_frames"
                break
            if pacer is not None and not pacer.wait():
                break
            try:
                frame = next(frames, None)
            except SourceError as exc:
                log.error("source failed: %s", exc)
                summary.update(stopped_by="error", error=str(exc))
                break
            if frame is None:
                summary["stopped_by"] = "end_of_source"
                break
            header = _make_header(camera_id, session, summary["frames_sent"], part_id_start, deadline_ms, frame)
            try:
                if not sender.send(header, frame):
                    summary["dropped_on_stop"] += 1
                    break
            except WireError as exc:
                wire_rejected += 1
                log.warning("frame %s not sendable, skipped: %s", frame.source, exc)
                continue
            summary["frames_sent"] += 1
            if log_file is not None:
                log_file.write(json.dumps({"camera_id": camera_id, "session": session, "seq": header.seq,
                                           "part_id": header.part_id, "capture_ns": header.capture_ns}) + "\n")
                log_file.flush()
        summary["blocked_s"] = round(sender.blocked_s, 3)
    finally:
        if log_file is not None:
            log_file.close()
        if hasattr(frames, "close"):
            frames.close()
        if own_source:
            frame_source.close()
        if sock is not None:
            if watch is not None:
                summary["refused_handshakes"] = watch.total
                watch.close()
            sock.close(linger=linger_ms)
        if own_context:
            ctx.term()
    summary["skipped"] = int(getattr(frame_source, "skipped", 0)) + wire_rejected
    summary["late"] = pacer.late if pacer is not None else 0
    summary["elapsed_s"] = round(time.monotonic() - started, 3)
    return summary


# --------------------------------------------------------------------------------------------
# command line


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in 1..100, got {text}")
    return value


def _node_setting(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), parse_node_value(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="box config (inspector.toml): take the source and every "
                        "setting from the camera's [cameras.ID] section and [defaults]; the daemon's frames endpoint")
    parser.add_argument("--source",
                        help="image folder, MVTec folder (or mvtec:PATH), video file, cam:N, /dev/videoN, "
                             "rtsp://..., http://..., genicam:PRODUCER.cti[#SERIAL] or genicam:sim[#SERIAL] "
                             "(required without --config)")
    parser.add_argument("--camera", required=True, help="camera id put in every frame header")
    parser.add_argument("--connect", metavar="ENDPOINT",
                        help="daemon's frame endpoint, e.g. tcp://127.0.0.1:5555 or ipc:///run/inspector/frames "
                             "(required without --config)")
    parser.add_argument("--fps", type=_positive_float, help="pace frames at this rate (default: as fast as possible)")
    parser.add_argument("--loop", action="store_true", help="repeat file sources forever")
    parser.add_argument("--max-frames", type=_non_negative_int, help="stop after sending N frames")
    parser.add_argument("--deadline-ms", type=_positive_float,
                        help="verdict deadline after capture, in ms (default: none, deadline_ns = 0)")
    parser.add_argument("--jpeg", action="store_true", help="send JPEG instead of raw pixels")
    parser.add_argument("--jpeg-quality", type=_quality, help="JPEG quality 1..100 (default 95; needs --jpeg)")
    parser.add_argument("--hwm", type=_positive_int, default=4, help="send high-water mark in frames (default 4)")
    parser.add_argument("--part-id-start", type=_non_negative_int, default=0,
                        help="part id of the first frame (default 0; then +1 per frame)")
    parser.add_argument("--linger-ms", type=_non_negative_int, default=1000,
                        help="on stop, how long to try to deliver queued frames (default 1000)")
    parser.add_argument("--seed", type=int, help="MVTec sources: shuffle the test set with this seed")
    parser.add_argument("--capture-log", type=Path, metavar="FILE",
                        help="append one JSON line per frame sent (camera_id, session, seq, part_id, capture_ns)")
    parser.add_argument("--genicam-set", type=_node_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="GenICam feature to set before grabbing, e.g. PixelFormat=Mono8 (repeatable)")
    keys.add_arguments(parser)


def _source_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.genicam_set:
        options["node_values"] = dict(args.genicam_set)
    return options


def grabber_settings(config: Config, camera: str) -> dict[str, Any]:
    """:func:`run_grabber`'s arguments for ``camera`` of a box config (its section merged with
    ``[defaults]``; frames go to the daemon's frames endpoint; frames carry no deadline of their
    own, the daemon applies the camera's ``deadline_ms``). Raises GrabberError when the camera is
    not declared or has no source."""
    if camera not in config.cameras:
        raise GrabberError(f"{config.source}: no [cameras.{camera}] section")
    settings = config.camera(camera)
    if not settings.source:
        raise GrabberError(f"{config.source} [cameras.{camera}] source: not set (no grabber for this camera)")
    g = settings.grabber
    return {"source": settings.source, "camera_id": camera, "endpoint": connectable(config.daemon.frames),
            "curve": keys.grabber_curve(config, camera),
            "fps": g.fps, "max_frames": g.max_frames, "loop": g.loop, "jpeg": g.jpeg, "jpeg_quality": g.jpeg_quality,
            "hwm": g.hwm, "source_options": {} if g.seed is None else {"seed": g.seed}}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_grabber`'s arguments from the command line, or with --config from the file."""
    if args.config is not None:
        return {**grabber_settings(load_config(args.config), args.camera), "capture_log": args.capture_log}
    if args.source is None or args.connect is None:
        raise GrabberError("--source and --connect are required (or --config FILE)")
    if args.jpeg_quality is not None and not args.jpeg:
        raise GrabberError("--jpeg-quality needs --jpeg")
    return {"source": args.source, "camera_id": args.camera, "endpoint": args.connect, "fps": args.fps,
            "max_frames": args.max_frames, "deadline_ms": args.deadline_ms, "loop": args.loop, "jpeg": args.jpeg,
            "jpeg_quality": args.jpeg_quality or 95, "hwm": args.hwm, "part_id_start": args.part_id_start,
            "linger_ms": args.linger_ms, "source_options": _source_options(args), "capture_log": args.capture_log,
            "curve": keys.from_arguments(args)}


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        stop.set()  # only is_set() is used on the grabbing thread, so this cannot deadlock

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = run_grabber(**settings, stop_event=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps(summary), flush=True)
    return 1 if summary["stopped_by"] == "error" else 0
