"""The line as the operator page shows it, live: per camera OK / REJECT / FAULT counts and rates,
capture-to-verdict latency percentiles, the daemon's heartbeat, and series of rate and score over
time for the charts.

:class:`LiveLine` subscribes to the daemon's verdicts and heartbeats (the same SUB socket a gateway
opens, through :class:`inspector.line.harness.VerdictSubscriber`) in a thread of its own and counts every
verdict it receives from its start on, as a gateway does, so the page's counts equal the PLC's
counters when both started before the first frame. :meth:`snapshot` is what the page gets.
Malformed messages are counted, never fatal.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from inspector.core.stats import percentile
from inspector.judge.reasons import DECISIONS
from inspector.line import transport, wire
from inspector.line.harness import VerdictSubscriber

LATENCY_WINDOW = 1000        # verdicts per camera the latency percentiles are taken over
RATE_BUCKET_S = 1.0          # the rate chart's resolution
SERIES_SECONDS = 600         # how far back the charts go
SCORE_POINTS = 600           # scores per camera kept for the chart


class CameraLive:
    """One camera's live figures."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.buckets: deque[list] = deque(maxlen=SERIES_SECONDS)      # [second, ok, reject, fault]
        self.scores: deque[tuple[float, float | None, float | None]] = deque(maxlen=SCORE_POINTS)
        self.last_seq: int | None = None
        self.last_verdict_ns = 0

    def add(self, v: wire.Verdict, now_ns: int) -> None:
        self.counts[v.decision] += 1
        if v.reason:
            self.reasons[v.reason] += 1
        if v.capture_ns:
            self.latency_ms.append(max(0, v.decided_ns - v.capture_ns) / 1e6)
        second = int(now_ns / 1e9 // RATE_BUCKET_S * RATE_BUCKET_S)
        if not self.buckets or self.buckets[-1][0] != second:
            self.buckets.append([second, 0, 0, 0])
        self.buckets[-1][1 + DECISIONS.index(v.decision)] += 1
        if v.score is not None:
            self.scores.append((v.decided_ns / 1e9, v.score, v.threshold))
        self.last_seq, self.last_verdict_ns = v.seq, now_ns

    def rates(self, now_s: float, window_s: float = 10.0) -> dict[str, float]:
        """Verdicts per second over the last ``window_s`` (complete buckets and the current one)."""
        recent = [b for b in self.buckets if b[0] > now_s - window_s]
        return {d: sum(b[1 + i] for b in recent) / window_s for i, d in enumerate(DECISIONS)}

    def snapshot(self, now_s: float) -> dict[str, Any]:
        lat = list(self.latency_ms)
        return {
            "counts": {d: self.counts[d] for d in DECISIONS}, "total": sum(self.counts.values()),
            "reasons": dict(self.reasons), "rates": self.rates(now_s),
            "latency_ms": {"p50": percentile(lat, 50) if lat else None, "p99": percentile(lat, 99) if lat else None,
                           "n": len(lat)},
            "last_seq": self.last_seq, "last_verdict_age_s": (now_s - self.last_verdict_ns / 1e9)
            if self.last_verdict_ns else None,
        }

    def series(self) -> dict[str, Any]:
        """Chart data: per-second counts and (time, score, threshold) points."""
        return {"rate": [list(b) for b in self.buckets], "scores": [list(s) for s in self.scores]}


class LiveLine(VerdictSubscriber):
    """Counts the daemon's verdicts at ``endpoint`` in a background thread; :meth:`close` stops it."""

    def __init__(self, endpoint: str, heartbeat_timeout_s: float = 2.0,
                 curve: transport.ClientCurve | None = None) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.cameras: dict[str, CameraLive] = {}
        self.heartbeat: wire.Heartbeat | None = None
        self.heartbeat_at = 0.0
        self.started_ns = time.time_ns()
        super().__init__(endpoint, "live-verdicts", curve)

    def on_heartbeat(self, beat: wire.Heartbeat) -> None:
        with self.lock:
            self.heartbeat, self.heartbeat_at = beat, time.monotonic()

    def on_verdict(self, verdict: wire.Verdict, arrival_ns: int) -> None:
        with self.lock:
            self.cameras.setdefault(verdict.camera_id, CameraLive()).add(verdict, arrival_ns)

    def health(self) -> dict[str, Any]:
        """The daemon as its heartbeats say: alive (a heartbeat within the timeout), ready, age."""
        if self.heartbeat is None:
            return {"alive": False, "ready": False, "age_s": None, "counter": None, "daemon_id": None}
        age = time.monotonic() - self.heartbeat_at
        alive = age <= self.heartbeat_timeout_s
        return {"alive": alive, "ready": alive and self.heartbeat.ready, "age_s": round(age, 3),
                "counter": self.heartbeat.counter, "daemon_id": self.heartbeat.daemon_id}

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            return {"t": now, "since_ns": self.started_ns, "health": self.health(), "malformed": self.malformed,
                    "cameras": {name: cam.snapshot(now) for name, cam in sorted(self.cameras.items())}}

    def series(self) -> dict[str, Any]:
        with self.lock:
            return {name: cam.series() for name, cam in sorted(self.cameras.items())}

