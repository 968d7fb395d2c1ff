"""The daemon's engine worker: the thread that takes batches from the micro-batcher, runs the
engine and judges each frame (a mixin of :class:`inspector.line.daemon.Daemon`, split out to keep
one job per module).

Runs in its own thread; it never touches a socket: verdicts go to the receive loop through
``Daemon._post`` (an outbox plus an inproc wake-up). Fail closed: an engine exception fails every
frame of its batch with ``engine_error``; a frame already answered elsewhere (deadline sweep,
shutdown) is skipped through the settle flag.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from inspector.core.roi import RoiError
from inspector.judge.profile import CalibrationProfile
from inspector.line import transport, wire
from inspector.line.jobs import FrameJob, Ident, checked_result, judge_frame, make_verdict
from inspector.line.profiles import ThresholdTable
from inspector.line.publisher import tap_map

log = logging.getLogger("inspector.daemon")

LOOP_TICK_S = 0.05               # longest wait: a stop request is seen this fast


class EngineWorker:
    """The engine worker's methods (mixed into Daemon, which owns the state they use)."""

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
            if not self._decode(job):
                continue
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
            self.batcher.observe_engine_time(elapsed, time.monotonic())
            expected = self.batcher.expected_engine_s
        self.metrics.engine_seconds.observe(elapsed)
        self.metrics.batch_size.observe(len(judged))
        self.metrics.expected_engine.set(expected)
        self._count("batches")
        self._count("frames_judged", len(judged))
        for i, (job, profile) in enumerate(judged):
            self._judge(job, profile, scores[i], None if maps is None else maps[i])

    def _decode(self, job: FrameJob) -> bool:
        """Decode ``job``'s image here, off the receive thread (a JPEG within the camera's pixel
        budget can still take a while); a payload that does not decode is FAULT decode_error.
        Only the frames of the batch being judged are ever decoded at once."""
        if job.settled:
            return False
        try:
            job.image = job.frame.decode()
        except wire.WireError as exc:
            self._count("decode_errors")
            self.metrics.decode_errors.labels(exc.reason).inc()
            if self._throttle("decode_error"):
                log.warning("frame payload does not decode: %s", exc,
                            extra={"camera": job.header.camera_id, "seq": job.header.seq, "wire_reason": exc.reason})
            if self._settle(job):
                self._post(job, make_verdict(Ident.of(job.header), "decode_error"))
            return False
        return True

    def _roi_mask(self, table: ThresholdTable, job: FrameJob) -> np.ndarray | None | bool:
        """The camera's ROI mask for this frame; None: the whole image; False: the ROI does not fit
        the frame (a mask of another resolution), which cannot be judged as calibrated then."""
        try:
            return table.roi_mask(job.header.camera_id, tuple(job.header.shape[:2]))
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
