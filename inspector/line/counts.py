"""The daemon's summary counts: what ``inspector serve`` prints as JSON when it stops.

Thread safe (the receive loop and the engine worker both count). The invariant the tests hold the
daemon to is in the summary: ``frames_without_verdict`` = messages received - frame verdicts
published, 0 after a clean stop.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

SUMMARY_KEYS = ("messages_received", "verdicts", "frame_verdicts", "gap_verdicts", "missing_frames", "decode_errors",
                "unattributed_decode_errors", "overload_dropped", "engine_errors", "batches", "frames_judged",
                "heartbeats", "profile_reloads", "profile_reload_errors", "sequence_restarts", "tap_sent",
                "tap_dropped", "shutdown_abandoned", "replayed_frames", "unknown_camera_frames")
SUMMARY_KEYS += ("refused_frames", "refused_handshakes")   # CURVE (docs/security.md)


class DaemonCounts:
    """Named event counts; ``count_verdict`` also counts by decision and reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    def count_verdict(self, decision: str, reason: str, *, for_received_frame: bool) -> None:
        with self._lock:
            c = self._counts
            c["verdicts"] += 1
            c[f"decision:{decision}"] += 1
            c[f"reason:{reason or 'ok'}"] += 1
            c["frame_verdicts" if for_received_frame else "gap_verdicts"] += 1

    def summary(self) -> dict[str, Any]:
        """Every SUMMARY_KEYS count, ``frames_without_verdict``, ``by_decision`` and ``by_reason``."""
        with self._lock:
            c = Counter(self._counts)
        return {
            **{key: c[key] for key in SUMMARY_KEYS},
            "frames_without_verdict": c["messages_received"] - c["frame_verdicts"],
            "by_decision": {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("decision:")},
            "by_reason": {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("reason:")},
        }
