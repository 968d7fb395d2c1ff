"""The daemon's Prometheus metrics (prefix ``inspector_daemon_``), in a private registry that the
health server exposes on ``/metrics`` (docs/daemon.md lists them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MAX_LABELLED_CAMERAS = 64   # metric label values for camera ids; the rest count as "other"
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class CameraLabels:
    """Camera id -> metric label: the first MAX_LABELLED_CAMERAS ids as themselves, later ones as
    ``"other"`` (bounded label cardinality against made-up camera ids)."""

    def __init__(self, limit: int = MAX_LABELLED_CAMERAS) -> None:
        self.limit = limit
        self._labelled: set[str] = set()

    def __call__(self, camera: str) -> str:
        if camera in self._labelled:
            return camera
        if len(self._labelled) < self.limit:
            self._labelled.add(camera)
            return camera
        return "other"


class DaemonMetrics:
    """Every metric the daemon exports. ``max_batch`` sets the batch-size histogram's buckets."""

    def __init__(self, max_batch: int) -> None:
        r = self.registry = CollectorRegistry()
        p = "inspector_daemon_"
        self.frames = Counter(p + "frames_received", "frame messages received, by camera", ["camera"], registry=r)
        self.verdicts = Counter(p + "verdicts", "verdicts published", ["decision", "reason"], registry=r)
        self.decode_errors = Counter(p + "decode_errors", "malformed frame messages", ["reason"], registry=r)
        self.gap_frames = Counter(p + "sequence_gap_frames", "frames missing in a camera's sequence", ["camera"], registry=r)
        self.dropped = Counter(p + "dropped_frames", "frames dropped by the overload policy", registry=r)
        self.engine_errors = Counter(p + "engine_errors", "engine calls that failed", registry=r)
        self.profile_reloads = Counter(p + "profile_reloads", "calibration reloads (SIGHUP)", registry=r)
        self.profile_reload_errors = Counter(p + "profile_reload_errors", "profiles that failed to reload (old one kept)", registry=r)
        self.heartbeats = Counter(p + "heartbeats", "heartbeats published", registry=r)
        self.tap_dropped = Counter(p + "tap_dropped", "frames the tap could not mirror", registry=r)
        self.unknown_camera = Counter(p + "unknown_camera_frames", "frames from camera ids the config does not declare (refused)", registry=r)
        self.refused = Counter(p + "refused", "peers and frames refused by CURVE (docs/security.md)",
                               ["socket", "reason"], registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "frames waiting for the engine", registry=r)
        self.ready = Gauge(p + "ready", "1 when verdicts can be trusted (engine + thresholds, not draining)", registry=r)
        self.expected_engine = Gauge(p + "expected_engine_seconds", "EWMA of engine seconds per batch", registry=r)
        latency = LATENCY_BUCKETS_S
        self.capture_to_verdict = Histogram(p + "capture_to_verdict_seconds", "frame capture to verdict published", buckets=latency, registry=r)
        self.receive_to_verdict = Histogram(p + "receive_to_verdict_seconds", "frame received to verdict published", buckets=latency, registry=r)
        self.engine_seconds = Histogram(p + "engine_batch_seconds", "engine time per batch", buckets=latency, registry=r)
        self.threshold = Gauge(p + "threshold", "thresholds in force per camera (\"*\" = the default profile); "
                               "NaN = no usable profile or rule", ["camera", "rule"], registry=r)
        self.threshold_changes = Counter(p + "threshold_changes", "threshold changes applied while running "
                                         "(SIGHUP reloads)", ["camera"], registry=r)
        self.threshold_changed = Gauge(p + "threshold_changed_timestamp_seconds", "when the camera's "
                                       "thresholds last changed (or were first set)", ["camera"], registry=r)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, max_batch} & set(range(1, max_batch + 1)))
        self.batch_size = Histogram(p + "batch_size", "frames per engine batch", buckets=[float(s) for s in sizes], registry=r)

    def record_thresholds(self, camera: str, rules: dict | None, time_ns: int, *, changed: bool) -> None:
        """An audit event (line.profiles.audit_thresholds): the camera's thresholds in force (NaN:
        none / no such rule), the time, and one more change when it happened while running."""
        for rule in ("image", "pixel", "min_defect_area"):
            value = None if rules is None else rules.get(rule)
            self.threshold.labels(camera, rule).set(float("nan") if value is None else float(value))
        self.threshold_changed.labels(camera).set(time_ns / 1e9)
        if changed:
            self.threshold_changes.labels(camera).inc()
