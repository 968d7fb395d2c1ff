"""What the plant sees of one box: per-camera counts and last verdict, the daemon's liveness and
the line-stop state, judged from the daemon's verdicts and heartbeats exactly as the PLC gateway
judges them (docs/plc.md: a heartbeat older than the timeout or ``ready == false`` = line stop).

Pure state, not thread safe: one thread feeds it (:class:`inspector.plant.feed.DaemonFeed`), and
readers take :meth:`LineState.snapshot` (a plain dict, JSON-ready). Used by the MQTT publisher
(status messages) and the OPC UA server (its nodes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from inspector.line.sequence import SequenceTracker
from inspector.line.wire import Heartbeat, Verdict

DECISIONS = ("OK", "REJECT", "FAULT")


@dataclass
class CameraCounts:
    """One camera as the plant sees it. Counts are totals (they continue across publisher
    restarts when restored with :meth:`LineState.restore`)."""

    ok: int = 0
    reject: int = 0
    fault: int = 0
    lost: int = 0              # seqs skipped in the verdict stream (as the gateway's lost_count)
    duplicates: int = 0        # repeated seqs, not counted again
    last_seq: int | None = None
    last_decision: str = ""
    last_reason: str = ""
    last_score: float | None = None
    last_threshold: float | None = None
    last_part_id: str = ""
    last_capture_ns: int = 0

    @property
    def verdicts(self) -> int:
        return self.ok + self.reject + self.fault


class LineState:
    """Counts per camera (``cameras``: the ones this box reports; others count as unknown) and the
    daemon's liveness (``heartbeat_timeout_s``)."""

    def __init__(self, box: str, cameras: tuple[str, ...], heartbeat_timeout_s: float) -> None:
        if heartbeat_timeout_s <= 0:
            raise ValueError("heartbeat timeout must be > 0")
        self.box = box
        self.cameras = {name: CameraCounts() for name in cameras}
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.sequences = SequenceTracker(max_cameras=max(1, len(cameras)))
        self.daemon_id = ""
        self.daemon_alive = False
        self.daemon_ready = False
        self.last_heartbeat_at: float | None = None
        self.heartbeats = 0
        self.unknown_camera_verdicts = 0
        self.heartbeat_lost_events = 0

    @property
    def line_stop(self) -> bool:
        """The PLC gateway's rule: stop while the daemon is not alive and ready."""
        return not (self.daemon_alive and self.daemon_ready)

    def on_verdict(self, verdict: Verdict) -> bool:
        """Count one verdict; False when it is not counted (unknown camera, duplicate seq)."""
        counts = self.cameras.get(verdict.camera_id)
        if counts is None:
            self.unknown_camera_verdicts += 1
            return False
        event = self.sequences.observe(verdict.camera_id, verdict.session, verdict.seq)
        if event.replayed:   # the seq does not advance its grabber session: counted once already
            counts.duplicates += 1
            return False
        counts.lost += event.missing
        decision = verdict.decision if verdict.decision in DECISIONS else "FAULT"   # fail closed
        setattr(counts, decision.lower(), getattr(counts, decision.lower()) + 1)
        counts.last_seq, counts.last_decision, counts.last_reason = verdict.seq, decision, verdict.reason
        counts.last_score, counts.last_threshold = verdict.score, verdict.threshold
        counts.last_part_id, counts.last_capture_ns = verdict.part_id, verdict.capture_ns
        return True

    def on_heartbeat(self, beat: Heartbeat, now: float) -> bool:
        """A daemon heartbeat at monotonic time ``now``; True when alive/ready changed."""
        before = (self.daemon_alive, self.daemon_ready)
        self.heartbeats += 1
        self.daemon_id, self.last_heartbeat_at = beat.daemon_id, now
        self.daemon_alive, self.daemon_ready = True, beat.ready
        return before != (self.daemon_alive, self.daemon_ready)

    def check(self, now: float) -> bool:
        """Declare the daemon lost when its last heartbeat is too old; True when that changed."""
        if not self.daemon_alive or self.last_heartbeat_at is None:
            return False
        if now - self.last_heartbeat_at <= self.heartbeat_timeout_s:
            return False
        self.daemon_alive = self.daemon_ready = False
        self.heartbeat_lost_events += 1
        return True

    def snapshot(self) -> dict:
        """JSON-ready: ``daemon`` {id, alive, ready}, ``line_stop``, ``cameras`` {id: counts},
        ``totals`` {ok, reject, fault, lost}, ``unknown_camera_verdicts``."""
        cameras = {name: asdict(counts) for name, counts in self.cameras.items()}
        totals = {key: sum(c[key] for c in cameras.values()) for key in ("ok", "reject", "fault", "lost")}
        return {
            "daemon": {"id": self.daemon_id, "alive": self.daemon_alive, "ready": self.daemon_ready},
            "line_stop": self.line_stop,
            "cameras": cameras,
            "totals": totals,
            "unknown_camera_verdicts": self.unknown_camera_verdicts,
        }

    def restore(self, cameras: dict) -> None:
        """Continue the counts of a snapshot's ``cameras`` (ignores cameras not reported here and
        fields that are not counts)."""
        for name, saved in (cameras or {}).items():
            counts = self.cameras.get(name)
            if counts is None or not isinstance(saved, dict):
                continue
            for key in ("ok", "reject", "fault", "lost", "duplicates"):
                value = saved.get(key)
                if isinstance(value, int) and value >= 0:
                    setattr(counts, key, value)
