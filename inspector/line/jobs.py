"""What the daemon holds for one frame on its way to a verdict, and how a verdict is made from it.

Pure data and functions (no sockets, no threads): :class:`FrameJob` (a received frame),
:class:`Ident` (who a verdict is about), :func:`ident_from_partial` (attributing a malformed
message), :func:`make_verdict` (reason -> a wire verdict, fail closed), :func:`judge_frame` (score +
profile -> verdict) and :func:`checked_result` (the engine's output checked for shape).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.engine import EngineError
from inspector.judge.profile import CalibrationProfile
from inspector.judge.regions import largest_region_areas
from inspector.judge.verdict import apply_deadline, decide, decision_for, finite_or_none
from inspector.line import wire


@dataclass(eq=False)
class FrameJob:
    """One received frame on its way to a verdict. ``frame``: checked but not decoded (a JPEG is
    decoded by the engine worker, never on the receive thread); ``image``: uint8 H x W x C once
    decoded (raw: a read-only view into the received message, kept alive by it). ``settled``: a
    verdict exists (guarded by the daemon's settle lock)."""

    header: wire.FrameHeader
    frame: wire.EncodedFrame
    deadline_ns: int
    received_ns: int
    image: np.ndarray | None = None
    settled: bool = False
    expected: bool = False  # went to the engine queue: its verdict is awaited in seq order (line.ordering)


@dataclass(frozen=True)
class Ident:
    """Who a verdict is about (from a header, or from what a malformed header still told)."""

    camera_id: str
    seq: int
    part_id: str = ""
    capture_ns: int = 0
    label: str | None = None
    session: int = 0

    @classmethod
    def of(cls, header: wire.FrameHeader) -> "Ident":
        return cls(header.camera_id, header.seq, header.part_id, header.capture_ns, header.label, header.session)


@dataclass
class Outgoing:
    """A verdict waiting in the worker -> receive loop outbox."""

    verdict: wire.Verdict
    received_ns: int | None  # None: not a received frame (sequence gap)
    map_parts: list | None = None  # the tap's [TOPIC_MAP, header, pixels] for this frame (publisher.tap_map)


def ident_from_partial(header: Any) -> Ident | None:
    """Attribute a malformed message: a FrameHeader, or a dict with at least camera_id and seq
    (fields in it passed their own checks); None when camera/seq are unknown."""
    if isinstance(header, wire.FrameHeader):
        return Ident.of(header)
    if isinstance(header, dict) and isinstance(header.get("camera_id"), str) and isinstance(header.get("seq"), int):
        part_id = header.get("part_id")
        capture_ns = header.get("capture_ns")
        label = header.get("label")
        session = header.get("session")
        return Ident(header["camera_id"], header["seq"], part_id if isinstance(part_id, str) else "",
                     capture_ns if isinstance(capture_ns, int) else 0, label if isinstance(label, str) else None,
                     session if isinstance(session, int) else 0)
    return None


def make_verdict(ident: Ident, reason: str, *, decision: str | None = None, score: float | None = None,
                 threshold: float | None = None, area: int | None = None,
                 decided_ns: int | None = None) -> wire.Verdict:
    """The verdict for ``ident``: ``decision`` (default: the one ``reason`` goes with, see
    :mod:`inspector.judge.reasons`); an OK carries reason ""; non-finite numbers become None."""
    decision = decision or decision_for(reason)
    return wire.Verdict(
        camera_id=ident.camera_id, seq=ident.seq, part_id=ident.part_id, capture_ns=ident.capture_ns,
        decision=decision, reason="" if decision == "OK" else reason, score=finite_or_none(score),
        threshold=finite_or_none(threshold), decided_ns=decided_ns or time.time_ns(), label=ident.label,
        defect_area_px=area, session=ident.session,
    )


def judge_frame(ident: Ident, profile: CalibrationProfile, raw_score: Any, anomaly_map: np.ndarray | None,
                deadline_ns: int) -> wire.Verdict:
    """One judged frame's verdict: the region rule's area (when the profile has one and the score
    is finite), the decision (:func:`inspector.judge.verdict.decide`), then the deadline rule (a
    judgement after ``deadline_ns`` is FAULT ``deadline_missed``). ``anomaly_map``: float H x W
    (None without the region rule). Raises for a bad map / area (the caller answers FAULT)."""
    area = None
    if profile.has_region_rule and finite_or_none(raw_score) is not None:
        area = int(largest_region_areas(anomaly_map[np.newaxis], profile.pixel_threshold)[0])
    decision, reason = decide(raw_score, profile.image_threshold, region_area=area,
                              min_defect_area=profile.min_defect_area)
    decided_ns = time.time_ns()
    decision, reason = apply_deadline(decision, reason, decided_ns, deadline_ns)
    return make_verdict(ident, reason, decision=decision, score=raw_score, threshold=profile.image_threshold,
                        area=area, decided_ns=decided_ns)


def checked_result(result: Any, n: int, want_maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Engine output checked for shape: scores (n,), maps (n, h, w) when asked. Raises EngineError."""
    scores = np.asarray(result.scores)
    if scores.shape != (n,):
        raise EngineError(f"engine returned scores of shape {scores.shape} for {n} frames")
    if not want_maps:
        return scores, None
    maps = None if result.maps is None else np.asarray(result.maps)
    if maps is None or maps.ndim != 3 or maps.shape[0] != n:
        raise EngineError(f"engine returned maps of shape {None if maps is None else maps.shape} for {n} frames")
    return scores, maps
