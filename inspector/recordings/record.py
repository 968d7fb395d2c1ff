"""`inspector record`: record a live frame stream (and verdicts) or an MVTec folder to MCAP.

Live::

    inspector record --connect tcp://daemon:5557 --out line.mcap [--verdicts tcp://daemon:5556]
                     [--max-frames N] [--duration S]

subscribes to the daemon's frame tap (PUB, topic ``frame``: ``[b"frame", header, payload]``) and,
with ``--verdicts``, to its verdict PUB socket (topic ``verdict``), and writes both to the file as
they arrive. It stops on SIGINT / SIGTERM, after ``--max-frames`` frames or ``--duration``
seconds, and always closes the file cleanly (summary + footer). After a limit stop it keeps
listening for verdicts of the recorded frames for up to ``--verdict-grace`` seconds. Malformed
messages are counted, logged and skipped, never written.

From a folder::

    inspector record --from-folder DATASET --out test.mcap [--camera cam0] [--fps 10] [--jpeg]

writes the test split of an MVTec AD-layout folder as a labelled recording (see
``recording.record_from_folder``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from inspector.line import keys, transport, wire
from inspector.recordings.recording import COMPRESSIONS, RecordingWriter, record_from_folder
from inspector.line.wire import Verdict, WireError

log = logging.getLogger(__name__)

POLL_MS = 100
DRAIN_MAX = 256  # messages taken from one socket per poll round, so neither starves the other
STATUS_EVERY_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--connect", metavar="ENDPOINT", help="the daemon's frame tap (PUB) to subscribe to")
    source.add_argument("--from-folder", metavar="DIR", help="an MVTec AD-layout folder: record its test split")
    parser.add_argument("--out", required=True, metavar="FILE", help="the MCAP file to write")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    parser.add_argument("--compression", choices=tuple(COMPRESSIONS), default="zstd", help="chunk compression")
    live = parser.add_argument_group("live (--connect)")
    live.add_argument("--verdicts", metavar="ENDPOINT", help="the daemon's verdict PUB socket, to record verdicts too")
    live.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    keys.add_arguments(live)
    live.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    live.add_argument("--verdict-grace", type=float, default=2.0, metavar="S",
                      help="after a limit stop, wait up to S s for the recorded frames' verdicts (default 2)")
    folder = parser.add_argument_group("folder (--from-folder)")
    folder.add_argument("--camera", default="cam0", help="camera id of the frames (default cam0)")
    folder.add_argument("--fps", type=float, default=10.0, help="synthetic frame rate (default 10)")
    folder.add_argument("--jpeg", action="store_true", help="store frames JPEG-encoded instead of raw")
    folder.add_argument("--jpeg-quality", type=int, default=95)
    folder.add_argument("--image-size", type=int, metavar="PX", help="resize frames to PX x PX")


def run(args: argparse.Namespace) -> int:
    if args.from_folder:
        _reject_live_options(args)
        summary = record_from_folder(
            args.from_folder, args.out, camera_id=args.camera, fps=args.fps,
            encoding="jpeg" if args.jpeg else "raw", image_size=args.image_size,
            jpeg_quality=args.jpeg_quality, compression=args.compression, overwrite=args.force,
        )
        _print_summary(summary)
        return 0
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        summary = record_live(
            args.connect, args.out, verdict_endpoint=args.verdicts, max_frames=args.max_frames,
            duration_s=args.duration, verdict_grace_s=args.verdict_grace, stop=stop,
            compression=args.compression, overwrite=args.force, curve=keys.from_arguments(args),
        )
    finally:
        _restore_handlers(previous)
    _print_summary(summary)
    return 0


def _reject_live_options(args: argparse.Namespace) -> None:
    given = [name for name, value in (("--verdicts", args.verdicts), ("--max-frames", args.max_frames),
                                      ("--duration", args.duration)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only for live recording (--connect)")


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """SIGINT/SIGTERM set ``stop`` (the loop then closes the file cleanly)."""
    def handler(signum: int, _frame: Any) -> None:
        log.info("got %s, stopping", signal.Signals(signum).name)
        stop.set()
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class _LiveRecorder:
    """Takes tap and verdict messages off their sockets and writes them; counts what it skips."""

    def __init__(self, writer: RecordingWriter) -> None:
        self.writer = writer
        self.bad_messages = 0
        self.cameras: dict[str, int] = {}
        self.pending: set[tuple[str, int]] = set()  # recorded frames without a recorded verdict
        self.verdicts_seen: set[tuple[str, int]] = set()

    def on_frame(self, parts: list[bytes]) -> None:
        try:
            if len(parts) != 3 or parts[0] != wire.TOPIC_FRAME:
                raise WireError("bad_parts", f"tap message must be [{wire.TOPIC_FRAME!r}, header, payload]")
            header = wire.decode_header(parts[1])
            self.writer.write_frame(header, parts[2], log_time_ns=time.time_ns())
        except WireError as exc:
            self._skip("frame", exc)
            return
        self.cameras[header.camera_id] = self.cameras.get(header.camera_id, 0) + 1
        key = (header.camera_id, header.seq)
        if key not in self.verdicts_seen:
            self.pending.add(key)

    def on_verdict(self, parts: list[bytes]) -> None:
        try:
            message = wire.decode_message(parts)
        except WireError as exc:
            self._skip("verdict", exc)
            return
        if isinstance(message, Verdict):
            self.writer.write_verdict(message, log_time_ns=time.time_ns())
            key = (message.camera_id, message.seq)
            self.pending.discard(key)
            self.verdicts_seen.add(key)

    def _skip(self, what: str, exc: Exception) -> None:
        self.bad_messages += 1
        if self.bad_messages <= 5 or self.bad_messages % 100 == 0:
            log.warning("skipping a malformed %s message (%d so far): %s", what, self.bad_messages, exc)


def _subscriber(context: zmq.Context, endpoint: str, topic: bytes, curve: transport.ClientCurve | None) -> zmq.Socket:
    hwm = transport.TAP_SUB_HWM if topic == wire.TOPIC_FRAME else transport.VERDICT_HWM
    return transport.subscriber(context, endpoint, (topic,), hwm=hwm, curve=curve)


def _drain(sock: zmq.Socket, handle: Any) -> None:
    for _ in range(DRAIN_MAX):
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        handle(parts)


def record_live(
    tap_endpoint: str,
    out_path: str | Path,
    *,
    verdict_endpoint: str | None = None,
    max_frames: int | None = None,
    duration_s: float | None = None,
    verdict_grace_s: float = 2.0,
    stop: threading.Event | None = None,
    compression: str = "zstd",
    overwrite: bool = False,
    curve: transport.ClientCurve | None = None,
) -> dict[str, Any]:
    """Record the daemon's frame tap (and verdicts) until ``stop`` is set, ``max_frames`` frames
    were written or ``duration_s`` passed; then (limit stops only) wait up to ``verdict_grace_s``
    for the verdicts of recorded frames. The file is closed cleanly in every case. Returns a
    summary dict (path, n_frames, n_verdicts, cameras, bad_messages, duration_s, stopped_by).
    ``curve``: subscribe as this CURVE client, pinning the daemon's key (the tap and the verdicts;
    docs/security.md); failed handshakes are logged and counted (``refused_handshakes``).
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"--duration must be > 0, got {duration_s}")
    stop = stop or threading.Event()
    metadata = {"source": tap_endpoint, "source_kind": "live_tap", "verdict_source": verdict_endpoint or ""}
    context = zmq.Context()
    started = time.monotonic()
    watches: list[transport.HandshakeWatch] = []
    try:
        tap = _subscriber(context, tap_endpoint, wire.TOPIC_FRAME, curve)
        verdicts = _subscriber(context, verdict_endpoint, wire.TOPIC_VERDICT, curve) if verdict_endpoint else None
        if curve is not None:   # a publisher without the pinned daemon's key: refused, logged, counted
            watches = [transport.HandshakeWatch(sock, name, _refused) for sock, name in ((tap, "tap"), (verdicts, "verdicts"))
                       if sock is not None]
        with RecordingWriter(out_path, compression=compression, metadata=metadata, overwrite=overwrite) as writer:
            recorder = _LiveRecorder(writer)
            log.info("recording %s%s -> %s", tap_endpoint, f" + verdicts {verdict_endpoint}" if verdicts else "", out_path)
            stopped_by = _record_until_stop(tap, verdicts, recorder, stop, max_frames, duration_s, started)
            if verdicts is not None and stopped_by != "signal" and verdict_grace_s > 0:
                _collect_late_verdicts(verdicts, recorder, stop, verdict_grace_s)
    finally:
        for watch in watches:
            watch.close()
        context.destroy(linger=0)
    return {
        "path": str(out_path), "source": tap_endpoint, "n_frames": writer.n_frames, "n_verdicts": writer.n_verdicts,
        "cameras": dict(sorted(recorder.cameras.items())), "bad_messages": recorder.bad_messages,
        "duration_s": round(time.monotonic() - started, 3), "stopped_by": stopped_by,
        "refused_handshakes": sum(watch.total for watch in watches),
    }


def _refused(socket: str, reason: str) -> None:
    log.error("refused the %s publisher (CURVE handshake %s): not the daemon whose key is pinned", socket, reason)


def _record_until_stop(
    tap: zmq.Socket, verdicts: zmq.Socket | None, recorder: _LiveRecorder, stop: threading.Event,
    max_frames: int | None, duration_s: float | None, started: float,
) -> str:
    """The main loop; returns why it ended: "signal", "max_frames" or "duration"."""
    poller = zmq.Poller()
    poller.register(tap, zmq.POLLIN)
    if verdicts is not None:
        poller.register(verdicts, zmq.POLLIN)
    next_status = started + STATUS_EVERY_S
    while True:
        if stop.is_set():
            return "signal"
        if max_frames is not None and recorder.writer.n_frames >= max_frames:
            return "max_frames"
        now = time.monotonic()
        if duration_s is not None and now - started >= duration_s:
            return "duration"
        if now >= next_status:
            log.info("recorded %d frames, %d verdicts", recorder.writer.n_frames, recorder.writer.n_verdicts)
            next_status = now + STATUS_EVERY_S
        events = dict(poller.poll(POLL_MS))
        recorder.writer.flush_if_due()  # also while the line is quiet
        if verdicts is not None and verdicts in events:
            _drain(verdicts, recorder.on_verdict)
        if tap in events:
            _drain_frames(tap, recorder, max_frames)


def _drain_frames(tap: zmq.Socket, recorder: _LiveRecorder, max_frames: int | None) -> None:
    for _ in range(DRAIN_MAX):
        if max_frames is not None and recorder.writer.n_frames >= max_frames:
            return
        try:
            parts = tap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        recorder.on_frame(parts)


def _collect_late_verdicts(verdicts: zmq.Socket, recorder: _LiveRecorder, stop: threading.Event, grace_s: float) -> None:
    """Keep recording verdicts until every recorded frame has one, ``grace_s`` passed or stop."""
    end = time.monotonic() + grace_s
    while recorder.pending and not stop.is_set() and time.monotonic() < end:
        if verdicts.poll(POLL_MS):
            _drain(verdicts, recorder.on_verdict)


def _print_summary(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2, default=str))
