"""The inspector daemon's serving loop. Frames in (ZeroMQ PULL), verdicts out (PUB).

The parts it uses, one job each: :mod:`~inspector.line.transport` (sockets),
:mod:`~inspector.line.sequence` (gaps), :mod:`~inspector.line.profiles` (which profile judges
which camera), :mod:`~inspector.line.jobs` (frames and verdicts), :mod:`~inspector.line.metrics`
(Prometheus), :mod:`~inspector.line.counts` (the summary), :mod:`~inspector.line.publisher` (verdicts
and heartbeats out), :mod:`~inspector.line.watchdog` (systemd), :mod:`~inspector.line.logs` (JSON logs,
throttle). :mod:`inspector.line.serve` is the command.

    grabbers --PUSH--> PULL [receive loop] --> MicroBatcher --> [engine worker] --> PUB verdicts
                                 |                                                    heartbeats
                                 +--> PUB tap (mirror of every received frame)

Two threads, one job each:

* the **receive loop** (the calling thread) owns every socket: it polls the PULL socket, mirrors
  each message on the tap, decodes it (``wire.decode_frame``), tracks per-camera sequence numbers,
  puts the frame into the micro-batcher (or answers at once: decode error, sequence gap, no
  calibration, deadline already past, overload drop), publishes every verdict and the heartbeats,
  sweeps frames whose deadline can no longer be met, pings the systemd watchdog and handles
  reload / stop requests;
* the **engine worker** takes batches from the batcher (``inspector.line.batching``), runs the engine
  (onnxruntime releases the GIL, so receiving goes on meanwhile), judges each frame
  (``inspector.judge.verdict.decide``) and hands the verdicts to the receive loop through an outbox
  plus an inproc wake-up socket (a ZeroMQ socket is used by one thread only).

Fail closed, exactly one verdict per received frame: every frame the PULL socket delivered is
*settled* exactly once (a flag under a lock, so the worker, the deadline sweep and the shutdown
path can never both answer), and nothing is ever silently passed: see docs/daemon.md for the
reasons table, overload policy, signals (SIGHUP reload, SIGTERM drain), health endpoints, metrics
and systemd integration. ``inspector.line.serve.run_daemon(config, stop_event)`` opens the engine
and runs it in-process.

Never imports torch (unless the config asks for the reference ``torch`` backend, and then only
inside the engine module).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from typing import Any

import numpy as np
import zmq

from inspector.line import transport, wire
from inspector.line.batching import EngineTimeEstimate, MicroBatcher
from inspector.line.config import Config, parse_host_port
from inspector.engine import Engine
from inspector.line.counts import DaemonCounts
from inspector.line.engine_worker import LOOP_TICK_S, EngineWorker
from inspector.line.health import HealthServer
from inspector.line.jobs import FrameJob, Ident, Outgoing, ident_from_partial, make_verdict
from inspector.line.keys import open_links
from inspector.line.logs import Throttle
from inspector.line.metrics import CameraLabels, DaemonMetrics
from inspector.line.ordering import InOrder
from inspector.line.publisher import UNKNOWN_CAMERA, VerdictPublisher
from inspector.line.profiles import ThresholdTable, audit_thresholds, load_thresholds
from inspector.line.watchdog import Watchdog
from inspector.line.sequence import SequenceEvent, SequenceTracker
from inspector.judge.verdict import effective_deadline_ns

log = logging.getLogger("inspector.daemon")

RECV_BURST = 256                 # messages taken per poll before the loop looks at anything else
SUBSCRIBER_WAIT_S = 5.0          # at start: longest wait for the box's gateways to subscribe before frames are taken
SUBSCRIBER_WAIT_ANY_S = 1.0      # ... for one subscriber when the config names no gateway
ENGINE_STALL_MIN_S = 10.0        # liveness fails when one engine call runs longer than this ...
ENGINE_STALL_FACTOR = 50.0       # ... or this many times the expected batch time, whichever is more


class StartupError(RuntimeError):
    """The daemon cannot start (engine unusable, sockets cannot be bound, ...)."""



class Daemon(EngineWorker):
    """The serving loop. ``Daemon(config, engine, ...).serve()`` blocks until ``stop_event`` is set
    and the drain is done, and returns the summary counts. Set ``reload_event`` to reload the
    calibration profiles (SIGHUP does that in ``inspector serve``)."""

    def __init__(self, config: Config, engine: Engine, *, stop_event: threading.Event | None = None,
                 reload_event: threading.Event | None = None, context: zmq.Context | None = None,
                 engine_estimate_s: float = 0.0) -> None:
        self.config = config
        self.engine = engine
        self.stop_event = stop_event or threading.Event()
        self.reload_event = reload_event or threading.Event()
        self.context = context or zmq.Context()
        self._own_context = context is None
        self.metrics = DaemonMetrics(config.engine.max_batch)
        self.counts = DaemonCounts()
        self._settle_lock = threading.Lock()
        self._cond = threading.Condition()
        self.batcher: MicroBatcher[FrameJob] = MicroBatcher(
            config.engine.max_batch, config.engine.max_wait_ms / 1000.0, config.overload.max_queue,
            config.overload.policy, estimate=EngineTimeEstimate(initial_s=engine_estimate_s),
            max_bytes=config.overload.max_queue_bytes)
        self.sequences = SequenceTracker()
        self.in_order: InOrder[tuple[wire.Verdict, int | None]] = InOrder()
        self.epoch = time.time_ns()  # this run of the daemon: stamped on every verdict and heartbeat
        self._fps_cache: dict[str, float | None] = {}
        self._unknown_ids: set[str] = set()
        cameras = list(config.cameras) or [None]
        self.max_pixels = max(config.max_pixels_for(c) if c else config.defaults.max_pixels for c in cameras)
        self.max_deadline_ns = int(config.defaults.max_deadline_ms * 1e6)
        self.thresholds: ThresholdTable
        self.thresholds, problems = load_thresholds(config, engine.manifest, engine.backend)
        audit_thresholds(None, self.thresholds, self.metrics)   # docs/security.md: every change is an audit event
        for problem in problems:
            log.error("calibration unusable (frames of the cameras it serves get FAULT no_calibration): %s", problem)
        if not self.thresholds.present:
            log.error("no usable calibration profile: every frame gets FAULT no_calibration; not ready")
        self.outbox: deque[Outgoing] = deque()
        self.in_flight: list[FrameJob] = []
        self.draining = False
        self.worker_stop = False
        self.busy_since: float | None = None
        self.last_loop = time.monotonic()
        self.unknown_seq = 0
        self.exit_reason = ""
        self.started_ns = time.time_ns()
        self._camera_label = CameraLabels()
        self._throttle = Throttle()
        self._watchdog = Watchdog(self.liveness, self._throttle)
        self._wake_endpoint = f"inproc://inspector-daemon-wake-{uuid.uuid4().hex}"
        self._worker_wake: zmq.Socket | None = None
        self.health: HealthServer | None = None
        self.metrics.expected_engine.set(engine_estimate_s)

    # ---------------------------------------------------------------------------------- lifecycle

    def serve(self) -> dict[str, Any]:
        """Bind, run until stopped and drained, close. Returns the summary."""
        try:
            self._open_sockets()
        except BaseException:
            if self._own_context:
                self.context.term()
            raise
        worker = threading.Thread(target=self._worker_main, name="engine-worker", daemon=True)
        self.worker = worker
        try:
            self._start_health()
            worker.start()
            self._watchdog.ready()
            self.metrics.ready.set(1 if self.is_ready() else 0)
            log.info("daemon ready", extra={"daemon_id": self.config.daemon.id, "frames": self.config.daemon.frames,
                                            "verdicts": self.config.daemon.verdicts, "tap": self.config.daemon.tap,
                                            "engine": self.config.engine.path, "backend": self.engine.backend,
                                            "thresholds": self.thresholds.describe(), "ready": self.is_ready()})
            self._loop()
        finally:
            self._close()
        summary = self.summary()
        log.info("daemon stopped", extra={"summary": summary})
        return summary

    def _open_sockets(self) -> None:
        cfg = self.config.daemon
        self.links = open_links(self.context, self.config, self.metrics.refused, self._count)  # CURVE: docs/security.md
        curve, sockets = self.links.curve, []
        try:
            self.pub = self._keep(transport.publisher(self.context, curve=curve, subscriptions=True), sockets)
            self.links.bind(self.pub, cfg.verdicts, "verdicts")
            self.publisher = VerdictPublisher(self.pub, cfg.id, self.counts, self.metrics, epoch=self.epoch)
            self.tap = None
            if cfg.tap:
                self.tap = self._keep(transport.publisher(self.context, hwm=cfg.tap_hwm, curve=curve, domain="tap"), sockets)
                self.links.bind(self.tap, cfg.tap, "tap")
            self.wake = self._keep(transport.wake_pair(self.context), sockets)
            self.wake.bind(self._wake_endpoint)
            self.pull = self._keep(transport.frame_pull(self.context, hwm=cfg.rcvhwm, curve=curve,
                                                        receive_limit=wire.frame_receive_limit(self.max_pixels)), sockets)
            self._await_subscribers()
            self.links.bind(self.pull, cfg.frames, "frames")
        except BaseException:
            self.links.close()
            for sock in sockets:
                sock.close(0)
            raise
        self.poller = zmq.Poller()
        self.poller.register(self.pull, zmq.POLLIN)
        self.poller.register(self.wake, zmq.POLLIN)
        self.poller.register(self.pub, zmq.POLLIN)

    def _await_subscribers(self) -> None:
        """Before taking frames, wait (bounded) until every gateway of the box config (at least one
        subscriber) has subscribed to the verdicts: PUB drops what it publishes before a subscriber
        joined, so a restarted daemon must not judge frames while its gateways reconnect. Publishes
        heartbeats (ready = false: frames are not taken yet) meanwhile."""
        wanted = max(1, len(self.config.gateways))
        deadline = time.monotonic() + (SUBSCRIBER_WAIT_S if self.config.gateways else SUBSCRIBER_WAIT_ANY_S)
        joined = 0
        while joined < wanted and time.monotonic() < deadline and not self.stop_event.is_set():
            self.publisher.heartbeat(False)
            joined += self._take_subscriptions(self.config.daemon.heartbeat_ms)
        if joined < wanted:
            log.warning("%d of %d verdict subscriber(s) joined within the wait; taking frames anyway", joined, wanted)

    def _take_subscriptions(self, wait_ms: int = 0) -> int:
        """Read the XPUB's subscription messages; returns how many subscribed to verdicts."""
        joined = 0
        while self.pub.poll(wait_ms):
            wait_ms = 0
            message = self.pub.recv(zmq.NOBLOCK)
            if message[:1] == b"\x01" and wire.TOPIC_VERDICT.startswith(message[1:]):
                joined += 1
        return joined

    @staticmethod
    def _keep(sock: zmq.Socket, opened: list) -> zmq.Socket:
        opened.append(sock)
        return sock

    def _start_health(self) -> None:
        if not self.config.daemon.health:
            return
        host, port = parse_host_port(self.config.daemon.health)
        try:
            self.health = HealthServer(host, port, self.metrics.registry, self.liveness, self.readiness).start()
        except OSError as exc:
            raise StartupError(f"cannot serve health/metrics on {self.config.daemon.health}: {exc}") from None

    def _close(self) -> None:
        if self.health is not None:
            self.health.close()
        self.links.close()
        if not self.pull.closed:
            self.pull.close(0)
        self.wake.close(0)
        if self.tap is not None:
            self.tap.close(0)
        self.pub.close(linger=self.config.daemon.linger_ms)  # let queued verdicts reach subscribers
        if self._own_context:
            self.context.term()

    # ---------------------------------------------------------------------------------- main loop

    def _loop(self) -> None:
        heartbeat_s = self.config.daemon.heartbeat_ms / 1000.0
        next_heartbeat = time.monotonic()
        drain_deadline = math.inf
        while True:
            now = time.monotonic()
            self.last_loop = now
            if self.stop_event.is_set() and not self.draining:
                self._begin_drain()
                drain_deadline = now + self.config.daemon.drain_ms / 1000.0
            if self.draining:
                if not self.worker.is_alive() and not self.outbox:
                    self.exit_reason = "drained"
                    break
                if now >= drain_deadline:
                    self._abandon_in_flight()
                    self.exit_reason = "drain_timeout"
                    break
            if self.reload_event.is_set():
                self.reload_event.clear()
                self.reload_profiles()
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + heartbeat_s
            self._watchdog.tick(now)
            self._sweep_expired(now)
            timeout_ms = max(0, min(int((next_heartbeat - now) * 1000) + 1, int(LOOP_TICK_S * 1000)))
            events = dict(self.poller.poll(timeout_ms))
            if not self.draining and self.pull in events:
                self._receive_burst(RECV_BURST)
            if self.wake in events:
                self._drain_wake()
            if self.pub in events:
                self._take_subscriptions()
            self._flush_outbox()
        self._flush_outbox()
        for verdict, received_ns in self.in_order.release_all():  # nothing stays unpublished
            self.publisher.verdict(verdict, received_ns)
        self._heartbeat()

    def _receive_burst(self, limit: int | None) -> None:
        taken = 0
        while limit is None or taken < limit:
            try:
                parts = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            taken += 1
            self._on_message(parts)

    def _drain_wake(self) -> None:
        while True:
            try:
                self.wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _flush_outbox(self) -> None:
        while self.outbox:
            item = self.outbox.popleft()
            if item.map_parts is not None:  # before its verdict: the archive stores both at once
                self._mirror(item.map_parts, encode=list)
            self._publish(item.verdict, item.received_ns, expected=True)

    # ---------------------------------------------------------------------------------- receiving

    def _on_message(self, parts: list) -> None:
        """One message from the PULL socket -> exactly one verdict (now or later). Never raises
        for bad input. Cheap checks only (header, camera, pixel budget, payload size / JPEG frame
        header): decoding is the engine worker's."""
        received_ns = time.time_ns()
        if self.links.refuse(parts):  # CURVE: its key may not send for this camera; not a frame of it
            return
        self._count("messages_received")
        self._mirror(parts)
        try:
            frame = wire.open_frame(parts, max_pixels=self.config.max_pixels_for)
        except wire.WireError as exc:
            self._on_decode_error(exc, received_ns)
            return
        except Exception as exc:  # open_frame promises WireError only; fail closed anyway
            self._on_decode_error(wire.WireError("bad_header", f"unexpected {type(exc).__name__}: {exc}"), received_ns)
            return
        self._on_frame(frame, received_ns)

    def _mirror(self, parts: list, encode=wire.encode_tap) -> None:
        if self.tap is None:
            return
        try:
            self.tap.send_multipart(encode(parts), flags=zmq.NOBLOCK, copy=False)
            self._count("tap_sent")
        except (zmq.Again, wire.WireError):
            self._count("tap_dropped")
            self.metrics.tap_dropped.inc()

    def _on_frame(self, frame: wire.EncodedFrame, received_ns: int) -> None:
        header = frame.header
        self.metrics.frames.labels(self._camera_label(header.camera_id)).inc()
        deadline_ns = min(effective_deadline_ns(header.capture_ns, header.deadline_ns,
                                                self.config.deadline_ms_for(header.camera_id)),
                          received_ns + self.max_deadline_ns)   # no frame waits longer than the longest deadline
        job = FrameJob(header, frame, deadline_ns, received_ns)
        if self._unknown_camera(header.camera_id):
            self._answer_now(job, "unknown_camera")
            return
        if self._track_sequence(Ident.of(header)).replayed:
            self._count("replayed_frames")
            self._answer_now(job, "sequence_replayed")
            return
        if self.thresholds.for_camera(header.camera_id) is None:
            self._answer_now(job, "no_calibration")
            return
        if received_ns >= deadline_ns:
            self._answer_now(job, "deadline_missed")
            return
        mono = time.monotonic()
        job.expected = True
        self.in_order.expect((header.camera_id, header.session), header.seq)
        with self._cond:
            dropped = self.batcher.add(job, mono, mono + (deadline_ns - received_ns) / 1e9, nbytes=frame.nbytes)
            depth = len(self.batcher)
            self._cond.notify()
        self.metrics.queue_depth.set(depth)
        for victim in dropped:
            self._count("overload_dropped")
            self.metrics.dropped.inc()
            if self._throttle("overload"):
                log.warning("overload: frame dropped by policy %s", self.config.overload.policy,
                            extra={"camera": victim.header.camera_id, "seq": victim.header.seq,
                                   "dropped_total": self.counts["overload_dropped"]})
            self._answer_now(victim, "overload_dropped")

    def _on_decode_error(self, exc: wire.WireError, received_ns: int) -> None:
        self._count("decode_errors")
        self.metrics.decode_errors.labels(exc.reason).inc()
        ident = ident_from_partial(exc.header)
        if ident is None:
            ident = Ident(UNKNOWN_CAMERA, self.unknown_seq, "", received_ns)
            self.unknown_seq += 1
            self._count("unattributed_decode_errors")
        elif self._unknown_camera(ident.camera_id):
            self._publish(make_verdict(ident, "unknown_camera"), received_ns, expected=False)
            return
        else:
            self._track_sequence(ident)
        self.metrics.frames.labels(self._camera_label(ident.camera_id)).inc()
        if self._throttle("decode_error"):
            log.warning("malformed frame message: %s", exc, extra={"camera": ident.camera_id, "seq": ident.seq,
                                                                    "wire_reason": exc.reason})
        self._publish(make_verdict(ident, "decode_error"), received_ns, expected=False)

    def _track_sequence(self, ident: Ident) -> SequenceEvent:
        """Sequence rules (:mod:`inspector.line.sequence`): a gap publishes its FAULTs now; a
        replayed seq is the caller's to answer."""
        camera = ident.camera_id
        event = self.sequences.observe(camera, ident.session, ident.seq, now=time.monotonic(),
                                       fps=self._camera_fps(camera))
        if event.new_session:
            self._count("sequence_restarts")
            log.info("camera %s: new grabber session (restart)", camera, extra={"camera": camera, "seq": ident.seq})
        if event.replayed and self._throttle("replayed"):
            log.warning("camera %s: seq %d does not advance its session (last %s): FAULT sequence_replayed",
                        camera, ident.seq, event.previous, extra={"camera": camera, "seq": ident.seq})
        if not event.missing:
            return event
        self._count("missing_frames", event.missing)
        self.metrics.gap_frames.labels(self._camera_label(camera)).inc(event.missing)
        log.warning("sequence gap: %d frame(s) never arrived", event.missing,
                    extra={"camera": camera, "previous": event.previous, "seq": ident.seq,
                           "itemised": len(event.fault_seqs) == event.missing})
        for missing_seq in event.fault_seqs:
            gap = Ident(camera, missing_seq, "", ident.capture_ns, session=ident.session)
            self._publish(make_verdict(gap, "sequence_gap"), None, expected=False)
        return event

    def _unknown_camera(self, camera: str) -> bool:
        """True (counted, logged once per id) for a camera the box config does not declare, when it
        declares any: refused without judging it and without tracking it (docs/daemon.md)."""
        if not self.config.cameras or camera in self.config.cameras:
            return False
        self._count("unknown_camera_frames")
        self.metrics.unknown_camera.inc()
        if camera not in self._unknown_ids and len(self._unknown_ids) < 64:
            self._unknown_ids.add(camera)
            log.error("frame from camera %r, which the config does not declare: refused (FAULT unknown_camera)",
                      camera, extra={"camera": camera})
        return True

    def _camera_fps(self, camera: str) -> float | None:
        """The camera's frame rate from the box config (bounds how many gap FAULTs are possible)."""
        fps = self._fps_cache.get(camera, -1.0)
        if fps == -1.0:
            fps = self.config.camera(camera).grabber.fps if camera in self.config.cameras else self.config.defaults.fps
            if len(self._fps_cache) < 4096:
                self._fps_cache[camera] = fps
        return fps

    # ---------------------------------------------------------------------------------- verdicts

    def _settle(self, job: FrameJob) -> bool:
        """Claim the right to answer ``job``; False when it already has its verdict."""
        with self._settle_lock:
            if job.settled:
                return False
            job.settled = True
            return True

    def _answer_now(self, job: FrameJob, reason: str) -> None:
        """Receive-loop thread: settle ``job`` with a FAULT ``reason`` and publish it."""
        if self._settle(job):
            self._publish(make_verdict(Ident.of(job.header), reason), job.received_ns, expected=job.expected)

    def _post(self, job: FrameJob, verdict: wire.Verdict, map_parts: list | None = None) -> None:
        """Worker thread: hand a verdict (and its tap map) to the receive loop (which publishes it)."""
        self.outbox.append(Outgoing(verdict, job.received_ns, map_parts))
        if self._worker_wake is not None:
            try:
                self._worker_wake.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the loop also flushes the outbox every tick

    def _publish(self, verdict: wire.Verdict, received_ns: int | None, *, expected: bool) -> None:
        """Receive-loop thread only: send and count one verdict, in seq order per camera and
        session (:mod:`inspector.line.ordering`; ``expected``: it answers a frame that went to the
        engine queue)."""
        key = (verdict.camera_id, verdict.session)
        for ready, ready_received_ns in self.in_order.release(key, verdict.seq, (verdict, received_ns), expected=expected):
            self.publisher.verdict(ready, ready_received_ns)

    def _sweep_expired(self, now: float) -> None:
        """Frames that can no longer be judged in time get deadline_missed now (not later): those
        waiting, and those in an engine call that outlived their deadline (its late result is
        dropped by the settle flag)."""
        now_ns = time.time_ns()
        with self._cond:
            expired = self.batcher.take_expired(now)
            depth = len(self.batcher)
            overdue = [job for job in self.in_flight if job.deadline_ns < now_ns and not job.settled]
        if expired:
            self.metrics.queue_depth.set(depth)
        for job in expired + overdue:
            self._answer_now(job, "deadline_missed")

    # ---------------------------------------------------------------------------------- control

    def reload_profiles(self) -> None:
        """SIGHUP: reload every profile and re-check it against the engine; a profile that fails
        keeps the old one (logged, counted). Frames keep flowing meanwhile."""
        table, problems = load_thresholds(self.config, self.engine.manifest, self.engine.backend, previous=self.thresholds)
        audit_thresholds(self.thresholds, table, self.metrics)
        self.thresholds = table
        self._count("profile_reloads")
        self.metrics.profile_reloads.inc()
        for problem in problems:
            self._count("profile_reload_errors")
            self.metrics.profile_reload_errors.inc()
            log.error("profile reload failed, keeping the previous one: %s", problem)
        log.info("calibration reloaded", extra={"thresholds": table.describe(), "errors": len(problems)})

    def _begin_drain(self) -> None:
        """Stop accepting: take what ZeroMQ already delivered, close PULL, let the worker finish."""
        self.draining = True
        self._watchdog.stopping()
        self.metrics.ready.set(0)
        log.info("stopping: draining frames already received")
        self._receive_burst(None)
        self.poller.unregister(self.pull)
        self.pull.close(0)
        with self._cond:
            self.worker_stop = True
            self._cond.notify_all()
        self._heartbeat()

    def _abandon_in_flight(self) -> None:
        """Drain timeout: everything not yet answered gets FAULT shutdown."""
        with self._cond:
            leftovers = self.batcher.drain_all() + list(self.in_flight)
        self._flush_outbox()
        abandoned = 0
        for job in leftovers:
            if self._settle(job):
                abandoned += 1
                self._publish(make_verdict(Ident.of(job.header), "shutdown"), job.received_ns, expected=job.expected)
        self._count("shutdown_abandoned", abandoned)
        log.error("drain timed out after %d ms: %d frame(s) answered FAULT shutdown", self.config.daemon.drain_ms, abandoned)

    def _heartbeat(self) -> None:
        self.publisher.heartbeat(self.is_ready())

    # ---------------------------------------------------------------------------------- probes

    def liveness(self) -> tuple[bool, str]:
        """(healthy, reason): the loop turns, the worker lives, no engine call is stuck."""
        now = time.monotonic()
        if now - self.last_loop > max(2.0, 10 * self.config.daemon.heartbeat_ms / 1000.0):
            return False, f"main loop stalled for {now - self.last_loop:.1f} s"
        worker = getattr(self, "worker", None)
        if worker is not None and not worker.is_alive() and not self.draining:
            return False, "engine worker thread is not running"
        busy_since = self.busy_since
        limit = max(ENGINE_STALL_MIN_S, ENGINE_STALL_FACTOR * self.batcher.expected_engine_s)
        if busy_since is not None and now - busy_since > limit:
            return False, f"engine call running for {now - busy_since:.1f} s (limit {limit:.1f} s)"
        return True, ""

    def is_ready(self) -> bool:
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): engine loaded (always, once running), thresholds present, not
        draining, and alive."""
        if self.draining:
            return False, "draining (stopping)"
        if not self.thresholds.present:
            return False, "no usable calibration profile"
        return self.liveness()

    # ---------------------------------------------------------------------------------- summary

    def _count(self, key: str, n: int = 1) -> None:
        self.counts.add(key, n)

    def summary(self) -> dict[str, Any]:
        return {"daemon_id": self.config.daemon.id, "epoch": self.epoch, "started_ns": self.started_ns, "stopped_ns": time.time_ns(),
                "exit": self.exit_reason, **self.counts.summary(), "expected_engine_s": self.batcher.expected_engine_s}
