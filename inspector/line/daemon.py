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
from inspector.line.health import HealthServer
from inspector.line.jobs import (FrameJob, Ident, Outgoing, checked_result, ident_from_partial, judge_frame,
                                 make_verdict)
from inspector.line.logs import Throttle
from inspector.line.metrics import CameraLabels, DaemonMetrics
from inspector.line.publisher import UNKNOWN_CAMERA, VerdictPublisher, tap_map
from inspector.line.profiles import ThresholdTable, load_thresholds
from inspector.line.watchdog import Watchdog
from inspector.line.sequence import SequenceTracker
from inspector.core.roi import RoiError
from inspector.judge.profile import CalibrationProfile
from inspector.judge.verdict import effective_deadline_ns

log = logging.getLogger("inspector.daemon")

RECV_BURST = 256                 # messages taken per poll before the loop looks at anything else
LOOP_TICK_S = 0.05               # longest poll: stop / reload requests are seen this fast
ENGINE_STALL_MIN_S = 10.0        # liveness fails when one engine call runs longer than this ...
ENGINE_STALL_FACTOR = 50.0       # ... or this many times the expected batch time, whichever is more


class StartupError(RuntimeError):
    """The daemon cannot start (engine unusable, sockets cannot be bound, ...)."""



class Daemon:
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
            config.overload.policy, estimate=EngineTimeEstimate(initial_s=engine_estimate_s))
        self.sequences = SequenceTracker()
        self.thresholds: ThresholdTable
        self.thresholds, problems = load_thresholds(config, engine.manifest, engine.backend)
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
        sockets: list[zmq.Socket] = []
        try:
            self.pub = self._keep(transport.publisher(self.context), sockets)
            self._bind(self.pub, cfg.verdicts, "verdicts")
            self.publisher = VerdictPublisher(self.pub, cfg.id, self.counts, self.metrics)
            self.tap = None
            if cfg.tap:
                self.tap = self._keep(transport.publisher(self.context, hwm=cfg.tap_hwm), sockets)
                self._bind(self.tap, cfg.tap, "tap")
            self.wake = self._keep(transport.wake_pair(self.context), sockets)
            self.wake.bind(self._wake_endpoint)
            self.pull = self._keep(transport.frame_pull(self.context, hwm=cfg.rcvhwm), sockets)
            self._bind(self.pull, cfg.frames, "frames")
        except BaseException:
            for sock in sockets:
                sock.close(0)
            raise
        self.poller = zmq.Poller()
        self.poller.register(self.pull, zmq.POLLIN)
        self.poller.register(self.wake, zmq.POLLIN)

    @staticmethod
    def _keep(sock: zmq.Socket, opened: list) -> zmq.Socket:
        opened.append(sock)
        return sock

    @staticmethod
    def _bind(sock: zmq.Socket, endpoint: str, what: str) -> None:
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise StartupError(f"cannot bind the {what} socket to {endpoint}: {exc}") from None

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
            self._flush_outbox()
        self._flush_outbox()
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
            self._publish(item.verdict, item.received_ns)

    # ---------------------------------------------------------------------------------- receiving

    def _on_message(self, parts: list) -> None:
        """One message from the PULL socket -> exactly one verdict (now or later). Never raises
        for bad input."""
        received_ns = time.time_ns()
        self._count("messages_received")
        self._mirror(parts)
        try:
            header, image = wire.decode_frame(parts)
        except wire.WireError as exc:
            self._on_decode_error(exc, received_ns)
            return
        except Exception as exc:  # decode_frame promises WireError only; fail closed anyway
            self._on_decode_error(wire.WireError("bad_header", f"unexpected {type(exc).__name__}: {exc}"), received_ns)
            return
        self._on_frame(header, image, received_ns)

    def _mirror(self, parts: list, encode=wire.encode_tap) -> None:
        if self.tap is None:
            return
        try:
            self.tap.send_multipart(encode(parts), flags=zmq.NOBLOCK, copy=False)
            self._count("tap_sent")
        except (zmq.Again, wire.WireError):
            self._count("tap_dropped")
            self.metrics.tap_dropped.inc()

    def _on_frame(self, header: wire.FrameHeader, image: np.ndarray, received_ns: int) -> None:
        self.metrics.frames.labels(self._camera_label(header.camera_id)).inc()
        self._track_sequence(header.camera_id, header.seq, header.capture_ns)
        deadline_ns = effective_deadline_ns(header.capture_ns, header.deadline_ns,
                                           self.config.deadline_ms_for(header.camera_id))
        job = FrameJob(header, image, deadline_ns, received_ns)
        if self.thresholds.for_camera(header.camera_id) is None:
            self._answer_now(job, "no_calibration")
            return
        if received_ns >= deadline_ns:
            self._answer_now(job, "deadline_missed")
            return
        mono = time.monotonic()
        with self._cond:
            dropped = self.batcher.add(job, mono, mono + (deadline_ns - received_ns) / 1e9)
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
        else:
            self._track_sequence(ident.camera_id, ident.seq, ident.capture_ns)
        self.metrics.frames.labels(self._camera_label(ident.camera_id)).inc()
        if self._throttle("decode_error"):
            log.warning("malformed frame message: %s", exc, extra={"camera": ident.camera_id, "seq": ident.seq,
                                                                    "wire_reason": exc.reason})
        self._publish(make_verdict(ident, "decode_error"), received_ns)

    def _track_sequence(self, camera: str, seq: int, capture_ns: int) -> None:
        event = self.sequences.observe(camera, seq)
        if event.went_back:  # a restart, or the same seq again
            self._count("sequence_restarts")
            log.warning("camera sequence went back (grabber restart?): tracking reset",
                        extra={"camera": camera, "previous": event.previous, "seq": seq})
        if not event.missing:
            return
        self._count("missing_frames", event.missing)
        self.metrics.gap_frames.labels(self._camera_label(camera)).inc(event.missing)
        log.warning("sequence gap: %d frame(s) never arrived", event.missing,
                    extra={"camera": camera, "previous": event.previous, "seq": seq,
                           "itemised": len(event.fault_seqs) == event.missing})
        for missing_seq in event.fault_seqs:
            self._publish(make_verdict(Ident(camera, missing_seq, "", capture_ns), "sequence_gap"), None)

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
            self._publish(make_verdict(Ident.of(job.header), reason), job.received_ns)

    def _post(self, job: FrameJob, verdict: wire.Verdict, map_parts: list | None = None) -> None:
        """Worker thread: hand a verdict (and its tap map) to the receive loop (which publishes it)."""
        self.outbox.append(Outgoing(verdict, job.received_ns, map_parts))
        if self._worker_wake is not None:
            try:
                self._worker_wake.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the loop also flushes the outbox every tick

    def _publish(self, verdict: wire.Verdict, received_ns: int | None) -> None:
        """Receive-loop thread only: send and count one verdict."""
        self.publisher.verdict(verdict, received_ns)

    def _sweep_expired(self, now: float) -> None:
        """Frames that can no longer be judged in time get deadline_missed now (not later)."""
        with self._cond:
            expired = self.batcher.take_expired(now)
            depth = len(self.batcher)
        if expired:
            self.metrics.queue_depth.set(depth)
        for job in expired:
            self._answer_now(job, "deadline_missed")

    # ---------------------------------------------------------------------------------- engine worker

    def _worker_main(self) -> None:
        wake = transport.wake_pair(self.context)
        wake.connect(self._wake_endpoint)
        self._worker_wake = wake
        try:
            while True:
                taken = self._next_batch()
                if taken is None:
                    return
                batch, expired = taken
                for job in expired:
                    if self._settle(job):
                        self._post(job, make_verdict(Ident.of(job.header), "deadline_missed"))
                if batch:
                    self._run_batch(batch)
                with self._cond:
                    self.in_flight = []
        except BaseException:  # never expected: _run_batch catches per batch; stay fail-closed
            log.exception("engine worker crashed; frames still queued will be answered by the sweep or at stop")
        finally:
            self._worker_wake = None
            wake.close(0)

    def _next_batch(self) -> tuple[list[FrameJob], list[FrameJob]] | None:
        """Block until there is a batch to run or expired frames to answer; None = stop."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self.worker_stop and not len(self.batcher):
                    return None
                if self.worker_stop or self.batcher.ready(now):
                    batch, expired = self.batcher.take_batch(now)
                    self.in_flight = batch
                    self.metrics.queue_depth.set(len(self.batcher))
                    return batch, expired
                expired = self.batcher.take_expired(now)
                if expired:
                    return [], expired
                at = self.batcher.next_event_at()
                self._cond.wait(LOOP_TICK_S if at is None else min(max(at - now, 0.0002), LOOP_TICK_S))

    def _run_batch(self, batch: list[FrameJob]) -> None:
        table = self.thresholds  # one consistent snapshot for the whole batch
        judged: list[tuple[FrameJob, CalibrationProfile]] = []
        rois: list[np.ndarray | None] = []
        for job in batch:
            profile = table.for_camera(job.header.camera_id)
            roi = self._roi_mask(table, job) if profile is not None else None
            if profile is None or roi is False:
                if self._settle(job):
                    self._post(job, make_verdict(Ident.of(job.header), "no_calibration"))
            else:
                judged.append((job, profile))
                rois.append(roi)
        if not judged:
            return
        want_maps = self.config.daemon.tap_maps or any(profile.has_region_rule for _, profile in judged)
        self.busy_since = time.monotonic()
        started = time.perf_counter()
        try:
            with_rois = {"rois": rois} if any(r is not None for r in rois) else {}  # engine.base.Engine.infer
            result = self.engine.infer([job.image for job, _ in judged], [job.header.pixel_format for job, _ in judged],
                                       want_maps=want_maps, **with_rois)
            scores, maps = checked_result(result, len(judged), want_maps)
        except Exception as exc:
            self._engine_failed(judged, exc)
            return
        finally:
            self.busy_since = None
        elapsed = time.perf_counter() - started
        with self._cond:
            self.batcher.observe_engine_time(elapsed)
            expected = self.batcher.expected_engine_s
        self.metrics.engine_seconds.observe(elapsed)
        self.metrics.batch_size.observe(len(judged))
        self.metrics.expected_engine.set(expected)
        self._count("batches")
        self._count("frames_judged", len(judged))
        for i, (job, profile) in enumerate(judged):
            self._judge(job, profile, scores[i], None if maps is None else maps[i])

    def _roi_mask(self, table: ThresholdTable, job: FrameJob) -> np.ndarray | None | bool:
        """The camera's ROI mask for this frame; None: the whole image; False: the ROI does not fit
        the frame (a mask of another resolution), which cannot be judged as calibrated then."""
        try:
            return table.roi_mask(job.header.camera_id, job.image.shape[:2])
        except RoiError as exc:
            if self._throttle("roi_error"):
                log.error("ROI does not fit the frame: %s", exc, extra={"camera": job.header.camera_id})
            return False

    def _engine_failed(self, judged: list[tuple[FrameJob, CalibrationProfile]], exc: Exception) -> None:
        self._count("engine_errors")
        self.metrics.engine_errors.inc()
        log.error("engine failed on a batch of %d: %s", len(judged), exc,
                  extra={"frames": [(job.header.camera_id, job.header.seq) for job, _ in judged[:16]]},
                  exc_info=self._throttle("engine_error"))
        for job, profile in judged:
            if self._settle(job):
                self._post(job, make_verdict(Ident.of(job.header), "engine_error",
                                                   threshold=profile.image_threshold))

    def _judge(self, job: FrameJob, profile: CalibrationProfile, raw_score: Any, anomaly_map: np.ndarray | None) -> None:
        """Worker thread: thresholds -> decision -> deadline rule -> verdict for one frame."""
        if not self._settle(job):
            return  # already answered (shutdown timeout)
        ident = Ident.of(job.header)
        try:
            verdict = judge_frame(ident, profile, raw_score, anomaly_map, job.deadline_ns)
        except Exception as exc:  # a non-finite map, a bad area...: no judgement
            if self._throttle("judge_error"):
                log.error("could not judge frame: %s", exc, extra={"camera": ident.camera_id, "seq": ident.seq})
            verdict = make_verdict(ident, "engine_error", score=raw_score, threshold=profile.image_threshold)
        tapped = self.config.daemon.tap_maps and tap_map(verdict, anomaly_map, self.engine, profile.pixel_threshold)
        self._post(job, verdict, tapped or None)

    # ---------------------------------------------------------------------------------- control

    def reload_profiles(self) -> None:
        """SIGHUP: reload every profile and re-check it against the engine; a profile that fails
        keeps the old one (logged, counted). Frames keep flowing meanwhile."""
        table, problems = load_thresholds(self.config, self.engine.manifest, self.engine.backend, previous=self.thresholds)
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
                self._publish(make_verdict(Ident.of(job.header), "shutdown"), job.received_ns)
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
        return {"daemon_id": self.config.daemon.id, "started_ns": self.started_ns, "stopped_ns": time.time_ns(),
                "exit": self.exit_reason, **self.counts.summary(), "expected_engine_s": self.batcher.expected_engine_s}
