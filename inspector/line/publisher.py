"""The daemon's outgoing side: every verdict and heartbeat is encoded, sent and counted here.

Used by the daemon's receive loop only (a ZeroMQ socket belongs to one thread). Fail closed: a
verdict that does not encode (a bug) is replaced by a FAULT ``engine_error`` for the same frame,
never dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import zmq

from inspector.judge.reasons import FAULT, OK
from inspector.line import wire
from inspector.line.counts import DaemonCounts
from inspector.line.metrics import DaemonMetrics

log = logging.getLogger("inspector.daemon")

UNKNOWN_CAMERA = "unknown"   # camera_id of a FAULT for a message whose camera/seq are unreadable


class VerdictPublisher:
    """Sends on the daemon's bound PUB ``sock``; counts into ``counts`` and ``metrics``."""

    def __init__(self, sock: zmq.Socket, daemon_id: str, counts: DaemonCounts, metrics: DaemonMetrics, *,
                 epoch: int = 0) -> None:
        self.sock, self.daemon_id, self.counts, self.metrics = sock, daemon_id, counts, metrics
        self.epoch = epoch  # stamped on every verdict and heartbeat (docs/protocol.md)
        self.heartbeat_counter = 0

    def verdict(self, verdict: wire.Verdict, received_ns: int | None) -> None:
        """Encode and send one verdict; ``received_ns``: when its frame arrived (None: a frame that
        never arrived, i.e. a sequence gap)."""
        verdict = replace(verdict, epoch=self.epoch)
        try:
            parts = wire.encode_verdict(verdict)
        except wire.WireError as exc:  # a bug; still answer, fail closed
            log.error("verdict did not encode (%s); publishing FAULT engine_error instead", exc)
            verdict = wire.Verdict(verdict.camera_id, verdict.seq, verdict.part_id, verdict.capture_ns, FAULT,
                                   "engine_error", None, None, time.time_ns(), session=verdict.session,
                                   epoch=self.epoch)
            parts = wire.encode_verdict(verdict)
        self.sock.send_multipart(parts)
        self.counts.count_verdict(verdict.decision, verdict.reason, for_received_frame=received_ns is not None)
        self.metrics.verdicts.labels(verdict.decision, verdict.reason).inc()
        now_ns = time.time_ns()
        if received_ns is not None:
            self.metrics.receive_to_verdict.observe(max(0, now_ns - received_ns) / 1e9)
            if verdict.capture_ns and verdict.camera_id != UNKNOWN_CAMERA:
                self.metrics.capture_to_verdict.observe(max(0, now_ns - verdict.capture_ns) / 1e9)

    def heartbeat(self, ready: bool) -> None:
        """One heartbeat (counter +1 each) saying whether verdicts can be trusted now."""
        beat = wire.Heartbeat(self.daemon_id, self.heartbeat_counter, time.time_ns(), ready, epoch=self.epoch)
        self.sock.send_multipart(wire.encode_heartbeat(beat))
        self.heartbeat_counter += 1
        self.counts.add("heartbeats")
        self.metrics.heartbeats.inc()
        self.metrics.ready.set(1 if ready else 0)


def tap_map(verdict: wire.Verdict, anomaly_map: np.ndarray | None, engine: Any,
            pixel_threshold: float | None) -> list | None:
    """The tap message ``[TOPIC_MAP, header, pixels]`` carrying a judged REJECT / FAULT frame's
    anomaly map (float H x W at the inspection size of ``engine``, whose ``inspection.fit`` says how
    the camera image was fitted to it; quantised to uint8) for the reject archive. None for OK
    verdicts and frames without a map. Never raises: a map that cannot be sent (non-finite, an
    engine without a fit) is logged and not sent; the verdict itself is unaffected. Runs in the
    engine worker."""
    if anomaly_map is None or verdict.decision == OK:
        return None
    try:
        return wire.encode_map(wire.AnomalyMap.quantise(verdict.camera_id, verdict.seq, verdict.capture_ns,
                                                        anomaly_map, engine.inspection.fit, pixel_threshold))
    except Exception as exc:  # WireError for a bad map; anything else is a bug, still never fatal here
        log.warning("anomaly map not sent on the tap: %s", exc, extra={"camera": verdict.camera_id, "seq": verdict.seq})
        return None
